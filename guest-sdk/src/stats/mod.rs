//! Forecasting and anomaly tools for policies.
//!
//! Two tiers:
//! - cheap, allocation-free per-series tools for a tick over 16,384 segments: [`Ewma`],
//!   [`Holt`] and [`HoltWinters`] with prediction intervals, [`zscore`] and [`mad_score`]
//!   anomaly scores, and [`Logistic`] scoring;
//! - full model fitting from [augurs](https://docs.rs/augurs) for the few series that merit
//!   it: [`ets`] (AutoETS) and [`mstl`] (multiple seasonalities).
//!
//! Each cheap tool is checked against reference values from statsmodels, pandas and scipy
//! (`guest-sdk/tests/fixtures/`).

mod anomaly;
mod ewma;
mod holt;
mod logistic;
mod normal;

pub use anomaly::{mad_score, mean_std, median, zscore};
pub use ewma::Ewma;
pub use holt::{Holt, HoltWinters, Interval};
pub use logistic::{Logistic, sigmoid};
pub use normal::{normal_cdf, normal_quantile};

/// AutoETS from augurs: fits and selects an exponential smoothing model.
pub use augurs::ets;
/// MSTL from augurs: decomposition with multiple seasonal periods.
pub use augurs::mstl;
/// augurs' shared forecast types and traits (`Fit`, `Predict`, `Forecast`).
pub use augurs::{Fit, Forecast, ForecastIntervals, Predict};
