//! Cluster mode with real processes: one etcd, three redis-servers and three shardcast
//! proxies sharing one keyspace, writers on every proxy, and segments moving back and
//! forth (the `ping-pong` policy, carried out by whichever proxy is elected). Faults: the
//! controller stopped mid-migration, a proxy frozen across cutovers, etcd restarted. After
//! each, the chaos checker reads every acknowledged write back through the proxies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use shardcast_tests::chaos::{Ledger, check, write_until};
use shardcast_tests::cluster::ClusterRig;

const BIN: &str = env!("CARGO_BIN_EXE_shardcast_node");

/// A writer on every proxy's port.
struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<(u16, JoinHandle<Ledger>)>,
}

impl Writers {
    fn start(ports: &[u16]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let stop = stop.clone();
                let tag: &'static str = ["w0", "w1", "w2", "w3"][i];
                (
                    port,
                    std::thread::spawn(move || write_until(port, stop, tag)),
                )
            })
            .collect();
        Writers { stop, threads }
    }

    fn stop(self) -> Vec<(u16, Ledger)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(port, t)| (port, t.join().expect("writer")))
            .collect()
    }
}

/// Every writer's acknowledged writes read back through `via` (a live proxy).
fn verify(ledgers: &[(u16, Ledger)], via: u16) {
    let mut bad = Vec::new();
    let mut acknowledged = 0;
    for (port, ledger) in ledgers {
        acknowledged += ledger.acknowledged();
        bad.extend(
            check(via, ledger)
                .into_iter()
                .map(|b| format!("writer on {port}: {b}")),
        );
    }
    assert!(
        acknowledged > 100,
        "the writers got through: {acknowledged} acknowledged"
    );
    for (port, ledger) in ledgers {
        assert!(
            ledger.acknowledged() > 10,
            "the writer on {port} got through: {ledger:?}"
        );
    }
    assert!(
        bad.is_empty(),
        "{} violations, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

#[test]
fn a_migration_under_writes_from_every_proxy_loses_nothing() {
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    rig.start_all(&[]);
    let writers = Writers::start(&rig.ports);
    let from = rig.completed_moves();
    std::thread::sleep(Duration::from_secs(4));
    rig.wait_for_moves(from, 6, Duration::from_secs(90));
    let ledgers = writers.stop();
    for &port in &rig.ports {
        verify(&ledgers, port);
    }
    let failed: u64 = ledgers.iter().map(|(_, l)| l.failed).sum();
    assert_eq!(failed, 0, "no write failed while segments moved");
}

#[test]
fn the_controller_stopped_after_its_commit_is_replaced_and_nothing_is_lost() {
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    // The first controller stops the process (abort, as a SIGKILL would) right after a
    // flip is committed in etcd, before the source's copy is deleted.
    rig.start_all(&[("SHARDCAST_CRASH_AT", "committed")]);
    let writers = Writers::start(&rig.ports[1..]);
    shardcast_tests::servers::wait_for("the controller to stop", Duration::from_secs(60), || {
        rig.proxies[0].as_mut().is_some_and(|p| p.exited())
    });
    rig.proxies[0] = None;
    shardcast_tests::servers::wait_for("another controller", Duration::from_secs(30), || {
        rig.leader().is_some()
    });
    let leader = rig.leader().expect("a leader");
    rig.wait_for_log(leader, "recovery: migration", Duration::from_secs(30));
    assert!(
        rig.log(leader).contains("committed before the stop"),
        "the new controller finished the committed migration: {}",
        rig.log(leader)
    );
    // Then the new controller is SIGKILLed at whatever step it is in, and the last one
    // takes over.
    let from = rig.completed_moves();
    rig.wait_for_moves(from, 2, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    rig.proxies[leader].as_mut().expect("running").kill();
    rig.proxies[leader] = None;
    let last = 3 - leader;
    rig.wait_for_log(last, "elected controller", Duration::from_secs(30));
    let from = rig.completed_moves();
    rig.wait_for_moves(from, 2, Duration::from_secs(60));
    let ledgers = writers.stop();
    verify(&ledgers, rig.ports[last]);
}

#[test]
fn a_proxy_frozen_across_cutovers_never_writes_to_the_old_owner() {
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    rig.start_all(&[]);
    let writers = Writers::start(&rig.ports);
    let from = rig.completed_moves();
    std::thread::sleep(Duration::from_secs(2));
    rig.wait_for_moves(from, 1, Duration::from_secs(60));
    // Freeze a proxy that is not the controller, with its writer's request in its socket.
    let frozen = (1..3)
        .find(|&i| rig.leader() != Some(i))
        .expect("a follower");
    let pid = rig.proxies[frozen]
        .as_ref()
        .and_then(|p| p.pid())
        .expect("pid");
    let signal = |s: &str| {
        std::process::Command::new("kill")
            .args([s, &pid.to_string()])
            .status()
            .expect("kill");
    };
    signal("-STOP");
    // Its lease (2 s) ends; the others move segments on without it.
    std::thread::sleep(Duration::from_secs(4));
    let from = rig.completed_moves();
    rig.wait_for_moves(from, 2, Duration::from_secs(60));
    signal("-CONT");
    rig.wait_for_log(frozen, "lease lapsed", Duration::from_secs(20));
    shardcast_tests::servers::wait_for(
        "the frozen proxy to rejoin",
        Duration::from_secs(30),
        || {
            let log = rig.log(frozen);
            log.rfind("joined: serving") > log.rfind("lease lapsed")
        },
    );
    let from = rig.completed_moves();
    std::thread::sleep(Duration::from_secs(2));
    rig.wait_for_moves(from, 2, Duration::from_secs(60));
    let ledgers = writers.stop();
    for &port in &rig.ports {
        verify(&ledgers, port);
    }
}

#[test]
fn proxies_keep_serving_while_etcd_restarts_and_moves_resume_after() {
    // Leases of 10 s ride out an etcd that is down 1.5 s and then needs a second or two to
    // elect itself leader again: a proxy trusts its lease for at least two thirds of the
    // TTL after etcd last answered.
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 10);
    rig.start_all(&[]);
    let writers = Writers::start(&rig.ports);
    let from = rig.completed_moves();
    rig.wait_for_moves(from, 1, Duration::from_secs(60));
    rig.etcd.kill();
    std::thread::sleep(Duration::from_millis(1500));
    rig.etcd.restart();
    let from = rig.completed_moves();
    rig.wait_for_moves(from, 2, Duration::from_secs(60));
    let ledgers = writers.stop();
    let refused: u64 = ledgers.iter().map(|(_, l)| l.refused + l.failed).sum();
    assert_eq!(refused, 0, "no proxy stopped serving while etcd restarted");
    for &port in &rig.ports {
        verify(&ledgers, port);
    }
    for i in 0..3 {
        assert!(
            !rig.log(i).contains("lease lapsed"),
            "proxy {i} kept its lease: {}",
            rig.log(i)
        );
    }
}

#[test]
fn the_chaos_checker_finds_every_acknowledged_write_once_under_mixed_faults() {
    // The faults of the tests above, one after another under the same writers, with the
    // instance faults of the single-process chaos test mixed in: the controller SIGKILLed
    // at an arbitrary moment and started again, a follower frozen past its lease, an
    // instance SIGKILLed and restarted, an instance hung past the request deadline, etcd
    // restarted, and the controller SIGKILLed once more. Segments keep moving between
    // faults; then every writer's ledger is checked through every proxy.
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 3);
    rig.start_all(&[]);
    let writers = Writers::start(&rig.ports);
    let progress = |rig: &ClusterRig| {
        let from = rig.completed_moves();
        rig.wait_for_moves(from, 1, Duration::from_secs(60));
    };
    progress(&rig);
    let kill_leader = |rig: &mut ClusterRig| {
        let leader = rig.leader().expect("a controller");
        rig.proxies[leader].as_mut().expect("running").kill();
        rig.start(leader, &[]);
        rig.wait_for_log(leader, "joined: serving", Duration::from_secs(30));
        shardcast_tests::servers::wait_for("a controller", Duration::from_secs(30), || {
            rig.leader().is_some()
        });
    };
    kill_leader(&mut rig);
    progress(&rig);

    let frozen = (0..3)
        .find(|&i| rig.leader() != Some(i))
        .expect("a follower");
    rig.proxies[frozen]
        .as_ref()
        .expect("running")
        .signal("STOP");
    std::thread::sleep(Duration::from_secs(5));
    rig.proxies[frozen]
        .as_ref()
        .expect("running")
        .signal("CONT");
    progress(&rig);

    rig.servers[1].kill();
    std::thread::sleep(Duration::from_millis(500));
    rig.servers[1].restart();
    progress(&rig);

    rig.servers[0].pause();
    std::thread::sleep(Duration::from_millis(2500));
    rig.servers[0].resume();
    progress(&rig);

    rig.etcd.kill();
    std::thread::sleep(Duration::from_millis(500));
    rig.etcd.restart();
    progress(&rig);

    kill_leader(&mut rig);
    progress(&rig);

    let ledgers = writers.stop();
    for &port in &rig.ports {
        verify(&ledgers, port);
    }
    let sum = |f: fn(&Ledger) -> u64| ledgers.iter().map(|(_, l)| f(l)).sum::<u64>();
    eprintln!(
        "checked {} acknowledged writes ({} failed and uncertain, {} refused with TRYAGAIN) over 3 proxies after 6 faults; {} migrations completed",
        sum(Ledger::acknowledged),
        sum(|l| l.failed),
        sum(|l| l.refused),
        rig.completed_moves()
    );
}

/// The load forecasts' `expected` values of the `counter` policy's ticks in a decision
/// log (its tick count), in order.
fn counts(log: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "tick")
        .filter(|v| {
            v["planner"]
                .as_str()
                .is_some_and(|p| p.starts_with("counter@"))
        })
        .filter_map(|v| v["predictions"]["load"][0]["expected"].as_f64())
        .collect()
}

