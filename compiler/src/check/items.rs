//! Checking of items: triggers, inputs, secrets, lets, tasks, blocks,
//! asserts and outputs.

use std::collections::BTreeMap;

use kflow_grammar::ast::{self, ExprKind, Item, TypeExpr};
use kflow_grammar::diag::{Diagnostic, Span};

use super::{BlockRef, Checker, LetState, Options, SymKind, Symbol};
use crate::catalog::{self, Kind, Lint};
use crate::codes;
use crate::ir::{self, Part};
use crate::literals;
use crate::suggest::{closest, list_and, list_or};
use crate::types::{self, Ty};

impl<'a> Checker<'a> {
    pub(super) fn items(&mut self, items: &'a [Item]) {
        for item in items {
            match item {
                Item::On(o) => self.on(o),
                Item::Input(i) => self.input(i),
                Item::Secret(s) => self.secret(s),
                Item::Let(l) => {
                    if let Some(id) = self.own_symbol(&l.name) {
                        self.ensure_let(id, l.name.span);
                    } else {
                        // A duplicate: still check its value.
                        self.infer(&l.value, None);
                        self.deps.clear();
                    }
                }
                Item::Task(t) => self.task(t),
                Item::Try(t) => self.try_block(t),
                Item::For(f) => self.for_loop(f),
                Item::Assert(a) => self.assert(a),
                Item::Output(o) => self.output(o),
                Item::Concurrency(c) => self.concurrency(c),
                Item::Error(_) => {}
            }
        }
    }

    /// The symbol this declaration created (not a duplicate's first definition).
    fn own_symbol(&self, name: &ast::Ident) -> Option<usize> {
        self.names
            .get(&name.name)
            .copied()
            .filter(|&id| self.symbols[id].span == name.span)
    }

    pub(super) fn resolve_type(&mut self, t: &TypeExpr) -> Ty {
        match t {
            TypeExpr::Named(n) => match types::named(&n.name) {
                Some(t) => t,
                None => {
                    let mut d = Diagnostic::error(codes::UNKNOWN_TYPE, n.span, format!("unknown type `{}`", n.name))
                        .with_label("not a type");
                    d = match closest(&n.name, types::TYPE_NAMES.iter().copied()) {
                        Some(c) => d.did_you_mean(n.span, c),
                        None => d.with_help(format!(
                            "types are {}, `list<T>`, `map<T>` and `T?`",
                            list_and(types::TYPE_NAMES)
                        )),
                    };
                    self.push(d);
                    Ty::Error
                }
            },
            TypeExpr::List(t, _) => Ty::list(self.resolve_type(t)),
            TypeExpr::Map(t, _) => Ty::Map(Box::new(self.resolve_type(t))),
            TypeExpr::Optional(t, _) => Ty::optional(self.resolve_type(t)),
        }
    }

    /// A plain string literal, or an error saying it must be one.
    pub(super) fn constant_string(&mut self, e: &ast::Expr, what: &str) -> Option<String> {
        match (e.as_plain_str(), &e.kind) {
            (Some(s), _) => Some(s),
            (None, ExprKind::Error) => None,
            (None, _) => {
                self.push(
                    Diagnostic::error(codes::NOT_CONSTANT, e.span, format!("{what} must be a plain string"))
                        .with_label("not a string literal")
                        .with_help("write the value as a string without `${…}`"),
                );
                None
            }
        }
    }

    fn input(&mut self, i: &'a ast::Input) {
        let Some(id) = self.own_symbol(&i.name) else {
            return;
        };
        let ty = self.symbols[id].ty.clone();
        let refusal = match &ty {
            Ty::Secret => Some("declare secrets with `secret NAME = env(\"VAR\")`, so they stay redacted"),
            Ty::Image => Some("an image ID only exists inside a run: take a `ref` or `pinned` input instead"),
            Ty::Task | Ty::Credentials => Some("inputs are plain values: strings, numbers, durations, references"),
            _ => None,
        };
        if let Some(help) = refusal {
            self.push(
                Diagnostic::error(
                    codes::MISMATCH,
                    i.ty.span(),
                    format!("an input cannot have type `{ty}`"),
                )
                .with_label("not an input type")
                .with_help(help),
            );
        }
        let default = i.default.as_ref().map(|d| {
            let ir = self.check(d, &ty);
            let deps = self.take_deps();
            if let Some((_, _, span)) = deps.first() {
                self.push(
                    Diagnostic::error(codes::NOT_CONSTANT, *span, "an input's default cannot read a task")
                        .with_label("known only while the flow runs")
                        .with_help("defaults are constants; use a `let` for derived values"),
                );
            }
            ir
        });
        self.plan.inputs.push(ir::InputDecl {
            name: i.name.name.clone(),
            ty,
            default,
            doc: i.doc.clone(),
        });
    }

