//! Requests that name keys: passing the migration gate, routing to the owner, splitting
//! multi-key commands by instance, fanning out, and SCAN/KEYS across instances.

use super::*;

impl Session {
    /// Pass the gate for `keys` of `req`: wait while any of their slots is held (within the
    /// hold bound, else a retryable error), and for a write count it in flight, returning
    /// its guard. A session's own WATCH keeps its slot from cutting over, so requests on
    /// that slot pass without waiting.
    pub(super) async fn pass_gate(
        &self,
        req: &Request,
        keys: &[usize],
        write: bool,
    ) -> Result<Option<WriteGuard>, Frame> {
        let keys: Vec<&Bytes> = keys.iter().filter_map(|&i| req.args.get(i)).collect();
        self.pass_gate_keys(keys, write).await
    }

    /// [`Session::pass_gate`] for keys gathered from several requests (a transaction's),
    /// counted together so that no part waits at the gate while another is counted.
    pub(super) async fn pass_gate_keys(
        &self,
        keys: Vec<&Bytes>,
        write: bool,
    ) -> Result<Option<WriteGuard>, Frame> {
        let gate = &self.shared.gate;
        let covered = |s: u16| self.watch_guards.iter().any(|g| g.covers(s));
        if !keys.is_empty() && keys.iter().all(|k| covered(slot(k))) {
            return Ok(write.then(|| gate.force_write(self.state.db, &keys)));
        }
        let bound = Duration::from_millis(self.shared.limits.hold_ms);
        loop {
            let held = if write {
                match gate.begin_write(self.state.db, &keys) {
                    Ok(g) => return Ok(Some(g)),
                    Err(s) => s,
                }
            } else {
                match keys
                    .iter()
                    .map(|k| slot(k))
                    .find(|&s| gate.state(s) == SlotState::Held)
                {
                    None => return Ok(None),
                    Some(s) => s,
                }
            };
            if !gate.wait_open(held, bound).await {
                return Err(err(format!(
                    "TRYAGAIN slot {held} is moving between instances and was held for {} ms; retry",
                    bound.as_millis()
                )));
            }
        }
    }

    /// Route a request whose keys share one slot, once it passed the gate.
    pub(super) async fn keyed(
        &mut self,
        req: &Request,
        keys: &[usize],
        write: Option<WriteGuard>,
        blocking: bool,
    ) -> Pending {
        match self.owner(req, keys) {
            Ok(id) => {
                let first = keys
                    .first()
                    .and_then(|&k| req.args.get(k))
                    .map(|k| slot(k))
                    .unwrap_or(0);
                let hit = Hit {
                    write: is_write(req),
                    bytes_in: req.raw.len() as u64,
                };
                self.shared.counters.hit(first, id, hit);
                if let Some(w) = self.watched
                    && w != id
                {
                    return Pending::Local(err(
                        "CROSSSLOT Keys in request don't hash to the same slot as the WATCHed keys",
                    ));
                }
                let timing = Timing {
                    slot: first,
                    start: Instant::now(),
                    _write: write,
                };
                let reply = self.reply_to(req);
                // Anything not flagged readonly (scripts too) counts for a later WAIT.
                if reply.effect == Effect::Write {
                    self.wrote_to(id);
                }
                if blocking {
                    self.forward_pinned(id, &req.raw, Some(timing), reply).await
                } else {
                    self.forward(id, &req.raw, Some(timing), reply).await
                }
            }
            Err(e) => Pending::Local(e),
        }
    }

    pub(super) async fn split(&mut self, req: &Request, merge: Merge, keys: &[usize]) -> Pending {
        let write = match self.pass_gate(req, keys, may_write(req)).await {
            Ok(w) => w,
            Err(e) => return Pending::Local(e),
        };
        let effect = Effect::of(req);
        let table = self.shared.topology.current();
        let stride = if merge == Merge::Ok { 2 } else { 1 };
        let mut groups: Vec<(InstanceId, Vec<usize>)> = Vec::new();
        let hit = Hit {
            write: is_write(req),
            bytes_in: (req.raw.len() / keys.len().max(1)) as u64,
        };
        for (pos, &k) in keys.iter().enumerate() {
            let key_slot = slot(&req.args[k]);
            let id = table.owner(key_slot);
            self.shared.counters.hit(key_slot, id, hit);
            if effect == Effect::Write {
                self.wrote_to(id);
            }
            match groups.iter_mut().find(|(g, _)| *g == id) {
                Some((_, v)) => v.push(pos),
                None => groups.push((id, vec![pos])),
            }
        }
        // Release the table before waiting on anything.
        drop(table);
        let mut parts = Vec::with_capacity(groups.len());
        for (id, positions) in groups {
            let mut args = vec![req.args[0].clone()];
            for &pos in &positions {
                let k = keys[pos];
                args.extend(req.args[k..k + stride].iter().cloned());
            }
            let sub = Request::from_args(args);
            match self.send(id, &sub.raw).await {
                Ok(t) => parts.push((id, positions, t)),
                Err(e) => {
                    return Pending::Gather(merge, parts, keys.len(), write, Some(e), effect);
                }
            }
        }
        Pending::Gather(merge, parts, keys.len(), write, None, effect)
    }

