//! The standard scenarios shipped with the SDK (`guest-sdk/scenarios/*.toml`).

/// A diurnal cycle with rotating hot tenants.
pub const DIURNAL_TENANTS: &str = include_str!("../../scenarios/diurnal-tenants.toml");
/// A flash crowd: one instance's tenants ramp to 2.5x.
pub const FLASH_CROWD: &str = include_str!("../../scenarios/flash-crowd.toml");
/// The flash crowd's false-alarm twin: the ramp starts, then never comes.
pub const FALSE_ALARM: &str = include_str!("../../scenarios/false-alarm.toml");
/// A hot spot moving across segments, over Zipf θ = 0.99 skew.
pub const MOVING_HOTSPOT: &str = include_str!("../../scenarios/moving-hotspot.toml");
/// An instance degrades (latency, errors, CPU) and then crashes.
pub const DEGRADE_CRASH: &str = include_str!("../../scenarios/degrade-crash.toml");
/// A rolling restart of every instance, each announced ahead.
pub const ROLLING_RESTART: &str = include_str!("../../scenarios/rolling-restart.toml");

/// An instance degrades for only one minute before it crashes.
pub const SHORT_WARNING: &str = include_str!("../../scenarios/short-warning.toml");

/// The whole fleet's load outgrows the active instances; only the standby helps.
pub const FLEET_RAMP: &str = include_str!("../../scenarios/fleet-ramp.toml");
/// Two instances warn and recover; a third degrades and crashes.
pub const WARN_WARN_CRASH: &str = include_str!("../../scenarios/warn-warn-crash.toml");
/// A compressed week of compressed days: two seasonalities, and rotating hot tenants.
pub const WEEKLY_DAILY: &str = include_str!("../../scenarios/weekly-daily.toml");

/// Five compressed days whose peaks outgrow the active instances (not in [`ALL`]: it is
/// meant to be run with [`SEASONAL_SETTINGS`], which tell `predictive` the day's length).
pub const SEASONAL_PEAKS: &str = include_str!("../../scenarios/seasonal/peaks.toml");
/// `predictive`'s settings for [`SEASONAL_PEAKS`].
pub const SEASONAL_SETTINGS: &str = include_str!("../../scenarios/seasonal/predictive.toml");
/// Client sessions that fade out and leave, about twice an hour each (not in [`ALL`]:
/// its measure is session churn prediction, which the comparison table does not show).
pub const SESSION_CHURN: &str = include_str!("../../scenarios/sessions/churn.toml");
/// Every standard scenario, by file name.
pub const ALL: [(&str, &str); 10] = [
    ("diurnal-tenants", DIURNAL_TENANTS),
    ("flash-crowd", FLASH_CROWD),
    ("false-alarm", FALSE_ALARM),
    ("moving-hotspot", MOVING_HOTSPOT),
    ("degrade-crash", DEGRADE_CRASH),
    ("rolling-restart", ROLLING_RESTART),
    ("short-warning", SHORT_WARNING),
    ("fleet-ramp", FLEET_RAMP),
    ("warn-warn-crash", WARN_WARN_CRASH),
    ("weekly-daily", WEEKLY_DAILY),
];
