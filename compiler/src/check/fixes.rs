//! Machine-applicable fixes that need more than a near-miss replacement:
//! adding missing properties to a task body, and naming the task output that
//! holds the registry digest a `pinned` wants.

use kflow_grammar::ast::{self, Expr};
use kflow_grammar::diag::{Diagnostic, Edit, Fix, Span};

use super::{Checker, SymKind};
use crate::catalog::{self, Prop};
use crate::types::Ty;

impl Checker<'_> {
    /// Adds `entries` (`name: value`) to the body of `t`, in the body's own
    /// layout (one per line, or inline after the last property).
    pub(super) fn insert_props_edit(&self, t: &ast::Task, entries: &[String]) -> Option<Edit> {
        if !t.closed || t.body.len() < 2 {
            return None;
        }
        let body = self.text(t.body);
        let close = t.body.end - 1;
        Some(if body.contains('\n') {
            let line_start = self.src[..close].rfind('\n').map_or(0, |i| i + 1);
            let before_close = &self.src[line_start..close];
            let indent = match t.props.first() {
                Some(p) => {
                    let start = self.src[..p.span.start].rfind('\n').map_or(0, |i| i + 1);
                    leading_space(&self.src[start..p.span.start]).to_string()
                }
                None => format!("{}  ", leading_space(before_close)),
            };
            if before_close.trim().is_empty() {
                let text: String = entries.iter().map(|e| format!("{indent}{e}\n")).collect();
                Edit {
                    span: Span::new(line_start, line_start),
                    text,
                }
            } else {
                let text: String = entries.iter().map(|e| format!("\n{indent}{e}")).collect();
                Edit {
                    span: Span::new(close, close),
                    text: format!("{text}\n"),
                }
            }
        } else {
            let inner = &body[1..body.len() - 1];
            let trimmed = inner.trim_end();
            if trimmed.trim().is_empty() {
                Edit {
                    span: t.body,
                    text: format!("{{ {} }}", entries.join(", ")),
                }
            } else {
                let at = t.body.start + 1 + trimmed.len();
                let sep = if trimmed.ends_with(',') { " " } else { ", " };
                Edit {
                    span: Span::new(at, at),
                    text: format!("{sep}{}", entries.join(", ")),
                }
            }
        })
    }

    /// Adds `missing` to the body of `t` with placeholder values.
    pub(super) fn add_properties_fix(&self, t: &ast::Task, missing: &[&Prop]) -> Option<Fix> {
        let entries: Vec<String> = missing
            .iter()
            .map(|p| format!("{}: {}", p.name, self.placeholder(t, catalog::ty(p.ty))))
            .collect();
        let edit = self.insert_props_edit(t, &entries)?;
        let noun = if missing.len() == 1 { "property" } else { "properties" };
        Some(Fix {
            title: format!(
                "add the missing {noun} {}",
                missing
                    .iter()
                    .map(|p| format!("`{}`", p.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            edits: vec![edit],
        })
    }

    /// `push.pinned` (or `.digest`, as `want` says) of the push or copy whose
    /// digest stands for `e`.
    pub(super) fn digest_read(&self, e: &Expr, want: &Ty) -> Option<String> {
        let out = if want.accepts(&Ty::Pinned) { "pinned" } else { "digest" };
        self.digest_producer(e)
            .map(|p| format!("{}.{out}", self.symbols[p].name))
    }

    /// The push or copy whose digest stands for `e`: one that reads the same
    /// task as `e` (the push of this build), else the nearest one above.
    fn digest_producer(&self, e: &Expr) -> Option<usize> {
        let source = self.task_of(e).map(|(id, _)| id).or_else(|| self.symbol_at(e));
        let producers: Vec<usize> = (0..self.symbols.len())
            .filter(|&i| {
                let s = &self.symbols[i];
                // Not the task `e` is written in: that would be a cycle.
                let holds_e = s.item_span.start <= e.span.start && e.span.end <= s.item_span.end;
                s.kind == SymKind::Task && !holds_e && s.task_kind.is_some_and(|k| k.publishes)
            })
            .collect();
        // The producer's text, since tasks below are not checked yet.
        let reads_source = |p: usize| {
            source.is_some_and(|src| {
                let name = &self.symbols[src].name;
                let text = self.text(self.symbols[p].item_span);
                text.match_indices(name.as_str()).any(|(i, _)| {
                    let before = text[..i].chars().next_back();
                    let after = text[i + name.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') && after == Some('.')
                })
            })
        };
        producers
            .iter()
            .copied()
            .find(|&p| reads_source(p))
            .or_else(|| {
                producers
                    .iter()
                    .copied()
                    .rfind(|&p| self.symbols[p].item_span.start < e.span.start)
            })
            .or_else(|| producers.first().copied())
    }

    /// A value for a missing property: another task's output when one has
    /// the digest-bearing type wanted (a build's `image`, a push's
    /// `pinned`), an empty literal of the type otherwise.
    fn placeholder(&self, t: &ast::Task, ty: &Ty) -> String {
        self.output_fitting(ty, &t.name.name, t.span.start)
            .unwrap_or_else(|| literal(ty))
    }

    /// `task.output` of the task nearest before `before` (else the first one
    /// after), leaving out `except`, whose output has one of the digest-
    /// bearing types `want` accepts, tried in `want`'s order (`image|pinned`
    /// prefers a build's image). Strings fit references too, but are rarely
    /// the value meant, so they are not offered.
    fn output_fitting(&self, want: &Ty, except: &str, before: usize) -> Option<String> {
        let wanted = want
            .alternatives()
            .iter()
            .filter(|t| matches!(t, Ty::Image | Ty::Pinned | Ty::Digest));
        for ty in wanted {
            let (mut last_above, mut first_below) = (None, None);
            for s in &self.symbols {
                if s.kind != SymKind::Task || s.name == except {
                    continue;
                }
                let Some(kind) = s.task_kind else { continue };
                let Some(o) = kind.outputs.iter().find(|o| catalog::ty(o.ty) == ty) else {
                    continue;
                };
                let read = format!("{}.{}", s.name, o.name);
                if s.item_span.start < before {
                    last_above = Some(read);
                } else if first_below.is_none() {
                    first_below = Some(read);
                }
            }
            if let Some(read) = last_above.or(first_below) {
                return Some(read);
            }
        }
        None
    }
}

fn leading_space(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// An empty literal of a type, to be filled in.
fn literal(ty: &Ty) -> String {
    match ty {
        Ty::Int => "0".into(),
        Ty::Bool => "false".into(),
        Ty::Duration => "1m".into(),
        Ty::List(_) => "[]".into(),
        Ty::Map(_) | Ty::Record(_) | Ty::Credentials => "{}".into(),
        Ty::Enum(members) => members.first().cloned().unwrap_or_else(|| "\"\"".into()),
        Ty::Optional(t) => literal(t),
        Ty::Union(ts) => ts.first().map_or_else(|| "\"\"".into(), literal),
        _ => "\"\"".into(),
    }
}

/// Offers `read` (a push's digest-bearing output) in place of `e`.
pub(super) fn with_pinned_fix(d: Diagnostic, e: &Expr, read: Option<String>) -> Diagnostic {
    match read {
        Some(read) => d.with_fix(format!("use `{read}`"), e.span, read),
        None => d,
    }
}
