//! The command table: where a command's keys are, and how the proxy treats it.
//!
//! Pure data and pure functions: the session asks [`classify`] about a request and acts on
//! the answer. Commands not listed are refused with an error saying they are unsupported
//! through the proxy; the connection stays open.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use super::request::Request;

/// How a multi-key command is split by slot and its replies merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// MGET: one key per argument, replies concatenated in key order.
    Values,
    /// MSET: key/value pairs, every part answers OK.
    Ok,
    /// DEL, UNLINK, EXISTS, TOUCH: integer replies summed.
    Sum,
}

/// What the proxy does with a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// Forward to the instance owning the keys at these argument positions (all must
    /// share a slot; none means slot 0's owner is as good as any).
    Keyed(Vec<usize>),
    /// Split by slot and merge.
    Split(Merge, Vec<usize>),
    /// Blocking command: forward on the session's pinned connection.
    Blocking(Vec<usize>),
    /// Answered or fanned out by the proxy itself.
    Local,
    /// Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction,
    /// Pub/sub: SUBSCRIBE and friends.
    PubSub,
    /// Refused: not supported through the proxy.
    Unsupported,
    /// Refused: wrong number of arguments.
    Arity,
}

const SINGLE_KEY: &[&str] = &[
    "GET",
    "SET",
    "SETNX",
    "SETEX",
    "PSETEX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "APPEND",
    "STRLEN",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "GETRANGE",
    "SETRANGE",
    "SUBSTR",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "EXPIRETIME",
    "PEXPIRETIME",
    "TTL",
    "PTTL",
    "PERSIST",
    "TYPE",
    "DUMP",
    "RESTORE",
    "OBJECT",
    "HSET",
    "HSETNX",
    "HGET",
    "HMSET",
    "HMGET",
    "HDEL",
    "HLEN",
    "HSTRLEN",
    "HEXISTS",
    "HKEYS",
    "HVALS",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HSCAN",
    "HRANDFIELD",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LLEN",
    "LINDEX",
    "LSET",
    "LRANGE",
    "LTRIM",
    "LREM",
    "LINSERT",
    "LPOS",
    "SADD",
    "SREM",
    "SCARD",
    "SISMEMBER",
    "SMISMEMBER",
    "SMEMBERS",
    "SPOP",
    "SRANDMEMBER",
    "SSCAN",
    "ZADD",
    "ZREM",
    "ZCARD",
    "ZCOUNT",
    "ZINCRBY",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZREVRANGEBYSCORE",
    "ZRANGEBYLEX",
    "ZREVRANGEBYLEX",
    "ZREVRANGE",
    "ZRANK",
    "ZREVRANK",
    "ZSCORE",
    "ZMSCORE",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYLEX",
    "ZLEXCOUNT",
    "ZPOPMIN",
    "ZPOPMAX",
    "ZRANDMEMBER",
    "ZSCAN",
    "PFADD",
    "SETBIT",
    "GETBIT",
    "BITCOUNT",
    "BITPOS",
    "BITFIELD",
    "BITFIELD_RO",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEOSEARCH",
    "GEORADIUS_RO",
    "GEORADIUSBYMEMBER_RO",
    "XADD",
    "XLEN",
    "XRANGE",
    "XREVRANGE",
    "XDEL",
    "XTRIM",
    "XACK",
    "XPENDING",
    "XCLAIM",
    "XAUTOCLAIM",
    "XSETID",
    "XINFO",
    "SORT_RO",
    "LCS",
];

const SAME_SLOT_ALL: &[&str] = &[
    "RENAME",
    "RENAMENX",
    "COPY",
    "SMOVE",
    "LMOVE",
    "RPOPLPUSH",
    "SINTER",
    "SUNION",
    "SDIFF",
    "PFCOUNT",
    "PFMERGE",
    "MSETNX",
    "SINTERCARD",
];

const SAME_SLOT_STORE: &[&str] = &["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"];

const LOCAL: &[&str] = &[
    "PING",
    "ECHO",
    "HELLO",
    "AUTH",
    "SELECT",
    "CLIENT",
    "INFO",
    "COMMAND",
    "DBSIZE",
    "FLUSHDB",
    "FLUSHALL",
    "SCAN",
    "TIME",
    "QUIT",
    "RESET",
    "KEYS",
    "RANDOMKEY",
    "LASTSAVE",
];

