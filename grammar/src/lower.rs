//! Lowering of pest pairs to the spanned AST, and the diagnostics for holes
//! (regions the grammar swallowed) and for literals pest accepts loosely.

use pest::iterators::{Pair, Pairs};
use pest::Parser;

use crate::ast::*;
use crate::diag::{codes, Diagnostic, Span};
use crate::parser::{KflowParser, Rule};

/// Operators, postfixes and `!` in one expression beyond which it is refused
/// (every stage walks expressions recursively).
pub const MAX_EXPR_PARTS: usize = 1_000;

/// Deepest expression tree accepted (nesting plus chained operators).
pub const MAX_TREE_DEPTH: usize = 160;

pub(crate) struct Lower<'s> {
    pub src: &'s str,
    pub placement: Placement,
    pub comments: &'s [Comment],
    pub masked: &'s [Span],
    pub diags: Vec<Diagnostic>,
}

/// Where the pest input sits in the source: the input may be a chunk that
/// starts at `base`, or the source with `[cut, cut + removed)` left out
/// (the middle of a large flow, parsed by other threads).
#[derive(Clone, Copy, Default)]
pub(crate) struct Placement {
    pub base: usize,
    pub cut: Option<(usize, usize)>,
}

impl Placement {
    fn start(&self, p: usize) -> usize {
        match self.cut {
            Some((at, removed)) if p >= at => self.base + p + removed,
            _ => self.base + p,
        }
    }
    /// An end exactly at the cut belongs to the text before it.
    fn end(&self, p: usize) -> usize {
        match self.cut {
            Some((at, removed)) if p > at => self.base + p + removed,
            _ => self.base + p,
        }
    }
}

impl<'s> Lower<'s> {
    /// The source span of a pair, without the whitespace and comments
    /// pest's implicit skipping leaves at the end of rules that end in a
    /// repetition.
    fn span_of(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        let (start, mut end) = (self.placement.start(s.start()), self.placement.end(s.end()));
        let bytes = self.src.as_bytes();
        while end > start {
            if bytes[end - 1].is_ascii_whitespace() {
                end -= 1;
                continue;
            }
            match self.comments.binary_search_by_key(&end, |c| c.span.end) {
                Ok(i) if self.comments[i].span.start >= start => end = self.comments[i].span.start,
                _ => break,
            }
        }
        Span::new(start, end)
    }

