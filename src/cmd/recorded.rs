//! A recorded execution made runnable again, for `kflow resume` and
//! `kflow rerun`: its plan and inputs as recorded, its secrets read again
//! (they are never recorded), and the outputs of what succeeded.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use kflow_compiler::ir::Plan;
use kflow_runtime::secret::Secret;
use kflow_runtime::store::Resumable;
use kflow_runtime::tasks::Outputs;
use kflow_runtime::value::Value;

use super::{Result, UsageError};

/// The flags `resume` and `rerun` share: how the execution runs on.
#[derive(clap::Args)]
pub struct RunFlags {
    /// Print one JSON event per line instead of the log.
    #[arg(long)]
    pub json: bool,
    /// Pause (and exit, printing the id) when an approval has to wait.
    #[arg(long)]
    pub detach: bool,
    /// How many tasks may run at once.
    #[arg(long, default_value_t = 16)]
    pub jobs: usize,
    /// Folder of the execution history (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

pub struct Loaded {
    pub plan: Plan,
    pub inputs: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
}

pub fn load(r: &Resumable) -> Result<Loaded> {
    let plan: Plan = serde_json::from_value(r.plan.clone())
        .map_err(|e| UsageError(format!("the recorded plan of {} is unreadable: {e}", r.id)))?;
    let mut inputs = BTreeMap::new();
    for decl in &plan.inputs {
        let json = r.inputs.get(&decl.name).cloned().unwrap_or(serde_json::Value::Null);
        let v = Value::from_json(&json, &decl.ty)
            .ok_or_else(|| UsageError(format!("the recorded input `{}` does not fit its type", decl.name)))?;
        inputs.insert(decl.name.clone(), v);
    }
    let secrets = super::run::read_secrets(&plan, &r.base_dir)?;
    Ok(Loaded { plan, inputs, secrets })
}

/// The outputs of the task runs that succeeded, by run name, as the
/// executor takes them instead of running those tasks again.
pub fn restored(plan: &Plan, done: &[(String, serde_json::Value)]) -> Result<HashMap<String, Outputs>> {
    let mut restored = HashMap::new();
    for (name, json) in done {
        let outputs = kflow_runtime::executor::restore_outputs(plan, name, json).ok_or_else(|| {
            UsageError(format!(
                "the recorded outputs of `{name}` do not fit its kind; run the flow again"
            ))
        })?;
        restored.insert(name.clone(), outputs);
    }
    Ok(restored)
}
