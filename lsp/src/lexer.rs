//! A forgiving tokenizer for editor features that must work on any text:
//! completion reads the tokens before the cursor, semantic highlighting all
//! of them. It never fails; unterminated strings and comments end at the end
//! of their line or of the text.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    Ident,
    /// An integer or a duration (`30s`, `1h30m`).
    Number,
    /// A piece of string text, quotes included, between interpolations.
    Str,
    Comment,
    DocComment,
    /// `${` inside a string.
    InterpOpen,
    /// The `}` that closes an interpolation.
    InterpClose,
    /// `==`, `!=`, `&&`, `||`, `??`, `@`, `!`.
    Op,
    /// Any other single character: brackets, `:`, `=`, `,`, `.`, …
    Punct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }
    pub fn is(&self, src: &str, text: &str) -> bool {
        self.end - self.start == text.len() && self.text(src) == text
    }
}

pub struct Lexed {
    pub tokens: Vec<Token>,
    /// The text ends inside string text (not inside an interpolation).
    pub in_string: bool,
    /// The text ends inside a comment.
    pub in_comment: bool,
}

enum Mode {
    /// Code; `depth` counts braces opened inside an interpolation.
    Code { interp: bool, depth: usize },
    /// String text; `from` is where the piece being read began, when that
    /// is before the current position (its opening quotes).
    Str { triple: bool, from: Option<usize> },
}

pub fn lex(src: &str) -> Lexed {
    let b = src.as_bytes();
    let mut tokens = Vec::new();
    let mut modes = vec![Mode::Code {
        interp: false,
        depth: 0,
    }];
    let mut i = 0;
    let push = |tokens: &mut Vec<Token>, tok, start, end| tokens.push(Token { tok, start, end });
    while i < b.len() {
        match modes.last_mut().expect("the base mode stays") {
            Mode::Str { triple, from } => {
                let triple = *triple;
                let start = from.take().unwrap_or(i);
                let mut closed = false;
                while i < b.len() {
                    if triple && b[i..].starts_with(b"\"\"\"") {
                        i += 3;
                        closed = true;
                        break;
                    }
                    match b[i] {
                        b'"' if !triple => {
                            i += 1;
                            closed = true;
                            break;
                        }
                        b'\n' if !triple => {
                            closed = true;
                            break;
                        }
                        b'\\' => i = (i + 2).min(b.len()),
                        b'$' if b.get(i + 1) == Some(&b'{') => break,
                        _ => i += 1,
                    }
                }
                if i > start {
                    push(&mut tokens, Tok::Str, start, i);
                }
                if closed {
                    modes.pop();
                } else if i < b.len() {
                    push(&mut tokens, Tok::InterpOpen, i, i + 2);
                    i += 2;
                    modes.push(Mode::Code { interp: true, depth: 0 });
                }
            }
            Mode::Code { interp, depth } => {
                let c = b[i];
                let start = i;
                match c {
                    b' ' | b'\t' | b'\r' | b'\n' => i += 1,
                    b'/' if b.get(i + 1) == Some(&b'/') => {
                        let doc = b.get(i + 2) == Some(&b'/');
                        i = src[i..].find('\n').map_or(b.len(), |n| i + n);
                        push(&mut tokens, if doc { Tok::DocComment } else { Tok::Comment }, start, i);
                    }
                    b'/' if b.get(i + 1) == Some(&b'*') => {
                        i = src[i + 2..].find("*/").map_or(b.len(), |n| i + n + 4);
                        push(&mut tokens, Tok::Comment, start, i);
                    }
                    b'"' => {
                        let triple = b[i..].starts_with(b"\"\"\"");
                        // The opening quotes belong to the first piece.
                        modes.push(Mode::Str { triple, from: Some(i) });
                        i += if triple { 3 } else { 1 };
                    }
                    b'}' if *interp && *depth == 0 => {
                        i += 1;
                        push(&mut tokens, Tok::InterpClose, start, i);
                        modes.pop();
                    }
                    b'{' | b'}' => {
                        if c == b'{' {
                            *depth += 1;
                        } else {
                            *depth = depth.saturating_sub(1);
                        }
                        i += 1;
                        push(&mut tokens, Tok::Punct, start, i);
                    }
                    b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                            i += 1;
                        }
                        push(&mut tokens, Tok::Ident, start, i);
                    }
                    b'0'..=b'9' => {
                        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                            i += 1;
                        }
                        push(&mut tokens, Tok::Number, start, i);
                    }
                    _ => {
                        let two = &b[i..(i + 2).min(b.len())];
                        let op = matches!(two, b"==" | b"!=" | b"<=" | b">=" | b"&&" | b"||" | b"??");
                        i += if op {
                            2
                        } else {
                            src[i..].chars().next().map_or(1, char::len_utf8)
                        };
                        let tok = if op || matches!(c, b'@' | b'!' | b'<' | b'>') {
                            Tok::Op
                        } else {
                            Tok::Punct
                        };
                        push(&mut tokens, tok, start, i);
                    }
                }
            }
        }
    }
    let in_string = matches!(modes.last(), Some(Mode::Str { .. }));
    let in_comment = tokens.last().is_some_and(|t| {
        let text = t.text(src);
        matches!(t.tok, Tok::Comment | Tok::DocComment)
            && t.end == src.len()
            && (text.starts_with("//") || text.len() < 4 || !text.ends_with("*/"))
    });
    Lexed {
        tokens,
        in_string,
        in_comment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Tok, &str)> {
        lex(src).tokens.iter().map(|t| (t.tok, t.text(src))).collect()
    }

    #[test]
    fn strings_with_interpolations() {
        assert_eq!(
            kinds(r#"x: "a ${b.c} d" // note"#),
            vec![
                (Tok::Ident, "x"),
                (Tok::Punct, ":"),
                (Tok::Str, "\"a "),
                (Tok::InterpOpen, "${"),
                (Tok::Ident, "b"),
                (Tok::Punct, "."),
                (Tok::Ident, "c"),
                (Tok::InterpClose, "}"),
                (Tok::Str, " d\""),
                (Tok::Comment, "// note"),
            ]
        );
    }

    #[test]
    fn maps_inside_interpolations_and_open_ends() {
        let l = lex(r#"m: "${ {a: 1}.a }"#);
        assert!(l.in_string);
        assert_eq!(l.tokens.iter().filter(|t| t.tok == Tok::InterpClose).count(), 1);
        assert!(lex("a // b").in_comment);
        assert!(lex("a /* b").in_comment);
        assert!(!lex("a /* b */").in_comment);
        assert!(!lex("\"open\nnext").in_string);
        assert_eq!(
            kinds("1h30m == 2"),
            vec![(Tok::Number, "1h30m"), (Tok::Op, "=="), (Tok::Number, "2")]
        );
        assert_eq!(
            kinds("\"\"\"a\n${x}\"\"\""),
            vec![
                (Tok::Str, "\"\"\"a\n"),
                (Tok::InterpOpen, "${"),
                (Tok::Ident, "x"),
                (Tok::InterpClose, "}"),
                (Tok::Str, "\"\"\""),
            ]
        );
    }
}
