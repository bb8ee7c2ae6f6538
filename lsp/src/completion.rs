//! Completion: what may be written at the cursor, from the context of the
//! current text and the names of the latest analysis (which may be a
//! keystroke behind: names change rarely, and waiting for a fresh analysis
//! would cost every keystroke the whole check).

use kflow_compiler::analysis::{FlowInfo, SymKind};
use kflow_compiler::catalog::{self, Kind};
use kflow_compiler::functions::FUNCTIONS;
use kflow_compiler::triggers;
use kflow_compiler::types::{self, fit, Fit, Ty, TYPE_NAMES};
use tower_lsp_server::ls_types::{
    CompletionItem, CompletionItemKind, CompletionTextEdit, Documentation, MarkupContent, MarkupKind, Range, TextEdit,
};

use crate::context::{Ctx, Cursor};
use crate::document::{Analyzed, Snapshot};

const ITEMS: &[(&str, &str)] = &[
    ("task", "task NAME = KIND { … }"),
    ("input", "input NAME: TYPE = DEFAULT"),
    ("secret", "secret NAME = env(\"VAR\")"),
    ("let", "let NAME = VALUE"),
    ("output", "output NAME = VALUE"),
    ("assert", "assert CONDITION, \"message\""),
    ("for", "for ITEM in LIST { … }"),
    ("try", "try { … } catch { … } finally { … }"),
    ("on", "on webhook|schedule|file \"…\" { inputs: { … } }"),
    ("concurrency", "concurrency { key: …, limit: 1, on_conflict: queue }"),
];

struct Items {
    range: Range,
    out: Vec<CompletionItem>,
}

impl Items {
    fn add(
        &mut self,
        label: &str,
        kind: CompletionItemKind,
        detail: String,
        doc: &str,
        sort: &str,
        insert: Option<String>,
    ) {
        let new_text = insert.unwrap_or_else(|| label.to_string());
        self.out.push(CompletionItem {
            label: label.to_string(),
            kind: Some(kind),
            detail: (!detail.is_empty()).then_some(detail),
            documentation: (!doc.is_empty()).then(|| {
                Documentation::MarkupContent(MarkupContent {
                    kind: MarkupKind::Markdown,
                    value: doc.to_string(),
                })
            }),
            sort_text: Some(format!("{sort}{label}")),
            filter_text: Some(label.to_string()),
            text_edit: Some(CompletionTextEdit::Edit(TextEdit::new(self.range, new_text))),
            ..Default::default()
        });
    }
}

