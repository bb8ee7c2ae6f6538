//! `oci.index`: one OCI image index over images already pushed, each
//! child's platform read from its own config (never from what the flow
//! says it is), stored under a tag of the repository its children are in.

use serde::Deserialize;

use super::client::{is_index, Manifest, ManifestBody, Registry};
use super::copy::{Copied, Link};
use super::credentials::Source;
use super::name::ImageName;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The platform fields of an image config.
#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(rename = "os.version", default)]
    os_version: Option<String>,
}

/// One child of the index.
pub struct Child {
    pub pinned: String,
    pub platform: String,
}

/// What the index task did.
pub struct Assembled {
    pub digest: String,
    pub children: Vec<Child>,
    /// Children copied in from other repositories of the registry.
    pub copied: Copied,
}

/// Assembles the index of `images` (pinned, on `to`'s registry) and stores
/// it under `to`'s tag. Children in another repository of that registry
/// are copied into `to`'s first (blobs mounted), as an index's children
/// must be in its repository.
pub async fn assemble(images: &[ImageName], to: &ImageName, source: &Source) -> Result<Assembled, String> {
    if images.is_empty() {
        return Err("`images` is empty: an index needs at least one image".into());
    }
    let registry = Registry::new(to.api_host(), source.clone()).map_err(|e| e.0)?;
    let mut descriptors = Vec::new();
    let mut children: Vec<Child> = Vec::new();
    let mut copied = Copied::default();
    for image in images {
        let digest = image
            .digest
            .as_deref()
            .ok_or_else(|| format!("{} is not pinned by digest", image.with_tag()))?;
        if image.api_host() != to.api_host() {
            return Err(format!(
                "{} is on {}, the index goes to {}: an index names children in its own repository; copy it there first (`registry.copy`)",
                image.pinned(digest),
                image.registry,
                to.registry
            ));
        }
        let manifest = match registry
            .try_manifest(&image.repository, digest)
            .await
            .map_err(|e| e.0)?
        {
            Some(m) => m,
            None => {
                return Err(format!(
                    "{} is not in the registry: push it before assembling the index",
                    image.pinned(digest)
                ))
            }
        };
        if is_index(&manifest.media_type) {
            return Err(format!(
                "{} is an index itself: give the platform images",
                image.pinned(digest)
            ));
        }
        if image.repository != to.repository {
            let link = Link::new(image, to, source, source)?;
            link.manifest(digest, None, &mut copied).await?;
        }
        let body: ManifestBody = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| format!("the manifest of {} is unreadable: {e}", image.pinned(digest)))?;
        let config = body
            .config
            .ok_or_else(|| format!("{} has no config: not an image", image.pinned(digest)))?;
        let bytes = registry
            .blob(&image.repository, &config.digest, config.sized())
            .await
            .map_err(|e| e.0)?;
        let config: Config = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the config of {} is unreadable: {e}", image.pinned(digest)))?;
        if config.os.is_empty() || config.architecture.is_empty() {
            return Err(format!(
                "the config of {} names no os and architecture",
                image.pinned(digest)
            ));
        }
        let mut platform = serde_json::json!({ "architecture": config.architecture, "os": config.os });
        let mut name = format!("{}/{}", config.os, config.architecture);
        if let Some(v) = config.variant.filter(|v| !v.is_empty()) {
            name.push('/');
            name.push_str(&v);
            platform["variant"] = v.into();
        }
        if let Some(v) = config.os_version.filter(|v| !v.is_empty()) {
            platform["os.version"] = v.into();
        }
        if let Some(twin) = children.iter().find(|c| c.platform == name) {
            return Err(format!(
                "two images for {name}: {} and {}; an index holds one image per platform",
                twin.pinned,
                image.pinned(digest)
            ));
        }
        descriptors.push(serde_json::json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.bytes.len(),
            "platform": platform,
        }));
        children.push(Child {
            pinned: to.pinned(digest),
            platform: name,
        });
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": descriptors,
    });
    let bytes = bytes::Bytes::from(serde_json::to_vec(&index).expect("JSON values serialise"));
    let manifest = Manifest {
        digest: super::client::sha256_digest(&bytes),
        bytes,
        media_type: OCI_INDEX.into(),
    };
    let tag = to.tag.as_deref().unwrap_or("latest");
    let digest = registry
        .put_manifest(&to.repository, tag, &manifest)
        .await
        .map_err(|e| e.0)?;
    Ok(Assembled {
        digest,
        children,
        copied,
    })
}
