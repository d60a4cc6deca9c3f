//! Merging the replies of a command sent to every serving instance ([`FanOut`]): sums,
//! unions, per-name sums, element-wise agreement, and the `# Shardcast` section of `INFO`.
//!
//! Pure functions over frames; the session sends the command and reads the replies.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::command::FanOut;
use super::resp::Frame;

/// The items of an array, set or RESP3 push.
fn items(f: Frame) -> Vec<Frame> {
    match f {
        Frame::Array(Some(v)) | Frame::Set(v) | Frame::Push(v) => v,
        _ => Vec::new(),
    }
}

fn integer(f: &Frame) -> i64 {
    match f {
        Frame::Integer(n) => *n,
        _ => 0,
    }
}

/// Merge `frames` (one per instance, none an error) as `kind` says; `section` is the
/// proxy's own INFO section, asked for only by [`FanOut::Info`].
pub fn merge(kind: FanOut, frames: Vec<Frame>, section: impl FnOnce() -> String) -> Frame {
    match kind {
        FanOut::SumIntegers => Frame::Integer(frames.iter().map(integer).sum()),
        FanOut::Max => Frame::Integer(frames.iter().map(integer).max().unwrap_or(0)),
        FanOut::AllOk | FanOut::AllOkNamed => Frame::ok(),
        FanOut::Keys | FanOut::Concat => {
            Frame::Array(Some(frames.into_iter().flat_map(items).collect()))
        }
        FanOut::Union => {
            let mut seen = std::collections::HashSet::new();
            Frame::Array(Some(
                frames
                    .into_iter()
                    .flat_map(items)
                    .filter(|f| seen.insert(f.to_bytes()))
                    .collect(),
            ))
        }
        FanOut::SumPairs => {
            let mut order: Vec<Frame> = Vec::new();
            let mut counts: HashMap<Bytes, i64> = HashMap::new();
            for f in frames {
                for pair in items(f).chunks(2) {
                    if let [name, count] = pair {
                        let k = name.to_bytes();
                        if !counts.contains_key(&k) {
                            order.push(name.clone());
                        }
                        *counts.entry(k).or_default() += integer(count);
                    }
                }
            }
            Frame::Array(Some(
                order
                    .into_iter()
                    .flat_map(|name| {
                        let n = counts[&name.to_bytes()];
                        [name, Frame::Integer(n)]
                    })
                    .collect(),
            ))
        }
        FanOut::AllOf => {
            let lists: Vec<Vec<Frame>> = frames.into_iter().map(items).collect();
            let len = lists.iter().map(Vec::len).min().unwrap_or(0);
            Frame::Array(Some(
                (0..len)
                    .map(|i| Frame::Integer(i64::from(lists.iter().all(|l| integer(&l[i]) == 1))))
                    .collect(),
            ))
        }
        FanOut::FirstNonNull => frames
            .into_iter()
            .find(|f| !matches!(f, Frame::Bulk(None) | Frame::Null))
            .unwrap_or(Frame::Bulk(None)),
        FanOut::Info => {
            let (text, verbatim) = match frames.into_iter().next() {
                Some(Frame::Bulk(Some(b))) => (b, false),
                Some(Frame::Verbatim(b)) => (b, true),
                _ => (Bytes::new(), false),
            };
            let mut out = BytesMut::from(&text[..]);
            let extra = section();
            if !extra.is_empty() {
                if !out.is_empty() && !out.ends_with(b"\r\n\r\n") {
                    out.extend_from_slice(if out.ends_with(b"\r\n") {
                        b"\r\n"
                    } else {
                        b"\r\n\r\n"
                    });
                }
                out.extend_from_slice(extra.as_bytes());
            }
            if verbatim {
                Frame::Verbatim(out.freeze())
            } else {
                Frame::Bulk(Some(out.freeze()))
            }
        }
    }
}

/// True when an `INFO` with these section arguments asks for the proxy's section.
pub fn wants_section(args: &[Bytes]) -> bool {
    args.len() <= 1
        || args[1..].iter().any(|a| {
            ["shardcast", "all", "everything", "default"]
                .iter()
                .any(|s| a.eq_ignore_ascii_case(s.as_bytes()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Frame {
        Frame::bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn pairs_sum_by_name_and_unions_drop_repeats() {
        let a = Frame::Array(Some(vec![
            bulk("x"),
            Frame::Integer(1),
            bulk("y"),
            Frame::Integer(0),
        ]));
        let b = Frame::Array(Some(vec![
            bulk("x"),
            Frame::Integer(0),
            bulk("y"),
            Frame::Integer(2),
        ]));
        assert_eq!(
            merge(FanOut::SumPairs, vec![a, b], String::new),
            Frame::Array(Some(vec![
                bulk("x"),
                Frame::Integer(1),
                bulk("y"),
                Frame::Integer(2)
            ]))
        );
        let a = Frame::Array(Some(vec![bulk("c1"), bulk("c2")]));
        let b = Frame::Array(Some(vec![bulk("c2"), bulk("c3")]));
        assert_eq!(
            merge(FanOut::Union, vec![a, b], String::new),
            Frame::Array(Some(vec![bulk("c1"), bulk("c2"), bulk("c3")]))
        );
    }

    #[test]
    fn script_exists_only_where_every_instance_has_it() {
        let a = Frame::Array(Some(vec![Frame::Integer(1), Frame::Integer(1)]));
        let b = Frame::Array(Some(vec![Frame::Integer(1), Frame::Integer(0)]));
        assert_eq!(
            merge(FanOut::AllOf, vec![a, b], String::new),
            Frame::Array(Some(vec![Frame::Integer(1), Frame::Integer(0)]))
        );
    }

    #[test]
    fn info_gets_the_proxys_section_after_the_instances() {
        let merged = merge(
            FanOut::Info,
            vec![bulk("# Server\r\nredis_version:7.0.15\r\n")],
            || "# Shardcast\r\ninstances:3\r\n".into(),
        );
        assert_eq!(
            merged,
            bulk("# Server\r\nredis_version:7.0.15\r\n\r\n# Shardcast\r\ninstances:3\r\n")
        );
        assert!(wants_section(&[Bytes::from_static(b"INFO")]));
        assert!(wants_section(&[
            Bytes::from_static(b"INFO"),
            Bytes::from_static(b"Shardcast")
        ]));
        assert!(!wants_section(&[
            Bytes::from_static(b"INFO"),
            Bytes::from_static(b"server")
        ]));
    }
}