pub fn complete(cursor: &Cursor, snap: &Snapshot, pos: usize, analyzed: Option<&Analyzed>) -> Vec<CompletionItem> {
    let range = Range::new(
        snap.index.position(&snap.text, cursor.word_start),
        snap.index.position(&snap.text, pos),
    );
    let mut items = Items { range, out: Vec::new() };
    let flow = analyzed.and_then(|a| {
        let flows = &a.analysis.flows;
        match &cursor.flow {
            Some(name) => flows.iter().find(|f| &f.name == name),
            None => None,
        }
        .or_else(|| (flows.len() == 1).then(|| &flows[0]))
    });
    match &cursor.ctx {
        Ctx::Nothing => {}
        Ctx::Item => {
            for (kw, shape) in ITEMS {
                items.add(kw, CompletionItemKind::KEYWORD, shape.to_string(), "", "0", None);
            }
        }
        Ctx::Kind => {
            for k in catalog::KINDS {
                items.add(
                    k.name,
                    CompletionItemKind::CLASS,
                    "task kind".into(),
                    &kind_doc(k),
                    "0",
                    None,
                );
            }
        }
        Ctx::Type => {
            for t in TYPE_NAMES {
                items.add(t, CompletionItemKind::TYPE_PARAMETER, "type".into(), "", "0", None);
            }
            for t in ["list", "map"] {
                items.add(
                    t,
                    CompletionItemKind::TYPE_PARAMETER,
                    format!("{t}<T>"),
                    "",
                    "1",
                    Some(format!("{t}<")),
                );
            }
        }
        Ctx::Property { kind, given } => {
            let k = catalog::kind(kind);
            let own = k.map_or(&[][..], |k| k.props);
            let props = own
                .iter()
                .map(|p| (p, false))
                .chain(catalog::COMMON.iter().map(|p| (p, true)));
            for (p, common) in props {
                if given.iter().any(|g| g == p.name) {
                    continue;
                }
                let sort = match (p.required, common) {
                    (true, _) => "0",
                    (false, false) => "1",
                    (false, true) => "2",
                };
                let detail = if p.required {
                    format!("{} (required)", p.ty)
                } else {
                    p.ty.to_string()
                };
                items.add(
                    p.name,
                    CompletionItemKind::PROPERTY,
                    detail,
                    p.doc,
                    sort,
                    Some(format!("{}: ", p.name)),
                );
            }
        }
        Ctx::Field { fields, given } => {
            for (name, ty) in fields {
                if !given.contains(name) {
                    items.add(
                        name,
                        CompletionItemKind::FIELD,
                        ty.to_string(),
                        "",
                        "0",
                        Some(format!("{name}: ")),
                    );
                }
            }
        }
        Ctx::AfterTask => {
            for s in flow.iter().flat_map(|f| &f.symbols) {
                if s.kind == SymKind::Task && Some(&s.name) != cursor.task.as_ref() {
                    let detail = s.task_kind.map_or(String::new(), |k| k.name.to_string());
                    items.add(
                        &s.name,
                        CompletionItemKind::FUNCTION,
                        detail,
                        s.doc.as_deref().unwrap_or(""),
                        "0",
                        None,
                    );
                }
            }
        }
        Ctx::Member { path }
            if path.len() == 1 && path[0] == "trigger" && flow.is_none_or(|f| f.symbol("trigger").is_none()) =>
        {
            trigger_fields(&mut items, &snap.text[..cursor.word_start.min(snap.text.len())])
        }
        Ctx::Member { path } => members(&mut items, flow, path),
        Ctx::Value { expected } => values(&mut items, cursor, flow, expected.as_ref()),
    }
    items.out
}

fn kind_doc(k: &Kind) -> String {
    let required: Vec<String> = k.required().map(|p| format!("`{}: {}`", p.name, p.ty)).collect();
    let outputs: Vec<String> = k.outputs.iter().map(|o| format!("`{}: {}`", o.name, o.ty)).collect();
    let mut doc = k.doc.to_string();
    if !required.is_empty() {
        doc.push_str(&format!("\n\nRequired: {}", required.join(", ")));
    }
    if !outputs.is_empty() {
        doc.push_str(&format!("\n\nOutputs: {}", outputs.join(", ")));
    }
    doc
}

/// `trigger.|`: the fields of the trigger whose body the cursor is in (the
/// nearest `on KIND` before it), or of every kind.
fn trigger_fields(items: &mut Items, before: &str) {
    let kind = before.rmatch_indices("on ").find_map(|(i, _)| {
        let word_start = i == 0 || !before.as_bytes()[i - 1].is_ascii_alphanumeric();
        let rest = before[i + 3..].trim_start();
        word_start
            .then(|| triggers::TRIGGERS.iter().find(|t| rest.starts_with(t.name)))
            .flatten()
    });
    let kinds: Vec<&triggers::TriggerKind> = match kind {
        Some(k) => vec![k],
        None => triggers::TRIGGERS.iter().collect(),
    };
    for k in kinds {
        for f in k.fields {
            let detail = if f.providers.is_empty() {
                f.ty.to_string()
            } else {
                format!("{} ({})", f.ty, f.providers.join(", "))
            };
            items.add(f.name, CompletionItemKind::FIELD, detail, f.doc, "0", None);
        }
    }
}

