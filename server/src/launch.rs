//! Starting executions in the server: recorded in the same history as
//! `kflow run`, run by the same runtime and recorder, each with its own
//! cancellation so that shutdown can stop them and record them
//! `interrupted`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use kflow_runtime::executor::RunEnv;
use kflow_runtime::recorder::{self, Quiet};
use kflow_runtime::resume;
use kflow_runtime::secret::{self, Readers};
use kflow_runtime::store::{NewExecution, Origin, Store};
use kflow_runtime::value::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::flows::Flow;

/// The executions this server runs now.
#[derive(Default)]
pub struct Running {
    cancels: Mutex<HashMap<String, CancellationToken>>,
    pub tracker: TaskTracker,
}

impl Running {
    /// How many run now.
    pub fn count(&self) -> usize {
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Cancels every running execution (their `finally` blocks run).
    pub fn cancel_all(&self) {
        for c in self.cancels.lock().unwrap_or_else(|p| p.into_inner()).values() {
            c.cancel();
        }
    }
}

pub struct Launcher {
    pub store: Arc<dyn Store>,
    pub state_dir: std::path::PathBuf,
    pub running: Arc<Running>,
    pub jobs: usize,
}

impl Launcher {
    /// Records a new execution of `flow` with these inputs and starts it;
    /// its id. `trigger` is recorded with it (`{"name", "kind", …}`).
    pub async fn start(
        &self,
        flow: &Flow,
        inputs: BTreeMap<String, Value>,
        trigger: serde_json::Value,
    ) -> Result<String, String> {
        let plan = flow.plan.clone();
        // Read for each execution: a rotated secret takes effect at once.
        let secrets = secret::read(&plan, &flow.base_dir, Readers::Run)?;
        let tasks = kflow_runtime::executor::single_tasks(&plan)
            .into_iter()
            .map(|id| (plan.nodes[id].name.clone(), plan.nodes[id].kind.clone()))
            .collect();
        let inputs_json: serde_json::Map<String, serde_json::Value> =
            inputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        let plan_json = serde_json::to_value(&*plan).map_err(|e| format!("cannot record the plan: {e}"))?;
        let base_dir = std::fs::canonicalize(&flow.base_dir).unwrap_or_else(|_| flow.base_dir.clone());
        let id = self
            .store
            .begin(&NewExecution {
                flow: &plan.flow,
                file: &flow.file.display().to_string(),
                inputs: &serde_json::Value::Object(inputs_json),
                tasks,
                plan: plan_json,
                base_dir: base_dir.clone(),
                rerun_of: None,
                trigger: Some(trigger),
                origin: Origin::Server,
            })
            .await
            .map_err(|e| e.to_string())?;
        self.spawn(&id, plan, inputs, secrets, base_dir, Default::default());
        Ok(id)
    }

    /// Runs on an execution this server started and did not finish (it was
    /// stopped, or killed): what succeeded is restored, not run again; a
    /// gate waits again for its decision (the execution stays `paused`).
    pub async fn resume(&self, id: &str) -> Result<(), String> {
        let r = self
            .store
            .resumable(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no execution `{id}`"))?;
        let loaded = resume::load(&r)?;
        let restored = resume::restored(&loaded.plan, &r.done)?;
        self.store.reopen(&r.id).await.map_err(|e| e.to_string())?;
        self.spawn(
            &r.id,
            Arc::new(loaded.plan),
            loaded.inputs,
            loaded.secrets,
            r.base_dir,
            restored,
        );
        Ok(())
    }

    /// Runs a recorded execution in the background.
    fn spawn(
        &self,
        id: &str,
        plan: Arc<kflow_compiler::ir::Plan>,
        inputs: BTreeMap<String, Value>,
        secrets: BTreeMap<String, kflow_runtime::secret::Secret>,
        base_dir: std::path::PathBuf,
        restored: HashMap<String, kflow_runtime::tasks::Outputs>,
    ) {
        let cancel = CancellationToken::new();
        self.running
            .cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), cancel.clone());
        let env = RunEnv {
            execution: id.to_string(),
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
        let running = self.running.clone();
        let key = id.to_string();
        self.running.tracker.spawn(async move {
            let ended = recorder::run(plan, env, Quiet).await;
            eprintln!("kflow serve: execution {key} {}", ended.state);
            running.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        });
    }
}
