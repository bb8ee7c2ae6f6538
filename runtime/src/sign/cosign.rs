//! Signatures stored the way cosign stores them: for an image `repo@sha256:H`,
//! the tag `repo:sha256-H.sig` holds an OCI manifest whose layers are
//! simple-signing payloads (`application/vnd.dev.cosign.simplesigning.v1+json`)
//! naming the signed digest, each with its ECDSA signature (DER, base64) in
//! the `dev.cosignproject.cosign/signature` annotation. Signing appends a
//! layer to what is there; the signed image's manifest is never touched.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{json, Value as Json};

use crate::registry::client::{sha256_digest, Manifest, Registry};
use crate::registry::copy::{Copied, Link};
use crate::registry::credentials::Source;
use crate::registry::name::ImageName;

pub const PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The tag holding an image's signatures: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    artifact_tag(digest, "sig")
}

/// The tag of one of the artifacts cosign stores beside an image:
/// `sha256-<hex>.sig`, `.att` (attestations), `.sbom`.
fn artifact_tag(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// The simple-signing payload cosign signs.
pub fn payload(repo: &str, digest: &str, annotations: &serde_json::Map<String, Json>) -> Vec<u8> {
    let optional = if annotations.is_empty() {
        Json::Null
    } else {
        Json::Object(annotations.clone())
    };
    let p = json!({
        "critical": {
            "identity": { "docker-reference": repo },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature",
        },
        "optional": optional,
    });
    serde_json::to_vec(&p).expect("JSON values serialise")
}

fn pinned_target(target: &ImageName) -> Result<&str, String> {
    target.digest.as_deref().ok_or_else(|| {
        format!(
            "{} is not pinned by digest: signatures name digests, never tags",
            target.with_tag()
        )
    })
}

/// What a signing stored.
pub struct Signed {
    /// The signature manifest, `repo@sha256:…`.
    pub signature: String,
    /// Signatures now stored for the digest.
    pub count: usize,
}

/// Signs `target` (pinned) and stores the signature next to it.
pub async fn sign(
    target: &ImageName,
    key: &SigningKey,
    annotations: &serde_json::Map<String, Json>,
    source: &Source,
) -> Result<Signed, String> {
    let digest = pinned_target(target)?;
    let reg = Registry::new(target.api_host(), source.clone()).map_err(|e| e.0)?;
    let repo = &target.repository;
    // The image must exist: signing a digest nobody can pull helps no one.
    reg.resolve(repo, digest).await.map_err(|e| e.0)?;
    let body = Bytes::from(payload(&target.repo(), digest, annotations));
    let sig: Signature = key.sign(&body);
    let sig_b64 = B64.encode(sig.to_der().as_bytes());
    let body_digest = sha256_digest(&body);
    let tag = signature_tag(digest);
    let mut layers: Vec<Json> = match reg.try_manifest(repo, &tag).await.map_err(|e| e.0)? {
        Some(m) => {
            let existing: Json = serde_json::from_slice(&m.bytes)
                .map_err(|e| format!("the existing signatures at {tag} are unreadable: {e}"))?;
            existing["layers"].as_array().cloned().unwrap_or_default()
        }
        None => Vec::new(),
    };
    if layers.len() >= MAX_SIGNATURES {
        return Err(format!(
            "{tag} already holds {} signatures, the most cosign accepts ({MAX_SIGNATURES})",
            layers.len()
        ));
    }
    let layer = json!({
        "mediaType": PAYLOAD_TYPE,
        "size": body.len(),
        "digest": body_digest,
        "annotations": { SIGNATURE_ANNOTATION: sig_b64 },
    });
    let duplicate = layers.iter().any(|l| same_layer(l, &layer));
    if !duplicate {
        layers.push(layer);
    }
    if !reg.blob_exists(repo, &body_digest).await.map_err(|e| e.0)? {
        reg.upload_blob(repo, &body_digest, body.clone())
            .await
            .map_err(|e| e.0)?;
    }
    let stored = store_layers(&reg, repo, &tag, &layers).await?;
    Ok(Signed {
        signature: target.pinned(&stored),
        count: layers.len(),
    })
}

/// The most manifests an index's tree may name for a recursive signing.
const MAX_DESCENDANTS: usize = 1000;
/// How deep indexes may nest.
const MAX_DEPTH: usize = 4;

/// The digests an index names, its children's children included, in
/// order, each once (empty for an image).
pub async fn descendants(target: &ImageName, source: &Source) -> Result<Vec<String>, String> {
    let digest = pinned_target(target)?;
    let reg = Registry::new(target.api_host(), source.clone()).map_err(|e| e.0)?;
    let repo = &target.repository;
    let mut found: Vec<String> = Vec::new();
    let mut level = vec![digest.to_string()];
    for depth in 0..=MAX_DEPTH {
        let mut next = Vec::new();
        for d in &level {
            let m = reg.manifest(repo, d).await.map_err(|e| e.0)?;
            if !crate::registry::client::is_index(&m.media_type) {
                continue;
            }
            if depth == MAX_DEPTH {
                return Err(format!(
                    "{} nests indexes more than {MAX_DEPTH} deep",
                    target.pinned(digest)
                ));
            }
            let body: crate::registry::client::ManifestBody =
                serde_json::from_slice(&m.bytes).map_err(|e| format!("the index {d} is unreadable: {e}"))?;
            for child in body.manifests {
                if !found.contains(&child.digest) {
                    found.push(child.digest.clone());
                    next.push(child.digest);
                }
            }
            if found.len() > MAX_DESCENDANTS {
                return Err(format!(
                    "{} names more than {MAX_DESCENDANTS} manifests: refusing to sign them all",
                    target.pinned(digest)
                ));
            }
        }
        level = next;
    }
    Ok(found)
}

/// Whether two signature layers are one signature: the same payload with
/// the same signature.
fn same_layer(a: &Json, b: &Json) -> bool {
    a["digest"] == b["digest"] && a["annotations"][SIGNATURE_ANNOTATION] == b["annotations"][SIGNATURE_ANNOTATION]
}

/// Stores `layers` (their blobs in `repo` already) as the manifest under
/// `tag`, the way cosign writes one: an OCI manifest with an empty config
/// listing them. Returns the manifest's digest.
async fn store_layers(reg: &Registry, repo: &str, tag: &str, layers: &[Json]) -> Result<String, String> {
    let diff_ids: Vec<Json> = layers.iter().map(|l| l["digest"].clone()).collect();
    let config = Bytes::from(
        serde_json::to_vec(&json!({
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{ "created": "0001-01-01T00:00:00Z" }],
            "os": "",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .expect("JSON values serialise"),
    );
    let config_digest = sha256_digest(&config);
    if !reg.blob_exists(repo, &config_digest).await.map_err(|e| e.0)? {
        reg.upload_blob(repo, &config_digest, config.clone())
            .await
            .map_err(|e| e.0)?;
    }
    let manifest = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest },
            "layers": layers,
        }))
        .expect("JSON values serialise"),
    );
    let m = Manifest {
        digest: sha256_digest(&manifest),
        bytes: manifest,
        media_type: OCI_MANIFEST.into(),
    };
    reg.put_manifest(repo, tag, &m).await.map_err(|e| e.0)
}