    fn secret(&mut self, s: &'a ast::Secret) {
        let source = match &s.value.kind {
            ExprKind::Call(f, args) => match &f.kind {
                ExprKind::Name(n) if n == "env" || n == "file" => Some((n.as_str(), args)),
                _ => None,
            },
            ExprKind::Error => return,
            _ => None,
        };
        let Some((func, args)) = source else {
            self.push(
                Diagnostic::error(codes::SECRET_SOURCE, s.value.span, "a secret must be read from the environment or a file")
                    .with_label("not `env(…)` or `file(…)`")
                    .with_help("write `secret NAME = env(\"VAR\")` or `secret NAME = file(\"path\")`; a secret's value never appears in the flow"),
            );
            return;
        };
        let [arg] = args.as_slice() else {
            self.push(
                Diagnostic::error(
                    codes::WRONG_ARGS,
                    s.value.span,
                    format!("`{func}` takes one argument, {} given", args.len()),
                )
                .with_label("wrong number of arguments"),
            );
            return;
        };
        self.in_secret = true;
        let want = if func == "file" { Ty::Path } else { Ty::String };
        let arg_ir = self.check(arg, &want);
        self.in_secret = false;
        self.deps.clear();
        if func == "file" {
            self.missing_path(arg);
        }
        if self.own_symbol(&s.name).is_some() {
            self.plan.secrets.push(ir::SecretDecl {
                name: s.name.name.clone(),
                source: func.to_string(),
                arg: arg_ir,
                trigger_only: false,
            });
        }
    }

    /// Types a `let` on first use (lets may be read before their item), and
    /// names a cycle between lets.
    pub(super) fn ensure_let(&mut self, id: usize, at: Span) -> (Ty, Vec<usize>) {
        match self.lets.get(&id) {
            Some(LetState::Done { ty, deps }) => return (ty.clone(), deps.clone()),
            Some(LetState::InProgress) => {
                let start = self.let_stack.iter().position(|&x| x == id).unwrap_or(0);
                let mut names: Vec<&str> = self.let_stack[start..]
                    .iter()
                    .map(|&x| self.symbols[x].name.as_str())
                    .collect();
                names.push(&self.symbols[id].name);
                let d = Diagnostic::error(codes::CYCLE, at, format!("`let` cycle: {}", names.join(" -> ")))
                    .with_label("this reads a value that depends on itself")
                    .with_secondary(self.symbols[id].span, "defined here")
                    .with_help("break the cycle: one of these values must not depend on the others");
                self.push(d);
                return (Ty::Error, Vec::new());
            }
            Some(LetState::Pending(_)) => {}
            None => return (Ty::Error, Vec::new()),
        }
        let Some(LetState::Pending(idx)) = self.lets.insert(id, LetState::InProgress) else {
            unreachable!("checked above")
        };
        let l = self.let_items[idx];
        self.let_stack.push(id);
        let saved_path = std::mem::replace(&mut self.path, self.symbols[id].path.clone());
        let saved_deps = std::mem::take(&mut self.deps);
        let saved_secret = std::mem::replace(&mut self.in_secret, false);
        // A let is evaluated once per flow, outside any loop iteration.
        let saved_loops = std::mem::take(&mut self.loop_vars);
        let (ty, ir) = match &l.ty {
            Some(t) => {
                let ty = self.resolve_type(t);
                let ir = self.check(&l.value, &ty);
                (ty, ir)
            }
            None => self.infer(&l.value, None),
        };
        let deps: Vec<usize> = std::mem::replace(&mut self.deps, saved_deps)
            .into_iter()
            .map(|(s, _, _)| s)
            .collect();
        self.path = saved_path;
        self.in_secret = saved_secret;
        self.loop_vars = saved_loops;
        self.let_stack.pop();
        self.symbols[id].ty = ty.clone();
        self.lets.insert(
            id,
            LetState::Done {
                ty: ty.clone(),
                deps: deps.clone(),
            },
        );
        self.plan.lets.push(ir::LetDecl {
            name: l.name.name.clone(),
            ty: ty.clone(),
            value: ir,
        });
        (ty, deps)
    }

