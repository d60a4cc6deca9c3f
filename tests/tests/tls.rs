//! TLS at both ends, with certificates generated at run time (rcgen) and an independent
//! client (redis-rs over rustls):
//! - clients speak TLS to the proxy; a failed handshake (a plain client, a client that
//!   does not trust the proxy, garbage) closes that connection only;
//! - with `[tls] ca_file`, a client without a certificate the authority signed is refused;
//! - the proxy speaks TLS, with its own client certificate, to TLS-only redis-servers, for
//!   everything it does: shared and own connections, subscriptions, the poller, a
//!   migration. Where the installed redis-server has no TLS, that test says so and passes.
//! - a certificate file that is missing or holds no certificate is an error naming it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use redis::{ClientTlsConfig, TlsCertificates};
use shardcast_tests::servers::{
    Proxy, RedisServer, free_port, published_and_heard, pushed_and_popped, wait_for,
};

/// A certificate authority, and certificate/key files it signed, in one directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    /// A certificate for 127.0.0.1 and localhost, usable by a server and a client.
    cert: PathBuf,
    key: PathBuf,
    /// The same from an authority nobody here trusts.
    stranger_ca: PathBuf,
    stranger_cert: PathBuf,
    stranger_key: PathBuf,
}

/// A certificate authority and a leaf it signed: (ca pem, leaf cert pem, leaf key pem).
fn authority(name: &str) -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
        .expect("self-signed authority");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{name} leaf"));
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca).expect("signed leaf");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write a pem file");
        p
    };
    let (ca, cert, key) = authority("shardcast test CA");
    let (sca, scert, skey) = authority("stranger CA");
    Pki {
        ca: write("ca.crt", &ca),
        cert: write("leaf.crt", &cert),
        key: write("leaf.key", &key),
        stranger_ca: write("stranger-ca.crt", &sca),
        stranger_cert: write("stranger.crt", &scert),
        stranger_key: write("stranger.key", &skey),
        dir,
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read a pem file")
}

/// A redis-rs client to `127.0.0.1:port` over TLS, trusting `ca`, presenting `identity`.
fn tls_client(port: u16, ca: &Path, identity: Option<(&Path, &Path)>) -> redis::Client {
    redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}/"),
        TlsCertificates {
            client_tls: identity.map(|(cert, key)| ClientTlsConfig {
                client_cert: read(cert),
                client_key: read(key),
            }),
            root_cert: Some(read(ca)),
        },
    )
    .expect("a TLS client")
}

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(Duration::from_secs(10))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(c)
}

fn ping(c: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query(c)
}

