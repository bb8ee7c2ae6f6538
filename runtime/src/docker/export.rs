//! An image as the engine exports it (`docker save`), spooled to temporary
//! files entry by entry as the export streams in, and its layers gzipped
//! straight into their uploads: a push holds no layer in memory, whatever
//! the image's size, and writes each layer to disk once.
//!
//! Each layer's upload can start while the export still streams in.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bytes::Bytes;
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

/// The layers an image config names, in order.
pub fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    Ok(serde_json::from_slice::<Config>(config)
        .map_err(|e| format!("the image's config is unreadable: {e}"))?
        .rootfs
        .diff_ids)
}

/// One image of the engine, its files in the folder it was exported to.
pub struct Export {
    pub config: Vec<u8>,
    /// The layers as uncompressed tars, in order, each checked against the
    /// diff id its config gives.
    pub layers: Vec<Spooled>,
}

/// Files of an export this big are layers: metadata is a few KiB.
const LAYER_SIZED: u64 = 1 << 20;

/// Exports `image` from the engine into files in `dir`. Each file that is
/// layer-sized goes to `layer` as soon as it is written: the layers are
/// named only by `manifest.json`, at the export's end, and work on them can
/// start long before.
pub async fn export(
    docker: &Docker,
    image: &str,
    dir: &Path,
    layer: impl Fn(&Spooled) + Send + 'static,
) -> Result<Export, String> {
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
    let spooled = tokio::task::spawn_blocking(move || spool_export(reader, &path, &thread_stop, layer))
        .await
        .map_err(|e| format!("reading the export failed: {e}"))?;
    let (config, layers) = match spooled {
        Ok(parts) => parts,
        Err(e) => return Err(failure.lock().expect("not poisoned").take().unwrap_or(e)),
    };
    Ok(Export { config, layers })
}

fn spool_export(
    reader: impl io::Read,
    dir: &Path,
    stop: &Stop,
    layer: impl Fn(&Spooled),
) -> Result<(Vec<u8>, Vec<Spooled>), String> {
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
        if file.size >= LAYER_SIZED {
            layer(&file);
        }
        files.insert(name, file);
    }
    let find = |p: &str| files.get(p).ok_or_else(|| format!("the engine's export lacks {p}"));
    let manifest = spool::read_small(&find("manifest.json")?.path, MAX_METADATA, "the export's manifest.json")?;
    let images: Vec<SavedImage> =
        serde_json::from_slice(&manifest).map_err(|e| format!("the export's manifest.json is unreadable: {e}"))?;
    let image = images.into_iter().next().ok_or("the engine's export holds no image")?;
    let config = spool::read_small(&find(&image.config)?.path, MAX_METADATA, "the image's config")?;
    let diff_ids = diff_ids(&config)?;
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

/// Compressed chunks waiting for the upload: a few, so memory stays flat
/// and a slow registry slows the compression rather than growing a queue.
const QUEUED_CHUNKS: usize = 4;

/// Starts gzipping the uncompressed layer `raw` on a blocking thread; the
/// body streams the compressed bytes as they come (to an upload), the
/// future gives their digest and size once all are out. Dropping either
/// stops the thread.
pub fn gzip_stream(
    raw: &Spooled,
) -> (
    reqwest::Body,
    impl std::future::Future<Output = Result<(String, u64), String>> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(QUEUED_CHUNKS);
    let stop = Stop::default();
    let (path, thread_stop) = (raw.path.clone(), stop.clone());
    let done = tokio::task::spawn_blocking(move || {
        let fail = |e: io::Error| format!("compressing a layer: {e}");
        let mut input = File::open(&path).map_err(fail)?;
        let out = ChannelWriter {
            buf: Vec::with_capacity(spool::CHUNK),
            tx,
        };
        let mut gz = super::gzip::Encoder::new(spool::Hashing::new(out));
        spool::copy(&mut input, &mut gz, &thread_stop).map_err(fail)?;
        let (_, size, digest) = gz.finish().map_err(fail)?.finish().map_err(fail)?;
        Ok((digest, size))
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|c| (c, rx)) });
    let stop = StopOnDrop(stop);
    let finished = async move {
        let _stop = stop;
        done.await.map_err(|e| format!("compressing a layer failed: {e}"))?
    };
    (reqwest::Body::wrap_stream(chunks), finished)
}

/// Hands what is written to an async receiver in chunks of
/// [`spool::CHUNK`], waiting while it is [`QUEUED_CHUNKS`] behind.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(spool::CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped reading"))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(spool::CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == spool::CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
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
