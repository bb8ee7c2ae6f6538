//! Typing of expressions, bidirectionally: `check` against an expected
//! type, `infer` with an optional hint (which lets bare words be enum values,
//! strings be refs or paths, and map literals be records).

use kflow_grammar::ast::{self, BinOp, Expr, ExprKind, StrPart};
use kflow_grammar::diag::{Diagnostic, Span};

use super::fixes::with_pinned_fix;
use super::{BlockRef, Checker, Reference, SymKind};
use crate::catalog;
use crate::codes;
use crate::functions;
use crate::ir;
use crate::ir::Part;
use crate::literals;
use crate::suggest::{closest, list_and, list_or};
use crate::types::{self, fit, Fit, Ty};

impl<'a> Checker<'a> {
    /// Checks `e` against `want`, reporting a mismatch once.
    pub(super) fn check(&mut self, e: &Expr, want: &Ty) -> ir::Expr {
        self.check_typed(e, want).1
    }

    /// Like [`check`](Self::check), also returning the type `e` had.
    pub(super) fn check_typed(&mut self, e: &Expr, want: &Ty) -> (Ty, ir::Expr) {
        let (ty, ir) = self.infer(e, Some(want));
        match fit(&ty, want) {
            Fit::Yes => {}
            f => {
                let d = self.fit_diag(e, &ty, want, f);
                self.push(d);
            }
        }
        (ty, ir)
    }

    pub(super) fn infer(&mut self, e: &Expr, hint: Option<&Ty>) -> (Ty, ir::Expr) {
        match &e.kind {
            ExprKind::Error => (Ty::Error, ir::Expr::Invalid),
            ExprKind::Int(v) => (Ty::Int, ir::Expr::Int { value: *v }),
            ExprKind::Bool(v) => (Ty::Bool, ir::Expr::Bool { value: *v }),
            ExprKind::Duration(ms) => (Ty::Duration, ir::Expr::Duration { ms: *ms }),
            ExprKind::Paren(x) => self.infer(x, hint),
            ExprKind::Str(parts) => self.string(e, parts, hint),
            ExprKind::Name(n) => self.name(e.span, n, hint),
            ExprKind::Field(base, field) => self.field(e, base, field),
            ExprKind::Call(callee, args) => self.call(e, callee, args),
            ExprKind::List(items) => self.list(items, hint),
            ExprKind::Map(entries) => self.map(e, entries, hint),
            ExprKind::Not(x) => {
                let ir = self.check(x, &Ty::Bool);
                (Ty::Bool, ir::Expr::Not { expr: Box::new(ir) })
            }
            ExprKind::Binary(op, l, r) => self.binary(e, *op, l, r),
        }
    }

    fn string(&mut self, e: &Expr, parts: &[StrPart], hint: Option<&Ty>) -> (Ty, ir::Expr) {
        let mut out = Vec::new();
        for p in parts {
            match p {
                StrPart::Text(t) => out.push(ir::Expr::Str { value: t.clone() }),
                StrPart::Interp(x) => {
                    let (ty, ir) = self.infer(x, None);
                    self.interpolable(x, &ty);
                    out.push(ir);
                }
            }
        }
        let plain = e.as_plain_str();
        let ir = match (plain.as_ref(), out.len()) {
            (Some(s), _) => ir::Expr::Str { value: s.clone() },
            (None, _) => ir::Expr::Interp { parts: out },
        };
        // A string takes the type expected of it when that is a path or a tag
        // reference; literal references are validated now.
        let Some(hint) = hint else {
            return (Ty::String, ir);
        };
        let ty = if hint.accepts(&Ty::String) {
            Ty::String
        } else if hint.accepts(&Ty::Ref) {
            if let Some(s) = &plain {
                if let Err(msg) = literals::tag_ref(s) {
                    self.push(Diagnostic::error(codes::BAD_LITERAL, e.span, msg).with_label("invalid image reference"));
                    return (Ty::Error, ir);
                }
            }
            Ty::Ref
        } else if hint.accepts(&Ty::Path) {
            Ty::Path
        } else {
            Ty::String
        };
        (ty, ir)
    }

    fn interpolable(&mut self, x: &Expr, ty: &Ty) {
        match ty {
            Ty::Secret => {
                let d = Diagnostic::error(codes::SECRET_LEAK, x.span, "a secret cannot be interpolated into a string")
                    .with_label("this is a secret")
                    .with_help("strings end up in logs and outputs; pass the secret to a property typed `secret` (e.g. `env: { TOKEN: token }`)");
                self.push(d);
            }
            Ty::Optional(inner) => {
                let d = self.optional_diag(x, inner);
                self.push(d);
            }
            Ty::List(_) | Ty::Map(_) | Ty::Record(_) | Ty::Outputs(_) | Ty::Task | Ty::Credentials => {
                self.push(
                    Diagnostic::error(
                        codes::MISMATCH,
                        x.span,
                        format!("a `{ty}` cannot be interpolated into a string"),
                    )
                    .with_label(format!("this is a `{ty}`"))
                    .with_help("interpolate strings, numbers, booleans, durations, paths, references and digests"),
                );
            }
            _ if ty.holds_secret() => {
                self.push(
                    Diagnostic::error(
                        codes::SECRET_LEAK,
                        x.span,
                        "a secret cannot be interpolated into a string",
                    )
                    .with_label("this may be a secret"),
                );
            }
            _ => {}
        }
    }

