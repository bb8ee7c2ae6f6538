//! Starting executions in the server: recorded in the same history as
//! `kflow run`, run by the same runtime and recorder, each with its own
//! cancellation so that shutdown can stop them and record them
//! `interrupted`, and within its flow's `concurrency` limit.
//!
//! Concurrency keys belong to a flow (`release` of one flow is not
//! `release` of another). Starts are decided one at a time (one lock over
//! deciding and recording), so two deliveries arriving together cannot
//! both take the last slot. Over the limit, `queue` records the execution
//! `queued` and starts it when a slot frees (a restarted server starts the
//! queued ones it finds); `cancel_running` cancels the key's running
//! executions — recorded `cancelled`, naming the one that replaced them —
//! and starts; `skip` records the new execution `cancelled` without
//! running it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use kflow_compiler::ir::Plan;
use kflow_runtime::dispatch::Dispatcher;
use kflow_runtime::eval::{eval, EvalError, Scope};
use kflow_runtime::executor::RunEnv;
use kflow_runtime::recorder::{self, Quiet};
use kflow_runtime::resume;
use kflow_runtime::secret::{self, Secret};
use kflow_runtime::state::ExecutionState;
use kflow_runtime::store::{Change, NewExecution, Origin, Resumable, Store};
use kflow_runtime::tasks::Outputs;
use kflow_runtime::value::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::flows::Flow;

/// One execution running in this process.
struct Handle {
    cancel: CancellationToken,
    /// Set before a cancel on purpose: recorded `cancelled` with it.
    stopped: Arc<OnceLock<String>>,
    /// Its concurrency slot, if its flow limits concurrency.
    slot: Option<String>,
}

