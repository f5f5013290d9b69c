//! Text from the network, made safe to print.
//!
//! A SIP peer chooses its reason phrase, its `Server` header and the realm of its challenges.
//! Printed raw, an `ESC[2J` clears the operator's terminal and an OSC sequence retitles it; in
//! a log file the same bytes forge lines. [`escape_control`] is what every human-facing output
//! (the `probe` command's text, Nagios lines, log fields) passes such text through. It does not
//! do HTML or XML escaping (the status page has its own), and it leaves JSON alone (serde
//! already escapes control characters there).

use std::borrow::Cow;

/// Replaces every control character (C0, DEL, C1) with a visible escape: `\n`, `\r`, `\t`, or
/// `\xHH` / `\u{HHHH}`; everything else is returned unchanged (borrowed when nothing changes).
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters plus the Unicode line/paragraph separators and bidi overrides, which
/// reorder or break what a terminal shows.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_become_visible() {
        assert!(matches!(escape_control("OK"), Cow::Borrowed("OK")));
        assert_eq!(escape_control("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(
            escape_control("\u{1b}]0;pwned\u{7}x"),
            "\\x1b]0;pwned\\x07x"
        );
        assert_eq!(escape_control("l1\r\nl2\t"), "l1\\r\\nl2\\t");
        assert_eq!(escape_control("c1\u{9b}2J"), "c1\\x9b2J");
        assert_eq!(escape_control("rtl\u{202e}"), "rtl\\u{202e}");
        assert_eq!(escape_control("Kamailio (5.6 é)"), "Kamailio (5.6 é)");
    }
}
