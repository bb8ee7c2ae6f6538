//! Hover: the type and documentation of what is under the cursor.

use kflow_compiler::analysis::SymKind;
use kflow_compiler::catalog::{self, Kind, Prop};

use crate::at::Target;

/// Markdown for a target.
pub fn markdown(target: &Target) -> String {
    match target {
        Target::Symbol {
            flow, symbol, ty_here, ..
        } => {
            let s = &flow.symbols[*symbol];
            let mut head = match (s.kind, s.task_kind) {
                (SymKind::Task, Some(k)) => format!("task {}: {}", s.name, k.name),
                _ => format!("{} {}: {}", s.kind.noun(), s.name, s.ty),
            };
            if let Some(ty) = ty_here.filter(|t| **t != s.ty && s.kind != SymKind::Task) {
                head.push_str(&format!("\n// here: {ty}"));
            }
            let mut md = format!("```kflow\n{head}\n```");
            if let Some(doc) = &s.doc {
                md.push_str(&format!("\n{doc}"));
            }
            if let Some(k) = s.task_kind {
                md.push_str(&format!("\n\n{}", k.doc));
            }
            md
        }
        Target::Kind { kind, .. } => kind_markdown(kind),
        Target::Property { kind, prop, .. } => prop_markdown(*kind, prop),
        Target::Output { kind, out, .. } => {
            let whose = if catalog::is_common_output(out.name) {
                "every task".to_string()
            } else {
                format!("`{}`", kind.name)
            };
            format!(
                "```kflow\n{}: {}\n```\nOutput of {whose}.\n\n{}",
                out.name, out.ty, out.doc
            )
        }
        Target::Field { record, name, ty, .. } => {
            format!("```kflow\n{name}: {ty}\n```\nField of `{record}`.")
        }
        Target::Function { function, .. } => {
            format!("```kflow\n{}\n```\n{}", function.signature(), function.doc)
        }
        Target::BodyProperty { owner, prop, .. } => {
            let required = if prop.required { "Required" } else { "Optional" };
            format!(
                "```kflow\n{}: {}\n```\n{required} property of `{owner}`.\n\n{}",
                prop.name, prop.ty, prop.doc
            )
        }
        Target::TriggerField { trigger, field, .. } => {
            let whose = if field.providers.is_empty() {
                format!("every `{}` delivery", trigger.name)
            } else {
                format!("`{}` webhooks", field.providers.join("` and `"))
            };
            format!(
                "```kflow\ntrigger.{}: {}\n```\nField of {whose}.\n\n{}",
                field.name, field.ty, field.doc
            )
        }
        Target::Method { kind, method, .. } => {
            format!(
                "```kflow\n{}({}) -> {}\n```\nMethod of `{}`.\n\n{}",
                method.name,
                catalog::parameter_list(method.params),
                method.ret,
                kind.name,
                method.doc
            )
        }
    }
}

fn kind_markdown(k: &Kind) -> String {
    let mut md = format!("```kflow\ntask kind {}\n```\n{}", k.name, k.doc);
    let props: Vec<String> = k
        .props
        .iter()
        .map(|p| {
            format!(
                "- `{}: {}`{}",
                p.name,
                p.ty,
                if p.required { " (required)" } else { "" }
            )
        })
        .collect();
    if !props.is_empty() {
        md.push_str(&format!("\n\nProperties:\n{}", props.join("\n")));
    }
    let outs: Vec<String> = k.all_outputs().map(|o| format!("- `{}: {}`", o.name, o.ty)).collect();
    if !outs.is_empty() {
        md.push_str(&format!("\n\nOutputs:\n{}", outs.join("\n")));
    }
    md
}

fn prop_markdown(kind: Option<&Kind>, p: &Prop) -> String {
    let owner = kind.map_or("every task".to_string(), |k| format!("`{}`", k.name));
    let required = if p.required { "Required" } else { "Optional" };
    format!(
        "```kflow\n{}: {}\n```\n{required} property of {owner}.\n\n{}",
        p.name, p.ty, p.doc
    )
}
