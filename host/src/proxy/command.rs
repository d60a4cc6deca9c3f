//! The command table: one record per command, derived from the servers' own `COMMAND`
//! metadata, and what the proxy does with each.
//!
//! Key positions, arity and read/write flags come from Redis's key specifications
//! ([`keyspec`](super::keyspec)), never from hand-written lists. The table starts from a
//! built-in copy of Redis 7.0's metadata (`commands.json`, checked in as data and held
//! equal to the installed redis-server by a test) and is replaced by what an instance
//! answers to `COMMAND` when one first answers and whenever one comes back with a new
//! `run_id` ([`install`]). The proxy's own choices (commands it answers itself, splits by
//! slot, transactions, pub/sub) are one short list of records, `HANDLED`; every other
//! command with keys is routed by them, module commands included.
//!
//! The session asks [`classify`] about a request and acts on the answer; the migration
//! gate asks [`may_write`], and telemetry [`is_write`], from the same record.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;

use super::keyspec::{Begin, Find, KeySpec, Spec};
use super::request::Request;
use super::resp::Frame;

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

/// How the replies of a command sent to every serving instance are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanOut {
    /// Integers summed (DBSIZE, SLOWLOG LEN).
    SumIntegers,
    /// Every instance answers OK; the first error is the answer.
    AllOk,
    /// Every instance answers OK; otherwise the error names each instance that refused
    /// and those that applied it (CONFIG SET).
    AllOkNamed,
    /// Key lists, concatenated, each instance's filtered to the keys it owns.
    Keys,
    /// The first reply that is not nil.
    FirstNonNull,
    /// Arrays concatenated (SLOWLOG GET, LATENCY LATEST).
    Concat,
    /// Arrays concatenated without repeats (PUBSUB CHANNELS).
    Union,
    /// `[name, count, ...]` pairs with the counts summed by name (PUBSUB NUMSUB).
    SumPairs,
    /// The largest integer (PUBSUB NUMPAT: every pattern is on every instance).
    Max,
    /// Integer arrays, element-wise: 1 only where every instance says 1 (SCRIPT EXISTS).
    AllOf,
    /// INFO: the first instance's text with a `# Shardcast` section after it.
    Info,
}

/// What the proxy does with one request.
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
    /// Sent to every serving instance and the replies merged.
    Fleet(FanOut),
    /// Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction,
    /// Pub/sub: SUBSCRIBE and friends.
    PubSub,
    /// Refused: a command the servers know that cannot be served through the proxy.
    Unsupported,
    /// Refused: wrong number of arguments.
    Arity,
    /// Refused with this error, as redis-server or Redis Cluster would refuse it.
    Refused(String),
}

/// What the proxy does with a command, before looking at a request's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Treatment {
    /// Routed by the keys its key specifications find.
    Keys,
    /// Split by slot and merged.
    Split(Merge),
    /// PUBLISH: routed by the channel's slot.
    Channel,
    /// Answered or fanned out by the proxy.
    Local,
    /// Sent to every serving instance, the replies merged.
    Fleet(FanOut),
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction,
    /// Subscribed mode and PUBSUB.
    PubSub,
}

