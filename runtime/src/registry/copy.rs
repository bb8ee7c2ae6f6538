//! Promotion: copying an image by digest to another repository or registry
//! through the registry API. Manifests are copied as their exact bytes, so
//! the digest is kept; an index is copied with all its children; blobs are
//! mounted across repositories of the same registry, copied otherwise.

use std::future::Future;
use std::pin::Pin;

use super::client::{is_index, ManifestBody, Registry, RegistryError};
use super::credentials::Source;
use super::name::ImageName;

/// What a copy did.
#[derive(Debug, Default)]
pub struct Copied {
    pub digest: String,
    pub manifests: usize,
    pub mounted: usize,
    pub copied: usize,
    pub present: usize,
}

/// The two ends of a copy: registries (each with its credentials) and
/// repositories.
pub struct Link {
    src: Registry,
    dst: Registry,
    from: String,
    to: String,
    same_registry: bool,
}

impl Link {
    pub fn new(from: &ImageName, to: &ImageName, from_source: &Source, to_source: &Source) -> Result<Link, String> {
        Ok(Link {
            src: Registry::new(from.api_host(), from_source.clone()).map_err(|e| e.0)?,
            dst: Registry::new(to.api_host(), to_source.clone()).map_err(|e| e.0)?,
            from: from.repository.clone(),
            to: to.repository.clone(),
            same_registry: from.api_host() == to.api_host(),
        })
    }

    /// The source registry and repository.
    pub fn source(&self) -> (&Registry, &str) {
        (&self.src, &self.from)
    }

    /// The destination registry and repository.
    pub fn destination(&self) -> (&Registry, &str) {
        (&self.dst, &self.to)
    }

    /// Copies one manifest of the source (children and blobs first) as its
    /// exact bytes, stored by digest, or under `tag`.
    pub async fn manifest(&self, digest: &str, tag: Option<&str>, done: &mut Copied) -> Result<(), String> {
        copy_manifest(self, digest, tag, done).await
    }

    /// Copies one blob unless the destination has it.
    pub async fn blob(&self, digest: &str, size: u64, done: &mut Copied) -> Result<(), String> {
        copy_blob(self, digest, size, done).await
    }
}

/// Copies `from` (pinned by digest) to `to` (a tag); the result's digest is
/// the source's, or the copy fails.
pub async fn copy(link: &Link, from: &ImageName, to: &ImageName) -> Result<Copied, String> {
    let digest = from
        .digest
        .as_deref()
        .ok_or_else(|| format!("{} is not pinned by digest", from.with_tag()))?;
    let mut done = Copied::default();
    let tag = to.tag.as_deref().unwrap_or("latest");
    link.manifest(digest, Some(tag), &mut done).await?;
    // What the destination tag points to now, asked of the registry.
    let confirmed = link.dst.resolve(&to.repository, tag).await.map_err(|e| e.0)?;
    if confirmed != digest {
        return Err(format!(
            "the copy changed the digest: {} holds {confirmed}, the source is {digest}",
            to.with_tag()
        ));
    }
    done.digest = confirmed;
    Ok(done)
}

type Step<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Copies one manifest (children and blobs first), storing it by digest, or
/// under `tag` for the top one.
fn copy_manifest<'a>(ends: &'a Link, digest: &'a str, tag: Option<&'a str>, done: &'a mut Copied) -> Step<'a> {
    Box::pin(async move {
        let m = ends.src.manifest(&ends.from, digest).await.map_err(|e| e.0)?;
        let body: ManifestBody =
            serde_json::from_slice(&m.bytes).map_err(|e| format!("unreadable manifest {digest}: {e}"))?;
        if is_index(&m.media_type) {
            for child in &body.manifests {
                copy_manifest(ends, &child.digest, None, done).await?;
            }
        } else {
            for blob in body.config.iter().chain(&body.layers) {
                copy_blob(ends, &blob.digest, blob.size, done).await?;
            }
        }
        let stored = ends
            .dst
            .put_manifest(&ends.to, tag.unwrap_or(digest), &m)
            .await
            .map_err(|e| e.0)?;
        if stored != digest {
            return Err(format!("{} stored manifest {digest} as {stored}", ends.dst.host()));
        }
        done.manifests += 1;
        Ok(())
    })
}

async fn copy_blob(ends: &Link, digest: &str, size: u64, done: &mut Copied) -> Result<(), String> {
    if ends.dst.blob_exists(&ends.to, digest).await.map_err(|e| e.0)? {
        done.present += 1;
        return Ok(());
    }
    if ends.same_registry
        && ends.from != ends.to
        && ends
            .dst
            .mount_blob(&ends.to, &ends.from, digest)
            .await
            .map_err(|e| e.0)?
    {
        done.mounted += 1;
        return Ok(());
    }
    // Streamed from one registry to the other, checked on the way: memory
    // does not grow with the blob.
    let stream = ends.src.blob_stream(&ends.from, digest, size).await.map_err(|e| e.0)?;
    let once = std::sync::Mutex::new(Some(reqwest::Body::wrap_stream(stream)));
    ends.dst
        .upload_blob_with(&ends.to, digest, size, || {
            once.lock().expect("not poisoned").take().ok_or_else(|| {
                RegistryError(format!(
                    "{}: asked for credentials in the middle of an upload; run the copy again",
                    ends.dst.host()
                ))
            })
        })
        .await
        .map_err(|e| e.0)?;
    done.copied += 1;
    Ok(())
}
