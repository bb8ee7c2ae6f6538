//! A recorded execution made runnable again, for `kflow resume`, `kflow
//! rerun` and a server resuming what it was running when it stopped: its
//! plan and inputs as recorded, its secrets read again (they are never
//! recorded), and the outputs of what succeeded.

use std::collections::{BTreeMap, HashMap};

use kflow_compiler::ir::Plan;

use crate::secret::{self, Secret};
use crate::state::{ExecutionState, TaskState};
use crate::store::{now, Change, NewExecution, Origin, Resumable, TaskRow};
use crate::tasks::Outputs;
use crate::value::Value;

pub struct Loaded {
    pub plan: Plan,
    pub inputs: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
}

pub fn load(r: &Resumable, sourcing: secret::Sourcing) -> Result<Loaded, String> {
    let plan: Plan = serde_json::from_value(r.plan.clone())
        .map_err(|e| format!("the recorded plan of {} is unreadable: {e}", r.id))?;
    let mut inputs = BTreeMap::new();
    for decl in &plan.inputs {
        let json = r.inputs.get(&decl.name).cloned().unwrap_or(serde_json::Value::Null);
        let v = Value::from_json(&json, &decl.ty)
            .ok_or_else(|| format!("the recorded input `{}` does not fit its type", decl.name))?;
        inputs.insert(decl.name.clone(), v);
    }
    let secrets = secret::for_run(&plan, &r.base_dir, sourcing)?;
    Ok(Loaded { plan, inputs, secrets })
}

/// The outputs of the task runs that succeeded, by run name, as the
/// executor takes them instead of running those tasks again. A run that
/// output a secret (a minted login, an OIDC token) is not among them: the
/// history never held the secret, so it runs again.
pub fn restored(plan: &Plan, done: &[(String, serde_json::Value)]) -> Result<HashMap<String, Outputs>, String> {
    let mut restored = HashMap::new();
    for (name, json) in done {
        if crate::executor::outputs_secrets(plan, name) {
            continue;
        }
        let outputs = crate::executor::restore_outputs(plan, name, json)
            .ok_or_else(|| format!("the recorded outputs of `{name}` do not fit its kind; run the flow again"))?;
        restored.insert(name.clone(), outputs);
    }
    Ok(restored)
}

/// A new execution of a recorded one (`kflow rerun`, the API's rerun): the
/// recorded plan and inputs, linked to it; `from_failed` keeps what
/// succeeded there. The recorded plan runs, not the file as it is now.
pub struct Rerun {
    pub loaded: Loaded,
    /// Outputs the executor restores instead of running those tasks.
    pub kept: HashMap<String, Outputs>,
    /// The kept task runs, recorded in the new execution as they were in
    /// the old, so that its history is whole on its own.
    pub kept_changes: Vec<Change>,
}

/// Why `r` cannot be rerun from its failed tasks, if it cannot.
pub fn from_failed_refusal(r: &Resumable) -> Option<String> {
    if matches!(r.state, ExecutionState::Failed | ExecutionState::Interrupted) {
        return None;
    }
    Some(format!(
        "execution {} {}: a rerun from the failed tasks takes a failed or interrupted execution{}",
        r.id,
        r.state,
        match r.state {
            ExecutionState::Paused => " (this one can be resumed)",
            _ => "",
        }
    ))
}

/// Prepares a rerun of `r`; `recorded` are its task rows (for their kinds).
pub fn rerun(
    r: &Resumable,
    from_failed: bool,
    recorded: &[TaskRow],
    sourcing: secret::Sourcing,
) -> Result<Rerun, String> {
    if from_failed {
        if let Some(why) = from_failed_refusal(r) {
            return Err(why);
        }
    }
    let loaded = load(r, sourcing)?;
    let kept = if from_failed {
        restored(&loaded.plan, &r.done)?
    } else {
        HashMap::new()
    };
    let kept_changes = r
        .done
        .iter()
        .filter(|(name, _)| kept.contains_key(name))
        .map(|(name, outputs)| Change::Finished {
            task: name.clone(),
            kind: recorded
                .iter()
                .find(|t| &t.task == name)
                .map_or_else(String::new, |t| t.kind.clone()),
            state: TaskState::Succeeded,
            error: None,
            outputs: outputs.clone(),
            at: now(),
        })
        .collect();
    Ok(Rerun {
        loaded,
        kept,
        kept_changes,
    })
}

/// The record of a new execution of `r`'s plan, linked to it.
pub fn rerun_record<'a>(
    r: &'a Resumable,
    plan: &Plan,
    trigger: Option<serde_json::Value>,
    origin: Origin,
) -> NewExecution<'a> {
    NewExecution {
        flow: &r.flow,
        file: &r.file,
        inputs: &r.inputs,
        tasks: crate::executor::single_tasks(plan)
            .into_iter()
            .map(|id| (plan.nodes[id].name.clone(), plan.nodes[id].kind.clone()))
            .collect(),
        plan: r.plan.clone(),
        base_dir: r.base_dir.clone(),
        rerun_of: Some(&r.id),
        trigger,
        origin,
    }
}
