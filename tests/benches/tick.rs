//! One policy tick (predict + plan) over a 64-instance, 16,384-segment, 8-metric view, in
//! wasm through the real engine and natively, side by side.
//!
//! Targets: at most 2 ms per tick in wasm, and at most 1.5x native.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use shardcast::engine::{PolicyVersion, Role, SharedView};
use shardcast::native::NativePolicy;
use shardcast_sdk::view::ViewSnapshot;
use shardcast_tests::{artifacts, component, runtime};

fn tick(c: &mut Criterion) {
    let view = Arc::new(ViewSnapshot::synthetic(64, 16_384, 8, 60));
    let shared: SharedView = view.clone();
    let runtime = runtime();
    let policies: [(&str, &str, Box<dyn NativePolicy>); 2] = [
        (
            "threshold",
            artifacts::THRESHOLD,
            Box::new(shardcast_policy_threshold::Threshold::default()),
        ),
        (
            "ewma-scan",
            artifacts::EWMA_SCAN,
            Box::new(shardcast_test_ewma_scan::EwmaScan::default()),
        ),
    ];
    let mut group = c.benchmark_group("tick_64i_16384s_8m");
    for (name, path, mut native) in policies {
        let (_, mut live) =
            PolicyVersion::load(&runtime, &component(path), "", Role::Both).expect("policy loads");
        group.bench_function(format!("{name}/wasm"), |b| {
            b.iter(|| {
                let p = live.predict(shared.clone()).expect("predict");
                live.plan(shared.clone(), &p).expect("plan")
            })
        });
        group.bench_function(format!("{name}/native"), |b| {
            b.iter(|| {
                let p = native.predict(&*view);
                native.plan(&*view, &p)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