/// The commands the proxy treats itself; every other command is routed by its keys.
const HANDLED: &[(&str, Treatment)] = &[
    ("mget", Treatment::Split(Merge::Values)),
    ("mset", Treatment::Split(Merge::Ok)),
    ("del", Treatment::Split(Merge::Sum)),
    ("unlink", Treatment::Split(Merge::Sum)),
    ("exists", Treatment::Split(Merge::Sum)),
    ("touch", Treatment::Split(Merge::Sum)),
    ("multi", Treatment::Transaction),
    ("exec", Treatment::Transaction),
    ("discard", Treatment::Transaction),
    ("watch", Treatment::Transaction),
    ("unwatch", Treatment::Transaction),
    ("subscribe", Treatment::PubSub),
    ("unsubscribe", Treatment::PubSub),
    ("psubscribe", Treatment::PubSub),
    ("punsubscribe", Treatment::PubSub),
    ("ssubscribe", Treatment::PubSub),
    ("sunsubscribe", Treatment::PubSub),
    ("pubsub|channels", Treatment::Fleet(FanOut::Union)),
    ("pubsub|shardchannels", Treatment::Fleet(FanOut::Union)),
    ("pubsub|numsub", Treatment::Fleet(FanOut::SumPairs)),
    ("pubsub|shardnumsub", Treatment::Fleet(FanOut::SumPairs)),
    ("pubsub|numpat", Treatment::Fleet(FanOut::Max)),
    ("script|load", Treatment::Fleet(FanOut::FirstNonNull)),
    ("script|exists", Treatment::Fleet(FanOut::AllOf)),
    ("script|flush", Treatment::Fleet(FanOut::AllOk)),
    ("function|load", Treatment::Fleet(FanOut::FirstNonNull)),
    ("function|delete", Treatment::Fleet(FanOut::AllOk)),
    ("function|flush", Treatment::Fleet(FanOut::AllOk)),
    ("function|restore", Treatment::Fleet(FanOut::AllOk)),
    ("function|list", Treatment::Fleet(FanOut::FirstNonNull)),
    ("function|dump", Treatment::Fleet(FanOut::FirstNonNull)),
    ("config|get", Treatment::Fleet(FanOut::FirstNonNull)),
    ("config|set", Treatment::Fleet(FanOut::AllOkNamed)),
    ("config|resetstat", Treatment::Fleet(FanOut::AllOkNamed)),
    ("slowlog|get", Treatment::Fleet(FanOut::Concat)),
    ("slowlog|len", Treatment::Fleet(FanOut::SumIntegers)),
    ("slowlog|reset", Treatment::Fleet(FanOut::AllOk)),
    ("latency|latest", Treatment::Fleet(FanOut::Concat)),
    ("latency|history", Treatment::Fleet(FanOut::Concat)),
    ("latency|reset", Treatment::Fleet(FanOut::SumIntegers)),
    ("latency|doctor", Treatment::Fleet(FanOut::FirstNonNull)),
    ("memory|stats", Treatment::Fleet(FanOut::FirstNonNull)),
    (
        "memory|malloc-stats",
        Treatment::Fleet(FanOut::FirstNonNull),
    ),
    ("memory|doctor", Treatment::Fleet(FanOut::FirstNonNull)),
    ("module|list", Treatment::Fleet(FanOut::FirstNonNull)),
    ("bgsave", Treatment::Fleet(FanOut::FirstNonNull)),
    ("acl|cat", Treatment::Fleet(FanOut::FirstNonNull)),
    ("acl|help", Treatment::Fleet(FanOut::FirstNonNull)),
    ("acl|genpass", Treatment::Fleet(FanOut::FirstNonNull)),
    ("acl|whoami", Treatment::Local),
    ("acl|setuser", Treatment::Local),
    ("acl|deluser", Treatment::Local),
    ("acl|getuser", Treatment::Local),
    ("acl|list", Treatment::Local),
    ("acl|users", Treatment::Local),
    ("acl|dryrun", Treatment::Local),
    ("acl|log", Treatment::Local),
    ("acl|save", Treatment::Local),
    ("acl|load", Treatment::Local),
    ("bgrewriteaof", Treatment::Fleet(FanOut::FirstNonNull)),
    ("publish", Treatment::Channel),
    ("ping", Treatment::Local),
    ("echo", Treatment::Local),
    ("hello", Treatment::Local),
    ("auth", Treatment::Local),
    ("select", Treatment::Local),
    ("client", Treatment::Local),
    ("info", Treatment::Local),
    ("command", Treatment::Local),
    ("dbsize", Treatment::Local),
    ("flushdb", Treatment::Local),
    ("flushall", Treatment::Local),
    ("scan", Treatment::Local),
    ("time", Treatment::Local),
    ("quit", Treatment::Local),
    ("reset", Treatment::Local),
    ("keys", Treatment::Local),
    ("randomkey", Treatment::Local),
    ("lastsave", Treatment::Local),
    ("wait", Treatment::Local),
    ("waitaof", Treatment::Local),
];

/// Redis 7.0's command metadata, as `COMMAND` reports it (see [`Table::to_json`]).
const BUILTIN: &str = include_str!("commands.json");

/// FNV-1a over a command name: the table is fixed once built (lookups cannot grow it, so
/// chosen collisions cost nothing), and names are a few bytes, where SipHash's setup
/// dominates.
#[derive(Clone, Copy, Default)]
struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Names<V> = HashMap<Box<[u8]>, V, std::hash::BuildHasherDefault<NameHasher>>;

