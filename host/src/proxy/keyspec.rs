//! Command metadata as Redis reports it in `COMMAND INFO`: arity, flags, ACL categories and
//! Redis 7 key specifications, and the key positions they give for one request.
//!
//! Pure data and pure functions. [`Spec::from_frame`] reads one entry of a `COMMAND` reply;
//! [`Spec::keys`] follows Redis's own `getKeysUsingKeySpecs` (begin-search, then find-keys)
//! so a request's keys are found where the server itself looks for them. Nothing here
//! decides what the proxy does with a command: that is `command.rs`.

use serde::{Deserialize, Serialize};

use super::resp::Frame;

/// One command (or `container|subcommand`) as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Lower-case name; subcommands are `container|sub`.
    pub name: String,
    /// Argument count including the name: exact when positive, a minimum when negative.
    pub arity: i32,
    /// Command flags (`write`, `readonly`, `blocking`, ...).
    pub flags: Vec<String>,
    /// ACL categories without the `@`.
    pub acl: Vec<String>,
    /// Key specifications, in the server's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeySpec>,
    /// Subcommands of a container command (`XINFO STREAM`, `OBJECT ENCODING`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subcommands: Vec<Spec>,
}

/// One key specification: where its keys begin, and how to find them from there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpec {
    /// Access flags (`RO`, `RW`, `OW`, `RM`, `access`, `update`, `incomplete`, ...).
    pub flags: Vec<String>,
    /// Where the search for the first key begins.
    pub begin: Begin,
    /// How the keys are found from there.
    pub find: Find,
}

/// A key specification's begin-search step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Begin {
    /// The first key is at this argument.
    Index(i32),
    /// The first key follows this keyword, searched from `startfrom` (from the end when
    /// negative).
    Keyword { keyword: String, startfrom: i32 },
    /// Not describable: the command finds its keys itself.
    Unknown,
}

/// A key specification's find-keys step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Find {
    /// Keys up to `lastkey` (relative to the first; from the end when negative), every
    /// `step`; with a `limit`, only that fraction of the remaining arguments.
    Range { lastkey: i32, step: i32, limit: i32 },
    /// The key count is the argument at `keynumidx`; keys start `firstkey` after the
    /// begin position, every `step`.
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        step: i32,
    },
    /// Not describable.
    Unknown,
}

/// Why a request's keys could not be found.
#[derive(Debug, PartialEq, Eq)]
pub enum KeysError {
    /// A key count argument is not a non-negative integer, or counts past the end.
    BadCount,
}

impl Spec {
    /// True when the command carries `flag` (lower case, as Redis prints it).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// True when `args` (name first) has a count this command accepts.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// The positions of the keys in `args` (name first), in specification order.
    pub fn keys(&self, args: &[impl AsRef<[u8]>]) -> Result<Vec<usize>, KeysError> {
        let argc = args.len() as i64;
        let mut keys = Vec::new();
        for spec in &self.keys {
            let Some(first) = spec.begin_at(args) else {
                continue;
            };
            let (first, last, step) = match spec.find {
                Find::Range {
                    lastkey,
                    step,
                    limit,
                } => {
                    let (lastkey, limit) = (i64::from(lastkey), i64::from(limit));
                    let last = if lastkey >= 0 {
                        first + lastkey
                    } else if limit <= 1 {
                        argc + lastkey
                    } else {
                        first + ((argc - first) / limit + lastkey)
                    };
                    (first, last, i64::from(step))
                }
                Find::Keynum {
                    keynumidx,
                    firstkey,
                    step,
                } => {
                    let at = first + i64::from(keynumidx);
                    let count = usize::try_from(at)
                        .ok()
                        .and_then(|at| args.get(at))
                        .and_then(|a| std::str::from_utf8(a.as_ref()).ok())
                        .and_then(|s| s.parse::<i64>().ok())
                        .filter(|n| *n >= 0)
                        .ok_or(KeysError::BadCount)?;
                    let first = first + i64::from(firstkey);
                    let step = i64::from(step);
                    if count > 0
                        && first.saturating_add((count - 1).saturating_mul(step.max(1))) >= argc
                    {
                        return Err(KeysError::BadCount);
                    }
                    (first, first + count - 1, step)
                }
                Find::Unknown => continue,
            };
            let mut at = first;
            while at <= last && step > 0 {
                if at < argc && at >= 1 {
                    keys.push(at as usize);
                }
                at += step;
            }
        }
        Ok(keys)
    }

