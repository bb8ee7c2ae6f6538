//! Cosign interoperability against an independent implementation: what kflow
//! signs verifies with sigstore-rs (the Sigstore project's Rust client), what
//! sigstore-rs signs verifies with kflow, with the key the real cosign wrote
//! and with keys `kflow keygen` writes; and each way a signature can be wrong
//! is a clear error.

mod support;

use std::path::{Path, PathBuf};

use sigstore::cosign::constraint::PrivateKeySigner;
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::{Constraint, CosignCapabilities, SignatureLayer};
use sigstore::crypto::SigningScheme;
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};
use support::*;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runtime/tests/fixtures/cosign")
        .join(name)
}

fn sigstore_client() -> sigstore::cosign::Client {
    let config = ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    };
    sigstore::cosign::ClientBuilder::default()
        .with_oci_client_config(config)
        .build()
        .unwrap()
}

/// sigstore-rs: do the signatures of `image` verify with `pub_pem`?
async fn sigstore_verifies(image: &str, pub_pem: &[u8]) -> Result<usize, String> {
    let reference: OciReference = image.parse().unwrap();
    let mut client = sigstore_client();
    let layers = client
        .trusted_signature_layers(&Auth::Anonymous, &reference)
        .await
        .map_err(|e| e.to_string())?;
    let verifier = PublicKeyVerifier::try_from(pub_pem).map_err(|e| e.to_string())?;
    let constraints: VerificationConstraintVec = vec![Box::new(verifier)];
    sigstore::cosign::verify_constraints(&layers, constraints.iter()).map_err(|e| format!("{e:?}"))?;
    Ok(layers.len())
}

/// sigstore-rs signs `image` with a cosign private key and pushes the
/// signature the way cosign does.
async fn sigstore_signs(image: &str, key_pem: &[u8], password: &str) {
    let reference: OciReference = image.parse().unwrap();
    let mut client = sigstore_client();
    let (sig_image, digest) = client.triangulate(&reference, &Auth::Anonymous).await.unwrap();
    let mut layer = SignatureLayer::new_unsigned(&reference, &digest).unwrap();
    let signer = PrivateKeySigner::new_with_raw(
        zeroize::Zeroizing::new(key_pem.to_vec()),
        zeroize::Zeroizing::new(password.as_bytes().to_vec()),
        &SigningScheme::ECDSA_P256_SHA256_ASN1,
    )
    .unwrap();
    signer.add_constraint(&mut layer).unwrap();
    client
        .push_signature(None, &Auth::Anonymous, &sig_image, vec![layer])
        .await
        .unwrap();
}

