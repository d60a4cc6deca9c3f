//! The RESP codec: frames of RESP2 and RESP3, parsed with a cursor that checks a frame is
//! complete and within limits before allocating anything.
//!
//! Two entry points: [`FrameScanner`] (and [`frame_len`]) finds where the next complete
//! frame ends (used to forward replies untouched), and [`parse`] decodes one into a
//! [`Frame`] (used where the proxy must look inside: merged replies, handshakes). Oversized or malformed input is a
//! [`ProtocolError`] naming the problem; the connection at fault is then closed.

use bytes::{BufMut, Bytes, BytesMut};

/// Bounds on what a peer may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest bulk string, in bytes.
    pub max_bulk_bytes: usize,
    /// Most elements in one array (or map, set, push).
    pub max_array_len: usize,
    /// Longest inline command or simple line, in bytes.
    pub max_inline_bytes: usize,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
}

impl Limits {
    /// Limits for replies from an instance, which the proxy trusts to be well formed and
    /// forwards whatever their size: only the nesting depth is bounded.
    pub fn unbounded() -> Self {
        Limits {
            max_bulk_bytes: usize::MAX >> 1,
            max_array_len: usize::MAX >> 1,
            max_inline_bytes: usize::MAX >> 1,
            max_depth: 64,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: 512 << 20,
            max_array_len: 1 << 20,
            max_inline_bytes: 64 << 10,
            max_depth: 32,
        }
    }
}

/// Why input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A type byte that RESP does not define.
    #[error("Protocol error: invalid type byte '{0}'")]
    BadType(char),
    /// A length or integer that does not parse.
    #[error("Protocol error: invalid {0}")]
    BadNumber(&'static str),
    /// A bulk string larger than the limit.
    #[error("Protocol error: bulk of {len} bytes exceeds the limit of {limit}")]
    BulkTooLarge { len: usize, limit: usize },
    /// An aggregate with more elements than the limit.
    #[error("Protocol error: aggregate of {len} elements exceeds the limit of {limit}")]
    ArrayTooLarge { len: usize, limit: usize },
    /// A line longer than the limit without a CRLF.
    #[error("Protocol error: line longer than {0} bytes")]
    LineTooLong(usize),
    /// Aggregates nested deeper than the limit.
    #[error("Protocol error: nesting deeper than {0}")]
    TooDeep(usize),
    /// A bulk string not followed by CRLF.
    #[error("Protocol error: bulk string not terminated by CRLF")]
    Unterminated,
}

/// One RESP value.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK`
    Simple(Bytes),
    /// `-ERR ...`
    Error(Bytes),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo` or the RESP2 null bulk `$-1`.
    Bulk(Option<Bytes>),
    /// `*N` or the RESP2 null array `*-1`.
    Array(Option<Vec<Frame>>),
    /// RESP3 `_`.
    Null,
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `,1.5` (kept as text so it round-trips exactly).
    Double(Bytes),
    /// RESP3 `(` big number, as text.
    BigNumber(Bytes),
    /// RESP3 `!` blob error.
    BlobError(Bytes),
    /// RESP3 `=` verbatim string (with its `txt:` prefix).
    Verbatim(Bytes),
    /// RESP3 `%` map.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~` set.
    Set(Vec<Frame>),
    /// RESP3 `>` push.
    Push(Vec<Frame>),
    /// RESP3 `|` attribute, followed by the value it annotates.
    Attribute(Vec<(Frame, Frame)>, Box<Frame>),
}

impl Frame {
    /// An error frame from text (the text should start with an error code such as `ERR`).
    pub fn error(text: impl AsRef<str>) -> Frame {
        Frame::Error(Bytes::copy_from_slice(text.as_ref().as_bytes()))
    }

    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple(Bytes::from_static(b"OK"))
    }

    /// A bulk string.
    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(Some(data.into()))
    }

    /// True for error frames.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_) | Frame::BlobError(_))
    }

    /// An error's text, without its `-`.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Frame::Error(s) | Frame::BlobError(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }

    /// Append the wire form to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => line(out, b'+', s),
            Frame::Error(s) => line(out, b'-', s),
            Frame::Integer(i) => line(out, b':', i.to_string().as_bytes()),
            Frame::Bulk(None) => out.put_slice(b"$-1\r\n"),
            Frame::Bulk(Some(b)) => blob(out, b'$', b),
            Frame::Array(None) => out.put_slice(b"*-1\r\n"),
            Frame::Array(Some(items)) => {
                line(out, b'*', items.len().to_string().as_bytes());
                items.iter().for_each(|f| f.encode(out));
            }
            Frame::Null => out.put_slice(b"_\r\n"),
            Frame::Boolean(b) => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::Double(d) => line(out, b',', d),
            Frame::BigNumber(n) => line(out, b'(', n),
            Frame::BlobError(b) => blob(out, b'!', b),
            Frame::Verbatim(b) => blob(out, b'=', b),
            Frame::Map(pairs) => pairs_out(out, b'%', pairs),
            Frame::Set(items) | Frame::Push(items) => {
                let t = if matches!(self, Frame::Set(_)) {
                    b'~'
                } else {
                    b'>'
                };
                line(out, t, items.len().to_string().as_bytes());
                items.iter().for_each(|f| f.encode(out));
            }
            Frame::Attribute(pairs, value) => {
                pairs_out(out, b'|', pairs);
                value.encode(out);
            }
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

