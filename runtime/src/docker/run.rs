//! `container.run`: a command in a container, its output streamed live, the
//! container removed whatever happens (success, failure, timeout,
//! cancellation).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::{describe, not_found};
use crate::registry::credentials::Source;
use crate::registry::name::ImageName;
use crate::tasks::lines::Lines;
use crate::tasks::{string_list, text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::value::Value;

/// Bytes of stdout/stderr kept as outputs (the log keeps more).
const CAPTURE_CAP: usize = 4 * 1024 * 1024;
/// Lines of stderr quoted in the error of a failed command.
const ERROR_TAIL: usize = 20;

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

/// The image of a multi-platform build the engine runs natively, as the
/// engine would pick from an index.
async fn native(docker: &Docker, images: &[(String, String)]) -> Result<String, TaskError> {
    let version = docker
        .version()
        .await
        .map_err(|e| failed(format!("cannot ask the engine its platform: {}", describe(&e))))?;
    let engine = super::build::Platform {
        os: version.os.unwrap_or_default(),
        architecture: version.arch.unwrap_or_default(),
        variant: None,
    };
    images
        .iter()
        .find(|(platform, _)| engine.is(platform))
        .map(|(_, id)| id.clone())
        .ok_or_else(|| {
            let built: Vec<&str> = images.iter().map(|(p, _)| p.as_str()).collect();
            TaskError::Invalid(format!(
                "the build made {}, none of them the engine's {engine}",
                built.join(", ")
            ))
        })
}

/// Resolves the `image` property to a local image, pulling as `pull` says.
async fn local_image(docker: &Docker, props: &Props, ctx: &TaskContext) -> Result<String, TaskError> {
    let policy = text(props, "pull").unwrap_or_else(|| "missing".into());
    let reference = match props.get("image") {
        // A local image (a build's output) is never pulled.
        Some(Value::Image(id)) => return Ok(id.clone()),
        Some(Value::Images(images)) => return native(docker, images).await,
        Some(Value::Ref(r)) | Some(Value::Pinned(r)) | Some(Value::Str(r)) => r.clone(),
        _ => return Err(TaskError::invalid("`image` is missing")),
    };
    let present = docker.inspect_image(&reference).await;
    match (policy.as_str(), &present) {
        ("never", Ok(_)) | ("missing", Ok(_)) => return Ok(reference),
        ("never", Err(e)) if not_found(e) => {
            return Err(failed(format!(
                "no local image {reference}, and `pull: never` forbids pulling it"
            )))
        }
        (_, Err(e)) if !not_found(e) => return Err(failed(format!("cannot inspect {reference}: {}", describe(e)))),
        _ => {}
    }
    let name = ImageName::parse(&reference).map_err(TaskError::Invalid)?;
    let source = Source::of(props.get("credentials"), "credentials").map_err(failed)?;
    ctx.log(Stream::Info, &format!("pulling {reference}"));
    let id = super::image::pull(docker, &name, &source, policy == "missing")
        .await
        .map_err(failed)?;
    ctx.log(Stream::Info, &format!("pulled {reference} as {id}"));
    Ok(id)
}

pub async fn run(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let docker = ctx.docker.get().await.map_err(failed)?;
    let image = tokio::select! {
        r = local_image(docker, props, ctx) => r?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    let cmd = string_list(props, "cmd").unwrap_or_default();
    let env: Vec<String> = match props.get("env") {
        Some(Value::Map(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::Secret(s) => format!("{k}={}", s.expose()),
                other => format!("{k}={}", other.to_text().unwrap_or_default()),
            })
            .collect(),
        _ => Vec::new(),
    };
    let binds = match string_list(props, "mounts") {
        Some(mounts) => Some(mounts.iter().map(|m| bind(m, ctx)).collect::<Result<Vec<_>, _>>()?),
        None => None,
    };
    let labels: HashMap<String, String> = ctx.labels().into_iter().collect();
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: Some(cmd),
        env: Some(env),
        working_dir: text(props, "workdir"),
        user: text(props, "user"),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(HostConfig {
            binds,
            network_mode: text(props, "network"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(None, body)
        .await
        .map_err(|e| failed(format!("cannot create a container from {image}: {}", describe(&e))))?;
    let id = created.id;
    let result = supervise(docker, &id, ctx).await;
    // Removed in every case; a failure to remove is reported, not hidden.
    let removal = docker
        .remove_container(
            &id,
            Some(RemoveContainerOptionsBuilder::default().force(true).v(true).build()),
        )
        .await;
    match (result, removal) {
        (Ok(out), Ok(())) => Ok(out),
        (Ok(_), Err(e)) if !not_found(&e) => Err(failed(format!(
            "the command succeeded, but its container {} could not be removed: {}",
            short(&id),
            describe(&e)
        ))),
        (Ok(out), Err(_)) => Ok(out),
        (Err(e), _) => Err(e),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `host:container[:ro]`, the host side relative to the flow's folder.
fn bind(spec: &str, ctx: &TaskContext) -> Result<String, TaskError> {
    let mut parts = spec.splitn(3, ':');
    let (Some(host), Some(target)) = (parts.next(), parts.next()) else {
        return Err(failed(format!("mount `{spec}`: write `host_path:container_path[:ro]`")));
    };
    let mode = parts.next();
    if !matches!(mode, None | Some("ro") | Some("rw")) {
        return Err(failed(format!("mount `{spec}`: the mode is `ro` or `rw`")));
    }
    let host = ctx.base_dir.join(host);
    let host = host
        .canonicalize()
        .map_err(|e| failed(format!("mount `{spec}`: {}: {e}", host.display())))?;
    Ok(match mode {
        Some(m) => format!("{}:{target}:{m}", host.display()),
        None => format!("{}:{target}", host.display()),
    })
}

/// Attaches, starts, streams the output and waits; kills the container on
/// cancellation.
async fn supervise(docker: &Docker, id: &str, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    // Attached before the start, so the live stream holds everything; asking
    // for past logs as well can repeat the first lines.
    let attach = AttachContainerOptionsBuilder::default()
        .stream(true)
        .stdout(true)
        .stderr(true)
        .logs(false)
        .build();
    let mut output = docker
        .attach_container(id, Some(attach))
        .await
        .map_err(|e| failed(format!("cannot attach to container {}: {}", short(id), describe(&e))))?
        .output;
    docker
        .start_container(id, None)
        .await
        .map_err(|e| failed(format!("cannot start the container: {}", describe(&e))))?;
    let mut out = Capture::default();
    let mut err = Capture::default();
    loop {
        let item = tokio::select! {
            item = output.next() => item,
            _ = ctx.cancel.cancelled() => {
                let kill = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
                let _ = docker.kill_container(id, Some(kill)).await;
                return Err(TaskError::Cancelled);
            }
        };
        match item {
            None => break,
            Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                err.push(&message, ctx, Stream::Stderr).await
            }
            Some(Ok(bollard::container::LogOutput::StdOut { message }))
            | Some(Ok(bollard::container::LogOutput::Console { message })) => {
                out.push(&message, ctx, Stream::Stdout).await
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(failed(format!("reading the container's output: {}", describe(&e)))),
        }
    }
    out.flush(ctx, Stream::Stdout).await;
    err.flush(ctx, Stream::Stderr).await;
    let code = wait(docker, id).await?;
    let stdout = out.text().trim_end_matches('\n').to_string();
    let stderr = err.text().trim_end_matches('\n').to_string();
    if code != 0 {
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(ERROR_TAIL)..].join("\n");
        let mut msg = format!("the command exited with code {code}");
        if code == 137 {
            msg.push_str(" (killed: out of memory, or SIGKILL)");
        }
        if !tail.is_empty() {
            msg.push('\n');
            msg.push_str(&tail);
        }
        return Err(failed(msg));
    }
    let mut o = Outputs::new();
    o.insert("exit_code".into(), Value::Int(code));
    o.insert("stdout".into(), Value::Str(stdout));
    o.insert("stderr".into(), Value::Str(stderr));
    Ok(o)
}

async fn wait(docker: &Docker, id: &str) -> Result<i64, TaskError> {
    let mut waiting = docker.wait_container(id, None);
    match waiting.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(failed(format!("waiting for the container: {}", describe(&e)))),
        None => Err(failed("the engine stopped answering about the container")),
    }
}

/// One stream's output: logged line by line, kept (redacted) up to a cap.
struct Capture(Lines);

impl Default for Capture {
    fn default() -> Self {
        Capture(Lines::new(CAPTURE_CAP))
    }
}

impl Capture {
    async fn push(&mut self, bytes: &[u8], ctx: &TaskContext, stream: Stream) {
        for piece in self.0.push(bytes, &ctx.redactor) {
            ctx.log_output(stream, piece.text).await;
        }
    }

    async fn flush(&mut self, ctx: &TaskContext, stream: Stream) {
        if let Some(piece) = self.0.finish(&ctx.redactor) {
            ctx.log_output(stream, piece.text).await;
        }
    }

    fn text(self) -> String {
        self.0.kept().0
    }
}