/// One command's record.
#[derive(Debug)]
struct Command {
    spec: Spec,
    treatment: Treatment,
    readonly: bool,
    write: bool,
    blocking: bool,
    /// Where the key is for the commands with one key at a fixed position (`GET k`), found
    /// without walking the key specifications.
    one_key: Option<usize>,
    /// A key specification the command resolves itself (SORT's STORE).
    unknown_keys: bool,
    /// Subcommands by lower-case name (`stream` for `xinfo|stream`).
    subcommands: Names<Command>,
}

impl Command {
    fn new(mut spec: Spec) -> Command {
        let treatment = HANDLED
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map_or(Treatment::Keys, |(_, t)| *t);
        let subcommands = std::mem::take(&mut spec.subcommands)
            .into_iter()
            .map(|s| {
                let short = s.name.rsplit('|').next().unwrap_or(&s.name).to_owned();
                (short.into_bytes().into_boxed_slice(), Command::new(s))
            })
            .collect();
        let one_key = match spec.keys.as_slice() {
            [
                KeySpec {
                    begin: Begin::Index(i),
                    find: Find::Range { lastkey: 0, .. },
                    ..
                },
            ] => usize::try_from(*i).ok(),
            _ => None,
        };
        Command {
            one_key,
            unknown_keys: spec.keys.iter().any(|k| matches!(k.begin, Begin::Unknown)),
            readonly: spec.has_flag("readonly"),
            write: spec.has_flag("write"),
            blocking: spec.has_flag("blocking"),
            spec,
            treatment,
            subcommands,
        }
    }
}

/// Every command the fleet knows, by lower-case name.
#[derive(Debug)]
pub struct Table {
    commands: Names<Command>,
}

static CURRENT: LazyLock<ArcSwap<Table>> =
    LazyLock::new(|| ArcSwap::from_pointee(Table::builtin()));

thread_local! {
    /// Each thread's handle on [`CURRENT`]: a load is one pointer comparison until a new
    /// table is installed.
    static CACHE: std::cell::RefCell<arc_swap::Cache<&'static ArcSwap<Table>, Arc<Table>>> =
        std::cell::RefCell::new(arc_swap::Cache::new(&*CURRENT));
}

/// `f` of the current table.
fn with_table<R>(f: impl FnOnce(&Table) -> R) -> R {
    CACHE.with_borrow_mut(|cache| f(cache.load()))
}

/// Route by `table` from now on (an instance answered `COMMAND`).
pub fn install(table: Table) {
    CURRENT.store(Arc::new(table));
}

/// Classify `req` by the current table.
pub fn classify(req: &Request) -> Class {
    with_table(|t| t.classify(&req.args))
}

/// True when `req` may change its keys: a migration tracks its keys as dirty. Anything
/// not flagged `readonly` by the servers counts, unknown commands included, so a missing
/// flag costs a copy, never a lost write.
pub fn may_write(req: &Request) -> bool {
    with_table(|t| t.find(&req.args, false).is_none_or(|c| !c.readonly))
}

/// True when `req` is flagged `write` (for telemetry).
pub fn is_write(req: &Request) -> bool {
    with_table(|t| t.find(&req.args, false).is_some_and(|c| c.write))
}

/// The name (`container|sub` for a subcommand) and specification of `args`' command, and
/// what `check` says of them (for users' command rules); `None` for an unknown command.
pub fn access<R>(
    args: &[impl AsRef<[u8]>],
    check: impl FnOnce(&str, &Spec) -> R,
) -> Option<(String, R)> {
    with_table(|t| {
        let command = t.find(args, true)?;
        Some((
            command.spec.name.clone(),
            check(&command.spec.name, &command.spec),
        ))
    })
}

/// `name` in lower case, in a stack buffer (command names are short).
fn lower<'a>(name: &[u8], buf: &'a mut [u8; 48]) -> Option<&'a [u8]> {
    let dst = buf.get_mut(..name.len())?;
    for (d, s) in dst.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Some(dst)
}

impl Table {
    /// The built-in table: Redis 7.0's metadata, for before any instance answers.
    pub fn builtin() -> Table {
        let specs: Vec<Spec> =
            serde_json::from_str(BUILTIN).expect("commands.json is checked by the tests");
        Table::from_specs(specs)
    }

