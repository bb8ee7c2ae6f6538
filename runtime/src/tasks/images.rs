//! `docker.tag`, `docker.push` and `registry.copy`: tasks over the engine's
//! images and registries (`docker.build` and `container.run` live in
//! `crate::docker`).

use super::{text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::docker;
use crate::docker::image::Under;
use crate::docker::layer_cache::LayerCache;
use crate::registry::{copy, credentials::Source, name::ImageName};
use crate::sign::cosign;
use crate::value::Value;

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

fn local_image(props: &Props) -> Result<String, TaskError> {
    match props.get("image") {
        Some(Value::Image(id)) => Ok(id.clone()),
        Some(Value::Images(images)) => Err(TaskError::Invalid(format!(
            "a multi-platform build is {} images, and a local tag names one: push it (`docker.push` stores them under one tag as an index)",
            images.len()
        ))),
        _ => Err(TaskError::invalid("`image` is missing")),
    }
}

pub async fn tag(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let image = local_image(props)?;
    let tag = text(props, "tag").ok_or_else(|| TaskError::invalid("`tag` is missing"))?;
    let engine = ctx.docker.get().await.map_err(failed)?;
    docker::image::tag(engine, &image, &tag).await.map_err(failed)?;
    ctx.log(Stream::Info, &format!("tagged {image} as {tag}"));
    Ok(Outputs::from([("ref".to_string(), Value::Ref(tag))]))
}

pub async fn push(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let to_text = text(props, "to").ok_or_else(|| TaskError::invalid("`to` is missing"))?;
    let to = ImageName::parse(&to_text).map_err(TaskError::Invalid)?;
    let source = Source::of(props.get("credentials"), "credentials").map_err(failed)?;
    let engine = ctx.docker.get().await.map_err(failed)?;
    let cache = LayerCache::open(&ctx.state_dir);
    let push = |image: String, under: Under| {
        let (to, source, cache) = (&to, &source, &cache);
        async move {
            let pushed = tokio::select! {
                r = docker::image::push(engine, &image, to, source, cache, under) => r.map_err(failed)?,
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
                    if under == Under::Tag {
                        to.with_tag()
                    } else {
                        format!("{image}'s manifest")
                    },
                    pushed.digest
                ),
            );
            Ok(pushed.digest)
        }
    };
    let digest = match props.get("image") {
        Some(Value::Image(image)) => {
            ctx.log(Stream::Info, &format!("pushing {image} to {}", to.with_tag()));
            push(image.clone(), Under::Tag).await?
        }
        // A multi-platform build: each image by its digest, then one index
        // naming them under the tag (platforms read back from each config).
        Some(Value::Images(images)) => {
            let mut children = Vec::new();
            for (platform, image) in images {
                ctx.log(
                    Stream::Info,
                    &format!("pushing {platform} ({image}) to {}", to.with_tag()),
                );
                let digest = push(image.clone(), Under::Digest).await?;
                children.push(ImageName::parse(&to.pinned(&digest)).map_err(TaskError::Invalid)?);
            }
            let assembled = tokio::select! {
                r = crate::registry::index::assemble(&children, &to, &source) => r.map_err(failed)?,
                _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
            };
            ctx.log(
                Stream::Info,
                &format!(
                    "{} is the index {} of {} platforms",
                    to.with_tag(),
                    assembled.digest,
                    children.len()
                ),
            );
            assembled.digest
        }
        _ => return Err(TaskError::invalid("`image` is missing")),
    };
    Ok(Outputs::from([
        ("digest".to_string(), Value::Digest(digest.clone())),
        ("pinned".to_string(), Value::Pinned(to.pinned(&digest))),
        ("ref".to_string(), Value::Ref(to_text)),
    ]))
}

