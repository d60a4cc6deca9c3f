//! `shardcast policy new <name>`: a policy crate that builds to a component and whose tests
//! pass as it is, for an author to change.
//!
//! The crate depends on the SDK by path (this checkout's `guest-sdk`, or `--sdk`). Made
//! inside a Cargo workspace (such as `policies/` of this repository) it joins that
//! workspace; elsewhere it is a workspace of its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What a new policy implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorldKind {
    /// Plans moves (`placement`).
    Planner,
    /// Forecasts (`forecast`).
    Predictor,
    /// Both, in one instance sharing state.
    Policy,
}

impl WorldKind {
    fn name(self) -> &'static str {
        match self {
            WorldKind::Planner => "planner",
            WorldKind::Predictor => "predictor",
            WorldKind::Policy => "policy",
        }
    }
}

/// What to make and where.
#[derive(Debug)]
pub struct Options {
    /// The crate's name (kebab-case).
    pub name: String,
    /// Its world.
    pub world: WorldKind,
    /// Where to make it (default: `./<name>`).
    pub dir: Option<PathBuf>,
    /// The SDK's directory (default: this checkout's `guest-sdk`).
    pub sdk: Option<PathBuf>,
}

const CARGO: &str = include_str!("scaffold/Cargo.toml.tmpl");
const SETTINGS: &str = include_str!("scaffold/settings.toml.tmpl");
const README: &str = include_str!("scaffold/README.md.tmpl");
const PLANNER: &str = include_str!("scaffold/planner.rs.tmpl");
const PREDICTOR: &str = include_str!("scaffold/predictor.rs.tmpl");
const POLICY: &str = include_str!("scaffold/policy.rs.tmpl");
const TEST_PLANNER: &str = include_str!("scaffold/test_planner.rs.tmpl");
const TEST_PREDICTOR: &str = include_str!("scaffold/test_predictor.rs.tmpl");
const TEST_POLICY: &str = include_str!("scaffold/test_policy.rs.tmpl");

/// The settings file's body per world: every key with its default.
fn settings_of(world: WorldKind) -> &'static str {
    match world {
        WorldKind::Planner => {
            "high = 0.8      # load above which an instance sheds a segment\nmax_moves = 1   # most moves per tick\n"
        }
        WorldKind::Predictor => {
            "horizon_ticks = 30  # ticks ahead to forecast\nconfidence = 0.9    # of the interval\nalpha = 0.3         # level smoothing\nbeta = 0.1          # trend smoothing\n"
        }
        WorldKind::Policy => {
            "high = 0.8          # forecast load above which an instance sheds a segment\nhorizon_ticks = 30  # ticks ahead to forecast\nconfidence = 0.9    # of the interval\nmax_moves = 1       # most moves per tick\n"
        }
    }
}

/// `foo-bar` → `FooBar`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "`{name}` is not a policy name: use lowercase letters, digits and `-`, starting with a letter (e.g. hot-shed)"
        );
    }
    Ok(())
}

/// True when a directory above `dir` holds a Cargo workspace.
fn in_workspace(dir: &Path) -> bool {
    dir.ancestors().skip(1).any(|a| {
        std::fs::read_to_string(a.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
    })
}

/// The default SDK: this checkout's `guest-sdk`.
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk")
}

/// Make the crate; returns what to print.
pub fn run(o: &Options) -> Result<String> {
    check_name(&o.name)?;
    let dir = o.dir.clone().unwrap_or_else(|| PathBuf::from(&o.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty; choose another directory with --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("src"))
        .and_then(|()| std::fs::create_dir_all(dir.join("tests")))
        .and_then(|()| std::fs::create_dir_all(dir.join("scenarios")))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("{}", dir.display()))?;
    let sdk = o.sdk.clone().unwrap_or_else(default_sdk);
    let sdk = std::fs::canonicalize(&sdk).with_context(|| {
        format!(
            "the SDK is not at {}; give its directory with --sdk (the guest-sdk directory of a shardcast checkout)",
            sdk.display()
        )
    })?;
    let joins = in_workspace(&dir);
    let crate_name = o.name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", &o.name)
            .replace("{{crate}}", &crate_name)
            .replace("{{Type}}", &type_name(&o.name))
            .replace("{{world}}", o.world.name())
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{settings}}", settings_of(o.world))
            .replace(
                "{{workspace}}",
                if joins {
                    ""
                } else {
                    "\n# A workspace of its own, outside any other.\n[workspace]\n"
                },
            )
    };
    let (lib, test) = match o.world {
        WorldKind::Planner => (PLANNER, TEST_PLANNER),
        WorldKind::Predictor => (PREDICTOR, TEST_PREDICTOR),
        WorldKind::Policy => (POLICY, TEST_POLICY),
    };
    let files: [(&str, String); 6] = [
        ("Cargo.toml", fill(CARGO)),
        ("settings.toml", fill(SETTINGS)),
        ("README.md", fill(README)),
        ("src/lib.rs", fill(lib)),
        ("tests/simulator.rs", fill(test)),
        (
            "scenarios/flash-crowd.toml",
            shardcast_sdk::testing::scenarios::FLASH_CROWD.to_owned(),
        ),
    ];
    for (path, text) in &files {
        let path = dir.join(path);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = format!(
        "made {} (world `{}`) in {}\n",
        o.name,
        o.world.name(),
        dir.display()
    );
    if joins {
        out.push_str("it is inside a Cargo workspace: add it to the workspace's `members` unless a glob covers it\n");
    }
    out.push_str(&format!(
        "next:\n  cd {}\n  cargo test\n  cargo build --release --target wasm32-wasip2\n  shardcast policy dev .\n",
        dir.display()
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types_and_bad_names_are_refused() {
        assert_eq!(type_name("hot-shed"), "HotShed");
        assert_eq!(type_name("a_b-c"), "ABC");
        assert!(check_name("Hot").is_err());
        assert!(check_name("1x").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("hot-shed2").is_ok());
    }
}
