//! Checking of triggers (`on webhook "release" { … }`), of the trigger
//! fields their `when` and `inputs` read, and of `concurrency { … }`.
//!
//! A trigger's `when` and `inputs` are evaluated when a delivery arrives,
//! before the execution exists: they read `trigger.…` and constants, never
//! inputs, secrets, lets or tasks. Every required input without a default
//! must be bound by every trigger. A binding is checked against its input's
//! type; what only arrives with the delivery (`trigger.body.…`, an absent
//! optional field) is converted then, and a delivery that does not convert
//! is refused with the reason.

use kflow_grammar::ast::{self, ExprKind};
use kflow_grammar::diag::{Diagnostic, Span};

use super::{Checker, SymKind};
use crate::catalog::Prop;
use crate::codes;
use crate::ir;
use crate::suggest::{closest, list_and, list_or};
use crate::triggers::{self, TriggerKind};
use crate::types::{fit, parse_spec, Fit, Ty};

/// What `trigger.…` means in the expression being checked.
#[derive(Clone, Copy)]
pub(super) struct TriggerScope {
    pub kind: &'static TriggerKind,
    /// The webhook's provider, when known: it decides the fields there are.
    pub provider: Option<&'static str>,
}

impl<'a> Checker<'a> {
    pub(super) fn on(&mut self, o: &'a ast::On) {
        let name = o.trigger.name.as_str();
        let Some(kind) = triggers::kind(name) else {
            let names: Vec<&str> = triggers::kind_names().collect();
            let mut d = Diagnostic::error(
                codes::UNKNOWN_TRIGGER,
                o.trigger.span,
                format!("unknown trigger `{name}`"),
            )
            .with_label("not a trigger");
            d = match closest(name, names.iter().copied()) {
                Some(c) => d.did_you_mean(o.trigger.span, c),
                None => d.with_help(format!("triggers are {}", list_or(&names))),
            };
            self.push(d);
            return;
        };
        let value = self.constant_string(&o.arg, "a trigger's argument");
        if let Some(v) = &value {
            if let Err(msg) = (kind.check_arg)(v) {
                self.push(
                    Diagnostic::error(codes::BAD_LITERAL, o.arg.span, msg).with_label(format!("invalid {}", kind.name)),
                );
            }
        }
        let mut t = ir::Trigger {
            kind: kind.name.to_string(),
            value: value.unwrap_or_default(),
            provider: None,
            secret: None,
            events: Vec::new(),
            when: None,
            inputs: Vec::new(),
            timezone: None,
            catchup: None,
            debounce_ms: None,
            line: self.line(o.span.start),
        };
        let props: &'a [ast::Property] = o.body.as_ref().map_or(&[], |b| &b.props);
        let seen = self.body_props(props, kind.name, |n| kind.prop(n));
        // The provider first: it decides which fields `when` and `inputs` may read.
        let provider = props.iter().find(|p| p.name.name == "provider").and_then(|p| {
            let v = p.value.as_ref()?;
            let word = self.constant_word(v, &parse_spec(kind.prop("provider")?.ty))?;
            triggers::PROVIDERS.iter().copied().find(|w| *w == word)
        });
        t.provider = provider.map(str::to_string);
        let mut bound: Vec<(String, Span)> = Vec::new();
        for p in props {
            let Some(v) = &p.value else { continue };
            let Some(prop) = kind.prop(&p.name.name) else { continue };
            if !seen.contains(&p.name.span) {
                continue;
            }
            let ty = parse_spec(prop.ty);
            match prop.name {
                "provider" => {}
                "secret" => {
                    let ir = self.check(v, &Ty::Secret);
                    match ir {
                        ir::Expr::Secret { name } => {
                            self.trigger_secret_reads.push(v.span);
                            t.secret = Some(name)
                        }
                        ir::Expr::Invalid => {}
                        _ => self.push(
                            Diagnostic::error(
                                codes::NOT_CONSTANT,
                                v.span,
                                "a webhook's secret must name a `secret` item",
                            )
                            .with_label("not a secret's name")
                            .with_help("declare `secret hook_key = env(\"HOOK_SECRET\")` and write `secret: hook_key`"),
                        ),
                    }
                }
                "events" => t.events = self.constant_strings(v).unwrap_or_default(),
                "timezone" => {
                    if let Some(tz) = self.constant_string(v, "a time zone") {
                        match crate::literals::timezone(&tz) {
                            Ok(()) => t.timezone = Some(tz),
                            Err(msg) => self.push(
                                Diagnostic::error(codes::BAD_LITERAL, v.span, msg).with_label("not an IANA time zone"),
                            ),
                        }
                    }
                }
                "catchup" => t.catchup = self.constant_word(v, &ty),
                "debounce" => match v.kind {
                    ExprKind::Duration(ms) => t.debounce_ms = Some(ms),
                    _ => {
                        self.check(v, &ty);
                        self.not_constant(v, "`debounce`");
                    }
                },
                "when" => {
                    let scope = TriggerScope { kind, provider };
                    t.when = Some(self.in_trigger(scope, |c| c.check(v, &Ty::Bool)));
                }
                "inputs" => {
                    let scope = TriggerScope { kind, provider };
                    t.inputs = self.bindings(v, scope, &mut bound);
                }
                _ => {
                    self.check(v, &ty);
                }
            }
        }
        for req in kind.props.iter().filter(|p| p.required) {
            if !props.iter().any(|p| p.name.name == req.name) {
                let at = o.body.as_ref().map_or(o.span, |b| b.span);
                self.push(
                    Diagnostic::error(
                        codes::MISSING_PROPERTY,
                        at,
                        format!("`on {}` needs `{}`", kind.name, req.name),
                    )
                    .with_label(format!("`{}` is missing", req.name))
                    .with_help(format!("`{}`: {}", req.name, req.doc)),
                );
            }
        }
        self.unbound_inputs(o, &bound);
        self.plan.triggers.push(t);
    }

