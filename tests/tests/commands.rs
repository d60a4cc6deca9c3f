//! The command table comes from the servers: the built-in copy equals what the installed
//! redis-server reports, and commands a cluster serves (streams, SORT, GEO, `*STORE`,
//! `*MPOP`, OBJECT, MEMORY USAGE, BITOP) answer through shardcast exactly as one
//! redis-server answers them. The oracle is a second, direct redis-server given the same
//! commands.
//!
//! `SHARDCAST_WRITE_COMMANDS=1 cargo test -p shardcast-tests --test commands` rewrites
//! `host/src/proxy/commands.json` from the installed redis-server.

use std::time::Duration;

use shardcast::proxy::backend::Backend;
use shardcast::proxy::command::Table;
use shardcast::telemetry::poller::read_commands;
use shardcast_tests::servers::{Proxy, RedisServer};

fn fetched(server: &RedisServer) -> Table {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let limit = Duration::from_secs(10);
        let mut conn = Backend::connect(&server.address(), limit, limit)
            .await
            .expect("connect to redis-server");
        read_commands(&mut conn, limit)
            .await
            .expect("COMMAND from redis-server")
    })
}

#[test]
fn the_builtin_table_equals_the_installed_servers() {
    let server = RedisServer::start();
    let live = fetched(&server).to_json();
    if std::env::var_os("SHARDCAST_WRITE_COMMANDS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../host/src/proxy/commands.json"
        );
        std::fs::write(path, &live).expect("write commands.json");
    }
    let builtin = Table::builtin();
    assert!(builtin.len() > 200, "{} commands", builtin.len());
    assert!(
        builtin.to_json() == live,
        "the built-in command table differs from the installed redis-server's \
         (regenerate with SHARDCAST_WRITE_COMMANDS=1 cargo test -p shardcast-tests --test commands)"
    );
}

/// `words` split on spaces into one command.
fn cmd(words: &str) -> redis::Cmd {
    let mut c = redis::cmd(words.split(' ').next().expect("a name"));
    for w in words.split(' ').skip(1) {
        c.arg(w);
    }
    c
}

