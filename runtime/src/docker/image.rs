//! Images between the engine and registries.
//!
//! kflow pushes and pulls through the registry API itself rather than the
//! engine's push/pull endpoints: the image is exported from the engine
//! (`docker save`), its layers compressed and uploaded by kflow's registry
//! client, and the manifest digest read back from the registry; pulls go the
//! other way (`docker load`). One credential path serves push, pull, copy and
//! signing (Docker config, helpers, flow credentials, bearer tokens), the
//! digest is known from the bytes uploaded, and nothing depends on how the
//! engine decodes `X-Registry-Auth` (bollard encodes it as standard base64
//! where the engine expects base64url, which breaks passwords whose encoding
//! holds `+` or `/`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bollard::query_parameters::{ImportImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::layer_cache::{Blob, LayerCache};
use super::{describe, export, not_found};
use crate::registry::client::{is_index, sha256_digest, Manifest, ManifestBody, Registry, RegistryError};
use crate::registry::credentials::Source;
use crate::registry::name::ImageName;
use crate::spool::Spooled;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Gives a local image a tag (`registry/repo:tag`).
pub async fn tag(docker: &Docker, image: &str, reference: &str) -> Result<(), String> {
    let name = ImageName::parse(reference)?;
    let repo = reference
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(reference, |(r, _)| r);
    let options = TagImageOptionsBuilder::default()
        .repo(repo)
        .tag(name.tag.as_deref().unwrap_or("latest"))
        .build();
    docker.tag_image(image, Some(options)).await.map_err(|e| {
        if not_found(&e) {
            format!("no local image {image}")
        } else {
            format!("cannot tag {image} as {reference}: {}", describe(&e))
        }
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LoadEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Uploads a blob held in memory (a config) unless the repository has it
/// already; says whether it did.
async fn ensure_blob(reg: &Registry, repo: &str, digest: &str, data: Bytes) -> Result<bool, String> {
    if reg.blob_exists(repo, digest).await.map_err(|e| e.0)? {
        return Ok(false);
    }
    reg.upload_blob(repo, digest, data).await.map_err(|e| e.0)?;
    Ok(true)
}

/// What a push did.
pub struct Pushed {
    pub digest: String,
    /// Blobs (layers and config) uploaded, and in all.
    pub uploaded: usize,
    pub blobs: usize,
    /// Whether the image was exported from the engine (not when the
    /// registry held all of it).
    pub exported: bool,
}

/// What a pushed manifest is stored under.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Under {
    /// `to`'s tag (`latest` when it has none).
    Tag,
    /// Its own digest alone: a platform image an index will name.
    Digest,
}

/// Pushes a local image to `to` (under its tag, or its digest alone);
/// returns the manifest digest the registry holds there afterwards.
///
/// Layers the registry holds already (known by `cache` from earlier
/// pushes) are not compressed or uploaded again; when it holds them all
/// and the config, the image is not even exported. The others are gzipped
/// straight into their uploads, several at once.
pub async fn push(
    docker: &Docker,
    image: &str,
    to: &ImageName,
    source: &Source,
    cache: &LayerCache,
    under: Under,
) -> Result<Pushed, String> {
    let reg = Arc::new(Registry::new(to.api_host(), source.clone()).map_err(|e| e.0)?);
    let repo = &to.repository;
    let local = docker.inspect_image(image).await.map_err(|e| {
        if not_found(&e) {
            format!("no local image {image}")
        } else {
            format!("cannot inspect {image}: {}", describe(&e))
        }
    })?;
    let id = local.id.unwrap_or_default();
    let diff_ids = local.root_fs.and_then(|r| r.layers).unwrap_or_default();
    let mut blobs: HashMap<String, Blob> = HashMap::new();
    for diff_id in &diff_ids {
        if let Some(blob) = cache.get(diff_id).filter(|_| !blobs.contains_key(diff_id)) {
            if reg.blob_exists(repo, &blob.digest).await.map_err(|e| e.0)? {
                blobs.insert(diff_id.clone(), blob);
            }
        }
    }
    let mut uploaded = 0;
    // The config pushed, and the layers (diff ids) it names, in order.
    let held = held_config(&reg, repo, &id, &diff_ids, &blobs).await;
    let exported = held.is_none();
    let (config, layers) = match held {
        Some(config) => (config, diff_ids),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("kflow-push-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary folder for the export: {e}"))?;
            // Layer-sized files start uploading as the export writes them,
            // the rest of the layers once it is done (a big file that is no
            // layer leaves an unreferenced blob, nothing else). Files stay
            // until the folder goes: the export may still read them.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let export = export::export(docker, image, dir.path(), move |file| {
                let _ = tx.send(file.clone());
            });
            tokio::pin!(export);
            let mut uploads = Uploads::new(reg.clone(), repo);
            let saved = loop {
                tokio::select! {
                    Some(file) = rx.recv() => if !blobs.contains_key(&file.digest) { uploads.start(file) },
                    saved = &mut export => break saved?,
                }
            };
            let config_digest = export::check_id(&saved, image)?;
            for layer in &saved.layers {
                if !blobs.contains_key(&layer.digest) {
                    uploads.start(layer.clone());
                }
            }
            let sent: Vec<(String, Blob)> = uploads
                .finish()
                .await?
                .into_iter()
                .filter(|(diff_id, _)| saved.layers.iter().any(|l| l.digest == *diff_id))
                .collect();
            uploaded += sent.len();
            for (diff_id, blob) in sent {
                cache.put(&diff_id, &blob);
                blobs.insert(diff_id, blob);
            }
            let config = Bytes::from(saved.config);
            let size = config.len() as u64;
            uploaded += usize::from(ensure_blob(&reg, repo, &config_digest, config).await?);
            let config = Blob {
                digest: config_digest,
                size,
            };
            (config, saved.layers.into_iter().map(|l| l.digest).collect())
        }
    };
    let descriptors: Vec<_> = layers
        .iter()
        .map(|d| {
            let gz = &blobs[d];
            serde_json::json!({ "mediaType": DOCKER_LAYER, "size": gz.size, "digest": gz.digest })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": { "mediaType": DOCKER_CONFIG, "size": config.size, "digest": config.digest },
        "layers": descriptors,
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| e.to_string())?);
    let m = Manifest {
        digest: sha256_digest(&bytes),
        bytes,
        media_type: DOCKER_MANIFEST.into(),
    };
    let tag = match under {
        Under::Tag => to.tag.as_deref().unwrap_or("latest"),
        Under::Digest => m.digest.as_str(),
    };
    reg.put_manifest(repo, tag, &m).await.map_err(|e| e.0)?;
    // What the tag points to now, asked of the registry.
    let confirmed = reg.resolve(repo, tag).await.map_err(|e| e.0)?;
    if confirmed != m.digest {
        return Err(format!(
            "{}: after the push, {repo}:{tag} points to {confirmed}, not to the pushed {} (another push raced this one?)",
            to.registry, m.digest
        ));
    }
    Ok(Pushed {
        digest: confirmed,
        uploaded,
        blobs: descriptors.len() + 1,
        exported,
    })
}

