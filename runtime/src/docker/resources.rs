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

/// Removes containers first (with their anonymous volumes), then networks,
/// then volumes when asked; returns how many of each went, and the errors.
pub async fn remove(docker: &Docker, found: &Found, volumes: bool) -> (usize, usize, usize, Vec<String>) {
    let mut errors = Vec::new();
    let (mut c, mut n, mut v) = (0, 0, 0);
    let force = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    for r in &found.containers {
        match docker.remove_container(&r.id, Some(force.clone())).await {
            Ok(()) => c += 1,
            Err(e) if not_found(&e) => {}
            Err(e) => errors.push(format!("container {}: {}", &r.id[..r.id.len().min(12)], describe(&e))),
        }
    }
    for r in &found.networks {
        match docker.remove_network(&r.id).await {
            Ok(()) => n += 1,
            Err(e) if not_found(&e) => {}
            Err(e) => errors.push(format!("network {}: {}", &r.id[..r.id.len().min(12)], describe(&e))),
        }
    }
    if volumes {
        for r in &found.volumes {
            match docker
                .remove_volume(&r.id, Some(RemoveVolumeOptionsBuilder::default().force(true).build()))
                .await
            {
                Ok(()) => v += 1,
                Err(e) if not_found(&e) => {}
                Err(e) => errors.push(format!("volume {}: {}", r.id, describe(&e))),
            }
        }
    }
    (c, n, v, errors)
}
