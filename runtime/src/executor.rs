//! The executor: runs a plan's nodes as soon as their dependencies settle,
//! up to `jobs` at once, with try/catch/finally, `when`, `continue_on_error`,
//! retries and per-attempt timeouts.
//!
//! Failure policy: a task that fails (without `continue_on_error`) fails the
//! flow; its dependants are skipped, tasks not yet started are not started,
//! and tasks already running are left to finish, so no side effect is cut in
//! half. `catch` and `finally` tasks still run as their blocks require.
//!
//! For-loops are not expanded by this executor yet: a plan with a `for`
//! block is refused before anything runs.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kflow_compiler::ir::{Node, NodeId, Part, Plan, ScopeKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::eval::{eval, EvalError, Scope};
use crate::secret::{Redactor, Secret};
use crate::tasks::{self, LogLine, Outputs, Props, TaskContext, TaskError};
use crate::value::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl State {
    pub fn settled(self) -> bool {
        !matches!(self, State::Pending | State::Running)
    }
}

/// What an execution reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        node: NodeId,
        attempt: u32,
    },
    Log {
        node: NodeId,
        line: LogLine,
    },
    Retrying {
        node: NodeId,
        attempt: u32,
        error: String,
        delay: Duration,
    },
    Finished {
        node: NodeId,
        state: State,
        error: Option<String>,
        elapsed: Duration,
        /// The output record of a task that succeeded (secrets written `***`).
        outputs: Option<serde_json::Value>,
    },
}

pub struct RunEnv {
    pub inputs: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
    pub base_dir: PathBuf,
    pub jobs: usize,
    /// Cancelling it stops the execution: running tasks are cancelled, then
    /// `finally` blocks run.
    pub cancel: CancellationToken,
}

#[derive(Debug)]
pub struct Report {
    pub states: Vec<State>,
    pub errors: Vec<Option<String>>,
    pub attempts: Vec<u32>,
    /// The flow's outputs (absent ones are `Value::Missing`).
    pub outputs: BTreeMap<String, Value>,
    /// The first failure that failed the flow, then failures of cleanup tasks.
    pub failures: Vec<String>,
    pub cancelled: bool,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty() && !self.cancelled
    }

    /// The execution's final state, as recorded and printed.
    pub fn outcome(&self) -> &'static str {
        if self.cancelled {
            "interrupted"
        } else if self.succeeded() {
            "succeeded"
        } else {
            "failed"
        }
    }
}

/// Everything evaluation needs while the flow runs.
struct Values<'p> {
    plan: &'p Plan,
    inputs: BTreeMap<String, Value>,
    secrets: BTreeMap<String, Secret>,
    outputs: Vec<Option<Outputs>>,
    lets: std::cell::RefCell<BTreeMap<String, Value>>,
}

impl Scope for Values<'_> {
    fn input(&self, name: &str) -> Option<Value> {
        self.inputs.get(name).cloned()
    }
    fn secret(&self, name: &str) -> Option<Value> {
        self.secrets.get(name).map(|s| Value::Secret(s.clone()))
    }
    fn let_value(&self, name: &str) -> Result<Value, EvalError> {
        if let Some(v) = self.lets.borrow().get(name) {
            return Ok(v.clone());
        }
        let decl = self
            .plan
            .lets
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| EvalError(format!("no let `{name}`")))?;
        let v = eval(&decl.value, self)?;
        self.lets.borrow_mut().insert(name.to_string(), v.clone());
        Ok(v)
    }
    fn loop_var(&self, _: &str) -> Option<Value> {
        None
    }
    fn outputs(&self, task: &str) -> Option<Value> {
        let node = self.plan.nodes.iter().find(|n| n.name == task)?;
        let out = self.outputs[node.id].as_ref()?;
        Some(Value::Map(out.clone()))
    }
}

/// The retry policy of a node.
struct Retry {
    attempts: u32,
    delay: Duration,
    exponential: bool,
    max_delay: Option<Duration>,
}

impl Retry {
    fn of(node: &Node, values: &Values) -> Result<Retry, EvalError> {
        let mut r = Retry {
            attempts: 1,
            delay: Duration::ZERO,
            exponential: false,
            max_delay: None,
        };
        let Some(expr) = &node.retry else { return Ok(r) };
        let Value::Map(m) = eval(expr, values)? else {
            return Ok(r);
        };
        // A `retry` without `attempts` retries twice (three attempts in all).
        r.attempts = match m.get("attempts") {
            Some(Value::Int(n)) => (*n).clamp(1, 1_000) as u32,
            _ => 3,
        };
        if let Some(Value::Duration(ms)) = m.get("delay") {
            r.delay = Duration::from_millis(*ms);
        }
        r.exponential = matches!(m.get("backoff"), Some(Value::Enum(b)) if b == "exponential");
        if let Some(Value::Duration(ms)) = m.get("max_delay") {
            r.max_delay = Some(Duration::from_millis(*ms));
        }
        Ok(r)
    }

