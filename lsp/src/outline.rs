//! Document symbols: flows and what they declare, blocks nested as in the
//! text.

use kflow_compiler::grammar::ast::{self, Item};
use kflow_compiler::Span;
use tower_lsp_server::ls_types::{DocumentSymbol, SymbolKind};

use crate::document::Snapshot;

pub fn symbols(file: &ast::File, snap: &Snapshot) -> Vec<DocumentSymbol> {
    file.flows
        .iter()
        .map(|f| {
            symbol(
                snap,
                &f.name.name,
                None,
                SymbolKind::MODULE,
                f.span,
                f.name.span,
                items(&f.items, snap),
            )
        })
        .collect()
}

#[allow(deprecated)] // `deprecated` is a required field of the type
fn symbol(
    snap: &Snapshot,
    name: &str,
    detail: Option<String>,
    kind: SymbolKind,
    span: Span,
    name_span: Span,
    children: Vec<DocumentSymbol>,
) -> DocumentSymbol {
    DocumentSymbol {
        name: name.to_string(),
        detail,
        kind,
        tags: None,
        deprecated: None,
        range: snap.index.range(&snap.text, span),
        selection_range: snap.index.range(&snap.text, name_span),
        children: (!children.is_empty()).then_some(children),
    }
}

fn items(items: &[Item], snap: &Snapshot) -> Vec<DocumentSymbol> {
    let text = |s: Span| snap.text[s.start..s.end].to_string();
    let leaf = |name: &ast::Ident, detail: Option<String>, kind: SymbolKind, span: Span| {
        symbol(snap, &name.name, detail, kind, span, name.span, vec![])
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Item::Input(i) => out.push(leaf(&i.name, Some(text(i.ty.span())), SymbolKind::VARIABLE, i.span)),
            Item::Secret(s) => out.push(leaf(&s.name, Some("secret".into()), SymbolKind::KEY, s.span)),
            Item::Let(l) => out.push(leaf(&l.name, None, SymbolKind::CONSTANT, l.span)),
            Item::Task(t) => out.push(leaf(&t.name, Some(t.kind.name.clone()), SymbolKind::FUNCTION, t.span)),
            Item::Output(o) => out.push(leaf(&o.name, Some("output".into()), SymbolKind::PROPERTY, o.span)),
            Item::Try(t) => {
                let parts = [
                    ("try", Some(&t.body)),
                    ("catch", t.catch.as_ref()),
                    ("finally", t.finally.as_ref()),
                ];
                for (name, block) in parts {
                    if let Some(b) = block {
                        let head = if name == "try" {
                            t.keyword
                        } else {
                            Span::new(b.span.start, b.span.start + 1)
                        };
                        out.push(symbol(
                            snap,
                            name,
                            None,
                            SymbolKind::NAMESPACE,
                            b.span.to(head),
                            head,
                            self::items(&b.items, snap),
                        ));
                    }
                }
            }
            Item::For(f) => {
                let name = format!("for {} in {}", f.var.name, text(f.iter.span));
                out.push(symbol(
                    snap,
                    &name,
                    None,
                    SymbolKind::NAMESPACE,
                    f.span,
                    f.var.span,
                    self::items(&f.body.items, snap),
                ));
            }
            Item::On(_) | Item::Concurrency(_) | Item::Assert(_) | Item::Error(_) => {}
        }
    }
    out
}
