//! What the cursor is in, read from the tokens before it, so completion works
//! on text that does not parse: a half-typed task, a dangling `.`, a syntax
//! error elsewhere. Brackets are followed as a stack of frames; each frame
//! knows what it expects (a task's properties, a record's fields, a list's
//! elements), from the task catalog.

use kflow_compiler::catalog;
use kflow_compiler::types::{self, Ty};

use kflow_compiler::grammar::keywords::is_keyword;

use crate::lexer::{lex, Tok, Token};

#[derive(Debug, Clone, PartialEq)]
pub enum Ctx {
    /// Nothing to offer (inside a comment or string text, after a value).
    Nothing,
    /// The start of an item in a flow or block.
    Item,
    /// `task x = |`: a task kind.
    Kind,
    /// `input x: |`: a type.
    Type,
    /// A property name inside the body of a task of this kind.
    Property { kind: String, given: Vec<String> },
    /// A field name inside a record literal (`retry: { | }`).
    Field {
        fields: Vec<(String, Ty)>,
        given: Vec<String>,
    },
    /// A value, of this type when known.
    Value { expected: Option<Ty> },
    /// A task name in `after: [ | ]`.
    AfterTask,
    /// After `a.` or `a.b.`: the names before the dot.
    Member { path: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct Cursor {
    pub ctx: Ctx,
    /// Where the word being typed starts (the cursor when none).
    pub word_start: usize,
    /// The flow the cursor is in.
    pub flow: Option<String>,
    /// The task whose body holds the cursor.
    pub task: Option<String>,
    /// Loop variables in scope.
    pub loop_vars: Vec<String>,
}

#[derive(Debug, Clone)]
enum Frame {
    /// A flow, try/catch/finally or for body (or the file).
    Block {
        flow: Option<String>,
        loop_var: Option<String>,
    },
    Task {
        name: String,
        kind: String,
    },
    /// `{ … }` as a value: a record when its fields are known.
    Map {
        ty: Option<Ty>,
    },
    List {
        elem: Option<Ty>,
        after: bool,
    },
    Paren,
    Interp,
}

struct Level {
    frame: Frame,
    /// Direct children: tokens, and the brackets of each nested group
    /// (its opener, and its closer once closed).
    items: Vec<Token>,
}

/// Whether `word` starts an item, or a `try`'s clause (which ends the
/// bodies before it as an item does).
fn starts_item(word: &str) -> bool {
    use kflow_compiler::grammar::keywords::{ITEM, TOP};
    ITEM.contains(&word) || TOP.contains(&word) || matches!(word, "catch" | "finally")
}

pub fn at(src: &str, pos: usize) -> Cursor {
    let before = &src[..pos];
    let lexed = lex(before);
    let mut tokens = lexed.tokens;
    tokens.retain(|t| !matches!(t.tok, Tok::Comment | Tok::DocComment));
    let word = tokens.last().filter(|t| t.tok == Tok::Ident && t.end == pos).copied();
    let word_start = word.map_or(pos, |w| w.start);
    if word.is_some() {
        tokens.pop();
    }
    let mut levels = vec![Level {
        frame: Frame::Block {
            flow: None,
            loop_var: None,
        },
        items: Vec::new(),
    }];
    for (i, &t) in tokens.iter().enumerate() {
        // An item keyword (not a property named like one) ends the bodies
        // left open before it, as the parser does.
        let item_start =
            t.tok == Tok::Ident && starts_item(t.text(src)) && !tokens.get(i + 1).is_some_and(|n| n.is(src, ":"));
        if item_start {
            while levels.len() > 1 && !matches!(levels.last().map(|l| &l.frame), Some(Frame::Block { .. })) {
                levels.pop();
            }
        }
        open_or_close(src, &mut levels, t);
    }
    let flow = levels.iter().rev().find_map(|l| match &l.frame {
        Frame::Block { flow: Some(f), .. } => Some(f.clone()),
        _ => None,
    });
    let task = levels.iter().rev().find_map(|l| match &l.frame {
        Frame::Task { name, .. } => Some(name.clone()),
        _ => None,
    });
    let loop_vars = levels
        .iter()
        .filter_map(|l| match &l.frame {
            Frame::Block { loop_var, .. } => loop_var.clone(),
            _ => None,
        })
        .collect();
    let mut cursor = Cursor {
        ctx: Ctx::Nothing,
        word_start,
        flow,
        task,
        loop_vars,
    };
    if lexed.in_comment || lexed.in_string {
        return cursor;
    }
    let level = levels.last().expect("the file level stays");
    let items = &level.items;
    // `a.` / `a.b.` (not a dotted task kind).
    if let Some(path) = member_path(src, items) {
        if !matches!(level.frame, Frame::Block { .. }) || kind_start(src, items).is_none() {
            cursor.ctx = Ctx::Member { path };
            return cursor;
        }
    }
    let newline_before = |t: &Token| src[t.end..word_start].contains('\n');
    cursor.ctx = match &level.frame {
        Frame::Block { .. } => {
            if let Some(start) = kind_start(src, items) {
                cursor.word_start = start.min(word_start);
                Ctx::Kind
            } else {
                block_ctx(src, items, newline_before)
            }
        }
        Frame::Task { kind, .. } => match entry_position(src, items, newline_before) {
            Entry::Key => Ctx::Property {
                kind: kind.clone(),
                given: keys(src, items),
            },
            Entry::Value(prop) if prop == "after" => Ctx::AfterTask,
            Entry::Value(prop) => Ctx::Value {
                expected: prop_type(kind, &prop).cloned(),
            },
            Entry::Neither => Ctx::Nothing,
        },
        Frame::Map { ty } => match (entry_position(src, items, newline_before), ty) {
            (Entry::Key, Some(Ty::Record(fields))) => Ctx::Field {
                fields: fields.clone(),
                given: keys(src, items),
            },
            (Entry::Value(key), Some(Ty::Record(fields))) => Ctx::Value {
                expected: fields.iter().find(|(n, _)| *n == key).map(|(_, t)| t.clone()),
            },
            (Entry::Value(_), Some(Ty::Map(t))) => Ctx::Value {
                expected: Some(t.as_ref().clone()),
            },
            (Entry::Value(_), _) => Ctx::Value { expected: None },
            _ => Ctx::Nothing,
        },
        Frame::List { after: true, .. } => Ctx::AfterTask,
        Frame::List { elem, .. } => Ctx::Value { expected: elem.clone() },
        Frame::Paren | Frame::Interp => Ctx::Value { expected: None },
    };
    cursor
}

fn prop_type(kind: &str, prop: &str) -> Option<&'static Ty> {
    let p = match catalog::kind(kind) {
        Some(k) => k.prop(prop),
        None => catalog::COMMON.iter().find(|c| c.name == prop),
    }?;
    Some(catalog::ty(p.ty))
}

/// The type a value written next in this level has, when known.
fn value_type(src: &str, level: &Level) -> Option<Ty> {
    let newline_before = |_: &Token| false;
    match (&level.frame, entry_position(src, &level.items, newline_before)) {
        (Frame::Task { kind, .. }, Entry::Value(prop)) => prop_type(kind, &prop).cloned(),
        (
            Frame::Map {
                ty: Some(Ty::Record(fields)),
            },
            Entry::Value(key),
        ) => fields.iter().find(|(n, _)| *n == key).map(|(_, t)| t.clone()),
        (Frame::Map { ty: Some(Ty::Map(t)) }, Entry::Value(_)) => Some(t.as_ref().clone()),
        (Frame::List { elem, .. }, _) => elem.clone(),
        (Frame::Block { .. }, _) => declared_type(src, &level.items),
        _ => None,
    }
}

/// The type declared by the input or let being written (`input x: T =`),
/// for its default or value.
fn declared_type(src: &str, items: &[Token]) -> Option<Ty> {
    let stmt = statement(src, items);
    let texts: Vec<&str> = stmt.iter().map(|t| t.text(src)).collect();
    match texts.as_slice() {
        ["input" | "let", _, ":", ty @ .., "="] => written_type(ty),
        _ => None,
    }
}

/// A type as written in a declaration, token by token.
fn written_type(words: &[&str]) -> Option<Ty> {
    match words {
        [name] => types::named(name),
        ["list", "<", inner @ .., ">"] => written_type(inner).map(Ty::list),
        ["map", "<", inner @ .., ">"] => written_type(inner).map(|t| Ty::Map(Box::new(t))),
        [inner @ .., "?"] => written_type(inner).map(Ty::optional),
        _ => None,
    }
}

/// The type itself where a `T?` is expected: a value written is a `T`.
fn strip_optional(t: Ty) -> Ty {
    match t {
        Ty::Optional(inner) => *inner,
        t => t,
    }
}

fn open_or_close(src: &str, levels: &mut Vec<Level>, t: Token) {
    let level = levels.last_mut().expect("the file level stays");
    let text = t.text(src);
    let frame = match (t.tok, text) {
        (Tok::Punct, "{") => Some(match &level.frame {
            Frame::Block { .. } => block_opening(src, &level.items),
            _ => Frame::Map {
                ty: value_type(src, level).map(strip_optional),
            },
        }),
        (Tok::Punct, "[") => {
            let after = matches!(&level.frame, Frame::Task { .. })
                && matches!(entry_position(src, &level.items, |_| false), Entry::Value(p) if p == "after");
            let elem = match value_type(src, level).map(strip_optional) {
                Some(Ty::List(e)) => Some(*e),
                _ => None,
            };
            Some(Frame::List { elem, after })
        }
        (Tok::Punct, "(") => Some(Frame::Paren),
        (Tok::InterpOpen, _) => Some(Frame::Interp),
        _ => None,
    };
    if let Some(frame) = frame {
        level.items.push(t);
        levels.push(Level {
            frame,
            items: Vec::new(),
        });
        return;
    }
    let closes = |f: &Frame| match (t.tok, text) {
        (Tok::Punct, "}") => matches!(f, Frame::Block { .. } | Frame::Task { .. } | Frame::Map { .. }),
        (Tok::Punct, "]") => matches!(f, Frame::List { .. }),
        (Tok::Punct, ")") => matches!(f, Frame::Paren),
        (Tok::InterpClose, _) => matches!(f, Frame::Interp),
        _ => false,
    };
    // Close the nearest frame the closer matches (a stray one closes
    // nothing); the parent keeps the closer, so it sees a complete value.
    if let Some(i) = (1..levels.len()).rev().find(|&i| closes(&levels[i].frame)) {
        levels.truncate(i);
    }
    levels.last_mut().expect("the file level stays").items.push(t);
}

/// What a `{` opens in a block: a task body after `task x = kind`, else a
/// nested block (flow, try, catch, finally, for).
fn block_opening(src: &str, items: &[Token]) -> Frame {
    let stmt = statement(src, items);
    let texts: Vec<&str> = stmt.iter().map(|t| t.text(src)).collect();
    match texts.as_slice() {
        ["task", name, "=", kind @ ..] if !kind.is_empty() => Frame::Task {
            name: name.to_string(),
            kind: kind.concat(),
        },
        ["flow", name, ..] => Frame::Block {
            flow: Some(name.to_string()),
            loop_var: None,
        },
        ["for", var, "in", ..] => Frame::Block {
            flow: None,
            loop_var: Some(var.to_string()),
        },
        _ => Frame::Block {
            flow: None,
            loop_var: None,
        },
    }
}

/// The tokens of the item being written in a block: from its keyword on.
fn statement<'t>(src: &str, items: &'t [Token]) -> &'t [Token] {
    let start = items
        .iter()
        .rposition(|t| t.tok == Tok::Ident && starts_item(t.text(src)))
        .unwrap_or(items.len());
    &items[start..]
}