    fn atomic_span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.placement.start(s.start()), self.placement.end(s.end()))
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.atomic_span(&p),
        }
    }

    /// The items of a chunk of a flow body.
    pub fn chunk(&mut self, pair: Pair<Rule>) -> Vec<Item> {
        let mut items = Vec::new();
        for p in pair.into_inner() {
            if p.as_rule() != Rule::EOI {
                self.item(p, &mut items);
            }
        }
        items
    }

    pub fn file(&mut self, pair: Pair<Rule>) -> File {
        let mut file = File::default();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::import_item => {
                    let span = self.span_of(&p);
                    let s = p.into_inner().find(|x| x.as_rule() == Rule::string);
                    if let Some(s) = s {
                        file.imports.push(Import {
                            path: self.expr_primary(s),
                            span,
                        });
                    }
                }
                Rule::flow_decl => file.flows.push(self.flow(p)),
                Rule::top_hole => self.hole(&p, HoleAt::Top),
                _ => {}
            }
        }
        file
    }

    fn flow(&mut self, pair: Pair<Rule>) -> Flow {
        let span = self.span_of(&pair);
        let mut inner = pair.into_inner();
        let _kw = inner.next();
        let name = self.ident(inner.next().expect("grammar: flow name"));
        let mut items = Vec::new();
        for p in inner {
            match p.as_rule() {
                Rule::unclosed => self.unclosed(name.span, "flow"),
                Rule::rbrace => {}
                _ => self.item(p, &mut items),
            }
        }
        Flow {
            doc: self.doc_before(span.start),
            name,
            items,
            span,
        }
    }

    fn unclosed(&mut self, at: Span, what: &str) {
        self.diags.push(
            Diagnostic::error(codes::UNCLOSED, at, format!("this {what} is never closed"))
                .with_label(format!("the {what} opened here has no closing `}}`"))
                .with_help("add the missing `}`"),
        );
    }

    fn block(&mut self, pair: Pair<Rule>, what: &str, at: Span) -> Block {
        let span = self.span_of(&pair);
        let mut items = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::unclosed => self.unclosed(at, what),
                Rule::rbrace => {}
                _ => self.item(p, &mut items),
            }
        }
        Block { items, span }
    }

    fn item(&mut self, p: Pair<Rule>, items: &mut Vec<Item>) {
        let span = self.span_of(&p);
        let rule = p.as_rule();
        if rule == Rule::item_hole {
            let name = hole_declared_name(p.as_str(), span.start);
            self.hole(&p, HoleAt::Item);
            items.push(Item::Error(ErrorItem { name, span }));
            return;
        }
        let doc = self.doc_before(span.start);
        let mut inner = p.into_inner();
        let kw = inner.next().expect("grammar: item keyword");
        let item = match rule {
            Rule::on_item => {
                let trigger = self.ident(inner.next().expect("grammar: trigger"));
                let arg = self.value(inner.next().expect("grammar: trigger argument"));
                let body = inner
                    .next()
                    .map(|open| self.body(open, inner, "trigger body", span.end));
                let span = match &body {
                    Some(b) if !b.closed => Span::new(span.start, b.span.end),
                    _ => span,
                };
                Item::On(On {
                    trigger,
                    arg,
                    body,
                    span,
                })
            }
            Rule::concurrency_item => {
                let keyword = self.span_of(&kw);
                let open = inner.next().expect("grammar: concurrency body");
                let body = self.body(open, inner, "concurrency body", span.end);
                let span = if body.closed {
                    span
                } else {
                    Span::new(span.start, body.span.end)
                };
                Item::Concurrency(Concurrency { keyword, body, span })
            }
            Rule::input_item => {
                let name = self.ident(inner.next().expect("grammar: input name"));
                let ty = self.type_expr(inner.next().expect("grammar: input type"));
                let default = inner.next().map(|e| self.value(e));
                Item::Input(Input {
                    doc,
                    name,
                    ty,
                    default,
                    span,
                })
            }
            Rule::secret_item => {
                let name = self.ident(inner.next().expect("grammar: secret name"));
                let value = self.value(inner.next().expect("grammar: secret value"));
                Item::Secret(Secret { doc, name, value, span })
            }
            Rule::let_item => {
                let name = self.ident(inner.next().expect("grammar: let name"));
                let mut next = inner.next().expect("grammar: let value");
                let ty = if next.as_rule() == Rule::type_expr {
                    let t = self.type_expr(next);
                    next = inner.next().expect("grammar: let value");
                    Some(t)
                } else {
                    None
                };
                let value = self.value(next);
                Item::Let(Let {
                    doc,
                    name,
                    ty,
                    value,
                    span,
                })
            }
            Rule::output_item => {
                let name = self.ident(inner.next().expect("grammar: output name"));
                let value = self.value(inner.next().expect("grammar: output value"));
                Item::Output(Output { doc, name, value, span })
            }
            Rule::assert_item => {
                let cond = self.value(inner.next().expect("grammar: assert condition"));
                let message = inner.next().map(|e| self.value(e));
                Item::Assert(Assert { cond, message, span })
            }
            Rule::task_item => Item::Task(self.task(inner, doc, span)),
            Rule::try_item => {
                let keyword = self.span_of(&kw);
                let body = self.block(inner.next().expect("grammar: try block"), "try block", keyword);
                let (mut catch, mut finally) = (None, None);
                for clause in inner {
                    let rule = clause.as_rule();
                    let mut c = clause.into_inner();
                    let ckw = self.span_of(&c.next().expect("grammar: clause keyword"));
                    let block = c.next().expect("grammar: clause block");
                    if rule == Rule::catch_clause {
                        catch = Some(self.block(block, "catch block", ckw));
                    } else {
                        finally = Some(self.block(block, "finally block", ckw));
                    }
                }
                Item::Try(Try {
                    body,
                    catch,
                    finally,
                    keyword,
                    span,
                })
            }
            Rule::for_item => {
                let var = self.ident(inner.next().expect("grammar: loop variable"));
                let _in = inner.next();
                let iter = self.value(inner.next().expect("grammar: loop list"));
                let body = self.block(
                    inner.next().expect("grammar: loop body"),
                    "for block",
                    self.span_of(&kw),
                );
                Item::For(For { var, iter, body, span })
            }
            r => unreachable!("grammar: unexpected item rule {r:?}"),
        };
        items.push(item);
    }

    fn task(&mut self, mut inner: Pairs<Rule>, doc: Option<String>, span: Span) -> Task {
        let name = self.ident(inner.next().expect("grammar: task name"));
        let kind = self.ident(inner.next().expect("grammar: task kind"));
        let (props, closed) = self.props(inner, kind.span, "task body");
        let body_end = if closed {
            span.end
        } else {
            props.last().map_or(kind.span.end, |p| p.span.end)
        };
        let open = self.src[kind.span.end..]
            .find('{')
            .map_or(kind.span.end, |o| kind.span.end + o);
        let span = if closed { span } else { Span::new(span.start, body_end) };
        Task {
            doc,
            name,
            kind,
            props,
            body: Span::new(open, span.end),
            closed,
            span,
        }
    }

    /// The `{ … }` of a trigger or of `concurrency`, from its opening brace
    /// to the end of its item (`item_end`) when closed.
    fn body(&mut self, open: Pair<Rule>, rest: Pairs<Rule>, what: &str, item_end: usize) -> Body {
        let open = self.span_of(&open);
        let (props, closed) = self.props(rest, open, what);
        let end = if closed {
            item_end
        } else {
            props.last().map_or(open.end, |p| p.span.end)
        };
        Body {
            props,
            span: Span::new(open.start, end),
            closed,
        }
    }

    /// The properties of a body, and whether it was closed; `opener` is what
    /// an unclosed body is reported at.
    fn props(&mut self, inner: Pairs<Rule>, opener: Span, what: &str) -> (Vec<Property>, bool) {
        let mut props: Vec<Property> = Vec::new();
        let mut closed = true;
        for p in inner {
            match p.as_rule() {
                Rule::property => {
                    let pspan = self.span_of(&p);
                    if let Some(prev) = props.last() {
                        self.check_separator(prev.span, pspan);
                    }
                    let mut pi = p.into_inner();
                    let pname = self.ident(pi.next().expect("grammar: property name"));
                    let value = Some(self.value(pi.next().expect("grammar: property value")));
                    props.push(Property {
                        name: pname,
                        value,
                        span: pspan,
                    });
                }
                Rule::prop_hole => {
                    let pspan = self.span_of(&p);
                    match props.last() {
                        Some(prev) if !self.src[prev.span.end..pspan.start].contains(['\n', ',']) => {
                            let len = first_token_len(p.as_str());
                            self.diags.push(
                                Diagnostic::error(
                                    codes::SYNTAX,
                                    Span::new(pspan.start, pspan.start + len),
                                    format!(
                                        "unexpected `{}` after the value of `{}`",
                                        &p.as_str()[..len],
                                        prev.name.name
                                    ),
                                )
                                .with_label("a property's value ends before this")
                                .with_secondary(prev.span, "this property")
                                .with_help(
                                    "a value is one expression; put the next property on its own line or after a `,`",
                                ),
                            );
                            continue;
                        }
                        _ => self.hole(&p, HoleAt::Property),
                    }
                    // Keep the name when the hole starts with `name:`, so a
                    // broken value is not also reported as a missing property.
                    if let Some(pname) = hole_property_name(p.as_str(), pspan.start) {
                        props.push(Property {
                            name: pname,
                            value: None,
                            span: pspan,
                        });
                    }
                }
                Rule::unclosed_task => {
                    closed = false;
                    self.unclosed(opener, what);
                }
                _ => {}
            }
        }
        (props, closed)
    }

    /// Properties and map entries are separated by a newline or a comma.
    fn check_separator(&mut self, prev: Span, next: Span) {
        let gap = &self.src[prev.end..next.start];
        if !gap.contains('\n') && !gap.contains(',') {
            self.diags.push(
                Diagnostic::error(
                    codes::MISSING_SEPARATOR,
                    Span::new(next.start, next.start),
                    "missing `,` or newline between entries",
                )
                .with_label("a new entry starts here")
                .with_help("put each property on its own line, or separate them with `,`"),
            );
        }
    }

    fn type_expr(&mut self, pair: Pair<Rule>) -> TypeExpr {
        let span = self.span_of(&pair);
        let mut inner = pair.into_inner();
        let atom = inner.next().expect("grammar: type");
        let base = match atom.as_rule() {
            Rule::named_type => TypeExpr::Named(self.ident(atom)),
            Rule::list_type | Rule::map_type => {
                let aspan = self.span_of(&atom);
                let is_list = atom.as_rule() == Rule::list_type;
                let elem = self.type_expr(atom.into_inner().next().expect("grammar: element type"));
                if is_list {
                    TypeExpr::List(Box::new(elem), aspan)
                } else {
                    TypeExpr::Map(Box::new(elem), aspan)
                }
            }
            r => unreachable!("grammar: unexpected type rule {r:?}"),
        };
        if inner.next().is_some() {
            TypeExpr::Optional(Box::new(base), span)
        } else {
            base
        }
    }

    // ------------------------------------------------------------ expressions

    pub fn expr(&mut self, pair: Pair<Rule>) -> Expr {
        debug_assert_eq!(pair.as_rule(), Rule::expr);
        let span = self.span_of(&pair);
        // A region blanked for nesting too deep: already reported, and its
        // emptied brackets mean nothing.
        if self.masked.iter().any(|m| span.start <= m.start && m.start < span.end) {
            return Expr {
                kind: ExprKind::Error,
                span,
            };
        }
        // Children come flat: `op_not* primary postfix*` runs between infix
        // operators (the expression rule is compound-atomic).
        let children = pair.into_inner();
        if children.len() > MAX_EXPR_PARTS {
            return self.too_complex(span);
        }
        let mut operands: Vec<Expr> = Vec::new();
        let mut ops: Vec<BinOp> = Vec::new();
        fn prec(op: BinOp) -> u8 {
            match op {
                BinOp::Or => 1,
                BinOp::And => 2,
                BinOp::Eq | BinOp::Ne => 3,
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 4,
                BinOp::Coalesce => 5,
                BinOp::At => 6,
            }
        }
        fn reduce(operands: &mut Vec<Expr>, op: BinOp) {
            let r = operands.pop().expect("operand");
            let l = operands.pop().expect("operand");
            let span = l.span.to(r.span);
            operands.push(Expr {
                kind: ExprKind::Binary(op, Box::new(l), Box::new(r)),
                span,
            });
        }
        fn negate(mut e: Expr, nots: &mut Vec<Span>) -> Expr {
            while let Some(s) = nots.pop() {
                let span = s.to(e.span);
                e = Expr {
                    kind: ExprKind::Not(Box::new(e)),
                    span,
                };
            }
            e
        }
        let mut nots: Vec<Span> = Vec::new();
        let mut cur: Option<Expr> = None;
        // Shunting-yard, iterative: long operator chains cannot overflow here.
        for p in children {
            let op = match p.as_rule() {
                Rule::op_not => {
                    nots.push(self.atomic_span(&p));
                    continue;
                }
                Rule::field | Rule::call_args => {
                    let base = cur.take().expect("grammar: a postfix follows a primary");
                    cur = Some(self.postfix(base, p));
                    continue;
                }
                Rule::infix => match p.as_str() {
                    "||" => BinOp::Or,
                    "&&" => BinOp::And,
                    "==" => BinOp::Eq,
                    "!=" => BinOp::Ne,
                    "<" => BinOp::Lt,
                    "<=" => BinOp::Le,
                    ">" => BinOp::Gt,
                    ">=" => BinOp::Ge,
                    "??" => BinOp::Coalesce,
                    _ => BinOp::At,
                },
                _ => {
                    cur = Some(self.expr_primary(p));
                    continue;
                }
            };
            let operand = cur.take().expect("grammar: an operator follows an operand");
            operands.push(negate(operand, &mut nots));
            while let Some(&top) = ops.last() {
                if prec(top) >= prec(op) {
                    ops.pop();
                    reduce(&mut operands, top);
                } else {
                    break;
                }
            }
            ops.push(op);
        }
        let last = cur.take().expect("grammar: an expression ends with an operand");
        operands.push(negate(last, &mut nots));
        while let Some(op) = ops.pop() {
            reduce(&mut operands, op);
        }
        operands.pop().expect("an expression has an operand")
    }

    /// A whole value (of a property or an item): an expression whose tree is
    /// not deeper than [`MAX_TREE_DEPTH`], since every later stage walks it
    /// recursively.
    fn value(&mut self, pair: Pair<Rule>) -> Expr {
        let e = self.expr(pair);
        if e.depth() > MAX_TREE_DEPTH {
            return self.too_complex(e.span);
        }
        e
    }

    fn too_complex(&mut self, span: Span) -> Expr {
        self.diags.push(
            Diagnostic::error(
                codes::TOO_COMPLEX,
                Span::new(span.start, span.start + 1),
                "expression too complex: too many operators or nested brackets",
            )
            .with_label("this expression is too long to compile")
            .with_help("split it into `let` items"),
        );
        Expr {
            kind: ExprKind::Error,
            span,
        }
    }

    fn postfix(&mut self, base: Expr, post: Pair<Rule>) -> Expr {
        let span = base.span.to(self.span_of(&post));
        match post.as_rule() {
            Rule::field => {
                let name = self.ident(post.into_inner().next().expect("grammar: field name"));
                Expr {
                    kind: ExprKind::Field(Box::new(base), name),
                    span,
                }
            }
            _ => {
                let args = post.into_inner().map(|a| self.expr(a)).collect();
                Expr {
                    kind: ExprKind::Call(Box::new(base), args),
                    span,
                }
            }
        }
    }

    fn expr_primary(&mut self, p: Pair<Rule>) -> Expr {
        let span = self.span_of(&p);
        let kind = match p.as_rule() {
            Rule::ident => ExprKind::Name(p.as_str().to_string()),
            Rule::boolean => ExprKind::Bool(p.as_str() == "true"),
            Rule::int => match p.as_str().parse::<i64>() {
                Ok(v) => ExprKind::Int(v),
                Err(_) => {
                    self.diags.push(
                        Diagnostic::error(codes::BAD_NUMBER, span, "integer literal out of range")
                            .with_label("does not fit in a 64-bit signed integer"),
                    );
                    ExprKind::Error
                }
            },
            Rule::duration => match parse_duration(p.as_str()) {
                Some(ms) => ExprKind::Duration(ms),
                None => {
                    self.diags.push(
                        Diagnostic::error(codes::BAD_NUMBER, span, "duration literal out of range")
                            .with_label("too long to represent"),
                    );
                    ExprKind::Error
                }
            },
            Rule::string => ExprKind::Str(self.string_parts(p, false)),
            Rule::triple_string => ExprKind::Str(self.string_parts(p, true)),
            Rule::paren => ExprKind::Paren(Box::new(self.expr(p.into_inner().next().expect("grammar: paren")))),
            Rule::list => ExprKind::List(p.into_inner().map(|e| self.expr(e)).collect()),
            Rule::map => {
                let mut entries: Vec<MapEntry> = Vec::new();
                let mut prev: Option<Span> = None;
                for entry in p.into_inner() {
                    let espan = self.span_of(&entry);
                    if let Some(prev) = prev {
                        self.check_separator(prev, espan);
                    }
                    prev = Some(espan);
                    let mut ei = entry.into_inner();
                    let k = ei.next().expect("grammar: map key");
                    let key_span = self.span_of(&k);
                    let quoted = k.as_rule() == Rule::string;
                    let key = if quoted {
                        let parts = self.string_parts(k, false);
                        parts
                            .into_iter()
                            .map(|p| match p {
                                StrPart::Text(t) => t,
                                StrPart::Interp(_) => String::new(),
                            })
                            .collect()
                    } else {
                        k.as_str().to_string()
                    };
                    let value = self.expr(ei.next().expect("grammar: map value"));
                    entries.push(MapEntry {
                        key,
                        key_span,
                        quoted,
                        value,
                    });
                }
                ExprKind::Map(entries)
            }
            r => unreachable!("grammar: unexpected primary {r:?}"),
        };
        Expr { kind, span }
    }

    fn string_parts(&mut self, p: Pair<Rule>, triple: bool) -> Vec<StrPart> {
        let mut parts: Vec<StrPart> = Vec::new();
        let push_text = |parts: &mut Vec<StrPart>, t: &str| match parts.last_mut() {
            Some(StrPart::Text(s)) => s.push_str(t),
            _ => parts.push(StrPart::Text(t.to_string())),
        };
        for x in p.into_inner() {
            match x.as_rule() {
                Rule::str_text | Rule::triple_text => push_text(&mut parts, x.as_str()),
                Rule::escape => match unescape(x.as_str()) {
                    Some(c) => push_text(&mut parts, c.encode_utf8(&mut [0; 4])),
                    None => {
                        self.diags.push(
                            Diagnostic::error(
                                codes::BAD_ESCAPE,
                                self.span_of(&x),
                                format!("unknown escape `{}`", x.as_str()),
                            )
                            .with_label("not a valid escape")
                            .with_help(r#"valid escapes: \" \\ \n \r \t \$ \u{HEX}"#),
                        );
                    }
                },
                Rule::interp => {
                    let e = self.expr(x.into_inner().next().expect("grammar: interpolation"));
                    parts.push(StrPart::Interp(e));
                }
                _ => {}
            }
        }
        if triple {
            dedent(parts)
        } else {
            parts
        }
    }

    // ------------------------------------------------------------ docs and holes

    /// `///` comments directly above `offset` (only whitespace between).
    fn doc_before(&self, offset: usize) -> Option<String> {
        let idx = self.comments.partition_point(|c| c.span.end <= offset);
        let mut lines = Vec::new();
        let mut next_start = offset;
        for c in self.comments[..idx].iter().rev() {
            if c.kind != CommentKind::Doc || !self.src[c.span.end..next_start].trim().is_empty() {
                break;
            }
            lines.push(c.text.strip_prefix(' ').unwrap_or(&c.text).to_string());
            next_start = c.span.start;
        }
        if lines.is_empty() {
            return None;
        }
        lines.reverse();
        Some(lines.join("\n"))
    }

    fn hole(&mut self, p: &Pair<Rule>, at: HoleAt) {
        let span = self.span_of(p);
        if self.masked.iter().any(|m| m.start <= span.end && span.start <= m.end) {
            return; // already reported as too deep
        }
        self.diags.push(hole_diagnostic(p.as_str(), span.start, at));
    }
}

