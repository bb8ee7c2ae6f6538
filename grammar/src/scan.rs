//! A linear pre-pass over the source, before pest runs: it collects comments
//! (pest discards them) and bounds bracket nesting. pest and the later stages
//! recurse once per nesting level, so a region nested deeper than
//! [`MAX_DEPTH`] is blanked out (bytes replaced by spaces, offsets kept) and
//! reported, instead of overflowing the stack.

use std::borrow::Cow;

use crate::ast::{Comment, CommentKind};
use crate::diag::{codes, Diagnostic, Span};

/// Deepest bracket / interpolation nesting the parser accepts.
pub const MAX_DEPTH: usize = 48;

/// Operators, separators and brackets one line may hold. pest keeps a token
/// per syntax node, so a 50 MB line of `a.a.a…` would take gigabytes; such a
/// line is blanked and reported instead.
pub const MAX_LINE_PARTS: usize = 20_000;

pub struct Scan<'a> {
    pub text: Cow<'a, str>,
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
    /// Blanked regions; parse errors inside them are not reported again.
    pub masked: Vec<Span>,
    /// Starts of lines inside a flow body (bracket depth 1) that begin an
    /// item: places where a large flow can be cut into chunks.
    pub item_starts: Vec<usize>,
    /// `}` that bring the depth back to 0 (the ends of flows).
    pub top_closes: Vec<usize>,
    /// Lines at depth 0 that start with `flow`.
    pub top_flows: usize,
}

/// Bytes the scanner acts on in code: comments, strings, brackets, line ends
/// and the operators counted by the long-line guard.
const CODE_SPECIAL: [bool; 256] = byte_set(b"/\"{[(<}])>\n.,|&=!?@");
/// Bytes the scanner acts on inside strings.
const STRING_SPECIAL: [bool; 256] = byte_set(b"\\$\"\n");

const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        set[bytes[i] as usize] = true;
        i += 1;
    }
    set
}

/// The keyword starting at `j` (after indentation), if it is one of `words`.
fn keyword_at(b: &[u8], mut j: usize, words: &[&str]) -> Option<usize> {
    while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
        j += 1;
    }
    let rest = &b[j..];
    words
        .iter()
        .find(|w| {
            rest.starts_with(w.as_bytes())
                && rest
                    .get(w.len())
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        })
        .map(|_| j)
}

#[derive(Clone, Copy)]
enum Ctx {
    /// Code; `braces` counts `{` opened inside an interpolation.
    Code {
        braces: usize,
    },
    Str,
    Triple,
}