/// Where a task kind written after `task x =` starts (it may be dotted and
/// half typed: `docker.` or `docker.bu`); `usize::MAX` when only the word
/// at the cursor is written of it.
fn kind_start(src: &str, items: &[Token]) -> Option<usize> {
    let stmt = statement(src, items);
    let texts: Vec<&str> = stmt.iter().map(|t| t.text(src)).collect();
    match texts.as_slice() {
        ["task", _, "="] => Some(usize::MAX),
        ["task", _, "=", rest @ ..] => {
            let dotted = rest.iter().enumerate().all(|(i, t)| {
                if i % 2 == 1 {
                    *t == "."
                } else {
                    t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }
            });
            (dotted && rest.last() == Some(&".")).then(|| stmt[3].start)
        }
        _ => None,
    }
}

fn block_ctx(src: &str, items: &[Token], newline_before: impl Fn(&Token) -> bool) -> Ctx {
    let Some(last) = items.last() else {
        return Ctx::Item;
    };
    let last_text = last.text(src);
    let open_end = matches!(last_text, "=" | ":" | "," | "<" | "in" | "assert") || last.tok == Tok::Op;
    if !open_end {
        // After a complete item, a new one starts on a new line.
        return if newline_before(last) { Ctx::Item } else { Ctx::Nothing };
    }
    let stmt = statement(src, items);
    let texts: Vec<&str> = stmt.iter().map(|t| t.text(src)).collect();
    match texts.as_slice() {
        ["input" | "let", _, ":", rest @ ..] if !rest.contains(&"=") => Ctx::Type,
        _ => Ctx::Value {
            expected: declared_type(src, items),
        },
    }
}