#[derive(Clone, Copy)]
enum HoleAt {
    Top,
    Item,
    Property,
}

/// Explains a hole by parsing its text again with the rule it was meant to
/// match, which yields the furthest position and what was expected there.
fn hole_diagnostic(text: &str, base: usize, at: HoleAt) -> Diagnostic {
    let word: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let (rule, what) = match (at, word.as_str()) {
        (HoleAt::Top, "flow") => (Some(Rule::flow_decl), "flow"),
        (HoleAt::Top, "import") => (Some(Rule::import_item), "import"),
        (HoleAt::Top, _) => (None, "`flow` or `import`"),
        (HoleAt::Item, "task") => (Some(Rule::task_item), "task"),
        (HoleAt::Item, "input") => (Some(Rule::input_item), "input"),
        (HoleAt::Item, "secret") => (Some(Rule::secret_item), "secret"),
        (HoleAt::Item, "let") => (Some(Rule::let_item), "let"),
        (HoleAt::Item, "output") => (Some(Rule::output_item), "output"),
        (HoleAt::Item, "assert") => (Some(Rule::assert_item), "assert"),
        (HoleAt::Item, "on") => (Some(Rule::on_item), "trigger"),
        (HoleAt::Item, "concurrency") => (Some(Rule::concurrency_item), "concurrency block"),
        (HoleAt::Item, "try") => (Some(Rule::try_item), "try block"),
        (HoleAt::Item, "for") => (Some(Rule::for_item), "for loop"),
        (HoleAt::Item, _) => (
            None,
            "an item (`task`, `input`, `secret`, `let`, `output`, `try`, `for`, `assert`, `on`)",
        ),
        (HoleAt::Property, _) => (Some(Rule::property), "property"),
    };
    let Some(rule) = rule else {
        let end = base + first_token_len(text);
        let mut d = Diagnostic::error(codes::SYNTAX, Span::new(base, end), format!("expected {what}"))
            .with_label(format!("unexpected `{}`", &text[..end - base]));
        let keywords = match at {
            HoleAt::Top => crate::keywords::TOP,
            _ => crate::keywords::ITEM,
        };
        let near = keywords
            .iter()
            .filter(|k| !word.is_empty() && strsim_distance(&word, k) <= 1 + k.len() / 4)
            .min_by_key(|k| strsim_distance(&word, k));
        if let Some(k) = near {
            d = d.with_help(format!("did you mean `{k}`?"));
        } else if matches!(at, HoleAt::Item) && text[word.len()..].trim_start().starts_with(':') {
            d = d.with_help("properties belong inside a task body: `task NAME = KIND { … }`");
        }
        return d;
    };
    if let Some(quote) = unterminated_string(text) {
        return Diagnostic::error(
            codes::UNTERMINATED_STRING,
            Span::new(base + quote, base + quote + 1),
            "unterminated string",
        )
        .with_label("this string is never closed")
        .with_help("add the missing `\"` before the end of the line (use `\"\"\"` for text over several lines)");
    }
    pest::set_error_detail(true);
    let result = KflowParser::parse(rule, text);
    pest::set_error_detail(false);
    let (pos, expected) = match result {
        Ok(pairs) => {
            let consumed = pairs.last().map_or(0, |p| p.as_span().end());
            (consumed, Vec::new())
        }
        Err(e) => {
            let mut pos = match e.location {
                pest::error::InputLocation::Pos(p) => p,
                pest::error::InputLocation::Span((s, _)) => s,
            };
            let mut expected: Vec<String> = Vec::new();
            if let Some(attempts) = e.parse_attempts() {
                // pest's own position is exact when it has one; when the
                // rule failed as a whole it reports the start, and the
                // furthest attempt tells where it really broke.
                if pos == 0 {
                    pos = attempts.max_position;
                }
                // Only literal tokens (`=`, `{`, …); character classes and
                // built-in rules are covered by the rule names below.
                for t in attempts.expected_tokens() {
                    let t = t.to_string();
                    if STRUCTURAL.contains(&t.as_str()) {
                        expected.push(format!("`{t}`"));
                    }
                }
            }
            if let pest::error::ErrorVariant::ParsingError { positives, .. } = &e.variant {
                for r in positives {
                    if let Some(n) = rule_name(*r) {
                        expected.push(n.to_string());
                    }
                }
            }
            // `{` also starts a map: when a value is expected, say so only.
            if expected.iter().any(|e| e == "an expression") {
                expected.retain(|e| e != "`{`");
            }
            // Inside a property, "a property" is the rule itself.
            if matches!(at, HoleAt::Property) {
                expected.retain(|e| e != "a property");
            }
            expected.sort();
            expected.dedup();
            (pos, expected)
        }
    };
    // Point at the offending token, not at the whitespace before it.
    let rest = &text[pos.min(text.len())..];
    let skipped = rest.len() - rest.trim_start().len();
    let at_pos = pos + skipped;
    let tok_len = first_token_len(&text[at_pos.min(text.len())..]);
    let found = if at_pos >= text.len() {
        "end of line".to_string()
    } else {
        format!("`{}`", &text[at_pos..at_pos + tok_len])
    };
    let span = Span::new(base + at_pos, base + at_pos + tok_len);
    let message = if expected.is_empty() {
        format!("unexpected {found} in {what}")
    } else {
        format!("expected {} in {what}, found {found}", join_or(&expected))
    };
    let mut d = Diagnostic::error(codes::SYNTAX, span, message).with_label(format!("unexpected {found}"));
    if let Some(h) = hole_help(text, at) {
        d = d.with_help(h);
    }
    d
}

