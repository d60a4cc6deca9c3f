//! The HTTP pieces the admin handlers share: JSON answers, JSON errors that say what to
//! do, bounded request bodies and query strings.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use serde::Serialize;

/// A response with a full body.
pub type Answer = Response<Full<Bytes>>;

/// An error answer: the status and a sentence saying what went wrong and what to do.
#[derive(Debug)]
pub struct Failure {
    /// The status.
    pub status: StatusCode,
    /// The sentence.
    pub message: String,
}

impl Failure {
    /// A failure with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: nothing by that name.
    pub fn not_found(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: not in this state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::CONFLICT, message)
    }

    /// The JSON answer: `{"error": {"status": 404, "message": "..."}}`.
    pub fn answer(&self) -> Answer {
        let body = serde_json::json!({
            "error": { "status": self.status.as_u16(), "message": self.message }
        });
        with_body(
            self.status,
            "application/json",
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        )
    }
}

/// What a handler returns.
pub type Handled = Result<Answer, Failure>;

/// A body with `status` and `content_type`.
pub fn with_body(status: StatusCode, content_type: &str, body: Bytes) -> Answer {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// 200 with `value` as JSON.
pub fn json<T: Serialize>(value: &T) -> Handled {
    json_with(StatusCode::OK, value)
}

/// `status` with `value` as JSON.
pub fn json_with<T: Serialize>(status: StatusCode, value: &T) -> Handled {
    let body = serde_json::to_vec_pretty(value).map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the answer as JSON: {e}"),
        )
    })?;
    Ok(with_body(status, "application/json", Bytes::from(body)))
}

/// The request's body, refused with 413 past `limit` bytes. An oversized body is still
/// read (and dropped) up to four times the limit, so that the client, which sends its whole
/// body before it reads the answer, gets the 413 rather than a reset connection.
pub async fn body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Failure> {
    let mut body = req.into_body();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Failure::bad(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(4) {
            break;
        }
    }
    if seen > limit {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the upload is larger than {} MiB (admin.max_upload_mib); build the policy in release mode, or raise the limit",
                (limit >> 20).max(1)
            ),
        ));
    }
    Ok(Bytes::from(kept))
}

/// The query string's parameters (the last of a repeated name wins).
pub fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A numeric query parameter, or a 400 naming it.
pub fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Failure> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Failure::bad(format!(
                "query parameter `{name}` must be a non-negative integer, got `{v}`"
            ))
        }),
    }
}

/// A boolean query parameter (`true`, `1`, or present without a value).
pub fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(decode("a%20b+c"), "a b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%41"), "A");
    }
}