/// The image's config, when the registry holds it and every layer of the
/// image already (then nothing needs exporting): read back and checked to
/// be this image's config (its digest the image ID, its layers the
/// engine's), since an ID is not always a config digest.
async fn held_config(
    reg: &Registry,
    repo: &str,
    id: &str,
    diff_ids: &[String],
    blobs: &HashMap<String, Blob>,
) -> Option<Blob> {
    if diff_ids.is_empty() || !diff_ids.iter().all(|d| blobs.contains_key(d)) {
        return None;
    }
    let bytes = reg.blob(repo, id, None).await.ok()?;
    (export::diff_ids(&bytes).ok()? == diff_ids).then(|| Blob {
        digest: id.to_string(),
        size: bytes.len() as u64,
    })
}

/// How many layers upload at once, as containers/image copies blobs: more
/// than the cores, since an upload also waits on the registry (on two
/// cores, 1 at a time took 1.20× skopeo's time, 2 took 1.15×, 4 took 1.01×).
const PARALLEL_UPLOADS: usize = 6;

/// Layer uploads, a few at once, each gzipped on the way. Dropped, they
/// stop (a failed or cancelled push).
struct Uploads {
    reg: Arc<Registry>,
    repo: String,
    permits: Arc<tokio::sync::Semaphore>,
    started: HashSet<String>,
    running: tokio::task::JoinSet<Result<(String, Blob), String>>,
}