    /// A table from the servers' specifications.
    pub fn from_specs(specs: Vec<Spec>) -> Table {
        let commands = specs
            .into_iter()
            .map(|s| {
                (
                    s.name.clone().into_bytes().into_boxed_slice(),
                    Command::new(s),
                )
            })
            .collect();
        Table { commands }
    }

    /// A table from a reply to `COMMAND` (RESP2 or RESP3).
    pub fn from_reply(reply: &Frame) -> Result<Table, String> {
        let entries = match reply {
            Frame::Array(Some(a)) => a,
            Frame::Error(e) => return Err(String::from_utf8_lossy(e).into_owned()),
            _ => return Err("COMMAND did not answer with an array".into()),
        };
        let specs = entries
            .iter()
            .filter(|e| !matches!(e, Frame::Array(None) | Frame::Null))
            .map(Spec::from_frame)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Table::from_specs(specs))
    }

    /// Every specification, sorted by name with subcommands sorted, as the servers gave
    /// them.
    pub fn specs(&self) -> Vec<Spec> {
        fn whole(c: &Command) -> Spec {
            let mut spec = c.spec.clone();
            spec.subcommands = c.subcommands.values().map(whole).collect();
            spec.subcommands.sort_by(|a, b| a.name.cmp(&b.name));
            spec
        }
        let mut all: Vec<Spec> = self.commands.values().map(whole).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The specifications as `commands.json` holds them: a JSON array, one command a line.
    pub fn to_json(&self) -> String {
        let lines: Vec<String> = self
            .specs()
            .iter()
            .map(|s| serde_json::to_string(s).expect("specs are plain data"))
            .collect();
        format!("[\n{}\n]\n", lines.join(",\n"))
    }

    /// How many commands (not counting subcommands) the table knows.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// True when the table knows no command.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The record for `args` (name first), the subcommand's when the container is routed
    /// by the table (`XINFO STREAM`) or `every_container` (users' command rules judge
    /// `CLIENT KILL`, not `CLIENT`).
    fn find(&self, args: &[impl AsRef<[u8]>], every_container: bool) -> Option<&Command> {
        let mut buf = [0u8; 48];
        let command = self
            .commands
            .get(lower(args.first()?.as_ref(), &mut buf)?)?;
        if command.subcommands.is_empty()
            || (!every_container && command.treatment != Treatment::Keys)
        {
            return Some(command);
        }
        let sub = args
            .get(1)
            .and_then(|s| lower(s.as_ref(), &mut buf))
            .and_then(|s| command.subcommands.get(s));
        Some(sub.unwrap_or(command))
    }

    /// Classify a request (name first).
    pub fn classify(&self, args: &[impl AsRef<[u8]>]) -> Class {
        let Some(first) = args.first() else {
            return Class::Arity;
        };
        let Some(command) = self.find(args, false) else {
            return Class::Refused(unknown(args));
        };
        if !command.subcommands.is_empty() && command.treatment == Treatment::Keys {
            // A container whose subcommand the servers do not know.
            return match args.get(1) {
                None => arity(&command.spec.name),
                Some(sub) => Class::Refused(format!(
                    "ERR unknown subcommand '{}'. Try {} HELP.",
                    printable(sub.as_ref()),
                    String::from_utf8_lossy(first.as_ref()).to_ascii_uppercase()
                )),
            };
        }
        if !command.spec.arity_ok(args.len()) {
            return arity(&command.spec.name);
        }
        match command.treatment {
            Treatment::Split(Merge::Ok) if args.len().is_multiple_of(2) => {
                arity(&command.spec.name)
            }
            Treatment::Split(merge) => {
                let step = if merge == Merge::Ok { 2 } else { 1 };
                Class::Split(merge, (1..args.len()).step_by(step).collect())
            }
            Treatment::Channel => Class::Keyed(vec![1]),
            Treatment::Local => Class::Local,
            Treatment::Fleet(kind) => Class::Fleet(kind),
            Treatment::Transaction => Class::Transaction,
            Treatment::PubSub => Class::PubSub,
            Treatment::Keys => routed(command, args),
        }
    }
}

