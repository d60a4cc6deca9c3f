//! Per-policy limits, read from the reserved `[limits]` table of a policy's settings.
//!
//! The operator writes one TOML document per policy; the host takes `[limits]` out of it
//! and hands the rest to the policy's `configure`. Limits can be raised up to the host's
//! ceilings, never past them.

use serde::{Deserialize, Serialize};

use super::error::Error;

/// The deadline of a call when none is configured, in milliseconds.
pub const DEFAULT_DEADLINE_MS: u64 = 50;
/// The memory cap when none is configured, in MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 64;
/// The longest deadline a policy may ask for, in milliseconds.
pub const MAX_DEADLINE_MS: u64 = 10_000;
/// A policy's log budget per tick when none is configured, in bytes.
pub const DEFAULT_LOG_BYTES_PER_TICK: u64 = 4096;
/// The largest log budget a policy may ask for, in bytes per tick.
pub const MAX_LOG_BYTES_PER_TICK: u64 = 1 << 20;
/// The largest snapshot when none is configured, in MiB.
pub const DEFAULT_SNAPSHOT_MIB: u64 = 16;
/// The largest snapshot a policy may ask for, in MiB.
pub const MAX_SNAPSHOT_MIB: u64 = 256;

/// What one policy may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Epoch deadline of every call, in milliseconds.
    pub deadline_ms: u64,
    /// Memory cap per linear memory, in MiB.
    pub memory_mib: u64,
    /// Most actions one `plan` may return before the output counts as absurd.
    pub max_actions: u32,
    /// Most forecasts (load plus failure) one `predict` may return.
    pub max_forecasts: u32,
    /// Bytes of log messages and output lines written per tick; the rest is counted and
    /// reported as suppressed.
    pub log_bytes_per_tick: u64,
    /// Largest state `snapshot` may hand to a successor, in MiB.
    pub snapshot_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline_ms: DEFAULT_DEADLINE_MS,
            memory_mib: DEFAULT_MEMORY_MIB,
            max_actions: 1024,
            max_forecasts: 262_144,
            log_bytes_per_tick: DEFAULT_LOG_BYTES_PER_TICK,
            snapshot_mib: DEFAULT_SNAPSHOT_MIB,
        }
    }
}

/// Split a policy's settings into its limits and the TOML the policy itself receives.
/// `max_memory_mib` is the host's ceiling.
pub fn split_settings(settings: &str, max_memory_mib: u64) -> Result<(Limits, String), Error> {
    let mut table: toml::Table = toml::from_str(settings).map_err(|e| {
        Error::Settings(format!(
            "settings are not valid TOML: {}",
            e.to_string().trim_end()
        ))
    })?;
    let limits = match table.remove("limits") {
        None => Limits::default(),
        Some(value) => value.try_into::<Limits>().map_err(|e| {
            Error::Settings(format!("invalid [limits]: {}", e.to_string().trim_end()))
        })?,
    };
    if limits.deadline_ms == 0 || limits.deadline_ms > MAX_DEADLINE_MS {
        return Err(Error::Settings(format!(
            "invalid [limits]: deadline_ms must be between 1 and {MAX_DEADLINE_MS}, got {}",
            limits.deadline_ms
        )));
    }
    if limits.memory_mib == 0 || limits.memory_mib > max_memory_mib {
        return Err(Error::Settings(format!(
            "invalid [limits]: memory_mib must be between 1 and the host's ceiling of {max_memory_mib}, got {}",
            limits.memory_mib
        )));
    }
    if limits.log_bytes_per_tick > MAX_LOG_BYTES_PER_TICK {
        return Err(Error::Settings(format!(
            "invalid [limits]: log_bytes_per_tick must be at most {MAX_LOG_BYTES_PER_TICK}, got {}",
            limits.log_bytes_per_tick
        )));
    }
    if limits.snapshot_mib == 0 || limits.snapshot_mib > MAX_SNAPSHOT_MIB {
        return Err(Error::Settings(format!(
            "invalid [limits]: snapshot_mib must be between 1 and {MAX_SNAPSHOT_MIB}, got {}",
            limits.snapshot_mib
        )));
    }
    let rest = if table.is_empty() {
        String::new()
    } else {
        toml::to_string(&table)
            .map_err(|e| Error::Settings(format!("cannot re-encode settings: {e}")))?
    };
    Ok((limits, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_out_and_the_rest_goes_to_the_policy() {
        let (limits, rest) =
            split_settings("high = 3.0\n[limits]\ndeadline_ms = 200\n", 1024).expect("valid");
        assert_eq!(limits.deadline_ms, 200);
        assert_eq!(limits.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(rest.trim(), "high = 3.0");
        let (limits, rest) = split_settings("", 1024).expect("empty");
        assert_eq!(limits, Limits::default());
        assert!(rest.is_empty());
    }

    #[test]
    fn bad_limits_name_the_key() {
        for (toml, needle) in [
            ("[limits]\ndeadline_ms = 0", "deadline_ms"),
            ("[limits]\nmemory_mib = 4096", "memory_mib"),
            ("[limits]\nfuel = 1", "fuel"),
            ("[limits]\nsnapshot_mib = 0", "snapshot_mib"),
            (
                "[limits]\nlog_bytes_per_tick = 99999999999",
                "log_bytes_per_tick",
            ),
            ("high = ", "not valid TOML"),
        ] {
            let err = split_settings(toml, 1024).expect_err(toml).to_string();
            assert!(err.contains(needle), "{toml}: {err}");
        }
    }
}
