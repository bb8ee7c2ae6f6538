//! One task run: its attempts under the retry policy and the per-attempt
//! timeout, each run by its kind's runner (`tasks::registry`).

use std::time::Duration;

use kflow_compiler::ir::Node;
use tokio::sync::mpsc;

use super::{Event, TaskRef};
use crate::eval::{eval, EvalError, Scope};
use crate::tasks::{registry, Outputs, Props, TaskContext, TaskError};
use crate::value::{format_duration, Value};

/// The retry policy of a node.
pub(super) struct Retry {
    attempts: u32,
    delay: Duration,
    exponential: bool,
    max_delay: Option<Duration>,
}

impl Retry {
    pub fn of(node: &Node, values: &dyn Scope) -> Result<Retry, EvalError> {
        let mut r = Retry {
            attempts: 1,
            delay: Duration::ZERO,
            exponential: false,
            max_delay: None,
        };
        let Some(expr) = &node.retry else { return Ok(r) };
        let Value::Map(m) = eval(expr, values)? else {
            return Ok(r);
        };
        // A `retry` without `attempts` retries twice (three attempts in all).
        r.attempts = match m.get("attempts") {
            Some(Value::Int(n)) => (*n).clamp(1, 1_000) as u32,
            _ => 3,
        };
        if let Some(Value::Duration(ms)) = m.get("delay") {
            r.delay = Duration::from_millis(*ms);
        }
        r.exponential = matches!(m.get("backoff"), Some(Value::Enum(b)) if b == "exponential");
        if let Some(Value::Duration(ms)) = m.get("max_delay") {
            r.max_delay = Some(Duration::from_millis(*ms));
        }
        Ok(r)
    }

    /// The pause before attempt `next` (2, 3, …).
    fn delay_before(&self, next: u32) -> Duration {
        let d = if self.exponential {
            self.delay.saturating_mul(2u32.saturating_pow(next.saturating_sub(2)))
        } else {
            self.delay
        };
        self.max_delay.map_or(d, |m| d.min(m))
    }
}

/// Everything a task run needs once its properties are evaluated.
pub(super) struct Prepared {
    pub props: Props,
    pub retry: Retry,
    pub timeout: Option<Duration>,
}

/// Evaluates `when`, the properties, the retry policy and the timeout;
/// `None` when `when` is false.
pub(super) fn prepare(node: &Node, values: &dyn Scope) -> Result<Option<Prepared>, EvalError> {
    if let Some(w) = &node.when {
        if eval(w, values)? != Value::Bool(true) {
            return Ok(None);
        }
    }
    let mut props = Props::new();
    for (name, p) in &node.props {
        props.insert(name.clone(), eval(&p.value, values)?.fitted(&p.ty));
    }
    let retry = Retry::of(node, values)?;
    let mut timeout = match &node.timeout {
        Some(t) => match eval(t, values)? {
            Value::Duration(ms) => Some(Duration::from_millis(ms)),
            _ => None,
        },
        None => None,
    };
    // Kinds whose catalog entry has its own `timeout` give it their own
    // meaning: an approval's deadline (stored with the request, so a resumed
    // gate keeps it), how long a stack may take to get ready (then the error
    // names the service). For them it is a property, not a limit on an attempt.
    let own_timeout =
        kflow_compiler::catalog::kind(&node.kind).is_some_and(|k| k.props.iter().any(|p| p.name == "timeout"));
    if own_timeout {
        if let Some(t) = timeout.take() {
            props.insert("timeout".into(), Value::Duration(t.as_millis() as u64));
        }
    }
    Ok(Some(Prepared { props, retry, timeout }))
}

/// Attempts lost with their worker that are queued again for free.
const MAX_LOST: u32 = 3;

/// One attempt: on a `kflow worker` when the context dispatches (a shared
/// history), else here.
async fn run_attempt(kind: &str, props: &Props, ctx: &TaskContext, attempt: u32) -> Result<Outputs, TaskError> {
    match &ctx.dispatch {
        Some(d) if crate::dispatch::remote(kind) => d.run(kind, props, ctx, attempt).await,
        _ => registry::run(kind, props, ctx).await,
    }
}

/// Runs the attempts of one task; returns the last result and how many
/// attempts were made.
pub(super) async fn run(
    kind: &str,
    task: &TaskRef,
    p: Prepared,
    ctx: TaskContext,
    events: &mpsc::UnboundedSender<Event>,
) -> (Result<Outputs, TaskError>, u32) {
    let mut attempt = 1;
    // Attempts lost with their worker: queued again without counting
    // against `retry`, up to a bound (a task that kills every worker it
    // runs on must end).
    let mut lost = 0;
    loop {
        let _ = events.send(Event::Started {
            task: task.clone(),
            attempt,
        });
        let attempt_ctx = TaskContext {
            cancel: ctx.cancel.child_token(),
            ..ctx.clone()
        };
        let result = match p.timeout {
            None => run_attempt(kind, &p.props, &attempt_ctx, attempt).await,
            Some(limit) => {
                let run = run_attempt(kind, &p.props, &attempt_ctx, attempt);
                tokio::pin!(run);
                tokio::select! {
                    r = &mut run => r,
                    _ = tokio::time::sleep(limit) => {
                        // Cancel the attempt and let it clean up (kill its processes).
                        attempt_ctx.cancel.cancel();
                        let _ = run.await;
                        Err(TaskError::Failed(format!("timed out after {}", format_duration(limit.as_millis() as u64))))
                    }
                }
            }
        };
        let result = result.and_then(|outputs| registry::check_outputs(kind, &outputs).map(|()| outputs));
        let retried = match &result {
            Err(TaskError::Lost(_)) if lost < MAX_LOST => {
                lost += 1;
                true
            }
            Err(e) => e.is_transient() && attempt - lost < p.retry.attempts,
            Ok(_) => false,
        };
        match result {
            Err(e) if retried && !ctx.cancel.is_cancelled() => {
                attempt += 1;
                let delay = match e {
                    TaskError::Lost(_) => Duration::ZERO,
                    _ => p.retry.delay_before(attempt - lost),
                };
                let _ = events.send(Event::Retrying {
                    task: task.clone(),
                    attempt,
                    error: ctx.redactor.redact(&e.to_string()).into_owned(),
                    delay,
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.cancel.cancelled() => return (Err(TaskError::Cancelled), attempt - 1),
                }
            }
            other => return (other, attempt),
        }
    }
}
