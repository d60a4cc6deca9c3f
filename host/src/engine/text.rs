//! Text a policy supplies, made safe to print: its name, version and summary, its log
//! lines, its output and its refusal messages.
//!
//! A policy must not be able to forge a host log line or flood the log with one string, so
//! control characters (newlines, carriage returns, terminal escapes, Unicode line and
//! paragraph separators, bidirectional overrides) are written as escapes, and the text is
//! cut to a length, saying how much was cut.

use std::fmt::Write;

/// Longest name or version a policy may give itself, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest summary, in bytes.
pub const MAX_SUMMARY: usize = 256;
/// Longest log message, output line or refusal, in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// True for characters that could end, rewrite or reorder a log line.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with every unsafe character escaped (`\n`, `\u{1b}`), cut to about `max` bytes.
pub fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 16);
    for (at, c) in text.char_indices() {
        if out.len() >= max {
            let _ = write!(out, "… ({} more bytes cut)", text.len() - at);
            break;
        }
        if unsafe_char(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let forged = "ok\n2026-01-01T00:00:00Z ERROR shardcast: fake\r\x1b[2K\u{2028}\u{202e}";
        let clean = clean(forged, MAX_MESSAGE);
        assert!(!clean.chars().any(unsafe_char), "{clean}");
        assert!(clean.starts_with("ok\\n2026"), "{clean}");
        assert!(clean.contains("\\u{1b}"), "{clean}");
        assert!(clean.contains("\\u{202e}"), "{clean}");
    }

    #[test]
    fn long_text_is_cut_and_says_so() {
        let long = "é".repeat(10_000);
        let cut = clean(&long, MAX_NAME);
        assert!(cut.len() < MAX_NAME + 40, "{}", cut.len());
        assert!(cut.ends_with("more bytes cut)"), "{cut}");
        assert_eq!(clean("plain", MAX_NAME), "plain");
        assert_eq!(clean("a\\nb", MAX_NAME), "a\\\\nb");
    }
}