    /// The pause before attempt `next` (2, 3, …).
    fn delay_before(&self, next: u32) -> Duration {
        let d = if self.exponential {
            self.delay.saturating_mul(2u32.saturating_pow(next.saturating_sub(2)))
        } else {
            self.delay
        };
        self.max_delay.map_or(d, |m| d.min(m))
    }
}

/// Runs one node: evaluates its properties, then its attempts.
async fn run_node(
    node: Node,
    props: Props,
    retry: Retry,
    timeout: Option<Duration>,
    ctx: TaskContext,
    events: mpsc::UnboundedSender<Event>,
) -> (Result<Outputs, TaskError>, u32) {
    let mut attempt = 1;
    loop {
        let _ = events.send(Event::Started { node: node.id, attempt });
        let attempt_ctx = TaskContext {
            cancel: ctx.cancel.child_token(),
            ..ctx.clone()
        };
        let result = match timeout {
            None => dispatch(&node, &props, &attempt_ctx).await,
            Some(limit) => {
                let run = dispatch(&node, &props, &attempt_ctx);
                tokio::pin!(run);
                tokio::select! {
                    r = &mut run => r,
                    _ = tokio::time::sleep(limit) => {
                        // Cancel the attempt and let it clean up (kill its processes).
                        attempt_ctx.cancel.cancel();
                        let _ = run.await;
                        Err(TaskError::Failed(format!("timed out after {}", crate::value::format_duration(limit.as_millis() as u64))))
                    }
                }
            }
        };
        match result {
            Err(TaskError::Failed(e)) if attempt < retry.attempts && !ctx.cancel.is_cancelled() => {
                attempt += 1;
                let delay = retry.delay_before(attempt);
                let _ = events.send(Event::Retrying {
                    node: node.id,
                    attempt,
                    error: e,
                    delay,
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.cancel.cancelled() => return (Err(TaskError::Cancelled), attempt - 1),
                }
            }
            other => return (other, attempt),
        }
    }
}

/// Task kinds this executor can run (the others are refused before a run).
pub const RUNNABLE_KINDS: &[&str] = &["shell.run", "log", "sleep", "assert"];

/// Why a plan cannot run with this executor, if it cannot.
pub fn unsupported(plan: &Plan) -> Option<String> {
    let mut kinds: Vec<&str> = plan
        .nodes
        .iter()
        .map(|n| n.kind.as_str())
        .filter(|k| !RUNNABLE_KINDS.contains(k))
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let loops = plan.scopes.iter().any(|s| matches!(s.kind, ScopeKind::For { .. }));
    match (kinds.is_empty(), loops) {
        (true, false) => None,
        (true, true) => Some("`for` blocks cannot run in this version of kflow yet".into()),
        (false, _) => Some(format!(
            "these task kinds cannot run in this version of kflow yet: {} (runnable: {})",
            kinds.join(", "),
            RUNNABLE_KINDS.join(", ")
        )),
    }
}

async fn dispatch(node: &Node, props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    match node.kind.as_str() {
        "shell.run" => tasks::shell::run(props, ctx).await,
        "log" => tasks::basic::log(props, ctx).await,
        "sleep" => tasks::basic::sleep(props, ctx).await,
        "assert" => match props.get("condition") {
            Some(Value::Bool(true)) => Ok(Outputs::new()),
            _ => {
                let msg = props.get("message").and_then(Value::to_text);
                Err(TaskError::Failed(msg.unwrap_or_else(|| "assertion failed".into())))
            }
        },
        kind => Err(TaskError::Failed(format!(
            "task kind `{kind}` cannot run in this version of kflow"
        ))),
    }
}

/// What to do with a node whose prerequisites have all settled.
enum Readiness {
    Skip,
    Ready,
}

pub async fn execute(plan: &Plan, env: RunEnv, events: mpsc::UnboundedSender<Event>) -> Report {
    let n = plan.nodes.len();
    let mut attempts = vec![0u32; n];
    let mut redactor = Redactor::default();
    for s in env.secrets.values() {
        redactor.add(s);
    }
    let redactor = Arc::new(redactor);
    let mut values = Values {
        plan,
        inputs: env.inputs,
        secrets: env.secrets,
        outputs: vec![None; n],
        lets: Default::default(),
    };
    if plan.scopes.iter().any(|s| matches!(s.kind, ScopeKind::For { .. })) {
        return Report {
            states: vec![State::Pending; n],
            errors: vec![None; n],
            attempts,
            outputs: BTreeMap::new(),
            failures: vec!["`for` blocks cannot run in this version of kflow".into()],
            cancelled: false,
        };
    }
    // Cleanup tasks get their own token: the execution's cancellation stops
    // the work, not the teardown.
    let cleanup_cancel = CancellationToken::new();
    let mut running: JoinSet<(NodeId, Result<Outputs, TaskError>, u32, Duration)> = JoinSet::new();
    let mut tally = Tally {
        plan,
        events: events.clone(),
        states: vec![State::Pending; n],
        errors: vec![None; n],
        failures: Vec::new(),
        stopping: false,
    };
    let jobs = env.jobs.max(1);
    // Kahn-style: a node becomes a candidate when everything it waits for
    // (its dependencies and, for catch/finally, its whole try block) has
    // settled; each settlement is counted once, so a run is linear in the
    // size of the graph.
    let prerequisites: Vec<Vec<NodeId>> = (0..n).map(|id| prerequisites(plan, id)).collect();
    let mut remaining: Vec<usize> = prerequisites.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for (id, pre) in prerequisites.iter().enumerate() {
        for &p in pre {
            dependents[p].push(id);
        }
    }
    let mut ready: VecDeque<NodeId> = (0..n).filter(|&id| remaining[id] == 0).collect();
    let release = |id: NodeId, remaining: &mut Vec<usize>, ready: &mut VecDeque<NodeId>| {
        for &d in &dependents[id] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.push_back(d);
            }
        }
    };
    loop {
        if env.cancel.is_cancelled() {
            tally.stopping = true;
        }
        while let Some(id) = ready.pop_front() {
            let cleanup = is_cleanup(plan, id);
            if matches!(readiness(plan, id, &tally.states), Readiness::Skip) || (tally.stopping && !cleanup) {
                tally.skip(id);
                release(id, &mut remaining, &mut ready);
                continue;
            }
            if running.len() >= jobs {
                ready.push_front(id);
                break;
            }
            let node = &plan.nodes[id];
            let (props, retry, timeout) = match prepare(node, &values) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    // `when` is false.
                    tally.skip(id);
                    release(id, &mut remaining, &mut ready);
                    continue;
                }
                Err(e) => {
                    tally.fail(id, State::Failed, redactor.redact(&e.0).into_owned(), Duration::ZERO);
                    release(id, &mut remaining, &mut ready);
                    continue;
                }
            };
            tally.states[id] = State::Running;
            let (log_tx, mut log_rx) = mpsc::unbounded_channel::<LogLine>();
            let forward = events.clone();
            let forwarder = async move {
                while let Some(line) = log_rx.recv().await {
                    let _ = forward.send(Event::Log { node: id, line });
                }
            };
            let ctx = TaskContext {
                base_dir: env.base_dir.clone(),
                cancel: if cleanup {
                    cleanup_cancel.child_token()
                } else {
                    env.cancel.child_token()
                },
                redactor: redactor.clone(),
                log: log_tx,
            };
            let node = node.clone();
            let ev = events.clone();
            running.spawn(async move {
                let start = Instant::now();
                let forwarding = tokio::spawn(forwarder);
                let (result, attempts) = run_node(node, props, retry, timeout, ctx, ev).await;
                // Every log line is out before the task is reported finished.
                let _ = forwarding.await;
                (id, result, attempts, start.elapsed())
            });
        }
        if running.is_empty() {
            if ready.is_empty() {
                break;
            }
            continue;
        }
        let joined = tokio::select! {
            j = running.join_next() => j,
            _ = env.cancel.cancelled(), if !tally.stopping => { tally.stopping = true; continue; }
        };
        let Some(Ok((id, result, tries, elapsed))) = joined else {
            continue;
        };
        attempts[id] = tries;
        match result {
            Ok(out) => {
                let json = Value::Map(out.clone()).to_json();
                values.outputs[id] = Some(out);
                tally.succeed(id, json, elapsed);
            }
            Err(TaskError::Cancelled) => tally.fail(id, State::Cancelled, "cancelled".into(), elapsed),
            Err(TaskError::Failed(msg)) => tally.fail(id, State::Failed, msg, elapsed),
        }
        release(id, &mut remaining, &mut ready);
    }
    let outputs = plan
        .outputs
        .iter()
        .map(|o| (o.name.clone(), eval(&o.value, &values).unwrap_or(Value::Missing)))
        .collect();
    Report {
        states: tally.states,
        errors: tally.errors,
        attempts,
        outputs,
        failures: tally.failures,
        cancelled: env.cancel.is_cancelled(),
    }
}

