//! Helper programs a task runs to completion (Trivy, Compose): found on
//! PATH, their stderr in the task's log, killed on cancellation, a failure
//! quoting their last lines.

use std::process::Output;

use crate::host::HostCommand;

use super::{Stream, TaskContext, TaskError};

/// Lines of stderr quoted in the error of a failed program.
const TAIL: usize = 15;

/// Runs `cmd`, named `what` in messages; a non-zero exit fails the task.
pub async fn run(cmd: HostCommand, what: &str, ctx: &TaskContext) -> Result<Output, TaskError> {
    // Cancelled, the output future is dropped and the command killed.
    let out = tokio::select! {
        r = cmd.output() => r.map_err(|e| TaskError::Failed(format!("cannot run {what}: {e}")))?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        ctx.log(Stream::Stderr, line);
    }
    if !out.status.success() {
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL)..].join("\n");
        return Err(TaskError::Failed(format!(
            "`{what}` exited with {}:\n{tail}",
            out.status.code().map_or("a signal".into(), |c| format!("code {c}"))
        )));
    }
    Ok(out)
}