    /// Records a use of a symbol (for the language server and unused lints).
    pub(super) fn use_symbol(&mut self, id: usize, span: Span, ty: Ty) {
        self.symbols[id].used = true;
        self.refs.push(Reference { span, symbol: id, ty });
    }

    fn name(&mut self, span: Span, n: &str, hint: Option<&Ty>) -> (Ty, ir::Expr) {
        // Where an enum is expected, its members win over names.
        if let Some(members) = hint.and_then(Ty::enum_members) {
            if members.contains(&n) {
                return (Ty::Enum(vec![n.to_string()]), ir::Expr::Enum { value: n.to_string() });
            }
        }
        if let Some(r) = self.name_in_trigger(span, n) {
            return r;
        }
        if let Some(&(_, sym)) = self.loop_vars.iter().rev().find(|(_, s)| self.symbols[*s].name == n) {
            let ty = self.symbols[sym].ty.clone();
            self.use_symbol(sym, span, ty.clone());
            return (ty, ir::Expr::LoopVar { name: n.to_string() });
        }
        let Some(&id) = self.names.get(n) else {
            return self.unknown_name(span, n, hint);
        };
        match self.symbols[id].kind {
            SymKind::Input => {
                let ty = self.symbols[id].ty.clone();
                self.use_symbol(id, span, ty.clone());
                (ty, ir::Expr::Input { name: n.to_string() })
            }
            SymKind::Secret => {
                self.use_symbol(id, span, Ty::Secret);
                (Ty::Secret, ir::Expr::Secret { name: n.to_string() })
            }
            SymKind::Let => {
                let (ty, deps) = self.ensure_let(id, span);
                self.use_symbol(id, span, ty.clone());
                self.deps.extend(deps.into_iter().map(|d| (d, ir::DepKind::Data, span)));
                (ty, ir::Expr::Let { name: n.to_string() })
            }
            SymKind::Task => {
                let ty = self.lift(id, self.symbols[id].ty.clone());
                self.use_symbol(id, span, ty.clone());
                self.deps.push((id, ir::DepKind::Data, span));
                (ty, ir::Expr::Task { name: n.to_string() })
            }
            SymKind::LoopVar | SymKind::Broken => {
                self.use_symbol(id, span, Ty::Error);
                (Ty::Error, ir::Expr::Invalid)
            }
        }
    }

    fn unknown_name(&mut self, span: Span, n: &str, hint: Option<&Ty>) -> (Ty, ir::Expr) {
        if let Some(members) = hint.and_then(Ty::enum_members) {
            let mut d = Diagnostic::error(codes::UNKNOWN_NAME, span, format!("unknown value `{n}`"))
                .with_label(format!("expected {}", list_or(&members)));
            if let Some(c) = closest(n, members.iter().copied()) {
                d = d.did_you_mean(span, c);
            }
            self.push(d);
            return (Ty::Error, ir::Expr::Invalid);
        }
        let mut candidates: Vec<&str> = self
            .symbols
            .iter()
            .filter(|s| s.kind != SymKind::LoopVar)
            .map(|s| s.name.as_str())
            .collect();
        candidates.extend(self.loop_vars.iter().map(|(_, s)| self.symbols[*s].name.as_str()));
        if self.symbols.iter().any(|s| s.kind == SymKind::LoopVar && s.name == n) {
            self.push(
                Diagnostic::error(codes::UNKNOWN_NAME, span, format!("`{n}` is not in scope here"))
                    .with_label("a loop variable, outside its loop")
                    .with_help("a loop variable exists only inside its `for` block (a `let` is evaluated once per flow, not per iteration): write the expression where it is used"),
            );
            return (Ty::Error, ir::Expr::Invalid);
        }
        let mut d = Diagnostic::error(codes::UNKNOWN_NAME, span, format!("unknown name `{n}`"))
            .with_label("not declared in this flow");
        d = match closest(n, candidates) {
            Some(c) => d.did_you_mean(span, c),
            None if types::SEVERITIES.contains(&n) || types::ENUM_WORDS.contains(&n) => d.with_help(format!(
                "`{n}` is an enum value, usable only where that enum is expected"
            )),
            None => d.with_help("declare it with `input`, `let`, `secret` or `task`"),
        };
        self.push(d);
        (Ty::Error, ir::Expr::Invalid)
    }

    /// The type of a task's value seen from the current context: a list per
    /// enclosing for-loop the reader is outside of.
    fn lift(&self, id: usize, ty: Ty) -> Ty {
        let loops = self.symbols[id]
            .path
            .iter()
            .filter(|b| matches!(b, BlockRef::For(_)) && !self.path.contains(b))
            .count();
        (0..loops).fold(ty, |t, _| Ty::list(t))
    }

