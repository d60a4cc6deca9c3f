//! The operator CLI's side of the admin API: one request at a time over HTTP/1.1, with the
//! bearer token when one is given, and the API's JSON error turned into a sentence.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API is and how to authenticate.
#[derive(Clone, Debug)]
pub struct Client {
    host: String,
    port: u16,
    token: Option<String>,
    /// One small runtime for every request of this client (a watch makes many).
    runtime: std::sync::Arc<tokio::runtime::Runtime>,
}

impl Client {
    /// A client of `url` (`http://host:port`, or `host:port`).
    pub fn new(url: &str, token: Option<String>) -> Result<Self> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        if url.starts_with("https://") {
            bail!(
                "the admin API speaks plain HTTP; put a TLS-terminating proxy in front of it for https"
            );
        }
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| {
            anyhow!("`{url}` is not an admin address such as http://127.0.0.1:7470")
        })?;
        let port = port
            .parse()
            .with_context(|| format!("`{url}`: `{port}` is not a port"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Client {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            token,
            runtime: std::sync::Arc::new(runtime),
        })
    }

    /// The same credentials against another address.
    pub fn with_address(&self, url: &str) -> Result<Self> {
        Client::new(url, self.token.clone())
    }

    /// `GET path`, as JSON.
    pub fn get(&self, path: &str) -> Result<serde_json::Value> {
        self.call(Method::GET, path, None)
    }

    /// `POST path` with an optional body (`content_type`, bytes), as JSON.
    pub fn post(&self, path: &str, body: Option<(&str, Vec<u8>)>) -> Result<serde_json::Value> {
        self.call(Method::POST, path, body)
    }

    /// `DELETE path`, as JSON.
    pub fn delete(&self, path: &str) -> Result<serde_json::Value> {
        self.call(Method::DELETE, path, None)
    }

    /// `GET path` as text (for `/metrics`).
    pub fn text(&self, path: &str) -> Result<String> {
        let (_, body) = self.send(Method::GET, path, None)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<serde_json::Value> {
        let (status, bytes) = self.send(method.clone(), path, body)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{method} {path}: the answer ({status}) is not JSON: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )
        })?;
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            bail!("{method} {path}: {status}: {message}");
        }
        Ok(value)
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(hyper::StatusCode, Bytes)> {
        let address = format!("{}:{}", self.host, self.port);
        self.runtime.block_on(async {
            tokio::time::timeout(TIMEOUT, self.exchange(&address, method.clone(), path, body))
                .await
                .map_err(|_| {
                    anyhow!(
                        "{method} {path}: no answer from the admin API at {address} within {} s",
                        TIMEOUT.as_secs()
                    )
                })?
        })
    }

    async fn exchange(
        &self,
        address: &str,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(hyper::StatusCode, Bytes)> {
        let stream = tokio::net::TcpStream::connect(address).await.with_context(|| {
            format!(
                "cannot reach the admin API at {address}: is shardcast running with an [admin] table? (set the address with --admin or SHARDCAST_ADMIN)"
            )
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("admin API handshake")?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, address);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some((content_type, bytes)) => request
                .header(header::CONTENT_TYPE, content_type)
                .body(Full::new(Bytes::from(bytes))),
            None => request.body(Full::new(Bytes::new())),
        }
        .context("building the request")?;
        let response = sender
            .send_request(request)
            .await
            .context("sending the request")?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        Ok((status, body))
    }
}
