//! What is at an offset of an analysed text: a declared name or a use of
//! one, a task kind, a property, a task output, a function. Hover, go-to-definition,
//! references and rename start here.

use kflow_compiler::analysis::{Analysis, FlowInfo};
use kflow_compiler::catalog::{self, Kind, Method, Out, Prop};
use kflow_compiler::functions::{self, Function};
use kflow_compiler::grammar::ast::{Expr, ExprKind, Item, StrPart};
use kflow_compiler::triggers::{self, Field as TriggerFieldDecl, TriggerKind};
use kflow_compiler::types::Ty;
use kflow_compiler::Span;

pub enum Target<'a> {
    /// A symbol of a flow, at its declaration or at a use (with the type it
    /// has there).
    Symbol {
        flow: &'a FlowInfo,
        symbol: usize,
        span: Span,
        ty_here: Option<&'a kflow_compiler::types::Ty>,
    },
    Kind {
        kind: &'static Kind,
        span: Span,
    },
    Property {
        kind: Option<&'static Kind>,
        prop: &'static Prop,
        span: Span,
    },
    /// `task.output`; `task` is where the task is declared.
    Output {
        kind: &'static Kind,
        out: &'static Out,
        task: Span,
        span: Span,
    },
    /// A field of a record-typed property (`retry`, `credentials`).
    Field {
        record: &'static str,
        name: String,
        ty: Ty,
        span: Span,
    },
    Method {
        kind: &'static Kind,
        method: &'static Method,
        span: Span,
    },
    /// A built-in function's name where it is called.
    Function {
        function: &'static Function,
        span: Span,
    },
    /// A property of a trigger's or of `concurrency`'s body; `owner` is
    /// `on webhook` or `concurrency`.
    BodyProperty {
        owner: String,
        prop: &'static Prop,
        span: Span,
    },
    /// `trigger.field` in a trigger's `when` or `inputs`.
    TriggerField {
        trigger: &'static TriggerKind,
        field: &'static TriggerFieldDecl,
        span: Span,
    },
}

fn contains(span: Span, offset: usize) -> bool {
    span.start <= offset && offset <= span.end
}

pub fn at(a: &Analysis, offset: usize) -> Option<Target<'_>> {
    for flow in &a.flows {
        if !contains(flow.span, offset) {
            continue;
        }
        if let Some(r) = flow.references.iter().find(|r| contains(r.span, offset)) {
            return Some(Target::Symbol {
                flow,
                symbol: r.symbol,
                span: r.span,
                ty_here: Some(&r.ty),
            });
        }
        if let Some(i) = flow.symbols.iter().position(|s| contains(s.span, offset)) {
            return Some(Target::Symbol {
                flow,
                symbol: i,
                span: flow.symbols[i].span,
                ty_here: None,
            });
        }
    }
    let flow = a.file.flows.iter().find(|f| contains(f.span, offset))?;
    let info = a.flows.iter().find(|f| f.span == flow.span);
    in_items(&flow.items, info, offset)
}

fn in_items<'a>(items: &'a [Item], info: Option<&'a FlowInfo>, offset: usize) -> Option<Target<'a>> {
    for item in items {
        if !contains(item.span(), offset) {
            continue;
        }
        match item {
            Item::Task(t) => {
                let kind = catalog::kind(&t.kind.name);
                if contains(t.kind.span, offset) {
                    return kind.map(|kind| Target::Kind {
                        kind,
                        span: t.kind.span,
                    });
                }
                for p in &t.props {
                    if contains(p.name.span, offset) {
                        let prop = match kind {
                            Some(k) => k.prop(&p.name.name),
                            None => catalog::COMMON.iter().find(|c| c.name == p.name.name),
                        }?;
                        // A common property belongs to every task, not this kind.
                        let common = catalog::COMMON.iter().any(|c| std::ptr::eq(c, prop));
                        return Some(Target::Property {
                            kind: kind.filter(|_| !common),
                            prop,
                            span: p.name.span,
                        });
                    }
                    if let Some(v) = &p.value {
                        if let Some(t) =
                            record_field(kind, &p.name.name, v, offset).or_else(|| in_expr(v, info, offset))
                        {
                            return Some(t);
                        }
                    }
                }
            }
            Item::Try(t) => {
                for block in [Some(&t.body), t.catch.as_ref(), t.finally.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if let Some(found) = in_items(&block.items, info, offset) {
                        return Some(found);
                    }
                }
            }
            Item::For(f) => {
                return in_expr(&f.iter, info, offset).or_else(|| in_items(&f.body.items, info, offset));
            }
            Item::Input(i) => return i.default.as_ref().and_then(|e| in_expr(e, info, offset)),
            Item::Let(l) => return in_expr(&l.value, info, offset),
            Item::Secret(s) => return in_expr(&s.value, info, offset),
            Item::Output(o) => return in_expr(&o.value, info, offset),
            Item::Assert(a) => {
                return in_expr(&a.cond, info, offset)
                    .or_else(|| a.message.as_ref().and_then(|m| in_expr(m, info, offset)));
            }
            Item::On(o) => {
                let kind = triggers::kind(&o.trigger.name)?;
                for p in o.body.iter().flat_map(|b| &b.props) {
                    if contains(p.name.span, offset) {
                        return Some(Target::BodyProperty {
                            owner: format!("on {}", kind.name),
                            prop: kind.prop(&p.name.name)?,
                            span: p.name.span,
                        });
                    }
                    if let Some(v) = p.value.as_ref().filter(|v| contains(v.span, offset)) {
                        return trigger_field(kind, v, offset).or_else(|| in_expr(v, info, offset));
                    }
                }
                return None;
            }
            Item::Concurrency(c) => {
                for p in &c.body.props {
                    if contains(p.name.span, offset) {
                        return Some(Target::BodyProperty {
                            owner: "concurrency".into(),
                            prop: triggers::CONCURRENCY.iter().find(|q| q.name == p.name.name)?,
                            span: p.name.span,
                        });
                    }
                    if let Some(v) = p.value.as_ref().filter(|v| contains(v.span, offset)) {
                        return in_expr(v, info, offset);
                    }
                }
                return None;
            }
            Item::Error(_) => {}
        }
    }
    None
}