    /// Why a task's outputs are optional where they are read, if they are.
    fn optional_reason(&self, id: usize) -> Option<String> {
        let s = &self.symbols[id];
        if s.continue_on_error {
            return Some(format!(
                "`{}` has `continue_on_error: true`, so it may fail without output",
                s.name
            ));
        }
        for b in &s.path {
            if let BlockRef::Try(scope, part) = *b {
                let reader_in = |p: Part| self.path.contains(&BlockRef::Try(scope, p));
                if part == Part::Try && (reader_in(Part::Catch) || reader_in(Part::Finally)) {
                    return Some(format!(
                        "inside `catch`/`finally`, `{}` (in the `try` block) may not have produced its outputs",
                        s.name
                    ));
                }
                if part == Part::Catch && !reader_in(Part::Catch) {
                    return Some(format!(
                        "`{}` is in a `catch` block, which runs only on failure",
                        s.name
                    ));
                }
            }
        }
        None
    }

    fn field(&mut self, e: &Expr, base: &Expr, field: &ast::Ident) -> (Ty, ir::Expr) {
        // `trigger.field`: in a trigger, or wherever no symbol is named so.
        if let ExprKind::Name(n) = &base.kind {
            if n == "trigger" && (self.trigger.is_some() || !self.names.contains_key("trigger")) {
                return self.trigger_field(e, field);
            }
        }
        // `task.output`
        if let ExprKind::Name(n) = &base.kind {
            let is_loop_var = self.loop_vars.iter().any(|(_, s)| self.symbols[*s].name == *n);
            if let (Some(&id), false) = (self.names.get(n), is_loop_var) {
                if self.symbols[id].kind == SymKind::Task {
                    return self.task_output(e, base.span, id, field);
                }
                if self.symbols[id].kind == SymKind::Broken {
                    self.use_symbol(id, base.span, Ty::Error);
                    return (Ty::Error, ir::Expr::Invalid);
                }
            }
        }
        let (ty, ir) = self.infer(base, None);
        let (inner, optional) = match &ty {
            Ty::Optional(t) => (t.as_ref(), true),
            t => (t, false),
        };
        let out = match (inner, field.name.as_str()) {
            (Ty::Error, _) => Ty::Error,
            // Read when the delivery arrives (absent: the delivery is refused).
            (Ty::Json, _) => Ty::Json,
            (Ty::Pinned, "repo") => Ty::String,
            (Ty::Pinned, "digest") => Ty::Digest,
            _ => {
                let fields: &[&str] = if matches!(inner, Ty::Pinned) {
                    &["repo", "digest"]
                } else {
                    &[]
                };
                let mut d = Diagnostic::error(
                    codes::UNKNOWN_FIELD,
                    field.span,
                    format!("`{ty}` has no field `{}`", field.name),
                )
                .with_label("unknown field");
                d = match closest(&field.name, fields.iter().copied()) {
                    Some(c) => d.did_you_mean(field.span, c),
                    None if fields.is_empty() => d.with_help(format!("a `{ty}` has no fields")),
                    None => d.with_help(format!("fields of `{ty}`: {}", list_and(fields))),
                };
                self.push(d);
                Ty::Error
            }
        };
        let out = if optional { Ty::optional(out) } else { out };
        (
            out,
            ir::Expr::Field {
                base: Box::new(ir),
                field: field.name.clone(),
            },
        )
    }

    fn task_output(&mut self, e: &Expr, name_span: Span, id: usize, field: &ast::Ident) -> (Ty, ir::Expr) {
        let sym = &self.symbols[id];
        let task = sym.name.clone();
        let Some(kind) = sym.task_kind else {
            self.use_symbol(id, name_span, Ty::Error);
            return (Ty::Error, ir::Expr::Invalid);
        };
        let Some(out) = kind.output(&field.name) else {
            self.use_symbol(id, name_span, sym.ty.clone());
            let names: Vec<&str> = kind.all_outputs().map(|o| o.name).collect();
            let mut d = Diagnostic::error(
                codes::UNKNOWN_OUTPUT,
                field.span,
                format!("`{}` has no output `{}`", kind.name, field.name),
            )
            .with_label("unknown output")
            .with_secondary(self.symbols[id].span, format!("`{task}` is a `{}` task", kind.name));
            d = if kind.method(&field.name).is_some() {
                d.with_help(format!(
                    "`{}` is a method: call it, `{task}.{}(…)`",
                    field.name, field.name
                ))
            } else if kind.outputs.is_empty() {
                d.with_help(format!(
                    "`{}` has no outputs but `outcome`; use `after: [{task}]` to wait for it",
                    kind.name
                ))
            } else {
                let listing = format!("its outputs are {}", list_and(&names));
                match closest(&field.name, names.iter().copied()) {
                    Some(c) => d
                        .with_help(format!("did you mean `{c}`? ({listing})"))
                        .with_replacement(field.span, c),
                    None => d.with_help(listing),
                }
            };
            self.push(d);
            return (Ty::Error, ir::Expr::Invalid);
        };
        let ty = if catalog::is_common_output(out.name) {
            // Every run of a task has an outcome: never optional, and
            // reading it waits for the task to end, not to succeed.
            let ty = self.lift(id, catalog::ty(out.ty).clone());
            self.use_symbol(id, name_span, ty.clone());
            self.deps.push((id, ir::DepKind::Outcome, e.span));
            ty
        } else {
            self.read_task(id, name_span, e.span, catalog::ty(out.ty))
        };
        (
            ty,
            ir::Expr::Output {
                task,
                field: field.name.clone(),
            },
        )
    }

