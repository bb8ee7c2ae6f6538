//! `kflow rerun`: a new execution of a recorded one, with the same plan and
//! inputs, linked to it; `--from-failed` restores what succeeded there and
//! runs the rest.
//!
//! The recorded plan is what runs, not the file as it is now: a rerun
//! repeats what ran (to run edited code, `kflow run` the file again).

use crate::cmd::out::outln;
use std::process::ExitCode;

use kflow_runtime::resume::Loaded;
use kflow_runtime::store::Origin;

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
    let history = args.run.history();
    let runtime = super::run::runtime()?;
    let store = runtime.block_on(history.open_existing())?;
    let r = runtime
        .block_on(store.resumable(&args.id))
        .map_err(|e| UsageError(e.0))?
        .ok_or_else(|| UsageError(format!("no execution `{}` in the history", args.id)))?;
    let recorded = runtime
        .block_on(store.show(&r.id))
        .map_err(|e| UsageError(e.0))?
        .map(|(_, tasks)| tasks)
        .unwrap_or_default();
    let rerun = kflow_runtime::resume::rerun(&r, args.from_failed, &recorded, kflow_runtime::secret::Sourcing::Read)
        .map_err(UsageError)?;
    let Loaded { plan, inputs, secrets } = rerun.loaded;
    let id = runtime
        .block_on(store.begin(&kflow_runtime::resume::rerun_record(&r, &plan, None, Origin::Cli)))
        .map_err(|e| UsageError(e.0))?;
    runtime
        .block_on(store.apply(&id, &rerun.kept_changes))
        .map_err(|e| UsageError(e.0))?;
    if args.run.json {
        outln!("{}", super::events::execution_started(&id, &r.flow, Some(&r.id)));
    } else {
        outln!("execution {id} of flow {}, a rerun of {}", r.flow, r.id);
    }
    super::run::execute_recorded(super::run::Recorded {
        runtime,
        plan,
        id,
        store,
        history,
        base_dir: r.base_dir,
        inputs,
        secrets,
        restored: rerun.kept,
        jobs: args.run.jobs,
        json: args.run.json,
        detach: args.run.detach,
    })
}