/// Literal tokens worth naming in "expected …" (the rest are covered by rule
/// names, or are whitespace and comment starts).
const STRUCTURAL: &[&str] = &["=", ":", "{", "}", ",", "]", ")", ">", "<", "in"];

/// Offset of the opening quote of a string that does not end on its line.
fn unterminated_string(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut open: Option<usize> = None;
    while i < b.len() {
        match (open, b[i]) {
            (None, b'"') if b[i..].starts_with(b"\"\"\"") => match text[i + 3..].find("\"\"\"") {
                Some(end) => i += end + 6,
                None => return Some(i),
            },
            (None, b'"') => open = Some(i),
            (Some(_), b'\\') => i += 1,
            (Some(_), b'"') => open = None,
            (Some(start), b'\n') => return Some(start),
            _ => {}
        }
        i += 1;
    }
    open
}

fn hole_help(text: &str, at: HoleAt) -> Option<&'static str> {
    let t = text.trim_start();
    let value = t.split_once(':').map(|(_, v)| v.trim_start());
    match at {
        HoleAt::Property if !t.contains(':') || t.split(':').next().is_some_and(|n| n.contains('=')) => {
            Some("a property is written `name: value`")
        }
        HoleAt::Property if value.is_some_and(|v| v.starts_with(['.', '/', '~'])) => {
            Some("text and paths are written in quotes, e.g. `\"./app\"`")
        }
        HoleAt::Property if t.contains("[/") || t.contains(", /") => {
            Some("text and paths are written in quotes, e.g. `[\"/bin/sh\", \"-c\"]`")
        }
        HoleAt::Item if t.starts_with("task") && !t.contains('=') => Some("a task is written `task NAME = KIND { … }`"),
        _ => None,
    }
}

