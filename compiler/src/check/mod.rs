//! Name resolution, type checking and lints of one flow, producing the IR
//! [`Plan`] as it goes: each expression is typed and lowered in one walk.
//! The checker never stops at the first error: an unresolved or ill-typed
//! expression gets [`Ty::Error`], which fits everywhere, so one mistake is
//! reported once.

mod expr;
mod fixes;
mod graph;
mod items;
mod placement;
mod shell;
mod triggers;

use rustc_hash::FxHashMap as HashMap;
use std::path::PathBuf;

use kflow_grammar::ast::{self, Item};
use kflow_grammar::diag::{Diagnostic, Span};

use crate::catalog::Kind;
use crate::codes;
use crate::ir::{self, Part, Plan};
use crate::types::Ty;

/// Where relative paths of a flow are looked up, for `kflow::lint::missing-path`.
#[derive(Debug, Clone, Default)]
pub enum Files {
    /// Paths are not checked.
    #[default]
    Unchecked,
    /// Paths resolve against this folder (the flow file's) on disk.
    Dir(PathBuf),
    /// An in-memory file system: says whether a relative path exists.
    Virtual(fn(&str) -> bool),
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub files: Files,
    /// Lints silenced everywhere (full codes).
    pub allow: Vec<&'static str>,
}

impl Options {
    /// Options for a flow file in this folder.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Options {
            files: Files::Dir(dir.into()),
            allow: Vec::new(),
        }
    }

    /// Whether a path relative to the flow exists; `None` when unchecked.
    pub fn path_exists(&self, rel: &str) -> Option<bool> {
        match &self.files {
            Files::Unchecked => None,
            Files::Dir(base) => Some(base.join(rel).exists()),
            Files::Virtual(exists) => Some(exists(rel)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymKind {
    Input,
    Secret,
    Let,
    Task,
    LoopVar,
    /// Declared by an item that did not parse.
    Broken,
}

impl SymKind {
    pub fn noun(self) -> &'static str {
        match self {
            SymKind::Input => "input",
            SymKind::Secret => "secret",
            SymKind::Let => "let",
            SymKind::Task => "task",
            SymKind::LoopVar => "loop variable",
            SymKind::Broken => "item",
        }
    }
}

/// Where a task sits: inside which part of which try block or for loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRef {
    Try(ir::ScopeId, Part),
    For(ir::ScopeId),
}

#[derive(Debug, Clone)]
pub struct Symbol {
    pub name: String,
    pub kind: SymKind,
    /// The name at its declaration.
    pub span: Span,
    pub item_span: Span,
    pub doc: Option<String>,
    pub ty: Ty,
    pub task_kind: Option<&'static Kind>,
    pub path: Vec<BlockRef>,
    pub continue_on_error: bool,
    pub used: bool,
}

/// A use of a symbol in the source, with the type it has there.
#[derive(Debug, Clone)]
pub struct Reference {
    pub span: Span,
    pub symbol: usize,
    pub ty: Ty,
}

/// Everything known about one checked flow.
#[derive(Debug, Clone)]
pub struct FlowInfo {
    pub name: String,
    pub span: Span,
    pub symbols: Vec<Symbol>,
    pub references: Vec<Reference>,
    pub plan: Plan,
}

impl FlowInfo {
    pub fn symbol(&self, name: &str) -> Option<&Symbol> {
        self.symbols
            .iter()
            .find(|s| s.name == name && s.kind != SymKind::LoopVar)
    }
}

enum LetState {
    Pending(usize),
    InProgress,
    Done { ty: Ty, deps: Vec<usize> },
}

pub(crate) struct Checker<'a> {
    src: &'a str,
    opts: &'a Options,
    diags: &'a mut Vec<Diagnostic>,
    line_starts: &'a [usize],
    symbols: Vec<Symbol>,
    names: HashMap<String, usize>,
    refs: Vec<Reference>,
    lets: HashMap<usize, LetState>,
    let_items: Vec<&'a ast::Let>,
    /// Scope id of each try/for item, by the item's start offset.
    scope_ids: HashMap<usize, ir::ScopeId>,
    scopes: Vec<ir::Scope>,
    // The context of the expression being checked.
    path: Vec<BlockRef>,
    in_secret: bool,
    loop_vars: Vec<(ir::ScopeId, usize)>,
    /// Task symbols read by the expressions checked since the last take,
    /// with the span that reads them.
    deps: Vec<(usize, ir::DepKind, Span)>,
    /// Let symbols being evaluated, innermost last (to name let cycles).
    let_stack: Vec<usize>,
    plan: Plan,
    /// Task symbol → node id.
    node_of: HashMap<usize, ir::NodeId>,
    /// Per node: its block path, the span of its name, and its dependencies
    /// as task symbols (resolved to nodes once every node exists).
    node_paths: Vec<Vec<BlockRef>>,
    node_spans: Vec<Span>,
    node_deps: Vec<Vec<(usize, ir::DepKind, Span)>>,
    /// File-system answers for `kflow::lint::missing-path`, by relative path.
    path_exists: HashMap<String, bool>,
    outputs_seen: HashMap<String, Span>,
    /// What `trigger.…` means in the expression being checked, if anything.
    trigger: Option<triggers::TriggerScope>,
    /// Inputs declared with a default (a trigger need not bind them).
    input_defaults: Vec<String>,
    /// Where `concurrency` was first given.
    concurrency_at: Option<Span>,
    /// Where triggers name their `secret`.
    trigger_secret_reads: Vec<Span>,
}

