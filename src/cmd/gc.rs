//! `kflow gc`, and the reaper pass at the start of every run: containers,
//! networks and volumes of executions that are no longer alive are removed,
//! and the images they held become reclaimable; `kflow gc` also removes
//! the images finished executions built that nothing else names.

use crate::cmd::out::outln;
use std::path::PathBuf;
use std::process::ExitCode;

use kflow_runtime::docker::hold;
use kflow_runtime::reaper;
use kflow_runtime::store::Store;

use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of the execution history (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The shared PostgreSQL history, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Also remove the named volumes of interrupted executions (kept by
    /// default: `kflow resume` may continue them with their data).
    #[arg(long)]
    interrupted: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = super::one_thread_runtime()?;
    let history = super::state::History::find(args.state.as_deref(), args.store.as_deref());
    let (reaped, images) = rt.block_on(async {
        let store = history.open().await?;
        let killed = reaper::kill_leftover_processes(&*store).await.map_err(UsageError)?;
        if !killed.is_empty() {
            outln!(
                "killed {} process(es) left running by executions no longer alive",
                killed.len()
            );
        }
        let docker = reaper::connect_quickly().await.ok_or_else(|| {
            UsageError(format!(
                "cannot reach the Docker engine at {}",
                kflow_runtime::docker::engine_address()
            ))
        })?;
        let reaped = reaper::reap(&docker, &*store, args.interrupted)
            .await
            .map_err(UsageError)?;
        let images = hold::reclaim(&docker, store.history_id()).await.map_err(UsageError)?;
        Ok::<_, UsageError>((reaped, images))
    })?;
    outln!(
        "removed {} container(s), {} network(s), {} volume(s) of {} execution(s) no longer alive",
        reaped.containers,
        reaped.networks,
        reaped.volumes,
        reaped.executions.len()
    );
    for id in &reaped.executions {
        outln!("  {id}");
    }
    if reaped.foreign > 0 {
        outln!(
            "left the resources of {} execution(s) of other histories: only their own history can tell whether they are done (run `kflow gc` there)",
            reaped.foreign
        );
    }
    outln!(
        "removed {} image(s) built by finished executions{}",
        images.deleted,
        match images.kept {
            0 => String::new(),
            n => format!(
                "; kept {n} that are tagged, held by a running or paused execution (of any history), or used by a container"
            ),
        }
    );
    for e in reaped.errors.iter().chain(&images.errors) {
        eprintln!("kflow: could not remove {e}");
    }
    Ok(if reaped.errors.is_empty() && images.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// At the start of a run (new or resumed): reap quietly when the engine
/// answers, say what was removed, never stop the run for it.
pub async fn reap_quietly(store: &dyn Store) {
    match reaper::kill_leftover_processes(store).await {
        Ok(killed) if !killed.is_empty() => eprintln!(
            "kflow: killed {} process(es) left running by earlier executions",
            killed.len()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("kflow: could not look for processes of earlier executions: {e}"),
    }
    let Some(docker) = reaper::connect_quickly().await else {
        return;
    };
    match reaper::reap(&docker, store, false).await {
        Ok(r) if !r.executions.is_empty() => eprintln!(
            "kflow: removed {} container(s), {} network(s), {} volume(s) left by {} earlier execution(s)",
            r.containers,
            r.networks,
            r.volumes,
            r.executions.len()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("kflow: could not look for leftovers of earlier executions: {e}"),
    }
}
