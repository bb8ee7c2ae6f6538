//! Silencing lints: `// kflow:allow(latest-tag, unused)` on its own line
//! silences those warnings in the next item or property; at the end of a line
//! it silences them on that line. `kflow check --allow NAME` silences a lint
//! everywhere. Errors cannot be silenced.

use kflow_grammar::ast::{self, CommentKind, Item};
use kflow_grammar::diag::{Diagnostic, Severity, Span};

use crate::codes;

pub fn apply(src: &str, file: &ast::File, global: &[&str], diags: &mut Vec<Diagnostic>) {
    diags.retain(|d| d.severity == Severity::Error || !global.contains(&d.code));
    let mut anchors: Vec<Span> = Vec::new();
    for flow in &file.flows {
        collect(&flow.items, &mut anchors);
    }
    anchors.sort_by_key(|s| s.start);
    let mut rules: Vec<(Span, Vec<&'static str>)> = Vec::new();
    for c in &file.comments {
        if c.kind != CommentKind::Line {
            continue;
        }
        let Some(rest) = c.text.trim().strip_prefix("kflow:allow") else {
            continue;
        };
        let inner = rest.trim().trim_start_matches('(').trim_end_matches(')');
        let mut lints = Vec::new();
        for name in inner.split([',', ' ']).map(str::trim).filter(|n| !n.is_empty()) {
            match codes::resolve_lint(name) {
                Some(code) => lints.push(code),
                None => {
                    let lints = codes::CODES
                        .iter()
                        .filter(|c| c.severity == Severity::Warning)
                        .filter_map(|c| c.code.rsplit("::").next());
                    let help = match crate::suggest::did_you_mean(name, lints) {
                        Some(h) => h,
                        None => {
                            "lints are the `kflow::lint::*` codes, e.g. `latest-tag`; errors cannot be silenced".into()
                        }
                    };
                    diags.push(
                        Diagnostic::warning(codes::UNKNOWN_LINT, c.span, format!("`{name}` is not a lint"))
                            .with_label("cannot be allowed")
                            .with_help(help),
                    );
                }
            }
        }
        let line_start = src[..c.span.start].rfind('\n').map_or(0, |i| i + 1);
        let trailing = !src[line_start..c.span.start].trim().is_empty();
        let target = if trailing {
            Some(Span::new(line_start, c.span.end))
        } else {
            let i = anchors.partition_point(|s| s.start < c.span.end);
            anchors.get(i).copied()
        };
        if let Some(t) = target {
            rules.push((t, lints));
        }
    }
    diags.retain(|d| {
        d.severity == Severity::Error
            || !rules
                .iter()
                .any(|(span, lints)| lints.contains(&d.code) && span.start <= d.span.start && d.span.start <= span.end)
    });
}

fn collect(items: &[Item], out: &mut Vec<Span>) {
    for item in items {
        out.push(item.span());
        match item {
            Item::Task(t) => out.extend(t.props.iter().map(|p| p.span)),
            Item::Try(t) => {
                collect(&t.body.items, out);
                for b in [&t.catch, &t.finally].into_iter().flatten() {
                    collect(&b.items, out);
                }
            }
            Item::For(f) => collect(&f.body.items, out),
            _ => {}
        }
    }
}
