//! Generated guest bindings for the three policy worlds.
//!
//! Policy authors never touch this module: the SDK re-exports the WIT types as plain Rust
//! types, and the `export_*!` macros write the glue. Bindings are generated once, for world
//! `policy`; a predictor or planner exports only its interfaces and carries its own world's
//! type section (from `build.rs`), so the component has exactly the exports of its world.

/// Bindings for world `policy` (forecast + placement). Owns the shared types and imports.
pub mod policy_world {
    wit_bindgen::generate!({
        world: "policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "shardcast_sdk::__bindings::policy_world",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

/// The `component-type` custom section of world `predictor`, encoded by `build.rs`. The
/// export macros place it in the policy's own crate, so only the chosen world's exports are
/// required of the component.
pub const PREDICTOR_TYPE: [u8; PREDICTOR_TYPE_LEN] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/predictor.component-type"));
/// Length of [`PREDICTOR_TYPE`].
pub const PREDICTOR_TYPE_LEN: usize =
    include_bytes!(concat!(env!("OUT_DIR"), "/predictor.component-type")).len();
/// The `component-type` custom section of world `planner`, encoded by `build.rs`.
pub const PLANNER_TYPE: [u8; PLANNER_TYPE_LEN] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/planner.component-type"));
/// Length of [`PLANNER_TYPE`].
pub const PLANNER_TYPE_LEN: usize =
    include_bytes!(concat!(env!("OUT_DIR"), "/planner.component-type")).len();

pub use policy_world::shardcast::policy::types;
