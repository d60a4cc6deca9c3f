//! Client authentication, as redis-server does it: with a password required, a client can
//! do nothing but `AUTH`/`HELLO ... AUTH`/`QUIT` until it logs in (`NOAUTH`); a wrong
//! password gets `WRONGPASS` and is logged without the secret; a user whose rules do not
//! allow a command gets `NOPERM`. Secrets come from a file or an environment variable,
//! never from the configuration itself.

use std::time::Duration;

use shardcast_tests::servers::{
    RedisServer, ShardcastProcess, free_port, published_and_heard, pushed_and_popped, wait_for,
};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast_node");
const PASSWORD: &str = "s3cret-default-pw";
const WRONG: &str = "guessed-wrong-pw";
/// `printf %s reader-pw | sha256sum`, computed by coreutils rather than by the code under
/// test.
fn reader_digest() -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", "printf %s reader-pw | sha256sum"])
        .output()
        .expect("sha256sum (coreutils)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

fn error(c: &mut redis::Connection, words: &[&str]) -> String {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    // redis-rs words some codes its own way (`NoPerm:`): compare in upper case.
    match cmd.query::<redis::Value>(c) {
        Ok(v) => format!("no error: {v:?}"),
        Err(e) => e.to_string().to_uppercase(),
    }
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

#[test]
fn a_client_logs_in_before_anything_and_runs_only_what_its_rules_allow() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("default.pw"), format!("{PASSWORD}\n")).expect("secret");
    let port = free_port();
    let config = dir.path().join("shardcast.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n\
             [[instances]]\nname = \"redis-0\"\naddress = \"{}\"\n\
             [auth]\nrequirepass_file = \"default.pw\"\n\
             [[auth.users]]\nname = \"reader\"\npassword_sha256 = \"{}\"\ncommands = \"+@read +@connection\"\n",
            server.address(),
            reader_digest()
        ),
    )
    .expect("config");
    let log = dir.path().join("shardcast.log");
    let _p = ShardcastProcess::start_logged(&[BIN], &config, port, &[], Some(&log));

    // Before logging in: nothing but AUTH, HELLO with AUTH, and QUIT.
    let mut anon = connect(&format!("redis://127.0.0.1:{port}/"));
    assert!(error(&mut anon, &["GET", "k"]).contains("NOAUTH"));
    assert!(error(&mut anon, &["PING"]).contains("NOAUTH"));
    let hello = error(&mut anon, &["HELLO", "3"]);
    assert!(
        hello.contains("NOAUTH") && hello.contains("HELLO MUST BE CALLED"),
        "{hello}"
    );
    let wrong = error(&mut anon, &["AUTH", WRONG]);
    assert!(wrong.contains("WRONGPASS"), "{wrong}");
    assert!(error(&mut anon, &["GET", "k"]).contains("NOAUTH"));
    let ok: String = redis::cmd("AUTH")
        .arg(PASSWORD)
        .query(&mut anon)
        .expect("AUTH with the right password");
    assert_eq!(ok, "OK");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut anon)
        .expect("SET once logged in");

    // redis-rs logs in from the URL, as applications do.
    let mut app = connect(&format!("redis://:{PASSWORD}@127.0.0.1:{port}/"));
    let got: String = redis::cmd("GET").arg("k").query(&mut app).expect("GET");
    assert_eq!(got, "v");

    // A user whose rules allow reads only.
    let mut reader = connect(&format!("redis://reader:reader-pw@127.0.0.1:{port}/"));
    let got: String = redis::cmd("GET").arg("k").query(&mut reader).expect("GET");
    assert_eq!(got, "v");
    let denied = error(&mut reader, &["SET", "k", "w"]);
    assert!(
        denied.contains("NOPERM") && denied.contains("'SET'"),
        "{denied}"
    );
    let denied = error(&mut reader, &["FLUSHALL"]);
    assert!(denied.contains("NOPERM"), "{denied}");
    let got: String = redis::cmd("GET").arg("k").query(&mut app).expect("GET");
    assert_eq!(got, "v", "the refused SET changed nothing");

    // HELLO logs in and switches protocol at once; a wrong pair changes nothing.
    let mut fresh = connect(&format!("redis://127.0.0.1:{port}/"));
    let wrong = error(&mut fresh, &["HELLO", "3", "AUTH", "reader", WRONG]);
    assert!(wrong.contains("WRONGPASS"), "{wrong}");
    let hello: redis::Value = redis::cmd("HELLO")
        .arg(2)
        .arg("AUTH")
        .arg("reader")
        .arg("reader-pw")
        .query(&mut fresh)
        .expect("HELLO AUTH");
    assert!(format!("{hello:?}").contains("proto"), "{hello:?}");
    let got: String = redis::cmd("GET").arg("k").query(&mut fresh).expect("GET");
    assert_eq!(got, "v");

    // Failed logins are logged with the user, never the password.
    wait_for(
        "the failed login in the log",
        Duration::from_secs(10),
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("authentication failed")),
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(WRONG), "the log holds a password");
    assert!(!text.contains(PASSWORD), "the log holds a password");
}