/// Levenshtein distance, for keyword typos (the grammar crate stays free of
/// dependencies beyond pest).
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn rule_name(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::expr => "an expression",
        Rule::ident => "a name",
        Rule::kind => "a task kind such as `docker.build`",
        Rule::type_expr | Rule::named_type => "a type",
        Rule::string | Rule::triple_string => "a string",
        Rule::property => "a property",
        Rule::block => "a block `{ … }`",
        Rule::kw_in => "`in`",
        Rule::rbrace | Rule::unclosed_task => "`}`",
        Rule::map_entry => "a map entry",
        Rule::infix => "an operator",
        Rule::field => "`.`",
        Rule::call_args => "`(`",
        _ => return None,
    })
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// Length of the token at the start of `text`: a word, or one character.
fn first_token_len(text: &str) -> usize {
    let word = text
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(text.len(), |(i, _)| i);
    if word > 0 {
        word.min(80)
    } else {
        text.chars().next().map_or(0, char::len_utf8)
    }
}

/// `task NAME …`, `let NAME …` etc.: the name a broken item meant to declare.
fn hole_declared_name(text: &str, base: usize) -> Option<Ident> {
    let word_end = text.find(|c: char| !c.is_ascii_alphanumeric() && c != '_')?;
    if !crate::keywords::DECLARING.contains(&&text[..word_end]) {
        return None;
    }
    let rest = &text[word_end..];
    let trimmed = rest.trim_start_matches([' ', '\t']);
    let start = word_end + (rest.len() - trimmed.len());
    let len = trimmed
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(trimmed.len());
    if len == 0 || start == word_end || trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(Ident {
        name: trimmed[..len].to_string(),
        span: Span::new(base + start, base + start + len),
    })
}