fn members(items: &mut Items, flow: Option<&FlowInfo>, path: &[String]) {
    let Some(flow) = flow else { return };
    let Some(sym) = flow.symbol(&path[0]) else { return };
    let ty = match (sym.task_kind, path.len()) {
        (Some(kind), 1) => {
            for o in kind.all_outputs() {
                items.add(o.name, CompletionItemKind::FIELD, o.ty.to_string(), o.doc, "0", None);
            }
            for m in kind.methods {
                let detail = format!("({}) -> {}", catalog::parameter_list(m.params), m.ret);
                items.add(
                    m.name,
                    CompletionItemKind::METHOD,
                    detail,
                    m.doc,
                    "1",
                    Some(format!("{}(", m.name)),
                );
            }
            return;
        }
        (Some(kind), 2) => match kind.output(&path[1]) {
            Some(o) => catalog::ty(o.ty).clone(),
            None => return,
        },
        (None, 1) => sym.ty.clone(),
        _ => return,
    };
    let ty = match ty {
        Ty::Optional(t) => *t,
        t => t,
    };
    if ty == Ty::Pinned {
        items.add(
            "repo",
            CompletionItemKind::FIELD,
            "string".into(),
            "The repository, without the digest.",
            "0",
            None,
        );
        items.add(
            "digest",
            CompletionItemKind::FIELD,
            "digest".into(),
            "The manifest digest.",
            "0",
            None,
        );
    }
}

fn values(items: &mut Items, cursor: &Cursor, flow: Option<&FlowInfo>, expected: Option<&Ty>) {
    let expected = expected.map(|t| match t {
        Ty::Optional(t) => t.as_ref(),
        t => t,
    });
    if let Some(members) = expected.and_then(Ty::enum_members) {
        for m in members {
            items.add(m, CompletionItemKind::ENUM_MEMBER, "value".into(), "", "0", None);
        }
    }
    if expected.is_some_and(|t| t.accepts(&Ty::Bool)) {
        for b in ["true", "false"] {
            items.add(b, CompletionItemKind::KEYWORD, "bool".into(), "", "0", None);
        }
    }
    // Strings convert to references and paths; offering every string
    // where a reference goes would bury the values that are one.
    let fits = |t: &Ty| expected.is_some_and(|e| fit(t, e) == Fit::Yes && (*t != Ty::String || e.accepts(&Ty::String)));
    let secrets_fit =
        expected.is_some_and(|e| e.accepts(&Ty::Secret) || matches!(e, Ty::Map(v) if v.accepts(&Ty::Secret)));
    if let Some(flow) = flow {
        for s in &flow.symbols {
            if Some(&s.name) == cursor.task.as_ref() || s.kind == SymKind::Broken {
                continue;
            }
            let doc = s.doc.as_deref().unwrap_or("");
            match s.kind {
                SymKind::Task => {
                    let Some(kind) = s.task_kind else { continue };
                    // The outputs that fit first: `build.image` where an image goes.
                    if expected.is_some() {
                        for o in kind.outputs.iter().filter(|o| fits(catalog::ty(o.ty))) {
                            let label = format!("{}.{}", s.name, o.name);
                            items.add(&label, CompletionItemKind::FIELD, o.ty.to_string(), o.doc, "1", None);
                        }
                    }
                    items.add(
                        &s.name,
                        CompletionItemKind::FUNCTION,
                        kind.name.to_string(),
                        doc,
                        "3",
                        None,
                    );
                }
                SymKind::Secret if !secrets_fit => {}
                SymKind::LoopVar => {}
                _ => {
                    let kind = match s.kind {
                        SymKind::Secret => CompletionItemKind::CONSTANT,
                        _ => CompletionItemKind::VARIABLE,
                    };
                    let sort = if fits(&s.ty) { "2" } else { "3" };
                    items.add(&s.name, kind, format!("{} {}", s.kind.noun(), s.ty), doc, sort, None);
                }
            }
        }
    }
    for v in &cursor.loop_vars {
        items.add(v, CompletionItemKind::VARIABLE, "loop variable".into(), "", "2", None);
    }
    for f in FUNCTIONS {
        let sort = if fits(&types::parse_spec(f.ret)) { "3" } else { "4" };
        items.add(
            f.name,
            CompletionItemKind::FUNCTION,
            f.signature(),
            f.doc,
            sort,
            Some(format!("{}(", f.name)),
        );
    }
}