/// How the nodes ended, and whether the flow has failed.
struct Tally<'p> {
    plan: &'p Plan,
    events: mpsc::UnboundedSender<Event>,
    states: Vec<State>,
    errors: Vec<Option<String>>,
    failures: Vec<String>,
    /// Set by a failure or a cancellation: no new work starts, only cleanup.
    stopping: bool,
}

impl Tally<'_> {
    fn skip(&mut self, id: NodeId) {
        self.states[id] = State::Skipped;
        let _ = self.events.send(Event::Finished {
            node: id,
            state: State::Skipped,
            error: None,
            elapsed: Duration::ZERO,
            outputs: None,
        });
    }

    fn succeed(&mut self, id: NodeId, outputs: serde_json::Value, elapsed: Duration) {
        self.states[id] = State::Succeeded;
        let _ = self.events.send(Event::Finished {
            node: id,
            state: State::Succeeded,
            error: None,
            elapsed,
            outputs: Some(outputs),
        });
    }

    /// A failure or cancellation; a failure without `continue_on_error`
    /// fails the flow.
    fn fail(&mut self, id: NodeId, state: State, error: String, elapsed: Duration) {
        self.states[id] = state;
        let node = &self.plan.nodes[id];
        if state == State::Failed && !node.continue_on_error {
            self.failures.push(format!("{}: {error}", node.name));
            self.stopping = true;
        }
        self.errors[id] = Some(error.clone());
        let _ = self.events.send(Event::Finished {
            node: id,
            state,
            error: Some(error),
            elapsed,
            outputs: None,
        });
    }
}

