//! The executor: runs a plan's nodes as soon as their dependencies settle,
//! up to `jobs` at once, with try/catch/finally, `when`, `continue_on_error`,
//! retries and per-attempt timeouts.
//!
//! Failure policy: a task that fails (without `continue_on_error`) fails the
//! flow; its dependants are skipped, tasks not yet started are not started,
//! and tasks already running are left to finish, so no side effect is cut in
//! half. `catch` and `finally` tasks still run as their blocks require.
//!
//! A `for` block fans out when its list is known: every iteration runs the
//! block's tasks (named `task[i]`) at once, within the same `jobs` bound.

mod attempt;
mod level;
mod shape;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kflow_compiler::ir::{NodeId, Plan};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::eval::eval;
use crate::secret::{Redactor, Secret};
use crate::tasks::registry;
use crate::tasks::LogLine;
use crate::value::Value;

use crate::state::ExecutionState;
pub use crate::state::TaskState;

/// One run of a task: a node of the plan, named `name`, or `name[i]` in
/// the `i`-th iteration of a loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    pub node: NodeId,
    pub name: Arc<str>,
}

/// What an execution reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        task: TaskRef,
        attempt: u32,
    },
    Log {
        task: TaskRef,
        line: LogLine,
    },
    Retrying {
        task: TaskRef,
        attempt: u32,
        error: String,
        delay: Duration,
    },
    /// A task that succeeded before the execution was resumed: its recorded
    /// outputs are used, it does not run again.
    Restored {
        task: TaskRef,
    },
    Finished {
        task: TaskRef,
        state: TaskState,
        error: Option<String>,
        elapsed: Duration,
        /// The output record of a task that succeeded (secrets written `***`).
        outputs: Option<serde_json::Value>,
    },
}

pub struct RunEnv {
    /// The execution's id (labels on what tasks create).
    pub execution: String,
    /// Where tasks keep their artifacts (reports, SBOMs).
    pub artifacts: PathBuf,
    /// The history's folder (caches kept beside it).
    pub state_dir: PathBuf,
    /// The history the execution is recorded in; its id labels what tasks
    /// create (which history to ask about them).
    pub store: Arc<dyn crate::store::Store>,
    /// Where attempts run when not here: the workers of a shared history.
    pub dispatch: Option<Arc<crate::dispatch::Dispatcher>>,
    /// What a printed `kflow approve`/`resume` hint needs to find that
    /// folder (` --state DIR`, or nothing when kflow finds it alone).
    pub state_hint: String,
    /// Approvals that would wait pause the execution instead.
    pub detach: bool,
    /// Outputs of task runs that succeeded before a resume, by run name.
    pub restored: std::collections::HashMap<String, crate::tasks::Outputs>,
    pub inputs: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
    pub base_dir: PathBuf,
    pub jobs: usize,
    /// Cancelling it stops the execution: running tasks are cancelled, then
    /// `finally` blocks run.
    pub cancel: CancellationToken,
}

/// How one task run ended.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    pub name: String,
    pub node: NodeId,
    pub state: TaskState,
    pub error: Option<String>,
    pub attempts: u32,
}

#[derive(Debug)]
pub struct Report {
    /// Every task run, in the order they settled.
    pub tasks: Vec<TaskOutcome>,
    /// The flow's outputs in declaration order (absent ones are
    /// `Value::Missing`).
    pub outputs: indexmap::IndexMap<String, Value>,
    /// The first failure that failed the flow, then failures of cleanup tasks.
    pub failures: Vec<String>,
    pub cancelled: bool,
    /// An approval waits (the run detached): `kflow resume` continues.
    pub paused: bool,
}

impl Report {
    /// The outcome of the task run named `name` (`build`, `build[1]`).
    pub fn task(&self, name: &str) -> Option<&TaskOutcome> {
        self.tasks.iter().find(|t| t.name == name)
    }

    pub fn succeeded(&self) -> bool {
        self.failures.is_empty() && !self.cancelled && !self.paused
    }

    /// The execution's final state, as recorded and printed.
    pub fn outcome(&self) -> ExecutionState {
        if self.cancelled {
            ExecutionState::Interrupted
        } else if !self.failures.is_empty() {
            ExecutionState::Failed
        } else if self.paused {
            ExecutionState::Paused
        } else {
            ExecutionState::Succeeded
        }
    }
}

