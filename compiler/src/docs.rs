//! The generated parts of the language reference: the task catalog and the
//! diagnostic codes with an example each. `kflow docs` prints them;
//! `docs/language.md` embeds them (a test keeps it current).

use std::fmt::Write;

use kflow_grammar::diag::Severity;

use crate::analysis::{analyze, Files, Options};
use crate::catalog::{self, COMMON, COMMON_OUTPUTS, KINDS};
use crate::codes::CODES;
use crate::functions::FUNCTIONS;
use crate::render::{human, FileReport, HumanStyle};
use crate::triggers::{self, TRIGGERS};

mod examples {
    include!(concat!(env!("OUT_DIR"), "/examples.rs"));
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn ty_cell(spec: &'static str) -> String {
    format!("`{}`", cell(&catalog::ty(spec).to_string()))
}

/// Markdown for every task kind: properties and outputs with types and docs.
pub fn catalog_markdown() -> String {
    let mut s = String::new();
    let _ = writeln!(s, "#### Common properties\n");
    let _ = writeln!(s, "Every task accepts these.\n");
    let _ = writeln!(s, "| property | type | meaning |\n|---|---|---|");
    for p in COMMON {
        let _ = writeln!(s, "| `{}` | {} | {} |", p.name, ty_cell(p.ty), cell(p.doc));
    }
    let _ = writeln!(s, "\nEvery task has these outputs, whatever its kind.\n");
    let _ = writeln!(s, "| output | type | meaning |\n|---|---|---|");
    for o in COMMON_OUTPUTS {
        let _ = writeln!(s, "| `{}` | {} | {} |", o.name, ty_cell(o.ty), cell(o.doc));
    }
    for k in KINDS {
        let _ = writeln!(s, "\n#### `{}`\n\n{}\n", k.name, k.doc);
        let _ = writeln!(s, "| property | type | | meaning |\n|---|---|---|---|");
        for p in k.props {
            let req = if p.required {
                "required"
            } else if k.one_of.contains(&p.name) {
                "one of"
            } else {
                "optional"
            };
            let _ = writeln!(s, "| `{}` | {} | {req} | {} |", p.name, ty_cell(p.ty), cell(p.doc));
        }
        if !k.one_of.is_empty() {
            let names: Vec<String> = k.one_of.iter().map(|n| format!("`{n}`")).collect();
            let _ = writeln!(s, "\nExactly one of {} is required.", names.join(" and "));
        }
        if k.outputs.is_empty() && k.methods.is_empty() {
            let _ = writeln!(s, "\nNo outputs: wait for it with `after: [name]`.");
            continue;
        }
        let _ = writeln!(s, "\n| output | type | meaning |\n|---|---|---|");
        for o in k.outputs {
            let _ = writeln!(s, "| `{}` | {} | {} |", o.name, ty_cell(o.ty), cell(o.doc));
        }
        for m in k.methods {
            let _ = writeln!(
                s,
                "| `{}({})` | {} | {} |",
                m.name,
                catalog::parameter_list(m.params),
                ty_cell(m.ret),
                cell(m.doc)
            );
        }
    }
    s
}

/// Markdown for the trigger kinds (argument, body properties, fields) and
/// for `concurrency`.
pub fn triggers_markdown() -> String {
    let mut s = String::new();
    let props = |s: &mut String, props: &mut dyn Iterator<Item = &catalog::Prop>| {
        let _ = writeln!(s, "| property | type | | meaning |\n|---|---|---|---|");
        for p in props {
            let req = if p.required { "required" } else { "optional" };
            let ty = format!("`{}`", cell(&crate::types::parse_spec(p.ty).to_string()));
            let _ = writeln!(s, "| `{}` | {ty} | {req} | {} |", p.name, cell(p.doc));
        }
    };
    for t in TRIGGERS {
        let _ = writeln!(s, "#### `on {}`\n\n{} Its argument is {}.\n", t.name, t.doc, t.arg);
        props(&mut s, &mut t.props.iter().chain(triggers::COMMON));
        let _ = writeln!(s, "\n| field | type | meaning |\n|---|---|---|");
        for f in t.fields {
            let only = if f.providers.is_empty() {
                String::new()
            } else {
                format!(" ({} only)", f.providers.join(" and "))
            };
            let ty = format!("`{}`", cell(&f.ty().to_string()));
            let _ = writeln!(s, "| `trigger.{}` | {ty} | {}{only} |", f.name, cell(f.doc));
        }
        s.push('\n');
    }
    let _ = writeln!(s, "#### `concurrency`\n");
    props(&mut s, &mut triggers::CONCURRENCY.iter());
    s
}

/// Markdown for the built-in functions: signature and meaning.
pub fn functions_markdown() -> String {
    let mut s = String::from("| function | returns | meaning |\n|---|---|---|\n");
    for f in FUNCTIONS {
        let _ = writeln!(
            s,
            "| `{}({})` | {} | {} |",
            f.name,
            cell(&catalog::parameter_list(f.params)),
            ty_cell(f.ret),
            cell(f.doc)
        );
    }
    s
}

/// The examples see a file system in which only paths naming `no-such`
/// are missing.
fn examples_options() -> Options {
    Options {
        files: Files::Virtual(|path| !path.contains("no-such")),
        allow: Vec::new(),
    }
}

/// Markdown for every diagnostic code, with its fixture and the report.
pub fn diagnostics_markdown() -> String {
    let mut s = String::new();
    for c in CODES {
        let sev = match c.severity {
            Severity::Error => "error",
            Severity::Warning => "warning (lint)",
        };
        let _ = writeln!(s, "#### `{}`\n\n*{sev}* — {}\n", c.code, c.summary);
        let Some((_, src)) = examples::EXAMPLES.iter().find(|(code, _)| *code == c.code) else {
            continue;
        };
        let shown = if src.len() > 1_000 {
            let cut = src.char_indices().nth(160).map_or(src.len(), |(i, _)| i);
            format!("{}…\n", &src[..cut])
        } else {
            src.to_string()
        };
        let a = analyze(src, &examples_options());
        let report = FileReport {
            path: "example.kflow",
            src,
            diagnostics: &a.diagnostics,
        };
        let rendered = human(
            &report,
            HumanStyle {
                color: false,
                width: 90,
            },
        );
        let _ = writeln!(s, "```kflow\n{}```\n", shown);
        let _ = writeln!(
            s,
            "```text\n{}```\n",
            rendered.trim_end_matches('\n').to_string() + "\n"
        );
    }
    s
}