    /// Reading a value of type `declared` from task `id` (an output or a
    /// method result): its type where it is read (optional, lifted over
    /// loops), recorded as a use and a data dependency.
    fn read_task(&mut self, id: usize, name_span: Span, read: Span, declared: &Ty) -> Ty {
        let mut ty = declared.clone();
        if self.optional_reason(id).is_some() {
            ty = Ty::optional(ty);
        }
        let ty = self.lift(id, ty);
        self.use_symbol(id, name_span, ty.clone());
        self.deps.push((id, ir::DepKind::Data, read));
        ty
    }

    fn call(&mut self, e: &Expr, callee: &Expr, args: &[Expr]) -> (Ty, ir::Expr) {
        match &callee.kind {
            ExprKind::Name(f) if functions::function(f).is_some() => self.builtin(e, callee, f, args),
            ExprKind::Field(base, m) => {
                if let ExprKind::Name(n) = &base.kind {
                    if let Some(&id) = self.names.get(n) {
                        if let Some(kind) = self.symbols[id].task_kind {
                            if let Some(method) = kind.method(&m.name) {
                                return self.method(e, base.span, id, method, args);
                            }
                            let d = Diagnostic::error(
                                codes::UNKNOWN_FUNCTION,
                                m.span,
                                format!("`{}` has no method `{}`", kind.name, m.name),
                            )
                            .with_label("unknown method");
                            let d = match kind.methods.first() {
                                Some(mm) => d.with_help(format!("`{}` has `{}(…)`", kind.name, mm.name)),
                                None => d.with_help(format!("`{}` has no methods", kind.name)),
                            };
                            self.push(d);
                            self.infer(base, None);
                            return (Ty::Error, ir::Expr::Invalid);
                        }
                    }
                }
                self.infer(callee, None);
                self.not_callable(callee.span)
            }
            ExprKind::Name(f) => {
                let mut d = Diagnostic::error(codes::UNKNOWN_FUNCTION, callee.span, format!("unknown function `{f}`"))
                    .with_label("not a function");
                d = match closest(f, functions::names()) {
                    Some(c) => d.did_you_mean(callee.span, c),
                    None => d.with_help(format!(
                        "functions are {}",
                        list_and(&functions::names().collect::<Vec<_>>())
                    )),
                };
                self.push(d);
                for a in args {
                    self.infer(a, None);
                }
                (Ty::Error, ir::Expr::Invalid)
            }
            _ => self.not_callable(callee.span),
        }
    }

    fn not_callable(&mut self, span: Span) -> (Ty, ir::Expr) {
        self.push(
            Diagnostic::error(codes::UNKNOWN_FUNCTION, span, "this cannot be called")
                .with_label("not a function")
                .with_help(format!(
                    "functions are {}",
                    list_and(&functions::names().collect::<Vec<_>>())
                )),
        );
        (Ty::Error, ir::Expr::Invalid)
    }

    fn arity(&mut self, e: &Expr, f: &str, args: &[Expr], want: usize) -> bool {
        if args.len() == want {
            return true;
        }
        let s = if want == 1 { "" } else { "s" };
        self.push(
            Diagnostic::error(
                codes::WRONG_ARGS,
                e.span,
                format!("`{f}` takes {want} argument{s}, {} given", args.len()),
            )
            .with_label("wrong number of arguments"),
        );
        for a in args {
            self.infer(a, None);
        }
        false
    }

