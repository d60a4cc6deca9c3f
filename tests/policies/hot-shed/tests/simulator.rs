use hot_shed::HotShed;
use shardcast_sdk::testing::{Scenario, run_native_planner, scenarios};

#[test]
fn sheds_the_flash_crowd_after_it_starts() {
    let scenario = Scenario::parse(scenarios::FLASH_CROWD).unwrap();
    let report = run_native_planner(&scenario, HotShed, "").unwrap();
    assert!(report.first_move_s.unwrap() >= 600.0, "{report}");
}