/// The executions this server runs now.
#[derive(Default)]
pub struct Running {
    handles: Mutex<HashMap<String, Handle>>,
    pub tracker: TaskTracker,
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many run now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Cancels every running execution (their `finally` blocks run; they
    /// are recorded `interrupted`, to be resumed).
    pub fn cancel_all(&self) {
        for h in self.lock().values() {
            h.cancel.cancel();
        }
    }

    /// Whether this process runs the execution.
    pub fn is_running(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Cancels one on purpose: it is recorded `cancelled`, saying `why`.
    pub fn stop(&self, id: &str, why: &str) -> bool {
        match self.lock().get(id) {
            Some(h) => {
                let _ = h.stopped.set(why.to_string());
                h.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// The running executions holding a slot.
    fn in_slot(&self, slot: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, h)| h.slot.as_deref() == Some(slot))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// A started execution, as the caller reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub id: String,
    pub state: ExecutionState,
}

#[derive(Clone)]
pub struct Launcher {
    pub store: Arc<dyn Store>,
    pub state_dir: std::path::PathBuf,
    pub running: Arc<Running>,
    pub jobs: usize,
    /// How many executions run at once in this server (`--max-executions`).
    max: Option<usize>,
    /// Decides starts one at a time; holds each slot's queue, and
    /// [`ANY_SLOT`]'s: executions waiting for the server-wide limit.
    queues: Arc<tokio::sync::Mutex<HashMap<String, VecDeque<String>>>>,
    /// Where tasks run when not here: the workers of a shared history.
    dispatch: Option<Arc<Dispatcher>>,
}

/// What an execution runs with, once recorded.
struct Prepared {
    plan: Arc<Plan>,
    inputs: BTreeMap<String, Value>,
    secrets: BTreeMap<String, Secret>,
    base_dir: std::path::PathBuf,
    /// Outputs of tasks that are not run again.
    restored: HashMap<String, Outputs>,
}

/// A flow's concurrency for one execution: its slot, limit and rule.
struct Limit {
    slot: String,
    key: String,
    limit: usize,
    on_conflict: String,
}

impl Launcher {
    pub fn new(
        store: Arc<dyn Store>,
        state_dir: std::path::PathBuf,
        jobs: usize,
        max: Option<usize>,
        dispatch: Option<Arc<Dispatcher>>,
    ) -> Launcher {
        Launcher {
            store,
            state_dir,
            running: Arc::new(Running::default()),
            jobs,
            max,
            queues: Arc::default(),
            dispatch,
        }
    }

    /// Where tasks run when not here.
    pub fn dispatcher(&self) -> Option<&Arc<Dispatcher>> {
        self.dispatch.as_ref()
    }

    /// Secrets are read here, unless tasks run on workers: then each
    /// worker reads those its tasks refer to, and this server holds none.
    fn sourcing(&self) -> secret::Sourcing {
        match self.dispatch {
            Some(_) => secret::Sourcing::Refer,
            None => secret::Sourcing::Read,
        }
    }

    /// Whether the server-wide limit leaves room for one more.
    fn room(&self) -> bool {
        self.max.is_none_or(|m| self.running.count() < m)
    }

    /// Records a new execution of `flow` with these inputs and starts it,
    /// queues it, or records it skipped, as its concurrency says. `trigger`
    /// is recorded with it (`{"name", "kind", …}`).
    pub async fn start(
        &self,
        flow: &Flow,
        inputs: BTreeMap<String, Value>,
        trigger: serde_json::Value,
    ) -> Result<Started, String> {
        let plan = &flow.plan;
        let tasks = kflow_runtime::executor::single_tasks(plan)
            .into_iter()
            .map(|id| (plan.nodes[id].name.clone(), plan.nodes[id].kind.clone()))
            .collect();
        let inputs_json: serde_json::Map<String, serde_json::Value> =
            inputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        let plan_json = serde_json::to_value(&**plan).map_err(|e| format!("cannot record the plan: {e}"))?;
        let base_dir = std::fs::canonicalize(&flow.base_dir).unwrap_or_else(|_| flow.base_dir.clone());
        let file = flow.file.display().to_string();
        let inputs_json = serde_json::Value::Object(inputs_json);
        let record = NewExecution {
            flow: &plan.flow,
            file: &file,
            inputs: &inputs_json,
            tasks,
            plan: plan_json,
            base_dir,
            rerun_of: None,
            trigger: Some(trigger),
            origin: Origin::Server,
        };
        // Read for each execution: a rotated secret takes effect at once.
        let secrets = secret::for_run(plan, &flow.base_dir, self.sourcing())?;
        let run = Prepared {
            plan: plan.clone(),
            inputs,
            secrets,
            base_dir: flow.base_dir.clone(),
            restored: HashMap::new(),
        };
        self.launch(&record, &[], run).await
    }

    /// A new execution of a recorded one, linked to it; `from_failed`
    /// keeps what succeeded there and runs the rest. Within its flow's
    /// concurrency as any start.
    pub async fn rerun(&self, id: &str, from_failed: bool, trigger: serde_json::Value) -> Result<Started, String> {
        let r = self.recorded(id).await?;
        let recorded = self
            .store
            .show(id)
            .await
            .map_err(|e| e.to_string())?
            .map(|(_, tasks)| tasks)
            .unwrap_or_default();
        let rerun = resume::rerun(&r, from_failed, &recorded, self.sourcing())?;
        let record = resume::rerun_record(&r, &rerun.loaded.plan, Some(trigger), Origin::Server);
        let run = Prepared {
            plan: Arc::new(rerun.loaded.plan),
            inputs: rerun.loaded.inputs,
            secrets: rerun.loaded.secrets,
            base_dir: r.base_dir.clone(),
            restored: rerun.kept,
        };
        self.launch(&record, &rerun.kept_changes, run).await
    }

    /// Records a new execution (with `kept`, task runs it takes over) and
    /// starts it, queues it or records it skipped, as its concurrency says.
    async fn launch(&self, record: &NewExecution<'_>, kept: &[Change], run: Prepared) -> Result<Started, String> {
        let limit = limit_of(&run.plan, &run.inputs)?;
        let mut queues = self.queues.lock().await;
        let id = self.store.begin(record).await.map_err(|e| e.to_string())?;
        if !kept.is_empty() {
            self.store.apply(&id, kept).await.map_err(|e| e.to_string())?;
        }
        let Some(limit) = limit else {
            if !self.room() {
                return self.wait_for_room(id, &mut queues).await;
            }
            self.spawn(&id, run, None);
            return Ok(Started {
                id,
                state: ExecutionState::Running,
            });
        };
        let holders = self.running.in_slot(&limit.slot);
        let queued = queues.get(&limit.slot).map_or(0, VecDeque::len);
        if holders.len() + queued >= limit.limit {
            match limit.on_conflict.as_str() {
                "cancel_running" => {
                    let why = format!(
                        "cancelled: execution {id} replaced it (concurrency key `{}`, on_conflict: cancel_running)",
                        limit.key
                    );
                    for other in holders {
                        self.running.stop(&other, &why);
                    }
                    // Queued ones of the key are replaced too.
                    for other in queues.remove(&limit.slot).unwrap_or_default() {
                        self.finish_unrun(&other, &why).await;
                    }
                }
                "skip" => {
                    let why = format!(
                        "skipped: {} execution(s) of concurrency key `{}` already run (limit {}, on_conflict: skip)",
                        holders.len(),
                        limit.key,
                        limit.limit
                    );
                    self.finish_unrun(&id, &why).await;
                    return Ok(Started {
                        id,
                        state: ExecutionState::Cancelled,
                    });
                }
                _ => {
                    self.store.mark_queued(&id).await.map_err(|e| e.to_string())?;
                    queues.entry(limit.slot).or_default().push_back(id.clone());
                    return Ok(Started {
                        id,
                        state: ExecutionState::Queued,
                    });
                }
            }
        }
        if !self.room() {
            return self.wait_for_room(id, &mut queues).await;
        }
        self.spawn(&id, run, Some(limit.slot));
        Ok(Started {
            id,
            state: ExecutionState::Running,
        })
    }

    /// Records an execution `queued` until the server-wide limit has room.
    async fn wait_for_room(
        &self,
        id: String,
        queues: &mut HashMap<String, VecDeque<String>>,
    ) -> Result<Started, String> {
        self.store.mark_queued(&id).await.map_err(|e| e.to_string())?;
        queues.entry(ANY_SLOT.to_string()).or_default().push_back(id.clone());
        Ok(Started {
            id,
            state: ExecutionState::Queued,
        })
    }

    /// An execution that will not run: recorded `cancelled`, saying why.
    async fn finish_unrun(&self, id: &str, why: &str) {
        let failures = serde_json::json!([why]);
        if let Err(e) = self
            .store
            .finish(id, ExecutionState::Cancelled, &failures, &serde_json::json!({}))
            .await
        {
            eprintln!("kflow serve: the history: {e}");
        }
    }

    /// Runs on an execution this server started and did not finish (it was
    /// stopped, or killed, or queued): what succeeded is restored, not run
    /// again; a gate waits again for its decision (the execution stays
    /// `paused`).
    pub async fn resume(&self, id: &str) -> Result<(), String> {
        let r = self.recorded(id).await?;
        let loaded = resume::load(&r, self.sourcing())?;
        let restored = resume::restored(&loaded.plan, &r.done)?;
        let slot = limit_of(&loaded.plan, &loaded.inputs)?.map(|l| l.slot);
        self.store.reopen(&r.id).await.map_err(|e| e.to_string())?;
        let run = Prepared {
            plan: Arc::new(loaded.plan),
            inputs: loaded.inputs,
            secrets: loaded.secrets,
            base_dir: r.base_dir,
            restored,
        };
        self.spawn(&r.id, run, slot);
        Ok(())
    }

    /// Runs a recorded execution in the background; when it ends, the next
    /// queued execution of its slot starts.
    fn spawn(&self, id: &str, run: Prepared, slot: Option<String>) {
        let Prepared {
            plan,
            inputs,
            secrets,
            base_dir,
            restored,
        } = run;
        let cancel = CancellationToken::new();
        let stopped: Arc<OnceLock<String>> = Arc::default();
        self.running.lock().insert(
            id.to_string(),
            Handle {
                cancel: cancel.clone(),
                stopped: stopped.clone(),
                slot: slot.clone(),
            },
        );
        let env = RunEnv {
            execution: id.to_string(),
            dispatch: self.dispatch.clone(),
            artifacts: self.state_dir.join("artifacts").join(id),
            state_dir: self.state_dir.clone(),
            store: self.store.clone(),
            state_hint: format!(" --state {}", self.state_dir.display()),
            // A gate waits in the server; decisions arrive through the history.
            detach: false,
            restored,
            inputs,
            secrets,
            base_dir,
            jobs: self.jobs,
            cancel,
        };
        let launcher = self.clone();
        let key = id.to_string();
        self.running.tracker.spawn(async move {
            let ended = recorder::run_stoppable(plan, env, Quiet, stopped).await;
            eprintln!("kflow serve: execution {key} {}", ended.state);
            launcher.running.lock().remove(&key);
            launcher.next(slot.as_deref()).await;
        });
    }

    /// A queued execution a restarted server found: it starts if its slot
    /// has room, else it waits in the slot's queue again.
    pub async fn admit(&self, id: &str) -> Result<(), String> {
        let r = self.recorded(id).await?;
        let loaded = resume::load(&r, self.sourcing())?;
        let mut queues = self.queues.lock().await;
        self.admit_locked(id, &loaded, &mut queues).await
    }

    /// A recorded execution as it can be run again.
    async fn recorded(&self, id: &str) -> Result<Resumable, String> {
        self.store
            .resumable(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no execution `{id}`"))
    }

    /// Starts a queued execution if its slot and the server have room, else
    /// queues it where it waits: its slot's queue, or the server's.
    async fn admit_locked(
        &self,
        id: &str,
        loaded: &resume::Loaded,
        queues: &mut HashMap<String, VecDeque<String>>,
    ) -> Result<(), String> {
        if let Some(limit) = limit_of(&loaded.plan, &loaded.inputs)? {
            let waiting = queues.get(&limit.slot).map_or(0, VecDeque::len);
            if self.running.in_slot(&limit.slot).len() + waiting >= limit.limit {
                queues.entry(limit.slot).or_default().push_back(id.to_string());
                return Ok(());
            }
        }
        if !self.room() {
            queues
                .entry(ANY_SLOT.to_string())
                .or_default()
                .push_back(id.to_string());
            return Ok(());
        }
        self.resume(id).await
    }

    /// Takes an execution out of the queue it waits in, if any.
    pub async fn dequeue(&self, id: &str) {
        for q in self.queues.lock().await.values_mut() {
            q.retain(|x| x != id);
        }
    }

    /// After an execution of `slot` ended: starts the next one queued in
    /// that slot, else the next waiting for the server-wide limit (which
    /// may still have to wait for its own slot).
    async fn next(&self, slot: Option<&str>) {
        // Not while the server is stopping: queued ones wait for the next start.
        if self.running.tracker.is_closed() {
            return;
        }
        // Held while starting, so that two ends cannot both take the room.
        let mut queues = self.queues.lock().await;
        if !self.room() {
            return;
        }
        if let Some(id) = slot.and_then(|s| queues.get_mut(s)).and_then(VecDeque::pop_front) {
            if let Err(e) = self.resume(&id).await {
                self.could_not_start(&id, &e).await;
            }
            return;
        }
        while let Some(id) = queues.get_mut(ANY_SLOT).and_then(VecDeque::pop_front) {
            let admitted = match self.recorded(&id).await.and_then(|r| resume::load(&r, self.sourcing())) {
                Ok(loaded) => self.admit_locked(&id, &loaded, &mut queues).await,
                Err(e) => Err(e),
            };
            match admitted {
                Err(e) => self.could_not_start(&id, &e).await,
                // Started, or gone to wait in its own slot: then the next.
                Ok(()) if self.running.is_running(&id) => return,
                Ok(()) => {
                    if queues.get(ANY_SLOT).is_some_and(|q| q.back() == Some(&id)) {
                        // Back in the server's queue: no room after all.
                        return;
                    }
                }
            }
        }
    }

    async fn could_not_start(&self, id: &str, why: &str) {
        eprintln!("kflow serve: cannot start queued execution {id}: {why}");
        self.finish_unrun(id, &format!("could not start: {why}")).await;
    }
}

/// The queue of executions waiting for the server-wide limit
/// (`--max-executions`), beside the flows' slots (`flow\0key`).
const ANY_SLOT: &str = "\0";

/// The concurrency of an execution of `plan` with these inputs.
fn limit_of(plan: &Plan, inputs: &BTreeMap<String, Value>) -> Result<Option<Limit>, String> {
    let Some(c) = &plan.concurrency else {
        return Ok(None);
    };
    let key = match &c.key {
        Some(expr) => match eval(expr, &Inputs(inputs)) {
            Ok(v) => v.to_text().unwrap_or_default(),
            Err(e) => return Err(format!("the concurrency key cannot be computed: {e}")),
        },
        None => plan.flow.clone(),
    };
    Ok(Some(Limit {
        slot: format!("{}\u{0}{key}", plan.flow),
        key,
        limit: c.limit.max(1) as usize,
        on_conflict: c.on_conflict.clone(),
    }))
}

/// The scope of a concurrency key: the inputs alone.
struct Inputs<'a>(&'a BTreeMap<String, Value>);

impl Scope for Inputs<'_> {
    fn input(&self, name: &str) -> Option<Value> {
        self.0.get(name).cloned()
    }
    fn secret(&self, _: &str) -> Option<Value> {
        None
    }
    fn let_value(&self, name: &str) -> Result<Value, EvalError> {
        Err(EvalError(format!("`{name}` is not known when an execution starts")))
    }
    fn loop_var(&self, _: &str) -> Option<Value> {
        None
    }
    fn outputs(&self, _: &str) -> Option<Value> {
        None
    }
}