#[test]
fn a_secret_is_never_inline_and_a_missing_one_is_named() {
    let base =
        "listen = \"127.0.0.1:7380\"\n[[instances]]\nname = \"a\"\naddress = \"127.0.0.1:6379\"\n";
    let inline = shardcast::config::Config::parse(&format!("{base}[auth]\nrequirepass = \"x\"\n"))
        .expect_err("an inline password is refused");
    assert!(
        inline.contains("requirepass_file") && inline.contains("line 6"),
        "{inline}"
    );
    let config = shardcast::config::Config::parse(&format!(
        "{base}[auth]\nrequirepass_env = \"SHARDCAST_TEST_NO_SUCH_VARIABLE\"\n"
    ))
    .expect("parses");
    let missing = config.auth.users().expect_err("the variable is not set");
    assert!(
        missing.contains("SHARDCAST_TEST_NO_SUCH_VARIABLE"),
        "{missing}"
    );
    let config = shardcast::config::Config::parse(&format!(
        "{base}[[auth.users]]\nname = \"u\"\npassword_sha256 = \"abc\"\n"
    ))
    .expect("parses");
    let bad = config.auth.users().expect_err("not a digest");
    assert!(bad.contains("64 hex digits"), "{bad}");
}

/// A direct connection to `server` logging in with `userinfo` (`:password` or
/// `user:password`).
fn direct(server: &RedisServer, userinfo: &str) -> redis::Connection {
    connect(&format!("redis://{userinfo}@127.0.0.1:{}/", server.port))
}

#[test]
fn the_proxy_logs_in_to_password_protected_instances_for_everything_it_does() {
    use shardcast_sdk::types::MigrationOutcome;
    let servers = [RedisServer::start(), RedisServer::start()];
    // Instance 0 wants the default user's password; instance 1 an ACL user of its own.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "proxy", "on", ">proxy-pw", "~*", "&*", "+@all"][..])
        .query(&mut servers[1].client())
        .expect("ACL SETUSER");
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "fleet-pw"][..])
        .query(&mut servers[0].client())
        .expect("requirepass");
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "off"][..])
        .query(&mut servers[1].client())
        .expect("default off");
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = dir.path().join("fleet.pw");
    let own = dir.path().join("proxy.pw");
    std::fs::write(&fleet, "fleet-pw\n").expect("secret");
    std::fs::write(&own, "proxy-pw").expect("secret");
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [instance_auth]\npassword_file = {:?}\n\
         [[instances]]\nname = \"redis-0\"\naddress = \"{}\"\n\
         [[instances]]\nname = \"redis-1\"\naddress = \"{}\"\nusername = \"proxy\"\npassword_file = {:?}\n",
        fleet.display().to_string(),
        servers[0].address(),
        servers[1].address(),
        own.display().to_string(),
    );
    let p = shardcast_tests::servers::Proxy::start_config(port, &text);
    let mut c = p.client_within(Duration::from_secs(10));
    let keys: Vec<String> = (0..300).map(|i| format!("guarded:{i}")).collect();
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(k).query(&mut c).expect("SET");
    }
    let got: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut c).expect("MGET");
    assert_eq!(got, keys);
    // Both instances hold some of them: both logins worked.
    let held =
        |conn: &mut redis::Connection| -> i64 { redis::cmd("DBSIZE").query(conn).expect("DBSIZE") };
    let on0 = held(&mut direct(&servers[0], ":fleet-pw"));
    let on1 = held(&mut direct(&servers[1], "proxy:proxy-pw"));
    assert!(on0 > 0 && on1 > 0 && on0 + on1 == 300, "{on0} + {on1}");
    // A session's own connection (another database) and a blocking command.
    assert_eq!(pushed_and_popped(&mut c, "guarded:list"), "x");
    // A subscription opens its own connection to the channel's instance.
    let mut sub = p.client_within(Duration::from_secs(10));
    assert_eq!(
        published_and_heard(&mut sub, &mut c, "guarded:news", "hello"),
        "hello"
    );
    // A migration copies between the two protected instances.
    let m = p.move_segment(0, 1, Duration::from_secs(30));
    assert_eq!(m.outcome, MigrationOutcome::Completed, "{}", m.detail);
    let got: Vec<String> = redis::cmd("MGET")
        .arg(&keys)
        .query(&mut c)
        .expect("MGET after the move");
    assert_eq!(got, keys);
}

