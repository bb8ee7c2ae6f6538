//! The reaper: removes the containers, networks and volumes of executions
//! that are no longer alive, found by kflow's labels, and releases the
//! images they held (`docker/hold.rs`). It runs at the start of
//! every `kflow run` and `kflow resume` and with `kflow gc`, so resources of a
//! killed execution (even by SIGKILL) do not outlive the next run.
//!
//! It removes only what it can prove dead, and asks only its own history:
//!
//! - resources labelled with another history (`io.kflow.history`), or with
//!   none (made by an older kflow, or by hand), are never touched: only that
//!   history can tell a paused execution, which has no process, from a
//!   killed one;
//! - of its own executions: `paused` keeps everything; `running` keeps
//!   everything unless its process is provably dead (`owner.rs`: same boot
//!   and PID namespace, no process with that pid and start time — a kflow in
//!   a container cannot see the host's processes, so it proves nothing about
//!   them); `interrupted` (or running in a dead process) loses its containers
//!   and networks but keeps its named volumes, since `kflow resume` may
//!   continue it (`kflow gc --interrupted` takes them too); `succeeded`,
//!   `failed`, `cancelled` — or gone from the history — lose everything,
//!   named volumes included.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;

use crate::docker::{hold, resources, EXECUTION_LABEL, HISTORY_LABEL};
use crate::store::Store;

/// What a pass removed, and what it left because it cannot tell.
#[derive(Debug, Default)]
pub struct Reaped {
    pub executions: Vec<String>,
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    /// Image holds released (the images become this history's to reclaim).
    pub holds: usize,
    /// Executions of other histories (or unlabelled) whose resources stay.
    pub foreign: usize,
    pub errors: Vec<String>,
}

/// What may go of one execution's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Containers and networks; named volumes stay (a resume may need them).
    AllButVolumes,
    All,
}

/// What may go of an execution of this history; `None` when the history
/// does not know it.
async fn verdict(store: &dyn Store, exec: &str) -> Result<Option<Verdict>, String> {
    use crate::state::ExecutionState as S;
    Ok(match store.state_of(exec).await.map_err(|e| e.0)? {
        None => None,
        Some(S::Paused | S::Queued) => Some(Verdict::Keep),
        Some(S::Running) if store.process_alive(exec).await.map_err(|e| e.0)? => Some(Verdict::Keep),
        Some(S::Running | S::Interrupted) => Some(Verdict::AllButVolumes),
        Some(S::Succeeded | S::Failed | S::Cancelled) => Some(Verdict::All),
    })
}

/// Kills the host processes that executions of this history left behind
/// when they died (`kill -9` of kflow): every process of this PID namespace
/// whose environment says `KFLOW_EXECUTION=<id>` of an execution that is
/// provably not alive. A task's own process dies with kflow (a parent-death
/// signal); this takes what it had started in turn. Returns the pids killed.
pub async fn kill_leftover_processes(store: &dyn Store) -> Result<Vec<i32>, String> {
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Ok(killed);
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let Some(exec) = execution_of(pid) else { continue };
        let verdict = match verdicts.get(&exec) {
            Some(v) => *v,
            None => {
                // Only executions this history knows: an id it has never
                // recorded belongs to another history.
                let v = verdict(store, &exec).await?.unwrap_or(Verdict::Keep);
                *verdicts.entry(exec).or_insert(v)
            }
        };
        if verdict != Verdict::Keep {
            // SAFETY: kill(2) touches no memory; a process gone meanwhile is ESRCH.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed.push(pid);
            }
        }
    }
    Ok(killed)
}

/// The `KFLOW_EXECUTION` a process was started with, if readable.
fn execution_of(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(b"KFLOW_EXECUTION="))
        .map(|id| String::from_utf8_lossy(id).into_owned())
}