const WRITES: &[&str] = &[
    "SET",
    "SETNX",
    "SETEX",
    "PSETEX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "APPEND",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "SETRANGE",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "PERSIST",
    "RESTORE",
    "HSET",
    "HSETNX",
    "HMSET",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LSET",
    "LTRIM",
    "LREM",
    "LINSERT",
    "SADD",
    "SREM",
    "SPOP",
    "ZADD",
    "ZREM",
    "ZINCRBY",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYLEX",
    "ZPOPMIN",
    "ZPOPMAX",
    "PFADD",
    "SETBIT",
    "BITFIELD",
    "GEOADD",
    "XADD",
    "XDEL",
    "XTRIM",
    "XACK",
    "XCLAIM",
    "XAUTOCLAIM",
    "XSETID",
    "RENAME",
    "RENAMENX",
    "COPY",
    "SMOVE",
    "LMOVE",
    "RPOPLPUSH",
    "PFMERGE",
    "MSETNX",
    "SINTERSTORE",
    "SUNIONSTORE",
    "SDIFFSTORE",
    "MSET",
    "DEL",
    "UNLINK",
    "ZUNIONSTORE",
    "ZINTERSTORE",
    "ZDIFFSTORE",
    "LMPOP",
    "ZMPOP",
    "BLPOP",
    "BRPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BLMOVE",
    "BRPOPLPUSH",
];

static WRITE_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| WRITES.iter().copied().collect());

/// Commands that never change a key. Everything else that names keys is treated as a
/// write by migrations (its keys are re-copied), so a command missing here costs a copy,
/// never a lost write.
const READ_ONLY: &[&str] = &[
    "GET",
    "MGET",
    "STRLEN",
    "GETRANGE",
    "SUBSTR",
    "EXISTS",
    "TYPE",
    "TTL",
    "PTTL",
    "EXPIRETIME",
    "PEXPIRETIME",
    "HGET",
    "HMGET",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HLEN",
    "HEXISTS",
    "HSTRLEN",
    "HRANDFIELD",
    "HSCAN",
    "LLEN",
    "LRANGE",
    "LINDEX",
    "LPOS",
    "SCARD",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SRANDMEMBER",
    "SSCAN",
    "SINTER",
    "SUNION",
    "SDIFF",
    "SINTERCARD",
    "ZCARD",
    "ZCOUNT",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZRANGEBYLEX",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZREVRANGEBYLEX",
    "ZRANK",
    "ZREVRANK",
    "ZSCORE",
    "ZMSCORE",
    "ZLEXCOUNT",
    "ZSCAN",
    "ZRANDMEMBER",
    "ZINTER",
    "ZUNION",
    "ZDIFF",
    "ZINTERCARD",
    "PFCOUNT",
    "GETBIT",
    "BITCOUNT",
    "BITPOS",
    "BITFIELD_RO",
    "GEOPOS",
    "GEODIST",
    "GEOHASH",
    "GEOSEARCH",
    "GEORADIUS_RO",
    "GEORADIUSBYMEMBER_RO",
    "XRANGE",
    "XREVRANGE",
    "XLEN",
    "XREAD",
    "XINFO",
    "XPENDING",
    "DUMP",
    "OBJECT",
    "LCS",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL_RO",
    "SORT_RO",
    "TOUCH",
    "WATCH",
];

static READ_ONLY_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| READ_ONLY.iter().copied().collect());

/// True when `req` may change its keys: a migration tracks its keys as dirty.
pub fn may_write(req: &Request) -> bool {
    let mut buf = [0u8; 32];
    req.args
        .first()
        .is_some_and(|name| !READ_ONLY_SET.contains(upper(name, &mut buf)))
}

/// True when `req` writes (for telemetry).
pub fn is_write(req: &Request) -> bool {
    let mut buf = [0u8; 32];
    req.args
        .first()
        .is_some_and(|name| WRITE_SET.contains(upper(name, &mut buf)))
}

/// Which list a name is in, looked up once per request without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    SingleKey,
    SameSlotAll,
    SameSlotStore,
    Local,
}

static GROUPS: LazyLock<HashMap<&'static str, Group>> = LazyLock::new(|| {
    let mut m = HashMap::new();
    for (list, g) in [
        (SINGLE_KEY, Group::SingleKey),
        (SAME_SLOT_ALL, Group::SameSlotAll),
        (SAME_SLOT_STORE, Group::SameSlotStore),
        (LOCAL, Group::Local),
    ] {
        for name in list {
            m.insert(*name, g);
        }
    }
    m
});