    /// Read one entry of a `COMMAND` / `COMMAND INFO` reply (RESP2 or RESP3).
    pub fn from_frame(frame: &Frame) -> Result<Spec, String> {
        let items = array(frame).ok_or("a command entry is not an array")?;
        let field = |i: usize| {
            items
                .get(i)
                .ok_or(format!("a command entry has no field {i}"))
        };
        let name = text(field(0)?).ok_or("a command name is not text")?;
        let arity = integer(field(1)?).ok_or(format!("{name}: arity is not an integer"))?;
        let words = |f: &Frame| -> Vec<String> {
            array(f)
                .map(|a| a.iter().filter_map(text).collect())
                .unwrap_or_default()
        };
        let flags = words(field(2)?);
        let acl = words(field(6)?)
            .into_iter()
            .map(|c| c.trim_start_matches('@').to_owned())
            .collect();
        let keys = match items.get(8).and_then(array) {
            Some(specs) => specs
                .iter()
                .map(|s| KeySpec::from_frame(s).map_err(|e| format!("{name}: {e}")))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let subcommands = match items.get(9).and_then(array) {
            Some(subs) => subs
                .iter()
                .map(Spec::from_frame)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Spec {
            name: name.to_ascii_lowercase(),
            arity: i32::try_from(arity).map_err(|_| format!("{name}: arity out of range"))?,
            flags,
            acl,
            keys,
            subcommands,
        })
    }
}

impl KeySpec {
    /// The argument the keys begin at, or `None` when this spec finds none here.
    fn begin_at(&self, args: &[impl AsRef<[u8]>]) -> Option<i64> {
        let argc = args.len() as i64;
        match &self.begin {
            Begin::Index(i) => Some(i64::from(*i)),
            Begin::Keyword { keyword, startfrom } => {
                let from = i64::from(*startfrom);
                let (start, end) = if from > 0 {
                    (from, argc - 1)
                } else {
                    (argc + from, 1)
                };
                let mut i = start;
                while i != end {
                    if i >= argc || i < 1 {
                        return None;
                    }
                    if args[i as usize]
                        .as_ref()
                        .eq_ignore_ascii_case(keyword.as_bytes())
                    {
                        return Some(i + 1);
                    }
                    i += if start <= end { 1 } else { -1 };
                }
                None
            }
            Begin::Unknown => None,
        }
    }

