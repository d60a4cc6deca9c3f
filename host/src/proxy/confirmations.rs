//! A subscribed client's view of its subscriptions: the replies redis-server would give to
//! each `(P|S)SUBSCRIBE` and `(P|S)UNSUBSCRIBE`, in request order, each released only once
//! the instances it was sent to have confirmed their part.
//!
//! The instances answer in their own order (a `SUBSCRIBE a b` split over two instances
//! may be confirmed `b` first), and a pattern is confirmed by every serving instance. So
//! the replies are computed here from the sets as the client has asked for them, as Redis
//! computes them, and held until the instance confirmations they wait for have arrived: a
//! client that has read a confirmation knows the instance has subscribed. Pure state; the
//! subscribed-mode loop (`pubsub.rs`) does the I/O.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;
use shardcast_sdk::types::InstanceId;

use super::resp::Frame;

/// Replies to one request, waiting for `outstanding` instance confirmations.
struct Batch {
    id: u64,
    outstanding: usize,
    replies: Vec<Frame>,
}

/// The subscriptions as asked for, and the replies not yet released.
#[derive(Default)]
pub struct Confirmations {
    /// Channels, patterns and shard channels as the client has asked for them.
    pub channels: BTreeSet<Bytes>,
    /// See [`Confirmations::channels`].
    pub patterns: BTreeSet<Bytes>,
    /// See [`Confirmations::channels`].
    pub shard: BTreeSet<Bytes>,
    batches: VecDeque<Batch>,
    /// Per instance, in the order sent: (batch, confirmations it still owes that batch).
    owed: HashMap<InstanceId, VecDeque<(u64, usize)>>,
    next: u64,
    /// RESP3: replies are pushes.
    push: bool,
}

impl Confirmations {
    /// Replies as RESP3 pushes when `push`.
    pub fn new(push: bool) -> Self {
        Confirmations {
            push,
            ..Confirmations::default()
        }
    }

