//! An execution's task graph as SVG, drawn from its plan: tasks in layers
//! by their dependencies (left to right), edges for data (solid) and
//! `after`/outcome (dashed), and the parts of `try`/`catch`/`finally` and
//! `for` loops as labelled groups around their tasks. Each task is a link
//! to its section of the page and carries `data-task`, so the page's
//! script can recolour it as its state changes.

use std::collections::{BTreeMap, HashMap};

use kflow_compiler::ir::{DepKind, NodeId, Part, Plan, ScopeKind};
use maud::{html, Markup};

const W: f64 = 190.0;
const H: f64 = 34.0;
const GAP_X: f64 = 70.0;
const GAP_Y: f64 = 22.0;
const PAD: f64 = 14.0;

/// The state shown for each node: the task run's, or for a loop's task
/// the worst of its iterations'.
pub fn node_states(plan: &Plan, runs: &BTreeMap<String, String>) -> Vec<String> {
    plan.nodes
        .iter()
        .map(|n| {
            let prefix = format!("{}[", n.name);
            let mut states = runs
                .iter()
                .filter(|(run, _)| **run == n.name || run.starts_with(&prefix))
                .map(|(_, s)| s.as_str());
            let mut worst = match states.next() {
                Some(s) => s,
                None => return "pending".to_string(),
            };
            for s in states {
                if rank(s) > rank(worst) {
                    worst = s;
                }
            }
            worst.to_string()
        })
        .collect()
}

fn rank(state: &str) -> u8 {
    match state {
        "failed" => 6,
        "running" => 5,
        "paused" => 4,
        "cancelled" => 3,
        "pending" => 2,
        "skipped" => 1,
        _ => 0,
    }
}

/// Each node's layer: one past its furthest predecessor, where `catch`
/// follows its `try` body and `finally` both.
fn layers(plan: &Plan, paths: &[Vec<(usize, u8)>]) -> Vec<usize> {
    let n = plan.nodes.len();
    let mut preds: Vec<Vec<NodeId>> = plan
        .nodes
        .iter()
        .map(|node| node.deps.iter().map(|d| d.node).filter(|&d| d < n).collect())
        .collect();
    for scope in &plan.scopes {
        if let ScopeKind::Try { .. } = &scope.kind {
            let body = inside(plan, paths, scope.id, Part::Try);
            let catch = inside(plan, paths, scope.id, Part::Catch);
            let finally = inside(plan, paths, scope.id, Part::Finally);
            for &c in &catch {
                preds[c].extend(body.iter().copied());
            }
            for &f in &finally {
                preds[f].extend(body.iter().chain(&catch).copied());
            }
        }
    }
    // Kahn's order; a cycle (never in a checked plan) leaves layer 0.
    let mut indegree: Vec<usize> = preds.iter().map(Vec::len).collect();
    let mut succs: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for (node, ps) in preds.iter().enumerate() {
        for &p in ps {
            succs[p].push(node);
        }
    }
    let mut layer = vec![0usize; n];
    let mut ready: Vec<NodeId> = (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(node) = ready.pop() {
        for &s in &succs[node] {
            layer[s] = layer[s].max(layer[node] + 1);
            indegree[s] -= 1;
            if indegree[s] == 0 {
                ready.push(s);
            }
        }
    }
    layer
}

/// The nodes inside one part of a scope, nested scopes' included.
fn inside(plan: &Plan, paths: &[Vec<(usize, u8)>], scope: usize, part: Part) -> Vec<NodeId> {
    (0..plan.nodes.len())
        .filter(|&n| paths[n].contains(&(scope, part as u8)))
        .collect()
}

/// The chain of (scope, part) a node sits in, outermost first: nodes of one
/// group sort together.
fn path(plan: &Plan, node: NodeId) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let mut at = plan.nodes[node].scope;
    let mut guard = 0;
    while let Some(s) = at {
        out.push((s.scope, s.part as u8));
        at = plan.scopes.get(s.scope).and_then(|sc| sc.parent);
        guard += 1;
        if guard > plan.scopes.len() {
            break;
        }
    }
    out.reverse();
    out
}

