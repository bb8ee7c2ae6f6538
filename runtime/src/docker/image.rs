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

use std::collections::HashMap;
use std::io::{Read, Write};

use bollard::query_parameters::{ImportImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{describe, not_found};
use crate::registry::client::{is_index, sha256_digest, Manifest, ManifestBody, Registry};
use crate::registry::credentials::Source;
use crate::registry::name::ImageName;

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

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LoadEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The engine's export of one image: its config bytes and its layers as
/// uncompressed tars, in order.
struct Saved {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

async fn save(docker: &Docker, image: &str) -> Result<Saved, String> {
    let mut stream = docker.export_image(image);
    let mut archive = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if not_found(&e) {
                format!("no local image {image}")
            } else {
                format!("cannot export {image} from the engine: {}", describe(&e))
            }
        })?;
        archive.extend_from_slice(&chunk);
    }
    tokio::task::spawn_blocking(move || read_saved(&archive))
        .await
        .map_err(|e| format!("reading the export failed: {e}"))?
}

fn read_saved(archive: &[u8]) -> Result<Saved, String> {
    let bad = |e: std::io::Error| format!("the engine's export is not a readable tar: {e}");
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for entry in tar::Archive::new(archive).entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(bad)?;
        files.insert(path, bytes);
    }
    let manifest = files
        .get("manifest.json")
        .ok_or("the engine's export has no manifest.json")?;
    let images: Vec<SavedImage> =
        serde_json::from_slice(manifest).map_err(|e| format!("the export's manifest.json is unreadable: {e}"))?;
    let image = images.into_iter().next().ok_or("the engine's export holds no image")?;
    let mut take = |p: &str| files.remove(p).ok_or_else(|| format!("the engine's export lacks {p}"));
    let config = take(&image.config)?;
    let layers = image.layers.iter().map(|l| take(l)).collect::<Result<_, _>>()?;
    Ok(Saved { config, layers })
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut enc = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).map_err(|e| format!("compressing a layer: {e}"))?;
    enc.finish().map_err(|e| format!("compressing a layer: {e}"))
}

/// Uploads a blob unless the repository has it already.
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
}

/// Pushes a local image to `to` (a tag); returns the manifest digest the
/// registry holds for that tag afterwards.
pub async fn push(docker: &Docker, image: &str, to: &ImageName, source: &Source) -> Result<Pushed, String> {
    let saved = save(docker, image).await?;
    let config_digest = sha256_digest(&saved.config);
    if image.starts_with("sha256:") && config_digest != image {
        return Err(format!(
            "the engine exported {image} with a config hashing to {config_digest}"
        ));
    }
    let raw = saved.layers;
    let layers = tokio::task::spawn_blocking(move || raw.iter().map(|l| gzip(l)).collect::<Result<Vec<_>, _>>())
        .await
        .map_err(|e| format!("compressing layers failed: {e}"))??;
    let reg = Registry::new(to.api_host(), source.clone()).map_err(|e| e.0)?;
    let repo = &to.repository;
    let mut uploaded = 0;
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = sha256_digest(&layer);
        descriptors.push(serde_json::json!({ "mediaType": DOCKER_LAYER, "size": layer.len(), "digest": digest }));
        uploaded += usize::from(ensure_blob(&reg, repo, &digest, layer.into()).await?);
    }
    let config_len = saved.config.len();
    uploaded += usize::from(ensure_blob(&reg, repo, &config_digest, saved.config.into()).await?);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": { "mediaType": DOCKER_CONFIG, "size": config_len, "digest": config_digest },
        "layers": descriptors,
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| e.to_string())?);
    let m = Manifest {
        digest: sha256_digest(&bytes),
        bytes,
        media_type: DOCKER_MANIFEST.into(),
    };
    let tag = to.tag.as_deref().unwrap_or("latest");
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
    })
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
    let mut archive = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        archive.append_data(&mut h, path, data).map_err(|e| e.to_string())
    };
    let config_path = format!("{}.json", config.digest.trim_start_matches("sha256:"));
    add(&config_path, &config_bytes)?;
    let mut layers = Vec::new();
    for layer in &body.layers {
        let data = reg.blob(repo, &layer.digest, layer.sized()).await.map_err(|e| e.0)?;
        // The engine's loader decompresses layers itself.
        let path = format!("{}/layer.tar", layer.digest.trim_start_matches("sha256:"));
        add(&path, &data)?;
        layers.push(path);
    }
    let repo_tags = match &name.tag {
        Some(_) if name.digest.is_none() => vec![name.with_tag()],
        _ => Vec::new(),
    };
    let entry = vec![LoadEntry {
        config: config_path,
        repo_tags,
        layers,
    }];
    add("manifest.json", &serde_json::to_vec(&entry).map_err(|e| e.to_string())?)?;
    let tarball = archive.into_inner().map_err(|e| e.to_string())?;
    let options = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut stream = docker.import_image(options, bollard::body_full(tarball.into()), None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| format!("the engine refused to load {}: {}", name.with_tag(), describe(&e)))?;
    }
    Ok(config.digest)
}
