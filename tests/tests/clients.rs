//! `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL` show and end the proxy's own client
//! connections, in Redis's format. The oracle for a client's address is its own socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shardcast_tests::servers::{Proxy, RedisServer};

/// A plain socket to the proxy, and its address as the proxy sees it (from the socket
/// itself, not from the proxy).
fn raw_client(p: &Proxy) -> (TcpStream, String) {
    let raw = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let addr = raw.local_addr().expect("local address").to_string();
    (raw, addr)
}

#[test]
fn client_list_shows_the_proxys_clients_and_client_kill_ends_one() {
    let server = RedisServer::start();
    let p = Proxy::start(&[&server], "");
    let (mut raw, addr) = raw_client(&p);
    raw.write_all(b"CLIENT SETNAME alpha\r\n").expect("write");
    let mut ok = [0u8; 5];
    raw.read_exact(&mut ok).expect("+OK");
    assert_eq!(&ok, b"+OK\r\n");

    let mut c = p.client_within(Duration::from_secs(10));
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut c)
        .expect("LIST");
    let alpha = list
        .lines()
        .find(|l| l.contains(&format!("addr={addr} ")))
        .unwrap_or_else(|| panic!("no line for {addr} in\n{list}"));
    assert!(alpha.contains(" name=alpha "), "{alpha}");
    assert!(
        alpha.contains(&format!("laddr=127.0.0.1:{} ", p.port)),
        "{alpha}"
    );
    assert!(
        alpha.contains(" db=0 ") && alpha.contains(" resp=2 "),
        "{alpha}"
    );
    assert_eq!(list.lines().count(), 2, "two clients: {list}");
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query(&mut c)
        .expect("INFO");
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).expect("ID");
    assert!(info.starts_with(&format!("id={me} ")), "{info}");

    let none: redis::RedisResult<()> = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("127.0.0.1:1")
        .query(&mut c);
    let e = none.expect_err("no such client").to_string();
    assert!(e.contains("No such client"), "{e}");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ADDR")
        .arg(&addr)
        .query(&mut c)
        .expect("KILL ADDR");
    assert_eq!(killed, 1);
    let mut buf = [0u8; 16];
    let n = raw.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the killed client's connection is closed");
    // SKIPME (default yes) spares the caller.
    let spared: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(me)
        .query(&mut c)
        .expect("KILL ID self");
    assert_eq!(spared, 0);
    let _: String = redis::cmd("PING").query(&mut c).expect("still connected");
}

#[test]
fn client_pause_holds_every_client_until_it_ends() {
    let server = RedisServer::start();
    let p = Proxy::start(&[&server], "");
    let mut c = p.client_within(Duration::from_secs(10));
    let mut other = p.client_within(Duration::from_secs(10));
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .query(&mut c)
        .expect("PAUSE WRITE");
    let got: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut other)
        .expect("reads go on");
    assert_eq!(got, None);
    let port = p.port;
    let writer = std::thread::spawn(move || {
        let mut w = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .expect("url")
            .get_connection()
            .expect("connect");
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query(&mut w)
            .expect("SET");
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!writer.is_finished(), "the write is held while paused");
    let direct: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut server.client())
        .expect("GET directly");
    assert_eq!(direct, None, "the held write has not reached the instance");
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut c)
        .expect("UNPAUSE");
    writer.join().expect("the write goes through once unpaused");
    let got: String = redis::cmd("GET").arg("k").query(&mut other).expect("GET");
    assert_eq!(got, "v");
}

#[test]
fn client_kill_ends_a_subscribed_client_too() {
    let server = RedisServer::start();
    let p = Proxy::start(&[&server], "");
    let (mut raw, addr) = raw_client(&p);
    raw.write_all(b"SUBSCRIBE news\r\n").expect("write");
    let mut confirmation = [0u8; 33];
    raw.read_exact(&mut confirmation).expect("the confirmation");
    assert!(confirmation.starts_with(b"*3\r\n$9\r\nsubscribe"));
    let mut c = p.client_within(Duration::from_secs(10));
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut c)
        .expect("LIST");
    assert!(
        list.lines()
            .any(|l| l.contains(&format!("addr={addr} ")) && l.contains(" flags=P ")),
        "{list}"
    );
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ADDR")
        .arg(&addr)
        .query(&mut c)
        .expect("KILL ADDR");
    assert_eq!(killed, 1);
    let mut buf = [0u8; 16];
    assert_eq!(
        raw.read(&mut buf).unwrap_or(0),
        0,
        "the subscriber is closed"
    );
}