#[test]
fn a_policy_swap_reaches_every_proxy_and_its_state_survives_a_leader_change() {
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    rig.moving(&[]);
    rig.start_all(&[]);
    let planner = |rig: &ClusterRig, i: usize| {
        shardcast_tests::decisions::last_planner(&rig.state(i).join("decisions.jsonl"))
            .unwrap_or_default()
    };
    // Every proxy runs its policy (and so watches its file).
    shardcast_tests::servers::wait_for("every policy to run", Duration::from_secs(30), || {
        (0..3).all(|i| planner(&rig, i).starts_with("ping-pong@"))
    });
    let leader = rig.leader().expect("a controller");
    // The operator swaps the controller's policy file only: `counter` (it counts the ticks
    // it predicted and hands the count over; it takes no settings).
    rig.settings("");
    let staged = rig.policy_file(leader).with_extension("new");
    std::fs::copy(shardcast_tests::artifacts::COUNTER, &staged).expect("stage");
    std::fs::rename(&staged, rig.policy_file(leader)).expect("swap the file");
    let swapped = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        (0..3).all(|i| planner(&rig, i).starts_with("counter@"))
    });
    assert!(
        swapped,
        "every proxy runs the swapped-in policy: {:?}",
        (0..3).map(|i| rig.log(i)).collect::<Vec<_>>()
    );
    // A follower restarted later starts from its own file (ping-pong) and follows the
    // controller's version, with a count of its own that starts at zero: 6 s (60 ticks)
    // behind the controller's.
    std::thread::sleep(Duration::from_secs(6));
    let late = (0..3).find(|&i| i != leader).expect("a follower");
    let other = 3 - leader - late;
    rig.proxies[late].as_mut().expect("running").kill();
    let log = rig.state(late).join("decisions.jsonl");
    let before = counts(&log).len();
    rig.start(late, &[]);
    shardcast_tests::servers::wait_for(
        "the restarted proxy to follow the policy",
        Duration::from_secs(30),
        || {
            let log = rig.log(late);
            log.rfind("joined: serving").is_some()
                && counts(&rig.state(late).join("decisions.jsonl")).len() > before
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    // The other two stop; the restarted proxy is elected and resumes the last checkpoint.
    rig.proxies[other].as_mut().expect("running").kill();
    rig.proxies[leader].as_mut().expect("running").kill();
    let elected_at = rig.log(late).matches("elected controller").count();
    shardcast_tests::servers::wait_for(
        "the restarted proxy to be elected",
        Duration::from_secs(30),
        || rig.log(late).matches("elected controller").count() > elected_at,
    );
    std::thread::sleep(Duration::from_secs(2));
    let seen = counts(&log).split_off(before);
    // Without a hand-over, the count never exceeds the ticks this proxy logged with the
    // policy; with the checkpoint restored it is ahead by about the 60 ticks it started
    // behind (less up to 10 since the last checkpoint).
    let last = *seen.last().expect("counter ticks");
    assert!(
        last >= seen.len() as f64 + 30.0,
        "the count ({last}) is ahead of this proxy's own {} ticks: the previous controller's state was restored; log: {}",
        seen.len(),
        rig.log(late)
    );
}

#[test]
fn a_client_reconnecting_to_another_proxy_by_name_finds_its_database() {
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    rig.moving(&[]);
    rig.start_all(&[]);
    let connect = |port: u16| {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("a connection to a proxy")
    };
    let run = |c: &mut redis::Connection, args: &[&str]| -> redis::RedisResult<redis::Value> {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(c)
    };
    let get = |c: &mut redis::Connection, key: &str| -> Option<String> {
        redis::cmd("GET").arg(key).query(c).expect("GET")
    };
    // On proxy 0: a named client in database 3, a key there, and a transaction open.
    let mut first = connect(rig.ports[0]);
    run(&mut first, &["CLIENT", "SETNAME", "app-1"]).expect("SETNAME");
    run(&mut first, &["SELECT", "3"]).expect("SELECT");
    run(&mut first, &["SET", "resume:k", "in-3"]).expect("SET");
    run(&mut first, &["MULTI"]).expect("MULTI");
    run(&mut first, &["SET", "resume:queued", "1"]).expect("queued");
    // The proxy dies; the client reconnects to another one with its name. Its proxy has
    // stopped publishing (three ticks), so the new proxy waits for its lease to end (2 s
    // here) and then gives the client its database back.
    std::thread::sleep(Duration::from_millis(500));
    rig.proxies[0].as_mut().expect("running").kill();
    std::thread::sleep(Duration::from_millis(500));
    let mut again = connect(rig.ports[1]);
    run(&mut again, &["CLIENT", "SETNAME", "app-1"]).expect("SETNAME");
    assert_eq!(
        get(&mut again, "resume:k").as_deref(),
        Some("in-3"),
        "database 3 resumed"
    );
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query(&mut again)
        .expect("CLIENT INFO");
    assert!(
        info.contains("name=app-1") && info.contains(" db=3 "),
        "{info}"
    );
    // The open transaction did not carry over.
    let exec = run(&mut again, &["EXEC"]).expect_err("EXEC without MULTI");
    assert!(exec.to_string().contains("EXEC without MULTI"), "{exec}");
    assert_eq!(get(&mut again, "resume:queued"), None, "nothing queued ran");
    // While that session is open on a live proxy, another connection with the same name
    // is not put in its database.
    let mut twin = connect(rig.ports[2]);
    run(&mut twin, &["CLIENT", "SETNAME", "app-1"]).expect("SETNAME");
    assert_eq!(
        get(&mut twin, "resume:k"),
        None,
        "a live session is not copied"
    );
    drop(twin);
    // Once it ends, `HELLO 3 SETNAME` on another proxy resumes it, in the protocol it
    // asked for.
    drop(again);
    let mut resumed = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let mut hello = connect(rig.ports[2]);
        run(&mut hello, &["HELLO", "3", "SETNAME", "app-1"]).expect("HELLO");
        if get(&mut hello, "resume:k").as_deref() == Some("in-3") {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "an ended session's database is resumed by name");
    // Another name, and a client that selected its database itself, start where they say.
    let mut other = connect(rig.ports[2]);
    run(&mut other, &["CLIENT", "SETNAME", "app-2"]).expect("SETNAME");
    assert_eq!(get(&mut other, "resume:k"), None, "app-2 is in database 0");
    let mut chosen = connect(rig.ports[1]);
    run(&mut chosen, &["SELECT", "5"]).expect("SELECT");
    run(&mut chosen, &["CLIENT", "SETNAME", "app-1"]).expect("SETNAME");
    assert_eq!(
        get(&mut chosen, "resume:k"),
        None,
        "its own SELECT 5 stands"
    );
}

/// haproxy with the README's configuration, on `front`, in front of `ports`; stopped
/// when dropped.
struct Haproxy {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(front: u16, ports: &[u16]) -> Self {
        let readme = include_str!("../../README.md");
        let marker = "```\n# haproxy.cfg\n";
        let start = readme.find(marker).expect("README has haproxy.cfg") + marker.len();
        let end = start + readme[start..].find("```").expect("closing fence");
        let mut text = readme[start..end].replace("127.0.0.1:7380", &format!("127.0.0.1:{front}"));
        for (i, port) in ports.iter().enumerate() {
            text = text.replace(
                &format!("127.0.0.1:{}", 7381 + i),
                &format!("127.0.0.1:{port}"),
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, text).expect("write haproxy.cfg");
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let program = if std::path::Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let child = std::process::Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start haproxy ({e}): install Debian's package with `apt-get install haproxy`")
            });
        shardcast_tests::servers::wait_for("haproxy to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", front)).is_ok()
        });
        Haproxy { child, _dir: dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn clients_through_haproxy_with_the_readme_configuration_reach_every_proxy_and_avoid_a_dead_one() {
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    rig.moving(&[]);
    rig.start_all(&[]);
    let front = shardcast_tests::servers::free_port();
    let _haproxy = Haproxy::start(front, &rig.ports);
    // Let the health checks pass (rise 2, every second).
    std::thread::sleep(Duration::from_secs(3));
    let through = |i: usize| -> redis::RedisResult<redis::Connection> {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{front}/"))?
            .get_connection_with_timeout(Duration::from_secs(2))?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(format!("via-haproxy-{i}"))
            .query::<()>(&mut c)?;
        redis::cmd("SET")
            .arg(format!("haproxy:{i}"))
            .arg(i)
            .query::<()>(&mut c)?;
        Ok(c)
    };
    let held: Vec<redis::Connection> = (0..6)
        .map(|i| through(i).expect("a connection through haproxy"))
        .collect();
    // leastconn spreads them over every proxy.
    for (p, &port) in rig.ports.iter().enumerate() {
        let mut direct = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .expect("direct");
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut direct)
            .expect("LIST");
        assert!(
            list.contains("name=via-haproxy-"),
            "proxy {p} serves some of haproxy's connections: {list}"
        );
    }
    drop(held);
    // A proxy dies: the health check takes it out, and every new connection works.
    rig.proxies[0].as_mut().expect("running").kill();
    std::thread::sleep(Duration::from_secs(3));
    for i in 6..18 {
        let mut c = through(i).expect("a connection through haproxy after a proxy died");
        for k in 0..6 {
            let v: Option<u32> = redis::cmd("GET")
                .arg(format!("haproxy:{k}"))
                .query(&mut c)
                .expect("GET");
            assert_eq!(v, Some(k), "one keyspace behind every proxy");
        }
    }
}