/// The command name in upper case, in a stack buffer (command names are short).
fn upper<'a>(name: &[u8], buf: &'a mut [u8; 32]) -> &'a str {
    let n = name.len().min(buf.len());
    for (d, s) in buf.iter_mut().zip(&name[..n]) {
        *d = s.to_ascii_uppercase();
    }
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// Classify `req`.
pub fn classify(req: &Request) -> Class {
    let n = req.args.len();
    if n == 0 {
        return Class::Arity;
    }
    let mut buf = [0u8; 32];
    let name = upper(&req.args[0], &mut buf);
    let all = |from: usize, step: usize| (from..n).step_by(step).collect::<Vec<_>>();
    let group = GROUPS.get(name).copied();
    if group == Some(Group::SingleKey) {
        return if n >= 2 {
            Class::Keyed(vec![1])
        } else {
            Class::Arity
        };
    }
    if group == Some(Group::SameSlotAll) {
        let step = if name == "MSETNX" { 2 } else { 1 };
        let from = if name == "SINTERCARD" { 2 } else { 1 };
        return if n >= 2 {
            Class::Keyed(all(from, step))
        } else {
            Class::Arity
        };
    }
    if group == Some(Group::SameSlotStore) {
        return if n >= 3 {
            Class::Keyed(all(1, 1))
        } else {
            Class::Arity
        };
    }
    if group == Some(Group::Local) {
        return Class::Local;
    }
    match name {
        "MGET" if n >= 2 => Class::Split(Merge::Values, all(1, 1)),
        "MSET" if n >= 3 && n % 2 == 1 => Class::Split(Merge::Ok, all(1, 2)),
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" if n >= 2 => Class::Split(Merge::Sum, all(1, 1)),
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" if n >= 4 => numkeys(req, 2, Some(1)),
        "ZUNION" | "ZINTER" | "ZDIFF" | "ZINTERCARD" | "LMPOP" | "ZMPOP" if n >= 3 => {
            numkeys(req, 1, None)
        }
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" if n >= 3 => {
            numkeys(req, 2, None)
        }
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" if n >= 3 => {
            Class::Blocking((1..n - 1).collect())
        }
        "BLMOVE" | "BRPOPLPUSH" if n >= 4 => Class::Blocking(vec![1, 2]),
        "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" => Class::Transaction,
        "PUBLISH" | "SPUBLISH" if n == 3 => Class::Keyed(vec![1]),
        "SUBSCRIBE" | "UNSUBSCRIBE" | "PSUBSCRIBE" | "PUNSUBSCRIBE" | "SSUBSCRIBE"
        | "SUNSUBSCRIBE" | "PUBLISH" | "SPUBLISH" | "PUBSUB" => Class::PubSub,
        "MGET" | "MSET" | "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "ZUNIONSTORE" | "ZINTERSTORE"
        | "ZDIFFSTORE" | "ZUNION" | "ZINTER" | "ZDIFF" | "ZINTERCARD" | "LMPOP" | "ZMPOP"
        | "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" | "BLPOP"
        | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" | "BLMOVE" | "BRPOPLPUSH" => Class::Arity,
        _ => Class::Unsupported,
    }
}

/// Keys counted by a `numkeys` argument at `at`, plus an optional destination key.
fn numkeys(req: &Request, at: usize, dest: Option<usize>) -> Class {
    let count = req
        .args
        .get(at)
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|s| s.parse::<usize>().ok());
    match count {
        Some(k) if at + k < req.args.len() => {
            let mut keys: Vec<usize> = dest.into_iter().collect();
            keys.extend(at + 1..=at + k);
            Class::Keyed(keys)
        }
        _ => Class::Arity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(words: &str) -> Request {
        Request::from_args(
            words
                .split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
    }

    #[test]
    fn key_positions() {
        assert_eq!(classify(&req("get k")), Class::Keyed(vec![1]));
        assert_eq!(
            classify(&req("MGET a b c")),
            Class::Split(Merge::Values, vec![1, 2, 3])
        );
        assert_eq!(
            classify(&req("MSET a 1 b 2")),
            Class::Split(Merge::Ok, vec![1, 3])
        );
        assert_eq!(classify(&req("MSET a 1 b")), Class::Arity);
        assert_eq!(
            classify(&req("DEL a b")),
            Class::Split(Merge::Sum, vec![1, 2])
        );
        assert_eq!(classify(&req("EVAL s 2 a b x")), Class::Keyed(vec![3, 4]));
        assert_eq!(classify(&req("EVAL s 3 a b")), Class::Arity);
        assert_eq!(
            classify(&req("ZUNIONSTORE d 2 a b")),
            Class::Keyed(vec![1, 3, 4])
        );
        assert_eq!(classify(&req("BLPOP a b 0")), Class::Blocking(vec![1, 2]));
        assert_eq!(classify(&req("RENAME a b")), Class::Keyed(vec![1, 2]));
        assert_eq!(classify(&req("PING")), Class::Local);
        assert_eq!(classify(&req("MULTI")), Class::Transaction);
        assert_eq!(classify(&req("SUBSCRIBE c")), Class::PubSub);
        assert_eq!(classify(&req("CLUSTER INFO")), Class::Unsupported);
        assert_eq!(classify(&req("GET")), Class::Arity);
    }
}
