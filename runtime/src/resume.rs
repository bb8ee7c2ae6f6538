//! A recorded execution made runnable again, for `kflow resume`, `kflow
//! rerun` and a server resuming what it was running when it stopped: its
//! plan and inputs as recorded, its secrets read again (they are never
//! recorded), and the outputs of what succeeded.

use std::collections::{BTreeMap, HashMap};

use kflow_compiler::ir::Plan;

use crate::secret::{self, Secret};
use crate::store::Resumable;
use crate::tasks::Outputs;
use crate::value::Value;

pub struct Loaded {
    pub plan: Plan,
    pub inputs: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
}

pub fn load(r: &Resumable) -> Result<Loaded, String> {
    let plan: Plan = serde_json::from_value(r.plan.clone())
        .map_err(|e| format!("the recorded plan of {} is unreadable: {e}", r.id))?;
    let mut inputs = BTreeMap::new();
    for decl in &plan.inputs {
        let json = r.inputs.get(&decl.name).cloned().unwrap_or(serde_json::Value::Null);
        let v = Value::from_json(&json, &decl.ty)
            .ok_or_else(|| format!("the recorded input `{}` does not fit its type", decl.name))?;
        inputs.insert(decl.name.clone(), v);
    }
    let secrets = secret::read(&plan, &r.base_dir, secret::Readers::Run)?;
    Ok(Loaded { plan, inputs, secrets })
}

/// The outputs of the task runs that succeeded, by run name, as the
/// executor takes them instead of running those tasks again.
pub fn restored(plan: &Plan, done: &[(String, serde_json::Value)]) -> Result<HashMap<String, Outputs>, String> {
    let mut restored = HashMap::new();
    for (name, json) in done {
        let outputs = crate::executor::restore_outputs(plan, name, json)
            .ok_or_else(|| format!("the recorded outputs of `{name}` do not fit its kind; run the flow again"))?;
        restored.insert(name.clone(), outputs);
    }
    Ok(restored)
}
