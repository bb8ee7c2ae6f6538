//! `kflow rerun`: a new execution of a recorded one, with the same plan and
//! inputs, linked to it; `--from-failed` restores what succeeded there and
//! runs the rest.
//!
//! The recorded plan is what runs, not the file as it is now: a rerun
//! repeats what ran (to run edited code, `kflow run` the file again).

use crate::cmd::out::outln;
use std::process::ExitCode;

use kflow_runtime::state::{ExecutionState, TaskState};
use kflow_runtime::store::{now, Change, NewExecution};

use super::recorded::{load, restored, Loaded};
use super::state::StateDir;
use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct Args {
    /// The execution id (or a unique prefix of it, or `latest`).
    id: String,
    /// Keep what succeeded in that execution and run only the rest (its
    /// failed, skipped and unfinished tasks).
    #[arg(long)]
    from_failed: bool,
    #[command(flatten)]
    run: super::recorded::RunFlags,
}

pub fn run(args: Args) -> Result<ExitCode> {
    super::out::outlive_reader();
    if args.run.jobs == 0 {
        return Err(UsageError("--jobs must be at least 1".into()));
    }
    let state = StateDir::find(args.run.state.as_deref());
    let store = std::sync::Arc::new(state.open()?);
    let r = store
        .resumable(&args.id)
        .map_err(|e| UsageError(e.0))?
        .ok_or_else(|| UsageError(format!("no execution `{}` in the history", args.id)))?;
    if args.from_failed && !matches!(r.state, ExecutionState::Failed | ExecutionState::Interrupted) {
        return Err(UsageError(format!(
            "execution {} {}: --from-failed takes a failed or interrupted execution{}",
            r.id,
            r.state,
            match r.state {
                ExecutionState::Paused => " (this one can be resumed: kflow resume)",
                _ => "",
            }
        )));
    }
    let Loaded { plan, inputs, secrets } = load(&r)?;
    let kept = if args.from_failed {
        restored(&plan, &r.done)?
    } else {
        Default::default()
    };
    let tasks: Vec<(String, String)> = kflow_runtime::executor::single_tasks(&plan)
        .into_iter()
        .map(|id| (plan.nodes[id].name.clone(), plan.nodes[id].kind.clone()))
        .collect();
    let id = store
        .begin(&NewExecution {
            flow: &r.flow,
            file: &r.file,
            inputs: &r.inputs,
            tasks,
            plan: r.plan.clone(),
            base_dir: r.base_dir.clone(),
            rerun_of: Some(&r.id),
            trigger: None,
            origin: kflow_runtime::store::Origin::Cli,
        })
        .map_err(|e| UsageError(e.0))?;
    // What is kept is recorded in the new execution as it was in the old,
    // so the new one's history is whole on its own.
    let kinds = store
        .show(&r.id)
        .map_err(|e| UsageError(e.0))?
        .map(|(_, tasks)| tasks)
        .unwrap_or_default();
    let changes: Vec<Change> = r
        .done
        .iter()
        .filter(|(name, _)| kept.contains_key(name))
        .map(|(name, outputs)| Change::Finished {
            task: name.clone(),
            kind: kinds
                .iter()
                .find(|t| &t.task == name)
                .map_or_else(String::new, |t| t.kind.clone()),
            state: TaskState::Succeeded,
            error: None,
            outputs: outputs.clone(),
            at: now(),
        })
        .collect();
    store.apply(&id, &changes).map_err(|e| UsageError(e.0))?;
    if args.run.json {
        outln!("{}", super::events::execution_started(&id, &r.flow, Some(&r.id)));
    } else {
        outln!("execution {id} of flow {}, a rerun of {}", r.flow, r.id);
    }
    super::run::execute_recorded(super::run::Recorded {
        plan,
        id,
        store,
        state,
        base_dir: r.base_dir,
        inputs,
        secrets,
        restored: kept,
        jobs: args.run.jobs,
        json: args.run.json,
        detach: args.run.detach,
    })
}
