//! Dependency edges of the plan and cycle detection (petgraph).

use rustc_hash::{FxHashMap, FxHashSet};

use kflow_grammar::diag::{Diagnostic, Span};
use petgraph::algo::kosaraju_scc;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::{BlockRef, Checker};
use crate::codes;
use crate::ir::{self, DepKind, Part};

impl Checker<'_> {
    /// Resolves dependencies to nodes, adds whole-block dependencies, and
    /// reports cycles naming the tasks in order.
    pub(super) fn finish_graph(&mut self) {
        let n = self.plan.nodes.len();
        // Nodes of each `try` part, found once per scope (not once per read).
        let mut try_bodies: FxHashMap<ir::ScopeId, Vec<ir::NodeId>> = Default::default();
        for (i, path) in self.node_paths.iter().enumerate() {
            for b in path {
                if let BlockRef::Try(scope, Part::Try) = *b {
                    try_bodies.entry(scope).or_default().push(i);
                }
            }
        }
        let mut spans: FxHashMap<(ir::NodeId, ir::NodeId), Span> = Default::default();
        for id in 0..n {
            // Position of each target in `deps`: one dep per pair, the
            // strongest kind winning (data, then order, then outcome).
            let mut seen: FxHashMap<ir::NodeId, usize> = FxHashMap::default();
            let mut deps: Vec<ir::Dep> = Vec::new();
            let raw = std::mem::take(&mut self.node_deps[id]);
            for &(sym, kind, span) in &raw {
                let Some(&target) = self.node_of.get(&sym) else {
                    continue;
                };
                match seen.get(&target) {
                    Some(&at) => deps[at].kind = deps[at].kind.max(kind),
                    None => {
                        seen.insert(target, deps.len());
                        deps.push(ir::Dep { node: target, kind });
                        spans.entry((target, id)).or_insert(span);
                    }
                }
                // Reading a task inside a `try` from outside it waits for the
                // whole block to succeed (to end, when it reads only the
                // outcome).
                let implied = if kind == DepKind::Outcome {
                    DepKind::Outcome
                } else {
                    DepKind::Order
                };
                for b in &self.node_paths[target] {
                    if let BlockRef::Try(scope, Part::Try) = *b {
                        let reader_inside = self.node_paths[id]
                            .iter()
                            .any(|x| matches!(x, BlockRef::Try(s, _) if *s == scope));
                        if !reader_inside {
                            for &other in try_bodies.get(&scope).map_or(&[][..], Vec::as_slice) {
                                if other == target {
                                    continue;
                                }
                                match seen.get(&other) {
                                    Some(&at) => deps[at].kind = deps[at].kind.max(implied),
                                    None => {
                                        seen.insert(other, deps.len());
                                        deps.push(ir::Dep {
                                            node: other,
                                            kind: implied,
                                        });
                                        spans.entry((other, id)).or_insert(span);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            self.node_deps[id] = raw;
            self.plan.nodes[id].deps = deps;
        }
        self.report_cycles(&spans);
        self.placement(&spans);
    }

    fn report_cycles(&mut self, spans: &FxHashMap<(ir::NodeId, ir::NodeId), Span>) {
        let g = self.plan.graph();
        let mut found = Vec::new();
        // Kosaraju: iterative, so a 100,000-task chain cannot overflow the stack
        // (petgraph's Tarjan recurses once per node of a path).
        for scc in kosaraju_scc(&g) {
            let self_loop = scc.len() == 1 && g.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let members: FxHashSet<NodeIndex> = scc.iter().copied().collect();
            let start = *scc.iter().min_by_key(|i| g[**i]).expect("non-empty");
            let mut cycle: Vec<ir::NodeId> = cycle_from(&g, start, &members).into_iter().map(|i| g[i]).collect();
            // Edges point from a dependency to its dependant; name the cycle
            // the way it reads: `a -> b` = `a` needs `b`.
            cycle[1..].reverse();
            found.push(cycle);
        }
        found.sort();
        for cycle in found {
            let names: Vec<&str> = cycle.iter().map(|&i| self.plan.nodes[i].name.as_str()).collect();
            // A long cycle is named by its ends: the message stays readable
            // and rendering stays fast (every label costs the renderer).
            let mut text = if names.len() > CYCLE_SHOWN {
                let half = CYCLE_SHOWN / 2;
                format!(
                    "{} -> … {} more … -> {}",
                    names[..half].join(" -> "),
                    names.len() - 2 * half,
                    names[names.len() - half..].join(" -> ")
                )
            } else {
                names.join(" -> ")
            };
            text.push_str(" -> ");
            text.push_str(names[0]);
            let first = cycle[0];
            let mut d = Diagnostic::error(
                codes::CYCLE,
                self.node_spans[first],
                format!("dependency cycle: {text}"),
            )
            .with_label(format!("`{}` waits for itself", names[0]))
            .with_help("remove one of these dependencies (a reference or an `after` entry)");
            for w in 0..cycle.len().min(CYCLE_SHOWN) {
                let (needer, needed) = (cycle[w], cycle[(w + 1) % cycle.len()]);
                if let Some(span) = spans.get(&(needed, needer)) {
                    d = d.with_secondary(
                        *span,
                        format!(
                            "`{}` needs `{}` here",
                            self.plan.nodes[needer].name, self.plan.nodes[needed].name
                        ),
                    );
                }
            }
            self.push(d);
        }
    }
}

/// Tasks of a cycle named (and edges labelled) in its diagnostic.
const CYCLE_SHOWN: usize = 12;

/// A shortest path from `start` back to itself inside one strongly connected
/// component, as the list of nodes in dependency order.
fn cycle_from(
    g: &petgraph::graph::DiGraph<ir::NodeId, DepKind>,
    start: NodeIndex,
    members: &FxHashSet<NodeIndex>,
) -> Vec<NodeIndex> {
    let mut prev: FxHashMap<NodeIndex, NodeIndex> = Default::default();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(x) = queue.pop_front() {
        for e in g.edges(x) {
            let y = e.target();
            if !members.contains(&y) {
                continue;
            }
            if y == start {
                let mut path = vec![x];
                let mut cur = x;
                while cur != start {
                    cur = prev[&cur];
                    path.push(cur);
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = prev.entry(y) {
                v.insert(x);
                queue.push_back(y);
            }
        }
    }
    vec![start]
}
