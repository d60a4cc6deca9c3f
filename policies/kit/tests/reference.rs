//! The predictive policies' own stats tools against reference values from pandas and
//! statsmodels (`fixtures/make_reference.py`; its `produced_by` field names the versions).

use serde_json::Value;
use shardcast_policy_kit::fitted::ets_path;
use shardcast_policy_kit::forecast::despike;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/reference.json")).expect("fixture is JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn despike_is_the_centred_running_median_of_five_of_pandas() {
    let f = fixture();
    let spiky = floats(&f["spiky"]);
    let reference = floats(&f["median5"]);
    let ours = despike(&spiky);
    // The last two points are kept raw, by design: a new level shows at once.
    let n = spiky.len();
    for t in 0..n - 2 {
        assert!(
            (ours[t] - reference[t]).abs() <= 1e-9 * reference[t].abs().max(1.0),
            "point {t}: ours {}, pandas {}",
            ours[t],
            reference[t]
        );
    }
    assert_eq!(ours[n - 2..], spiky[n - 2..]);
}

#[test]
fn the_instance_model_forecasts_as_statsmodels_ets_aan_does() {
    // Both fit ETS(A,A,N) by likelihood with different optimisers: the forecasts agree
    // to within 1 % (the series rises 1.5 a step from 100; 1 % is about one step).
    let f = fixture();
    let trend = floats(&f["trend"]);
    let reference = floats(&f["ets_aan_forecast"]);
    let path = ets_path(&trend, reference.len(), 0.9, 0).expect("fits");
    for (h, (ours, theirs)) in path.expected.iter().zip(&reference).enumerate() {
        assert!(
            (ours - theirs).abs() <= 0.01 * theirs.abs(),
            "step {}: ours {ours}, statsmodels {theirs}",
            h + 1
        );
    }
}