/// Whether a node belongs to a `catch` or `finally` block (at any depth).
fn is_cleanup(plan: &Plan, id: NodeId) -> bool {
    let mut scope = plan.nodes[id].scope;
    while let Some(s) = scope {
        if matches!(s.part, Part::Catch | Part::Finally) {
            return true;
        }
        scope = plan.scopes[s.scope].parent;
    }
    false
}

fn try_body(plan: &Plan, scope: usize) -> &[NodeId] {
    match &plan.scopes[scope].kind {
        ScopeKind::Try { body, .. } => body,
        ScopeKind::For { body, .. } => body,
    }
}

/// What a node waits for: its dependencies and, in a `catch` or `finally`
/// block, every task of the `try` block.
fn prerequisites(plan: &Plan, id: NodeId) -> Vec<NodeId> {
    let node = &plan.nodes[id];
    let mut pre: Vec<NodeId> = node.deps.iter().map(|d| d.node).collect();
    if let Some(s) = node.scope.filter(|s| matches!(s.part, Part::Catch | Part::Finally)) {
        pre.extend_from_slice(try_body(plan, s.scope));
    }
    pre.sort_unstable();
    pre.dedup();
    pre
}

fn readiness(plan: &Plan, id: NodeId, states: &[State]) -> Readiness {
    let node = &plan.nodes[id];
    let guard = node.scope.filter(|s| matches!(s.part, Part::Catch | Part::Finally));
    if let Some(s) = guard {
        let body = try_body(plan, s.scope);
        let started = body.iter().any(|&b| !matches!(states[b], State::Skipped));
        let failed = body
            .iter()
            .any(|&b| matches!(states[b], State::Failed | State::Cancelled) && !plan.nodes[b].continue_on_error);
        match s.part {
            Part::Catch if !failed => return Readiness::Skip,
            Part::Finally if !started => return Readiness::Skip,
            _ => {}
        }
    }
    for d in &node.deps {
        // Reading a task of the try block from its catch/finally: it may
        // have failed; its outputs are optional there.
        let inside_guarded = guard.is_some_and(|s| try_body(plan, s.scope).contains(&d.node));
        let usable = match states[d.node] {
            State::Succeeded => true,
            State::Failed => plan.nodes[d.node].continue_on_error || inside_guarded,
            _ => inside_guarded,
        };
        if !usable {
            return Readiness::Skip;
        }
    }
    Readiness::Ready
}

type Prepared = (Props, Retry, Option<Duration>);

/// Evaluates `when`, the properties, the retry policy and the timeout;
/// `None` when `when` is false.
fn prepare(node: &Node, values: &Values) -> Result<Option<Prepared>, EvalError> {
    if let Some(w) = &node.when {
        if eval(w, values)? != Value::Bool(true) {
            return Ok(None);
        }
    }
    let mut props = Props::new();
    for (name, p) in &node.props {
        props.insert(name.clone(), eval(&p.value, values)?);
    }
    let retry = Retry::of(node, values)?;
    let timeout = match &node.timeout {
        Some(t) => match eval(t, values)? {
            Value::Duration(ms) => Some(Duration::from_millis(ms)),
            _ => None,
        },
        None => None,
    };
    Ok(Some((props, retry, timeout)))
}
