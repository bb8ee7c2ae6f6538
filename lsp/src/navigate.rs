//! Go to definition, find references and rename, over the symbols and
//! references the checker records.

use kflow_compiler::analysis::{FlowInfo, SymKind};
use kflow_compiler::Span;

use crate::at::Target;
use kflow_compiler::grammar::keywords::is_keyword;

/// The declaration a target names (for an output, its task's).
pub fn definition(target: &Target) -> Option<Span> {
    match target {
        Target::Symbol { flow, symbol, .. } => Some(flow.symbols[*symbol].span),
        Target::Output { task, .. } => Some(*task),
        _ => None,
    }
}

/// Every use of the symbol under the cursor, its declaration first when asked.
pub fn references(target: &Target, with_declaration: bool) -> Vec<Span> {
    let Target::Symbol { flow, symbol, .. } = target else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    if with_declaration {
        spans.push(flow.symbols[*symbol].span);
    }
    spans.extend(flow.references.iter().filter(|r| r.symbol == *symbol).map(|r| r.span));
    spans
}

/// The span a rename at the cursor would change.
pub fn renameable(target: &Target) -> Option<Span> {
    match target {
        Target::Symbol { flow, symbol, span, .. } if flow.symbols[*symbol].kind != SymKind::Broken => Some(*span),
        _ => None,
    }
}

/// The edits renaming the symbol under the cursor to `new`, or why not.
pub fn rename(target: &Target, new: &str) -> Result<Vec<Span>, String> {
    let Target::Symbol { flow, symbol, .. } = target else {
        return Err("only inputs, secrets, lets, tasks and loop variables can be renamed".into());
    };
    let valid = new.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && new.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{new}` is not a name: use letters, digits and `_`, not starting with a digit"
        ));
    }
    if is_keyword(new) {
        return Err(format!("`{new}` is a keyword"));
    }
    if let Some(other) = taken(flow, *symbol, new) {
        return Err(format!("`{new}` is already the name of {other} in this flow"));
    }
    Ok(references(target, true))
}

fn taken(flow: &FlowInfo, symbol: usize, new: &str) -> Option<String> {
    flow.symbols
        .iter()
        .enumerate()
        .find(|(i, s)| *i != symbol && s.name == new)
        .map(|(_, s)| format!("{} {}", article(s.kind.noun()), s.kind.noun()))
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
