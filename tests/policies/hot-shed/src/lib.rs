use shardcast_sdk::prelude::*;

#[derive(Default)]
pub struct HotShed;

impl Policy for HotShed {
    fn describe(&self) -> PolicyInfo {
        info("hot-shed", "0.1.0", "Sheds hot segments.")
    }
}

impl Planner for HotShed {
    fn plan(&mut self, host: &dyn HostView, _p: &Predictions) -> Vec<Action> {
        let (instances, segments) = (host.instances(), host.segments());
        let load = host.instances_latest(Metric::Load);
        let ops = host.segments_latest(Metric::Ops);
        let active = |i: &usize| instances[*i].state == InstanceState::Active;
        let coolest = (0..load.len())
            .filter(active)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]));
        let mut actions = Vec::new();
        for (i, hot) in instances.iter().enumerate() {
            if load[i] <= 50_000.0 {
                continue;
            }
            let mine = (0..segments.len()).filter(|&j| segments[j].owner == hot.id);
            let hottest = mine.max_by(|&a, &b| ops[a].total_cmp(&ops[b]));
            if let (Some(j), Some(c)) = (hottest, coolest.filter(|&c| c != i)) {
                let (segment, target) = (segments[j].id, instances[c].id);
                actions.push(Action::MoveSegment(MoveSegment { segment, target }));
            }
        }
        actions
    }
}

shardcast_sdk::export_planner!(HotShed);