fn answer(c: &mut redis::Connection, words: &str) -> String {
    match cmd(words).query::<redis::Value>(c) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Commands with keys in one slot, in an order that gives each something to work on.
const SCRIPT: &[&str] = &[
    // Streams and consumer groups.
    "XADD {t}s 1-1 f v",
    "XADD {t}s 2-1 f w",
    "XLEN {t}s",
    "XRANGE {t}s - +",
    "XREAD COUNT 5 STREAMS {t}s 0",
    "XGROUP CREATE {t}s g 0",
    "XGROUP CREATECONSUMER {t}s g c2",
    "XREADGROUP GROUP g c COUNT 1 STREAMS {t}s >",
    "XPENDING {t}s g",
    "XACK {t}s g 1-1",
    "XINFO STREAM {t}s",
    "XINFO GROUPS {t}s",
    "XINFO STREAM {t}nosuch",
    "XTRIM {t}s MAXLEN 1",
    "XDEL {t}s 2-1",
    // SORT without external patterns.
    "RPUSH {t}l 3 1 2 5 4",
    "SORT {t}l",
    "SORT {t}l DESC LIMIT 0 2",
    "SORT {t}l BY nosort GET #",
    "SORT {t}l STORE {t}sorted",
    "LRANGE {t}sorted 0 -1",
    "SORT_RO {t}l ALPHA",
    // GEO.
    "GEOADD {t}g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
    "GEODIST {t}g Palermo Catania km",
    "GEOHASH {t}g Palermo",
    "GEORADIUS {t}g 15 37 200 km ASC",
    "GEORADIUSBYMEMBER {t}g Palermo 200 km ASC",
    "GEORADIUS {t}g 15 37 200 km STORE {t}g3",
    "ZRANGE {t}g3 0 -1",
    "GEOSEARCH {t}g FROMLONLAT 15 37 BYRADIUS 200 km ASC",
    "GEOSEARCHSTORE {t}g2 {t}g FROMLONLAT 15 37 BYRADIUS 200 km ASC",
    "ZRANGE {t}g2 0 -1",
    // *STORE and *MPOP.
    "ZADD {t}z 1 a 2 b 3 c 4 d",
    "ZRANGESTORE {t}z2 {t}z 0 1",
    "ZRANGE {t}z2 0 -1 WITHSCORES",
    "ZMPOP 1 {t}z MIN",
    "BZMPOP 1 2 {t}none {t}z MAX COUNT 2",
    "LMPOP 2 {t}none {t}l LEFT COUNT 2",
    "BLMPOP 1 1 {t}l RIGHT",
    "ZUNIONSTORE {t}u 2 {t}z {t}z2",
    "SINTERCARD 1 {t}nosuchset",
    // BITOP, OBJECT, MEMORY USAGE.
    "SET {t}a foobar",
    "SET {t}b abcdef",
    "BITOP AND {t}dest {t}a {t}b",
    "GET {t}dest",
    "OBJECT ENCODING {t}l",
    "OBJECT ENCODING {t}a",
    "MEMORY USAGE {t}a",
    // Sent to every instance, the replies merged.
    "SCRIPT LOAD return 1",
    "SCRIPT LOAD return",
    "SCRIPT EXISTS 63143b6f8007b98c53ca2149822777b3566f9241 0000000000000000000000000000000000000000",
    "SCRIPT FLUSH",
    "SCRIPT EXISTS 63143b6f8007b98c53ca2149822777b3566f9241",
    "CONFIG GET maxmemory-policy",
    "CONFIG SET maxmemory-policy allkeys-lru",
    "CONFIG GET maxmemory-policy",
    "PUBSUB CHANNELS",
    "PUBSUB NUMSUB a b",
    "PUBSUB NUMPAT",
    "SLOWLOG RESET",
    "LATENCY LATEST",
    "FUNCTION FLUSH",
    "FUNCTION LIST",
    // Errors as redis-server words them.
    "NOSUCHCOMMAND a b",
    "XINFO NOSUCH",
    "GET",
    "EVAL return 3 {t}a",
];

#[test]
fn commands_a_cluster_serves_answer_as_one_redis_server_does() {
    let direct = RedisServer::start();
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let p = Proxy::start(&[&servers[0], &servers[1], &servers[2]], "");
    let mut d = direct.client();
    let mut c = p.client_within(Duration::from_secs(10));
    let mut differ = Vec::new();
    for words in SCRIPT {
        let (want, got) = (answer(&mut d, words), answer(&mut c, words));
        if want != got {
            differ.push(format!("{words}\n  direct: {want}\n  proxy:  {got}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn a_blocking_xreadgroup_is_woken_by_an_xadd_through_another_session() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&servers[0], &servers[1]], "");
    let mut c = p.client_within(Duration::from_secs(10));
    let _: () = cmd("XGROUP CREATE {b}s g $ MKSTREAM")
        .query(&mut c)
        .expect("XGROUP CREATE");
    let port = p.port;
    let reader = std::thread::spawn(move || {
        let mut r = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .expect("url")
            .get_connection()
            .expect("connect");
        answer(&mut r, "XREADGROUP GROUP g c BLOCK 10000 STREAMS {b}s >")
    });
    // The reader is blocked once an instance lists it as waiting in XREADGROUP.
    shardcast_tests::servers::wait_for("the reader to block", Duration::from_secs(10), || {
        reader.is_finished()
            || servers.iter().any(|s| {
                cmd("CLIENT LIST")
                    .query::<String>(&mut s.client())
                    .is_ok_and(|list| list.contains("cmd=xreadgroup"))
            })
    });
    assert!(!reader.is_finished(), "the reader did not block");
    let _: String = cmd("XADD {b}s 7-1 f v").query(&mut c).expect("XADD");
    let got = reader.join().expect("reader");
    assert!(got.contains("7-1"), "the blocked reader got {got}");
}

#[test]
fn fleet_commands_reach_every_instance_and_name_the_ones_that_refuse() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&servers[0], &servers[1]], "");
    let mut c = p.client_within(Duration::from_secs(10));
    let _: () = cmd("CONFIG SET maxmemory-policy allkeys-lfu")
        .query(&mut c)
        .expect("CONFIG SET through the proxy");
    for s in &servers {
        let got: Vec<String> = cmd("CONFIG GET maxmemory-policy")
            .query(&mut s.client())
            .expect("CONFIG GET directly");
        assert_eq!(got[1], "allkeys-lfu", "every instance got the setting");
    }
    let refused = answer(&mut c, "CONFIG SET maxmemory-policy no-such-policy");
    assert!(
        refused.contains("refused by 2 of 2 instances")
            && refused.contains("redis-0")
            && refused.contains("redis-1"),
        "{refused}"
    );
    let info: String = cmd("INFO").query(&mut c).expect("INFO");
    assert!(
        info.contains("redis_version:"),
        "the instances' INFO is there"
    );
    assert!(
        info.contains("# Shardcast\r\n") && info.contains("instances:2\r\n"),
        "{info}"
    );
    let server_only: String = cmd("INFO server").query(&mut c).expect("INFO server");
    assert!(!server_only.contains("# Shardcast"));
    let own: String = cmd("INFO shardcast").query(&mut c).expect("INFO shardcast");
    assert!(own.contains("segments:"), "{own}");
}

/// Send `raw` on a new connection to `port` and read until the reply to a final
/// `ECHO <end>` has arrived; everything read, that reply included.
fn raw_exchange(port: u16, raw: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let end = b"$17\r\nend-of-exchange-1\r\n";
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(raw).expect("write");
    s.write_all(b"*2\r\n$4\r\nECHO\r\n$17\r\nend-of-exchange-1\r\n")
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end) {
        let n = s.read(&mut buf).expect("a reply within 10 s");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn client_reply_off_and_skip_silence_replies_as_redis_server_does() {
    let direct = RedisServer::start();
    let fleet = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&fleet[0], &fleet[1]], "");
    let encode = |words: &str| -> Vec<u8> {
        let parts: Vec<&str> = words.split(' ').collect();
        let mut out = format!("*{}\r\n", parts.len()).into_bytes();
        for w in parts {
            out.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
        }
        out
    };
    let script = [
        "SET reply:a 1",
        "CLIENT REPLY OFF",
        "SET reply:a 2",
        "GET reply:a",
        "CLIENT REPLY SKIP",
        "MGET reply:a reply:b",
        "CLIENT REPLY ON",
        "GET reply:a",
        "CLIENT REPLY SKIP",
        "INCR reply:n",
        "INCR reply:n",
        "CLIENT REPLY sideways",
        "GET reply:n",
        "CLIENT REPLY OFF",
        "GET reply:n",
        "RESET",
        "GET reply:n",
    ];
    let raw: Vec<u8> = script.iter().flat_map(|w| encode(w)).collect();
    let want = raw_exchange(direct.port, &raw);
    let got = raw_exchange(p.port, &raw);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "through shardcast vs direct"
    );
    // The silenced requests ran.
    assert!(String::from_utf8_lossy(&want).contains("$1\r\n2\r\n"));
}