/// A field of proxy `port`'s `INFO shardcast`.
fn info_field(port: u16, field: &str) -> String {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("a connection to a proxy");
    let info: String = redis::cmd("INFO")
        .arg("shardcast")
        .query(&mut c)
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn splits_activations_and_drains_reach_every_proxy_and_lose_nothing() {
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    rig.standby(&[2]);
    // The controller's policy activates the standby, drains instance 0 and splits segment 1
    // once, under writers on every proxy.
    rig.settings("segments = []\nactivate = [2]\ndrain = [0]\nsplit = [1]\nsplit_above = 3000\n");
    rig.start_all(&[]);
    let writers = Writers::start(&rig.ports);
    std::thread::sleep(Duration::from_secs(1));
    let done = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        rig.ports.iter().all(|&port| {
            let states = info_field(port, "instance_states");
            states.contains("redis-0=standby")
                && states.contains("redis-2=active")
                && info_field(port, "segments") == "5"
        })
    });
    assert!(
        done,
        "every proxy sees redis-0 standby, redis-2 active and five segments: {:?}; the controller's decisions: {}",
        rig.ports
            .iter()
            .map(|&p| (info_field(p, "instance_states"), info_field(p, "segments")))
            .collect::<Vec<_>>(),
        rig.leader()
            .map(
                |l| std::fs::read_to_string(rig.state(l).join("decisions.jsonl"))
                    .unwrap_or_default()
            )
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("\"kind\":\"tick\"") || l.contains("reject"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::thread::sleep(Duration::from_secs(1));
    let ledgers = writers.stop();
    for &port in &rig.ports {
        verify(&ledgers, port);
    }
    let mut drained = rig.servers[0].client();
    let left: u64 = redis::cmd("DBSIZE").query(&mut drained).expect("DBSIZE");
    assert_eq!(left, 0, "nothing is left on the drained instance");
}

#[test]
fn the_controllers_policy_sees_the_clients_of_every_proxy() {
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    // Every proxy runs the shipped `forecast` policy, which scores every client session in
    // its view.
    for i in 0..3 {
        std::fs::copy(shardcast_tests::artifacts::FORECAST, rig.policy_file(i)).expect("copy");
    }
    rig.settings("");
    rig.start_all(&[]);
    let leader = rig.leader().expect("a controller");
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let mut client = redis::Client::open(format!("redis://127.0.0.1:{}/", rig.ports[follower]))
        .and_then(|c| c.get_connection())
        .expect("a client of a follower");
    let id: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut client)
        .expect("CLIENT ID");
    let scored = |rig: &ClusterRig| {
        std::fs::read_to_string(rig.state(leader).join("decisions.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "tick")
            .any(|v| {
                v["predictions"]["sessions"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|h| h["session"].as_u64() == Some(id)))
            })
    };
    let seen = (0..300).any(|i| {
        let _: () = redis::cmd("SET")
            .arg(format!("seen:{i}"))
            .arg(i)
            .query(&mut client)
            .expect("SET");
        std::thread::sleep(Duration::from_millis(100));
        scored(&rig)
    });
    assert!(
        seen,
        "the controller's policy scored session {id} of proxy {follower}"
    );
}

#[test]
fn the_controller_stopped_at_every_journal_step_is_replaced_and_nothing_is_lost() {
    // For each step a migration journals, the controller is made to stop the process right
    // after journaling it (abort, as a SIGKILL would; the fault-injection point
    // SHARDCAST_CRASH_AT), another proxy takes the office and resumes or rolls back from
    // the etcd journal, and moves go on.
    let mut rig = ClusterRig::new(&[BIN], 3, 3, 2);
    rig.start_all(&[]);
    let writers = Writers::start(&rig.ports);
    for step in shardcast_tests::chaos::STEPS {
        shardcast_tests::servers::wait_for("a controller", Duration::from_secs(30), || {
            rig.leader().is_some()
        });
        let leader = rig.leader().expect("a controller");
        // Only the controller runs while it restarts with the crash point, so it is elected
        // again; the others rejoin once it is.
        for i in (0..3).filter(|&i| i != leader) {
            rig.proxies[i] = None;
        }
        rig.proxies[leader] = None;
        rig.start(leader, &[("SHARDCAST_CRASH_AT", step)]);
        shardcast_tests::servers::wait_for(
            "the controller to be elected again",
            Duration::from_secs(30),
            || rig.leader() == Some(leader),
        );
        for i in (0..3).filter(|&i| i != leader) {
            rig.start(i, &[]);
        }
        shardcast_tests::servers::wait_for(
            &format!("the controller to stop at `{step}`"),
            Duration::from_secs(60),
            || rig.proxies[leader].as_mut().is_some_and(|p| p.exited()),
        );
        let log = rig.log(leader);
        let stop = log
            .lines()
            .rfind(|l| l.contains("SHARDCAST_CRASH_AT"))
            .unwrap_or_default();
        assert!(
            stop.contains(&format!("\"{step}\"")),
            "it stopped at {step}: {stop}"
        );
        rig.proxies[leader] = None;
        shardcast_tests::servers::wait_for("another controller", Duration::from_secs(30), || {
            rig.leader().is_some()
        });
        rig.start(leader, &[]);
        let from = rig.completed_moves();
        rig.wait_for_moves(from, 1, Duration::from_secs(60));
    }
    let ledgers = writers.stop();
    for &port in &rig.ports {
        verify(&ledgers, port);
    }
}

#[test]
fn a_flush_is_refused_on_every_proxy_while_the_journal_holds_a_migration() {
    // The controller stops right after journaling a copy: the migration stays unfinished
    // in etcd until the next controller rolls it back. Meanwhile another proxy, which runs
    // no migration itself, refuses a flush that could race the copy.
    let mut rig = ClusterRig::new(&[BIN], 3, 2, 2);
    rig.start_all(&[("SHARDCAST_CRASH_AT", "copy")]);
    shardcast_tests::servers::wait_for("the controller to stop", Duration::from_secs(60), || {
        rig.proxies[0].as_mut().is_some_and(|p| p.exited())
    });
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", rig.ports[1]))
        .and_then(|c| c.get_connection())
        .expect("a client of the other proxy");
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHDB").query(&mut c);
    let e = flush.expect_err("the flush is refused");
    assert_eq!(e.code(), Some("TRYAGAIN"), "{e}");
    assert!(e.to_string().contains("moving"), "{e}");
}