    fn builtin(&mut self, e: &Expr, callee: &Expr, f: &str, args: &[Expr]) -> (Ty, ir::Expr) {
        let want_args = functions::function(f).map_or(0, |f| f.params.len());
        if !self.arity(e, f, args, want_args) {
            return (Ty::Error, ir::Expr::Invalid);
        }
        match f {
            "env" | "file" => {
                if !self.in_secret {
                    self.push(
                        Diagnostic::error(
                            codes::SECRET_SOURCE,
                            callee.span,
                            format!("`{f}(…)` reads a secret and may only be used in a `secret` item"),
                        )
                        .with_label("not in a `secret` item")
                        .with_help(format!(
                            "declare it: `secret name = {}`, then use `name`",
                            self.text(e.span)
                        )),
                    );
                }
                let want = if f == "file" { Ty::Path } else { Ty::String };
                let arg = self.check(&args[0], &want);
                (
                    Ty::Secret,
                    ir::Expr::Call {
                        func: f.to_string(),
                        args: vec![arg],
                    },
                )
            }
            "digest" | "pinned" | "ref" | "helper" => {
                let arg = self.check(&args[0], &Ty::String);
                if let Some(s) = args[0].as_plain_str() {
                    let result = match f {
                        "digest" => literals::digest(&s),
                        "pinned" => literals::pinned(&s),
                        "ref" => literals::tag_ref(&s),
                        _ if s.is_empty() => Err("a credential helper needs a name, e.g. `ecr-login`".into()),
                        _ => Ok(()),
                    };
                    if let Err(msg) = result {
                        self.push(
                            Diagnostic::error(codes::BAD_LITERAL, args[0].span, msg)
                                .with_label(format!("invalid {f}"))
                                .with_help(match f {
                                    "digest" => "a digest is `sha256:` followed by 64 lowercase hex digits",
                                    "pinned" => "a pinned reference is `registry/repository@sha256:<64 hex digits>`",
                                    "ref" => "a reference is `registry/repository:tag`",
                                    _ => "name the helper as in `docker-credential-<name>`",
                                }),
                        );
                        return (Ty::Error, ir::Expr::Invalid);
                    }
                }
                let ty = match f {
                    "digest" => Ty::Digest,
                    "pinned" => Ty::Pinned,
                    "ref" => Ty::Ref,
                    _ => Ty::Credentials,
                };
                (
                    ty,
                    ir::Expr::Call {
                        func: f.to_string(),
                        args: vec![arg],
                    },
                )
            }
            "lines" | "split" | "trim" => {
                let args: Vec<ir::Expr> = args.iter().map(|a| self.check(a, &Ty::String)).collect();
                if f == "split" && args[1] == (ir::Expr::Str { value: String::new() }) {
                    self.push(
                        Diagnostic::error(
                            codes::BAD_LITERAL,
                            e.span,
                            "`split` needs a separator that is not empty",
                        )
                        .with_label("empty separator")
                        .with_help("to take a text apart line by line, use `lines(text)`"),
                    );
                }
                let ty = if f == "trim" { Ty::String } else { Ty::list(Ty::String) };
                (
                    ty,
                    ir::Expr::Call {
                        func: f.to_string(),
                        args,
                    },
                )
            }
            _ => (
                Ty::Credentials,
                ir::Expr::Call {
                    func: f.to_string(),
                    args: Vec::new(),
                },
            ),
        }
    }

    fn method(&mut self, e: &Expr, name_span: Span, id: usize, m: &catalog::Method, args: &[Expr]) -> (Ty, ir::Expr) {
        let task = self.symbols[id].name.clone();
        if !self.arity(e, &format!("{task}.{}", m.name), args, m.params.len()) {
            return (Ty::Error, ir::Expr::Invalid);
        }
        let args: Vec<ir::Expr> = args
            .iter()
            .zip(m.params)
            .map(|(a, (_, t))| self.check(a, catalog::ty(t)))
            .collect();
        let ty = self.read_task(id, name_span, e.span, catalog::ty(m.ret));
        (
            ty,
            ir::Expr::Method {
                task,
                method: m.name.to_string(),
                args,
            },
        )
    }

    fn list(&mut self, items: &[Expr], hint: Option<&Ty>) -> (Ty, ir::Expr) {
        let elem_hint = hint.and_then(|h| {
            h.alternatives().iter().find_map(|t| match t {
                Ty::List(e) => Some(e.as_ref().clone()),
                _ => None,
            })
        });
        let mut irs = Vec::with_capacity(items.len());
        let mut elem: Option<Ty> = elem_hint.clone();
        for item in items {
            match &elem {
                Some(want) => {
                    let (ty, ir) = self.check_typed(item, want);
                    if elem_hint.is_none() && matches!(elem, Some(Ty::Error)) {
                        elem = Some(ty);
                    }
                    irs.push(ir);
                }
                None => {
                    let (ty, ir) = self.infer(item, None);
                    elem = Some(ty);
                    irs.push(ir);
                }
            }
        }
        // Literal enum members widen to the expected enum.
        let elem = match (elem_hint, elem) {
            (Some(h), _) => h,
            (None, Some(t)) => t,
            (None, None) => Ty::Error,
        };
        (Ty::list(elem), ir::Expr::List { items: irs })
    }

