//! What kflow must reclaim of the images it builds, said by tags, never by
//! labels: a label is part of the image's config, so it would change the
//! image ID and the pushed digest on every run, ship to the registry and
//! defeat the build cache. A tag is a name the engine keeps beside the
//! image; it changes no byte of it.
//!
//! - While an execution may still use an image it built, the image is
//!   *held*: tagged `kflow-hold/<history>:<execution>-<run>`. The build
//!   itself sets the tag (the engine tags on completion), so the image is
//!   never untagged between the build and the hold. A held image is never
//!   dangling, so nothing that removes dangling images — no `kflow gc` of
//!   any history — takes it from under a running or paused execution.
//! - When the execution ends (not paused, not interrupted: `resume` and the
//!   images it restores need them), its holds become one tag per image,
//!   `kflow-built/<history>:<image hex>`: built by a finished execution of
//!   this history, free to reclaim. Rebuilding the same context gives the
//!   same image (the cache) and so the same tag: nothing piles up.
//! - `kflow gc` removes the `kflow-built` tags of its history. The engine
//!   deletes an image with its last tag, so an image the user tagged, or
//!   that another history or a live execution holds, only loses that name;
//!   one a container uses is refused by the engine and kept.

use std::collections::HashMap;

use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};
use bollard::Docker;

use super::{describe, image, not_found};

const HOLD_REPOSITORY: &str = "kflow-hold";
const BUILT_REPOSITORY: &str = "kflow-built";

/// The tag holding the image a task run builds.
pub fn hold_tag(history: &str, execution: &str, run: &str) -> String {
    // FNV-1a: the run's name (`build[linux/arm64]`) is no tag, its hash is.
    let hash = run.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{HOLD_REPOSITORY}/{history}:{execution}-{hash:016x}")
}

/// One hold: the execution it belongs to, its tag, the image it holds.
#[derive(Debug, Clone)]
pub struct Hold {
    pub execution: String,
    pub reference: String,
    pub image: String,
}

/// Every `repository:tag` of `repository`, with its image ID.
async fn tagged(docker: &Docker, repository: &str) -> Result<Vec<(String, String)>, String> {
    let filters = HashMap::from([("reference", vec![repository])]);
    let images = docker
        .list_images(Some(ListImagesOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(|e| format!("cannot list images: {}", describe(&e)))?;
    let prefix = format!("{repository}:");
    Ok(images
        .into_iter()
        .flat_map(|i| {
            let id = i.id;
            i.repo_tags
                .into_iter()
                .filter(|t| t.starts_with(&prefix))
                .map(move |t| (t, id.clone()))
        })
        .collect())
}

/// The holds of this history's executions.
pub async fn holds(docker: &Docker, history: &str) -> Result<Vec<Hold>, String> {
    let repository = format!("{HOLD_REPOSITORY}/{history}");
    Ok(tagged(docker, &repository)
        .await?
        .into_iter()
        .filter_map(|(reference, image)| {
            let tag = reference.rsplit_once(':')?.1;
            let execution = tag.rsplit_once('-')?.0.to_string();
            Some(Hold {
                execution,
                reference,
                image,
            })
        })
        .collect())
}

/// What removing one name did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Untagged {
    /// It was the image's last name: the engine deleted the image (and its
    /// build-cache parents no other image has).
    Deleted,
    /// The image has other names; it stays.
    Renamed,
    /// A container uses the image, and the engine keeps its last name.
    InUse,
    /// The name was gone already.
    Gone,
}

async fn untag(docker: &Docker, reference: &str) -> Result<Untagged, String> {
    let options = RemoveImageOptionsBuilder::default().force(false).build();
    match docker.remove_image(reference, Some(options), None).await {
        Ok(done) if done.iter().any(|d| d.deleted.is_some()) => Ok(Untagged::Deleted),
        Ok(_) => Ok(Untagged::Renamed),
        Err(e) if not_found(&e) => Ok(Untagged::Gone),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(Untagged::InUse),
        Err(e) => Err(format!("{reference}: {}", describe(&e))),
    }
}

/// The holds of `execution` become `kflow-built` tags: it has ended and
/// will not use its images again. Returns how many holds it had.
pub async fn release(docker: &Docker, history: &str, execution: &str) -> Result<usize, String> {
    let mine: Vec<Hold> = holds(docker, history)
        .await?
        .into_iter()
        .filter(|h| h.execution == execution)
        .collect();
    release_holds(docker, history, &mine).await?;
    Ok(mine.len())
}

/// Turns holds (found by [`holds`]) into `kflow-built` tags.
pub async fn release_holds(docker: &Docker, history: &str, holds: &[Hold]) -> Result<(), String> {
    for h in holds {
        // Named `built` first, so removing the hold never deletes it.
        let hex = h.image.strip_prefix("sha256:").unwrap_or(&h.image);
        image::tag(docker, &h.image, &format!("{BUILT_REPOSITORY}/{history}:{hex}")).await?;
        untag(docker, &h.reference).await?;
    }
    Ok(())
}

/// What `reclaim` did.
#[derive(Debug, Default)]
pub struct Reclaimed {
    /// Images deleted: nothing else named them.
    pub deleted: usize,
    /// Images kept under another name (the user's tag, another execution's
    /// or history's hold) or for a container that uses them.
    pub kept: usize,
    pub errors: Vec<String>,
}

/// Removes this history's `kflow-built` names (`kflow gc`); the engine
/// deletes each image that had no other name and no container.
pub async fn reclaim(docker: &Docker, history: &str) -> Result<Reclaimed, String> {
    let mut done = Reclaimed::default();
    for (reference, _) in tagged(docker, &format!("{BUILT_REPOSITORY}/{history}")).await? {
        match untag(docker, &reference).await {
            Ok(Untagged::Deleted) => done.deleted += 1,
            Ok(Untagged::Renamed | Untagged::InUse) => done.kept += 1,
            Ok(Untagged::Gone) => {}
            Err(e) => done.errors.push(e),
        }
    }
    Ok(done)
}