/// What the server sends back to a plain-text PING before it closes the connection.
fn plain_ping(port: u16) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn clients_speak_tls_to_the_proxy_and_a_failed_handshake_closes_that_connection_only() {
    let pki = pki();
    let servers = [RedisServer::start(), RedisServer::start()];
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [tls]\ncert_file = {:?}\nkey_file = {:?}\n\
         [[instances]]\nname = \"redis-0\"\naddress = \"{}\"\n\
         [[instances]]\nname = \"redis-1\"\naddress = \"{}\"\n",
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
        servers[0].address(),
        servers[1].address(),
    );
    let _proxy = Proxy::start_config(port, &text);
    let trusted = tls_client(port, &pki.ca, None);
    let mut c = connect(&trusted).expect("a TLS client connects");
    let keys: Vec<String> = (0..200).map(|i| format!("tls:{i}")).collect();
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("SET").arg(k).arg(format!("v-{k}")).ignore();
    }
    let _: () = pipe.query(&mut c).expect("a pipeline of SETs over TLS");
    let got: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut c).expect("MGET");
    let want: Vec<String> = keys.iter().map(|k| format!("v-{k}")).collect();
    assert_eq!(got, want);
    // Both instances hold some of them, read directly in plain text.
    let size =
        |s: &RedisServer| -> i64 { redis::cmd("DBSIZE").query(&mut s.client()).expect("DBSIZE") };
    let (on0, on1) = (size(&servers[0]), size(&servers[1]));
    assert!(on0 > 0 && on1 > 0 && on0 + on1 == 200, "{on0} + {on1}");
    // A large value crosses TLS records both ways.
    let big = "x".repeat(300_000);
    let _: () = redis::cmd("SET")
        .arg("tls:big")
        .arg(&big)
        .query(&mut c)
        .expect("SET big");
    let back: String = redis::cmd("GET")
        .arg("tls:big")
        .query(&mut c)
        .expect("GET big");
    assert_eq!(back.len(), big.len());
    // Subscribed mode over TLS.
    let mut sub = connect(&trusted).expect("a second TLS client");
    assert_eq!(
        published_and_heard(&mut sub, &mut c, "tls:news", "over tls"),
        "over tls"
    );

    // Failed handshakes, each on its own connection.
    let plain = plain_ping(port);
    assert!(
        !plain.windows(4).any(|w| w == b"PONG"),
        "a plain-text client got an answer from a TLS listener: {:?}",
        String::from_utf8_lossy(&plain)
    );
    let doubting = tls_client(port, &pki.stranger_ca, None);
    let refused = connect(&doubting).and_then(|mut d| ping(&mut d));
    assert!(
        refused.is_err(),
        "a client that does not trust the proxy's certificate got through"
    );
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect");
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3, 4, 5, 6, 7])
        .expect("write garbage");
    drop(garbage);
    // The connection that was up is untouched, and new ones are served.
    assert_eq!(
        ping(&mut c).expect("the first client is still served"),
        "PONG"
    );
    let mut again = connect(&trusted).expect("a new TLS client connects");
    let got: String = redis::cmd("GET")
        .arg("tls:7")
        .query(&mut again)
        .expect("GET");
    assert_eq!(got, "v-tls:7");
}

#[test]
fn with_a_client_authority_a_client_needs_a_certificate_it_signed() {
    let pki = pki();
    let server = RedisServer::start();
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n\
         [[instances]]\nname = \"redis-0\"\naddress = \"{}\"\n",
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
        pki.ca.display().to_string(),
        server.address(),
    );
    let _proxy = Proxy::start_config(port, &text);
    let anonymous = tls_client(port, &pki.ca, None);
    let r = connect(&anonymous).and_then(|mut c| ping(&mut c));
    assert!(
        r.is_err(),
        "a client without a certificate was served: {r:?}"
    );
    let stranger = tls_client(port, &pki.ca, Some((&pki.stranger_cert, &pki.stranger_key)));
    let r = connect(&stranger).and_then(|mut c| ping(&mut c));
    assert!(
        r.is_err(),
        "a client with an unknown authority's certificate was served: {r:?}"
    );
    let known = tls_client(port, &pki.ca, Some((&pki.cert, &pki.key)));
    let mut c = connect(&known).expect("a client with a signed certificate connects");
    assert_eq!(ping(&mut c).expect("PING"), "PONG");
}

