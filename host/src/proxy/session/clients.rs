//! `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL` over the proxy's own sessions, in
//! Redis's format: a client sees the clients of the proxy it is connected to, not the
//! proxy's connections to its instances.

use std::sync::atomic::Ordering;

use super::*;
use crate::sessions::registry::Entry;

/// One `CLIENT LIST` line for `e`, as of `now` (ms since the Unix epoch). Fields the
/// proxy does not track per client (buffers, memory) are 0.
fn line(e: &Entry, now: u64) -> String {
    let s = &e.session;
    let (addr, laddr) = e
        .control
        .addrs
        .get()
        .map(|(a, l)| (a.to_string(), l.to_string()))
        .unwrap_or_default();
    let age = now.saturating_sub(s.connected_at) / 1000;
    let idle = now.saturating_sub(e.control.last_ms.load(Ordering::Relaxed)) / 1000;
    let flags = match (s.subscriptions > 0, s.in_transaction) {
        (true, _) => "P",
        (false, true) => "x",
        _ => "N",
    };
    format!(
        "id={} addr={addr} laddr={laddr} fd=0 name={} age={age} idle={idle} flags={flags} db={} \
         sub={} psub=0 ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 \
         obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=NULL user={} redir=-1 resp={} lib-name={} \
         lib-ver=",
        s.id,
        s.name,
        s.db,
        s.subscriptions,
        if s.in_transaction { 0 } else { -1 },
        s.user,
        s.protocol,
        s.lib,
    )
}

/// Text as Redis sends it: a verbatim string in RESP3, a bulk string in RESP2.
fn text_reply(text: String, protocol: u8) -> Frame {
    if protocol == 3 {
        Frame::Verbatim(Bytes::from(format!("txt:{text}")))
    } else {
        Frame::bulk(text)
    }
}

/// A `CLIENT KILL` filter.
enum Filter {
    Id(u64),
    Addr(String),
    Laddr(String),
    User(String),
    SkipMe(bool),
}

impl Session {
    /// `CLIENT LIST [TYPE normal|pubsub] [ID id ...]`.
    pub(super) fn client_list(&self, req: &Request) -> Frame {
        let now = now_ms();
        let mut ids: Option<Vec<u64>> = None;
        let mut kind: Option<String> = None;
        let mut i = 2;
        while i < req.args.len() {
            match req.arg_upper(i).as_deref() {
                Some("ID") => {
                    let parsed: Option<Vec<u64>> = req.args[i + 1..]
                        .iter()
                        .map(|a| std::str::from_utf8(a).ok()?.parse().ok())
                        .collect();
                    match parsed {
                        Some(v) if !v.is_empty() => ids = Some(v),
                        _ => return err("ERR Invalid client ID"),
                    }
                    i = req.args.len();
                }
                Some("TYPE") if i + 1 < req.args.len() => {
                    kind = req.arg_upper(i + 1).map(|k| k.to_lowercase());
                    i += 2;
                }
                _ => return err("ERR syntax error"),
            }
        }
        let text: String = self
            .shared
            .sessions
            .entries()
            .iter()
            .filter(|e| ids.as_ref().is_none_or(|v| v.contains(&e.session.id)))
            .filter(|e| match kind.as_deref() {
                None => true,
                Some("normal") => e.session.subscriptions == 0,
                Some("pubsub") => e.session.subscriptions > 0,
                Some(_) => false,
            })
            .map(|e| line(e, now) + "\n")
            .collect();
        text_reply(text, self.state.protocol)
    }

    /// `CLIENT INFO`: this session's line.
    pub(super) fn client_info(&self) -> Frame {
        let now = now_ms();
        let mine = self
            .shared
            .sessions
            .entries()
            .into_iter()
            .find(|e| e.session.id == self.id);
        let text = mine.map(|e| line(&e, now) + "\n").unwrap_or_default();
        text_reply(text, self.state.protocol)
    }

    /// `CLIENT KILL ip:port` or `CLIENT KILL <filter value> ...` (ID, ADDR, LADDR, USER,
    /// SKIPME), as Redis answers them.
    pub(super) fn client_kill(&mut self, req: &Request) -> Frame {
        let text = |i: usize| String::from_utf8_lossy(&req.args[i]).into_owned();
        let old_style = req.args.len() == 3;
        let mut filters = Vec::new();
        if old_style {
            filters.push(Filter::Addr(text(2)));
            filters.push(Filter::SkipMe(false));
        } else {
            if !req.args.len().is_multiple_of(2) {
                return err("ERR syntax error");
            }
            for i in (2..req.args.len()).step_by(2) {
                let value = text(i + 1);
                filters.push(match req.arg_upper(i).as_deref() {
                    Some("ID") => match value.parse() {
                        Ok(id) => Filter::Id(id),
                        Err(_) => return err("ERR client-id should be greater than 0"),
                    },
                    Some("ADDR") => Filter::Addr(value),
                    Some("LADDR") => Filter::Laddr(value),
                    Some("USER") => Filter::User(value),
                    Some("SKIPME") => match value.to_ascii_lowercase().as_str() {
                        "yes" => Filter::SkipMe(true),
                        "no" => Filter::SkipMe(false),
                        _ => return err("ERR syntax error"),
                    },
                    _ => return err("ERR syntax error"),
                });
            }
        }
        let skip_me = filters.iter().all(|f| !matches!(f, Filter::SkipMe(false)));
        let mut killed = 0;
        for e in self.shared.sessions.entries() {
            let addrs = e.control.addrs.get();
            let matches = filters.iter().all(|f| match f {
                Filter::Id(id) => e.session.id == *id,
                Filter::Addr(a) => addrs.is_some_and(|(p, _)| p.to_string() == *a),
                Filter::Laddr(a) => addrs.is_some_and(|(_, l)| l.to_string() == *a),
                Filter::User(u) => e.session.user == *u,
                Filter::SkipMe(_) => true,
            });
            if !matches || (skip_me && e.session.id == self.id) {
                continue;
            }
            killed += 1;
            if e.session.id == self.id {
                // Answer first, then close, as Redis does.
                self.closing = true;
            } else {
                e.control.kill();
            }
        }
        match (old_style, killed) {
            (true, 0) => err("ERR No such client"),
            (true, _) => Frame::ok(),
            (false, n) => Frame::Integer(n),
        }
    }
}
