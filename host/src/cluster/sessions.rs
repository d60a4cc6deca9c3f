//! Client sessions across proxies: each proxy reports its most active sessions with its
//! counters, and the controller adds the other proxies' sessions to its view, so a policy
//! sees every proxy's clients. Instance ids are positions in each proxy's configuration,
//! so a session's pinned instance travels by name.

use shardcast_sdk::types::{Instance, Session};

use super::{SESSIONS_REPORTED, SessionReport};

/// What this proxy reports of `live` (sessions and the commands each ran this tick): the
/// [`SESSIONS_REPORTED`] most active.
pub fn report(live: &[(Session, u64)], instances: &[Instance]) -> Vec<SessionReport> {
    let mut busiest: Vec<&(Session, u64)> = live.iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
    busiest
        .into_iter()
        .take(SESSIONS_REPORTED)
        .map(|(s, ops)| SessionReport {
            pinned: s
                .pinned
                .and_then(|id| instances.get(id as usize))
                .map(|i| i.name.clone()),
            session: Session {
                pinned: None,
                name: cut(&s.name),
                lib: cut(&s.lib),
                ..s.clone()
            },
            ops: *ops,
        })
        .collect()
}

/// Longest client name or library a report carries, in bytes: a client's own strings
/// must not push a report past etcd's request limit.
const MAX_TEXT: usize = 128;

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Another proxy's reported sessions as this proxy's view takes them: pinned instances by
/// this proxy's ids, and the commands counted only when the report is `fresh` (not added
/// before), so a session stays in the view between two reports without being counted
/// twice.
pub fn adopt(
    reported: &[SessionReport],
    fresh: bool,
    instances: &[Instance],
) -> Vec<(Session, u64)> {
    reported
        .iter()
        .map(|r| {
            let pinned = r
                .pinned
                .as_ref()
                .and_then(|name| instances.iter().find(|i| &i.name == name))
                .map(|i| i.id);
            (
                Session {
                    pinned,
                    ..r.session.clone()
                },
                if fresh { r.ops } else { 0 },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_sdk::types::InstanceState;

    fn instances(names: &[&str]) -> Vec<Instance> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| Instance {
                id: i as u32,
                name: (*n).into(),
                address: format!("127.0.0.1:{}", 7000 + i),
                zone: String::new(),
                capacity: 1.0,
                state: InstanceState::Active,
            })
            .collect()
    }

    fn session(id: u64, pinned: Option<u32>) -> Session {
        Session {
            id,
            name: format!("client-{id}"),
            lib: String::new(),
            db: 0,
            user: "default".into(),
            protocol: 2,
            pinned,
            in_transaction: false,
            subscriptions: 0,
            connected_at: 0,
        }
    }

    #[test]
    fn the_busiest_sessions_travel_with_their_pinned_instance_by_name() {
        // Proxy A lists a, b, c; proxy B lists them c, a, b: ids differ, names do not.
        let here = instances(&["a", "b", "c"]);
        let there = instances(&["c", "a", "b"]);
        let mut live: Vec<(Session, u64)> =
            (0..300u64).map(|i| (session(i, None), i % 7)).collect();
        live[299].0.name = "é".repeat(1000);
        live.push((session(1000, Some(2)), 500));
        let sent = report(&live, &here);
        assert_eq!(sent.len(), SESSIONS_REPORTED);
        assert_eq!(sent[0].session.id, 1000, "the busiest first");
        assert_eq!(sent[0].pinned.as_deref(), Some("c"));
        assert!(sent.iter().all(|r| r.ops >= 1), "the idlest are left out");
        let long = sent.iter().find(|r| r.session.id == 299).expect("reported");
        assert_eq!(
            long.session.name.len(),
            128,
            "a long name is cut on a character"
        );
        let taken = adopt(&sent, true, &there);
        assert_eq!(taken[0].0.pinned, Some(0), "instance c is id 0 there");
        assert_eq!(taken[0].1, 500);
        let again = adopt(&sent, false, &there);
        assert_eq!(again[0].1, 0, "a report already added counts nothing again");
        assert_eq!(again[0].0.id, 1000, "but the session stays in the view");
    }
}