enum Entry {
    Key,
    Value(String),
    Neither,
}

/// In a `{ key: value … }` level (a task body or a map): whether the next
/// word is a key or the value of which key.
fn entry_position(src: &str, items: &[Token], newline_before: impl Fn(&Token) -> bool) -> Entry {
    let Some(last) = items.last() else {
        return Entry::Key;
    };
    let current_key = || {
        items.windows(2).rev().find_map(|w| {
            (w[1].is(src, ":") && matches!(w[0].tok, Tok::Ident | Tok::Str))
                .then(|| w[0].text(src).trim_matches('"').to_string())
        })
    };
    match (last.tok, last.text(src)) {
        (Tok::Punct, ",") => Entry::Key,
        (Tok::Punct, ":") | (Tok::Op, _) => current_key().map_or(Entry::Neither, Entry::Value),
        _ if newline_before(last) => Entry::Key,
        _ => Entry::Neither,
    }
}

/// The keys already written in a `{ … }` level.
fn keys(src: &str, items: &[Token]) -> Vec<String> {
    items
        .windows(2)
        .filter(|w| w[1].is(src, ":") && w[0].tok == Tok::Ident)
        .map(|w| w[0].text(src).to_string())
        .collect()
}

/// `a.` or `a.b.` at the end of a level: the names before the last dot.
fn member_path(src: &str, items: &[Token]) -> Option<Vec<String>> {
    let mut path = Vec::new();
    let mut i = items.len();
    while i >= 2 && items[i - 1].is(src, ".") && items[i - 2].tok == Tok::Ident {
        let name = items[i - 2].text(src);
        if is_keyword(name) {
            break;
        }
        path.push(name.to_string());
        i -= 2;
    }
    path.reverse();
    (!path.is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The context at `|`.
    fn ctx(marked: &str) -> (Ctx, Cursor) {
        let pos = marked.find('|').unwrap();
        let src = marked.replace('|', "");
        let c = at(&src, pos);
        (c.ctx.clone(), c)
    }

    #[test]
    fn kinds_properties_and_values() {
        assert_eq!(ctx("flow f {\n  task b = |").0, Ctx::Kind);
        let (c, cur) = ctx("flow f {\n  task b = docker.bu|");
        assert_eq!(c, Ctx::Kind);
        assert_eq!(cur.word_start, "flow f {\n  task b = ".len());
        assert_eq!(
            ctx("flow f {\n  task b = docker.build {\n    con|").0,
            Ctx::Property {
                kind: "docker.build".into(),
                given: vec![]
            }
        );
        assert_eq!(
            ctx("flow f {\n  task b = docker.build { context: \".\", |").0,
            Ctx::Property {
                kind: "docker.build".into(),
                given: vec!["context".into()]
            }
        );
        assert_eq!(
            ctx("flow f {\n  task r = container.run { pull: |").0,
            Ctx::Value {
                expected: Some(Ty::Enum(vec!["never".into(), "missing".into(), "always".into()]))
            }
        );
        assert_eq!(
            ctx("flow f {\n  task r = log { message: \"x\", after: [a, |").0,
            Ctx::AfterTask
        );
        assert_eq!(
            ctx("flow f {\n  task r = log { message: \"${build.|").0,
            Ctx::Member {
                path: vec!["build".into()]
            }
        );
        assert_eq!(
            ctx("flow f {\n  task r = log { message: push.pinned.|").0,
            Ctx::Member {
                path: vec!["push".into(), "pinned".into()]
            }
        );
        assert_eq!(ctx("flow f {\n  input x: |").0, Ctx::Type);
        assert_eq!(ctx("flow f {\n  input x: string\n  |").0, Ctx::Item);
        assert_eq!(
            ctx("flow f {\n  input x: list<severity> = [|").0,
            Ctx::Value {
                expected: Some(Ty::Severity)
            }
        );
        assert_eq!(ctx("flow f {\n  // task x = |").0, Ctx::Nothing);
        assert_eq!(ctx("flow f {\n  task r = log { message: \"ab|").0, Ctx::Nothing);
    }

    #[test]
    fn records_loops_and_broken_text() {
        match ctx("flow f {\n  task r = log { retry: { attempts: 3, back|").0 {
            Ctx::Field { fields, given } => {
                assert!(fields.iter().any(|(n, _)| n == "backoff"));
                assert_eq!(given, vec!["attempts".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let (_, cur) = ctx("flow f {\n  for x in [1] {\n    task t = log { message: |");
        assert_eq!(cur.loop_vars, vec!["x".to_string()]);
        assert_eq!(cur.task.as_deref(), Some("t"));
        assert_eq!(cur.flow.as_deref(), Some("f"));
        // An error above does not hide the context.
        assert_eq!(
            ctx("flow f {\n  task a = docker.build { context: \"x\" ]] }\n  task b = docker.push { image: |").0,
            Ctx::Value {
                expected: Some(Ty::Image)
            }
        );
    }
}