#[test]
fn a_refused_instance_login_is_an_error_naming_the_instance_and_no_secret() {
    let server = RedisServer::start();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "the-real-pw"][..])
        .query(&mut server.client())
        .expect("requirepass");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wrong.pw");
    std::fs::write(&file, "a-wrong-pw").expect("secret");
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\n[limits]\nhold_ms = 300\n\
         [[instances]]\nname = \"redis-0\"\naddress = \"{}\"\npassword_file = {:?}\n",
        server.address(),
        file.display().to_string()
    );
    let p = shardcast_tests::servers::Proxy::start_config(port, &text);
    let mut c = p.client_within(Duration::from_secs(10));
    let e = error(&mut c, &["GET", "k"]);
    assert!(e.contains("REFUSED THE LOGIN"), "{e}");
    assert!(e.contains(&server.address()), "{e}");
    assert!(
        !e.contains("A-WRONG-PW") && !e.contains("THE-REAL-PW"),
        "{e}"
    );
}

/// A reply as a comparable word: the value, or an error's code (`NOPERM`, `WRONGPASS`).
fn outcome(c: &mut redis::Connection, words: &[&str]) -> String {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    match cmd.query::<redis::Value>(c) {
        Ok(v) => format!("{v:?}"),
        Err(e) => {
            let text = e.to_string().to_uppercase();
            ["NOPERM", "NOAUTH", "WRONGPASS"]
                .into_iter()
                .find(|code| text.contains(code))
                .map_or(format!("other error: {text}"), str::to_owned)
        }
    }
}

