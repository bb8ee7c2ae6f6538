//! A process's output stream cut into redacted log lines, in bounded memory.
//!
//! Bytes arrive in chunks of any size (pipes, the engine's attach stream).
//! Complete lines are redacted whole, so a secret written in pieces is still
//! found; a line longer than [`MAX_LINE`] is cut into several log lines, never
//! inside a secret. What is kept for the task's outputs is the redacted text,
//! up to a cap.

use crate::secret::Redactor;

/// The longest log line; longer lines are logged in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// One log line cut from the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    /// The stream had a line ending here (false for a cut long line).
    pub ends_line: bool,
}

pub struct Lines {
    /// The start of a UTF-8 character split between chunks.
    pending: Vec<u8>,
    /// Text of the line not yet ended.
    partial: String,
    kept: String,
    cap: usize,
    truncated: bool,
}

impl Lines {
    /// `cap`: bytes of redacted text kept for the outputs.
    pub fn new(cap: usize) -> Self {
        Lines {
            pending: Vec::new(),
            partial: String::new(),
            kept: String::new(),
            cap,
            truncated: false,
        }
    }

    /// Feeds a chunk; returns the log lines it completes.
    pub fn push(&mut self, bytes: &[u8], redactor: &Redactor) -> Vec<Piece> {
        self.decode(bytes);
        let mut out = Vec::new();
        let hold = redactor.longest();
        loop {
            // A line too long is cut first, wherever its end is: in this
            // chunk or one still to come.
            match self.partial.find('\n') {
                Some(i) if i <= MAX_LINE + hold => {
                    let line: String = self.partial.drain(..=i).collect();
                    let line = line.trim_end_matches('\n').trim_end_matches('\r');
                    out.push(self.piece(line, true, redactor));
                }
                _ if self.partial.len() >= MAX_LINE + hold => {
                    let cut = redactor.safe_cut(&self.partial, MAX_LINE);
                    let head: String = self.partial.drain(..cut).collect();
                    out.push(self.piece(&head, false, redactor));
                }
                _ => return out,
            }
        }
    }

    /// The end of the stream: the last line, if it had no line ending.
    pub fn finish(&mut self, redactor: &Redactor) -> Option<Piece> {
        if !self.pending.is_empty() {
            self.partial.push(char::REPLACEMENT_CHARACTER);
            self.pending.clear();
        }
        if self.partial.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.partial);
        Some(self.piece(&rest, false, redactor))
    }

    /// The redacted text kept (line endings as `\n`), and whether the cap cut it.
    pub fn kept(self) -> (String, bool) {
        (self.kept, self.truncated)
    }

    fn piece(&mut self, raw: &str, ends_line: bool, redactor: &Redactor) -> Piece {
        let text = redactor.redact(raw).into_owned();
        let room = self.cap.saturating_sub(self.kept.len());
        let need = text.len() + usize::from(ends_line);
        if need <= room {
            self.kept.push_str(&text);
            if ends_line {
                self.kept.push('\n');
            }
        } else if !self.truncated {
            self.truncated = true;
            let mut end = room.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            self.kept.push_str(&text[..end]);
        }
        Piece { text, ends_line }
    }

    /// Appends valid UTF-8 to `partial`, invalid bytes as U+FFFD, and keeps
    /// an incomplete character for the next chunk.
    fn decode(&mut self, bytes: &[u8]) {
        let owned;
        let mut rest: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            self.pending.extend_from_slice(bytes);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.partial.push_str(s);
                    return;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // The first `valid_up_to` bytes are valid UTF-8.
                    self.partial.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            self.partial.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        None => {
                            self.pending = bad.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn texts(pieces: &[Piece]) -> Vec<&str> {
        pieces.iter().map(|p| p.text.as_str()).collect()
    }

    #[test]
    fn a_secret_written_in_pieces_is_redacted() {
        let r = Redactor::new(&[Secret::new("hunter2-secret")]);
        let mut lines = Lines::new(1024);
        let mut out = Vec::new();
        for chunk in ["pw: hun", "ter2-se", "cret\nnext", " line\r\n", "é"] {
            out.extend(lines.push(chunk.as_bytes(), &r));
        }
        out.extend(lines.finish(&r));
        assert_eq!(texts(&out), ["pw: ***", "next line", "é"]);
        assert_eq!(lines.kept(), ("pw: ***\nnext line\né".to_string(), false));
    }

    #[test]
    fn characters_split_between_chunks_survive_and_invalid_bytes_are_replaced() {
        let r = Redactor::default();
        let mut lines = Lines::new(1024);
        let e = "é".as_bytes();
        let mut out = lines.push(&e[..1], &r);
        out.extend(lines.push(&[e[1], 0xff, b'\n'], &r));
        assert_eq!(texts(&out), ["é\u{fffd}"]);
    }

    #[test]
    fn a_long_line_is_cut_in_pieces_but_never_inside_a_secret() {
        let secret = "S".repeat(40);
        let r = Redactor::new(&[Secret::new(secret.clone())]);
        let mut lines = Lines::new(usize::MAX);
        // The secret straddles where a cut at MAX_LINE would fall.
        let text = format!("{}{secret}{}", "x".repeat(MAX_LINE - 10), "y".repeat(MAX_LINE));
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(7919) {
            out.extend(lines.push(chunk, &r));
        }
        out.extend(lines.finish(&r));
        assert!(out.iter().all(|p| p.text.len() <= MAX_LINE + r.longest()));
        assert!(out.len() >= 2);
        let joined: String = out.iter().map(|p| p.text.as_str()).collect();
        assert!(!joined.contains('S'), "no letter of the secret");
        assert_eq!(joined.matches("***").count(), 1);
    }

    #[test]
    fn a_long_line_ended_in_a_later_chunk_is_cut_too() {
        let r = Redactor::default();
        let mut lines = Lines::new(0);
        // Short of a cut, then the rest of the line and its end at once.
        let mut out = lines.push(&vec![b'a'; MAX_LINE - 100], &r);
        assert!(out.is_empty());
        out.extend(lines.push(format!("{}\nnext\n", "b".repeat(MAX_LINE)).as_bytes(), &r));
        assert!(
            out.iter().all(|p| p.text.len() <= MAX_LINE),
            "{:?}",
            out.iter().map(|p| p.text.len()).collect::<Vec<_>>()
        );
        let joined: String = out.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(joined.len(), 2 * MAX_LINE - 100 + 4);
        assert_eq!(
            out.last().unwrap(),
            &Piece {
                text: "next".into(),
                ends_line: true
            }
        );
    }

    #[test]
    fn memory_stays_bounded_without_line_endings() {
        let r = Redactor::default();
        let mut lines = Lines::new(1000);
        let chunk = vec![b'z'; 1 << 20];
        for _ in 0..8 {
            lines.push(&chunk, &r);
            assert!(lines.partial.len() < MAX_LINE + (1 << 20));
        }
        let (kept, truncated) = lines.kept();
        assert_eq!((kept.len(), truncated), (1000, true));
    }

    #[test]
    fn the_cap_cuts_redacted_text() {
        let r = Redactor::new(&[Secret::new("0123456789")]);
        let mut lines = Lines::new(8);
        lines.push(b"ab0123456789cdefgh\n", &r);
        assert_eq!(lines.kept(), ("ab***cde".to_string(), true));
    }
}