    fn from_frame(frame: &Frame) -> Result<KeySpec, String> {
        let flags = lookup(frame, "flags")
            .and_then(array)
            .map(|a| a.iter().filter_map(text).collect())
            .unwrap_or_default();
        let begin = lookup(frame, "begin_search").ok_or("a key spec has no begin_search")?;
        let begin_spec = lookup(begin, "spec");
        let num = |f: Option<&Frame>, k: &str| -> Result<i32, String> {
            f.and_then(|f| lookup(f, k))
                .and_then(integer)
                .and_then(|n| i32::try_from(n).ok())
                .ok_or(format!("a key spec has no integer {k}"))
        };
        let begin = match lookup(begin, "type").and_then(text).as_deref() {
            Some("index") => Begin::Index(num(begin_spec, "index")?),
            Some("keyword") => Begin::Keyword {
                keyword: begin_spec
                    .and_then(|s| lookup(s, "keyword"))
                    .and_then(text)
                    .ok_or("a keyword key spec has no keyword")?,
                startfrom: num(begin_spec, "startfrom")?,
            },
            _ => Begin::Unknown,
        };
        let find = lookup(frame, "find_keys").ok_or("a key spec has no find_keys")?;
        let find_spec = lookup(find, "spec");
        let find = match lookup(find, "type").and_then(text).as_deref() {
            Some("range") => Find::Range {
                lastkey: num(find_spec, "lastkey")?,
                step: num(find_spec, "keystep")?,
                limit: num(find_spec, "limit")?,
            },
            Some("keynum") => Find::Keynum {
                keynumidx: num(find_spec, "keynumidx")?,
                firstkey: num(find_spec, "firstkey")?,
                step: num(find_spec, "keystep")?,
            },
            _ => Find::Unknown,
        };
        Ok(KeySpec { flags, begin, find })
    }
}

/// The items of an array or set (RESP2 or RESP3).
fn array(f: &Frame) -> Option<&[Frame]> {
    match f {
        Frame::Array(Some(a)) | Frame::Set(a) => Some(a),
        _ => None,
    }
}

fn text(f: &Frame) -> Option<String> {
    match f {
        Frame::Simple(b) | Frame::Bulk(Some(b)) | Frame::Verbatim(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

fn integer(f: &Frame) -> Option<i64> {
    match f {
        Frame::Integer(n) => Some(*n),
        _ => None,
    }
}

/// A field of a map: a RESP3 map, or a RESP2 flat array of name/value pairs.
fn lookup<'a>(f: &'a Frame, key: &str) -> Option<&'a Frame> {
    match f {
        Frame::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(key))
            .map(|(_, v)| v),
        Frame::Array(Some(items)) => items
            .chunks(2)
            .find(|p| p.len() == 2 && text(&p[0]).as_deref() == Some(key))
            .map(|p| &p[1]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(index: i32, lastkey: i32, step: i32, limit: i32) -> KeySpec {
        KeySpec {
            flags: vec![],
            begin: Begin::Index(index),
            find: Find::Range {
                lastkey,
                step,
                limit,
            },
        }
    }

    fn spec(keys: Vec<KeySpec>) -> Spec {
        Spec {
            name: "x".into(),
            arity: -1,
            flags: vec![],
            acl: vec![],
            keys,
            subcommands: vec![],
        }
    }

    fn args(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn ranges_follow_redis() {
        // GET k
        assert_eq!(
            spec(vec![range(1, 0, 1, 0)]).keys(&args("get k")),
            Ok(vec![1])
        );
        // MSET k v k v: every second argument to the end.
        assert_eq!(
            spec(vec![range(1, -1, 2, 0)]).keys(&args("mset a 1 b 2")),
            Ok(vec![1, 3])
        );
        // BLPOP a b 0: all but the last.
        assert_eq!(
            spec(vec![range(1, -2, 1, 0)]).keys(&args("blpop a b 0")),
            Ok(vec![1, 2])
        );
    }

    #[test]
    fn keywords_and_limits_follow_redis() {
        // XREAD COUNT 2 STREAMS a b 0 0: the first half after STREAMS.
        let xread = spec(vec![KeySpec {
            flags: vec![],
            begin: Begin::Keyword {
                keyword: "STREAMS".into(),
                startfrom: 1,
            },
            find: Find::Range {
                lastkey: -1,
                step: 1,
                limit: 2,
            },
        }]);
        assert_eq!(
            xread.keys(&args("xread count 2 streams a b 0 0")),
            Ok(vec![4, 5])
        );
        assert_eq!(xread.keys(&args("xread count 2")), Ok(vec![]));
        // GEORADIUS ... STORE dest, searched from the end.
        let store = KeySpec {
            flags: vec![],
            begin: Begin::Keyword {
                keyword: "STORE".into(),
                startfrom: -2,
            },
            find: Find::Range {
                lastkey: 0,
                step: 1,
                limit: 0,
            },
        };
        let geo = spec(vec![range(1, 0, 1, 0), store]);
        assert_eq!(
            geo.keys(&args("georadius g 0 0 1 km store d")),
            Ok(vec![1, 7])
        );
    }

    #[test]
    fn key_counts_are_checked() {
        let eval = spec(vec![KeySpec {
            flags: vec![],
            begin: Begin::Index(2),
            find: Find::Keynum {
                keynumidx: 0,
                firstkey: 1,
                step: 1,
            },
        }]);
        assert_eq!(eval.keys(&args("eval s 2 a b x")), Ok(vec![3, 4]));
        assert_eq!(eval.keys(&args("eval s 0")), Ok(vec![]));
        assert_eq!(eval.keys(&args("eval s 3 a b")), Err(KeysError::BadCount));
        assert_eq!(eval.keys(&args("eval s -1")), Err(KeysError::BadCount));
        assert_eq!(eval.keys(&args("eval s two a")), Err(KeysError::BadCount));
    }
}