/// Containers and networks a dead worker's attempts left (their named
/// volumes stay, as for an interrupted execution): the execution lives on,
/// its task queued again elsewhere, so its own verdict keeps them. A worker
/// is dead when the history says it is gone, or when its process ran on
/// this machine (same boot) and is provably gone — a restarted worker under
/// the same name is a new process. Only this history's resources.
async fn reap_dead_workers(docker: &Docker, store: &dyn Store, reaped: &mut Reaped) -> Result<(), String> {
    let found = resources::find(docker, crate::docker::WORKER_LABEL).await?;
    let history = store.history_id();
    let me = crate::owner::Owner::current();
    let mut dead: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut doomed = resources::Found::default();
    for (r, is_container) in found
        .containers
        .into_iter()
        .map(|r| (r, true))
        .chain(found.networks.into_iter().map(|r| (r, false)))
    {
        if r.labels.get(HISTORY_LABEL).map(String::as_str) != Some(history) {
            continue;
        }
        let worker = r.labels.get(crate::docker::WORKER_LABEL).cloned().unwrap_or_default();
        let owner = r.labels.get(crate::docker::OWNER_LABEL).cloned().unwrap_or_default();
        let key = (worker, owner);
        let is_dead = match dead.get(&key) {
            Some(d) => *d,
            None => {
                let here_and_gone = crate::owner::Owner::parse(&key.1)
                    .is_some_and(|o| o.boot == me.boot && o.liveness() == crate::owner::Liveness::Dead);
                let d = here_and_gone || store.worker_gone(&key.0).await.map_err(|e| e.0)?;
                *dead.entry(key).or_insert(d)
            }
        };
        if is_dead {
            if is_container {
                doomed.containers.push(r);
            } else {
                doomed.networks.push(r);
            }
        }
    }
    let (c, n, _, errors) = resources::remove(docker, &doomed, false).await;
    reaped.containers += c;
    reaped.networks += n;
    reaped.errors.extend(errors);
    Ok(())
}

/// Connects with a short deadline: a run must not wait on an engine that
/// does not answer just to clean up.
pub async fn connect_quickly() -> Option<Docker> {
    let docker = crate::docker::endpoint::Endpoint::from_env().ok()?.client().ok()?;
    tokio::time::timeout(Duration::from_secs(2), docker.negotiate_version())
        .await
        .ok()?
        .ok()
}

/// One pass; `interrupted_volumes` takes the named volumes of interrupted
/// executions too (`kflow gc --interrupted`).
pub async fn reap(docker: &Docker, store: &dyn Store, interrupted_volumes: bool) -> Result<Reaped, String> {
    let mut reaped = Reaped::default();
    reap_dead_workers(docker, store, &mut reaped).await?;
    let found = resources::find(docker, EXECUTION_LABEL).await?;
    // Group by execution, deciding once per execution.
    let mut by_exec: BTreeMap<String, resources::Found> = BTreeMap::new();
    let key = |r: &resources::Resource| r.labels.get(EXECUTION_LABEL).cloned().unwrap_or_default();
    for r in found.containers {
        by_exec.entry(key(&r)).or_default().containers.push(r);
    }
    for r in found.networks {
        by_exec.entry(key(&r)).or_default().networks.push(r);
    }
    for r in found.volumes {
        by_exec.entry(key(&r)).or_default().volumes.push(r);
    }
    let history = store.history_id().to_string();
    // Holds are tags of this history's own repository: never another's.
    let mut held: BTreeMap<String, Vec<hold::Hold>> = BTreeMap::new();
    for h in hold::holds(docker, &history).await? {
        held.entry(h.execution.clone()).or_default().push(h);
    }
    for (exec, holds) in held {
        let go = match verdict(store, &exec).await?.unwrap_or(Verdict::All) {
            Verdict::All => true,
            Verdict::AllButVolumes => interrupted_volumes,
            Verdict::Keep => false,
        };
        if go {
            match hold::release_holds(docker, &history, &holds).await {
                Ok(()) => reaped.holds += holds.len(),
                Err(e) => reaped.errors.push(e),
            }
        }
    }
    for (exec, res) in by_exec {
        let ours = res
            .containers
            .iter()
            .chain(&res.networks)
            .chain(&res.volumes)
            .all(|r| r.labels.get(HISTORY_LABEL) == Some(&history));
        if !ours {
            reaped.foreign += 1;
            continue;
        }
        // Labelled by this history but gone from it: pruned, so finished.
        let verdict = match verdict(store, &exec).await?.unwrap_or(Verdict::All) {
            Verdict::AllButVolumes if interrupted_volumes => Verdict::All,
            v => v,
        };
        if verdict == Verdict::Keep {
            continue;
        }
        let (c, n, v, errors) = resources::remove(docker, &res, verdict == Verdict::All).await;
        reaped.containers += c;
        reaped.networks += n;
        reaped.volumes += v;
        reaped.errors.extend(errors);
        if c + n + v > 0 {
            reaped.executions.push(exec);
        }
    }
    Ok(reaped)
}