    pub(super) async fn fan_out(&mut self, req: &Request, kind: FanOut) -> Pending {
        let effect = Effect::of(req);
        let mut parts = Vec::new();
        for id in self.shared.topology.serving() {
            if effect == Effect::Write {
                self.wrote_to(id);
            }
            match self.send(id, &req.raw).await {
                Ok(t) => parts.push((id, t)),
                Err(e) => return Pending::FanOut(kind, parts, Some(e), effect),
            }
        }
        Pending::FanOut(kind, parts, None, effect)
    }

    /// SCAN across instances, one instance after another in id order. The cursor says
    /// where the walk is ([`ScanCursor`]): which instance, that instance's own cursor, and
    /// the table the walk last saw. When a segment has since moved onto an instance already
    /// walked (or the table is too old to tell), the walk starts over, so no key that
    /// exists throughout is missed (as with Redis, a key may be returned twice).
    pub(super) async fn scan(&mut self, req: &Request) -> Pending {
        let Some(cursor) = req
            .args
            .get(1)
            .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok())
        else {
            return Pending::Local(err("ERR invalid cursor"));
        };
        let topology = &self.shared.topology;
        let serving = topology.serving();
        let now = topology.table();
        let at = ScanCursor::decode(cursor);
        let restart = cursor != 0
            && topology
                .table_at(at.epoch16)
                .is_none_or(|then| moved_behind(&then, &now, at.instance, at.inner != 0));
        let (id, inner) = match serving.iter().find(|&&i| i >= at.instance) {
            _ if restart => match serving.first() {
                Some(&first) => (first, 0),
                None => return Pending::Local(empty_scan()),
            },
            Some(&i) if cursor == 0 || i == at.instance => (i, at.inner),
            Some(&i) => (i, 0),
            None => return Pending::Local(empty_scan()),
        };
        let mut args = req.args.clone();
        args[1] = Bytes::from(inner.to_string());
        let sub = Request::from_args(args);
        match self.send(id, &sub.raw).await {
            // The next cursor names the table this step was routed by.
            Ok(t) => Pending::Scan(id, t, now.epoch as u16),
            Err(e) => Pending::Local(e),
        }
    }

    /// The keys of `keys` (as an instance listed them) whose slots instance `id` owns: a
    /// migration's partial copy on its target, or an old copy awaiting cleanup, is not
    /// listed twice.
    pub(super) fn owned(&self, id: InstanceId, keys: Vec<Frame>) -> Vec<Frame> {
        let table = self.shared.topology.current();
        keys.into_iter()
            .filter(|k| match k {
                Frame::Bulk(Some(k)) => table.owner(slot(k)) == id,
                _ => true,
            })
            .collect()
    }
}

/// Where a SCAN across instances is: `inner << 24 | epoch16 << 8 | instance`, so that the
/// cursor stays a 64-bit number as clients expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ScanCursor {
    /// The instance being walked.
    pub instance: InstanceId,
    /// The low 16 bits of the table epoch the walk last saw.
    pub epoch16: u16,
    /// The instance's own cursor (Redis cursors fit 40 bits for any real keyspace).
    pub inner: u64,
}

impl ScanCursor {
    pub(super) fn decode(cursor: u64) -> Self {
        ScanCursor {
            instance: (cursor & 0xff) as InstanceId,
            epoch16: (cursor >> 8) as u16,
            inner: cursor >> 24,
        }
    }

    pub(super) fn encode(self) -> u64 {
        (self.inner << 24) | (u64::from(self.epoch16) << 8) | u64::from(self.instance & 0xff)
    }
}

/// An empty final SCAN reply.
fn empty_scan() -> Frame {
    Frame::Array(Some(vec![Frame::bulk("0"), Frame::Array(Some(Vec::new()))]))
}

/// True when some slot owned by `walking` or a later instance in `then` is owned by an
/// earlier instance (already walked) in `now`, or, `midway` through `walking`, moved from a
/// later instance onto it (its walk may have passed those keys): their keys would be missed.
fn moved_behind(
    then: &crate::topology::SegmentTable,
    now: &crate::topology::SegmentTable,
    walking: InstanceId,
    midway: bool,
) -> bool {
    then.epoch != now.epoch
        && (0..crate::proxy::slot::SLOTS).any(|s| {
            let (was, is) = (then.owner(s), now.owner(s));
            (was >= walking && is < walking) || (midway && was > walking && is == walking)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::SegmentTable;

    #[test]
    fn a_cursor_round_trips_and_a_move_behind_the_walk_is_seen() {
        let c = ScanCursor {
            instance: 3,
            epoch16: 0xbeef,
            inner: (1 << 40) - 1,
        };
        assert_eq!(ScanCursor::decode(c.encode()), c);
        let then = SegmentTable::uniform(4, &[0, 1, 2, 3]);
        // Segment 3 moves from instance 3 to instance 0 (walked already when at 2).
        let now = then.with_owner(3, 0);
        assert!(moved_behind(&then, &now, 2, false));
        // Segment 0 moves from instance 0 to instance 3 (ahead of the walk): seen later.
        let ahead = then.with_owner(0, 3);
        assert!(!moved_behind(&then, &ahead, 2, true));
        assert!(!moved_behind(&then, &then, 2, true));
        // Segment 3 moves from instance 3 onto instance 2 while 2 is walked part-way.
        let onto = then.with_owner(3, 2);
        assert!(moved_behind(&then, &onto, 2, true));
        assert!(
            !moved_behind(&then, &onto, 2, false),
            "not yet started on 2"
        );
    }
}