/// `trigger.NAME` under the offset, in an expression of a trigger of `kind`.
fn trigger_field(kind: &'static TriggerKind, e: &Expr, offset: usize) -> Option<Target<'static>> {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if !contains(e.span, offset) {
            continue;
        }
        if let ExprKind::Field(base, field) = &e.kind {
            if matches!(&base.kind, ExprKind::Name(n) if n == "trigger") && contains(field.span, offset) {
                let decl = kind.fields.iter().find(|f| f.name == field.name)?;
                return Some(Target::TriggerField {
                    trigger: kind,
                    field: decl,
                    span: field.span,
                });
            }
        }
        stack.extend(children(e));
    }
    None
}

/// A field key of a record literal given to a property (`retry: { attempts: 3 }`).
fn record_field(kind: Option<&'static Kind>, prop: &str, value: &Expr, offset: usize) -> Option<Target<'static>> {
    let ExprKind::Map(entries) = &value.kind else {
        return None;
    };
    let entry = entries.iter().find(|e| contains(e.key_span, offset))?;
    let prop = match kind {
        Some(k) => k.prop(prop),
        None => catalog::COMMON.iter().find(|c| c.name == prop),
    }?;
    let Ty::Record(fields) = catalog::ty(prop.ty) else {
        return None;
    };
    let (name, ty) = fields.iter().find(|(n, _)| *n == entry.key)?;
    Some(Target::Field {
        record: prop.name,
        name: name.clone(),
        ty: ty.clone(),
        span: entry.key_span,
    })
}

/// A task output or method named in `task.field` under the offset.
fn in_expr<'a>(e: &'a Expr, info: Option<&'a FlowInfo>, offset: usize) -> Option<Target<'a>> {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if !contains(e.span, offset) {
            continue;
        }
        match &e.kind {
            ExprKind::Field(base, field) => {
                if contains(field.span, offset) {
                    let ExprKind::Name(task) = &base.kind else { return None };
                    let symbol = info?.symbol(task)?;
                    let kind = symbol.task_kind?;
                    if let Some(out) = kind.output(&field.name) {
                        return Some(Target::Output {
                            kind,
                            out,
                            task: symbol.span,
                            span: field.span,
                        });
                    }
                    let method = kind.methods.iter().find(|m| m.name == field.name)?;
                    return Some(Target::Method {
                        kind,
                        method,
                        span: field.span,
                    });
                }
                stack.push(base);
            }
            ExprKind::Call(callee, _) if contains(callee.span, offset) => {
                let ExprKind::Name(name) = &callee.kind else {
                    stack.push(callee);
                    continue;
                };
                return functions::function(name).map(|function| Target::Function {
                    function,
                    span: callee.span,
                });
            }
            _ => stack.extend(children(e)),
        }
    }
    None
}

pub fn children(e: &Expr) -> Vec<&Expr> {
    match &e.kind {
        ExprKind::Str(parts) => parts
            .iter()
            .filter_map(|p| match p {
                StrPart::Interp(x) => Some(x),
                StrPart::Text(_) => None,
            })
            .collect(),
        ExprKind::Field(x, _) | ExprKind::Not(x) | ExprKind::Paren(x) => vec![x.as_ref()],
        ExprKind::Call(c, args) => std::iter::once(c.as_ref()).chain(args).collect(),
        ExprKind::List(xs) => xs.iter().collect(),
        ExprKind::Map(entries) => entries.iter().map(|en| &en.value).collect(),
        ExprKind::Binary(_, l, r) => vec![l.as_ref(), r.as_ref()],
        _ => Vec::new(),
    }
}

impl Target<'_> {
    /// The text the target was found at.
    pub fn span(&self) -> Span {
        match self {
            Target::Symbol { span, .. }
            | Target::Kind { span, .. }
            | Target::Property { span, .. }
            | Target::Output { span, .. }
            | Target::Field { span, .. }
            | Target::Method { span, .. }
            | Target::Function { span, .. }
            | Target::BodyProperty { span, .. }
            | Target::TriggerField { span, .. } => *span,
        }
    }
}
