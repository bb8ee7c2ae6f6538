//! Renderings of a plan's task graph: Graphviz DOT and Mermaid. Try and for
//! scopes become clusters / subgraphs; `after` edges are dashed.

use std::fmt::Write;

use crate::ir::{DepKind, Part, Plan, ScopeKind};

fn scope_title(plan: &Plan, id: usize) -> String {
    match &plan.scopes[id].kind {
        ScopeKind::Try { .. } => format!("try #{id}"),
        ScopeKind::For { var, .. } => format!("for {var}"),
    }
}

/// A scope and which part of it; `None` is the top level of the flow.
type Place = Option<(usize, Part)>;

/// Nodes directly in each place, in order.
fn groups(plan: &Plan) -> Vec<(Place, Vec<usize>)> {
    let mut out: Vec<(Place, Vec<usize>)> = Vec::new();
    for n in &plan.nodes {
        let key = n.scope.map(|s| (s.scope, s.part));
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(n.id),
            None => out.push((key, vec![n.id])),
        }
    }
    out
}

fn part_name(p: Part) -> &'static str {
    match p {
        Part::Try => "try",
        Part::Catch => "catch",
        Part::Finally => "finally",
        Part::Body => "body",
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", quote(&plan.flow));
    let _ = writeln!(s, "  rankdir=LR;");
    let _ = writeln!(s, "  node [shape=box, style=rounded, fontname=\"Helvetica\"];");
    for (key, nodes) in groups(plan) {
        let indent = if key.is_some() { "    " } else { "  " };
        if let Some((scope, part)) = key {
            let _ = writeln!(s, "  subgraph \"cluster_{scope}_{}\" {{", part_name(part));
            let label = match part {
                Part::Body => scope_title(plan, scope),
                p => format!("{} · {}", scope_title(plan, scope), part_name(p)),
            };
            let _ = writeln!(s, "    label=\"{}\"; style=dashed;", quote(&label));
        }
        for id in nodes {
            let n = &plan.nodes[id];
            let _ = writeln!(
                s,
                "{indent}\"{}\" [label=\"{}\\n{}\"];",
                quote(&n.name),
                quote(&n.name),
                quote(&n.kind)
            );
        }
        if key.is_some() {
            let _ = writeln!(s, "  }}");
        }
    }
    for n in &plan.nodes {
        for d in &n.deps {
            // Solid edges carry data; dashed ones order, dotted ones wait
            // for an outcome.
            let style = match d.kind {
                DepKind::Data => "",
                DepKind::Order => " [style=dashed]",
                DepKind::Outcome => " [style=dotted]",
            };
            let _ = writeln!(
                s,
                "  \"{}\" -> \"{}\"{style};",
                quote(&plan.nodes[d.node].name),
                quote(&n.name)
            );
        }
    }
    s.push_str("}\n");
    s
}

pub fn mermaid(plan: &Plan) -> String {
    let mut s = String::from("flowchart LR\n");
    let id = |i: usize| format!("n{i}");
    for (key, nodes) in groups(plan) {
        let indent = if key.is_some() { "    " } else { "  " };
        if let Some((scope, part)) = key {
            let label = match part {
                Part::Body => scope_title(plan, scope),
                p => format!("{} · {}", scope_title(plan, scope), part_name(p)),
            };
            let _ = writeln!(
                s,
                "  subgraph s{scope}_{}[\"{}\"]",
                part_name(part),
                label.replace('"', "#quot;")
            );
        }
        for nid in nodes {
            let n = &plan.nodes[nid];
            let _ = writeln!(s, "{indent}{}[\"{}<br/><small>{}</small>\"]", id(nid), n.name, n.kind);
        }
        if key.is_some() {
            let _ = writeln!(s, "  end");
        }
    }
    for n in &plan.nodes {
        for d in &n.deps {
            let arrow = if d.kind == DepKind::Data { "-->" } else { "-.->" };
            let _ = writeln!(s, "  {} {arrow} {}", id(d.node), id(n.id));
        }
    }
    s
}
