//! `cosign.sign` and `cosign.verify`.

use super::{text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::registry::{credentials::Source, name::ImageName};
use crate::secret::Secret;
use crate::sign::{cosign, keys};
use crate::value::Value;

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

fn pinned(props: &Props) -> Result<ImageName, TaskError> {
    match props.get("image") {
        Some(Value::Pinned(p)) => ImageName::parse(p).map_err(TaskError::Invalid),
        _ => Err(TaskError::invalid("`image` must be pinned by digest")),
    }
}

fn log_signed(ctx: &TaskContext, pinned: &str, signed: &cosign::Signed) {
    ctx.log(
        Stream::Info,
        &format!(
            "signed {pinned}; {} signature(s) stored at {}",
            signed.count, signed.signature
        ),
    );
}

pub async fn sign(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let target = pinned(props)?;
    let source = Source::of(props.get("credentials"), "credentials").map_err(failed)?;
    let key_pem = match props.get("key") {
        Some(Value::Secret(s)) => s.clone(),
        _ => return Err(TaskError::invalid("`key` is missing")),
    };
    let password = match props.get("password") {
        Some(Value::Secret(s)) => s.clone(),
        _ => Secret::new(""),
    };
    let annotations: serde_json::Map<String, serde_json::Value> = match props.get("annotations") {
        Some(Value::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| v.to_text().map(|t| (k.clone(), serde_json::Value::String(t))))
            .collect(),
        _ => Default::default(),
    };
    // scrypt is deliberately slow: off the async threads.
    let key = tokio::task::spawn_blocking(move || keys::load_private(key_pem.expose(), &password))
        .await
        .map_err(|e| failed(format!("loading the key failed: {e}")))?
        .map_err(|e| TaskError::invalid(format!("the signing key: {e}")))?;
    let digest = target.digest.clone().unwrap_or_default();
    let signed = tokio::select! {
        r = cosign::sign(&target, &key, &annotations, &source) => r.map_err(failed)?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    log_signed(ctx, &target.pinned(&digest), &signed);
    if matches!(props.get("recursive"), Some(Value::Bool(true))) {
        let children = tokio::select! {
            r = cosign::descendants(&target, &source) => r.map_err(failed)?,
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
        };
        for child in children {
            let child = ImageName {
                digest: Some(child),
                ..target.clone()
            };
            let signed = tokio::select! {
                r = cosign::sign(&child, &key, &annotations, &source) => r.map_err(failed)?,
                _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
            };
            log_signed(ctx, &child.pinned(child.digest.as_deref().unwrap_or_default()), &signed);
        }
    }
    Ok(Outputs::from([
        ("signature".to_string(), Value::Pinned(signed.signature)),
        ("digest".to_string(), Value::Digest(digest)),
    ]))
}

pub async fn verify(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let target = pinned(props)?;
    let source = Source::of(props.get("credentials"), "credentials").map_err(failed)?;
    let path = ctx
        .base_dir
        .join(text(props, "key").ok_or_else(|| TaskError::invalid("`key` is missing"))?);
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| failed(format!("cannot read the public key {}: {e}", path.display())))?;
    let key = keys::load_public(&pem).map_err(|e| TaskError::invalid(format!("{}: {e}", path.display())))?;
    let count = tokio::select! {
        r = cosign::verify(&target, &key, &source) => r.map_err(failed)?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    ctx.log(
        Stream::Info,
        &format!(
            "{count} signature(s) of {} verify with {}",
            target.pinned(target.digest.as_deref().unwrap_or("")),
            path.display()
        ),
    );
    Ok(Outputs::from([
        ("signatures".to_string(), Value::Int(count as i64)),
        (
            "digest".to_string(),
            Value::Digest(target.digest.clone().unwrap_or_default()),
        ),
    ]))
}
