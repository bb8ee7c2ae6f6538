//! Containers, networks and volumes found by label, and their removal: what
//! `compose.down` and the reaper share.

use std::collections::HashMap;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use bollard::Docker;

use super::{describe, not_found};

/// One resource and its labels.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// Everything carrying `label` (`key` or `key=value`).
#[derive(Debug, Default)]
pub struct Found {
    pub containers: Vec<Resource>,
    pub networks: Vec<Resource>,
    pub volumes: Vec<Resource>,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }
}

pub async fn find(docker: &Docker, label: &str) -> Result<Found, String> {
    let filters = HashMap::from([("label", vec![label])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| format!("cannot list containers: {}", describe(&e)))?
        .into_iter()
        .filter_map(|c| {
            Some(Resource {
                id: c.id?,
                labels: c.labels.unwrap_or_default(),
            })
        })
        .collect();
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(|e| format!("cannot list networks: {}", describe(&e)))?
        .into_iter()
        .filter_map(|n| {
            Some(Resource {
                id: n.id?,
                labels: n.labels.unwrap_or_default(),
            })
        })
        .collect();
    let volumes = docker
        .list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(|e| format!("cannot list volumes: {}", describe(&e)))?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| Resource {
            id: v.name,
            labels: v.labels,
        })
        .collect();
    Ok(Found {
        containers,
        networks,
        volumes,
    })
}

/// Whether the engine refused because of something in progress (a removal
/// by another party, a container still leaving a network): worth retrying.
fn conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }
    )
}

/// One removal: gone already counts as done; a conflict — another remover
/// (a `compose.down`, another run's reaper) at work on the same resource —
/// is retried a few times before it is reported.
async fn remove_one<F, Fut>(what: &str, mut attempt: F) -> Result<bool, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), bollard::errors::Error>>,
{
    for tries in 1.. {
        match attempt().await {
            Ok(()) => return Ok(true),
            Err(e) if not_found(&e) => return Ok(false),
            Err(e) if conflict(&e) && tries < 4 => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
            Err(e) => return Err(format!("{what}: {}", describe(&e))),
        }
    }
    unreachable!("the loop returns")
}

/// Removes containers first (with their anonymous volumes), then networks,
/// then volumes when asked; returns how many of each went, and the errors.
pub async fn remove(docker: &Docker, found: &Found, volumes: bool) -> (usize, usize, usize, Vec<String>) {
    let mut errors = Vec::new();
    let (mut c, mut n, mut v) = (0, 0, 0);
    let short = |id: &str| id[..id.len().min(12)].to_string();
    for r in &found.containers {
        let force = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        let what = format!("container {}", short(&r.id));
        match remove_one(&what, || docker.remove_container(&r.id, Some(force.clone()))).await {
            Ok(removed) => c += usize::from(removed),
            Err(e) => errors.push(e),
        }
    }
    for r in &found.networks {
        let what = format!("network {}", short(&r.id));
        match remove_one(&what, || docker.remove_network(&r.id)).await {
            Ok(removed) => n += usize::from(removed),
            Err(e) => errors.push(e),
        }
    }
    if volumes {
        for r in &found.volumes {
            let what = format!("volume {}", r.id);
            let opts = || Some(RemoveVolumeOptionsBuilder::default().force(true).build());
            match remove_one(&what, || docker.remove_volume(&r.id, opts())).await {
                Ok(removed) => v += usize::from(removed),
                Err(e) => errors.push(e),
            }
        }
    }
    (c, n, v, errors)
}