#[test]
fn acl_setuser_makes_users_whose_key_and_channel_rules_hold_as_on_redis_server() {
    let direct = RedisServer::start();
    let fleet = [RedisServer::start(), RedisServer::start()];
    let p = shardcast_tests::servers::Proxy::start(&[&fleet[0], &fleet[1]], "");
    let setup: &[&[&str]] = &[
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">app-pw",
            "~app:*",
            "&app.*",
            "+@all",
            "-@dangerous",
        ],
        &[
            "ACL", "SETUSER", "gone", "on", "nopass", "allkeys", "+@read",
        ],
    ];
    // As the user: each step's outcome through shardcast equals redis-server's.
    let steps: &[&[&str]] = &[
        &["SET", "app:1", "v"],
        &["GET", "app:1"],
        &["SET", "other:1", "v"],
        &["MSET", "app:2", "x", "app:3", "y"],
        &["MSET", "app:4", "x", "other:4", "y"],
        &["MGET", "app:1", "other:1"],
        &["PUBLISH", "app.news", "hi"],
        &["PUBLISH", "gossip", "hi"],
        &["FLUSHALL"],
        &["KEYS", "*"],
        &["WATCH", "other:1"],
        &["WATCH", "app:1"],
        &["UNWATCH"],
        &["RESET"],
        &["ACL", "WHOAMI"],
    ];
    let mut results = Vec::new();
    for port in [direct.port, p.port] {
        let mut admin = connect(&format!("redis://127.0.0.1:{port}/"));
        for s in setup {
            assert_eq!(outcome(&mut admin, s), "ok", "{s:?} on {port}");
        }
        let users = outcome(&mut admin, &["ACL", "USERS"]);
        assert!(
            users.contains("app") && users.contains("default"),
            "{users}"
        );
        let mut user = connect(&format!("redis://app:app-pw@127.0.0.1:{port}/"));
        let mut seen: Vec<String> = steps.iter().map(|s| outcome(&mut user, s)).collect();
        seen.push(outcome(
            &mut admin,
            &["ACL", "DRYRUN", "app", "SET", "app:9", "v"],
        ));
        let dry = outcome(&mut admin, &["ACL", "DRYRUN", "app", "FLUSHALL"]);
        seen.push(dry.contains("no permissions").to_string());
        let wrong = outcome(
            &mut connect(&format!("redis://127.0.0.1:{port}/")),
            &["AUTH", "app", "not-the-pw"],
        );
        seen.push(wrong);
        // DELUSER disconnects the user's clients.
        let mut doomed = connect(&format!("redis://gone:any@127.0.0.1:{port}/"));
        seen.push(outcome(&mut doomed, &["GET", "app:1"]));
        assert_eq!(outcome(&mut admin, &["ACL", "DELUSER", "gone"]), "int(1)");
        seen.push(
            redis::cmd("PING")
                .query::<String>(&mut doomed)
                .is_err()
                .to_string(),
        );
        results.push(seen);
    }
    assert_eq!(results[1], results[0], "through shardcast vs redis-server");
    assert!(results[0].iter().any(|r| r == "NOPERM"), "{:?}", results[0]);
    // A subscription to a channel outside the rules is refused as redis-server refuses it,
    // on the path into subscribed mode too; the client is then not subscribed.
    let script = b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$6\r\napp-pw\r\n\
        *2\r\n$9\r\nSUBSCRIBE\r\n$6\r\ngossip\r\n*2\r\n$4\r\nECHO\r\n$4\r\ndone\r\n";
    let exchange = |port: u16| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(script).expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(b"$4\r\ndone\r\n") {
            let n = s.read(&mut buf).expect("replies");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let (want, got) = (exchange(direct.port), exchange(p.port));
    assert!(want.contains("-NOPERM"), "{want}");
    assert_eq!(
        got.lines()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        want.lines()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        "{got} vs {want}"
    );
    // Scripts run unchecked on the instances: through shardcast only a user allowed
    // everything may run one.
    let mut user = connect(&format!("redis://app:app-pw@127.0.0.1:{}/", p.port));
    assert_eq!(outcome(&mut user, &["EVAL", "return 1", "0"]), "NOPERM");
    // EXEC judges the queued commands by the rules as they are at EXEC.
    let mut admin = connect(&format!("redis://127.0.0.1:{}/", p.port));
    assert_eq!(outcome(&mut user, &["MULTI"]), "ok");
    assert_eq!(
        outcome(&mut user, &["SET", "app:late", "v"]),
        "simple-string(\"QUEUED\")"
    );
    assert_eq!(
        outcome(
            &mut admin,
            &["ACL", "SETUSER", "app", "resetkeys", "~other:*"]
        ),
        "ok"
    );
    assert_eq!(outcome(&mut user, &["EXEC"]), "NOPERM");
    assert_eq!(outcome(&mut admin, &["EXISTS", "app:late"]), "int(0)");
    // A subscriber logged in within the same batch is found and disconnected by DELUSER.
    assert_eq!(
        outcome(
            &mut admin,
            &[
                "ACL",
                "SETUSER",
                "listener",
                "on",
                "nopass",
                "allchannels",
                "+@all"
            ]
        ),
        "ok"
    );
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"*3\r\n$4\r\nAUTH\r\n$8\r\nlistener\r\n$1\r\nx\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n")
            .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b":1\r\n") {
            let n = s.read(&mut buf).expect("replies");
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(
            outcome(&mut admin, &["ACL", "DELUSER", "listener"]),
            "int(1)"
        );
        let closed = s.read(&mut buf);
        assert!(
            matches!(closed, Ok(0))
                || closed.is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "the deleted user's subscriber was not disconnected"
        );
    }
    // ACL LIST shows the digest of the password (sha256sum's, not the code's), never it.
    let mut admin = connect(&format!("redis://127.0.0.1:{}/", p.port));
    let list: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query(&mut admin)
        .expect("LIST");
    let line = list
        .iter()
        .find(|l| l.starts_with("user app "))
        .expect("app listed");
    let out = std::process::Command::new("sh")
        .args(["-c", "printf %s app-pw | sha256sum"])
        .output()
        .expect("sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned();
    assert!(
        line.contains(&format!("#{hex}")) && !line.contains("app-pw"),
        "{line}"
    );
    assert!(
        line.contains("~other:*") && line.contains("&app.*"),
        "{line}"
    );
}

#[test]
fn an_unauthenticated_client_cannot_subscribe() {
    use std::io::{Read, Write};
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, PASSWORD).expect("secret");
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\n[auth]\nrequirepass_file = {:?}\n\
         [[instances]]\nname = \"redis-0\"\naddress = \"{}\"\n",
        file.display().to_string(),
        server.address()
    );
    let _p = shardcast_tests::servers::Proxy::start_config(port, &text);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n*1\r\n$4\r\nPING\r\n")
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got.iter().filter(|&&b| b == b'\n').count() < 2 {
        let n = s.read(&mut buf).expect("replies");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("-NOAUTH") && text.matches("-NOAUTH").count() == 2,
        "{text}"
    );
}
