//! Encodes the `component-type` custom sections of the `predictor` and `planner` worlds.
//!
//! wit-bindgen emits the section of the world it generates (`policy`); the SDK's export
//! macros place one of these instead for single-purpose policies.

use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wit = manifest.join("wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(&wit)
        .unwrap_or_else(|e| panic!("cannot parse the WIT in {}: {e:#}", wit.display()));
    for world in ["predictor", "planner"] {
        let id = resolve
            .select_world(&[package], Some(world))
            .unwrap_or_else(|e| panic!("WIT has no world `{world}`: {e:#}"));
        let bytes = wit_component::metadata::encode(
            &resolve,
            id,
            wit_component::StringEncoding::UTF8,
            None,
            false,
        )
        .unwrap_or_else(|e| panic!("cannot encode world `{world}`: {e:#}"));
        std::fs::write(out.join(format!("{world}.component-type")), bytes)
            .expect("writing to OUT_DIR");
    }
}
