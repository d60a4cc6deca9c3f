//! Client requests: RESP arrays of bulk strings, or inline commands, split off the
//! connection's read buffer without copying.
//!
//! A request keeps its raw bytes so that the common case (one key, one instance) forwards
//! them untouched.

use bytes::{Bytes, BytesMut};

use super::resp::{FrameScanner, Limits, ProtocolError, parse_int};

/// One client command.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Name and arguments.
    pub args: Vec<Bytes>,
    /// The bytes as received (a multibulk; inline commands are re-encoded as one).
    pub raw: Bytes,
}

impl Request {
    /// Build a request from arguments, encoding it as a multibulk.
    pub fn from_args(args: Vec<Bytes>) -> Self {
        let mut raw = BytesMut::new();
        encode_args(&args, &mut raw);
        Request {
            args,
            raw: raw.freeze(),
        }
    }

    /// The command name in upper case.
    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// Argument `i` as upper-case text.
    pub fn arg_upper(&self, i: usize) -> Option<String> {
        self.args
            .get(i)
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
    }
}

/// Encode arguments as a RESP multibulk.
pub fn encode_args(args: &[Bytes], out: &mut BytesMut) {
    use bytes::BufMut;
    out.put_u8(b'*');
    out.put_slice(args.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for a in args {
        out.put_u8(b'$');
        out.put_slice(a.len().to_string().as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

/// Split the next complete request off `buf`, if there is one (a fresh scan: a connection
/// keeps a [`Requests`] so that a request arriving over many reads is scanned once).
pub fn next_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    Requests::new(*limits).next(buf)
}

/// A connection's request reader: splits complete requests off its read buffer, resuming
/// the scan of a partial one where the last read left it.
#[derive(Clone, Debug)]
pub struct Requests {
    scanner: FrameScanner,
    limits: Limits,
}

impl Requests {
    /// A reader refusing requests beyond `limits`.
    pub fn new(limits: Limits) -> Self {
        Requests {
            scanner: FrameScanner::new(limits),
            limits,
        }
    }

    /// Split the next complete request off `buf`, if there is one. Between two calls
    /// `buf` may only grow at its end.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first != b'*' {
            return inline(buf, &self.limits);
        }
        let Some(len) = self.scanner.scan(buf)? else {
            return Ok(None);
        };
        let raw = buf.split_to(len).freeze();
        let args = split_multibulk(&raw)?;
        Ok(Some(Request { args, raw }))
    }
}

/// The bulk strings of a complete, validated multibulk.
fn split_multibulk(raw: &Bytes) -> Result<Vec<Bytes>, ProtocolError> {
    let line_end = |from: usize| -> usize {
        from + raw[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(0)
    };
    let end = line_end(1);
    let n = parse_int(&raw[1..end]).unwrap_or(0).max(0) as usize;
    let mut args = Vec::with_capacity(n);
    let mut at = end + 2;
    for _ in 0..n {
        if raw[at] != b'$' {
            return Err(ProtocolError::BadType(raw[at] as char));
        }
        let end = line_end(at + 1);
        let len = parse_int(&raw[at + 1..end]).unwrap_or(-1);
        if len < 0 {
            return Err(ProtocolError::BadNumber("argument length"));
        }
        let start = end + 2;
        args.push(raw.slice(start..start + len as usize));
        at = start + len as usize + 2;
    }
    Ok(args)
}

fn inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_bytes {
            return Err(ProtocolError::LineTooLong(limits.max_inline_bytes));
        }
        return Ok(None);
    };
    if nl > limits.max_inline_bytes {
        return Err(ProtocolError::LineTooLong(limits.max_inline_bytes));
    }
    let line = buf.split_to(nl + 1).freeze();
    let text = line.slice(..line.len() - 1);
    let text = text
        .strip_suffix(b"\r")
        .map(|t| line.slice(..t.len()))
        .unwrap_or(text);
    let args: Vec<Bytes> = text
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|s| !s.is_empty())
        .map(Bytes::copy_from_slice)
        .collect();
    if args.is_empty() {
        return Ok(Some(Request {
            args,
            raw: Bytes::new(),
        }));
    }
    Ok(Some(Request::from_args(args)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(wire: &[u8]) -> Vec<Vec<String>> {
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(r) = next_request(&mut buf, &Limits::default()).expect("valid") {
            out.push(
                r.args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn pipelined_multibulk_and_inline_requests() {
        let wire = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nset  a   b\n";
        assert_eq!(
            all(wire),
            vec![
                vec!["GET", "k"],
                vec!["PING"],
                vec!["SET", "k", ""],
                vec!["set", "a", "b"]
            ]
        );
    }

    #[test]
    fn partial_requests_wait_and_raw_bytes_are_kept() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r"[..]);
        assert_eq!(next_request(&mut buf, &Limits::default()), Ok(None));
        buf.extend_from_slice(b"\nk\r\n");
        let r = next_request(&mut buf, &Limits::default())
            .expect("valid")
            .expect("complete");
        assert_eq!(r.raw.as_ref(), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert!(buf.is_empty());
    }

    #[test]
    fn non_bulk_arguments_are_refused() {
        let mut buf = BytesMut::from(&b"*1\r\n:1\r\n"[..]);
        assert!(next_request(&mut buf, &Limits::default()).is_err());
    }
}