fn line(out: &mut BytesMut, t: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(t);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn blob(out: &mut BytesMut, t: u8, body: &[u8]) {
    line(out, t, body.len().to_string().as_bytes());
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn pairs_out(out: &mut BytesMut, t: u8, pairs: &[(Frame, Frame)]) {
    line(out, t, pairs.len().to_string().as_bytes());
    for (k, v) in pairs {
        k.encode(out);
        v.encode(out);
    }
}

/// Find the CRLF-terminated line starting at `at`; returns the line and the index after it.
fn read_line<'a>(
    buf: &'a [u8],
    at: usize,
    limits: &Limits,
) -> Result<Option<(&'a [u8], usize)>, ProtocolError> {
    let rest = &buf[at.min(buf.len())..];
    match memchr_crlf(rest) {
        Some(end) => Ok(Some((&rest[..end], at + end + 2))),
        None if rest.len() > limits.max_inline_bytes => {
            Err(ProtocolError::LineTooLong(limits.max_inline_bytes))
        }
        None => Ok(None),
    }
}

fn memchr_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|&b| b == b'\r') {
        let i = from + i;
        if i + 1 >= buf.len() {
            return None;
        }
        if buf[i + 1] == b'\n' {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Parse a decimal integer strictly (optional leading `-`, digits only).
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

fn length(s: &[u8], what: &'static str) -> Result<i64, ProtocolError> {
    parse_int(s)
        .filter(|&n| n >= -1)
        .ok_or(ProtocolError::BadNumber(what))
}

/// Finds where the frame at the start of a growing buffer ends, resuming where the last
/// call stopped: each byte is scanned once however many reads the frame takes to arrive,
/// so a reply of millions of elements, or a 64 MiB one, costs time linear in its size.
///
/// The buffer may only grow between calls until a frame is complete; once [`scan`]
/// returns its length, the caller removes that many bytes from the front and the scanner
/// starts afresh.
///
/// [`scan`]: FrameScanner::scan
#[derive(Clone, Debug)]
pub struct FrameScanner {
    limits: Limits,
    /// Where the next element starts.
    pos: usize,
    /// Open aggregates, innermost last: elements still to come, and whether it is an
    /// attribute (whose end is not an element of its parent: the value it annotates is).
    open: Vec<(usize, bool)>,
}

impl FrameScanner {
    /// A scanner refusing input beyond `limits`.
    pub fn new(limits: Limits) -> Self {
        FrameScanner {
            limits,
            pos: 0,
            open: Vec::new(),
        }
    }

    /// The length of the complete frame at the start of `buf`, or `None` until more bytes
    /// arrive.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let result = self.resume(buf);
        if !matches!(result, Ok(None)) {
            self.pos = 0;
            self.open.clear();
        }
        result
    }

    fn resume(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let limits = self.limits;
        loop {
            if self.open.len() > limits.max_depth {
                return Err(ProtocolError::TooDeep(limits.max_depth));
            }
            let Some(&t) = buf.get(self.pos) else {
                return Ok(None);
            };
            let Some((body, next)) = read_line(buf, self.pos + 1, &limits)? else {
                return Ok(None);
            };
            match t {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                    if t == b':' && parse_int(body).is_none() {
                        return Err(ProtocolError::BadNumber("integer"));
                    }
                    self.pos = next;
                }
                b'$' | b'!' | b'=' => {
                    let n = length(body, "bulk length")?;
                    if n >= 0 {
                        let n = n as usize;
                        if n > limits.max_bulk_bytes {
                            return Err(ProtocolError::BulkTooLarge {
                                len: n,
                                limit: limits.max_bulk_bytes,
                            });
                        }
                        if buf.len() < next + n + 2 {
                            return Ok(None);
                        }
                        if &buf[next + n..next + n + 2] != b"\r\n" {
                            return Err(ProtocolError::Unterminated);
                        }
                        self.pos = next + n + 2;
                    } else {
                        self.pos = next;
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = length(body, "aggregate length")?;
                    self.pos = next;
                    if n >= 0 {
                        let n = n as usize;
                        if n > limits.max_array_len {
                            return Err(ProtocolError::ArrayTooLarge {
                                len: n,
                                limit: limits.max_array_len,
                            });
                        }
                        let elements = if t == b'%' || t == b'|' { n * 2 } else { n };
                        if t == b'|' {
                            // The annotated value follows the pairs and is the element.
                            if elements > 0 {
                                self.open.push((elements, true));
                            }
                            continue;
                        }
                        if elements > 0 {
                            self.open.push((elements, false));
                            continue;
                        }
                    }
                }
                other => return Err(ProtocolError::BadType(other as char)),
            }
            // One element ended at `pos`: close every aggregate it completes.
            loop {
                let Some((left, attribute)) = self.open.last_mut() else {
                    return Ok(Some(self.pos));
                };
                *left -= 1;
                if *left > 0 {
                    break;
                }
                let attribute = *attribute;
                self.open.pop();
                if attribute {
                    break;
                }
            }
        }
    }
}

/// The length of the complete frame at the start of `buf`, if it is complete (a fresh
/// scan; keep a [`FrameScanner`] to resume one as bytes arrive).
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ProtocolError> {
    FrameScanner::new(*limits).scan(buf)
}

/// Decode the complete frame at the start of `buf` (a slice of `whole`, which backs the
/// returned `Bytes` without copying). Returns the frame and its length.
pub fn parse(whole: &Bytes, limits: &Limits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let Some(len) = frame_len(whole, limits)? else {
        return Ok(None);
    };
    let (frame, used) = decode(whole, 0);
    debug_assert_eq!(used, len);
    Ok(Some((frame, len)))
}

/// Decode a frame already known to be complete and valid.
fn decode(b: &Bytes, at: usize) -> (Frame, usize) {
    let t = b[at];
    let end = at + 1 + memchr_crlf(&b[at + 1..]).expect("validated frame has a line");
    let body = b.slice(at + 1..end);
    let next = end + 2;
    let n = || parse_int(&body).unwrap_or(0);
    match t {
        b'+' => (Frame::Simple(body), next),
        b'-' => (Frame::Error(body), next),
        b':' => (Frame::Integer(n()), next),
        b'_' => (Frame::Null, next),
        b',' => (Frame::Double(body), next),
        b'(' => (Frame::BigNumber(body), next),
        b'#' => (Frame::Boolean(body.as_ref() == b"t"), next),
        b'$' | b'!' | b'=' => {
            let len = n();
            if len < 0 {
                return (Frame::Bulk(None), next);
            }
            let data = b.slice(next..next + len as usize);
            let f = match t {
                b'$' => Frame::Bulk(Some(data)),
                b'!' => Frame::BlobError(data),
                _ => Frame::Verbatim(data),
            };
            (f, next + len as usize + 2)
        }
        _ => {
            let len = n();
            if len < 0 {
                return (Frame::Array(None), next);
            }
            let mut at = next;
            let mut items = Vec::with_capacity(len as usize);
            let count = if t == b'%' || t == b'|' { len * 2 } else { len };
            for _ in 0..count {
                let (f, e) = decode(b, at);
                items.push(f);
                at = e;
            }
            let pairs = |items: Vec<Frame>| {
                let mut it = items.into_iter();
                let mut v = Vec::new();
                while let (Some(k), Some(val)) = (it.next(), it.next()) {
                    v.push((k, val));
                }
                v
            };
            match t {
                b'*' => (Frame::Array(Some(items)), at),
                b'~' => (Frame::Set(items), at),
                b'>' => (Frame::Push(items), at),
                b'%' => (Frame::Map(pairs(items)), at),
                _ => {
                    let (value, e) = decode(b, at);
                    (Frame::Attribute(pairs(items), Box::new(value)), e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(wire: &[u8]) -> Frame {
        let whole = Bytes::copy_from_slice(wire);
        let (frame, used) = parse(&whole, &Limits::default())
            .expect("valid")
            .expect("complete");
        assert_eq!(used, wire.len());
        assert_eq!(frame.to_bytes().as_ref(), wire, "re-encodes byte for byte");
        frame
    }

    #[test]
    fn resp2_and_resp3_frames_round_trip() {
        for wire in [
            &b"+OK\r\n"[..],
            b"-ERR bad\r\n",
            b":-42\r\n",
            b"$3\r\nfoo\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"_\r\n",
            b"#t\r\n",
            b",1.5\r\n",
            b"(12345678901234567890\r\n",
            b"!3\r\nerr\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"%1\r\n+k\r\n:1\r\n",
            b"~2\r\n:1\r\n:2\r\n",
            b">2\r\n+message\r\n$1\r\nx\r\n",
            b"|1\r\n+ttl\r\n:3\r\n+value\r\n",
        ] {
            round_trip(wire);
        }
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        let limits = Limits::default();
        for wire in [
            &b"$3\r\nfo"[..],
            b"*2\r\n$1\r\na\r\n",
            b"+OK\r",
            b"",
            b"$3\r\nfoo\r",
        ] {
            assert_eq!(
                frame_len(wire, &limits),
                Ok(None),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn malformed_and_oversized_input_is_refused() {
        let limits = Limits {
            max_bulk_bytes: 10,
            max_array_len: 3,
            max_inline_bytes: 16,
            max_depth: 2,
        };
        let cases: [(&[u8], &str); 7] = [
            (b"?x\r\n", "invalid type byte"),
            (b"$abc\r\n", "invalid bulk length"),
            (b"$11\r\n", "exceeds the limit of 10"),
            (b"*4\r\n", "aggregate of 4 elements"),
            (b"$3\r\nfooXX", "not terminated"),
            (b"+aaaaaaaaaaaaaaaaaaaaaaaa", "line longer than 16"),
            (b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "nesting deeper than 2"),
        ];
        for (wire, needle) in cases {
            let err = frame_len(wire, &limits).expect_err("refused").to_string();
            assert!(
                err.contains(needle),
                "{:?}: {err}",
                String::from_utf8_lossy(wire)
            );
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests: arbitrary bytes never panic the codec, and every frame round-trips.
    //! Failing cases are kept by proptest in `proptest-regressions/` as a regression corpus.

    use proptest::prelude::*;

    use super::*;
    use crate::proxy::request::next_request;

    fn frame() -> impl Strategy<Value = Frame> {
        let text = "[a-zA-Z0-9 ]{0,12}".prop_map(|s| Bytes::from(s.into_bytes()));
        let blob = proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from);
        let leaf = prop_oneof![
            text.clone().prop_map(Frame::Simple),
            text.clone()
                .prop_map(|t| Frame::Error(Bytes::from([b"ERR ".as_ref(), &t].concat()))),
            any::<i64>().prop_map(Frame::Integer),
            proptest::option::of(blob.clone()).prop_map(Frame::Bulk),
            Just(Frame::Null),
            any::<bool>().prop_map(Frame::Boolean),
            blob.prop_map(Frame::BlobError),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::option::of(proptest::collection::vec(inner.clone(), 0..6))
                    .prop_map(Frame::Array),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let limits = Limits { max_bulk_bytes: 64, max_array_len: 16, max_inline_bytes: 64, max_depth: 4 };
            let _ = frame_len(&bytes, &limits);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = next_request(&mut buf, &limits) {}
        }

        #[test]
        fn frames_round_trip(f in frame()) {
            let wire = f.to_bytes();
            let (back, used) = parse(&wire, &Limits::default()).expect("valid").expect("complete");
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(back, f);
        }

        #[test]
        fn every_prefix_of_a_frame_asks_for_more(f in frame()) {
            let wire = f.to_bytes();
            for cut in 0..wire.len() {
                prop_assert_eq!(frame_len(&wire[..cut], &Limits::default()), Ok(None));
            }
        }

        #[test]
        fn a_scanner_fed_byte_by_byte_finds_the_same_end(f in frame(), extra in 0usize..3) {
            let mut wire = f.to_bytes().to_vec();
            let len = wire.len();
            wire.extend(std::iter::repeat_n(b'+', extra));
            let mut scanner = FrameScanner::new(Limits::default());
            for cut in 0..len {
                prop_assert_eq!(scanner.scan(&wire[..cut]), Ok(None));
            }
            prop_assert_eq!(scanner.scan(&wire[..len]), Ok(Some(len)));
            // Fresh again for the next frame.
            prop_assert_eq!(scanner.scan(&wire[..len]), Ok(Some(len)));
        }
    }
}
