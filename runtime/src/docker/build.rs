//! `docker.build`: the context folder sent as a tar (`.dockerignore`
//! honoured), the build's output streamed into the task's log, the image ID
//! as the result, and a failing step's own error as the task's.

use std::collections::HashMap;
use std::io::Seek;

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

use super::describe;
use crate::secret::Secret;
use crate::tasks::lines::Lines;
use crate::tasks::{string_list, text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::value::Value;

/// An image's (or the engine's) platform as its config names it.
pub(crate) struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// The names Go and the kernel use for one architecture.
fn normalized(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "armhf" => "arm",
        other => other,
    }
}

impl Platform {
    /// Whether this is the platform `asked` (`os/arch[/variant]`). A
    /// variant asked for must match when the image names one; `arm64`
    /// images usually name none (`v8` is implied).
    pub fn is(&self, asked: &str) -> bool {
        let mut parts = asked.split('/');
        let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
        os == Some(self.os.as_str())
            && arch.map(normalized) == Some(normalized(&self.architecture))
            && match (variant, &self.variant) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The name given to an inline Dockerfile inside the context.
const INLINE_DOCKERFILE: &str = ".kflow.inline.Dockerfile";

fn string_map(props: &Props, name: &str) -> HashMap<String, String> {
    match props.get(name) {
        Some(Value::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| v.to_text().map(|t| (k.clone(), t)))
            .collect(),
        _ => HashMap::new(),
    }
}

fn secret_map(props: &Props) -> HashMap<String, Secret> {
    match props.get("secrets") {
        Some(Value::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Secret(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect(),
        _ => HashMap::new(),
    }
}

enum Builder {
    BuildKit(super::buildkit::Address),
    Classic,
}

/// The builder `builder:` asks for. `auto` takes BuildKit wherever the
/// engine offers it (a Linux engine of API 1.39 or later that kflow can
/// open a session with), the classic builder otherwise; build secrets
/// exist only with BuildKit, so a build that has some never falls back.
async fn choose_builder(
    props: &Props,
    ctx: &TaskContext,
    docker: &bollard::Docker,
    has_secrets: bool,
) -> Result<Builder, TaskError> {
    let asked = text(props, "builder").unwrap_or_else(|| "auto".into());
    if asked == "classic" {
        if has_secrets {
            return Err(TaskError::Invalid(
                "build secrets need BuildKit: the classic builder would have to pass them as build arguments, \
                 which stay in the image's history; drop `builder: classic`"
                    .into(),
            ));
        }
        return Ok(Builder::Classic);
    }
    match buildkit_offered(docker).await {
        Ok(address) => Ok(Builder::BuildKit(address)),
        Err(why) if asked == "auto" && !has_secrets => {
            ctx.log(Stream::Info, &format!("BuildKit is not available ({why})"));
            Ok(Builder::Classic)
        }
        Err(why) => Err(TaskError::Invalid(format!(
            "BuildKit is not available: {why}{}",
            if asked == "auto" {
                " (the task has build secrets, which only BuildKit keeps out of the image)"
            } else {
                ""
            }
        ))),
    }
}

async fn buildkit_offered(docker: &bollard::Docker) -> Result<super::buildkit::Address, String> {
    let address = super::buildkit::address()?;
    let version = docker
        .version()
        .await
        .map_err(|e| format!("cannot ask the engine its version: {}", describe(&e)))?;
    let os = version.os.unwrap_or_default();
    if os != "linux" {
        return Err(format!("the engine runs on {os}; BuildKit builds need a Linux engine"));
    }
    let api = version.api_version.unwrap_or_default();
    let numbers: Vec<u32> = api.split('.').filter_map(|n| n.parse().ok()).collect();
    if numbers.as_slice() < [1, 39].as_slice() {
        return Err(format!(
            "the engine speaks API {api}; BuildKit needs 1.39 (Docker 18.09) or later"
        ));
    }
    Ok(address)
}

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

pub async fn build(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let context = ctx.base_dir.join(text(props, "context").unwrap_or_else(|| ".".into()));
    if !context.is_dir() {
        return Err(failed(format!(
            "the build context {} is not a folder",
            context.display()
        )));
    }
    let (dockerfile, extra) = match text(props, "dockerfile_inline") {
        Some(inline) => (
            INLINE_DOCKERFILE.to_string(),
            vec![(INLINE_DOCKERFILE.to_string(), inline.into_bytes())],
        ),
        None => {
            // `dockerfile` is relative to the flow file, as every path is;
            // the engine wants it relative to the context.
            let path = match text(props, "dockerfile") {
                Some(d) => ctx.base_dir.join(d),
                None => context.join("Dockerfile"),
            };
            if !path.is_file() {
                return Err(failed(format!("no Dockerfile at {}", path.display())));
            }
            match path.strip_prefix(&context) {
                Ok(rel) => (rel.to_string_lossy().into_owned(), Vec::new()),
                // Outside the context: sent inside it under a fixed name.
                Err(_) => {
                    let bytes =
                        std::fs::read(&path).map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
                    (
                        INLINE_DOCKERFILE.to_string(),
                        vec![(INLINE_DOCKERFILE.to_string(), bytes)],
                    )
                }
            }
        }
    };
    let ctx_dir = context.clone();
    let always = vec![dockerfile.clone()];
    // The blocking thread sees a cancellation at its next entry; the task
    // returns at once.
    let cancel = ctx.cancel.clone();
    // The context goes through a temporary file (removed when closed), not
    // memory: it can be as large as the folder.
    let packing = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64), String> {
        let file =
            tempfile::tempfile().map_err(|e| format!("cannot create a temporary file for the build context: {e}"))?;
        let out = std::io::BufWriter::with_capacity(crate::spool::CHUNK, file);
        let mut file = super::context::tar(out, &ctx_dir, &always, &extra, &cancel)?
            .into_inner()
            .map_err(|e| format!("cannot write the build context: {}", e.error()))?;
        let size = file
            .stream_position()
            .map_err(|e| format!("cannot write the build context: {e}"))?;
        file.rewind()
            .map_err(|e| format!("cannot read the build context back: {e}"))?;
        Ok((file, size))
    });
    let (tar, size) = tokio::select! {
        r = packing => r
            .map_err(|e| failed(format!("packing the build context failed: {e}")))?
            .map_err(failed)?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    ctx.log(
        Stream::Info,
        &format!("sending the build context ({} KiB)", size.div_ceil(1024)),
    );
    // One build per platform asked for (the engine's image store holds one
    // platform per image), or one for the engine's own.
    let platforms: Vec<Option<String>> = match string_list(props, "platforms") {
        Some(list) => {
            if list.is_empty() {
                return Err(TaskError::invalid("`platforms` is empty: name at least one"));
            }
            for (i, p) in list.iter().enumerate() {
                kflow_compiler::literals::platform(p).map_err(TaskError::Invalid)?;
                if list[..i].contains(p) {
                    return Err(TaskError::Invalid(format!("`platforms` names {p} twice")));
                }
            }
            list.into_iter().map(Some).collect()
        }
        None => {
            let platform = text(props, "platform");
            if let Some(p) = &platform {
                kflow_compiler::literals::platform(p).map_err(TaskError::Invalid)?;
            }
            vec![platform]
        }
    };
    let docker = ctx.docker.get().await.map_err(failed)?;
    let secrets = secret_map(props);
    let builder = choose_builder(props, ctx, docker, !secrets.is_empty()).await?;
    let mut built = Vec::new();
    for platform in &platforms {
        // The same context for each build: read again from its start.
        let mut context = tar
            .try_clone()
            .map_err(|e| failed(format!("cannot read the build context again: {e}")))?;
        context
            .rewind()
            .map_err(|e| failed(format!("cannot read the build context again: {e}")))?;
        let run = match platform {
            Some(p) if platforms.len() > 1 => {
                ctx.log(Stream::Info, &format!("building {p}"));
                format!("{}[{p}]", ctx.task)
            }
            _ => ctx.task.to_string(),
        };
        let image = build_one(
            props,
            ctx,
            docker,
            &builder,
            &secrets,
            &dockerfile,
            &run,
            platform.as_deref(),
            context,
            size,
        )
        .await?;
        built.push((platform.clone().unwrap_or_default(), image));
    }
    let mut out = Outputs::new();
    out.insert("id".into(), Value::Digest(built[0].1.clone()));
    if platforms.len() > 1 {
        for (platform, image) in &built {
            ctx.log(Stream::Info, &format!("built {platform}: {image}"));
        }
        out.insert("image".into(), Value::Images(built));
        return Ok(out);
    }
    let image = built.remove(0).1;
    for tag in string_list(props, "tags").unwrap_or_default() {
        super::image::tag(docker, &image, &tag).await.map_err(failed)?;
        ctx.log(Stream::Info, &format!("tagged {tag}"));
    }
    ctx.log(Stream::Info, &format!("built {image}"));
    out.insert("image".into(), Value::Image(image));
    Ok(out)
}

/// One build for one platform (or the engine's own), checked against it.
#[allow(clippy::too_many_arguments)]
async fn build_one(
    props: &Props,
    ctx: &TaskContext,
    docker: &bollard::Docker,
    builder: &Builder,
    secrets: &HashMap<String, Secret>,
    dockerfile: &str,
    run: &str,
    platform: Option<&str>,
    tar: std::fs::File,
    size: u64,
) -> Result<String, TaskError> {
    // Only the user's labels: one naming the execution would make every
    // build a new image (see `hold.rs`). The engine gives the image its
    // hold tag as the build completes.
    let labels = string_map(props, "labels");
    let args = string_map(props, "args");
    let hold = super::hold::hold_tag(&ctx.history, &ctx.execution, run);
    let target = text(props, "target");
    let no_cache = matches!(props.get("no_cache"), Some(Value::Bool(true)));
    let image = match builder {
        Builder::BuildKit(address) => {
            ctx.log(Stream::Info, "building with BuildKit");
            let build = super::buildkit::Build {
                tag: &hold,
                dockerfile,
                labels: &labels,
                args: &args,
                target: target.as_deref(),
                platform,
                no_cache,
                secrets,
            };
            super::buildkit::build(address, build, tar, size, ctx).await?
        }
        Builder::Classic => {
            ctx.log(Stream::Info, "building with the classic builder");
            let mut options = BuildImageOptionsBuilder::default()
                .t(&hold)
                .dockerfile(dockerfile)
                .rm(true)
                .forcerm(true)
                .nocache(no_cache)
                .labels(&labels)
                .buildargs(&args);
            if let Some(target) = &target {
                options = options.target(target);
            }
            if let Some(platform) = platform {
                options = options.platform(platform);
            }
            classic(docker, options.build(), tar, ctx).await?
        }
    };
    if let Some(asked) = platform {
        let inspected = docker
            .inspect_image(&image)
            .await
            .map_err(|e| failed(format!("cannot inspect the built image {image}: {}", describe(&e))))?;
        let built = Platform {
            os: inspected.os.unwrap_or_default(),
            architecture: inspected.architecture.unwrap_or_default(),
            variant: inspected.variant.filter(|v| !v.is_empty()),
        };
        if !built.is(asked) {
            // Every build of this would do the same: not retried.
            return Err(TaskError::Invalid(format!(
                "asked for {asked}, the engine built a {built} image: refusing to ship it under the wrong platform \
                 (the classic builder runs RUN steps natively and labels the result with the host's platform; \
                 build on a {asked} host, or with BuildKit and emulation)"
            )));
        }
    }
    Ok(image)
}

/// The classic builder, through bollard: its output is text, one
/// `Step N/M : …` line per step.
async fn classic(
    docker: &bollard::Docker,
    options: bollard::query_parameters::BuildImageOptions,
    tar: std::fs::File,
    ctx: &TaskContext,
) -> Result<String, TaskError> {
    let mut stream = docker.build_image(options, None, Some(bollard::body_try_stream(crate::spool::stream(tar))));
    let mut image: Option<String> = None;
    let mut step = String::new();
    // What the steps print, cut into redacted lines in bounded memory.
    let mut output = Lines::new(0);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            // Dropping the request stops the build on the engine.
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
        };
        let Some(item) = item else { break };
        let info = item.map_err(|e| {
            let why = describe(&e);
            if step.is_empty() {
                failed(format!("the build failed: {why}"))
            } else {
                failed(format!("{step} failed: {why}"))
            }
        })?;
        if let Some(text) = info.stream {
            for piece in output.push(text.as_bytes(), &ctx.redactor) {
                if let Some(s) = piece.text.strip_prefix("Step ").filter(|_| piece.ends_line) {
                    // `Step 3/5 : RUN make` → remembered for a failure.
                    step = match s.split_once(" : ") {
                        Some((n, instr)) => format!("step {n} `{instr}`"),
                        None => format!("step {s}"),
                    };
                }
                if !piece.text.is_empty() {
                    ctx.log_output(Stream::Stdout, piece.text).await;
                }
            }
        }
        if let Some(status) = info.status {
            ctx.log(Stream::Info, status.trim());
        }
        if let Some(id) = info.aux.and_then(|a| a.id) {
            image = Some(id);
        }
    }
    if let Some(rest) = output.finish(&ctx.redactor).filter(|p| !p.text.trim().is_empty()) {
        ctx.log_output(Stream::Stdout, rest.text.trim_end().to_string()).await;
    }
    image.ok_or_else(|| failed("the engine finished the build without naming the image"))
}

#[cfg(test)]
mod tests {
    use super::Platform;

    fn platform(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn platforms_are_compared_as_the_engine_names_them() {
        assert!(platform("linux", "amd64", None).is("linux/amd64"));
        assert!(platform("linux", "arm64", None).is("linux/arm64/v8"));
        assert!(platform("linux", "arm64", Some("v8")).is("linux/arm64"));
        assert!(platform("linux", "arm", Some("v7")).is("linux/arm/v7"));
        assert!(!platform("linux", "arm", Some("v6")).is("linux/arm/v7"));
        assert!(!platform("linux", "amd64", None).is("linux/arm64"));
        assert!(!platform("windows", "amd64", None).is("linux/amd64"));
        assert_eq!(platform("linux", "arm", Some("v7")).to_string(), "linux/arm/v7");
    }
}