    /// Required inputs without a default that this trigger does not bind.
    fn unbound_inputs(&mut self, o: &ast::On, bound: &[(String, Span)]) {
        let unbound: Vec<String> = self
            .symbols
            .iter()
            .filter(|s| s.kind == SymKind::Input && !matches!(s.ty, Ty::Optional(_)))
            .filter(|s| !self.input_defaults.contains(&s.name))
            .filter(|s| !bound.iter().any(|(n, _)| *n == s.name))
            .map(|s| s.name.clone())
            .collect();
        if unbound.is_empty() {
            return;
        }
        let names: Vec<&str> = unbound.iter().map(String::as_str).collect();
        self.push(
            Diagnostic::error(
                codes::UNBOUND_INPUT,
                Span::new(o.span.start, o.arg.span.end),
                format!(
                    "this trigger leaves the required input{} {} unbound",
                    if unbound.len() > 1 { "s" } else { "" },
                    list_and(&names)
                ),
            )
            .with_label("starts executions without a value for it")
            .with_help(format!(
                "bind it in the trigger (`inputs: {{ {}: … }}`) to a trigger field or a constant, or give the input a default",
                unbound[0]
            )),
        );
    }

    /// `inputs: { NAME: value, … }`: each value checked against its input.
    fn bindings(
        &mut self,
        v: &'a ast::Expr,
        scope: TriggerScope,
        bound: &mut Vec<(String, Span)>,
    ) -> Vec<(String, ir::Expr)> {
        let ExprKind::Map(entries) = &v.kind else {
            if !matches!(v.kind, ExprKind::Error) {
                self.push(
                    Diagnostic::error(codes::MISMATCH, v.span, "`inputs` is a map of the flow's inputs")
                        .with_label("not a `{ … }` map")
                        .with_help("write `inputs: { version: trigger.tag }`"),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries {
            let key = entry.key.as_str();
            if let Some((_, prev)) = bound.iter().find(|(n, _)| *n == key) {
                let d = Diagnostic::error(
                    codes::DUPLICATE_PROPERTY,
                    entry.key_span,
                    format!("input `{key}` is bound twice"),
                )
                .with_label("second binding")
                .with_secondary(*prev, "first bound here")
                .with_help("keep one of them");
                self.push(d);
                continue;
            }
            let input = self
                .names
                .get(key)
                .copied()
                .filter(|&id| self.symbols[id].kind == SymKind::Input);
            let Some(id) = input else {
                let inputs: Vec<&str> = self
                    .symbols
                    .iter()
                    .filter(|s| s.kind == SymKind::Input)
                    .map(|s| s.name.as_str())
                    .collect();
                let mut d = Diagnostic::error(
                    codes::UNKNOWN_NAME,
                    entry.key_span,
                    format!("this flow has no input `{key}`"),
                )
                .with_label("not an input");
                d = match closest(key, inputs.iter().copied()) {
                    Some(c) => {
                        // Taken for `c`: not also reported unbound.
                        bound.push((c.to_string(), entry.key_span));
                        d.did_you_mean(entry.key_span, c)
                    }
                    None if inputs.is_empty() => d.with_help("declare it: `input NAME: TYPE`"),
                    None => d.with_help(format!("the inputs are {}", list_and(&inputs))),
                };
                self.push(d);
                self.in_trigger(scope, |c| c.infer(&entry.value, None));
                continue;
            };
            bound.push((key.to_string(), entry.key_span));
            let want = self.symbols[id].ty.clone();
            self.symbols[id].used = true;
            let (actual, ir) = self.in_trigger(scope, |c| c.infer(&entry.value, Some(&want)));
            match fit(&actual, &want) {
                // An absent value is refused when the delivery arrives.
                Fit::Yes | Fit::Optional => {}
                f => {
                    let d = self.fit_diag(&entry.value, &actual, &want, f);
                    self.push(d);
                }
            }
            out.push((key.to_string(), ir));
        }
        out
    }

    /// Runs `f` with `trigger.…` in scope.
    fn in_trigger<T>(&mut self, scope: TriggerScope, f: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.trigger.replace(scope);
        let out = f(self);
        self.trigger = before;
        out
    }

    /// `trigger.NAME`: a field of the delivery, where a trigger is checked.
    pub(super) fn trigger_field(&mut self, e: &ast::Expr, field: &ast::Ident) -> (Ty, ir::Expr) {
        let Some(scope) = self.trigger else {
            self.push(
                Diagnostic::error(
                    codes::TRIGGER_SCOPE,
                    e.span,
                    "`trigger` is known only in a trigger's `when` and `inputs`",
                )
                .with_label("read where no delivery is")
                .with_help(
                    "runs started by hand have no trigger: bind the field to an input (`inputs: { pr: trigger.pr }`) and read the input",
                ),
            );
            return (Ty::Error, ir::Expr::Invalid);
        };
        let fields: Vec<&str> = scope.kind.fields_for(scope.provider).map(|f| f.name).collect();
        match scope.kind.fields_for(scope.provider).find(|f| f.name == field.name) {
            Some(f) => (
                f.ty(),
                ir::Expr::Trigger {
                    field: field.name.clone(),
                },
            ),
            None => {
                let whose = match scope.provider {
                    Some(p) => format!("a `{p}` webhook's delivery"),
                    None => format!("a `{}` trigger", scope.kind.name),
                };
                let mut d = Diagnostic::error(
                    codes::UNKNOWN_FIELD,
                    field.span,
                    format!("{whose} has no field `{}`", field.name),
                )
                .with_label("unknown trigger field");
                d = match closest(&field.name, fields.iter().copied()) {
                    Some(c) => d.did_you_mean(field.span, c),
                    None => d.with_help(format!("its fields are {}", list_and(&fields))),
                };
                self.push(d);
                (Ty::Error, ir::Expr::Invalid)
            }
        }
    }

    /// A name read inside a trigger: only `trigger` and constants exist
    /// before the execution does.
    pub(super) fn name_in_trigger(&mut self, span: Span, n: &str) -> Option<(Ty, ir::Expr)> {
        self.trigger?;
        // Read, if wrongly: not also reported unused.
        if let Some(&id) = self.names.get(n) {
            self.symbols[id].used = true;
        }
        let d = if n == "trigger" {
            Diagnostic::error(codes::TRIGGER_SCOPE, span, "`trigger` is read by its fields")
                .with_label("the whole delivery")
                .with_help("read a field, such as `trigger.event`, or `trigger.body` for the JSON body")
        } else {
            Diagnostic::error(
                codes::TRIGGER_SCOPE,
                span,
                format!("a trigger cannot read `{n}`: it is evaluated before the execution exists"),
            )
            .with_label("not known when a delivery arrives")
            .with_help("a trigger's `when` and `inputs` read `trigger.…` fields and constants")
        };
        self.push(d);
        Some((Ty::Error, ir::Expr::Invalid))
    }

    /// Secrets only triggers read are marked so: runs never read them.
    pub(super) fn mark_trigger_secrets(&mut self) {
        for decl in &mut self.plan.secrets {
            let Some(&id) = self.names.get(&decl.name) else {
                continue;
            };
            let mut reads = self.refs.iter().filter(|r| r.symbol == id).peekable();
            decl.trigger_only = reads.peek().is_some() && reads.all(|r| self.trigger_secret_reads.contains(&r.span));
        }
    }

    pub(super) fn concurrency(&mut self, c: &'a ast::Concurrency) {
        if let Some(prev) = self.concurrency_at {
            self.push(
                Diagnostic::error(codes::DUPLICATE, c.keyword, "`concurrency` is given twice in this flow")
                    .with_label("second one")
                    .with_secondary(prev, "first given here")
                    .with_help("keep one of them"),
            );
            return;
        }
        self.concurrency_at = Some(c.keyword);
        let seen = self.body_props(&c.body.props, "concurrency", |n| {
            triggers::CONCURRENCY.iter().find(|p| p.name == n)
        });
        let mut out = ir::Concurrency {
            key: None,
            limit: 1,
            on_conflict: "queue".to_string(),
        };
        for p in &c.body.props {
            let Some(v) = &p.value else { continue };
            if !seen.contains(&p.name.span) {
                continue;
            }
            let Some(prop) = triggers::CONCURRENCY.iter().find(|q| q.name == p.name.name) else {
                continue;
            };
            let ty = parse_spec(prop.ty);
            match prop.name {
                "key" => {
                    let ir = self.check(v, &Ty::String);
                    // Tasks do not exist yet when the key is computed.
                    let deps = self.take_deps();
                    if let Some((_, _, at)) = deps.first() {
                        self.push(
                            Diagnostic::error(
                                codes::NOT_CONSTANT,
                                *at,
                                "a concurrency key is computed before any task runs",
                            )
                            .with_label("reads a task")
                            .with_help("build the key from inputs: `key: \"pr-${pr}\"`"),
                        );
                    }
                    out.key = Some(ir);
                }
                "limit" => match v.kind {
                    ExprKind::Int(n) if (1..=10_000).contains(&n) => out.limit = n as u32,
                    ExprKind::Int(_) => self.push(
                        Diagnostic::error(codes::BAD_LITERAL, v.span, "a concurrency limit is between 1 and 10000")
                            .with_label("out of range"),
                    ),
                    _ => {
                        self.check(v, &Ty::Int);
                        self.not_constant(v, "`limit`");
                    }
                },
                "on_conflict" => {
                    if let Some(w) = self.constant_word(v, &ty) {
                        out.on_conflict = w;
                    }
                }
                _ => {}
            }
        }
        self.plan.concurrency = Some(out);
    }

    /// Reports duplicate and unknown properties of a trigger or
    /// `concurrency` body; the spans of the names kept.
    fn body_props(
        &mut self,
        props: &[ast::Property],
        what: &str,
        lookup: impl Fn(&str) -> Option<&'static Prop>,
    ) -> Vec<Span> {
        let mut kept: Vec<(&str, Span)> = Vec::new();
        for p in props {
            let name = p.name.name.as_str();
            if let Some((_, prev)) = kept.iter().find(|(n, _)| *n == name) {
                let d = Diagnostic::error(
                    codes::DUPLICATE_PROPERTY,
                    p.name.span,
                    format!("property `{name}` is given twice"),
                )
                .with_label("second value")
                .with_secondary(*prev, "first given here")
                .with_help("keep one of them");
                self.push(d);
                continue;
            }
            if lookup(name).is_none() {
                let names: Vec<&str> = all_names(what);
                let d = Diagnostic::error(
                    codes::UNKNOWN_PROPERTY,
                    p.name.span,
                    format!("`{what}` has no property `{name}`"),
                )
                .with_label("unknown property");
                self.push(match closest(name, names.iter().copied()) {
                    Some(c) => d.did_you_mean(p.name.span, c),
                    None => d.with_help(format!("`{what}` takes {}", list_and(&names))),
                });
                continue;
            }
            kept.push((name, p.name.span));
        }
        kept.into_iter().map(|(_, s)| s).collect()
    }

    /// An enum value written as a bare word (`provider: github`).
    fn constant_word(&mut self, v: &ast::Expr, ty: &Ty) -> Option<String> {
        match self.check(v, ty) {
            ir::Expr::Enum { value } => Some(value),
            ir::Expr::Invalid => None,
            _ => {
                self.not_constant(v, "this value");
                None
            }
        }
    }

    /// A list of plain strings (`events: ["push", "pull_request"]`).
    fn constant_strings(&mut self, v: &ast::Expr) -> Option<Vec<String>> {
        self.check(v, &Ty::list(Ty::String));
        let ExprKind::List(items) = &v.kind else {
            self.not_constant(v, "`events`");
            return None;
        };
        items.iter().map(|i| self.constant_string(i, "an event")).collect()
    }

    fn not_constant(&mut self, v: &ast::Expr, what: &str) {
        if matches!(v.kind, ExprKind::Error) {
            return;
        }
        self.push(
            Diagnostic::error(
                codes::NOT_CONSTANT,
                v.span,
                format!("{what} must be written as a literal"),
            )
            .with_label("not a literal")
            .with_help("the server reads it before any execution starts"),
        );
    }
}

/// The property names of a trigger kind's body, or of `concurrency`.
fn all_names(what: &str) -> Vec<&'static str> {
    match triggers::kind(what) {
        Some(k) => k.props.iter().chain(triggers::COMMON).map(|p| p.name).collect(),
        None => triggers::CONCURRENCY.iter().map(|p| p.name).collect(),
    }
}