/// Checks every flow of a parsed file.
pub fn check_file(src: &str, file: &ast::File, opts: &Options, diags: &mut Vec<Diagnostic>) -> Vec<FlowInfo> {
    let line_starts = line_starts(src);
    let mut seen: HashMap<&str, Span> = HashMap::default();
    let mut out = Vec::new();
    for import in &file.imports {
        items::check_import(import, opts, diags);
    }
    for flow in &file.flows {
        if let Some(prev) = seen.insert(&flow.name.name, flow.name.span) {
            diags.push(
                Diagnostic::error(
                    codes::DUPLICATE,
                    flow.name.span,
                    format!("a flow named `{}` is already defined", flow.name.name),
                )
                .with_label("second definition")
                .with_secondary(prev, "first defined here")
                .with_help("rename one of the flows"),
            );
        }
        out.push(check_flow(src, &line_starts, flow, opts, diags));
    }
    out
}

fn check_flow(
    src: &str,
    line_starts: &[usize],
    flow: &ast::Flow,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) -> FlowInfo {
    let mut c = Checker {
        src,
        opts,
        diags,
        line_starts,
        symbols: Vec::new(),
        names: HashMap::default(),
        refs: Vec::new(),
        lets: HashMap::default(),
        let_items: Vec::new(),
        scope_ids: HashMap::default(),
        scopes: Vec::new(),
        path: Vec::new(),
        in_secret: false,
        loop_vars: Vec::new(),
        deps: Vec::new(),
        let_stack: Vec::new(),
        plan: Plan {
            version: ir::PLAN_VERSION,
            flow: flow.name.name.clone(),
            doc: flow.doc.clone(),
            triggers: Vec::new(),
            concurrency: None,
            inputs: Vec::new(),
            secrets: Vec::new(),
            lets: Vec::new(),
            nodes: Vec::new(),
            scopes: Vec::new(),
            outputs: Vec::new(),
        },
        node_of: HashMap::default(),
        node_paths: Vec::new(),
        node_spans: Vec::new(),
        node_deps: Vec::new(),
        path_exists: HashMap::default(),
        outputs_seen: HashMap::default(),
        trigger: None,
        input_defaults: Vec::new(),
        concurrency_at: None,
        trigger_secret_reads: Vec::new(),
    };
    c.declare(&flow.items, true);
    c.path.clear();
    c.items(&flow.items);
    c.plan.scopes = std::mem::take(&mut c.scopes);
    // Blocks are recorded inner first; the plan lists them by id, so that
    // `scopes[id]` is the scope `id`.
    c.plan.scopes.sort_by_key(|s| s.id);
    c.finish_graph();
    c.unused();
    c.mark_trigger_secrets();
    FlowInfo {
        name: flow.name.name.clone(),
        span: flow.span,
        symbols: c.symbols,
        references: c.refs,
        plan: c.plan,
    }
}

/// Byte offsets where lines start.
pub fn line_starts(src: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(src.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1))
        .collect()
}

