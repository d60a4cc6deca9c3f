//! A real etcd server for cluster tests (Debian's `etcd-server` package), on free ports,
//! with its data in a temporary directory; stopped when dropped, and restartable on the
//! same ports and data.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::servers::{free_port, wait_for};

/// An `etcd` child process.
pub struct EtcdServer {
    /// Its client port.
    pub port: u16,
    peer: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    /// Start one, or panic saying what to install.
    pub fn start() -> EtcdServer {
        let mut etcd = EtcdServer {
            port: free_port(),
            peer: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        etcd.spawn();
        etcd
    }

    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.port);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({e}): install Debian's package with `apt-get install etcd-server`")
            });
        self.child = Some(child);
        let port = self.port;
        wait_for("etcd to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// `127.0.0.1:port`, as `[cluster] etcd` takes it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The gRPC requests etcd has received since it started, by method (`Range`, `Put`,
    /// `Txn`, `LeaseKeepAlive`, ...), from its own Prometheus counters
    /// (`grpc_server_msg_received_total` on `/metrics`): a stream's every message counts.
    pub fn requests(&self) -> BTreeMap<String, f64> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("etcd's metrics");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("ask etcd for its metrics");
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .expect("read etcd's metrics");
        let mut by_method = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("grpc_server_msg_received_total{") else {
                continue;
            };
            let method = rest
                .split("grpc_method=\"")
                .nth(1)
                .and_then(|m| m.split('"').next());
            let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(m), Some(v)) = (method, value) {
                *by_method.entry(m.to_owned()).or_insert(0.0) += v;
            }
        }
        by_method
    }

    /// Stop it with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