/// `name:` (or the mistaken `name =`) at the start of a broken property.
fn hole_property_name(text: &str, base: usize) -> Option<Ident> {
    let len = text.find(|c: char| !c.is_ascii_alphanumeric() && c != '_')?;
    if len == 0 || !text[len..].trim_start().starts_with([':', '=']) {
        return None;
    }
    Some(Ident {
        name: text[..len].to_string(),
        span: Span::new(base, base + len),
    })
}

fn unescape(s: &str) -> Option<char> {
    let body = &s[1..];
    Some(match body {
        "n" => '\n',
        "t" => '\t',
        "r" => '\r',
        "\\" => '\\',
        "\"" => '"',
        "$" => '$',
        "0" => '\0',
        _ => {
            let hex = body.strip_prefix("u{")?.strip_suffix('}')?;
            if hex.is_empty() || hex.len() > 6 {
                return None;
            }
            char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
        }
    })
}

/// `1h30m` → milliseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (mult, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            let m = match rest.as_bytes().first()? {
                b's' => 1_000,
                b'm' => 60_000,
                b'h' => 3_600_000,
                b'd' => 86_400_000,
                _ => return None,
            };
            (m, 1)
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

/// Trims a `"""` string like Kotlin's `trimIndent`: the first and last lines
/// go when blank, and the indentation common to all non-blank lines is removed.
fn dedent(parts: Vec<StrPart>) -> Vec<StrPart> {
    const MARK: char = '\u{0}';
    let mut text = String::new();
    let mut interps = Vec::new();
    for p in parts {
        match p {
            StrPart::Text(t) => text.push_str(&t),
            StrPart::Interp(e) => {
                text.push(MARK);
                interps.push(e);
            }
        }
    }
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.len() > 1 && lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    if lines.len() > 1 && lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    let body: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.len() >= indent {
                &l[indent..]
            } else {
                l.trim_start()
            }
        })
        .collect();
    let joined = body.join("\n");
    let mut out = Vec::new();
    let mut interps = interps.into_iter();
    for (i, chunk) in joined.split(MARK).enumerate() {
        if i > 0 {
            if let Some(e) = interps.next() {
                out.push(StrPart::Interp(e));
            }
        }
        if !chunk.is_empty() {
            out.push(StrPart::Text(chunk.to_string()));
        }
    }
    out
}
