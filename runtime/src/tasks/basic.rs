//! `log`, `sleep`, and the `assert` item.

use std::time::Duration;

use super::{text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::value::Value;

pub async fn log(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let message = text(props, "message").unwrap_or_default();
    for line in message.lines() {
        ctx.log(Stream::Info, line);
    }
    Ok(Outputs::new())
}

pub async fn sleep(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let ms = match props.get("duration") {
        Some(Value::Duration(ms)) => *ms,
        _ => return Err(TaskError::Invalid("`duration` is missing".into())),
    };
    // A zero sleep is done: the timer would wait for its next tick (a
    // millisecond), which on a chain of tasks adds up.
    if ms == 0 {
        return Ok(Outputs::new());
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(Outputs::new()),
        _ = ctx.cancel.cancelled() => Err(TaskError::Cancelled),
    }
}

/// An `assert` item: its condition, computed from the values it reads.
pub async fn assert(props: &Props, _ctx: &TaskContext) -> Result<Outputs, TaskError> {
    match props.get("condition") {
        Some(Value::Bool(true)) => Ok(Outputs::new()),
        // The same values give the same answer on another attempt.
        _ => Err(TaskError::Invalid(
            text(props, "message").unwrap_or_else(|| "assertion failed".into()),
        )),
    }
}