    /// Subscriptions of any kind, as asked for.
    pub fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard.len()
    }

    /// True when no reply is waiting.
    pub fn settled(&self) -> bool {
        self.batches.is_empty()
    }

    /// The names an argument-less `kind` (`UNSUBSCRIBE`, ...) drops: all of its set.
    pub fn all_of(&self, kind: &str) -> Vec<Bytes> {
        self.set(kind).iter().cloned().collect()
    }

    fn set(&self, kind: &str) -> &BTreeSet<Bytes> {
        match kind {
            "PSUBSCRIBE" | "PUNSUBSCRIBE" => &self.patterns,
            "SSUBSCRIBE" | "SUNSUBSCRIBE" => &self.shard,
            _ => &self.channels,
        }
    }

    /// Record `kind names` (upper-case kind; no names: every name of its set), sent as
    /// `sent`: per instance, the confirmations it will answer with. Its replies are
    /// computed now, in argument order.
    pub fn request(&mut self, kind: &str, names: &[Bytes], sent: &[(InstanceId, usize)]) {
        let subscribe = !kind.contains("UNSUB");
        let shard = kind == "SSUBSCRIBE" || kind == "SUNSUBSCRIBE";
        let names: Vec<Bytes> = if names.is_empty() && !subscribe {
            self.all_of(kind)
        } else {
            names.to_vec()
        };
        let lower = Bytes::from(kind.to_ascii_lowercase());
        let mut replies = Vec::new();
        if names.is_empty() {
            replies.push(self.reply(&lower, Frame::Bulk(None), shard));
        }
        for name in names {
            let set = match kind {
                "PSUBSCRIBE" | "PUNSUBSCRIBE" => &mut self.patterns,
                "SSUBSCRIBE" | "SUNSUBSCRIBE" => &mut self.shard,
                _ => &mut self.channels,
            };
            if subscribe {
                set.insert(name.clone());
            } else {
                set.remove(&name);
            }
            replies.push(self.reply(&lower, Frame::Bulk(Some(name)), shard));
        }
        let id = self.next;
        self.next += 1;
        let outstanding = sent.iter().map(|(_, n)| n).sum();
        for &(instance, n) in sent.iter().filter(|(_, n)| *n > 0) {
            self.owed.entry(instance).or_default().push_back((id, n));
        }
        self.batches.push_back(Batch {
            id,
            outstanding,
            replies,
        });
    }

    /// Redis's reply: kind, name, and the count of that kind's family (shard channels for
    /// the shard kinds, channels and patterns for the others).
    fn reply(&self, kind: &Bytes, name: Frame, shard: bool) -> Frame {
        let count = if shard {
            self.shard.len()
        } else {
            self.channels.len() + self.patterns.len()
        };
        let items = vec![
            Frame::Bulk(Some(kind.clone())),
            name,
            Frame::Integer(count as i64),
        ];
        if self.push {
            Frame::Push(items)
        } else {
            Frame::Array(Some(items))
        }
    }

    /// A reply (or a message) due after every reply still waiting.
    pub fn answer(&mut self, frame: Frame) {
        let id = self.next;
        self.next += 1;
        self.batches.push_back(Batch {
            id,
            outstanding: 0,
            replies: vec![frame],
        });
    }

    /// Instance `from` confirmed (or refused) the next name it owes.
    pub fn confirmed(&mut self, from: InstanceId) {
        let Some(queue) = self.owed.get_mut(&from) else {
            return;
        };
        let Some((batch, left)) = queue.front_mut() else {
            return;
        };
        let batch = *batch;
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        if let Some(b) = self.batches.iter_mut().find(|b| b.id == batch) {
            b.outstanding = b.outstanding.saturating_sub(1);
        }
    }

    /// Instance `from` is gone: nothing it owes will come.
    pub fn forget(&mut self, from: InstanceId) {
        for (batch, left) in self.owed.remove(&from).unwrap_or_default() {
            if let Some(b) = self.batches.iter_mut().find(|b| b.id == batch) {
                b.outstanding = b.outstanding.saturating_sub(left);
            }
        }
    }

    /// The replies now due, in request order.
    pub fn ready(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        while self.batches.front().is_some_and(|b| b.outstanding == 0) {
            out.extend(self.batches.pop_front().expect("checked").replies);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn reply(kind: &str, name: Option<&str>, n: i64) -> Frame {
        Frame::Array(Some(vec![
            Frame::bulk(b(kind)),
            Frame::Bulk(name.map(b)),
            Frame::Integer(n),
        ]))
    }

    #[test]
    fn replies_come_in_request_order_once_confirmed() {
        let mut c = Confirmations::new(false);
        // SUBSCRIBE a b: a on instance 0, b on instance 1.
        c.request("SUBSCRIBE", &[b("a"), b("b")], &[(0, 1), (1, 1)]);
        c.request("UNSUBSCRIBE", &[], &[(0, 1), (1, 1)]);
        c.request("SUBSCRIBE", &[b("a")], &[(0, 1)]);
        assert!(c.ready().is_empty());
        c.confirmed(1);
        assert!(c.ready().is_empty(), "a is not confirmed yet");
        c.confirmed(0);
        assert_eq!(
            c.ready(),
            vec![
                reply("subscribe", Some("a"), 1),
                reply("subscribe", Some("b"), 2)
            ]
        );
        c.confirmed(1);
        c.confirmed(0);
        c.confirmed(0);
        assert_eq!(
            c.ready(),
            vec![
                reply("unsubscribe", Some("a"), 1),
                reply("unsubscribe", Some("b"), 0),
                reply("subscribe", Some("a"), 1),
            ]
        );
        assert!(c.settled());
        assert_eq!(c.total(), 1);
    }

    #[test]
    fn a_pattern_waits_for_every_instance_and_an_empty_unsubscribe_answers_nil() {
        let mut c = Confirmations::new(false);
        c.request("PUNSUBSCRIBE", &[], &[]);
        c.request("PSUBSCRIBE", &[b("f*")], &[(0, 1), (1, 1)]);
        assert_eq!(c.ready(), vec![reply("punsubscribe", None, 0)]);
        c.confirmed(0);
        assert!(c.ready().is_empty());
        c.forget(1);
        assert_eq!(c.ready(), vec![reply("psubscribe", Some("f*"), 1)]);
    }
}