pub async fn copy(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let from = match props.get("from") {
        Some(Value::Pinned(p)) => ImageName::parse(p).map_err(TaskError::Invalid)?,
        _ => return Err(TaskError::invalid("`from` must be pinned by digest")),
    };
    let to_text = text(props, "to").ok_or_else(|| TaskError::invalid("`to` is missing"))?;
    let to = ImageName::parse(&to_text).map_err(TaskError::Invalid)?;
    let (from_source, to_source) = copy_sources(props, &from, &to)?;
    ctx.log(
        Stream::Info,
        &format!(
            "copying {} to {}",
            from.pinned(from.digest.as_deref().unwrap_or("")),
            to.with_tag()
        ),
    );
    let link = copy::Link::new(&from, &to, &from_source, &to_source).map_err(failed)?;
    let mut done = tokio::select! {
        r = copy::copy(&link, &from, &to) => r.map_err(failed)?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    if !matches!(props.get("signatures"), Some(Value::Bool(false))) {
        let digest = done.digest.clone();
        let carried = tokio::select! {
            r = cosign::carry(&link, &digest, &mut done) => r.map_err(failed)?,
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
        };
        ctx.log(Stream::Info, &carried_line(&carried));
        // An index's images carry their own signatures (`cosign sign
        // --recursive`): each goes along with its image.
        let children = tokio::select! {
            r = cosign::descendants(&from, &from_source) => r.map_err(failed)?,
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
        };
        for child in children {
            let carried = tokio::select! {
                r = cosign::carry(&link, &child, &mut done) => r.map_err(failed)?,
                _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
            };
            ctx.log(Stream::Info, &format!("{child}: {}", carried_line(&carried)));
        }
    }
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
        ("ref".to_string(), Value::Ref(to_text)),
    ]))
}

/// `signatures (.sig) and attestations (.att) copied; SBOM (.sbom) already there`
fn carried_line(c: &cosign::Carried) -> String {
    let name = |s: &&str| match *s {
        "sig" => "signatures (.sig)",
        "att" => "attestations (.att)",
        _ => "SBOM (.sbom)",
    };
    let parts: Vec<String> = [
        (&c.copied, "copied"),
        (&c.merged, "merged with those at the destination"),
        (&c.present, "already there"),
        (&c.kept, "kept: the destination has its own"),
    ]
    .iter()
    .filter(|(list, _)| !list.is_empty())
    .map(|(list, what)| format!("{} {what}", list.iter().map(name).collect::<Vec<_>>().join(" and ")))
    .collect();
    if parts.is_empty() {
        "no cosign signatures, attestations or SBOM to carry".into()
    } else {
        parts.join("; ")
    }
}

pub async fn index(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let images = match props.get("images") {
        Some(Value::List(items)) => items
            .iter()
            .map(|v| ImageName::parse(&v.to_text().unwrap_or_default()).map_err(TaskError::Invalid))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(TaskError::invalid("`images` is missing")),
    };
    let to_text = text(props, "to").ok_or_else(|| TaskError::invalid("`to` is missing"))?;
    let to = ImageName::parse(&to_text).map_err(TaskError::Invalid)?;
    let source = Source::of(props.get("credentials"), "credentials").map_err(failed)?;
    let assembled = tokio::select! {
        r = crate::registry::index::assemble(&images, &to, &source) => r.map_err(failed)?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    for child in &assembled.children {
        ctx.log(Stream::Info, &format!("{}: {}", child.platform, child.pinned));
    }
    ctx.log(
        Stream::Info,
        &format!("{} is the index {}", to.with_tag(), assembled.digest),
    );
    Ok(Outputs::from([
        ("digest".to_string(), Value::Digest(assembled.digest.clone())),
        ("pinned".to_string(), Value::Pinned(to.pinned(&assembled.digest))),
        ("ref".to_string(), Value::Ref(to_text)),
    ]))
}

/// The credentials for each end of a copy: `from_credentials` and
/// `to_credentials`, else `credentials` for both, else the Docker config.
/// A username and password given as `credentials` are for one registry:
/// a copy between two is refused rather than send them to both.
fn copy_sources(props: &Props, from: &ImageName, to: &ImageName) -> Result<(Source, Source), TaskError> {
    let both = props.get("credentials").filter(|v| !matches!(v, Value::Missing));
    let end = |name: &'static str| -> Result<Source, TaskError> {
        match props.get(name).filter(|v| !matches!(v, Value::Missing)) {
            Some(v) => Source::of(Some(v), name).map_err(failed),
            None if both.is_some() => {
                let source = Source::of(both, "credentials").map_err(failed)?;
                if source.is_given() && from.api_host() != to.api_host() {
                    return Err(failed(format!(
                        "`credentials` would send one username and password to both {} and {}: give `from_credentials` and `to_credentials`",
                        from.api_host(),
                        to.api_host()
                    )));
                }
                Ok(source)
            }
            None => Ok(Source {
                hint: format!("give `{name}`"),
                ..Source::docker_config()
            }),
        }
    };
    Ok((end("from_credentials")?, end("to_credentials")?))
}