/// Verifies an image's stored signatures against a public key; returns how
/// many verify, or why none does.
pub async fn verify(target: &ImageName, key: &VerifyingKey, source: &Source) -> Result<usize, String> {
    let digest = pinned_target(target)?;
    let reg = Registry::new(target.api_host(), source.clone()).map_err(|e| e.0)?;
    let repo = &target.repository;
    let tag = signature_tag(digest);
    let m = reg.try_manifest(repo, &tag).await.map_err(|e| e.0)?.ok_or_else(|| {
        format!(
            "{} has no signatures (no {tag} in {})",
            target.pinned(digest),
            target.repo()
        )
    })?;
    let manifest: Json =
        serde_json::from_slice(&m.bytes).map_err(|e| format!("the signature manifest {tag} is unreadable: {e}"))?;
    let layers = manifest["layers"].as_array().map_or(&[][..], Vec::as_slice);
    if layers.len() > MAX_SIGNATURES {
        return Err(format!(
            "{tag} holds {} signature layers, more than the {MAX_SIGNATURES} cosign reads: refusing them",
            layers.len()
        ));
    }
    let mut valid = 0;
    let mut failures = Vec::new();
    for layer in layers {
        if layer["mediaType"] != PAYLOAD_TYPE {
            continue;
        }
        let Some(layer_digest) = layer["digest"].as_str() else {
            continue;
        };
        let Some(sig_b64) = layer["annotations"][SIGNATURE_ANNOTATION].as_str() else {
            failures.push(format!("layer {layer_digest} carries no signature"));
            continue;
        };
        let body = reg
            .blob(repo, layer_digest, layer["size"].as_u64())
            .await
            .map_err(|e| e.0)?;
        match check(&body, sig_b64, key, digest) {
            Ok(()) => valid += 1,
            Err(why) => failures.push(why),
        }
    }
    if valid == 0 {
        return Err(if failures.is_empty() {
            format!("{tag} holds no signature layers")
        } else {
            format!(
                "no signature of {} verifies: {}",
                target.pinned(digest),
                failures.join("; ")
            )
        });
    }
    Ok(valid)
}

/// Signature layers read or written at most (cosign's own limit): a
/// registry cannot make a verification fetch without end.
pub const MAX_SIGNATURES: usize = 1000;