    fn task(&mut self, t: &'a ast::Task) {
        let kind = catalog::kind(&t.kind.name);
        if kind.is_none() {
            let mut d = Diagnostic::error(
                codes::UNKNOWN_KIND,
                t.kind.span,
                format!("unknown task kind `{}`", t.kind.name),
            )
            .with_label("not in the task catalog");
            d = match closest(&t.kind.name, catalog::kind_names()) {
                Some(c) => d.did_you_mean(t.kind.span, c),
                None => d.with_help(format!(
                    "task kinds are {}",
                    list_or(&catalog::kind_names().collect::<Vec<_>>())
                )),
            };
            self.push(d);
        }
        // Properties given so far (a task has a handful: a list beats a map).
        let mut seen: Vec<(&str, Span)> = Vec::with_capacity(t.props.len());
        // Properties an unknown one was taken for (`too` → `to`): that
        // diagnostic says it, so they are not reported missing as well.
        let mut meant: Vec<&str> = Vec::new();
        let mut props = BTreeMap::new();
        let (mut when, mut retry, mut timeout, mut coe) = (None, None, None, false);
        for p in &t.props {
            let name = p.name.name.as_str();
            if let Some(&(_, prev)) = seen.iter().find(|(n, _)| *n == name) {
                self.push(
                    Diagnostic::error(
                        codes::DUPLICATE_PROPERTY,
                        p.name.span,
                        format!("property `{name}` is given twice"),
                    )
                    .with_label("second value")
                    .with_secondary(prev, "first given here")
                    .with_help("keep one of them"),
                );
                continue;
            }
            seen.push((name, p.name.span));
            let Some(value) = &p.value else { continue };
            if name == "after" {
                self.after(value);
                continue;
            }
            let prop = match kind {
                Some(k) => k.prop(name),
                None => catalog::COMMON.iter().find(|c| c.name == name),
            };
            let Some(prop) = prop else {
                if let Some(k) = kind {
                    let names: Vec<&str> = k.all_props().map(|p| p.name).collect();
                    let d = Diagnostic::error(
                        codes::UNKNOWN_PROPERTY,
                        p.name.span,
                        format!("`{}` has no property `{name}`", k.name),
                    )
                    .with_label("unknown property");
                    self.push(match closest(name, names.iter().copied()) {
                        Some(c) => {
                            meant.push(c);
                            d.did_you_mean(p.name.span, c)
                        }
                        None => d.with_help(format!("`{}` takes {}", k.name, list_and(&names))),
                    });
                }
                self.infer(value, None);
                continue;
            };
            let ty = catalog::ty(prop.ty);
            let (actual, ir) = self.check_typed(value, ty);
            match name {
                "when" => when = Some(ir),
                "retry" => retry = Some(ir),
                "timeout" => timeout = Some(ir),
                "continue_on_error" => match value.kind {
                    ExprKind::Bool(b) => coe = b,
                    ExprKind::Error => {}
                    _ => self.push(
                        Diagnostic::error(
                            codes::NOT_CONSTANT,
                            value.span,
                            "`continue_on_error` must be `true` or `false`",
                        )
                        .with_label("not a literal")
                        .with_help(
                            "it decides the types of this task's outputs, so it must be known when the flow is checked",
                        ),
                    ),
                },
                _ => {
                    if let Some(k) = kind {
                        self.prop_lints(k, name, value, &actual, ty);
                    }
                    props.insert(
                        name.to_string(),
                        ir::Prop {
                            ty: ty.clone(),
                            value: ir,
                        },
                    );
                }
            }
        }
        if let Some(k) = kind {
            self.kind_rules(t, k, &seen, &meant);
            if k.lints.contains(&Lint::ShellScript) {
                self.shell_interpolation(t);
            }
        }
        let deps = self.take_deps();
        let Some(sym) = self.own_symbol(&t.name) else {
            return;
        };
        let id = self.plan.nodes.len();
        self.node_of.insert(sym, id);
        self.node_paths.push(self.path.clone());
        self.node_spans.push(t.name.span);
        self.node_deps.push(deps);
        self.plan.nodes.push(ir::Node {
            id,
            name: t.name.name.clone(),
            kind: t.kind.name.clone(),
            props,
            deps: Vec::new(),
            scope: self.scope_ref(),
            when,
            retry,
            timeout,
            continue_on_error: coe,
            line: self.line(t.span.start),
        });
    }

