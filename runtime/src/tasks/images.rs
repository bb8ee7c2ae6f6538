//! `docker.tag`, `docker.push` and `registry.copy`: tasks over the engine's
//! images and registries (`docker.build` and `container.run` live in
//! `crate::docker`).

use super::{text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::docker;
use crate::docker::layer_cache::LayerCache;
use crate::registry::{copy, credentials::Source, name::ImageName};
use crate::value::Value;

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

fn local_image(props: &Props) -> Result<String, TaskError> {
    match props.get("image") {
        Some(Value::Image(id)) => Ok(id.clone()),
        _ => Err(failed("`image` is missing")),
    }
}

pub async fn tag(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let image = local_image(props)?;
    let tag = text(props, "tag").ok_or_else(|| failed("`tag` is missing"))?;
    let engine = ctx.docker.get().await.map_err(failed)?;
    docker::image::tag(engine, &image, &tag).await.map_err(failed)?;
    ctx.log(Stream::Info, &format!("tagged {image} as {tag}"));
    Ok(Outputs::from([("ref".to_string(), Value::Ref(tag))]))
}

pub async fn push(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let image = local_image(props)?;
    let to_text = text(props, "to").ok_or_else(|| failed("`to` is missing"))?;
    let to = ImageName::parse(&to_text).map_err(failed)?;
    let source = Source::of(props.get("credentials")).map_err(failed)?;
    let engine = ctx.docker.get().await.map_err(failed)?;
    ctx.log(Stream::Info, &format!("pushing {image} to {}", to.with_tag()));
    let cache = LayerCache::open(&ctx.state_dir);
    let pushed = tokio::select! {
        r = docker::image::push(engine, &image, &to, &source, &cache) => r.map_err(failed)?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    ctx.log(
        Stream::Info,
        &format!(
            "{} of {} blobs uploaded ({}); {} is {}",
            pushed.uploaded,
            pushed.blobs,
            if pushed.exported {
                "the others were there"
            } else {
                "the registry held the image: nothing exported"
            },
            to.with_tag(),
            pushed.digest
        ),
    );
    Ok(Outputs::from([
        ("digest".to_string(), Value::Digest(pushed.digest.clone())),
        ("pinned".to_string(), Value::Pinned(to.pinned(&pushed.digest))),
        ("ref".to_string(), Value::Ref(to_text)),
    ]))
}

pub async fn copy(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let from = match props.get("from") {
        Some(Value::Pinned(p)) => ImageName::parse(p).map_err(failed)?,
        _ => return Err(failed("`from` must be pinned by digest")),
    };
    let to_text = text(props, "to").ok_or_else(|| failed("`to` is missing"))?;
    let to = ImageName::parse(&to_text).map_err(failed)?;
    let source = Source::of(props.get("credentials")).map_err(failed)?;
    ctx.log(
        Stream::Info,
        &format!(
            "copying {} to {}",
            from.pinned(from.digest.as_deref().unwrap_or("")),
            to.with_tag()
        ),
    );
    let done = tokio::select! {
        r = copy::copy(&from, &to, &source) => r.map_err(failed)?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    ctx.log(
        Stream::Info,
        &format!(
            "{} manifest(s); blobs: {} mounted, {} copied, {} already there; {} is {}",
            done.manifests,
            done.mounted,
            done.copied,
            done.present,
            to.with_tag(),
            done.digest
        ),
    );
    Ok(Outputs::from([
        ("digest".to_string(), Value::Digest(done.digest.clone())),
        ("pinned".to_string(), Value::Pinned(to.pinned(&done.digest))),
    ]))
}
