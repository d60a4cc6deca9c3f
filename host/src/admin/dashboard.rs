//! The dashboard: static files compiled into the binary, served by the admin listener.
//! They read the JSON API from the browser; nothing is built at run time.

use bytes::Bytes;
use hyper::StatusCode;

use super::http::{Answer, with_body};

const INDEX: &str = include_str!("dashboard/index.html");
const APP: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// The dashboard's file at `path`, if it is one.
pub fn file(path: &str) -> Option<Answer> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/app.js" => ("text/javascript; charset=utf-8", APP),
        "/style.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some(with_body(
        StatusCode::OK,
        content_type,
        Bytes::from_static(body.as_bytes()),
    ))
}
