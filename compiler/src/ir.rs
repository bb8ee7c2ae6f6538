//! The intermediate representation the runtime executes: a [`Plan`] with one
//! node per task, typed property expressions (evaluated at run time),
//! dependency edges and scopes for try/catch/finally and for-loops.
//! It is plain serde data: `kflow graph --format json` prints it.

use std::collections::BTreeMap;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use crate::types::Ty;

pub const PLAN_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub flow: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    pub triggers: Vec<Trigger>,
    /// How many executions of the flow may run at once, and what a new one
    /// over the limit does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    pub inputs: Vec<InputDecl>,
    pub secrets: Vec<SecretDecl>,
    pub lets: Vec<LetDecl>,
    /// Indexed by id: `nodes[id].id == id`.
    pub nodes: Vec<Node>,
    /// Indexed by id: `scopes[id].id == id`.
    pub scopes: Vec<Scope>,
    pub outputs: Vec<OutputDecl>,
}

/// `on KIND "VALUE" { … }`: what starts the flow in `kflow serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trigger {
    /// `webhook`, `schedule` or `file`.
    pub kind: String,
    /// The webhook's name, the cron expression or the glob.
    pub value: String,
    /// A webhook's provider (`github`, `gitlab`, `standard`, `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The name of the `secret` item a webhook is verified with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Only these webhook events start an execution (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Reads `Expr::Trigger` fields and constants only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Expr>,
    /// Input name → its value, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<(String, Expr)>,
    /// A schedule's IANA zone (UTC when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A schedule's `none`, `last` or `all` (`last` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup: Option<String>,
    /// A file trigger's debounce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce_ms: Option<u64>,
    /// 1-based line of the trigger in the flow file.
    #[serde(default)]
    pub line: usize,
}

/// `concurrency { key, limit, on_conflict }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Concurrency {
    /// Evaluated with the inputs when an execution is started; the flow's
    /// name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Expr>,
    pub limit: u32,
    /// `queue`, `cancel_running` or `skip`.
    pub on_conflict: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputDecl {
    pub name: String,
    pub ty: Ty,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Expr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretDecl {
    pub name: String,
    /// `env` or `file`.
    pub source: String,
    /// The variable name or file path (never the secret itself).
    pub arg: Expr,
    /// Read only by triggers (a webhook's key): the server reads it, an
    /// execution never does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trigger_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LetDecl {
    pub name: String,
    pub ty: Ty,
    pub value: Expr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputDecl {
    pub name: String,
    pub ty: Ty,
    pub value: Expr,
}

pub type NodeId = usize;
pub type ScopeId = usize;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    /// A catalog kind (`docker.build`), or `assert`.
    pub kind: String,
    pub props: BTreeMap<String, Prop>,
    pub deps: Vec<Dep>,
    /// The innermost try/for scope holding the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Expr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Expr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Expr>,
    #[serde(default)]
    pub continue_on_error: bool,
    /// 1-based line of the task in the flow file.
    pub line: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prop {
    pub ty: Ty,
    pub value: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepKind {
    /// The node reads only the other's `outcome`: it waits for the other to
    /// end, whether it succeeded, failed or was skipped.
    Outcome,
    /// `after`: the other must succeed first.
    Order,
    /// The node reads the other's outputs (so it must succeed first).
    Data,
}

impl DepKind {
    /// Whether the other must have succeeded (or, where its outputs are
    /// optional, at least ended) for the node to run.
    pub fn needs_success(self) -> bool {
        self != DepKind::Outcome
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dep {
    pub node: NodeId,
    pub kind: DepKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Try,
    Catch,
    Finally,
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRef {
    pub scope: ScopeId,
    pub part: Part,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scope {
    pub id: ScopeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ScopeRef>,
    #[serde(flatten)]
    pub kind: ScopeKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScopeKind {
    /// `catch` starts when a `try` node failed; `finally` once every `try`
    /// node settled. Nodes outside that read a `try` node need all of them
    /// to succeed.
    Try {
        body: Vec<NodeId>,
        catch: Vec<NodeId>,
        finally: Vec<NodeId>,
    },
    /// The body nodes are templates, instantiated per item of `iter`.
    For { var: String, iter: Expr, body: Vec<NodeId> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Coalesce,
    At,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Expr {
    Str {
        value: String,
    },
    Int {
        value: i64,
    },
    Bool {
        value: bool,
    },
    Duration {
        ms: u64,
    },
    Enum {
        value: String,
    },
    Interp {
        parts: Vec<Expr>,
    },
    Input {
        name: String,
    },
    Secret {
        name: String,
    },
    Let {
        name: String,
    },
    LoopVar {
        name: String,
    },
    /// A task's output; for a task inside a for-loop read from outside it,
    /// the list of that output over all iterations.
    Output {
        task: String,
        field: String,
    },
    Task {
        name: String,
    },
    /// A field of the delivery that started the execution (`trigger.tag`),
    /// in a trigger's `when` and `inputs` only.
    Trigger {
        field: String,
    },
    /// `pinned.repo`, `pinned.digest`; a key of a JSON value.
    Field {
        base: Box<Expr>,
        field: String,
    },
    List {
        items: Vec<Expr>,
    },
    Map {
        entries: Vec<(String, Expr)>,
    },
    Not {
        expr: Box<Expr>,
    },
    Binary {
        bin: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// Built-ins: `digest`, `pinned`, `ref`, `docker_config`, `helper`.
    Call {
        func: String,
        args: Vec<Expr>,
    },
    /// A task method such as `stack.port("app", 8080)`.
    Method {
        task: String,
        method: String,
        args: Vec<Expr>,
    },
    /// Stands for something already diagnosed; a plan with errors never runs.
    Invalid,
}

impl Plan {
    /// Each trigger's name, in order: a webhook's own name, else its kind
    /// (`schedule`), numbered from the second of a kind on (`schedule-2`).
    pub fn trigger_names(&self) -> Vec<String> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        self.triggers
            .iter()
            .map(|t| {
                if t.kind == "webhook" {
                    return t.value.clone();
                }
                let n = seen.entry(t.kind.as_str()).or_default();
                *n += 1;
                if *n == 1 {
                    t.kind.clone()
                } else {
                    format!("{}-{n}", t.kind)
                }
            })
            .collect()
    }

    /// The trigger named `name` (see [`Plan::trigger_names`]).
    pub fn trigger(&self, name: &str) -> Option<&Trigger> {
        let i = self.trigger_names().iter().position(|n| n == name)?;
        self.triggers.get(i)
    }

    /// The dependency graph (edge `a → b`: `b` waits for `a`), including the
    /// implicit edges of scopes: `catch`/`finally` nodes wait for the `try`
    /// block to settle.
    pub fn graph(&self) -> DiGraph<NodeId, DepKind> {
        let mut g = DiGraph::with_capacity(self.nodes.len(), self.nodes.len() * 2);
        let idx: Vec<NodeIndex> = self.nodes.iter().map(|n| g.add_node(n.id)).collect();
        for n in &self.nodes {
            for d in &n.deps {
                g.add_edge(idx[d.node], idx[n.id], d.kind);
            }
        }
        for s in &self.scopes {
            if let ScopeKind::Try { body, catch, finally } = &s.kind {
                for &b in body {
                    for &c in catch.iter().chain(finally) {
                        g.add_edge(idx[b], idx[c], DepKind::Order);
                    }
                }
            }
        }
        g
    }
}
