//! The stats toolkit against reference values from statsmodels, pandas and scipy.
//!
//! The fixture is produced by `fixtures/make_reference.py`; its `produced_by` field names
//! the library versions.

use serde_json::Value;
use shardcast_sdk::stats::{Ewma, Holt, HoltWinters, Logistic, mad_score, normal_quantile, zscore};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/stats_reference.json")).expect("fixture is JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn close(actual: f64, expected: f64, what: &str) {
    let tol = 1e-7 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual}, reference {expected}"
    );
}

#[test]
fn ewma_matches_pandas() {
    let f = fixture();
    let ewma = Ewma::fit(f["ewma"]["alpha"].as_f64().unwrap(), &floats(&f["series"]));
    close(
        ewma.mean(),
        f["ewma"]["mean"].as_f64().unwrap(),
        "ewma mean",
    );
    close(
        ewma.variance(),
        f["ewma"]["var"].as_f64().unwrap(),
        "ewma var",
    );
}

#[test]
fn holt_matches_statsmodels() {
    let f = fixture();
    let h = &f["holt"];
    let holt = Holt::fit(
        h["alpha"].as_f64().unwrap(),
        h["beta"].as_f64().unwrap(),
        &floats(&f["series"]),
    );
    let (forecast, low, high) = (
        floats(&h["forecast"]),
        floats(&h["low95"]),
        floats(&h["high95"]),
    );
    for step in 0..forecast.len() {
        let iv = holt.interval(step + 1, 0.95);
        close(
            iv.expected,
            forecast[step],
            &format!("holt forecast h={}", step + 1),
        );
        close(iv.low, low[step], &format!("holt low h={}", step + 1));
        close(iv.high, high[step], &format!("holt high h={}", step + 1));
    }
}

#[test]
fn holt_winters_matches_statsmodels_ets() {
    let f = fixture();
    let h = &f["holt_winters"];
    let hw = HoltWinters::fit(
        h["alpha"].as_f64().unwrap(),
        h["beta"].as_f64().unwrap(),
        h["gamma"].as_f64().unwrap(),
        h["period"].as_u64().unwrap() as usize,
        &floats(&f["series"]),
    )
    .expect("two seasons of data");
    let (mean, low, high) = (
        floats(&h["ets_mean"]),
        floats(&h["low95"]),
        floats(&h["high95"]),
    );
    for step in 0..mean.len() {
        let iv = hw.interval(step + 1, 0.95);
        close(
            iv.expected,
            mean[step],
            &format!("hw forecast h={}", step + 1),
        );
        close(iv.low, low[step], &format!("hw low h={}", step + 1));
        close(iv.high, high[step], &format!("hw high h={}", step + 1));
    }
}

#[test]
fn anomaly_scores_match_scipy() {
    let f = fixture();
    let series = floats(&f["zscore"]["series"]);
    for (x, want) in series.iter().zip(floats(&f["zscore"]["scores"])) {
        close(zscore(*x, &series), want, "zscore");
    }
    for (x, want) in series.iter().zip(floats(&f["mad"]["scores"])) {
        close(mad_score(*x, &series), want, "mad score");
    }
}

#[test]
fn logistic_matches_scipy_expit() {
    let f = fixture();
    let l = &f["logistic"];
    let model = Logistic {
        weights: floats(&l["weights"]),
        bias: l["bias"].as_f64().unwrap(),
    };
    let features = l["features"].as_array().unwrap();
    for (x, want) in features.iter().zip(floats(&l["probabilities"])) {
        close(model.score(&floats(x)), want, "logistic");
    }
}

#[test]
fn normal_quantile_matches_scipy() {
    let f = fixture();
    let q = &f["normal_quantile"];
    for (p, z) in floats(&q["p"]).into_iter().zip(floats(&q["z"])) {
        close(normal_quantile(p), z, &format!("quantile p={p}"));
    }
    assert!(normal_quantile(0.0).is_nan() && normal_quantile(1.0).is_nan());
}

#[test]
fn augurs_ets_is_reachable_and_forecasts() {
    use shardcast_sdk::stats::{Fit, Predict, ets::AutoETS};
    let f = fixture();
    let model = AutoETS::non_seasonal()
        .fit(&floats(&f["series"]))
        .expect("fit");
    let forecast = model.predict(3, 0.9).expect("predict");
    assert_eq!(forecast.point.len(), 3);
    let iv = forecast.intervals.expect("intervals");
    assert!(iv.lower[0] < forecast.point[0] && forecast.point[0] < iv.upper[0]);
}
