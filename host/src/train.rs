//! `shardcast train`: fit the failure guard's logistic model on recorded history.
//!
//! Each history file ([`crate::history`]) is replayed tick by tick through the failure
//! guard's own predictor, so the features are exactly those the policy computes at run
//! time. A point is labelled positive when its instance fails (crashes or hangs)
//! within the horizon after it. Each instance's series is one unit: a share of them is
//! held out (with at least one that fails, when two or more do), the rest trains a logistic
//! regression (linfa-logistic, L2-regularised). The threshold is the one that scores best
//! on the training series under the policy's own rule (`ticks` consecutive points at or
//! above it raise one alarm). Precision, recall and lead time are then measured on the
//! held-out series, for the fitted model and for the default weights.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use shardcast_policy_kit::failure_guard::{FEATURES, FailureGuard, Settings};
use shardcast_sdk::prelude::*;

use crate::history::{self, Replay};

/// Options of `shardcast train`.
pub struct Options {
    /// History files.
    pub histories: Vec<PathBuf>,
    /// Where the settings are written.
    pub out: PathBuf,
    /// Seconds ahead a failure counts for a point.
    pub horizon_s: u64,
    /// Share of the instance series held out, in (0, 1).
    pub holdout: f64,
    /// Write the settings for `failure-guard` (top level) instead of `predictive`
    /// (`[failure]` table).
    pub plain: bool,
}

/// The failure kinds a model learns to predict: an instance gone or hung. Error bursts are
/// symptoms (features), maintenance is announced, restarts are a consequence.
fn is_failure(kind: FailureKind) -> bool {
    matches!(kind, FailureKind::Crash | FailureKind::Timeout)
}

/// One instance's points over one history.
struct Series {
    /// `file:instance name`.
    label: String,
    /// Time and features of each point.
    points: Vec<(u64, [f64; 9])>,
    /// When the instance failed.
    failures: Vec<u64>,
}

fn series_of(path: &std::path::Path, settings: &Settings) -> Result<Vec<Series>> {
    let rows = history::read(path)?;
    let failures = history::failures(&rows);
    let mut guard = FailureGuard::default();
    let mut config = format!(
        "horizon_s = {}\ngrace_s = {}\n",
        settings.horizon_s, settings.grace_s
    );
    config.push_str(&format!("baseline_alpha = {}\n", settings.baseline_alpha));
    guard.configure(&config).map_err(anyhow::Error::msg)?;
    let mut replay = Replay::new(failures.clone(), 60);
    let mut by_instance: BTreeMap<InstanceId, Series> = BTreeMap::new();
    for tick in history::ticks(&rows) {
        replay.advance(&tick);
        guard.predict(&replay);
        for (&id, x) in guard.last_features() {
            let name = tick
                .points
                .iter()
                .find(|r| r.instance == id)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| id.to_string());
            by_instance
                .entry(id)
                .or_insert_with(|| Series {
                    label: format!("{}:{name}", path.display()),
                    points: Vec::new(),
                    failures: failures
                        .iter()
                        .filter(|f| f.instance == id && is_failure(f.kind))
                        .map(|f| f.at)
                        .collect(),
                })
                .points
                .push((tick.t_ms, *x));
        }
    }
    Ok(by_instance.into_values().collect())
}

/// Whether a point at `t` is followed by a failure within `horizon_ms`.
fn positive(s: &Series, t: u64, horizon_ms: u64) -> bool {
    s.failures.iter().any(|&f| f > t && f <= t + horizon_ms)
}

/// A model: weights in the order of [`FEATURES`], and a bias.
#[derive(Clone, Debug)]
struct Model {
    weights: Vec<f64>,
    bias: f64,
}

impl Model {
    fn score(&self, x: &[f64; 9]) -> f64 {
        let z: f64 = self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + self.bias;
        1.0 / (1.0 + (-z).exp())
    }
}

/// Event-level results of a model over some series.
#[derive(Clone, Copy, Debug, Default)]
struct Scores {
    alarms: usize,
    true_alarms: usize,
    failures: usize,
    detected: usize,
    /// Lead of each detected failure, summed and smallest (s).
    lead_sum: f64,
    lead_min: f64,
}

