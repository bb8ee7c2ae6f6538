//! Builds with the engine's BuildKit (`/build?version=2`): the context
//! sent as the request body as with the classic builder, a session serving
//! the build's secrets, and BuildKit's progress (base64 protobuf in the
//! JSON stream) turned into the task's log, one `#N` per step as
//! `docker build --progress=plain` prints it.

mod engine;
mod proto;
mod session;

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;

pub use engine::{address, Address};

use crate::secret::Secret;
use crate::tasks::lines::Lines;
use crate::tasks::{Stream, TaskContext, TaskError};

/// The longest line of the engine's JSON stream kept: progress messages are
/// small, a larger line is a broken or hostile engine.
const MAX_LINE: usize = 8 * 1024 * 1024;

/// What to build; the context is the request body.
pub struct Build<'a> {
    pub tag: &'a str,
    pub dockerfile: &'a str,
    pub labels: &'a HashMap<String, String>,
    pub args: &'a HashMap<String, String>,
    pub target: Option<&'a str>,
    pub platform: Option<&'a str>,
    pub no_cache: bool,
    pub secrets: &'a HashMap<String, Secret>,
}

impl Build<'_> {
    fn query(&self, session: &str, build_id: &str) -> String {
        let json = |m: &HashMap<String, String>| serde_json::to_string(m).unwrap_or_else(|_| "{}".into());
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("version", "2")
            .append_pair("session", session)
            .append_pair("buildid", build_id)
            .append_pair("t", self.tag)
            .append_pair("dockerfile", self.dockerfile)
            .append_pair("rm", "1")
            .append_pair("forcerm", "1")
            .append_pair("labels", &json(self.labels))
            .append_pair("buildargs", &json(self.args));
        if self.no_cache {
            q.append_pair("nocache", "1");
        }
        if let Some(target) = self.target {
            q.append_pair("target", target);
        }
        if let Some(platform) = self.platform {
            q.append_pair("platform", platform);
        }
        q.finish()
    }
}

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

/// Runs the build; the image ID when it succeeds.
pub async fn build(
    address: &Address,
    build: Build<'_>,
    context: std::fs::File,
    size: u64,
    ctx: &TaskContext,
) -> Result<String, TaskError> {
    let session = session::open(address, build.secrets.clone()).await.map_err(failed)?;
    let build_id = session::new_id();
    let body = http_body_util::StreamBody::new(crate::spool::stream(context).map_ok(hyper::body::Frame::data));
    let request = engine::request(
        http::Method::POST,
        &format!("/build?{}", build.query(&session.id, &build_id)),
    )
    .header(http::header::CONTENT_TYPE, "application/x-tar")
    .header(http::header::CONTENT_LENGTH, size)
    .body(body)
    .map_err(|e| failed(format!("cannot form the build request: {e}")))?;
    let running = async {
        let response = engine::send(address, request).await.map_err(failed)?;
        if !response.status().is_success() {
            let why = engine::error_message(response).await;
            return Err(failed(format!("the engine refused the build: {why}")));
        }
        follow(response.into_body(), ctx).await
    };
    let result = tokio::select! {
        r = running => r,
        _ = ctx.cancel.cancelled() => {
            cancel(address, &build_id).await;
            Err(TaskError::Cancelled)
        }
    };
    drop(session);
    result
}

/// Asks the engine to stop the build (dropping the request alone leaves
/// BuildKit finishing a step nobody waits for).
async fn cancel(address: &Address, build_id: &str) {
    let path = format!(
        "/build/cancel?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("id", build_id)
            .finish()
    );
    let Ok(request) = engine::request(http::Method::POST, &path).body(http_body_util::Empty::<Bytes>::new()) else {
        return;
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), engine::send(address, request)).await;
}

/// Reads the engine's JSON stream to its end: progress into the log, the
/// image ID out, a failure as the failing step's error.
async fn follow(mut body: hyper::body::Incoming, ctx: &TaskContext) -> Result<String, TaskError> {
    let mut progress = Progress::default();
    let mut pending = Vec::new();
    let mut image = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failed(format!("the build's output broke off: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            progress.line(&line, ctx, &mut image).await?;
        }
        if pending.len() > MAX_LINE {
            return Err(failed(
                "the engine sent a progress line over 8 MiB: refusing to read on",
            ));
        }
    }
    progress.line(&pending, ctx, &mut image).await?;
    progress.flush(ctx).await;
    image.ok_or_else(|| failed("the engine finished the build without naming the image"))
}

/// One step of the build, as the log has been told of it.
struct Step {
    /// Its `#N`, in the order steps appeared.
    n: usize,
    name: String,
    started: bool,
    ended: bool,
    /// What it printed, cut into redacted lines in bounded memory.
    output: Lines,
}