impl Uploads {
    fn new(reg: Arc<Registry>, repo: &str) -> Uploads {
        Uploads {
            reg,
            repo: repo.to_string(),
            permits: Arc::new(tokio::sync::Semaphore::new(PARALLEL_UPLOADS)),
            started: HashSet::new(),
            running: tokio::task::JoinSet::new(),
        }
    }

    /// Starts uploading the uncompressed layer `raw`, unless it was.
    fn start(&mut self, raw: Spooled) {
        if !self.started.insert(raw.digest.clone()) {
            return;
        }
        let (reg, repo, permits) = (self.reg.clone(), self.repo.clone(), self.permits.clone());
        self.running.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            let (body, finished) = export::gzip_stream(&raw);
            let what = format!("layer {}", raw.digest);
            let (digest, size) = reg
                .upload_blob_streamed(&repo, &what, body, async { finished.await.map_err(RegistryError) })
                .await
                .map_err(|e| e.0)?;
            Ok((raw.digest, Blob { digest, size }))
        });
    }

    /// Each layer uploaded (its diff id) and the blob it became.
    async fn finish(mut self) -> Result<Vec<(String, Blob)>, String> {
        let mut sent = Vec::new();
        while let Some(done) = self.running.join_next().await {
            sent.push(done.map_err(|e| format!("uploading a layer failed: {e}"))??);
        }
        Ok(sent)
    }
}

/// The platform pulled from an image index: the engine's own.
fn pick_platform(index: &[u8], os: &str, arch: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        #[serde(default)]
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct Platform {
        os: String,
        architecture: String,
    }
    let index: Index = serde_json::from_slice(index).ok()?;
    index
        .manifests
        .into_iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .map(|m| m.digest)
}