impl Scores {
    fn precision(&self) -> Option<f64> {
        (self.alarms > 0).then(|| self.true_alarms as f64 / self.alarms as f64)
    }
    fn recall(&self) -> Option<f64> {
        (self.failures > 0).then(|| self.detected as f64 / self.failures as f64)
    }
    fn f1(&self) -> f64 {
        match (self.precision(), self.recall()) {
            (Some(p), Some(r)) if p + r > 0.0 => 2.0 * p * r / (p + r),
            _ => 0.0,
        }
    }
    fn describe(&self) -> String {
        let fmt = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.2}"));
        let lead = if self.detected > 0 {
            format!(
                "lead mean {:.0} s, min {:.0} s",
                self.lead_sum / self.detected as f64,
                self.lead_min
            )
        } else {
            "no failure foreseen".into()
        };
        format!(
            "precision {} ({} of {} alarms), recall {} ({} of {} failures), {lead}",
            fmt(self.precision()),
            self.true_alarms,
            self.alarms,
            fmt(self.recall()),
            self.detected,
            self.failures
        )
    }
}

/// Alarms as the policy raises them: `ticks` consecutive points at or above `threshold`
/// raise one alarm, and the next needs the risk to fall below first.
fn evaluate(
    model: &Model,
    threshold: f64,
    ticks: u32,
    series: &[&Series],
    horizon_ms: u64,
) -> Scores {
    let mut s = Scores {
        lead_min: f64::INFINITY,
        ..Scores::default()
    };
    for one in series {
        let mut over = 0u32;
        let mut alarms = Vec::new();
        for (t, x) in &one.points {
            if model.score(x) >= threshold {
                over += 1;
                if over == ticks {
                    alarms.push(*t);
                }
            } else {
                over = 0;
            }
        }
        s.alarms += alarms.len();
        s.true_alarms += alarms
            .iter()
            .filter(|&&a| positive(one, a, horizon_ms))
            .count();
        for &f in &one.failures {
            s.failures += 1;
            if let Some(first) = alarms.iter().find(|&&a| a < f && a + horizon_ms >= f) {
                s.detected += 1;
                let lead = (f - first) as f64 / 1000.0;
                s.lead_sum += lead;
                s.lead_min = s.lead_min.min(lead);
            }
        }
    }
    if s.detected == 0 {
        s.lead_min = 0.0;
    }
    s
}

fn fit(series: &[&Series], horizon_ms: u64) -> Result<Model> {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for s in series {
        for (t, x) in &s.points {
            xs.push(*x);
            ys.push(usize::from(positive(s, *t, horizon_ms)));
        }
    }
    let positives = ys.iter().filter(|&&y| y == 1).count();
    if positives == 0 || positives == ys.len() {
        bail!(
            "the training series hold {positives} points before a failure out of {}: both kinds are needed",
            ys.len()
        );
    }
    // Balance the classes: every positive, and negatives at an even stride up to 4x as many.
    let negatives = ys.len() - positives;
    let stride = (negatives / (4 * positives)).max(1);
    let mut kept = Vec::new();
    let mut seen = 0usize;
    for (x, y) in xs.iter().zip(&ys) {
        if *y == 1 {
            kept.push((*x, 1usize));
        } else {
            if seen.is_multiple_of(stride) {
                kept.push((*x, 0usize));
            }
            seen += 1;
        }
    }
    let records = Array2::from_shape_fn((kept.len(), FEATURES.len()), |(i, j)| kept[i].0[j]);
    let targets = Array1::from_iter(kept.iter().map(|(_, y)| *y));
    let data = Dataset::new(records, targets);
    let fitted = LogisticRegression::default()
        .alpha(0.1)
        .max_iterations(500)
        .fit(&data)
        .map_err(|e| anyhow::anyhow!("the logistic regression did not fit: {e}"))?;
    let mut model = Model {
        weights: fitted.params().to_vec(),
        bias: fitted.intercept(),
    };
    // linfa states probabilities for the larger label (1, a coming failure); check it.
    let mean = |label: usize| {
        let scores: Vec<f64> = kept
            .iter()
            .filter(|(_, y)| *y == label)
            .map(|(x, _)| model.score(x))
            .collect();
        scores.iter().sum::<f64>() / scores.len().max(1) as f64
    };
    if mean(1) < mean(0) {
        model.weights.iter_mut().for_each(|w| *w = -*w);
        model.bias = -model.bias;
    }
    Ok(model)
}

