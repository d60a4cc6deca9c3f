//! The admin listener: a JSON API under `/v1`, Prometheus `/metrics`, and the dashboard's
//! static files, on hyper.
//!
//! - [`http`]: JSON answers and errors, bounded bodies, query strings;
//! - [`policies`]: versions listed, uploaded, activated, rolled back, shadowed;
//! - [`state`]: status, topology, segments, migrations, sessions, series;
//! - [`forecasts`]: the latest predictions, fed by the tick loop;
//! - [`metrics`]: the exposition text;
//! - [`dashboard`]: the static dashboard;
//! - [`client`]: the operator CLI's side of the API.
//!
//! With a token configured, every request but the dashboard's static files needs
//! `Authorization: Bearer <token>`.

pub mod client;
pub mod dashboard;
pub mod forecasts;
pub mod http;
pub mod metrics;
pub mod policies;
pub mod state;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::migrate::control::DecisionQuery;
use crate::run::Parts;
use forecasts::Forecasts;
use http::{Answer, Failure, Handled, flag, json, json_with, number, query, with_body};
use policies::PolicyDesk;

/// Everything the admin API reads and acts on.
pub struct Admin {
    /// The process's shared parts.
    pub parts: Parts,
    /// The controller's policy, when one runs.
    pub policy: Option<PolicyDesk>,
    /// The latest forecasts.
    pub forecasts: Arc<Forecasts>,
    /// The bearer token every API request must carry, when configured.
    pub token: Option<String>,
    /// Largest upload, in bytes.
    pub max_upload: usize,
    /// When the process started serving.
    pub started: Instant,
    /// Where clients connect.
    pub listen: String,
}