    fn map(&mut self, e: &Expr, entries: &[ast::MapEntry], hint: Option<&Ty>) -> (Ty, ir::Expr) {
        let alts = hint.map(Ty::alternatives).unwrap_or_default();
        let record = alts.iter().find_map(|t| match t {
            Ty::Record(fields) => Some(((*t).clone(), fields.clone(), false)),
            Ty::Credentials => match types::credentials_record() {
                Ty::Record(fields) => Some((Ty::Credentials, fields, true)),
                _ => None,
            },
            _ => None,
        });
        let mut irs = Vec::with_capacity(entries.len());
        let mut seen: Vec<(&str, Span)> = Vec::new();
        for entry in entries {
            if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == entry.key) {
                self.push(
                    Diagnostic::error(
                        codes::DUPLICATE_PROPERTY,
                        entry.key_span,
                        format!("key `{}` is given twice", entry.key),
                    )
                    .with_label("second value")
                    .with_secondary(*prev, "first given here"),
                );
            }
            seen.push((&entry.key, entry.key_span));
        }
        if let Some((ty, fields, all_required)) = record {
            for entry in entries {
                match fields.iter().find(|(n, _)| *n == entry.key) {
                    Some((_, fty)) => {
                        let ir = self.check(&entry.value, fty);
                        irs.push((entry.key.clone(), ir));
                    }
                    None => {
                        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                        let mut d = Diagnostic::error(
                            codes::UNKNOWN_FIELD,
                            entry.key_span,
                            format!("unknown field `{}`", entry.key),
                        )
                        .with_label(format!("not a field of `{ty}`"));
                        d = match closest(&entry.key, names.iter().copied()) {
                            Some(c) if entry.quoted => d
                                .with_help(format!("did you mean `{c}`?"))
                                .with_replacement(entry.key_span, &format!("\"{c}\"")),
                            Some(c) => d.did_you_mean(entry.key_span, c),
                            None => d.with_help(format!("fields are {}", list_and(&names))),
                        };
                        self.push(d);
                        self.infer(&entry.value, None);
                    }
                }
            }
            if all_required {
                let missing: Vec<&str> = fields
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .filter(|n| !entries.iter().any(|en| en.key == *n))
                    .collect();
                if !missing.is_empty() {
                    self.push(
                        Diagnostic::error(
                            codes::MISSING_PROPERTY,
                            e.span,
                            format!("`{ty}` needs {}", list_and(&missing)),
                        )
                        .with_label(format!("missing {}", list_and(&missing)))
                        .with_help("write `{ username: \"…\", password: a_secret }`"),
                    );
                }
            }
            return (ty, ir::Expr::Map { entries: irs });
        }
        let value_hint = alts.iter().find_map(|t| match t {
            Ty::Map(v) => Some(v.as_ref().clone()),
            _ => None,
        });
        let mut value_ty = value_hint.clone();
        for entry in entries {
            let ir = match &value_ty {
                Some(want) => self.check(&entry.value, want),
                None => {
                    let (ty, ir) = self.infer(&entry.value, None);
                    value_ty = Some(ty);
                    ir
                }
            };
            irs.push((entry.key.clone(), ir));
        }
        (
            Ty::Map(Box::new(value_hint.or(value_ty).unwrap_or(Ty::Error))),
            ir::Expr::Map { entries: irs },
        )
    }

    fn binary(&mut self, e: &Expr, op: BinOp, l: &Expr, r: &Expr) -> (Ty, ir::Expr) {
        let bin = match op {
            BinOp::Or => ir::BinOp::Or,
            BinOp::And => ir::BinOp::And,
            BinOp::Eq => ir::BinOp::Eq,
            BinOp::Ne => ir::BinOp::Ne,
            BinOp::Lt => ir::BinOp::Lt,
            BinOp::Le => ir::BinOp::Le,
            BinOp::Gt => ir::BinOp::Gt,
            BinOp::Ge => ir::BinOp::Ge,
            BinOp::Coalesce => ir::BinOp::Coalesce,
            BinOp::At => ir::BinOp::At,
        };
        let (ty, left, right) = match op {
            BinOp::Or | BinOp::And => (Ty::Bool, self.check(l, &Ty::Bool), self.check(r, &Ty::Bool)),
            BinOp::Eq | BinOp::Ne => {
                let (lt, left) = self.infer(l, None);
                let (rt, right) = self.infer(r, Some(&lt));
                if lt.holds_secret() || rt.holds_secret() {
                    let at = if lt.holds_secret() { l.span } else { r.span };
                    self.push(
                        Diagnostic::error(codes::SECRET_LEAK, at, "a secret cannot be compared")
                            .with_label("this is a secret")
                            .with_help("comparing reveals what the secret is (or is not); pass it to a property typed `secret` instead"),
                    );
                } else if let Some(d) = self.impossible_outcome(l, r).or_else(|| self.impossible_outcome(r, l)) {
                    self.push(d);
                } else if fit(&rt, &lt) != Fit::Yes && fit(&lt, &rt) != Fit::Yes {
                    let strip = |t: &Ty| match t {
                        Ty::Optional(i) => i.as_ref().clone(),
                        t => t.clone(),
                    };
                    if fit(&strip(&rt), &strip(&lt)) != Fit::Yes && fit(&strip(&lt), &strip(&rt)) != Fit::Yes {
                        self.push(
                            Diagnostic::error(codes::MISMATCH, e.span, format!("cannot compare `{lt}` with `{rt}`"))
                                .with_label("the two sides have different types")
                                .with_secondary(l.span, format!("`{lt}`"))
                                .with_secondary(r.span, format!("`{rt}`")),
                        );
                    }
                }
                (Ty::Bool, left, right)
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (lt, left) = self.infer(l, None);
                let (rt, right) = self.infer(r, Some(&lt));
                let ordered = |t: &Ty| matches!(t, Ty::Int | Ty::Duration | Ty::Error);
                let same = lt == rt || lt == Ty::Error || rt == Ty::Error;
                if !(ordered(&lt) && ordered(&rt) && same) {
                    let sym = op.symbol();
                    let d = if ordered(&lt) && ordered(&rt) {
                        Diagnostic::error(codes::MISMATCH, e.span, format!("cannot compare `{lt}` with `{rt}`"))
                            .with_label(format!("`{lt}` on the left, `{rt}` on the right"))
                    } else if ordered(&lt) {
                        Diagnostic::error(codes::MISMATCH, r.span, format!("`{sym}` cannot order `{rt}` values"))
                            .with_label(format!("this is `{rt}`"))
                    } else {
                        Diagnostic::error(codes::MISMATCH, l.span, format!("`{sym}` cannot order `{lt}` values"))
                            .with_label(format!("this is `{lt}`"))
                    };
                    self.push(d.with_help(
                        "`<`, `<=`, `>` and `>=` compare two `int`s or two `duration`s; other values compare with `==` and `!=`",
                    ));
                }
                (Ty::Bool, left, right)
            }
            BinOp::Coalesce => {
                let (lt, left) = self.infer(l, None);
                match lt {
                    Ty::Optional(inner) => {
                        let right = self.check(r, &inner);
                        (*inner, left, right)
                    }
                    other => {
                        // Not optional: the fallback is dead but harmless.
                        let right = self.check(r, &other);
                        (other, left, right)
                    }
                }
            }
            BinOp::At => {
                let (lt, left) = self.infer(l, Some(&Ty::Ref));
                match &lt {
                    Ty::Ref | Ty::String | Ty::Error => {}
                    Ty::Pinned => {
                        self.push(
                            Diagnostic::error(codes::MISMATCH, l.span, "this reference is already pinned")
                                .with_label("`pinned` already carries a digest")
                                .with_help("use it as it is"),
                        );
                    }
                    other => {
                        self.push(
                            Diagnostic::error(
                                codes::MISMATCH,
                                l.span,
                                format!("`@` pins a `ref` or repository string, found `{other}`"),
                            )
                            .with_label("not a reference")
                            .with_help("write `ref(\"registry/repo:tag\") @ digest`"),
                        );
                    }
                }
                let right = self.check(r, &Ty::Digest);
                (Ty::Pinned, left, right)
            }
        };
        (
            ty,
            ir::Expr::Binary {
                bin,
                left: Box::new(left),
                right: Box::new(right),
            },
        )
    }

    /// `task.outcome == "faild"`: a comparison that can never hold.
    fn impossible_outcome(&self, read: &Expr, literal: &Expr) -> Option<Diagnostic> {
        let ExprKind::Field(base, field) = &read.kind else {
            return None;
        };
        let ExprKind::Name(task) = &base.kind else {
            return None;
        };
        let is_task = self
            .names
            .get(task)
            .is_some_and(|&id| self.symbols[id].kind == SymKind::Task);
        let value = literal.as_plain_str()?;
        if field.name != "outcome" || !is_task || catalog::OUTCOMES.contains(&value.as_str()) {
            return None;
        }
        let d = Diagnostic::error(
            codes::BAD_LITERAL,
            literal.span,
            format!("an outcome is never {value:?}"),
        )
        .with_label("not an outcome")
        .with_secondary(read.span, "`succeeded`, `failed` or `skipped`");
        Some(match closest(&value, catalog::OUTCOMES.iter().copied()) {
            Some(c) => d
                .with_help(format!("did you mean `\"{c}\"`?"))
                .with_replacement(literal.span, &format!("\"{c}\"")),
            None => d.with_help("a task's outcome is `\"succeeded\"`, `\"failed\"` or `\"skipped\"`"),
        })
    }

    pub(super) fn optional_diag(&self, e: &Expr, inner: &Ty) -> Diagnostic {
        let mut d = Diagnostic::error(
            codes::OPTIONAL,
            e.span,
            format!("`{}` may be missing here", self.text(e.span)),
        )
        .with_label(format!("this is `{inner}?`"))
        .with_help(format!("give a fallback: `{} ?? <{inner}>`", self.text(e.span)));
        if let Some((id, _)) = self.task_of(e) {
            if let Some(reason) = self.optional_reason(id) {
                d = d.with_secondary(self.symbols[id].span, reason);
            }
        }
        d
    }

    /// The task an expression reads, when it is `task.output` or `task.method(…)`.
    pub(super) fn task_of(&self, e: &Expr) -> Option<(usize, String)> {
        let base = match &e.kind {
            ExprKind::Field(b, f) => match &b.kind {
                ExprKind::Name(n) => Some((n, f.name.clone())),
                _ => None,
            },
            ExprKind::Call(c, _) => match &c.kind {
                ExprKind::Field(b, f) => match &b.kind {
                    ExprKind::Name(n) => Some((n, f.name.clone())),
                    _ => None,
                },
                _ => None,
            },
            ExprKind::Paren(x) => return self.task_of(x),
            _ => None,
        }?;
        let id = *self.names.get(base.0)?;
        (self.symbols[id].kind == SymKind::Task).then_some((id, base.1))
    }

    pub(super) fn fit_diag(&self, e: &Expr, actual: &Ty, want: &Ty, f: Fit) -> Diagnostic {
        let text = self.text(e.span);
        let shown = if text.len() > 40 {
            "this value".to_string()
        } else {
            format!("`{text}`")
        };
        match f {
            Fit::Optional => {
                let inner = match actual {
                    Ty::Optional(i) => i.as_ref().clone(),
                    t => t.clone(),
                };
                self.optional_diag(e, &inner)
            }
            Fit::Secret => Diagnostic::error(
                codes::SECRET_LEAK,
                e.span,
                format!("a secret cannot be used where `{want}` is expected"),
            )
            .with_label("this is a secret")
            .with_help("secrets only flow into properties typed `secret`; this one could print or store it"),
            _ => {
                let wants_digest = want.accepts(&Ty::Pinned) || want.accepts(&Ty::Digest);
                // The output that holds the digest wanted, named by the help and the fix.
                let read = if wants_digest { self.digest_read(e, want) } else { None };
                let base = match actual {
                    Ty::Optional(i) => i.as_ref(),
                    t => t,
                };
                if wants_digest && matches!(base, Ty::Image) {
                    let mut d = Diagnostic::error(
                        codes::IMAGE_NOT_DIGEST,
                        e.span,
                        format!("{shown} is a local image ID, not a registry digest"),
                    )
                    .with_label(format!("expected `{want}`, found `image`"))
                    .with_help(format!(
                        "signatures and promotions bind to the manifest digest a registry returns; {}",
                        self.pinned_help(read.as_deref(), want)
                    ));
                    if let Some((id, _)) = self.task_of(e) {
                        d = d.with_secondary(
                            self.symbols[id].span,
                            format!("`{text}` is the daemon's image ID (its config digest)"),
                        );
                    }
                    return with_pinned_fix(d, e, read);
                }
                if wants_digest && matches!(base, Ty::Ref | Ty::String) && !want.accepts(base) {
                    let what = if matches!(base, Ty::Ref) {
                        "a mutable tag reference"
                    } else {
                        "a string"
                    };
                    let mut d = Diagnostic::error(
                        codes::NOT_PINNED,
                        e.span,
                        format!("{shown} is {what}, but `{want}` is required"),
                    )
                    .with_label(format!("expected `{want}`, found `{base}`"))
                    .with_help(match e.as_plain_str() {
                        Some(_) if want.accepts(&Ty::Pinned) => {
                            format!(
                                "a literal is pinned with `pinned(\"repo@sha256:…\")`; or {}",
                                self.pinned_help(read.as_deref(), want)
                            )
                        }
                        Some(_) => format!("a literal digest is written `digest({text})`"),
                        None => self.pinned_help(read.as_deref(), want),
                    });
                    if let Some(id) = self.symbol_at(e) {
                        d = d.with_secondary(
                            self.symbols[id].span,
                            "a tag can be moved to other bytes after it is checked",
                        );
                    }
                    return with_pinned_fix(d, e, read);
                }
                let mut d = Diagnostic::error(codes::MISMATCH, e.span, format!("expected `{want}`, found `{actual}`"))
                    .with_label(format!("this is `{actual}`"));
                match base {
                    Ty::Outputs(kind) => {
                        let fitting = catalog::kind(kind)
                            .and_then(|k| k.outputs.iter().find(|o| fit(catalog::ty(o.ty), want) == Fit::Yes));
                        if let Some(o) = fitting {
                            d = d.with_help(format!("`{text}` is a task: use its output `{text}.{}`", o.name));
                        }
                    }
                    Ty::Pinned | Ty::Ref if want.accepts(&Ty::Image) => {
                        d = d.with_help(
                            "this takes a local image (the `image` output of a `docker.build`); \
                             to copy an image that is already in a registry, use `registry.copy`",
                        );
                    }
                    _ => {
                        if let Some(id) = self.symbol_at(e).filter(|&id| self.symbols[id].kind != SymKind::Task) {
                            d = d.with_secondary(
                                self.symbols[id].span,
                                format!("declared as `{}` here", self.symbols[id].ty),
                            );
                        }
                    }
                }
                d
            }
        }
    }

    /// A fix for a missing digest: name a task output that has one.
    fn pinned_help(&self, read: Option<&str>, want: &Ty) -> String {
        let out = if want.accepts(&Ty::Pinned) { "pinned" } else { "digest" };
        match read {
            Some(read) => format!("use the digest-pinned output of a push: `{read}`"),
            None => {
                format!("push the image and use the push's `{out}` output, or pin a reference: `reference @ digest`")
            }
        }
    }

    /// The input, let or task a plain name refers to.
    pub(super) fn symbol_at(&self, e: &Expr) -> Option<usize> {
        match &e.kind {
            ExprKind::Name(n) => self.names.get(n).copied(),
            ExprKind::Field(..) | ExprKind::Call(..) => self.task_of(e).map(|(id, _)| id),
            _ => None,
        }
    }
}