impl Step {
    /// Logs what it printed after its last line ending.
    async fn flush(&mut self, ctx: &TaskContext) {
        if let Some(piece) = self.output.finish(&ctx.redactor) {
            if !piece.text.trim().is_empty() {
                ctx.log_output(Stream::Stdout, format!("#{} {}", self.n, piece.text.trim_end()))
                    .await;
            }
        }
    }
}

/// The build's steps by digest, and the one that failed.
#[derive(Default)]
struct Progress {
    steps: HashMap<String, Step>,
    /// The step that failed, for the task's error.
    failed_step: Option<String>,
}

fn step<'s>(steps: &'s mut HashMap<String, Step>, digest: &str) -> &'s mut Step {
    let n = steps.len() + 1;
    steps.entry(digest.to_string()).or_insert_with(|| Step {
        n,
        name: String::new(),
        started: false,
        ended: false,
        // Nothing kept: the lines go to the log only.
        output: Lines::new(0),
    })
}

impl Progress {
    async fn line(&mut self, line: &[u8], ctx: &TaskContext, image: &mut Option<String>) -> Result<(), TaskError> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        let message: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| failed(format!("the engine's build output is not JSON ({e})")))?;
        if let Some(error) = message
            .get("errorDetail")
            .and_then(|d| d.get("message"))
            .and_then(|m| m.as_str())
        {
            self.flush(ctx).await;
            let mut error = error.trim().to_string();
            if error.starts_with("secret ") && error.contains(" not found") {
                error.push_str(" (give it in the task's `secrets`)");
            }
            return Err(failed(match &self.failed_step {
                Some(step) => format!("step `{step}` failed: {error}"),
                None => format!("the build failed: {error}"),
            }));
        }
        match message.get("id").and_then(|i| i.as_str()) {
            Some("moby.buildkit.trace") => {
                let encoded = message.get("aux").and_then(|a| a.as_str()).unwrap_or_default();
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| failed("the engine's build progress is not base64"))?;
                let status = proto::Status::decode(&bytes)
                    .map_err(|_| failed("the engine's build progress is not a BuildKit status"))?;
                self.status(status, ctx).await;
            }
            Some("moby.image.id") => {
                if let Some(id) = message.get("aux").and_then(|a| a.get("ID")).and_then(|i| i.as_str()) {
                    *image = Some(id.to_string());
                }
            }
            _ => {
                if let Some(text) = message.get("stream").and_then(|s| s.as_str()) {
                    for l in text.lines().filter(|l| !l.trim().is_empty()) {
                        ctx.log(Stream::Info, l);
                    }
                }
            }
        }
        Ok(())
    }

    async fn status(&mut self, status: proto::Status, ctx: &TaskContext) {
        for v in status.vertexes {
            let step = step(&mut self.steps, &v.digest);
            if !v.name.is_empty() {
                step.name = v.name;
            }
            let n = step.n;
            if (v.started.is_some() || v.cached) && !step.started {
                step.started = true;
                ctx.log(Stream::Info, &format!("#{n} {}", step.name));
            }
            if step.ended {
                continue;
            }
            if !v.error.is_empty() {
                step.ended = true;
                step.flush(ctx).await;
                ctx.log(Stream::Info, &format!("#{n} ERROR: {}", v.error));
                // BuildKit marks the steps it cancels as failed too; the
                // first error is the step that failed.
                if self.failed_step.is_none() && !v.error.contains("context canceled") {
                    self.failed_step = Some(step.name.clone());
                }
            } else if v.cached {
                step.ended = true;
                ctx.log(Stream::Info, &format!("#{n} CACHED"));
            } else if let Some(done) = v.completed {
                step.ended = true;
                step.flush(ctx).await;
                let took = v.started.map(|s| done - s).unwrap_or(0.0).max(0.0);
                ctx.log(Stream::Info, &format!("#{n} DONE {took:.1}s"));
            }
        }
        for log in status.logs {
            let step = step(&mut self.steps, &log.vertex);
            for piece in step.output.push(&log.msg, &ctx.redactor) {
                ctx.log_output(Stream::Stdout, format!("#{} {}", step.n, piece.text))
                    .await;
            }
        }
        for w in status.warnings {
            ctx.log(Stream::Info, &format!("warning: {}", w.short.trim()));
        }
    }

    async fn flush(&mut self, ctx: &TaskContext) {
        let mut steps: Vec<&mut Step> = self.steps.values_mut().collect();
        steps.sort_by_key(|s| s.n);
        for step in steps {
            step.flush(ctx).await;
        }
    }
}