/// Pulls `name` into the engine unless `only_if_missing` and the engine
/// has it; returns the local image ID.
pub async fn pull(docker: &Docker, name: &ImageName, source: &Source, only_if_missing: bool) -> Result<String, String> {
    let reg = Registry::new(name.api_host(), source.clone()).map_err(|e| e.0)?;
    let repo = &name.repository;
    let mut m = reg.manifest(repo, name.reference()).await.map_err(|e| e.0)?;
    if is_index(&m.media_type) {
        let version = docker.version().await.map_err(|e| describe(&e))?;
        let os = version.os.unwrap_or_else(|| "linux".into());
        let arch = version.arch.unwrap_or_else(|| "amd64".into());
        let child = pick_platform(&m.bytes, &os, &arch)
            .ok_or_else(|| format!("{} has no image for {os}/{arch}", name.with_tag()))?;
        m = reg.manifest(repo, &child).await.map_err(|e| e.0)?;
    }
    let body: ManifestBody =
        serde_json::from_slice(&m.bytes).map_err(|e| format!("unreadable manifest for {}: {e}", name.reference()))?;
    let config = body.config.ok_or("the manifest names no config")?;
    if only_if_missing && docker.inspect_image(&config.digest).await.is_ok() {
        return Ok(config.digest);
    }
    let config_bytes = reg.blob(repo, &config.digest, config.sized()).await.map_err(|e| e.0)?;
    // The tarball `docker load` reads, written as it is sent: headers and
    // padding from here, each layer streamed from the registry in turn
    // (checked against its digest and size on the way).
    let mut parts = Vec::new();
    let config_path = format!("{}.json", hex_of(&config.digest)?);
    parts.extend(entry(&config_path, config_bytes.len() as u64)?.around(Part::Bytes(config_bytes)));
    let mut layers = Vec::new();
    for layer in &body.layers {
        // The engine's loader decompresses layers itself.
        let path = format!("{}/layer.tar", hex_of(&layer.digest)?);
        if !layers.contains(&path) {
            let size = layer
                .sized()
                .ok_or_else(|| format!("the manifest gives no size for layer {}", layer.digest))?;
            parts.extend(entry(&path, size)?.around(Part::Blob(layer.digest.clone(), size)));
        }
        layers.push(path);
    }
    let repo_tags = match &name.tag {
        Some(_) if name.digest.is_none() => vec![name.with_tag()],
        _ => Vec::new(),
    };
    let load = vec![LoadEntry {
        config: config_path,
        repo_tags,
        layers,
    }];
    let manifest = Bytes::from(serde_json::to_vec(&load).map_err(|e| e.to_string())?);
    parts.extend(entry("manifest.json", manifest.len() as u64)?.around(Part::Bytes(manifest)));
    parts.push(Part::Bytes(Bytes::from_static(&[0; 1024])));
    // A registry's error, kept: the engine only sees the upload end early.
    let failure = Arc::new(Mutex::new(None::<String>));
    let seen = failure.clone();
    let (reg, repo) = (Arc::new(reg), repo.clone());
    let body = futures_util::stream::iter(parts)
        .then(move |part| {
            let (reg, repo) = (reg.clone(), repo.clone());
            async move {
                match part {
                    Part::Bytes(b) => Ok(futures_util::stream::once(async { Ok(b) }).boxed()),
                    Part::Blob(digest, size) => match reg.blob_stream(&repo, &digest, size).await {
                        Ok(s) => Ok(s.boxed()),
                        Err(e) => Err(std::io::Error::other(e.0)),
                    },
                }
            }
        })
        .try_flatten()
        .inspect_err(move |e| {
            seen.lock().expect("not poisoned").get_or_insert_with(|| e.to_string());
        });
    let options = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut stream = docker.import_image(options, bollard::body_try_stream(body), None);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            let cause = failure.lock().expect("not poisoned").take();
            return Err(
                cause.unwrap_or_else(|| format!("the engine refused to load {}: {}", name.with_tag(), describe(&e)))
            );
        }
    }
    if let Some(cause) = failure.lock().expect("not poisoned").take() {
        return Err(cause);
    }
    Ok(config.digest)
}

/// A piece of the load tarball: bytes at hand, or a blob to stream.
enum Part {
    Bytes(Bytes),
    Blob(String, u64),
}

/// A tar entry's header and the padding after its `size` bytes.
struct Entry {
    header: Bytes,
    padding: Bytes,
}

fn entry(path: &str, size: u64) -> Result<Entry, String> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path)
        .map_err(|e| format!("cannot name {path} in the load tarball: {e}"))?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    Ok(Entry {
        header: Bytes::copy_from_slice(h.as_bytes()),
        padding: Bytes::from(vec![0; ((512 - size % 512) % 512) as usize]),
    })
}

impl Entry {
    /// The entry whole: header, content, padding.
    fn around(self, content: Part) -> [Part; 3] {
        [Part::Bytes(self.header), content, Part::Bytes(self.padding)]
    }
}

/// The hex of a `sha256:` digest, which names files in the tarball: a
/// registry's manifest decides it, so nothing else passes.
fn hex_of(digest: &str) -> Result<&str, String> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .ok_or_else(|| format!("the manifest names {digest:?}, not a sha256 digest"))
}