/// Serve `admin` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compared in time independent of where the two differ.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Admin {
    /// Answer one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Answer {
        let path = req.uri().path().to_owned();
        if let Some(file) = dashboard::file(&path)
            && req.method() == Method::GET
        {
            return file;
        }
        if let Err(refusal) = self.same_origin(&req) {
            return refusal.answer();
        }
        if let Some(token) = &self.token
            && !authorized(&req, token)
        {
            let mut answer = Failure::new(
                StatusCode::UNAUTHORIZED,
                "this admin listener requires `Authorization: Bearer <token>` (the token in admin.token_file or admin.token_env); the CLI reads it from SHARDCAST_TOKEN or --token-file",
            )
            .answer();
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return answer;
        }
        match self.route(req, &path).await {
            Ok(answer) => answer,
            Err(failure) => failure.answer(),
        }
    }

    /// Refuse what a web page in the operator's browser could send on its own: without a
    /// token, a request must name the listener by IP address or `localhost` (a DNS name may
    /// be rebound to 127.0.0.1 by a hostile page), and a request that changes anything must
    /// not come from another origin.
    fn same_origin(&self, req: &Request<Incoming>) -> Result<(), Failure> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if self.token.is_none() && !host.is_empty() && !local_name(host) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the admin listener answers requests for its IP address or localhost, not `{host}`; configure a bearer token (admin.token_file) to reach it by name"
                ),
            ));
        }
        let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
        if let Some(origin) = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            && changes
        {
            let from = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if from != host {
                return Err(Failure::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "a request from the web page at {origin} may not change this shardcast; use the CLI or the API directly"
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn route(&self, req: Request<Incoming>, path: &str) -> Handled {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        let q = query(&req);
        match (&method, parts.as_slice()) {
            (&Method::GET, ["metrics"]) => Ok(with_body(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                Bytes::from(self.metrics()),
            )),
            (&Method::GET, ["v1"]) => json(&serde_json::json!({
                "endpoints": ENDPOINTS,
            })),
            (&Method::GET, ["v1", "status"]) => json(&self.status()),
            (&Method::GET, ["v1", "topology"]) => json(&self.topology()),
            (&Method::GET, ["v1", "segments"]) => json(&self.segments()),
            (&Method::GET, ["v1", "migrations"]) => json(&self.migrations()),
            (&Method::POST, ["v1", "migrations", id, "cancel"])
            | (&Method::DELETE, ["v1", "migrations", id]) => {
                let id: u64 = id.parse().map_err(|_| {
                    Failure::bad(format!("`{id}` is not a migration id (a number)"))
                })?;
                match self.parts.executor.cancel(id) {
                    Ok(()) => json_with(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({
                            "message": format!("migration {id} is cancelled; it rolls back and its segment stays on the source"),
                        }),
                    ),
                    Err(e @ crate::migrate::control::CancelError::Unknown(_)) => {
                        Err(Failure::not_found(e.to_string()))
                    }
                    Err(e) => Err(Failure::conflict(e.to_string())),
                }
            }
            (&Method::GET, ["v1", "sessions"]) => json(&self.sessions()),
            (&Method::GET, ["v1", "decisions"]) => {
                let query = DecisionQuery {
                    after: number(&q, "after")?,
                    before: number(&q, "before")?,
                    limit: number(&q, "limit")?.unwrap_or(100) as usize,
                    kind: q.get("kind").cloned(),
                    acting: flag(&q, "acting"),
                };
                json(&self.parts.executor.decisions(&query))
            }
            (&Method::GET, ["v1", "forecasts"]) => json(&self.forecasts.latest()),
            (&Method::GET, ["v1", "series"]) => json(&self.series()),
            (_, ["v1", "policies", ..]) | (_, ["v1", "shadow"]) => {
                let Some(desk) = &self.policy else {
                    return Err(Failure::conflict(
                        "no policy runs here: add a [policy] table to the configuration to run the controller",
                    ));
                };
                self.route_policy(desk, req, &method, &parts, &q).await
            }
            (_, ["v1", ..]) | (_, ["metrics"]) => Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no endpoint {method} {path}; GET /v1 lists the endpoints"),
            )),
            _ => Err(Failure::not_found(format!(
                "nothing at {path}: the dashboard is at /, the API under /v1, metrics at /metrics"
            ))),
        }
    }

    async fn route_policy(
        &self,
        desk: &PolicyDesk,
        req: Request<Incoming>,
        method: &Method,
        parts: &[&str],
        q: &std::collections::HashMap<String, String>,
    ) -> Handled {
        match (method, parts) {
            (&Method::GET, ["v1", "policies"]) => json(&desk.list()),
            (&Method::POST, ["v1", "policies"]) => {
                let content_type = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let essence = content_type.split(';').next().unwrap_or("").trim();
                if essence != "application/wasm" && essence != "application/json" {
                    return Err(Failure::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "upload the component with `Content-Type: application/wasm`, or JSON {{\"component_base64\", \"settings\"}} with `Content-Type: application/json` (got `{content_type}`)"
                        ),
                    ));
                }
                // JSON carries the component in base64: a third more bytes.
                let limit = if content_type.starts_with("application/json") {
                    self.max_upload / 3 * 4 + (1 << 20)
                } else {
                    self.max_upload
                };
                let body = http::body(req, limit).await?;
                if body.is_empty() {
                    return Err(Failure::bad(
                        "the upload is empty: send the component (`application/wasm`) or JSON {\"component_base64\", \"settings\"}",
                    ));
                }
                desk.upload(&content_type, body).await
            }
            (&Method::POST, ["v1", "policies", "rollback"]) => desk.rollback().await,
            (&Method::GET, ["v1", "policies", id]) => desk.get(id),
            (&Method::POST, ["v1", "policies", id, "activate"]) => {
                desk.activate(id, flag(q, "force")).await
            }
            (&Method::POST, ["v1", "policies", id, "shadow"]) => desk.shadow(id),
            (&Method::GET, ["v1", "shadow"]) => json(&*desk.shadow_status()),
            (&Method::DELETE, ["v1", "shadow"]) => desk.stop_shadow(),
            _ => Err(Failure::not_found(format!(
                "no endpoint {method} /{}; GET /v1 lists the endpoints",
                parts.join("/")
            ))),
        }
    }
}

/// True when `host` (a Host header) names an IP address or localhost.
fn local_name(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:7470`, `127.0.0.1:7470`, `localhost:7470`; a bare IPv6 address has colons.
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// What `GET /v1` lists.
pub const ENDPOINTS: &[&str] = &[
    "GET /v1/status",
    "GET /v1/topology",
    "GET /v1/segments",
    "GET /v1/migrations",
    "POST /v1/migrations/{id}/cancel",
    "GET /v1/sessions",
    "GET /v1/decisions?after=&before=&limit=&kind=&acting=true",
    "GET /v1/forecasts",
    "GET /v1/series",
    "GET /v1/policies",
    "POST /v1/policies (application/wasm, or JSON {component_base64, settings})",
    "GET /v1/policies/{id}",
    "POST /v1/policies/{id}/activate[?force=true]",
    "POST /v1/policies/rollback",
    "POST /v1/policies/{id}/shadow",
    "GET /v1/shadow",
    "DELETE /v1/shadow",
    "GET /metrics",
];

#[cfg(test)]
mod tests {
    use super::local_name;

    #[test]
    fn only_addresses_and_localhost_are_local_names() {
        for ok in [
            "127.0.0.1:7470",
            "localhost:7470",
            "[::1]:7470",
            "10.0.0.5",
            "LOCALHOST",
        ] {
            assert!(local_name(ok), "{ok}");
        }
        for no in [
            "evil.example:7470",
            "rebind.attacker.test",
            "127.0.0.1.nip.io:7470",
        ] {
            assert!(!local_name(no), "{no}");
        }
    }
}
