//! Running one level of the plan (the top level, or one iteration of a loop):
//! a Kahn loop over its members. A member starts once everything it waits for
//! has settled; each settlement is counted once, so a run is linear in the size
//! of the graph. A loop member evaluates its list and runs one iteration of its
//! level per item, all at once; tasks everywhere share the `jobs` permits.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kflow_compiler::ir::{Part, Plan, ScopeId, ScopeKind};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::attempt::{self, Prepared};
use super::shape::{Level, Member, Shape};
use super::{Event, TaskOutcome, TaskRef, TaskState};
use crate::eval::{eval, EvalError, Scope};
use crate::secret::{Redactor, Secret};
use crate::tasks::{TaskContext, TaskError};
use crate::value::Value;

/// What every level of one execution shares.
pub(super) struct Shared {
    pub plan: Arc<Plan>,
    pub shape: Shape,
    pub inputs: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
    pub redactor: Arc<Redactor>,
    /// Environment variables read by `env()` secrets (see [`TaskContext`]).
    pub hidden_env: Arc<[String]>,
    /// Shared by every task's output (see [`crate::tasks::LOG_BUDGET`]).
    pub log_budget: Arc<tokio::sync::Semaphore>,
    pub base_dir: PathBuf,
    pub execution: Arc<str>,
    pub history: Arc<str>,
    pub artifacts: PathBuf,
    pub state_dir: PathBuf,
    pub store: Arc<dyn crate::store::Store>,
    pub state_hint: Arc<str>,
    pub detach: bool,
    pub restored: HashMap<String, crate::tasks::Outputs>,
    pub dispatch: Option<Arc<crate::dispatch::Dispatcher>>,
    pub docker: Arc<crate::docker::Engine>,
    /// One permit per task allowed to run at once (`--jobs`).
    pub permits: Semaphore,
    /// The execution's interruption: running tasks are cancelled.
    pub cancel: CancellationToken,
    /// Cleanup tasks get their own token: an interruption stops the work,
    /// not the teardown.
    pub cleanup_cancel: CancellationToken,
    /// Set by a failure: no new work starts, only cleanup.
    pub halted: AtomicBool,
    pub failures: Mutex<Vec<String>>,
    pub outcomes: Mutex<Vec<TaskOutcome>>,
    pub events: mpsc::UnboundedSender<Event>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.halted.load(Ordering::Relaxed) || self.cancel.is_cancelled()
    }
}

/// What a loop's iterations see of the levels around them, frozen when the
/// loop started (everything the loop reads has settled by then).
pub(super) struct Frame {
    parent: Option<Arc<Frame>>,
    var: Option<(String, Value)>,
    outputs: HashMap<String, Value>,
}

/// The values of one level while it runs.
pub(super) struct Values {
    shared: Arc<Shared>,
    outer: Option<Arc<Frame>>,
    var: Option<(String, Value)>,
    /// Output records of this level's tasks; for a loop inside it, the list
    /// of each of its tasks' records over the iterations.
    outputs: HashMap<String, Value>,
    lets: RefCell<BTreeMap<String, Value>>,
}

impl Values {
    pub fn top(shared: Arc<Shared>) -> Values {
        Values {
            shared,
            outer: None,
            var: None,
            outputs: HashMap::new(),
            lets: RefCell::default(),
        }
    }

    pub fn set_outputs(&mut self, outputs: HashMap<String, Value>) {
        self.outputs = outputs;
    }

    fn frames(&self) -> impl Iterator<Item = &Frame> {
        std::iter::successors(self.outer.as_deref(), |f| f.parent.as_deref())
    }
}

impl Scope for Values {
    fn input(&self, name: &str) -> Option<Value> {
        self.shared.inputs.get(name).cloned()
    }
    fn secret(&self, name: &str) -> Option<Value> {
        self.shared.secrets.get(name).map(|s| Value::Secret(s.clone()))
    }
    fn let_value(&self, name: &str) -> Result<Value, EvalError> {
        if let Some(v) = self.lets.borrow().get(name) {
            return Ok(v.clone());
        }
        let decl = self
            .shared
            .plan
            .lets
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| EvalError(format!("no let `{name}`")))?;
        let v = eval(&decl.value, self)?;
        self.lets.borrow_mut().insert(name.to_string(), v.clone());
        Ok(v)
    }
    fn loop_var(&self, name: &str) -> Option<Value> {
        std::iter::once(&self.var)
            .chain(self.frames().map(|f| &f.var))
            .flatten()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    fn outputs(&self, task: &str) -> Option<Value> {
        std::iter::once(&self.outputs)
            .chain(self.frames().map(|f| &f.outputs))
            .find_map(|o| o.get(task))
            .cloned()
    }
}

