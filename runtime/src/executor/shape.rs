//! The static shape of a plan as the executor walks it: the top level and one
//! level per `for` body. Each level is a graph of members — its tasks, and the
//! loops directly inside it — with what every member waits for. A loop is one
//! member of the level around it; each iteration runs the loop's level.

use std::collections::HashMap;

use kflow_compiler::ir::{DepKind, NodeId, Part, Plan, ScopeId, ScopeKind, ScopeRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Member {
    Node(NodeId),
    Loop(ScopeId),
}

/// A `catch` or `finally` member: which block it belongs to, and the members
/// of that block's `try` part.
pub(super) struct Guard {
    pub part: Part,
    pub try_members: Vec<usize>,
    /// Plan nodes of the `try` part: their outputs are optional here.
    pub try_nodes: Vec<NodeId>,
}

#[derive(Default)]
pub(super) struct Level {
    pub members: Vec<Member>,
    /// Per member: the members it waits for.
    pub pre: Vec<Vec<usize>>,
    /// Per member: the tasks it reads or follows, as (member, plan node,
    /// how it depends on it).
    pub deps: Vec<Vec<(usize, NodeId, DepKind)>>,
    pub guard: Vec<Option<Guard>>,
    /// Per member: whether it belongs to a `catch` or `finally` (at any depth),
    /// and so still runs when the flow stops.
    pub cleanup: Vec<bool>,
}

pub(super) struct Shape {
    /// Index 0 is the top level; then one per `for` scope.
    pub levels: Vec<Level>,
    level_of_loop: HashMap<ScopeId, usize>,
}

/// The `for` scopes around a scope reference, innermost first.
fn loops_around(plan: &Plan, mut at: Option<ScopeRef>) -> Vec<ScopeId> {
    let mut out = Vec::new();
    while let Some(r) = at {
        if matches!(plan.scopes[r.scope].kind, ScopeKind::For { .. }) {
            out.push(r.scope);
        }
        at = plan.scopes[r.scope].parent;
    }
    out
}

fn in_cleanup(plan: &Plan, mut at: Option<ScopeRef>) -> bool {
    while let Some(r) = at {
        if matches!(r.part, Part::Catch | Part::Finally) {
            return true;
        }
        at = plan.scopes[r.scope].parent;
    }
    false
}

impl Shape {
    pub fn of(plan: &Plan) -> Shape {
        let node_loops: Vec<Vec<ScopeId>> = plan.nodes.iter().map(|n| loops_around(plan, n.scope)).collect();
        let scope_loops: Vec<Vec<ScopeId>> = plan.scopes.iter().map(|s| loops_around(plan, s.parent)).collect();
        let mut level_of_loop = HashMap::new();
        let mut levels = vec![Level::default()];
        for s in &plan.scopes {
            if matches!(s.kind, ScopeKind::For { .. }) {
                level_of_loop.insert(s.id, levels.len());
                levels.push(Level::default());
            }
        }
        let level_index = |l: Option<&ScopeId>| l.map_or(0, |s| level_of_loop[s]);
        // Members, in plan order (a loop where its first task is).
        let mut firsts: Vec<(NodeId, usize, Member)> = Vec::new();
        for n in &plan.nodes {
            firsts.push((n.id, level_index(node_loops[n.id].first()), Member::Node(n.id)));
        }
        for s in &plan.scopes {
            if let ScopeKind::For { body, .. } = &s.kind {
                let first = body.first().copied().unwrap_or(usize::MAX);
                firsts.push((first, level_index(scope_loops[s.id].first()), Member::Loop(s.id)));
            }
        }
        firsts.sort_by_key(|&(first, _, m)| (first, matches!(m, Member::Node(_))));
        for &(_, level, member) in &firsts {
            levels[level].members.push(member);
        }
        let mut shape = Shape { levels, level_of_loop };
        for li in 0..shape.levels.len() {
            let level_loop = shape.level_of_loop.iter().find(|&(_, &l)| l == li).map(|(&s, _)| s);
            let index: HashMap<Member, usize> = shape.levels[li]
                .members
                .iter()
                .enumerate()
                .map(|(i, &m)| (m, i))
                .collect();
            // The member of this level that holds a node, if the node is in it.
            let member_of = |node: NodeId| -> Option<usize> {
                let chain = &node_loops[node];
                let m = match level_loop {
                    None => chain.last().map_or(Member::Node(node), |&outer| Member::Loop(outer)),
                    Some(l) => match chain.iter().position(|&s| s == l)? {
                        0 => Member::Node(node),
                        p => Member::Loop(chain[p - 1]),
                    },
                };
                index.get(&m).copied()
            };
            let members = shape.levels[li].members.clone();
            let level = &mut shape.levels[li];
            for (mi, &m) in members.iter().enumerate() {
                let (nodes, at): (Vec<NodeId>, Option<ScopeRef>) = match m {
                    Member::Node(n) => (vec![n], plan.nodes[n].scope),
                    Member::Loop(s) => match &plan.scopes[s].kind {
                        ScopeKind::For { body, .. } => (body.clone(), plan.scopes[s].parent),
                        ScopeKind::Try { .. } => unreachable!("members are tasks and loops"),
                    },
                };
                let mut deps: Vec<(usize, NodeId, DepKind)> = nodes
                    .iter()
                    .flat_map(|&n| plan.nodes[n].deps.iter())
                    .filter_map(|d| member_of(d.node).filter(|&dm| dm != mi).map(|dm| (dm, d.node, d.kind)))
                    .collect();
                deps.sort_unstable();
                deps.dedup();
                let guard = at.filter(|r| matches!(r.part, Part::Catch | Part::Finally)).map(|r| {
                    let try_nodes = match &plan.scopes[r.scope].kind {
                        ScopeKind::Try { body, .. } => body.clone(),
                        ScopeKind::For { .. } => Vec::new(),
                    };
                    let mut try_members: Vec<usize> = try_nodes.iter().filter_map(|&n| member_of(n)).collect();
                    try_members.sort_unstable();
                    try_members.dedup();
                    Guard {
                        part: r.part,
                        try_members,
                        try_nodes,
                    }
                });
                let mut pre: Vec<usize> = deps.iter().map(|&(dm, _, _)| dm).collect();
                if let Some(g) = &guard {
                    pre.extend_from_slice(&g.try_members);
                }
                pre.sort_unstable();
                pre.dedup();
                level.pre.push(pre);
                level.deps.push(deps);
                level.guard.push(guard);
                level.cleanup.push(in_cleanup(plan, at));
            }
        }
        shape
    }

    /// The level that runs a loop's iterations.
    pub fn level_of(&self, scope: ScopeId) -> usize {
        self.level_of_loop[&scope]
    }
}