pub fn scan(src: &str) -> Scan<'_> {
    let b = src.as_bytes();
    let mut comments = Vec::new();
    let mut diagnostics = Vec::new();
    let mut masked: Vec<Span> = Vec::new();
    let mut stack = vec![Ctx::Code { braces: 0 }];
    let mut depth = 0usize;
    // While masking: (start offset, depth to return to).
    let mut mask: Option<(usize, usize)> = None;
    let mut item_starts = Vec::new();
    let mut top_closes = Vec::new();
    let mut top_flows = usize::from(keyword_at(b, 0, &["flow"]).is_some());
    let mut line_start = 0;
    let mut line_parts = 0usize;
    let mut long_lines: Vec<Span> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // Fast path: skip the bytes no context cares about.
        let table = match stack.last() {
            Some(Ctx::Code { .. }) => &CODE_SPECIAL,
            _ => &STRING_SPECIAL,
        };
        while i < b.len() && !table[b[i] as usize] {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let c = b[i];
        if c == b'\n' {
            if line_parts > MAX_LINE_PARTS {
                push_long_line(&mut long_lines, &mut diagnostics, Span::new(line_start, i));
            }
            line_start = i + 1;
            line_parts = 0;
        }
        let top = *stack.last().expect("the code context is never popped");
        if c == b'\n' && stack.len() == 1 {
            match depth {
                0 => top_flows += usize::from(keyword_at(b, i + 1, &["flow"]).is_some()),
                1 => item_starts.extend(keyword_at(b, i + 1, crate::keywords::ITEM)),
                _ => {}
            }
        }
        if matches!(top, Ctx::Code { .. })
            && matches!(
                c,
                b'.' | b',' | b'|' | b'&' | b'=' | b'!' | b'?' | b'@' | b'(' | b'[' | b'{'
            )
        {
            line_parts += 1;
        }
        match top {
            Ctx::Code { braces } => match c {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    let end = memchr_newline(b, i);
                    if mask.is_none() {
                        let doc = b.get(i + 2) == Some(&b'/') && b.get(i + 3) != Some(&b'/');
                        let (kind, skip) = if doc {
                            (CommentKind::Doc, 3)
                        } else {
                            (CommentKind::Line, 2)
                        };
                        comments.push(Comment {
                            span: Span::new(i, end),
                            text: src[i + skip..end].trim_end().to_string(),
                            kind,
                        });
                    }
                    i = end;
                    continue;
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    let end = match find(b, i + 2, b"*/") {
                        Some(e) => e + 2,
                        None => {
                            diagnostics.push(
                                Diagnostic::error(
                                    codes::UNTERMINATED_COMMENT,
                                    Span::new(i, i + 2),
                                    "unterminated block comment",
                                )
                                .with_label("this comment is never closed")
                                .with_help("close it with `*/`"),
                            );
                            b.len()
                        }
                    };
                    if mask.is_none() {
                        comments.push(Comment {
                            span: Span::new(i, end),
                            text: src[i..end].to_string(),
                            kind: CommentKind::Block,
                        });
                    }
                    i = end;
                    continue;
                }
                b'"' => {
                    if b[i..].starts_with(b"\"\"\"") {
                        stack.push(Ctx::Triple);
                        i += 3;
                    } else {
                        stack.push(Ctx::Str);
                        i += 1;
                    }
                    continue;
                }
                b'{' | b'[' | b'(' | b'<' => {
                    if c == b'{' {
                        if let Some(Ctx::Code { braces }) = stack.last_mut() {
                            *braces += 1;
                        }
                    }
                    open(&mut depth, &mut mask, i);
                }
                b'}' if braces == 0 && stack.len() > 1 => {
                    // End of an interpolation: back into the string.
                    stack.pop();
                    close(&mut depth, &mut mask, &mut masked, &mut diagnostics, i);
                }
                b'}' | b']' | b')' | b'>' => {
                    if c == b'}' {
                        if let Some(Ctx::Code { braces }) = stack.last_mut() {
                            *braces = braces.saturating_sub(1);
                        }
                    }
                    close(&mut depth, &mut mask, &mut masked, &mut diagnostics, i);
                    if c == b'}' && depth == 0 && stack.len() == 1 {
                        top_closes.push(i);
                    }
                }
                _ => {}
            },
            Ctx::Str | Ctx::Triple => {
                let triple = matches!(top, Ctx::Triple);
                match c {
                    b'\\' => {
                        i += 2;
                        continue;
                    }
                    b'$' if b.get(i + 1) == Some(&b'{') => {
                        stack.push(Ctx::Code { braces: 0 });
                        open(&mut depth, &mut mask, i);
                        i += 2;
                        continue;
                    }
                    b'"' if !triple => {
                        stack.pop();
                    }
                    b'"' if b[i..].starts_with(b"\"\"\"") => {
                        stack.pop();
                        i += 3;
                        continue;
                    }
                    // An unterminated single-line string ends at the newline;
                    // the parser reports it.
                    b'\n' if !triple => {
                        stack.pop();
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    if let Some((start, _)) = mask {
        push_mask(&mut masked, &mut diagnostics, Span::new(start, b.len()));
    }
    if line_parts > MAX_LINE_PARTS {
        push_long_line(&mut long_lines, &mut diagnostics, Span::new(line_start, b.len()));
    }
    masked.extend(long_lines.iter().copied());
    masked.sort();

    let bom = src.starts_with('\u{FEFF}');
    let text = if masked.is_empty() && !bom {
        Cow::Borrowed(src)
    } else {
        let mut bytes = b.to_vec();
        if bom {
            bytes[..3].copy_from_slice(b"   ");
        }
        for m in &masked {
            // A deep region becomes spaces (its brackets outside the region
            // still balance); a whole long line becomes one run of `#`, which
            // the grammar swallows as a hole far faster than whitespace.
            let fill = if long_lines.contains(m) { b'#' } else { b' ' };
            for byte in &mut bytes[m.start..m.end.min(b.len())] {
                if *byte != b'\n' {
                    *byte = fill;
                }
            }
        }
        Cow::Owned(String::from_utf8(bytes).expect("only ASCII bytes were written over whole characters"))
    };
    Scan {
        text,
        comments,
        diagnostics,
        masked,
        item_starts,
        top_closes,
        top_flows,
    }
}

fn open(depth: &mut usize, mask: &mut Option<(usize, usize)>, at: usize) {
    if mask.is_none() && *depth >= MAX_DEPTH {
        *mask = Some((at, *depth));
    }
    *depth += 1;
}

fn close(
    depth: &mut usize,
    mask: &mut Option<(usize, usize)>,
    masked: &mut Vec<Span>,
    diagnostics: &mut Vec<Diagnostic>,
    at: usize,
) {
    *depth = depth.saturating_sub(1);
    if let Some((start, level)) = *mask {
        if *depth <= level {
            push_mask(masked, diagnostics, Span::new(start, at + 1));
            *mask = None;
        }
    }
}

fn push_mask(masked: &mut Vec<Span>, diagnostics: &mut Vec<Diagnostic>, span: Span) {
    masked.push(span);
    diagnostics.push(
        Diagnostic::error(
            codes::TOO_DEEP,
            Span::new(span.start, span.start + 1),
            format!("nesting deeper than {MAX_DEPTH} levels"),
        )
        .with_label("this bracket is nested too deeply; the region it opens was not parsed")
        .with_help("split the value into `let` items"),
    );
}

fn push_long_line(long_lines: &mut Vec<Span>, diagnostics: &mut Vec<Diagnostic>, span: Span) {
    long_lines.push(span);
    diagnostics.push(
        Diagnostic::error(
            codes::TOO_COMPLEX,
            Span::new(span.start, span.start),
            format!("line has more than {MAX_LINE_PARTS} operators, separators and brackets"),
        )
        .with_label("this line was not parsed")
        .with_help("split it over several lines or `let` items"),
    );
}

fn memchr_newline(b: &[u8], from: usize) -> usize {
    b[from..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| from + p)
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}