/// How a level ended.
pub(super) struct LevelDone {
    pub outputs: HashMap<String, Value>,
    /// A member failed (and did not have `continue_on_error`).
    pub failed: bool,
    pub cancelled: bool,
    /// A member waits for an approval (the run detached).
    pub paused: bool,
}

/// How one member's run ended.
enum Done {
    /// A task ran (and was reported); its record if it succeeded.
    Task {
        state: TaskState,
        record: Option<Value>,
    },
    /// The flow stopped while the task waited for a permit.
    NotStarted,
    Loop(LevelDone),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs one level to the end; `suffix` names its iteration (`[2]`, `[0][1]`).
pub(super) fn run(shared: Arc<Shared>, level: usize, values: Values, suffix: String) -> BoxFuture<LevelDone> {
    Box::pin(run_level(shared, level, values, suffix))
}

async fn run_level(shared: Arc<Shared>, li: usize, mut values: Values, suffix: String) -> LevelDone {
    let plan = shared.plan.clone();
    let level: &Level = &shared.shape.levels[li];
    let n = level.members.len();
    let mut states = vec![TaskState::Pending; n];
    let mut remaining: Vec<usize> = level.pre.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (m, pre) in level.pre.iter().enumerate() {
        for &p in pre {
            dependents[p].push(m);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&m| remaining[m] == 0).collect();
    let mut running: JoinSet<(usize, Done)> = JoinSet::new();
    // Which member each spawned task runs, to settle it even if it panics.
    let mut spawned: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut done = LevelDone {
        outputs: HashMap::new(),
        failed: false,
        cancelled: false,
        paused: false,
    };
    let continue_on_error = |m: usize| matches!(level.members[m], Member::Node(id) if plan.nodes[id].continue_on_error);
    loop {
        while let Some(m) = ready.pop_front() {
            let cleanup = level.cleanup[m];
            let settled = if !usable(level, m, &states, &continue_on_error) || (shared.stopping() && !cleanup) {
                if let Member::Node(id) = level.members[m] {
                    skipped(&shared, &task_ref(&plan, id, &suffix));
                }
                Some(TaskState::Skipped)
            } else {
                match level.members[m] {
                    Member::Node(id) => {
                        let node = &plan.nodes[id];
                        let task = task_ref(&plan, id, &suffix);
                        if let Some(outputs) = shared.restored.get(&*task.name) {
                            // Succeeded before a resume: its outputs, not a rerun.
                            let record = with_outcome(Value::Map(outputs.clone()), TaskState::Succeeded);
                            record_outcome(&shared, &task, TaskState::Succeeded, None, 0);
                            let _ = shared.events.send(Event::Restored { task });
                            values.outputs.insert(node.name.clone(), record.clone());
                            done.outputs.insert(node.name.clone(), record);
                            Some(TaskState::Succeeded)
                        } else {
                            match attempt::prepare(node, &values) {
                                Ok(Some(prepared)) => {
                                    let handle = spawn_task(&shared, &mut running, m, task, prepared, cleanup);
                                    spawned.insert(handle.id(), m);
                                    None
                                }
                                // `when` is false.
                                Ok(None) => {
                                    skipped(&shared, &task);
                                    Some(TaskState::Skipped)
                                }
                                Err(e) => {
                                    let error = shared.redactor.redact(&e.0).into_owned();
                                    let state = failed(&shared, &task, TaskState::Failed, error, Duration::ZERO, 0);
                                    Some(state)
                                }
                            }
                        }
                    }
                    Member::Loop(scope) => match start_loop(&shared, &values, scope, level, m, &suffix) {
                        Ok(fut) => {
                            let handle = running.spawn(async move { (m, Done::Loop(fut.await)) });
                            spawned.insert(handle.id(), m);
                            None
                        }
                        Err(e) => {
                            let msg = format!("`for {} in …`: {}", loop_var(&plan, scope), e.0);
                            let msg = shared.redactor.redact(&msg).into_owned();
                            shared.failures.lock().expect("not poisoned").push(msg);
                            shared.halted.store(true, Ordering::Relaxed);
                            Some(TaskState::Failed)
                        }
                    },
                }
            };
            if let Some(state) = settled {
                // A restored task's record is in already.
                if state != TaskState::Succeeded {
                    settled_record(&plan, level.members[m], state, &mut values, &mut done);
                }
                states[m] = state;
                settle(&mut done, state, continue_on_error(m));
                release(m, &dependents, &mut remaining, &mut ready);
            } else {
                states[m] = TaskState::Running;
            }
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (m, outcome) = match joined {
            Ok((id, done)) => {
                spawned.remove(&id);
                done
            }
            // A panic in a task is a bug of kflow; it fails that task, and
            // the flow goes on to its cleanup.
            Err(e) => {
                let Some(m) = spawned.remove(&e.id()) else { continue };
                let outcome = match level.members[m] {
                    Member::Node(id) => {
                        let task = task_ref(&plan, id, &suffix);
                        let state = failed(
                            &shared,
                            &task,
                            TaskState::Failed,
                            "internal error: the task panicked (a bug of kflow)".into(),
                            Duration::ZERO,
                            0,
                        );
                        Done::Task {
                            state,
                            record: Some(outcome_record(state)),
                        }
                    }
                    Member::Loop(_) => Done::Loop(LevelDone {
                        outputs: HashMap::new(),
                        failed: true,
                        cancelled: false,
                        paused: false,
                    }),
                };
                (m, outcome)
            }
        };
        let state = match (outcome, level.members[m]) {
            (Done::Loop(inner), _) => {
                done.outputs.reserve(inner.outputs.len());
                for (name, v) in inner.outputs {
                    values.outputs.insert(name.clone(), v.clone());
                    done.outputs.insert(name, v);
                }
                if inner.failed {
                    TaskState::Failed
                } else if inner.cancelled {
                    TaskState::Cancelled
                } else if inner.paused {
                    TaskState::Paused
                } else {
                    TaskState::Succeeded
                }
            }
            (Done::NotStarted, member @ Member::Node(id)) => {
                let task = task_ref(&plan, id, &suffix);
                skipped(&shared, &task);
                settled_record(&plan, member, TaskState::Skipped, &mut values, &mut done);
                TaskState::Skipped
            }
            (Done::Task { state, record }, Member::Node(id)) => {
                if let Some(record) = record {
                    values.outputs.insert(plan.nodes[id].name.clone(), record.clone());
                    done.outputs.insert(plan.nodes[id].name.clone(), record);
                }
                state
            }
            (_, Member::Loop(_)) => unreachable!("loops end with Done::Loop"),
        };
        states[m] = state;
        settle(&mut done, state, continue_on_error(m));
        // What waits on a paused gate stays pending until a resume.
        if state != TaskState::Paused {
            release(m, &dependents, &mut remaining, &mut ready);
        }
    }
    done
}

/// A task's record with its `outcome` added: what readers see of it.
fn with_outcome(mut record: Value, state: TaskState) -> Value {
    let outcome = match state {
        TaskState::Succeeded => "succeeded",
        TaskState::Skipped => "skipped",
        _ => "failed",
    };
    if let Value::Map(m) = &mut record {
        m.insert("outcome".to_string(), Value::Str(outcome.to_string()));
    }
    record
}

/// The record of a run that produced no outputs: its outcome alone.
fn outcome_record(state: TaskState) -> Value {
    with_outcome(Value::Map(Default::default()), state)
}

/// What readers see of a member that settled without running: a task's
/// outcome; for a loop, no iteration of any of its tasks.
fn settled_record(plan: &Plan, member: Member, state: TaskState, values: &mut Values, done: &mut LevelDone) {
    let records: Vec<(String, Value)> = match member {
        Member::Node(id) => vec![(plan.nodes[id].name.clone(), outcome_record(state))],
        Member::Loop(scope) => match &plan.scopes[scope].kind {
            ScopeKind::For { body, .. } => body
                .iter()
                .map(|&n| (plan.nodes[n].name.clone(), Value::List(Vec::new())))
                .collect(),
            ScopeKind::Try { .. } => Vec::new(),
        },
    };
    for (name, record) in records {
        values.outputs.insert(name.clone(), record.clone());
        done.outputs.insert(name, record);
    }
}

fn task_ref(plan: &Plan, id: usize, suffix: &str) -> TaskRef {
    TaskRef {
        node: id,
        name: format!("{}{suffix}", plan.nodes[id].name).into(),
    }
}

fn loop_var(plan: &Plan, scope: ScopeId) -> &str {
    match &plan.scopes[scope].kind {
        ScopeKind::For { var, .. } => var,
        ScopeKind::Try { .. } => "?",
    }
}

fn settle(done: &mut LevelDone, state: TaskState, continue_on_error: bool) {
    match state {
        TaskState::Failed if !continue_on_error => done.failed = true,
        TaskState::Cancelled => done.cancelled = true,
        TaskState::Paused => done.paused = true,
        _ => {}
    }
}

fn release(m: usize, dependents: &[Vec<usize>], remaining: &mut [usize], ready: &mut VecDeque<usize>) {
    for &d in &dependents[m] {
        remaining[d] -= 1;
        if remaining[d] == 0 {
            ready.push_back(d);
        }
    }
}

/// Whether a member whose prerequisites settled may run: a `catch` needs its
/// `try` block to have failed, a `finally` needs it to have started, and every
/// task it reads must have succeeded — except, in `catch` and `finally`, the
/// tasks of the `try` block, whose outputs are optional there, and tasks it
/// reads only the `outcome` of, which need only have ended.
fn usable(level: &Level, m: usize, states: &[TaskState], continue_on_error: &dyn Fn(usize) -> bool) -> bool {
    let guard = level.guard[m].as_ref();
    if let Some(g) = guard {
        let started = g.try_members.iter().any(|&b| states[b] != TaskState::Skipped);
        let failed = g
            .try_members
            .iter()
            .any(|&b| matches!(states[b], TaskState::Failed | TaskState::Cancelled) && !continue_on_error(b));
        match g.part {
            Part::Catch if !failed => return false,
            Part::Finally if !started => return false,
            _ => {}
        }
    }
    level.deps[m].iter().all(|&(dm, node, kind)| {
        let guarded = guard.is_some_and(|g| g.try_nodes.contains(&node));
        match states[dm] {
            TaskState::Succeeded => true,
            _ if !kind.needs_success() => true,
            TaskState::Failed => continue_on_error(dm) || guarded,
            _ => guarded,
        }
    })
}

fn spawn_task(
    shared: &Arc<Shared>,
    running: &mut JoinSet<(usize, Done)>,
    m: usize,
    task: TaskRef,
    prepared: Prepared,
    cleanup: bool,
) -> tokio::task::AbortHandle {
    let shared = shared.clone();
    running.spawn(async move {
        let Ok(_permit) = shared.permits.acquire().await else {
            return (m, Done::NotStarted);
        };
        if shared.stopping() && !cleanup {
            return (m, Done::NotStarted);
        }
        let start = Instant::now();
        // Lines go straight into the event stream, so every line of the run
        // is in it before the run's `Finished`.
        let events = shared.events.clone();
        let logged = task.clone();
        let log: crate::tasks::LogSink = Arc::new(move |line| {
            let _ = events.send(Event::Log {
                task: logged.clone(),
                line,
            });
        });
        let ctx = TaskContext {
            task: task.name.clone(),
            artifacts: shared.artifacts.clone(),
            state_hint: shared.state_hint.clone(),
            state_dir: shared.state_dir.clone(),
            store: shared.store.clone(),
            detach: shared.detach,
            execution: shared.execution.clone(),
            history: shared.history.clone(),
            docker: shared.docker.clone(),
            base_dir: shared.base_dir.clone(),
            cancel: if cleanup {
                shared.cleanup_cancel.child_token()
            } else {
                shared.cancel.child_token()
            },
            redactor: shared.redactor.clone(),
            hidden_env: shared.hidden_env.clone(),
            dispatch: shared.dispatch.clone(),
            log,
            log_budget: shared.log_budget.clone(),
        };
        let kind = shared.plan.nodes[task.node].kind.clone();
        let (result, attempts) = attempt::run(&kind, &task, prepared, ctx, &shared.events).await;
        // Reported (and a failure halts new work) before the permit goes to
        // the next task.
        let elapsed = start.elapsed();
        let done = match result {
            Ok(out) => {
                let record = Value::Map(out);
                succeeded(&shared, &task, record.to_json(), elapsed, attempts);
                Done::Task {
                    state: TaskState::Succeeded,
                    record: Some(with_outcome(record, TaskState::Succeeded)),
                }
            }
            Err(e) => {
                let (state, error) = match e {
                    TaskError::Cancelled => (TaskState::Cancelled, "cancelled".to_string()),
                    TaskError::Failed(msg) | TaskError::Invalid(msg) | TaskError::Lost(msg) => (TaskState::Failed, msg),
                    TaskError::Paused => {
                        paused(&shared, &task);
                        return (
                            m,
                            Done::Task {
                                state: TaskState::Paused,
                                record: None,
                            },
                        );
                    }
                };
                let state = failed(&shared, &task, state, error, elapsed, attempts);
                Done::Task {
                    state,
                    record: Some(outcome_record(state)),
                }
            }
        };
        (m, done)
    })
}

/// The longest item a loop iteration is named by.
const LABEL_MAX: usize = 32;

/// What names a loop's iterations: the items themselves (`build[linux/arm64]`)
/// when every one is a short, plain word and no two are alike, else their
/// indexes (`build[0]`) for the whole loop. A run's name is its key in the
/// history (and a file name), so it is unique, and it never holds a secret.
fn iteration_labels(items: &[Value], redactor: &Redactor) -> Vec<String> {
    let plain = |v: &Value| match v {
        Value::Str(s) | Value::Enum(s) | Value::Ref(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= LABEL_MAX
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+=".contains(&b))
            && matches!(redactor.redact(s), std::borrow::Cow::Borrowed(_))
    };
    let labels: Option<Vec<String>> = items.iter().map(|v| plain(v).filter(|s| word(s))).collect();
    if let Some(labels) = labels {
        let distinct: std::collections::HashSet<&String> = labels.iter().collect();
        if distinct.len() == labels.len() {
            return labels;
        }
    }
    (0..items.len()).map(|i| i.to_string()).collect()
}

/// The most items a loop may run over: a list computed from a task's output
/// (`lines` of a 4 MiB log) can be millions long, and each item would start
/// a task run of every task in the loop.
pub const MAX_LOOP_ITEMS: usize = 10_000;

/// Evaluates a loop's list and starts its iterations, all at once.
fn start_loop(
    shared: &Arc<Shared>,
    values: &Values,
    scope: ScopeId,
    level: &Level,
    m: usize,
    suffix: &str,
) -> Result<BoxFuture<LevelDone>, EvalError> {
    let plan = &shared.plan;
    let ScopeKind::For { var, iter, body } = &plan.scopes[scope].kind else {
        unreachable!("loop members are for scopes")
    };
    let items = match eval(iter, values)? {
        Value::List(items) => items,
        other => return Err(EvalError(format!("the list to loop over is {}", describe(&other)))),
    };
    if items.len() > MAX_LOOP_ITEMS {
        return Err(EvalError(format!(
            "the loop is over {} items, more than the {MAX_LOOP_ITEMS} a loop may have: filter or split the list",
            items.len()
        )));
    }
    // The iterations see what the loop reads, as it is now.
    let mut outputs = HashMap::new();
    for &(_, node, _) in &level.deps[m] {
        let name = &plan.nodes[node].name;
        if let Some(v) = values.outputs.get(name) {
            outputs.insert(name.clone(), v.clone());
        }
    }
    let frame = Arc::new(Frame {
        parent: values.outer.clone(),
        var: values.var.clone(),
        outputs,
    });
    let inner = shared.shape.level_of(scope);
    let names: Vec<String> = body.iter().map(|&n| plan.nodes[n].name.clone()).collect();
    let labels = iteration_labels(&items, &shared.redactor);
    let mut iterations = JoinSet::new();
    for ((i, item), label) in items.into_iter().enumerate().zip(labels) {
        let values = Values {
            shared: shared.clone(),
            outer: Some(frame.clone()),
            var: Some((var.clone(), item)),
            outputs: HashMap::new(),
            lets: RefCell::default(),
        };
        let it = run(shared.clone(), inner, values, format!("{suffix}[{label}]"));
        iterations.spawn(async move { (i, it.await) });
    }
    Ok(Box::pin(async move {
        let mut results: Vec<Option<LevelDone>> = Vec::new();
        results.resize_with(iterations.len(), || None);
        while let Some(joined) = iterations.join_next().await {
            if let Ok((i, d)) = joined {
                results[i] = Some(d);
            }
        }
        let mut done = LevelDone {
            outputs: HashMap::new(),
            failed: false,
            cancelled: false,
            paused: false,
        };
        let results: Vec<LevelDone> = results.into_iter().flatten().collect();
        for r in &results {
            done.failed |= r.failed;
            done.cancelled |= r.cancelled;
            done.paused |= r.paused;
        }
        // Outside the loop, each of its tasks is the list of its records.
        for name in names {
            let list = results
                .iter()
                .map(|r| r.outputs.get(&name).cloned().unwrap_or(Value::Missing))
                .collect();
            done.outputs.insert(name, Value::List(list));
        }
        done
    }))
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Missing => "absent (a task it depends on produced nothing)",
        _ => "not a list",
    }
}

fn skipped(shared: &Shared, task: &TaskRef) {
    record_outcome(shared, task, TaskState::Skipped, None, 0);
    let _ = shared.events.send(Event::Finished {
        task: task.clone(),
        state: TaskState::Skipped,
        error: None,
        elapsed: Duration::ZERO,
        outputs: None,
    });
}

fn succeeded(shared: &Shared, task: &TaskRef, outputs: serde_json::Value, elapsed: Duration, attempts: u32) {
    record_outcome(shared, task, TaskState::Succeeded, None, attempts);
    let _ = shared.events.send(Event::Finished {
        task: task.clone(),
        state: TaskState::Succeeded,
        error: None,
        elapsed,
        outputs: Some(outputs),
    });
}

/// A failure or cancellation; a failure without `continue_on_error` fails
/// the flow and stops new work.
fn failed(
    shared: &Shared,
    task: &TaskRef,
    state: TaskState,
    error: String,
    elapsed: Duration,
    attempts: u32,
) -> TaskState {
    // Tasks redact what they report; this is the net under them.
    let error = shared.redactor.redact(&error).into_owned();
    if state == TaskState::Failed && !shared.plan.nodes[task.node].continue_on_error {
        shared
            .failures
            .lock()
            .expect("not poisoned")
            .push(format!("{}: {error}", task.name));
        shared.halted.store(true, Ordering::Relaxed);
    }
    record_outcome(shared, task, state, Some(error.clone()), attempts);
    let _ = shared.events.send(Event::Finished {
        task: task.clone(),
        state,
        error: Some(error),
        elapsed,
        outputs: None,
    });
    state
}

fn paused(shared: &Shared, task: &TaskRef) {
    let _ = shared.events.send(Event::Finished {
        task: task.clone(),
        state: TaskState::Paused,
        error: None,
        elapsed: Duration::ZERO,
        outputs: None,
    });
}

fn record_outcome(shared: &Shared, task: &TaskRef, state: TaskState, error: Option<String>, attempts: u32) {
    shared.outcomes.lock().expect("not poisoned").push(TaskOutcome {
        name: task.name.to_string(),
        node: task.node,
        state,
        error,
        attempts,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(items: &[&str]) -> Vec<Value> {
        items.iter().map(|s| Value::Str(s.to_string())).collect()
    }

    #[test]
    fn loop_runs_are_named_by_short_distinct_plain_items_else_by_index() {
        let none = Redactor::new([]);
        let labels = |items: &[Value], r: &Redactor| iteration_labels(items, r);
        assert_eq!(
            labels(&strs(&["linux/amd64", "linux/arm64"]), &none),
            ["linux/amd64", "linux/arm64"]
        );
        assert_eq!(labels(&[Value::Int(3), Value::Int(-1)], &none), ["3", "-1"]);
        // Alike items would make one name of two runs.
        assert_eq!(labels(&strs(&["a", "a"]), &none), ["0", "1"]);
        // One item that cannot name a run names the whole loop by index.
        assert_eq!(labels(&strs(&["ok", "has space"]), &none), ["0", "1"]);
        assert_eq!(labels(&strs(&["ok", "a]b"]), &none), ["0", "1"]);
        assert_eq!(labels(&strs(&["ok", &"x".repeat(LABEL_MAX + 1)]), &none), ["0", "1"]);
        assert_eq!(labels(&strs(&["ok", ""]), &none), ["0", "1"]);
        assert_eq!(labels(&[Value::Bool(true), Value::Bool(false)], &none), ["0", "1"]);
        // A run's name is printed and stored: never a secret's value.
        let secret = Secret::new("hunter22");
        let r = Redactor::new([&secret]);
        assert_eq!(labels(&strs(&["dev", "hunter22"]), &r), ["0", "1"]);
        assert_eq!(
            labels(&[Value::Secret(secret.clone()), Value::Str("b".into())], &none),
            ["0", "1"]
        );
    }
}