/// A redis-server that speaks TLS only (`--port 0`), requiring client certificates
/// (Redis's default); `None` when the installed redis-server was built without TLS.
struct TlsRedis {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start(pki: &Pki) -> Option<TlsRedis> {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .arg("--tls-cert-file")
            .arg(&pki.cert)
            .arg("--tls-key-file")
            .arg(&pki.key)
            .arg("--tls-ca-cert-file")
            .arg(&pki.ca)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package)");
        let client = tls_client(port, &pki.ca, Some((&pki.cert, &pki.key)));
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!(
                    "SKIPPED: the installed redis-server cannot serve TLS (it exited: {}); instance-side TLS is not tested here",
                    said.lines().last().unwrap_or("no log")
                );
                return None;
            }
            if connect(&client).and_then(|mut c| ping(&mut c)).is_ok() {
                return Some(TlsRedis {
                    port,
                    child,
                    _dir: dir,
                });
            }
            assert!(
                Instant::now() < until,
                "a TLS redis-server did not answer in 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_proxy_speaks_tls_to_tls_only_instances_for_everything_it_does() {
    use shardcast_sdk::types::MigrationOutcome;
    let pki = pki();
    let Some(first) = TlsRedis::start(&pki) else {
        return;
    };
    let Some(second) = TlsRedis::start(&pki) else {
        return;
    };
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [instance_tls]\nca_file = \"ca.crt\"\ncert_file = \"leaf.crt\"\nkey_file = \"leaf.key\"\n\
         [[instances]]\nname = \"redis-0\"\naddress = \"{}\"\n\
         [[instances]]\nname = \"redis-1\"\naddress = \"{}\"\n",
        first.address(),
        second.address(),
    );
    // Relative file names, as in a configuration file beside its certificates.
    let file = pki.dir.path().join("shardcast.toml");
    std::fs::write(&file, &text).expect("write the configuration");
    let config = shardcast::config::Config::load(&file).expect("the configuration loads");
    let p = Proxy::start_loaded(port, config);
    let mut c = p.client_within(Duration::from_secs(10));
    let keys: Vec<String> = (0..300).map(|i| format!("sealed:{i}")).collect();
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(k).query(&mut c).expect("SET");
    }
    let got: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut c).expect("MGET");
    assert_eq!(got, keys);
    // Both instances hold some, read back over TLS directly.
    let size = |s: &TlsRedis| -> i64 {
        let client = tls_client(s.port, &pki.ca, Some((&pki.cert, &pki.key)));
        redis::cmd("DBSIZE")
            .query(&mut connect(&client).expect("direct TLS"))
            .expect("DBSIZE")
    };
    let (on0, on1) = (size(&first), size(&second));
    assert!(on0 > 0 && on1 > 0 && on0 + on1 == 300, "{on0} + {on1}");
    // A session's own connection (a blocking command) and a subscription.
    assert_eq!(pushed_and_popped(&mut c, "sealed:list"), "x");
    let mut sub = p.client_within(Duration::from_secs(10));
    assert_eq!(
        published_and_heard(&mut sub, &mut c, "sealed:news", "hello"),
        "hello"
    );
    // The poller reads the instances over TLS too: both are seen up.
    wait_for(
        "the poller to ping both instances",
        Duration::from_secs(20),
        || {
            let rtt = p
                .telemetry
                .instances_latest(shardcast_sdk::types::Metric::PingRttUs);
            rtt.len() == 2
                && rtt.iter().all(|r| *r > 0.0)
                && p.telemetry.is_up(0)
                && p.telemetry.is_up(1)
        },
    );
    // A migration copies between the two TLS instances.
    let m = p.move_segment(0, 1, Duration::from_secs(30));
    assert_eq!(m.outcome, MigrationOutcome::Completed, "{}", m.detail);
    let got: Vec<String> = redis::cmd("MGET")
        .arg(&keys)
        .query(&mut c)
        .expect("MGET after the move");
    assert_eq!(got, keys);
    assert_eq!(size(&first) + size(&second), 300);
}

#[test]
fn a_missing_or_empty_certificate_file_is_an_error_naming_it() {
    let pki = pki();
    let base =
        "listen = \"127.0.0.1:7380\"\n[[instances]]\nname = \"a\"\naddress = \"127.0.0.1:6379\"\n";
    let missing = pki.dir.path().join("nowhere.crt");
    let config = shardcast::config::Config::parse(&format!(
        "{base}[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        missing.display().to_string(),
        pki.key.display().to_string()
    ))
    .expect("parses");
    let e = config
        .client_tls()
        .err()
        .expect("a missing certificate is an error");
    assert!(e.contains("[tls]") && e.contains("nowhere.crt"), "{e}");
    let empty = pki.dir.path().join("empty.crt");
    std::fs::write(&empty, "").expect("write");
    let config = shardcast::config::Config::parse(&format!(
        "{base}[instance_tls]\nca_file = {:?}\n",
        empty.display().to_string()
    ))
    .expect("parses");
    let e = config
        .instance_tls()
        .err()
        .expect("an empty authority file is an error");
    assert!(
        e.contains("[instance_tls]") && e.contains("empty.crt"),
        "{e}"
    );
    let config = shardcast::config::Config::parse(&format!(
        "{base}[instance_tls]\nca_file = {:?}\ncert_file = {:?}\n",
        pki.ca.display().to_string(),
        pki.cert.display().to_string()
    ))
    .expect("parses");
    let e = config
        .instance_tls()
        .err()
        .expect("a certificate without its key");
    assert!(e.contains("key_file"), "{e}");
}
