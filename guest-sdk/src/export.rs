//! The export macros that turn a type implementing the policy traits into a component.
//!
//! `export_predictor!(T)`, `export_planner!(T)` and `export_policy!(T)` pick the WIT world,
//! keep one `T::default()` per instance, and forward each export to the traits. On targets
//! other than wasm32 they expand to nothing, so the same crate also builds natively for
//! tests and benches.

/// Glue used by the export macros. Not part of the public API.
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod glue {
    use std::cell::RefCell;
    use std::thread::LocalKey;

    use crate::host_view::WasmHost;
    use crate::policy::{Planner, Policy, Predictor};
    use crate::types::{Action, PolicyInfo, Predictions};

    /// The per-instance policy value.
    pub type Cell<P> = LocalKey<RefCell<P>>;

    pub fn describe<P: Policy>(cell: &'static Cell<P>) -> PolicyInfo {
        cell.with(|p| p.borrow().describe())
    }
    pub fn configure<P: Policy>(cell: &'static Cell<P>, settings: String) -> Result<(), String> {
        cell.with(|p| p.borrow_mut().configure(&settings))
    }
    pub fn snapshot<P: Policy>(cell: &'static Cell<P>) -> Vec<u8> {
        cell.with(|p| p.borrow().snapshot())
    }
    pub fn restore<P: Policy>(cell: &'static Cell<P>, state: Vec<u8>) -> Result<(), String> {
        cell.with(|p| p.borrow_mut().restore(&state))
    }
    pub fn predict<P: Predictor>(cell: &'static Cell<P>) -> Predictions {
        cell.with(|p| p.borrow_mut().predict(&WasmHost))
    }
    pub fn plan<P: Planner>(cell: &'static Cell<P>, predictions: Predictions) -> Vec<Action> {
        cell.with(|p| p.borrow_mut().plan(&WasmHost, &predictions))
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_lifecycle {
    ($ty:ty) => {
        ::std::thread_local! {
            static __SHARDCAST_POLICY: ::std::cell::RefCell<$ty> =
                ::std::cell::RefCell::new(<$ty as ::std::default::Default>::default());
        }
        struct __ShardcastExports;
        impl $crate::__bindings::policy_world::exports::shardcast::policy::lifecycle::Guest
            for __ShardcastExports
        {
            fn describe() -> $crate::types::PolicyInfo {
                $crate::export::glue::describe(&__SHARDCAST_POLICY)
            }
            fn configure(
                settings: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::export::glue::configure(&__SHARDCAST_POLICY, settings)
            }
            fn snapshot() -> ::std::vec::Vec<u8> {
                $crate::export::glue::snapshot(&__SHARDCAST_POLICY)
            }
            fn restore(
                state: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::export::glue::restore(&__SHARDCAST_POLICY, state)
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_forecast {
    () => {
        impl $crate::__bindings::policy_world::exports::shardcast::policy::forecast::Guest
            for __ShardcastExports
        {
            fn predict() -> $crate::types::Predictions {
                $crate::export::glue::predict(&__SHARDCAST_POLICY)
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_placement {
    () => {
        impl $crate::__bindings::policy_world::exports::shardcast::policy::placement::Guest
            for __ShardcastExports
        {
            fn plan(
                predictions: $crate::types::Predictions,
            ) -> ::std::vec::Vec<$crate::types::Action> {
                $crate::export::glue::plan(&__SHARDCAST_POLICY, predictions)
            }
        }
    };
}

/// Export a [`Predictor`](crate::Predictor) as a component of world `predictor`.
///
/// The type must also implement [`Default`] and [`Policy`](crate::Policy).
#[macro_export]
macro_rules! export_predictor {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__export_lifecycle!($ty);
            $crate::__export_forecast!();
            $crate::__bindings::policy_world::exports::shardcast::policy::lifecycle::__export_shardcast_policy_lifecycle_0_1_0_cabi!(
                __ShardcastExports with_types_in $crate::__bindings::policy_world::exports::shardcast::policy::lifecycle
            );
            $crate::__bindings::policy_world::exports::shardcast::policy::forecast::__export_shardcast_policy_forecast_0_1_0_cabi!(
                __ShardcastExports with_types_in $crate::__bindings::policy_world::exports::shardcast::policy::forecast
            );
            #[unsafe(link_section = "component-type:shardcast-sdk:predictor")]
            #[used]
            static __SHARDCAST_COMPONENT_TYPE: [u8; $crate::__bindings::PREDICTOR_TYPE_LEN] =
                $crate::__bindings::PREDICTOR_TYPE;
        };
    };
}

/// Export a [`Planner`](crate::Planner) as a component of world `planner`.
///
/// The type must also implement [`Default`] and [`Policy`](crate::Policy).
#[macro_export]
macro_rules! export_planner {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__export_lifecycle!($ty);
            $crate::__export_placement!();
            $crate::__bindings::policy_world::exports::shardcast::policy::lifecycle::__export_shardcast_policy_lifecycle_0_1_0_cabi!(
                __ShardcastExports with_types_in $crate::__bindings::policy_world::exports::shardcast::policy::lifecycle
            );
            $crate::__bindings::policy_world::exports::shardcast::policy::placement::__export_shardcast_policy_placement_0_1_0_cabi!(
                __ShardcastExports with_types_in $crate::__bindings::policy_world::exports::shardcast::policy::placement
            );
            #[unsafe(link_section = "component-type:shardcast-sdk:planner")]
            #[used]
            static __SHARDCAST_COMPONENT_TYPE: [u8; $crate::__bindings::PLANNER_TYPE_LEN] =
                $crate::__bindings::PLANNER_TYPE;
        };
    };
}

/// Export a type implementing both [`Predictor`](crate::Predictor) and
/// [`Planner`](crate::Planner) as a component of world `policy`.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__export_lifecycle!($ty);
            $crate::__export_forecast!();
            $crate::__export_placement!();
            $crate::__bindings::policy_world::__export_policy_world!(
                __ShardcastExports with_types_in $crate::__bindings::policy_world
            );
        };
    };
}
