//! The compiler's diagnostics and fixes as LSP diagnostics and quick fixes.

use std::collections::HashMap;

use kflow_compiler::{Diagnostic, Severity};
use tower_lsp_server::ls_types::{
    self as lsp, CodeAction, CodeActionKind, DiagnosticRelatedInformation, DiagnosticTag, Location, NumberOrString,
    TextEdit, Uri, WorkspaceEdit,
};

use crate::document::Snapshot;

pub fn diagnostic(uri: &Uri, snap: &Snapshot, d: &Diagnostic) -> lsp::Diagnostic {
    let range = |span| snap.index.range(&snap.text, span);
    let mut message = d.message.clone();
    if let Some(label) = &d.label {
        message.push_str(&format!("\n{label}"));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .secondary
        .iter()
        .map(|l| DiagnosticRelatedInformation {
            location: Location::new(uri.clone(), range(l.span)),
            message: l.message.clone(),
        })
        .collect();
    lsp::Diagnostic {
        range: range(d.span),
        severity: Some(match d.severity {
            Severity::Error => lsp::DiagnosticSeverity::ERROR,
            Severity::Warning => lsp::DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.to_string())),
        source: Some("kflow".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: (d.code == kflow_compiler::codes::UNUSED).then(|| vec![DiagnosticTag::UNNECESSARY]),
        ..Default::default()
    }
}

/// The quick fixes of the diagnostics that touch `range`.
pub fn quick_fixes(uri: &Uri, snap: &Snapshot, diagnostics: &[Diagnostic], range: lsp::Range) -> Vec<CodeAction> {
    let want = snap.index.span(&snap.text, range);
    let mut actions = Vec::new();
    for d in diagnostics {
        let touches = d.span.start <= want.end && want.start <= d.span.end;
        if !touches {
            continue;
        }
        let only = d.fixes.len() == 1;
        for fix in &d.fixes {
            let edits = fix
                .edits
                .iter()
                .map(|e| TextEdit::new(snap.index.range(&snap.text, e.span), e.text.clone()))
                .collect();
            let mut title = fix.title.clone();
            if let Some(first) = title.get(..1) {
                title = first.to_uppercase() + &title[1..];
            }
            actions.push(CodeAction {
                title,
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![diagnostic(uri, snap, d)]),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(uri.clone(), edits)])),
                    ..Default::default()
                }),
                is_preferred: Some(only),
                ..Default::default()
            });
        }
    }
    actions
}
