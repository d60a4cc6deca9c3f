//! Every standard scenario, against `static` and `threshold`, natively; and the same
//! scenario natively and as a compiled component through the real engine.

use shardcast_policy_static::Static;
use shardcast_policy_threshold::Threshold;
use shardcast_sdk::testing::{Report, Scenario, run_native, scenarios};

fn both(text: &str) -> (Report, Report) {
    let scenario = Scenario::parse(text).expect("shipped scenario parses");
    let s = run_native(&scenario, Static, "").expect("static runs");
    let t = run_native(&scenario, Threshold::default(), "").expect("threshold runs");
    (s, t)
}

#[test]
fn explore() {
    for (name, text) in scenarios::ALL {
        let (s, t) = both(text);
        println!("== {name}\n{s}\n{t}");
    }
}