/// One signature: valid for this key and payload, and the payload names
/// the digest being verified.
pub fn check(payload: &[u8], sig_b64: &str, key: &VerifyingKey, digest: &str) -> Result<(), String> {
    let raw = B64
        .decode(sig_b64.trim())
        .map_err(|_| "a signature is not base64".to_string())?;
    // cosign writes ASN.1 DER; some tools write the 64-byte r‖s form.
    let sig = Signature::from_der(&raw)
        .or_else(|_| Signature::from_slice(&raw))
        .map_err(|_| "a signature is not an ECDSA signature".to_string())?;
    key.verify(payload, &sig).map_err(|_| {
        "the signature does not match this key and payload (wrong key, or a tampered payload)".to_string()
    })?;
    let p: Json = serde_json::from_slice(payload).map_err(|_| "the signed payload is not JSON".to_string())?;
    let signed = p["critical"]["image"]["docker-manifest-digest"].as_str().unwrap_or("");
    if signed != digest {
        return Err(format!("the signature is for another digest ({signed})"));
    }
    Ok(())
}

/// What cosign stores beside an image, by tag suffix: signatures,
/// attestations (each a layer of its manifest, several may be merged) and
/// an SBOM (one document).
const ARTIFACTS: [(&str, bool); 3] = [("sig", true), ("att", true), ("sbom", false)];

/// What carrying an image's cosign artifacts did, by tag suffix.
#[derive(Debug, Default)]
pub struct Carried {
    /// Copied as their exact bytes.
    pub copied: Vec<&'static str>,
    /// The destination had others: its layers and the source's together.
    pub merged: Vec<&'static str>,
    /// The destination had the same already.
    pub present: Vec<&'static str>,
    /// The destination has its own SBOM, which stays.
    pub kept: Vec<&'static str>,
}

/// Copies the signatures, attestations and SBOM stored for `digest` in the
/// source repository to the destination, as `cosign copy` does. Each is
/// copied byte for byte; where the destination holds other signatures or
/// attestations of the digest already, the two sets of layers are merged
/// (every layer byte for byte, the manifest written anew, as signing
/// does), so no signature is lost at either end.
pub async fn carry(link: &Link, digest: &str, done: &mut Copied) -> Result<Carried, String> {
    let (src, from) = link.source();
    let (dst, to) = link.destination();
    let mut carried = Carried::default();
    for (suffix, mergeable) in ARTIFACTS {
        let tag = artifact_tag(digest, suffix);
        let Some(m) = src.try_manifest(from, &tag).await.map_err(|e| e.0)? else {
            continue;
        };
        let layers = artifact_layers(&m, &tag)?;
        match dst.try_manifest(to, &tag).await.map_err(|e| e.0)? {
            None => {
                link.manifest(&m.digest, Some(&tag), done).await?;
                carried.copied.push(suffix);
            }
            Some(there) if there.digest == m.digest => carried.present.push(suffix),
            Some(_) if !mergeable => carried.kept.push(suffix),
            Some(there) => {
                let mut merged = artifact_layers(&there, &tag)?;
                for layer in layers {
                    if merged.iter().any(|l| same_layer(l, &layer)) {
                        continue;
                    }
                    let (Some(d), Some(size)) = (layer["digest"].as_str(), layer["size"].as_u64()) else {
                        return Err(format!("{tag} in {from} lists a layer without a digest and size"));
                    };
                    link.blob(d, size, done).await?;
                    merged.push(layer);
                }
                if merged.len() > MAX_SIGNATURES {
                    return Err(format!(
                        "{tag} would hold {} layers at {to}, more than the {MAX_SIGNATURES} cosign reads",
                        merged.len()
                    ));
                }
                store_layers(dst, to, &tag, &merged).await?;
                carried.merged.push(suffix);
            }
        }
    }
    Ok(carried)
}

/// The layers of a signature, attestation or SBOM manifest, at most
/// `MAX_SIGNATURES` of them (a registry cannot make a copy endless).
fn artifact_layers(m: &Manifest, tag: &str) -> Result<Vec<Json>, String> {
    let manifest: Json = serde_json::from_slice(&m.bytes).map_err(|e| format!("{tag} is unreadable: {e}"))?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    if layers.len() > MAX_SIGNATURES {
        return Err(format!(
            "{tag} holds {} layers, more than the {MAX_SIGNATURES} cosign reads: refusing them",
            layers.len()
        ));
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_and_tag_follow_cosign() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            signature_tag(d),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
        let p = String::from_utf8(payload("r.io/app", d, &Default::default())).unwrap();
        assert_eq!(
            p,
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r.io/app"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
    }

    #[test]
    fn checks_catch_tampering_other_digests_and_other_keys() {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let other = SigningKey::random(&mut rand_core::OsRng);
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let body = payload("r.io/app", d, &Default::default());
        let sig: Signature = key.sign(&body);
        let b64 = B64.encode(sig.to_der().as_bytes());
        check(&body, &b64, key.verifying_key(), d).unwrap();
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(check(&tampered, &b64, key.verifying_key(), d)
            .unwrap_err()
            .contains("tampered"));
        assert!(check(&body, &b64, other.verifying_key(), d)
            .unwrap_err()
            .contains("wrong key"));
        let e = d.replace("01234", "43210");
        assert!(check(&body, &b64, key.verifying_key(), &e)
            .unwrap_err()
            .contains("another digest"));
    }
}