/// A command routed by its keys: where they are, and whether it blocks.
fn routed(command: &Command, args: &[impl AsRef<[u8]>]) -> Class {
    if command.spec.keys.is_empty() {
        return Class::Unsupported;
    }
    // A key count the server will refuse: let it refuse in its own words, on any instance.
    let mut keys = match command.one_key {
        Some(at) => (at < args.len()).then_some(at).into_iter().collect(),
        None => command.spec.keys(args).unwrap_or_default(),
    };
    if command.unknown_keys {
        // SORT and SORT_RO: the STORE destination and BY/GET patterns are found by the
        // command itself.
        match sort_keys(args) {
            Ok(store) => keys.extend(store),
            Err(refusal) => return Class::Refused(refusal),
        }
    }
    if command.blocking && blocks(args) {
        Class::Blocking(keys)
    } else {
        Class::Keyed(keys)
    }
}

/// True unless this is an XREAD or XREADGROUP without `BLOCK`, which answers at once.
fn blocks(args: &[impl AsRef<[u8]>]) -> bool {
    let name = args[0].as_ref();
    if !name.eq_ignore_ascii_case(b"xread") && !name.eq_ignore_ascii_case(b"xreadgroup") {
        return true;
    }
    args.iter()
        .map(AsRef::as_ref)
        .take_while(|a| !a.eq_ignore_ascii_case(b"streams"))
        .any(|a| a.eq_ignore_ascii_case(b"block"))
}

/// SORT's STORE destination, found as Redis's `sortGetKeys` does. A BY pattern (one with
/// `*`) or a GET pattern other than `#` reads keys the proxy cannot place, and is refused.
fn sort_keys(args: &[impl AsRef<[u8]>]) -> Result<Option<usize>, String> {
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let word = args[i].as_ref();
        let next = args.get(i + 1).map(AsRef::as_ref);
        if word.eq_ignore_ascii_case(b"limit") {
            i += 3;
            continue;
        }
        if word.eq_ignore_ascii_case(b"by") && next.is_some_and(|p| p.contains(&b'*')) {
            return Err("ERR BY option of SORT denied through the shardcast proxy: \
                        its pattern names keys on other instances (BY nosort is served)"
                .into());
        }
        if word.eq_ignore_ascii_case(b"get") && next.is_some_and(|p| p != b"#") {
            return Err(
                "ERR GET option of SORT denied through the shardcast proxy: \
                        its pattern names keys on other instances (GET # is served)"
                    .into(),
            );
        }
        if word.eq_ignore_ascii_case(b"store") && next.is_some() {
            store = Some(i + 1);
        }
        i += if ["by", "get", "store"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
        {
            2
        } else {
            1
        };
    }
    Ok(store)
}