impl<'a> Checker<'a> {
    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    fn text(&self, span: Span) -> &'a str {
        &self.src[span.start..span.end]
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// First pass: every name in the flow (items may be used before they are
    /// written), with the block each task sits in.
    fn declare(&mut self, items: &'a [Item], top: bool) {
        for item in items {
            if !top {
                if let Some(what) = match item {
                    Item::Input(_) => Some("input"),
                    Item::Secret(_) => Some("secret"),
                    Item::Output(_) => Some("output"),
                    Item::On(_) => Some("on"),
                    Item::Concurrency(_) => Some("concurrency"),
                    _ => None,
                } {
                    let kw = Span::new(item.span().start, item.span().start + what.len());
                    self.push(
                        Diagnostic::error(codes::MISPLACED, kw, format!("`{what}` is not allowed inside a block"))
                            .with_label("inside a `try`, `catch`, `finally` or `for` block")
                            .with_help(format!("move the `{what}` to the top level of the flow")),
                    );
                }
            }
            match item {
                Item::Input(i) => {
                    // Typed now: inputs may be read before their item.
                    let ty = self.resolve_type(&i.ty);
                    if i.default.is_some() {
                        self.input_defaults.push(i.name.name.clone());
                    }
                    self.declare_name(&i.name, SymKind::Input, i.span, i.doc.clone(), ty, None);
                }
                Item::Secret(s) => {
                    self.declare_name(&s.name, SymKind::Secret, s.span, s.doc.clone(), Ty::Secret, None);
                }
                Item::Let(l) => {
                    if let Some(id) = self.declare_name(&l.name, SymKind::Let, l.span, l.doc.clone(), Ty::Error, None) {
                        self.lets.insert(id, LetState::Pending(self.let_items.len()));
                        self.let_items.push(l);
                    }
                }
                Item::Task(t) => {
                    let kind = crate::catalog::kind(&t.kind.name);
                    let ty = kind.map_or(Ty::Error, |k| Ty::Outputs(k.name.to_string()));
                    let coe = t
                        .prop("continue_on_error")
                        .and_then(|p| p.value.as_ref())
                        .is_some_and(|v| matches!(v.kind, ast::ExprKind::Bool(true)));
                    if let Some(id) = self.declare_name(&t.name, SymKind::Task, t.span, t.doc.clone(), ty, kind) {
                        self.symbols[id].continue_on_error = coe;
                    }
                }
                Item::Error(e) => {
                    if let Some(name) = &e.name {
                        self.declare_name(name, SymKind::Broken, e.span, None, Ty::Error, None);
                    }
                }
                Item::Try(t) => {
                    let id = self.new_scope(t.span);
                    self.path.push(BlockRef::Try(id, Part::Try));
                    self.declare(&t.body.items, false);
                    self.path.pop();
                    for (block, part) in [(&t.catch, Part::Catch), (&t.finally, Part::Finally)] {
                        if let Some(b) = block {
                            self.path.push(BlockRef::Try(id, part));
                            self.declare(&b.items, false);
                            self.path.pop();
                        }
                    }
                }
                Item::For(f) => {
                    let id = self.new_scope(f.span);
                    self.path.push(BlockRef::For(id));
                    self.declare(&f.body.items, false);
                    self.path.pop();
                }
                Item::On(_) | Item::Concurrency(_) | Item::Assert(_) | Item::Output(_) => {}
            }
        }
    }

    fn new_scope(&mut self, span: Span) -> ir::ScopeId {
        let id = self.scope_ids.len();
        self.scope_ids.insert(span.start, id);
        id
    }

    fn declare_name(
        &mut self,
        name: &ast::Ident,
        kind: SymKind,
        item_span: Span,
        doc: Option<String>,
        ty: Ty,
        task_kind: Option<&'static Kind>,
    ) -> Option<usize> {
        if let Some(&prev) = self.names.get(&name.name) {
            let p = &self.symbols[prev];
            if p.kind != SymKind::Broken && kind != SymKind::Broken {
                let d = Diagnostic::error(
                    codes::DUPLICATE,
                    name.span,
                    format!("`{}` is defined twice in this flow", name.name),
                )
                .with_label(format!(
                    "second definition, as {} {}",
                    article(kind.noun()),
                    kind.noun()
                ))
                .with_secondary(
                    p.span,
                    format!("first defined here, as {} {}", article(p.kind.noun()), p.kind.noun()),
                )
                .with_help("names are unique within a flow: rename one of them");
                self.push(d);
            }
            return None;
        }
        let id = self.symbols.len();
        self.symbols.push(Symbol {
            name: name.name.clone(),
            kind,
            span: name.span,
            item_span,
            doc,
            ty,
            task_kind,
            path: self.path.clone(),
            continue_on_error: false,
            used: false,
        });
        self.names.insert(name.name.clone(), id);
        Some(id)
    }

    fn take_deps(&mut self) -> Vec<(usize, ir::DepKind, Span)> {
        std::mem::take(&mut self.deps)
    }

    /// Warnings for declared values nobody reads.
    fn unused(&mut self) {
        let mut out = Vec::new();
        for s in &self.symbols {
            if s.used {
                continue;
            }
            let what = match s.kind {
                SymKind::Input => "input",
                SymKind::Secret => "secret",
                SymKind::Let => "let",
                SymKind::Task => {
                    let Some(k) = s.task_kind else { continue };
                    // A build with tags has an effect (the tags); one without
                    // only produces an image that nobody reads.
                    let tagged = self.text(s.item_span).contains("tags");
                    if !k.pure || tagged {
                        continue;
                    }
                    "task"
                }
                SymKind::LoopVar | SymKind::Broken => continue,
            };
            let help = match s.kind {
                SymKind::Task => format!(
                    "use an output of `{}` (e.g. `{}.image`), or remove the task",
                    s.name, s.name
                ),
                _ => format!("remove the {what}, or use it"),
            };
            out.push(
                Diagnostic::warning(codes::UNUSED, s.span, format!("{what} `{}` is never used", s.name))
                    .with_label("declared here, never read")
                    .with_help(help),
            );
        }
        self.diags.extend(out);
    }
}

pub(crate) fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
