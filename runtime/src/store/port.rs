//! What running an execution needs of a history, as a trait: the recorder
//! and the tasks that read or write the history (approvals) hold an
//! `Arc<dyn Store>`, never a database. [`SqliteStore`] is the embedded
//! implementation; a networked one (PostgreSQL, for workers on several
//! machines) implements the same calls.
//!
//! The calls are async so that an implementation may wait on the network.
//! SQLite's take microseconds and run on the calling thread (a write that
//! meets another process's lock waits up to the busy timeout there, as it
//! always has).

use async_trait::async_trait;
use serde_json::Value as Json;

use super::{Approval, Change, LogAppend, NewExecution, Result, SqliteStore};
use crate::state::ExecutionState;

#[async_trait]
pub trait Store: Send + Sync {
    /// This history's id: the label `io.kflow.history` on what its
    /// executions create, so the reaper knows which history to ask.
    fn history_id(&self) -> &str;

    /// Records a new execution, `running`, owned by this process; its id.
    async fn begin(&self, e: &NewExecution<'_>) -> Result<String>;

    /// Applies a batch of task-run changes, all or none.
    async fn apply(&self, execution: &str, changes: &[Change]) -> Result<()>;

    /// Appends lines to task runs' logs (already redacted) and makes them
    /// readable.
    async fn append_logs(&self, execution: &str, lines: &[LogAppend<'_>]) -> Result<()>;

    /// Records how an execution ended.
    async fn finish(&self, execution: &str, state: ExecutionState, failures: &Json, outputs: &Json) -> Result<()>;

    /// A run that detached at an approval: the execution stays `paused`.
    async fn leave_paused(&self, execution: &str) -> Result<()>;

    /// Records a gate's request (kept if it exists) and pauses the
    /// execution; the request as stored, with any decision taken.
    async fn request_approval(
        &self,
        execution: &str,
        task: &str,
        summary: &str,
        reviewers: &[String],
        deadline: Option<String>,
    ) -> Result<Approval>;

    /// A gate as stored now.
    async fn approval(&self, execution: &str, task: &str) -> Result<Option<Approval>>;

    /// A paused execution goes on: back to `running`.
    async fn unpause(&self, execution: &str) -> Result<()>;
}

#[async_trait]
impl Store for SqliteStore {
    fn history_id(&self) -> &str {
        SqliteStore::history_id(self)
    }

    async fn begin(&self, e: &NewExecution<'_>) -> Result<String> {
        SqliteStore::begin(self, e)
    }

    async fn apply(&self, execution: &str, changes: &[Change]) -> Result<()> {
        SqliteStore::apply(self, execution, changes)
    }

    async fn append_logs(&self, execution: &str, lines: &[LogAppend<'_>]) -> Result<()> {
        SqliteStore::append_logs(self, execution, lines)
    }

    async fn finish(&self, execution: &str, state: ExecutionState, failures: &Json, outputs: &Json) -> Result<()> {
        SqliteStore::finish(self, execution, state, failures, outputs)
    }

    async fn leave_paused(&self, execution: &str) -> Result<()> {
        SqliteStore::leave_paused(self, execution)
    }

    async fn request_approval(
        &self,
        execution: &str,
        task: &str,
        summary: &str,
        reviewers: &[String],
        deadline: Option<String>,
    ) -> Result<Approval> {
        SqliteStore::request_approval(self, execution, task, summary, reviewers, deadline)
    }

    async fn approval(&self, execution: &str, task: &str) -> Result<Option<Approval>> {
        SqliteStore::approval(self, execution, task)
    }

    async fn unpause(&self, execution: &str) -> Result<()> {
        SqliteStore::unpause(self, execution)
    }
}
