//! Text from outside (a task's output, a registry's error, an engine's
//! message) made safe to print on a terminal: control characters cannot
//! clear the screen, move the cursor, set the title or write the clipboard.
//!
//! Every C0 and C1 control character except newline and tab is written as a
//! visible escape (`\x1b`, `\r`, `\u{9b}`); the one escape sequence kept is
//! SGR (`ESC [ … m`, colours and bold), which build and test tools print and
//! which can do nothing but colour text.

use std::borrow::Cow;
use std::fmt::Write as _;

pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\x1b' {
            if let Some(len) = sgr_len(rest) {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        match c {
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// The length of an SGR sequence at the start of `s`: `ESC [` digits and
/// `;`, then `m`.
fn sgr_len(s: &str) -> Option<usize> {
    let body = s.strip_prefix("\x1b[")?;
    let params = body.bytes().take_while(|b| b.is_ascii_digit() || *b == b';').count();
    (body.as_bytes().get(params) == Some(&b'm') && params <= 32).then_some(2 + params + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_obeyed() {
        assert_eq!(printable("sha256:\x1b[2Jabc"), "sha256:\\x1b[2Jabc");
        assert_eq!(printable("title\x1b]0;pwned\x07"), "title\\x1b]0;pwned\\x07");
        assert_eq!(printable("50%\r100%"), "50%\\r100%");
        assert_eq!(printable("c1 \u{9b}2J"), "c1 \\u{9b}2J");
        assert_eq!(printable("bell\x07 nul\0"), "bell\\x07 nul\\x00");
    }

    #[test]
    fn plain_text_colours_newlines_and_tabs_stay() {
        assert!(matches!(printable("plain\ttext\né"), Cow::Borrowed(_)));
        assert_eq!(printable("\x1b[1;31mred\x1b[0m"), "\x1b[1;31mred\x1b[0m");
        assert_eq!(printable("\x1b[31"), "\\x1b[31", "an unfinished sequence");
    }
}
