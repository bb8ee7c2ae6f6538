//! The formatter: one canonical layout for `.kflow` files.
//!
//! Two-space indentation; one item per line; blank lines between items kept
//! (at most one); a task, list or map stays on one line when it fits in
//! [`WIDTH`] columns and holds no comments, otherwise one entry per line.
//! Strings, numbers and durations are written as in the source. Comments stay
//! attached to the item, property or entry they precede, or trail the line
//! they ended. Files with syntax errors are not formatted.

use kflow_grammar::ast::{self, Comment, CommentKind, Expr, ExprKind, Item, TypeExpr};
use kflow_grammar::diag::{Diagnostic, Span};

pub const WIDTH: usize = 100;
/// A task fits on one line with at most this many properties and columns.
const MAX_INLINE_PROPS: usize = 3;
const TASK_INLINE_WIDTH: usize = 80;

/// Formats a file; `Err` holds the syntax errors that prevent it.
pub fn format(src: &str) -> Result<String, Vec<Diagnostic>> {
    let (file, diags) = kflow_grammar::parse(src);
    let errors: Vec<Diagnostic> = diags
        .into_iter()
        .filter(|d| d.code.starts_with("kflow::parse::"))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut f = Fmt {
        src,
        comments: &file.comments,
        next: 0,
        out: String::with_capacity(src.len() + src.len() / 8),
        indent: 0,
        prev_end: 0,
        at_block_start: true,
    };
    let mut tops: Vec<(Span, Top)> = file.imports.iter().map(|i| (i.span, Top::Import(i))).collect();
    tops.extend(file.flows.iter().map(|fl| (fl.span, Top::Flow(fl))));
    tops.sort_by_key(|(s, _)| s.start);
    for (span, top) in tops {
        f.anchor(span.start);
        match top {
            Top::Import(i) => {
                f.out.push_str("import ");
                f.expr(&i.path);
            }
            Top::Flow(flow) => {
                f.out.push_str(&format!("flow {} {{", flow.name.name));
                f.trailing(
                    flow.name.span.end,
                    flow.items.first().map_or(flow.span.end, |i| i.span().start),
                );
                f.block_items(&flow.items, flow.span.end);
                f.out.push('}');
            }
        }
        f.prev_end = span.end;
        f.trailing(span.end, src.len());
    }
    f.flush_before(src.len(), true);
    let mut out = f.out.trim_start_matches('\n').trim_end().to_string();
    out.push('\n');
    Ok(out)
}

enum Top<'a> {
    Import(&'a ast::Import),
    Flow(&'a ast::Flow),
}

struct Fmt<'a> {
    src: &'a str,
    comments: &'a [Comment],
    /// Index of the first comment not yet written.
    next: usize,
    out: String,
    indent: usize,
    /// End of the last thing written, in the source.
    prev_end: usize,
    at_block_start: bool,
}