/// Redis's error for a wrong argument count, naming the command (`container|sub` for a
/// subcommand) as Redis does.
fn arity(name: &str) -> Class {
    Class::Refused(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Redis's error for a command it does not know.
fn unknown(args: &[impl AsRef<[u8]>]) -> String {
    let rest: String = args[1..]
        .iter()
        .take(16)
        .map(|a| format!("'{}' ", printable(a.as_ref())))
        .collect();
    format!(
        "ERR unknown command '{}', with args beginning with: {rest}",
        printable(args[0].as_ref())
    )
}

/// At most 128 bytes of `arg`, as text.
fn printable(arg: &[u8]) -> String {
    String::from_utf8_lossy(&arg[..arg.len().min(128)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(words: &str) -> Class {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        CURRENT.load().classify(&args)
    }

    #[test]
    fn key_positions_come_from_the_key_specs() {
        assert_eq!(classify("get k"), Class::Keyed(vec![1]));
        assert_eq!(classify("RENAME a b"), Class::Keyed(vec![1, 2]));
        assert_eq!(classify("MSETNX a 1 b 2"), Class::Keyed(vec![1, 3]));
        assert_eq!(classify("SINTERCARD 2 a b"), Class::Keyed(vec![2, 3]));
        assert_eq!(classify("EVAL s 2 a b x"), Class::Keyed(vec![3, 4]));
        assert_eq!(classify("EVAL s 3 a b"), Class::Keyed(vec![]));
        assert_eq!(classify("ZUNIONSTORE d 2 a b"), Class::Keyed(vec![1, 3, 4]));
        assert_eq!(classify("XINFO STREAM s"), Class::Keyed(vec![2]));
        assert_eq!(classify("object encoding k"), Class::Keyed(vec![2]));
        assert_eq!(classify("MEMORY USAGE k"), Class::Keyed(vec![2]));
        assert_eq!(
            classify("XREAD COUNT 1 STREAMS a b 0 0"),
            Class::Keyed(vec![4, 5])
        );
        assert_eq!(
            classify("GEORADIUS g 0 0 1 km STORE d"),
            Class::Keyed(vec![1, 7])
        );
        assert_eq!(classify("LMPOP 2 a b LEFT"), Class::Keyed(vec![2, 3]));
    }

    #[test]
    fn blocking_comes_from_the_flags() {
        assert_eq!(classify("BLPOP a b 0"), Class::Blocking(vec![1, 2]));
        assert_eq!(classify("BLMPOP 0 1 a LEFT"), Class::Blocking(vec![3]));
        assert_eq!(
            classify("XREAD BLOCK 0 STREAMS a $"),
            Class::Blocking(vec![4])
        );
        assert_eq!(
            classify("XREADGROUP GROUP g c STREAMS a >"),
            Class::Keyed(vec![5])
        );
    }

    #[test]
    fn sort_serves_what_one_instance_can() {
        assert_eq!(classify("SORT k"), Class::Keyed(vec![1]));
        assert_eq!(
            classify("SORT k LIMIT 0 5 BY nosort GET # STORE d"),
            Class::Keyed(vec![1, 10])
        );
        assert!(matches!(classify("SORT k BY w_*"), Class::Refused(_)));
        assert!(matches!(classify("SORT_RO k GET h_*"), Class::Refused(_)));
    }

    #[test]
    fn the_proxys_own_records() {
        assert_eq!(
            classify("MGET a b c"),
            Class::Split(Merge::Values, vec![1, 2, 3])
        );
        assert_eq!(
            classify("MSET a 1 b 2"),
            Class::Split(Merge::Ok, vec![1, 3])
        );
        assert_eq!(classify("MSET a 1 b"), arity("mset"));
        assert_eq!(classify("DEL a b"), Class::Split(Merge::Sum, vec![1, 2]));
        assert_eq!(classify("PING"), Class::Local);
        assert_eq!(classify("MULTI"), Class::Transaction);
        assert_eq!(classify("SUBSCRIBE c"), Class::PubSub);
        assert_eq!(
            classify("PUBSUB NUMSUB a b"),
            Class::Fleet(FanOut::SumPairs)
        );
        assert_eq!(
            classify("config set maxmemory 1"),
            Class::Fleet(FanOut::AllOkNamed)
        );
        assert_eq!(classify("CONFIG REWRITE"), Class::Unsupported);
        assert_eq!(classify("PUBLISH c m"), Class::Keyed(vec![1]));
        assert_eq!(classify("CLUSTER INFO"), Class::Unsupported);
        assert_eq!(classify("GET"), arity("get"));
        assert_eq!(classify("GET a b"), arity("get"));
        assert_eq!(classify("SCRIPT LOAD a b"), arity("script|load"));
        assert_eq!(classify("XINFO"), arity("xinfo"));
        assert_eq!(
            classify("NOSUCH a"),
            Class::Refused("ERR unknown command 'NOSUCH', with args beginning with: 'a' ".into())
        );
        assert_eq!(
            classify("XINFO NOSUCH"),
            Class::Refused("ERR unknown subcommand 'NOSUCH'. Try XINFO HELP.".into())
        );
    }

    #[test]
    fn writes_come_from_the_flags() {
        let req = |w: &str| {
            Request::from_args(
                w.split(' ')
                    .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes()))
                    .collect(),
            )
        };
        assert!(!may_write(&req("GET k")));
        assert!(may_write(&req("SET k v")));
        assert!(may_write(&req("EVAL s 1 k")));
        assert!(!may_write(&req("XINFO STREAM s")));
        assert!(may_write(&req("XGROUP CREATE s g $")));
        assert!(may_write(&req("NOSUCH k")));
        assert!(is_write(&req("XADD s * f v")));
        assert!(!is_write(&req("GET k")));
    }

    #[test]
    fn the_builtin_table_round_trips() {
        let table = Table::builtin();
        assert!(table.len() > 200);
        assert_eq!(table.to_json(), BUILTIN);
    }
}