/// Pushes a busybox image and returns it pinned. The same `extra`
/// Dockerfile lines build the same image (the same digest).
fn push_image(dir: &Path, reg: &Registry, repo: &str, extra: &str) -> String {
    busybox_context(dir, extra);
    let flow = format!(
        "flow p {{\n  task image = docker.build {{ context: \"img\" }}\n  task push = docker.push {{ image: image.image, to: \"{}/{repo}:1\" }}\n  output pinned = push.pinned\n}}\n",
        reg.host
    );
    std::fs::write(dir.join("push.kflow"), flow).unwrap();
    let o = kflow(dir, &["run", "--state", "state", "push.kflow"], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    out.lines()
        .find_map(|l| l.strip_prefix("pinned = "))
        .unwrap()
        .to_string()
}

fn sign_flow(key_file: &str) -> String {
    format!(
        "flow s {{\n  input img: pinned\n  secret key = file(\"{key_file}\")\n  secret pw = env(\"COSIGN_PASSWORD\")\n  task sign = cosign.sign {{ image: img, key: key, password: pw }}\n  output signature = sign.signature\n}}\n"
    )
}

fn kflow_sign(dir: &Path, image: &str, key_file: &str, password: &str) -> (i32, String, String) {
    std::fs::write(dir.join("sign.kflow"), sign_flow(key_file)).unwrap();
    let input = format!("img={image}");
    let o = kflow(
        dir,
        &["run", "--state", "state", "sign.kflow", "-i", &input],
        &[("COSIGN_PASSWORD", password)],
    );
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn kflow_signatures_verify_with_sigstore_and_back() {
    if !docker_or_skip("kflow_signatures_verify_with_sigstore_and_back") {
        return;
    }
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = push_image(d, &reg, "signed/app", "");

    // The key the real cosign wrote (empty password) signs …
    std::fs::copy(fixture("cosign-generated-empty-password.key"), d.join("cosign.key")).unwrap();
    let (code, out, err) = kflow_sign(d, &image, "cosign.key", "");
    assert_eq!(code, 0, "{out}{err}");
    // … and sigstore-rs verifies it with the matching public key.
    let cosign_pub = std::fs::read(fixture("cosign-generated-empty-password.pub")).unwrap();
    assert_eq!(sigstore_verifies(&image, &cosign_pub).await, Ok(1));

    // A key from `kflow keygen`, with a password: appended, both verify.
    let o = kflow(
        d,
        &["keygen", "--prefix", "team"],
        &[("COSIGN_PASSWORD", "s3cret pass")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (code, out, err) = kflow_sign(d, &image, "team.key", "s3cret pass");
    assert_eq!(code, 0, "{out}{err}");
    let team_pub = std::fs::read(d.join("team.pub")).unwrap();
    assert!(sigstore_verifies(&image, &team_pub).await.is_ok());
    assert!(sigstore_verifies(&image, &cosign_pub).await.is_ok());

    // sigstore-rs signs with kflow's key; kflow verifies its signature too.
    let other = push_image(d, &reg, "signed/other", "LABEL image=other\n");
    let team_key = std::fs::read(d.join("team.key")).unwrap();
    sigstore_signs(&other, &team_key, "s3cret pass").await;
    let o = kflow(d, &["verify", &other, "--key", "team.pub"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        format!("Verified 1 signature(s) of {other} with team.pub\n")
    );
    // And a wrong key is refused, by both.
    let o = kflow(
        d,
        &[
            "verify",
            &other,
            "--key",
            fixture("cosign-generated-empty-password.pub").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("wrong key, or a tampered payload"),
        "{}",
        text(&o.stderr)
    );
    assert!(sigstore_verifies(&other, &cosign_pub).await.is_err());
}

/// Wrong password, missing key, a tampered payload, a signature moved to
/// another digest: each a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn signing_and_verification_errors_are_clear() {
    if !docker_or_skip("signing_and_verification_errors_are_clear") {
        return;
    }
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = push_image(d, &reg, "err/app", "");
    let o = kflow(d, &["keygen"], &[("COSIGN_PASSWORD", "right")]);
    assert_eq!(o.status.code(), Some(0));
    // Keys are never overwritten by accident.
    let o = kflow(d, &["keygen"], &[("COSIGN_PASSWORD", "right")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("cosign.key exists; pass --force"),
        "{}",
        text(&o.stderr)
    );

    let (code, _, err) = kflow_sign(d, &image, "cosign.key", "not-the-pass");
    assert_eq!(code, 1);
    assert!(
        err.contains("sign: the signing key: wrong password for the private key (decryption failed)"),
        "{err}"
    );
    assert!(!err.contains("right"));
    let (code, _, err) = kflow_sign(d, &image, "missing.key", "right");
    assert_eq!(code, 2);
    assert!(
        err.contains("secret `key`: cannot read") && err.contains("missing.key"),
        "{err}"
    );

    // Unsigned: says so.
    let o = kflow(d, &["verify", &image, "--key", "cosign.pub"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("has no signatures"), "{}", text(&o.stderr));

    let (code, out, err) = kflow_sign(d, &image, "cosign.key", "right");
    assert_eq!(code, 0, "{out}{err}");
    let o = kflow(d, &["verify", &image, "--key", "cosign.pub"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    // The signature manifest moved to another digest's tag: refused.
    let other = push_image(d, &reg, "err/app", "LABEL image=other\n");
    let digest = image.rsplit_once('@').unwrap().1;
    let other_digest = other.rsplit_once('@').unwrap().1;
    let sig_manifest = skopeo_raw(&format!("{}/err/app:{}.sig", reg.host, digest.replace(':', "-")));
    put_manifest(
        &reg,
        "err/app",
        &format!("{}.sig", other_digest.replace(':', "-")),
        OCI,
        &sig_manifest,
    );
    let o = kflow(d, &["verify", &other, "--key", "cosign.pub"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains(&format!("the signature is for another digest ({digest})")),
        "{}",
        text(&o.stderr)
    );

    // A tampered payload (the layer now points to other bytes): refused.
    let tampered = sig_manifest_with_payload(&reg, "err/app", &sig_manifest, digest);
    put_manifest(
        &reg,
        "err/app",
        &format!("{}.sig", digest.replace(':', "-")),
        OCI,
        &tampered,
    );
    let o = kflow(d, &["verify", &image, "--key", "cosign.pub"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("tampered payload"), "{}", text(&o.stderr));
    // `kflow verify` refuses tags outright.
    let o = kflow(
        d,
        &["verify", &format!("{}/err/app:1", reg.host), "--key", "cosign.pub"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("is not pinned"), "{}", text(&o.stderr));
}

/// The signature manifest with its payload replaced by one that claims a
/// different identity (uploaded as a blob), the old signature kept.
fn sig_manifest_with_payload(reg: &Registry, repo: &str, manifest: &str, digest: &str) -> String {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"evil.example/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    // Removed when dropped, at the end of this function.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &payload).unwrap();
    let path = file.path();
    let sum = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    let hex = text(&sum.stdout).split_whitespace().next().unwrap().to_string();
    let o = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "loc=$(curl -sf -X POST -D - -o /dev/null http://{h}/v2/{repo}/blobs/uploads/ | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p'); case $loc in http*) ;; *) loc=http://{h}$loc;; esac; curl -sf -X PUT -H \"Content-Type: application/octet-stream\" --data-binary @{p} \"$loc&digest=sha256:{hex}\"",
                h = reg.host,
                p = path.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "upload: {}", text(&o.stderr));
    let mut m: serde_json::Value = serde_json::from_str(manifest).unwrap();
    m["layers"][0]["digest"] = serde_json::json!(format!("sha256:{hex}"));
    m["layers"][0]["size"] = serde_json::json!(payload.len());
    m.to_string()
}

/// The blueprints run end to end: `supply-chain.kflow` builds, scans (a
/// test executable acting as Trivy), pushes and signs — the signature
/// verifies with sigstore-rs; `promote.kflow` pauses at its gate, is approved,
/// resumes, and prod holds the staging digest, as skopeo reads both.
#[tokio::test(flavor = "multi_thread")]
async fn the_supply_chain_and_promote_blueprints_run_end_to_end() {
    if !docker_or_skip("the_supply_chain_and_promote_blueprints_run_end_to_end") {
        return;
    }
    let reg = Registry::anonymous();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let state = w.join("state");
    let st = state.to_str().unwrap();
    // Trivy: a stand-in that writes one of Trivy's own reports (MEDIUM only).
    let bin = w.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let report = root.join("runtime/tests/fixtures/trivy/alpine-310.json");
    std::fs::write(
        bin.join("trivy"),
        format!(
            "#!/bin/sh\n[ \"$1\" = image ] || exit 1\nwhile [ $# -gt 1 ]; do [ \"$1\" = --output ] && out=$2; shift; done\ncp {} \"$out\"\n",
            report.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(bin.join("trivy"))
        .status()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = kflow(
        w,
        &["keygen", "--prefix", "release"],
        &[("COSIGN_PASSWORD", "blueprint")],
    );
    assert_eq!(o.status.code(), Some(0));
    let key = std::fs::read_to_string(w.join("release.key")).unwrap();
    let registry = format!("registry={}", reg.host);
    let o = kflow(
        root,
        &[
            "run",
            "--state",
            st,
            "examples/supply-chain.kflow",
            "-i",
            "version=1.0.0",
            "-i",
            &registry,
        ],
        &[("PATH", &path), ("COSIGN_KEY", &key), ("COSIGN_PASSWORD", "blueprint")],
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(!out.contains("ENCRYPTED SIGSTORE PRIVATE KEY"), "the key never shows");
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("digest = "))
        .unwrap()
        .to_string();
    let image = format!("{}/kflow-example/app@{digest}", reg.host);
    let public = std::fs::read(w.join("release.pub")).unwrap();
    assert_eq!(sigstore_verifies(&image, &public).await, Ok(1));

    // Promotion: staged, smoke-tested by digest, approved, copied.
    let staging = format!("staging={}/staging/app", reg.host);
    let prod = format!("prod={}/prod/app", reg.host);
    let o = kflow(
        root,
        &[
            "run",
            "--state",
            st,
            "--detach",
            "examples/promote.kflow",
            "-i",
            "version=2.0.0",
            "-i",
            &staging,
            "-i",
            &prod,
            "-i",
            "reviewers=alice",
        ],
        &[],
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("is paused, waiting for approval"), "{out}");
    let id = last_execution(root, st)["id"].as_str().unwrap().to_string();
    let o = kflow(root, &["approve", &id, "--as", "alice", "--state", st], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = kflow(root, &["resume", &id, "--state", st], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("approved_by = alice"), "{out}");
    let released = out.lines().find_map(|l| l.strip_prefix("digest = ")).unwrap();
    assert_eq!(skopeo_digest(&format!("{}/staging/app:2.0.0", reg.host)), released);
    assert_eq!(skopeo_digest(&format!("{}/prod/app:2.0.0", reg.host)), released);
}

/// A promotion carries the image's cosign artifacts, as `cosign copy` does:
/// the signature and attestation manifests arrive byte for byte and verify
/// at the destination with sigstore-rs; signatures the destination already
/// holds are merged with them; `signatures: false` copies the image alone.
#[tokio::test(flavor = "multi_thread")]
async fn signatures_travel_with_a_promotion() {
    if !docker_or_skip("signatures_travel_with_a_promotion") {
        return;
    }
    let staging = Registry::anonymous();
    let prod = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = push_image(d, &staging, "team/app", "");
    let digest = image.split_once('@').unwrap().1.to_string();
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    let att_tag = format!("{}.att", digest.replacen(':', "-", 1));
    std::fs::copy(fixture("cosign-generated-empty-password.key"), d.join("cosign.key")).unwrap();
    let (code, out, err) = kflow_sign(d, &image, "cosign.key", "");
    assert_eq!(code, 0, "{out}{err}");
    // An attestation beside the signature (its layers are the signature's).
    let sig = skopeo_raw(&format!("{}/team/app:{sig_tag}", staging.host));
    put_manifest(
        &staging,
        "team/app",
        &att_tag,
        "application/vnd.oci.image.manifest.v1+json",
        &sig,
    );
    let cosign_pub = std::fs::read(fixture("cosign-generated-empty-password.pub")).unwrap();

    let promote = |to: &str, extra: &str| {
        let flow = format!(
            "flow promote {{\n  input img: pinned\n  task copy = registry.copy {{ from: img, to: \"{to}\"{extra} }}\n  output pinned = copy.pinned\n}}\n"
        );
        std::fs::write(d.join("promote.kflow"), flow).unwrap();
        let input = format!("img={image}");
        let o = kflow(d, &["run", "--state", "state", "promote.kflow", "-i", &input], &[]);
        assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
        text(&o.stdout)
    };
    let out = promote(&format!("{}/prod/app:1", prod.host), "");
    assert!(
        out.contains("copy | signatures (.sig) and attestations (.att) copied"),
        "{out}"
    );
    for tag in [&sig_tag, &att_tag] {
        assert_eq!(
            skopeo_raw(&format!("{}/prod/app:{tag}", prod.host)),
            skopeo_raw(&format!("{}/team/app:{tag}", staging.host)),
            "{tag} was not copied byte for byte"
        );
    }
    let promoted = format!("{}/prod/app@{digest}", prod.host);
    assert_eq!(sigstore_verifies(&promoted, &cosign_pub).await, Ok(1));
    let key = fixture("cosign-generated-empty-password.pub");
    let o = kflow(d, &["verify", &promoted, "--key", key.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    // Copied alone, the image has no signature at the destination.
    let out = promote(&format!("{}/prod/bare:1", prod.host), ", signatures: false");
    assert!(!out.contains("(.sig)"), "{out}");
    let bare = format!("{}/prod/bare@{digest}", prod.host);
    assert!(sigstore_verifies(&bare, &cosign_pub).await.is_err());

    // Signed at the destination by another key, then promoted again: both
    // signatures are there and verify.
    let o = kflow(d, &["keygen", "--prefix", "prod"], &[("COSIGN_PASSWORD", "pw")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (code, out, err) = kflow_sign(d, &bare, "prod.key", "pw");
    assert_eq!(code, 0, "{out}{err}");
    let out = promote(&format!("{}/prod/bare:1", prod.host), "");
    assert!(
        out.contains("copy | attestations (.att) copied; signatures (.sig) merged with those at the destination"),
        "{out}"
    );
    let prod_pub = std::fs::read(d.join("prod.pub")).unwrap();
    assert_eq!(sigstore_verifies(&bare, &cosign_pub).await, Ok(2));
    assert_eq!(sigstore_verifies(&bare, &prod_pub).await, Ok(2));
}

/// `cosign.sign { recursive: true }` on an index signs the index and every
/// platform image it names, each verified by sigstore-rs; signing again
/// appends nothing (a retried or repeated run leaves one signature each).
#[tokio::test(flavor = "multi_thread")]
async fn a_recursive_signature_covers_every_platform_image() {
    if !docker_or_skip("a_recursive_signature_covers_every_platform_image") {
        return;
    }
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_only_context(d);
    std::fs::copy(fixture("cosign-generated-empty-password.key"), d.join("cosign.key")).unwrap();
    let flow = format!(
        r#"flow multi {{
  secret key = file("cosign.key")
  secret pw = env("COSIGN_PASSWORD")
  for arch in ["amd64", "arm64"] {{
    task image = docker.build {{ context: "img", platform: "linux/${{arch}}", no_cache: true }}
    task push = docker.push {{ image: image.image, to: ref("{h}/multi/app:${{arch}}") }}
  }}
  task index = oci.index {{ images: push.pinned, to: "{h}/multi/app:1" }}
  task sign = cosign.sign {{ image: index.pinned, key: key, password: pw, recursive: true }}
  output index = index.pinned
  output children = push.pinned
}}
"#,
        h = reg.host
    );
    std::fs::write(d.join("multi.kflow"), &flow).unwrap();
    let run = || {
        kflow(
            d,
            &["run", "--state", "state", "multi.kflow"],
            &[("COSIGN_PASSWORD", "")],
        )
    };
    let o = run();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let index = output(&out, "index").to_string();
    let children: Vec<String> = serde_json::from_str(output(&out, "children")).unwrap();
    assert_eq!(children.len(), 2);
    let cosign_pub = std::fs::read(fixture("cosign-generated-empty-password.pub")).unwrap();
    for image in std::iter::once(&index).chain(&children) {
        assert_eq!(sigstore_verifies(image, &cosign_pub).await, Ok(1), "{image}");
    }
    // Again: the same digests, the same key, the same payloads: nothing new.
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    for image in std::iter::once(&index).chain(&children) {
        assert_eq!(
            sigstore_verifies(image, &cosign_pub).await,
            Ok(1),
            "{image} signed twice"
        );
    }

    // Promoted to another registry, every image's signature goes along.
    let prod = Registry::anonymous();
    let promote = format!(
        "flow promote {{\n  task copy = registry.copy {{ from: pinned(\"{index}\"), to: \"{}/prod/app:1\" }}\n  output pinned = copy.pinned\n}}\n",
        prod.host
    );
    std::fs::write(d.join("promote.kflow"), promote).unwrap();
    let o = kflow(d, &["run", "--state", "state", "promote.kflow"], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let promoted = output(&out, "pinned").to_string();
    assert_eq!(sigstore_verifies(&promoted, &cosign_pub).await, Ok(1));
    for child in &children {
        let digest = child.split_once('@').unwrap().1;
        let there = format!("{}/prod/app@{digest}", prod.host);
        assert_eq!(sigstore_verifies(&there, &cosign_pub).await, Ok(1), "{there}");
    }
}