pub fn run_cli(o: &Options) -> Result<String> {
    if o.histories.is_empty() {
        bail!("give at least one --history file");
    }
    if !(o.holdout > 0.0 && o.holdout < 1.0) {
        bail!("--holdout must be in (0, 1), got {}", o.holdout);
    }
    let defaults = Settings {
        horizon_s: o.horizon_s,
        ..Settings::default()
    };
    let horizon_ms = o.horizon_s * 1000;
    let mut all = Vec::new();
    for path in &o.histories {
        all.extend(series_of(path, &defaults)?);
    }
    // Hold out every k-th series, failing ones and healthy ones counted apart.
    let every = (1.0 / o.holdout).round().max(2.0) as usize;
    let (failing, healthy): (Vec<&Series>, Vec<&Series>) =
        all.iter().partition(|s| !s.failures.is_empty());
    if failing.len() < 2 {
        bail!(
            "the histories hold {} instance series that fail: at least two are needed (one to train on, one to hold out)",
            failing.len()
        );
    }
    let mut train = Vec::new();
    let mut held = Vec::new();
    for group in [&failing, &healthy] {
        for (i, s) in group.iter().enumerate() {
            // Offset by one so that the first failing series trains and the second is held.
            if (i + 1).is_multiple_of(every) {
                held.push(*s);
            } else {
                train.push(*s);
            }
        }
    }
    // At least one failing series is held out (two or more fail, checked above).
    if !held.iter().any(|s| !s.failures.is_empty())
        && let Some(at) = train.iter().rposition(|s| !s.failures.is_empty())
    {
        held.push(train.remove(at));
    }
    let model = fit(&train, horizon_ms)?;
    let ticks = defaults.ticks;
    let (threshold, trained) = (1..20)
        .map(|k| k as f64 * 0.05)
        .map(|t| (t, evaluate(&model, t, ticks, &train, horizon_ms)))
        .fold(
            (0.5, evaluate(&model, 0.5, ticks, &train, horizon_ms)),
            |best, (t, s)| {
                if s.f1() > best.1.f1() { (t, s) } else { best }
            },
        );
    let held_out = evaluate(&model, threshold, ticks, &held, horizon_ms);
    let default_model = Model {
        weights: defaults.weights.clone(),
        bias: defaults.bias,
    };
    let default_held = evaluate(&default_model, defaults.threshold, ticks, &held, horizon_ms);
    let points: usize = all.iter().map(|s| s.points.len()).sum();
    let mut out = String::new();
    writeln!(
        out,
        "history          {} files, {} instance series ({} fail), {points} points",
        o.histories.len(),
        all.len(),
        failing.len()
    )?;
    writeln!(
        out,
        "split            {} series to train on, {} held out: {}",
        train.len(),
        held.len(),
        held.iter()
            .map(|s| s.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    for (name, w) in FEATURES.iter().zip(&model.weights) {
        writeln!(out, "weight           {name:<18} {w:>9.3}")?;
    }
    writeln!(out, "bias             {:.3}", model.bias)?;
    writeln!(
        out,
        "threshold        {threshold:.2} (best on the training series: {})",
        trained.describe()
    )?;
    writeln!(out, "held out         {}", held_out.describe())?;
    writeln!(
        out,
        "default weights  {} (held out)",
        default_held.describe()
    )?;
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|w| format!("{w:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = format!(
        "weights = [{}]\nbias = {:.4}\nthreshold = {threshold:.2}\nhorizon_s = {}\n",
        fmt(&model.weights),
        model.bias,
        o.horizon_s
    );
    let header = format!(
        "# Written by `shardcast train` from {} history files ({points} points). Held out: {}.\n# Features: {}.\n",
        o.histories.len(),
        held_out.describe(),
        FEATURES.join(", ")
    );
    let text = if o.plain {
        format!("{header}{body}")
    } else {
        format!("{header}[failure]\n{body}")
    };
    std::fs::write(&o.out, text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", o.out.display()))?;
    writeln!(out, "settings         {}", o.out.display())?;
    Ok(out)
}
