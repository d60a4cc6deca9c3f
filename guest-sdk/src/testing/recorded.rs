//! Recorded series in scenarios: a workload or a failure precursor taken from a CSV file.
//!
//! Two layouts are read:
//! - **two columns**, time then value, with a header. A time column named `t_ms` is in
//!   milliseconds, any other name in seconds (an export from a monitoring system);
//! - **a shardcast history** (`shardcast run` with `[history] file`, or `shardcast sim
//!   --history`): pick the instance by `instance` (its name) and the metric by `column`
//!   (`ops`, `p99_us`, `errors`, `cpu`, `memory_bytes`); the instance's `Crash` rows are
//!   its failure times.
//!
//! Times become seconds from the first point; values between points are interpolated
//! linearly, and before the first or after the last point the nearest value holds.

use std::path::Path;

/// A series read from a file: times in seconds from its first point, values, and the
/// failure times it labels (seconds from the first point).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Times, seconds from the first point, increasing.
    pub t: Vec<f64>,
    /// Values, one per time.
    pub v: Vec<f64>,
    /// Labelled failures (history files: the instance's crashes).
    pub failures: Vec<f64>,
}

impl Series {
    /// Read `path`; `instance` and `column` pick a series out of a shardcast history.
    pub fn load(path: &Path, instance: Option<&str>, column: &str) -> Result<Series, String> {
        let name = path.display();
        let mut reader = csv::Reader::from_path(path)
            .map_err(|e| format!("cannot read recorded series {name}: {e}"))?;
        let header = reader
            .headers()
            .map_err(|e| format!("{name}: {e}"))?
            .clone();
        let history = header.iter().take(3).eq(["kind", "t_ms", "instance"]);
        let col = |wanted: &str| header.iter().position(|h| h == wanted);
        let (time_ms, value_col) = if history {
            let c = col(column).ok_or_else(|| {
                format!("{name}: no column `{column}` in this history (it has {header:?})")
            })?;
            (true, c)
        } else {
            if header.len() < 2 {
                return Err(format!(
                    "{name}: a recorded series needs two columns, time and value"
                ));
            }
            (header.get(0) == Some("t_ms"), 1)
        };
        let instance_col = col("name");
        let mut raw: Vec<(f64, f64)> = Vec::new();
        let mut failures = Vec::new();
        for (n, record) in reader.records().enumerate() {
            let line = n + 2;
            let record = record.map_err(|e| format!("{name}: line {line}: {e}"))?;
            if history {
                let named = instance_col.and_then(|c| record.get(c));
                if instance.is_some_and(|want| named != Some(want)) {
                    continue;
                }
            }
            let number = |i: usize| -> Result<f64, String> {
                let text = record.get(i).unwrap_or("").trim();
                text.parse::<f64>().map_err(|_| {
                    format!(
                        "{name}: line {line}: column {} is not a number: `{text}`",
                        i + 1
                    )
                })
            };
            let t = number(if history { 1 } else { 0 })?;
            let t = if time_ms { t / 1000.0 } else { t };
            if history && record.get(0) == Some("failure") {
                if record.get(10) == Some("Crash") {
                    failures.push(t);
                }
                continue;
            }
            if history && record.get(value_col).is_some_and(|v| v.trim().is_empty()) {
                continue;
            }
            raw.push((t, number(value_col)?));
        }
        if history && instance.is_none() {
            return Err(format!(
                "{name}: a history holds every instance: say which one with `instance`"
            ));
        }
        if raw.is_empty() {
            return Err(format!(
                "{name}: no points{}",
                instance
                    .map(|i| format!(" for instance `{i}`"))
                    .unwrap_or_default()
            ));
        }
        raw.sort_by(|a, b| a.0.total_cmp(&b.0));
        raw.dedup_by(|b, a| a.0 == b.0);
        let t0 = raw[0].0;
        Ok(Series {
            t: raw.iter().map(|p| p.0 - t0).collect(),
            v: raw.iter().map(|p| p.1).collect(),
            failures: failures.into_iter().map(|f| f - t0).collect(),
        })
    }

    /// The value at `t` seconds from the first point.
    pub fn at(&self, t: f64) -> f64 {
        let n = self.t.len();
        if n == 0 {
            return f64::NAN;
        }
        if t <= self.t[0] {
            return self.v[0];
        }
        if t >= self.t[n - 1] {
            return self.v[n - 1];
        }
        let k = self.t.partition_point(|&x| x <= t);
        let (t0, t1, v0, v1) = (self.t[k - 1], self.t[k], self.v[k - 1], self.v[k]);
        v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    }

    /// The last time.
    pub fn end(&self) -> f64 {
        self.t.last().copied().unwrap_or(0.0)
    }

    /// The median of the values at times in `[from, to)`.
    pub fn median_between(&self, from: f64, to: f64) -> Option<f64> {
        let mut v: Vec<f64> = self
            .t
            .iter()
            .zip(&self.v)
            .filter(|(t, v)| **t >= from && **t < to && v.is_finite())
            .map(|(_, v)| *v)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile_free::Dir, std::path::PathBuf) {
        let dir = tempfile_free::Dir::new();
        let path = dir.path.join("series.csv");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    /// A temporary directory without a dev-dependency.
    mod tempfile_free {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU64, Ordering};
                static N: AtomicU64 = AtomicU64::new(0);
                let path = std::env::temp_dir().join(format!(
                    "shardcast-recorded-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).expect("temp dir");
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    #[test]
    fn two_columns_in_seconds_interpolate_and_hold_at_the_ends() {
        let (_d, p) = write("timestamp,value\n100,10\n110,20\n130,0\n");
        let s = Series::load(&p, None, "ops").expect("loads");
        assert_eq!(s.t, vec![0.0, 10.0, 30.0]);
        assert_eq!(s.at(-5.0), 10.0);
        assert_eq!(s.at(5.0), 15.0);
        assert_eq!(s.at(20.0), 10.0);
        assert_eq!(s.at(99.0), 0.0);
    }

    #[test]
    fn a_history_gives_one_instance_column_and_its_crashes() {
        let (_d, p) = write(
            "kind,t_ms,instance,name,state,ops,p99_us,errors,cpu,memory_bytes,failure\n\
             point,1000,0,a,Active,5,100,0,1,1,\n\
             point,1000,1,b,Active,7,300,0,1,1,\n\
             point,3000,0,a,Active,9,200,0,1,1,\n\
             failure,4000,0,a,,,,,,,Crash\n\
             failure,4000,1,b,,,,,,,Crash\n",
        );
        let s = Series::load(&p, Some("a"), "p99_us").expect("loads");
        assert_eq!(s.t, vec![0.0, 2.0]);
        assert_eq!(s.v, vec![100.0, 200.0]);
        assert_eq!(s.failures, vec![3.0]);
        let err = Series::load(&p, None, "ops").expect_err("which instance");
        assert!(err.contains("instance"), "{err}");
        let err = Series::load(&p, Some("a"), "latency").expect_err("no column");
        assert!(err.contains("latency"), "{err}");
    }

    #[test]
    fn a_bad_number_is_named_with_its_line() {
        let (_d, p) = write("t_ms,value\n0,1\n1000,x\n");
        let err = Series::load(&p, None, "ops").expect_err("bad");
        assert!(err.contains("line 3") && err.contains("`x`"), "{err}");
    }
}
