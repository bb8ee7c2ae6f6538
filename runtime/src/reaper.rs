//! The reaper: removes the containers, networks and volumes of executions
//! that are no longer alive, found by kflow's labels. It runs at the start of
//! every `kflow run` and with `kflow gc`, so resources of a killed execution
//! (even by SIGKILL) do not outlive the next run.
//!
//! An execution is alive when the history says it is running in a live
//! process, or paused (its resources wait for the resume); an execution this
//! history does not know is alive while the process that labelled the
//! resources (`io.kflow.pid`) lives. Without that label (the engine's
//! intermediate build containers carry only the image's labels) nothing
//! tells, so they are left alone: the engine removes those itself, and
//! taking them from a running build in another history broke it.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;

use crate::docker::{resources, EXECUTION_LABEL, PID_LABEL};
use crate::store::Store;

/// What a pass removed.
#[derive(Debug, Default)]
pub struct Reaped {
    pub executions: Vec<String>,
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    pub errors: Vec<String>,
}

fn pid_alive(pid: &str) -> bool {
    pid.parse::<i64>().is_ok_and(crate::store::process_alive)
}

/// Connects with a short deadline: a run must not wait on an engine that
/// does not answer just to clean up.
pub async fn connect_quickly() -> Option<Docker> {
    let docker = Docker::connect_with_defaults().ok()?;
    tokio::time::timeout(Duration::from_secs(2), docker.negotiate_version())
        .await
        .ok()?
        .ok()
}

pub async fn reap(docker: &Docker, store: &Store) -> Result<Reaped, String> {
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
    let mut reaped = Reaped::default();
    for (exec, res) in by_exec {
        let pid = res
            .containers
            .iter()
            .chain(&res.networks)
            .chain(&res.volumes)
            .find_map(|r| r.labels.get(PID_LABEL).cloned());
        let alive = match store.state_of(&exec).map_err(|e| e.0)? {
            Some(state) if state == "paused" => true,
            Some(state) if state == "running" => store.process_alive(&exec).map_err(|e| e.0)?,
            Some(_) => false,
            None => pid.as_deref().is_none_or(pid_alive),
        };
        if alive {
            continue;
        }
        let (c, n, v, errors) = resources::remove(docker, &res, true).await;
        reaped.containers += c;
        reaped.networks += n;
        reaped.volumes += v;
        reaped.errors.extend(errors);
        reaped.executions.push(exec);
    }
    Ok(reaped)
}
