//! Anomaly scores: how far a value sits from a series' usual range.

/// Population mean and standard deviation (ddof = 0), skipping NaN.
pub fn mean_std(series: &[f64]) -> (f64, f64) {
    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &x in series.iter().filter(|x| !x.is_nan()) {
        n += 1.0;
        let d = x - mean;
        mean += d / n;
        m2 += d * (x - mean);
    }
    if n == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    (mean, (m2 / n).sqrt())
}

/// The z-score of `x` against `series` (population standard deviation). Zero when the
/// series is constant, NaN when it is empty.
pub fn zscore(x: f64, series: &[f64]) -> f64 {
    let (mean, std) = mean_std(series);
    if std == 0.0 { 0.0 } else { (x - mean) / std }
}

/// The median, skipping NaN; NaN when empty.
pub fn median(series: &[f64]) -> f64 {
    let mut v: Vec<f64> = series.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The robust z-score of `x`: `(x − median) / (1.4826 · MAD)`, where MAD is the median
/// absolute deviation (scaled as scipy's `median_abs_deviation(scale="normal")`). Zero
/// when the MAD is zero and `x` is the median, infinite when it is elsewhere.
pub fn mad_score(x: f64, series: &[f64]) -> f64 {
    let med = median(series);
    let deviations: Vec<f64> = series.iter().map(|v| (v - med).abs()).collect();
    let scale = median(&deviations) / 0.674_489_750_196_081_7;
    if scale == 0.0 {
        return if x == med {
            0.0
        } else {
            f64::INFINITY.copysign(x - med)
        };
    }
    (x - med) / scale
}
