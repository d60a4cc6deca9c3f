//! Answering a routed request: forwarding its reply, merging the parts of a split or
//! fanned-out command, skipping a transaction's queued replies.

use super::*;

impl Session {
    /// A non-blocking request's expectation: the request deadline, and `effect`.
    pub(super) fn within(&self, effect: Effect) -> Reply {
        Reply {
            within: Some(Duration::from_millis(self.shared.limits.request_timeout_ms)),
            effect,
        }
    }

    /// Produce the reply for one pending request: raw bytes, or a frame to encode.
    pub(super) async fn answer(
        &mut self,
        p: Pending,
        broken: &mut HashMap<InstanceId, String>,
    ) -> Result<Bytes, Frame> {
        match p {
            Pending::Local(f) => Err(f),
            Pending::Forward(id, t, timing, expect) => {
                let reply = self.read_raw(id, t, broken, expect).await;
                if let (Some(t), Ok(raw)) = (&timing, &reply) {
                    let us = t.start.elapsed().as_micros() as u64;
                    let counters = &self.shared.counters;
                    counters.done(t.slot, id, us, raw.len() as u64);
                }
                reply
            }
            Pending::Exec(id, skip, _writes) => {
                // MULTI's +OK and one +QUEUED (or error) per command; EXEC's reply says
                // what happened, including an abort.
                let expect = self.within(Effect::Write);
                for _ in 0..skip {
                    self.read_raw(id, None, broken, expect).await?;
                }
                self.read_raw(id, None, broken, expect).await
            }
            Pending::Gather(merge, groups, total, _write, unsent, effect) => {
                let expect = self.within(effect);
                let mut values: Vec<Frame> = vec![Frame::Bulk(None); total];
                let mut sum = 0i64;
                let mut failure = unsent;
                let mut ran = false;
                for (id, positions, t) in groups {
                    let part = self.read_frame(id, t, broken, expect).await;
                    ran |= matches!(&part, Ok(f) if !f.is_error());
                    match part {
                        Ok(f) if f.is_error() => failure = failure.or(Some(f)),
                        Ok(Frame::Integer(n)) => sum += n,
                        Ok(Frame::Array(Some(items))) | Ok(Frame::Set(items)) => {
                            for (pos, item) in positions.into_iter().zip(items) {
                                values[pos] = item;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                if let Some(f) = failure {
                    return Err(partly_ran(f, ran, effect));
                }
                Err(match merge {
                    Merge::Values => Frame::Array(Some(values)),
                    Merge::Ok => Frame::ok(),
                    Merge::Sum => Frame::Integer(sum),
                })
            }
            Pending::FanOut(kind, targets, unsent, effect) => {
                let expect = self.within(effect);
                let mut frames = Vec::new();
                let mut failure = unsent;
                let mut refused = Vec::new();
                let mut applied = Vec::new();
                let mut ran = false;
                for (id, t) in targets {
                    let part = self.read_frame(id, t, broken, expect).await;
                    ran |= matches!(&part, Ok(f) if !f.is_error());
                    match part {
                        Ok(f) if f.is_error() => {
                            if kind == FanOut::AllOkNamed {
                                refused.push(format!(
                                    "{}: {}",
                                    self.instance_name(id),
                                    error_text(&f)
                                ));
                            }
                            failure = failure.or(Some(f));
                        }
                        Ok(Frame::Array(Some(keys))) if matches!(kind, FanOut::Keys) => {
                            frames.push(Frame::Array(Some(self.owned(id, keys))))
                        }
                        Ok(f) => {
                            if kind == FanOut::AllOkNamed {
                                applied.push(self.instance_name(id));
                            }
                            frames.push(f)
                        }
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                if kind == FanOut::AllOkNamed && !refused.is_empty() {
                    return Err(err(format!(
                        "ERR refused by {} of {} instances ({}); applied on {}",
                        refused.len(),
                        refused.len() + applied.len(),
                        refused.join("; "),
                        if applied.is_empty() {
                            "none".to_owned()
                        } else {
                            applied.join(", ")
                        }
                    )));
                }
                if let Some(f) = failure {
                    return Err(partly_ran(f, ran, effect));
                }
                Err(crate::proxy::fleet::merge(kind, frames, || {
                    self.info_section()
                }))
            }
            Pending::Scan(id, t, epoch16) => {
                let f = self
                    .read_frame(id, t, broken, self.within(Effect::Read))
                    .await?;
                let Frame::Array(Some(mut parts)) = f else {
                    return Err(f);
                };
                if parts.len() != 2 {
                    return Err(err("ERR unexpected SCAN reply from an instance"));
                }
                // Only the keys this instance owns: a migration's partial copy on its
                // target, or an old copy awaiting cleanup, is not shown twice.
                let keys = match parts.pop().expect("two parts") {
                    Frame::Array(Some(keys)) => Frame::Array(Some(self.owned(id, keys))),
                    other => other,
                };
                let inner = match &parts[0] {
                    Frame::Bulk(Some(b)) => std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0),
                    _ => 0,
                };
                let next = if inner != 0 {
                    keyed::ScanCursor {
                        instance: id,
                        epoch16,
                        inner,
                    }
                    .encode()
                } else {
                    self.shared
                        .topology
                        .serving()
                        .into_iter()
                        .find(|&i| i > id)
                        .map(|instance| {
                            keyed::ScanCursor {
                                instance,
                                epoch16,
                                inner: 0,
                            }
                            .encode()
                        })
                        .unwrap_or(0)
                };
                Err(Frame::Array(Some(vec![
                    Frame::bulk(next.to_string()),
                    keys,
                ])))
            }
        }
    }
}

/// The answer to a write split over instances when one part failed: a `TRYAGAIN` promises
/// that nothing ran, so once another part has run it becomes an outcome-unknown error.
/// An error frame's text.
fn error_text(f: &Frame) -> String {
    match f {
        Frame::Error(b) | Frame::BlobError(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

fn partly_ran(failure: Frame, ran: bool, effect: Effect) -> Frame {
    let retryable = matches!(&failure, Frame::Error(e) if e.starts_with(b"TRYAGAIN"));
    if !(ran && retryable && effect == Effect::Write) {
        return failure;
    }
    let Frame::Error(e) = &failure else {
        return failure;
    };
    err(format!(
        "ERR outcome unknown: part of the command ran, another part did not ({}); read before retrying",
        String::from_utf8_lossy(e)
    ))
}