    fn scope_ref(&self) -> Option<ir::ScopeRef> {
        self.path.last().map(|b| match *b {
            BlockRef::Try(scope, part) => ir::ScopeRef { scope, part },
            BlockRef::For(scope) => ir::ScopeRef {
                scope,
                part: Part::Body,
            },
        })
    }

    /// `after: [a, b]`: ordering on tasks, without data.
    fn after(&mut self, value: &ast::Expr) {
        let items = match &value.kind {
            ExprKind::List(items) => items.as_slice(),
            ExprKind::Error => return,
            _ => {
                self.push(
                    Diagnostic::error(codes::MISMATCH, value.span, "`after` takes a list of tasks")
                        .with_label("not a list")
                        .with_help("write `after: [task_a, task_b]`"),
                );
                return;
            }
        };
        for item in items {
            let ExprKind::Name(n) = &item.kind else {
                if !matches!(item.kind, ExprKind::Error) {
                    self.push(
                        Diagnostic::error(codes::MISMATCH, item.span, "`after` lists task names")
                            .with_label("not a task name")
                            .with_help("write the name of a task, e.g. `after: [build]`"),
                    );
                }
                continue;
            };
            match self.names.get(n).copied() {
                Some(id) if matches!(self.symbols[id].kind, SymKind::Task | SymKind::Broken) => {
                    self.use_symbol(id, item.span, Ty::Task);
                    if self.symbols[id].kind == SymKind::Task {
                        self.deps.push((id, ir::DepKind::Order, item.span));
                    }
                }
                Some(id) => {
                    let s = &self.symbols[id];
                    let d = Diagnostic::error(
                        codes::UNKNOWN_TASK,
                        item.span,
                        format!(
                            "`{n}` is {} {}, not a task",
                            super::article(s.kind.noun()),
                            s.kind.noun()
                        ),
                    )
                    .with_label("`after` needs a task")
                    .with_secondary(s.span, "declared here");
                    self.push(d);
                }
                None => {
                    let tasks: Vec<&str> = self
                        .symbols
                        .iter()
                        .filter(|s| s.kind == SymKind::Task)
                        .map(|s| s.name.as_str())
                        .collect();
                    let mut d = Diagnostic::error(codes::UNKNOWN_TASK, item.span, format!("no task named `{n}`"))
                        .with_label("unknown task");
                    if let Some(c) = closest(n, tasks) {
                        d = d.did_you_mean(item.span, c);
                    }
                    self.push(d);
                }
            }
        }
    }