/// Why a plan cannot run with this executor, if it cannot.
pub fn unsupported(plan: &Plan) -> Option<String> {
    let mut kinds: Vec<&str> = plan
        .nodes
        .iter()
        .map(|n| n.kind.as_str())
        .filter(|k| registry::runner(k).is_none())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    (!kinds.is_empty()).then(|| {
        format!(
            "these task kinds cannot run in this version of kflow yet: {} (runnable: {})",
            kinds.join(", "),
            registry::RUNNERS.iter().map(|r| r.kind).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The tasks that run once (outside every `for` block); tasks in loops run
/// once per iteration, as `name[i]`.
pub fn single_tasks(plan: &Plan) -> Vec<NodeId> {
    let shape = shape::Shape::of(plan);
    shape.levels[0]
        .members
        .iter()
        .filter_map(|m| match m {
            shape::Member::Node(id) => Some(*id),
            shape::Member::Loop(_) => None,
        })
        .collect()
}

pub async fn execute(plan: Arc<Plan>, env: RunEnv, events: mpsc::UnboundedSender<Event>) -> Report {
    let redactor = Redactor::new(env.secrets.values());
    let shared = Arc::new(level::Shared {
        shape: shape::Shape::of(&plan),
        plan: plan.clone(),
        inputs: env.inputs,
        secrets: env.secrets,
        redactor: Arc::new(redactor),
        hidden_env: secret_variables(&plan),
        log_budget: Arc::new(tokio::sync::Semaphore::new(crate::tasks::LOG_BUDGET)),
        base_dir: env.base_dir,
        execution: env.execution.into(),
        history: env.store.history_id().into(),
        artifacts: env.artifacts,
        state_dir: env.state_dir,
        store: env.store,
        state_hint: env.state_hint.into(),
        detach: env.detach,
        restored: env.restored,
        dispatch: env.dispatch,
        docker: Arc::new(crate::docker::Engine::default()),
        permits: Semaphore::new(env.jobs.clamp(1, Semaphore::MAX_PERMITS)),
        cancel: env.cancel.clone(),
        cleanup_cancel: CancellationToken::new(),
        halted: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        outcomes: Mutex::new(Vec::new()),
        events,
    });
    let top = level::run(shared.clone(), 0, level::Values::top(shared.clone()), String::new()).await;
    let mut values = level::Values::top(shared.clone());
    values.set_outputs(top.outputs);
    let outputs = plan
        .outputs
        .iter()
        .map(|o| (o.name.clone(), eval(&o.value, &values).unwrap_or(Value::Missing)))
        .collect();
    drop(values);
    // Ended for good: the images it built are its no more. Paused or
    // interrupted, `resume` may still use them. A release that fails is
    // done by the reaper at the next run.
    let ended = !top.paused && !env.cancel.is_cancelled();
    if ended && plan.nodes.iter().any(|n| n.kind == "docker.build") {
        if let Ok(docker) = shared.docker.get().await {
            let _ = crate::docker::hold::release(docker, &shared.history, &shared.execution).await;
        }
    }
    let tasks = std::mem::take(&mut *shared.outcomes.lock().expect("not poisoned"));
    let failures = std::mem::take(&mut *shared.failures.lock().expect("not poisoned"));
    Report {
        tasks,
        outputs,
        failures,
        cancelled: env.cancel.is_cancelled(),
        paused: top.paused,
    }
}

/// The environment variables `env()` secrets read.
pub(crate) fn secret_variables(plan: &Plan) -> Arc<[String]> {
    plan.secrets
        .iter()
        .filter(|s| s.source == "env")
        .filter_map(|s| match &s.arg {
            kflow_compiler::ir::Expr::Str { value } => Some(value.clone()),
            _ => None,
        })
        .collect()
}

/// Whether a run's kind outputs a secret (its record holds `***` instead).
pub fn outputs_secrets(plan: &Plan, run_name: &str) -> bool {
    use kflow_compiler::types::Ty;
    let template = run_name.split('[').next().unwrap_or(run_name);
    plan.nodes
        .iter()
        .find(|n| n.name == template)
        .and_then(|n| kflow_compiler::catalog::kind(&n.kind))
        .is_some_and(|k| {
            k.outputs
                .iter()
                .any(|o| matches!(kflow_compiler::catalog::ty(o.ty), Ty::Secret | Ty::Credentials))
        })
}

/// A task run's recorded outputs read back with the types of its kind's
/// catalog entry (for `kflow resume`); `None` when they do not fit.
pub fn restore_outputs(plan: &Plan, run_name: &str, json: &serde_json::Value) -> Option<crate::tasks::Outputs> {
    let template = run_name.split('[').next().unwrap_or(run_name);
    let node = plan.nodes.iter().find(|n| n.name == template)?;
    restore_kind_outputs(&node.kind, json)
}

/// Outputs recorded as JSON read back with the types of `kind`'s catalog
/// entry (a resume, a worker's report); `None` when they do not fit.
pub fn restore_kind_outputs(kind: &str, json: &serde_json::Value) -> Option<crate::tasks::Outputs> {
    let serde_json::Value::Object(fields) = json else {
        return Some(crate::tasks::Outputs::new());
    };
    let kind = kflow_compiler::catalog::kind(kind);
    let mut out = crate::tasks::Outputs::new();
    for (name, v) in fields {
        let ty = kind
            .and_then(|k| k.outputs.iter().find(|o| o.name == name))
            .map(|o| kflow_compiler::catalog::ty(o.ty).clone());
        let value = match ty {
            Some(t) => Value::from_json(v, &t)?,
            // Fields outside the catalog (`ports` of a stack) keep their JSON shape.
            None => Value::from_json(
                v,
                &kflow_compiler::types::Ty::Map(Box::new(kflow_compiler::types::Ty::Int)),
            )
            .unwrap_or(Value::Missing),
        };
        out.insert(name.clone(), value);
    }
    Some(out)
}
