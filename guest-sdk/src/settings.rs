//! Parsing policy settings (TOML) with errors that name the offending key.

use serde::de::DeserializeOwned;

/// Parse `settings` as TOML into `T`. An empty string parses as an empty table, so `T`'s
/// serde defaults apply. Use `#[serde(deny_unknown_fields)]` on `T` so that a misspelt key
/// is an error rather than silently ignored.
pub fn parse<T: DeserializeOwned>(settings: &str) -> Result<T, String> {
    toml::from_str(settings).map_err(|e| format!("invalid settings: {}", e.to_string().trim_end()))
}

/// Accept only empty settings; for policies that take none.
pub fn reject_unless_empty(settings: &str) -> Result<(), String> {
    let table: toml::Table = parse(settings)?;
    match table.keys().next() {
        None => Ok(()),
        Some(key) => Err(format!(
            "invalid settings: unknown key `{key}` (this policy takes no settings)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct S {
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn empty_settings_use_defaults() {
        assert_eq!(parse::<S>("").map(|s| s.n), Ok(0));
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse::<S>("m = 1").expect_err("unknown key");
        assert!(err.contains("unknown field `m`"), "{err}");
        let err = parse::<S>("n = \"x\"").expect_err("wrong type");
        assert!(err.contains("n"), "{err}");
        let err = reject_unless_empty("x = 1").expect_err("no settings");
        assert!(err.contains("`x`"), "{err}");
    }
}