pub fn render(plan: &Plan, states: &[String]) -> Markup {
    let paths: Vec<Vec<(usize, u8)>> = (0..plan.nodes.len()).map(|n| path(plan, n)).collect();
    let layer = layers(plan, &paths);
    let mut columns: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
    for (node, &l) in layer.iter().enumerate() {
        columns.entry(l).or_default().push(node);
    }
    let mut at: HashMap<NodeId, (f64, f64)> = HashMap::new();
    let mut height: f64 = 0.0;
    for (l, nodes) in &mut columns {
        nodes.sort_by_key(|&n| (paths[n].clone(), n));
        for (i, &n) in nodes.iter().enumerate() {
            let (x, y) = (PAD * 2.0 + *l as f64 * (W + GAP_X), PAD * 2.0 + i as f64 * (H + GAP_Y));
            at.insert(n, (x, y));
            height = height.max(y + H);
        }
    }
    let width = PAD * 4.0 + columns.len() as f64 * (W + GAP_X) - GAP_X;
    let height = height + PAD * 2.0;
    // Groups: each part of each scope, around its nodes (nested included).
    let mut groups = Vec::new();
    for scope in &plan.scopes {
        let parts: Vec<(Part, &str)> = match &scope.kind {
            ScopeKind::Try { .. } => vec![(Part::Try, "try"), (Part::Catch, "catch"), (Part::Finally, "finally")],
            ScopeKind::For { .. } => vec![(Part::Body, "for")],
        };
        for (part, word) in parts {
            let inside = inside(plan, &paths, scope.id, part);
            if inside.is_empty() {
                continue;
            }
            let depth = paths[inside[0]]
                .iter()
                .position(|p| *p == (scope.id, part as u8))
                .unwrap_or(0);
            let pad = PAD - depth as f64 * 3.0;
            let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
            for n in &inside {
                let (x, y) = at[n];
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + W);
                y1 = y1.max(y + H);
            }
            let label = match &scope.kind {
                ScopeKind::For { var, .. } => format!("for {var} in …"),
                _ => word.to_string(),
            };
            groups.push((
                x0 - pad,
                y0 - pad - 8.0,
                x1 - x0 + 2.0 * pad,
                y1 - y0 + 2.0 * pad + 8.0,
                label,
            ));
        }
    }
    html! {
        svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(format!("the task graph of {}", plan.flow))
            width=(width.ceil()) height=(height.ceil()) viewBox=(format!("0 0 {} {}", width.ceil(), height.ceil())) {
            @for (x, y, w, h, label) in &groups {
                g.group {
                    rect x=(x) y=(y) width=(w) height=(h) {}
                    text x=(x + 6.0) y=(y + 11.0) { (label) }
                }
            }
            @for node in &plan.nodes {
                @for dep in &node.deps {
                    @if let (Some(&(x0, y0)), Some(&(x1, y1))) = (at.get(&dep.node), at.get(&node.id)) {
                        path class=(match dep.kind { DepKind::Data => "edge data", _ => "edge order" })
                            d=(format!("M{:.0},{:.0} C{:.0},{:.0} {:.0},{:.0} {:.0},{:.0}",
                                x0 + W, y0 + H / 2.0, x0 + W + GAP_X / 2.0, y0 + H / 2.0,
                                x1 - GAP_X / 2.0, y1 + H / 2.0, x1, y1 + H / 2.0)) {}
                    }
                }
            }
            @for node in &plan.nodes {
                @let (x, y) = at[&node.id];
                @let state = states.get(node.id).map_or("pending", String::as_str);
                a href=(format!("#task-{}", node.name)) {
                    g class=(format!("node s-{state}")) data-task=(node.name) {
                        title { (node.name) " (" (node.kind) "): " (state) }
                        rect x=(x) y=(y) width=(W) height=(H) {}
                        text x=(x + 10.0) y=(y + 21.0) { (clip(&node.name, 24)) }
                    }
                }
            }
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