impl Fmt<'_> {
    fn newline(&mut self) {
        while self.out.ends_with(' ') {
            self.out.pop();
        }
        self.out.push('\n');
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
    }

    fn column(&self) -> usize {
        let line_start = self.out.rfind('\n').map_or(0, |i| i + 1);
        self.out[line_start..].chars().count()
    }

    /// Whether the source has a blank line between `from` and `to`.
    fn blank_between(&self, from: usize, to: usize) -> bool {
        from < to && self.src[from..to].matches('\n').count() >= 2
    }

    /// Starts a new line for something at source offset `start`: writes the
    /// comments before it, and one blank line where the source had any.
    fn anchor(&mut self, start: usize) {
        self.flush_before(start, false);
        if !self.at_block_start && self.blank_between(self.prev_end, start) {
            self.out.push('\n');
        }
        self.newline();
        self.at_block_start = false;
    }

    /// Writes the comments that start before `offset`, each on its own line.
    fn flush_before(&mut self, offset: usize, closing: bool) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= offset {
                break;
            }
            self.next += 1;
            if !self.at_block_start && self.blank_between(self.prev_end, c.span.start) {
                self.out.push('\n');
            }
            self.newline();
            self.out.push_str(&comment_text(self.src, c));
            self.prev_end = c.span.end;
            self.at_block_start = false;
        }
        if closing {
            self.at_block_start = false;
        }
    }

    /// A comment on the same source line after `end` (and before `limit`)
    /// trails the line just written.
    fn trailing(&mut self, end: usize, limit: usize) {
        if let Some(c) = self.comments.get(self.next) {
            if c.span.start >= end && c.span.start < limit.max(end) && !self.src[end..c.span.start].contains('\n') {
                self.next += 1;
                self.out.push(' ');
                self.out.push_str(&comment_text(self.src, c));
                self.prev_end = c.span.end;
            }
        }
    }

    fn has_comment_in(&self, span: Span) -> bool {
        let i = self.comments.partition_point(|c| c.span.start < span.start);
        self.comments.get(i).is_some_and(|c| c.span.start < span.end)
    }

    /// The items of a block, then the comments before its closing brace.
    fn block_items(&mut self, items: &[Item], close: usize) {
        self.indent += 1;
        self.at_block_start = true;
        for item in items {
            self.item(item);
        }
        // `close` is the end of the block; its `}` is the last byte.
        self.flush_before(close.saturating_sub(1), true);
        self.indent -= 1;
        self.newline();
        self.prev_end = close;
    }

    fn item(&mut self, item: &Item) {
        let span = item.span();
        self.anchor(span.start);
        match item {
            Item::On(o) => match &o.body {
                None => {
                    self.out.push_str(&format!("on {} ", o.trigger.name));
                    self.expr(&o.arg);
                }
                Some(b) => {
                    let arg = self
                        .inline(&o.arg)
                        .unwrap_or_else(|| self.src[o.arg.span.start..o.arg.span.end].to_string());
                    let header = format!("on {} {arg} {{", o.trigger.name);
                    self.body(header, o.arg.span.end, &b.props, b.span, o.span.end);
                }
            },
            Item::Concurrency(c) => self.body(
                "concurrency {".to_string(),
                c.keyword.end,
                &c.body.props,
                c.body.span,
                c.span.end,
            ),
            Item::Input(i) => {
                self.out
                    .push_str(&format!("input {}: {}", i.name.name, type_text(&i.ty)));
                if let Some(d) = &i.default {
                    self.out.push_str(" = ");
                    self.expr(d);
                }
            }
            Item::Secret(s) => {
                self.out.push_str(&format!("secret {} = ", s.name.name));
                self.expr(&s.value);
            }
            Item::Let(l) => {
                self.out.push_str(&format!("let {}", l.name.name));
                if let Some(t) = &l.ty {
                    self.out.push_str(&format!(": {}", type_text(t)));
                }
                self.out.push_str(" = ");
                self.expr(&l.value);
            }
            Item::Output(o) => {
                self.out.push_str(&format!("output {} = ", o.name.name));
                self.expr(&o.value);
            }
            Item::Assert(a) => {
                self.out.push_str("assert ");
                self.expr(&a.cond);
                if let Some(m) = &a.message {
                    self.out.push_str(", ");
                    self.expr(m);
                }
            }
            Item::Task(t) => self.task(t),
            Item::Try(t) => {
                self.out.push_str("try {");
                self.trailing(
                    t.keyword.end,
                    t.body.items.first().map_or(t.body.span.end, |i| i.span().start),
                );
                self.block_items(&t.body.items, t.body.span.end);
                self.out.push('}');
                for (kw, block) in [("catch", &t.catch), ("finally", &t.finally)] {
                    if let Some(b) = block {
                        self.out.push_str(&format!(" {kw} {{"));
                        self.trailing(b.span.start + 1, b.items.first().map_or(b.span.end, |i| i.span().start));
                        self.block_items(&b.items, b.span.end);
                        self.out.push('}');
                    }
                }
            }
            Item::For(fl) => {
                self.out.push_str(&format!("for {} in ", fl.var.name));
                self.expr(&fl.iter);
                self.out.push_str(" {");
                self.trailing(
                    fl.body.span.start + 1,
                    fl.body.items.first().map_or(fl.body.span.end, |i| i.span().start),
                );
                self.block_items(&fl.body.items, fl.body.span.end);
                self.out.push('}');
            }
            Item::Error(e) => self.out.push_str(self.src[e.span.start..e.span.end].trim()),
        }
        self.prev_end = span.end;
        self.trailing(span.end, self.src.len());
    }

    fn task(&mut self, t: &ast::Task) {
        let header = format!("task {} = {} {{", t.name.name, t.kind.name);
        self.body(header, t.kind.span.end, &t.props, t.body, t.span.end);
    }

    /// A `{ name: value, … }` body after `header` (which ends with `{` and
    /// stands for the source up to `header_end`): on one line when short and
    /// free of comments, else one property a line.
    fn body(&mut self, header: String, header_end: usize, props: &[ast::Property], body: Span, end: usize) {
        if props.is_empty() && !self.has_comment_in(body) {
            self.out.push_str(&header);
            self.out.push('}');
            return;
        }
        let inline = (props.len() <= MAX_INLINE_PROPS && !self.has_comment_in(body))
            .then(|| {
                let props: Option<Vec<String>> = props
                    .iter()
                    .map(|p| Some(format!("{}: {}", p.name.name, self.inline(p.value.as_ref()?)?)))
                    .collect();
                props.map(|ps| format!("{header} {} }}", ps.join(", ")))
            })
            .flatten()
            .filter(|s| self.column() + s.chars().count() <= TASK_INLINE_WIDTH && !s.contains('\n'));
        if let Some(line) = inline {
            self.out.push_str(&line);
            return;
        }
        self.out.push_str(&header);
        self.trailing(header_end, props.first().map_or(end, |p| p.span.start));
        self.indent += 1;
        self.at_block_start = true;
        for p in props {
            self.anchor(p.span.start);
            self.out.push_str(&p.name.name);
            self.out.push_str(": ");
            match &p.value {
                Some(v) => self.expr(v),
                None => self.out.push_str(
                    self.src[p.span.start..p.span.end]
                        .split_once(':')
                        .map_or("", |(_, v)| v.trim()),
                ),
            }
            self.prev_end = p.span.end;
            let limit = props
                .iter()
                .find(|q| q.span.start > p.span.start)
                .map_or(end, |q| q.span.start);
            self.trailing(p.span.end, limit);
        }
        self.flush_before(end.saturating_sub(1), true);
        self.indent -= 1;
        self.newline();
        self.out.push('}');
    }

    /// The one-line form of an expression, or `None` when it holds comments.
    fn inline(&self, e: &Expr) -> Option<String> {
        if self.has_comment_in(e.span) {
            return None;
        }
        let mut s = String::new();
        self.write_inline(e, &mut s);
        Some(s)
    }

    fn write_inline(&self, e: &Expr, s: &mut String) {
        let raw = &self.src[e.span.start..e.span.end];
        match &e.kind {
            ExprKind::Str(_)
            | ExprKind::Int(_)
            | ExprKind::Bool(_)
            | ExprKind::Duration(_)
            | ExprKind::Name(_)
            | ExprKind::Error => s.push_str(raw),
            ExprKind::Field(base, f) => {
                self.write_inline(base, s);
                s.push('.');
                s.push_str(&f.name);
            }
            ExprKind::Call(callee, args) => {
                self.write_inline(callee, s);
                s.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    self.write_inline(a, s);
                }
                s.push(')');
            }
            ExprKind::List(items) => {
                s.push('[');
                for (i, a) in items.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    self.write_inline(a, s);
                }
                s.push(']');
            }
            ExprKind::Map(entries) => {
                if entries.is_empty() {
                    s.push_str("{}");
                    return;
                }
                s.push_str("{ ");
                for (i, en) in entries.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(&self.src[en.key_span.start..en.key_span.end]);
                    s.push_str(": ");
                    self.write_inline(&en.value, s);
                }
                s.push_str(" }");
            }
            ExprKind::Not(x) => {
                s.push('!');
                self.write_inline(x, s);
            }
            ExprKind::Binary(op, l, r) => {
                self.write_inline(l, s);
                s.push(' ');
                s.push_str(op.symbol());
                s.push(' ');
                self.write_inline(r, s);
            }
            ExprKind::Paren(x) => {
                s.push('(');
                self.write_inline(x, s);
                s.push(')');
            }
        }
    }

    /// Writes an expression at the current position, breaking lists and maps
    /// over lines when they do not fit or hold comments.
    fn expr(&mut self, e: &Expr) {
        if let Some(s) = self.inline(e) {
            let first_line = s.split('\n').next().unwrap_or("");
            if self.column() + first_line.chars().count() <= WIDTH
                || !matches!(e.kind, ExprKind::List(_) | ExprKind::Map(_))
            {
                self.out.push_str(&s);
                return;
            }
        }
        match &e.kind {
            ExprKind::List(items) => {
                self.out.push('[');
                self.entries(e.span, items.iter().map(|x| (x.span, None, x)), true);
                self.out.push(']');
            }
            ExprKind::Map(entries) => {
                self.out.push('{');
                self.entries(
                    e.span,
                    entries
                        .iter()
                        .map(|en| (en.key_span.to(en.value.span), Some(en.key_span), &en.value)),
                    false,
                );
                self.out.push('}');
            }
            _ => {
                // Comments inside a scalar expression move after it.
                let mut s = String::new();
                self.write_inline(e, &mut s);
                self.out.push_str(&s);
            }
        }
    }

    fn entries<'e>(
        &mut self,
        outer: Span,
        entries: impl Iterator<Item = (Span, Option<Span>, &'e Expr)>,
        commas: bool,
    ) {
        let entries: Vec<_> = entries.collect();
        self.indent += 1;
        self.at_block_start = true;
        self.prev_end = outer.start + 1;
        for (i, (span, key, value)) in entries.iter().enumerate() {
            self.anchor(span.start);
            if let Some(k) = key {
                self.out.push_str(&self.src[k.start..k.end]);
                self.out.push_str(": ");
            }
            self.expr(value);
            if commas {
                self.out.push(',');
            }
            self.prev_end = span.end;
            let limit = entries.get(i + 1).map_or(outer.end, |n| n.0.start);
            // A comment after the source's comma still trails this entry.
            let after = self.src[span.end..limit]
                .find(',')
                .map_or(span.end, |c| span.end + c + 1);
            self.trailing(after, limit);
        }
        self.flush_before(outer.end.saturating_sub(1), true);
        self.indent -= 1;
        self.newline();
    }
}

fn comment_text(src: &str, c: &Comment) -> String {
    let raw = &src[c.span.start..c.span.end];
    match c.kind {
        CommentKind::Block => raw.to_string(),
        CommentKind::Line | CommentKind::Doc => raw.trim_end().to_string(),
    }
}

fn type_text(t: &TypeExpr) -> String {
    match t {
        TypeExpr::Named(n) => n.name.clone(),
        TypeExpr::List(t, _) => format!("list<{}>", type_text(t)),
        TypeExpr::Map(t, _) => format!("map<{}>", type_text(t)),
        TypeExpr::Optional(t, _) => format!("{}?", type_text(t)),
    }
}
