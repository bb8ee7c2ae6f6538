//! An image as the engine exports it (`docker save`), spooled to temporary
//! files entry by entry as the export streams in, and its layers gzipped
//! file to file: a push holds no layer in memory, whatever the image's size.
//!
//! Compression is the slow part of a push: every layer is compressed on its
//! own thread, one per core at once, ahead of the uploads. (Starting each
//! layer while the export still streamed in was no faster on two cores: it
//! competes with the engine, which is exporting; see docs/performance.md.)

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard::Docker;
use futures_util::StreamExt;
use serde::Deserialize;

use super::{describe, not_found};
use crate::registry::client::sha256_digest;
use crate::spool::{self, Spooled, Stop, StopOnDrop};

/// `manifest.json` and the image config are metadata: a few KiB, capped.
const MAX_METADATA: u64 = 16 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// One image of the engine, its files in the folder it was exported to.
pub struct Export {
    pub config: Vec<u8>,
    /// The layers as uncompressed tars, in order, each checked against the
    /// diff id its config gives.
    pub layers: Vec<Spooled>,
}

/// Exports `image` from the engine into files in `dir`.
pub async fn export(docker: &Docker, image: &str, dir: &Path) -> Result<Export, String> {
    // The engine's own error, kept: the tar reader only sees an I/O error.
    let failure = Arc::new(Mutex::new(None::<String>));
    let seen = failure.clone();
    let name = image.to_string();
    let chunks = docker.export_image(image).map(move |chunk| {
        chunk.map_err(|e| {
            let msg = if not_found(&e) {
                format!("no local image {name}")
            } else {
                format!("cannot export {name} from the engine: {}", describe(&e))
            };
            *seen.lock().expect("not poisoned") = Some(msg.clone());
            io::Error::other(msg)
        })
    });
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(Box::pin(chunks)));
    let stop = StopOnDrop(Stop::default());
    let (path, thread_stop) = (dir.to_path_buf(), stop.0.clone());
    let spooled = tokio::task::spawn_blocking(move || spool_export(reader, &path, &thread_stop))
        .await
        .map_err(|e| format!("reading the export failed: {e}"))?;
    let (config, layers) = match spooled {
        Ok(parts) => parts,
        Err(e) => return Err(failure.lock().expect("not poisoned").take().unwrap_or(e)),
    };
    Ok(Export { config, layers })
}

fn spool_export(reader: impl io::Read, dir: &Path, stop: &Stop) -> Result<(Vec<u8>, Vec<Spooled>), String> {
    let bad = |e: io::Error| format!("the engine's export is not a readable tar: {e}");
    let mut files: HashMap<String, Spooled> = HashMap::new();
    let mut archive = tar::Archive::new(reader);
    for (n, entry) in archive.entries().map_err(bad)?.enumerate() {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        // Files are named by their place in the export, never by its paths.
        let file = spool::to_file(&mut entry, dir.join(format!("entry-{n}")), stop).map_err(bad)?;
        files.insert(name, file);
    }
    let find = |p: &str| files.get(p).ok_or_else(|| format!("the engine's export lacks {p}"));
    let manifest = spool::read_small(&find("manifest.json")?.path, MAX_METADATA, "the export's manifest.json")?;
    let images: Vec<SavedImage> =
        serde_json::from_slice(&manifest).map_err(|e| format!("the export's manifest.json is unreadable: {e}"))?;
    let image = images.into_iter().next().ok_or("the engine's export holds no image")?;
    let config = spool::read_small(&find(&image.config)?.path, MAX_METADATA, "the image's config")?;
    let diff_ids = serde_json::from_slice::<Config>(&config)
        .map_err(|e| format!("the image's config is unreadable: {e}"))?
        .rootfs
        .diff_ids;
    if diff_ids.len() != image.layers.len() {
        return Err(format!(
            "the engine exported {} layers for an image whose config lists {}",
            image.layers.len(),
            diff_ids.len()
        ));
    }
    let mut layers = Vec::new();
    for (i, (path, diff_id)) in image.layers.iter().zip(&diff_ids).enumerate() {
        let layer = find(path)?.clone();
        // What is pushed is what the config (and so the image ID) names.
        if &layer.digest != diff_id {
            return Err(format!(
                "the engine exported layer {} as {}, but the image's config says {diff_id}",
                i + 1,
                layer.digest
            ));
        }
        layers.push(layer);
    }
    Ok((config, layers))
}

/// Gzips `raw` into a new file next to it; the result names the blob
/// (digest and size of the compressed bytes).
fn gzip(raw: &Spooled, to: PathBuf, stop: &Stop) -> Result<Spooled, String> {
    let fail = |e: io::Error| format!("compressing a layer: {e}");
    let mut input = File::open(&raw.path).map_err(fail)?;
    let out = io::BufWriter::with_capacity(spool::CHUNK, File::create(&to).map_err(fail)?);
    let mut gz = super::gzip::Encoder::new(spool::Hashing::new(out));
    let (_, read) = spool::copy(&mut input, &mut gz, stop).map_err(fail)?;
    if read != raw.digest {
        return Err(format!("layer {} changed on disk while it was compressed", raw.digest));
    }
    let (_, size, digest) = gz.finish().map_err(fail)?.finish().map_err(fail)?;
    Ok(Spooled { path: to, size, digest })
}

/// The compressions of an export's layers, started at once, one per core
/// running: each distinct layer (by diff id) once, in order. Dropped, it
/// stops what is still running (a cancelled or failed push).
pub struct Compressing {
    pub jobs: Vec<(String, Job)>,
    _stop: StopOnDrop,
}

pub type Job = tokio::task::JoinHandle<Result<Spooled, String>>;

/// Starts compressing `layers` into files in `dir`; each uncompressed file
/// is removed once compressed.
pub fn compress(layers: &[Spooled], dir: &Path) -> Compressing {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let permits = Arc::new(tokio::sync::Semaphore::new(cores));
    let stop = Stop::default();
    let mut jobs: Vec<(String, Job)> = Vec::new();
    for raw in layers {
        if jobs.iter().any(|(diff_id, _)| *diff_id == raw.digest) {
            continue;
        }
        let (raw, permits, stop) = (raw.clone(), permits.clone(), stop.clone());
        let to = dir.join(format!("layer-{}.gz", jobs.len()));
        let diff_id = raw.digest.clone();
        let job = tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            tokio::task::spawn_blocking(move || {
                let gz = gzip(&raw, to, &stop);
                let _ = std::fs::remove_file(&raw.path);
                gz
            })
            .await
            .map_err(|e| format!("compressing a layer failed: {e}"))?
        });
        jobs.push((diff_id, job));
    }
    Compressing {
        jobs,
        _stop: StopOnDrop(stop),
    }
}

/// The config digest an export must have to be `image` (an image ID).
pub fn check_id(export: &Export, image: &str) -> Result<String, String> {
    let config_digest = sha256_digest(&export.config);
    if image.starts_with("sha256:") && config_digest != image {
        return Err(format!(
            "the engine exported {image} with a config hashing to {config_digest}"
        ));
    }
    Ok(config_digest)
}