    /// Missing required properties, exclusive pairs, fixed choices; `meant`
    /// are properties a misspelt one was taken for, which are not missing.
    fn kind_rules(&mut self, t: &ast::Task, k: &'static Kind, seen: &[(&str, Span)], meant: &[&str]) {
        let given = |name: &str| seen.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
        let absent = |name: &str| given(name).is_none() && !meant.contains(&name);
        let missing: Vec<&catalog::Prop> = k.required().filter(|p| absent(p.name)).collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
            let example: Vec<String> = missing.iter().map(|p| format!("{}: <{}>", p.name, p.ty)).collect();
            let noun = if missing.len() == 1 { "property" } else { "properties" };
            let mut d = Diagnostic::error(
                codes::MISSING_PROPERTY,
                t.kind.span,
                format!("`{}` needs the {noun} {}", k.name, list_and(&names)),
            )
            .with_label(format!("missing {}", list_and(&names)))
            .with_help(format!("add `{}`", example.join("`, `")));
            d.fixes.extend(self.add_properties_fix(t, &missing));
            self.push(d);
        }
        if !k.one_of.is_empty() {
            let present: Vec<(&str, Span)> = k.one_of.iter().filter_map(|p| given(p).map(|s| (*p, s))).collect();
            if k.one_of.iter().all(|p| absent(p)) {
                self.push(
                    Diagnostic::error(
                        codes::ONE_OF,
                        t.kind.span,
                        format!("`{}` needs {}", k.name, list_or(k.one_of)),
                    )
                    .with_label("neither is given")
                    .with_help(format!("add one of {}", list_or(k.one_of))),
                );
            } else if present.len() > 1 {
                let d = Diagnostic::error(
                    codes::ONE_OF,
                    present[1].1,
                    format!("`{}` takes {}, not both", k.name, list_or(k.one_of)),
                )
                .with_label("second one")
                .with_secondary(present[0].1, "first one")
                .with_help("keep one of them");
                self.push(d);
            }
        }
        for &(first, second) in k.exclusive {
            if let (Some(a), Some(b)) = (given(first), given(second)) {
                let (a, b) = if a.start <= b.start { (a, b) } else { (b, a) };
                self.push(
                    Diagnostic::error(codes::ONE_OF, b, format!("`{first}` and `{second}` exclude each other"))
                        .with_label("second one")
                        .with_secondary(a, "first one")
                        .with_help("keep one of them"),
                );
            }
        }
        if k.lints.contains(&Lint::Deadline) && given("timeout").is_none() {
            self.push(
                Diagnostic::warning(codes::APPROVAL_TIMEOUT, t.kind.span, "this approval can wait forever")
                    .with_label("no `timeout`")
                    .with_help("add `timeout: 24h` (on expiry the gate fails; it never approves)"),
            );
        }
        for &(prop, choices) in k.choices {
            if let Some(value) = t.prop(prop).and_then(|p| p.value.as_ref()) {
                if let Some(s) = value.as_plain_str() {
                    if !choices.contains(&s.as_str()) {
                        let mut d =
                            Diagnostic::error(codes::BAD_LITERAL, value.span, format!("`{s}` is not a valid `{prop}`"))
                                .with_label(format!("expected {}", list_or(choices)));
                        let upper = s.to_uppercase();
                        let near = closest(&upper, choices.iter().copied())
                            .or_else(|| choices.iter().copied().find(|c| *c == upper));
                        if let Some(c) = near {
                            d = d
                                .with_help(format!("did you mean `{c}`?"))
                                .with_replacement(value.span, &format!("\"{c}\""));
                        }
                        self.push(d);
                    }
                }
            }
        }
        for &(prop, validate) in k.validate {
            let Some(value) = t.prop(prop).and_then(|p| p.value.as_ref()) else {
                continue;
            };
            // A literal, or each literal item of a literal list.
            let values = match &value.kind {
                ExprKind::List(items) => items.iter().collect::<Vec<_>>(),
                _ => vec![value],
            };
            for value in values {
                if let Some(s) = value.as_plain_str() {
                    if let Err(msg) = validate(&s) {
                        self.push(
                            Diagnostic::error(codes::BAD_LITERAL, value.span, msg)
                                .with_label(format!("invalid `{prop}`")),
                        );
                    }
                }
            }
        }
    }

    /// Lints on one property's value.
    fn prop_lints(&mut self, k: &Kind, name: &str, value: &ast::Expr, actual: &Ty, want: &Ty) {
        let pinned_image = k.lints.iter().any(|l| matches!(l, Lint::PinnedImage(p) if *p == name));
        if pinned_image && matches!(actual, Ty::Ref | Ty::String) {
            self.push(
                Diagnostic::warning(
                    codes::UNPINNED_IMAGE,
                    value.span,
                    format!("`{}` on a mutable tag", k.name),
                )
                .with_label("this tag can point at different bytes tomorrow")
                .with_help("pin by digest: use a push's `pinned` output, or `ref(\"…\") @ digest(\"sha256:…\")`"),
            );
        }
        if k.lints.iter().any(|l| matches!(l, Lint::PushedTag(p) if *p == name)) {
            match &value.kind {
                ExprKind::List(items) => items.iter().for_each(|item| self.latest_lint(item)),
                _ => self.latest_lint(value),
            }
        }
        if want.accepts(&Ty::Path) {
            self.missing_path(value);
        }
    }

    fn latest_lint(&mut self, value: &ast::Expr) {
        let text = match &value.kind {
            ExprKind::Call(f, args) if matches!(&f.kind, ExprKind::Name(n) if n == "ref") && args.len() == 1 => {
                &args[0]
            }
            _ => value,
        };
        let latest = match (&text.kind, text.as_plain_str()) {
            (_, Some(s)) => {
                literals::reference(&s).is_ok_and(|r| r.digest.is_none() && r.tag.is_none_or(|t| t == "latest"))
            }
            (ExprKind::Str(parts), None) => {
                matches!(parts.last(), Some(ast::StrPart::Text(t)) if t.ends_with(":latest"))
            }
            _ => false,
        };
        if latest {
            self.push(
                Diagnostic::warning(codes::LATEST_TAG, value.span, "pushing to `:latest`")
                    .with_label("`latest` (or no tag) moves with every push")
                    .with_help("tag with a version or a commit, e.g. `app:${version}`"),
            );
        }
    }

    pub(super) fn missing_path(&mut self, value: &ast::Expr) {
        if matches!(self.opts.files, super::Files::Unchecked) {
            return;
        }
        let Some(rel) = value.as_plain_str() else {
            return;
        };
        if rel.is_empty() || rel.contains(['*', '?', '[']) {
            return;
        }
        // Many tasks name the same folder: ask the file system once per path.
        let exists = match self.path_exists.get(&rel) {
            Some(&e) => e,
            None => {
                let e = self.opts.path_exists(&rel).unwrap_or(true);
                self.path_exists.insert(rel.clone(), e);
                e
            }
        };
        if !exists {
            self.push(
                Diagnostic::warning(codes::MISSING_PATH, value.span, format!("`{rel}` does not exist"))
                    .with_label("no such file or folder")
                    .with_help("paths are relative to the folder of the .kflow file"),
            );
        }
    }

    fn try_block(&mut self, t: &'a ast::Try) {
        let id = self.scope_ids[&t.span.start];
        let parent = self.scope_ref();
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        for (i, (block, part)) in [
            (Some(&t.body), Part::Try),
            (t.catch.as_ref(), Part::Catch),
            (t.finally.as_ref(), Part::Finally),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(block) = block else { continue };
            let first = self.plan.nodes.len();
            self.path.push(BlockRef::Try(id, part));
            self.items(&block.items);
            self.path.pop();
            parts[i] = (first..self.plan.nodes.len()).collect();
        }
        if t.catch.is_none() && t.finally.is_none() {
            self.push(
                Diagnostic::warning(codes::EMPTY_TRY, t.keyword, "`try` without `catch` or `finally`")
                    .with_label("this block changes nothing")
                    .with_help("add a `finally { … }` for teardown, or remove the `try`"),
            );
        }
        let [body, catch, finally] = parts;
        self.scopes.push(ir::Scope {
            id,
            parent,
            kind: ir::ScopeKind::Try { body, catch, finally },
        });
    }

    fn for_loop(&mut self, f: &'a ast::For) {
        let id = self.scope_ids[&f.span.start];
        let parent = self.scope_ref();
        let (ty, iter) = self.infer(&f.iter, None);
        let item_ty = match ty {
            Ty::List(t) => *t,
            Ty::Error => Ty::Error,
            other => {
                self.push(
                    Diagnostic::error(
                        codes::MISMATCH,
                        f.iter.span,
                        format!("`for` needs a list, found `{other}`"),
                    )
                    .with_label("not a list")
                    .with_help("loop over a list, e.g. `for p in [\"linux/amd64\", \"linux/arm64\"] { … }`"),
                );
                Ty::Error
            }
        };
        if let Some(&prev) = self.names.get(&f.var.name) {
            let p = &self.symbols[prev];
            let d = Diagnostic::error(
                codes::DUPLICATE,
                f.var.span,
                format!(
                    "loop variable `{}` hides {} {}",
                    f.var.name,
                    super::article(p.kind.noun()),
                    p.kind.noun()
                ),
            )
            .with_label("loop variable")
            .with_secondary(p.span, "declared here")
            .with_help("give the loop variable another name");
            self.push(d);
        }
        let sym = self.symbols.len();
        self.symbols.push(Symbol {
            name: f.var.name.clone(),
            kind: SymKind::LoopVar,
            span: f.var.span,
            item_span: f.span,
            doc: None,
            ty: item_ty,
            task_kind: None,
            path: self.path.clone(),
            continue_on_error: false,
            used: true,
        });
        let outer_deps = self.take_deps();
        let first = self.plan.nodes.len();
        self.loop_vars.push((id, sym));
        self.path.push(BlockRef::For(id));
        self.items(&f.body.items);
        self.path.pop();
        self.loop_vars.pop();
        // Every iteration needs the list: body nodes depend on what it reads.
        for deps in &mut self.node_deps[first..] {
            deps.extend(outer_deps.iter().cloned());
        }
        self.scopes.push(ir::Scope {
            id,
            parent,
            kind: ir::ScopeKind::For {
                var: f.var.name.clone(),
                iter,
                body: (first..self.plan.nodes.len()).collect(),
            },
        });
    }

    fn assert(&mut self, a: &'a ast::Assert) {
        let cond = self.check(&a.cond, &Ty::Bool);
        let mut props = BTreeMap::new();
        props.insert(
            "condition".to_string(),
            ir::Prop {
                ty: Ty::Bool,
                value: cond,
            },
        );
        if let Some(m) = &a.message {
            let message = self.check(m, &Ty::String);
            props.insert(
                "message".to_string(),
                ir::Prop {
                    ty: Ty::String,
                    value: message,
                },
            );
        }
        let deps = self.take_deps();
        let id = self.plan.nodes.len();
        let line = self.line(a.span.start);
        self.node_paths.push(self.path.clone());
        self.node_spans
            .push(Span::new(a.span.start, a.span.start + "assert".len()));
        self.node_deps.push(deps);
        self.plan.nodes.push(ir::Node {
            id,
            // Numbered in flow order, so the name survives reformatting.
            name: format!(
                "assert_{}",
                self.plan
                    .nodes
                    .iter()
                    .filter(|n| n.kind == catalog::ASSERT_KIND)
                    .count()
                    + 1
            ),
            kind: catalog::ASSERT_KIND.to_string(),
            props,
            deps: Vec::new(),
            scope: self.scope_ref(),
            when: None,
            retry: None,
            timeout: None,
            continue_on_error: false,
            line,
        });
    }

    fn output(&mut self, o: &'a ast::Output) {
        // Outputs have their own namespace: a duplicate would overwrite a result.
        if let Some(prev) = self.outputs_seen.insert(o.name.name.clone(), o.name.span) {
            self.push(
                Diagnostic::error(
                    codes::DUPLICATE,
                    o.name.span,
                    format!("output `{}` is defined twice", o.name.name),
                )
                .with_label("second definition")
                .with_secondary(prev, "first defined here")
                .with_help("give each output its own name"),
            );
        }
        let (ty, value) = self.infer(&o.value, None);
        self.deps.clear();
        if ty.holds_secret() {
            self.push(
                Diagnostic::error(
                    codes::SECRET_LEAK,
                    o.value.span,
                    format!("output `{}` would reveal a secret", o.name.name),
                )
                .with_label("this value is a secret")
                .with_help("outputs are printed and stored; secrets never leave the tasks that use them"),
            );
        } else if let Ty::Optional(inner) = &ty {
            let d = self.optional_diag(&o.value, inner);
            self.push(d);
        } else if matches!(ty, Ty::Outputs(_) | Ty::Task) || matches!(&ty, Ty::List(t) if matches!(**t, Ty::Outputs(_)))
        {
            self.push(
                Diagnostic::error(
                    codes::MISMATCH,
                    o.value.span,
                    format!("output `{}` names a task, not a value", o.name.name),
                )
                .with_label("a task")
                .with_help("output one of its outputs, e.g. `task.digest`"),
            );
        }
        self.plan.outputs.push(ir::OutputDecl {
            name: o.name.name.clone(),
            ty,
            value,
        });
    }
}

/// Imports are validated (the path must exist); calling imported flows is
/// not part of the language yet.
pub(super) fn check_import(import: &ast::Import, opts: &Options, diags: &mut Vec<Diagnostic>) {
    let Some(path) = import.path.as_plain_str() else {
        diags.push(
            Diagnostic::error(
                codes::NOT_CONSTANT,
                import.path.span,
                "an import path must be a plain string",
            )
            .with_label("not a string literal"),
        );
        return;
    };
    if opts.path_exists(&path) == Some(false) {
        diags.push(
            Diagnostic::warning(
                codes::MISSING_PATH,
                import.path.span,
                format!("`{path}` does not exist"),
            )
            .with_label("no such file")
            .with_help("paths are relative to the folder of the .kflow file"),
        );
    }
}
