//! What running an execution needs of a history, as a trait: the recorder
//! and the tasks that read or write the history (approvals) hold an
//! `Arc<dyn Store>`, never a database. [`SqliteStore`] is the embedded
//! implementation, [`PgStore`](super::PgStore) the shared one (PostgreSQL,
//! for processes on several machines); both implement every call, and one
//! test suite (`tests/store.rs`) runs against both.
//!
//! The calls are async so that an implementation may wait on the network.
//! SQLite's take microseconds and run on the calling thread (a write that
//! meets another process's lock waits up to the busy timeout there, as it
//! always has).

use async_trait::async_trait;
use serde_json::Value as Json;

use super::{
    Approval, AttemptRow, AuditEntry, Change, Claim, Decision, Delivery, DigestUse, ExecutionFilter, ExecutionRow,
    GateRequest, LogAppend, LogEntry, NewDelivery, NewExecution, NewToken, Result, Resumable, Role, SqliteStore,
    StoredDelivery, TaskRow, Token, User, Verdict, VoteOutcome,
};
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
    async fn request_approval(&self, execution: &str, task: &str, gate: &GateRequest) -> Result<Approval>;

    /// A gate as stored now.
    async fn approval(&self, execution: &str, task: &str) -> Result<Option<Approval>>;

    /// A paused execution goes on: back to `running`.
    async fn unpause(&self, execution: &str) -> Result<()>;

    // Reading the history (the server's API).

    /// A page of executions, newest first, and whether more follow.
    async fn page(
        &self,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<ExecutionRow>, bool)>;

    /// One execution (an id, a unique prefix, or `latest`) and its task runs.
    async fn show(&self, id: &str) -> Result<Option<(ExecutionRow, Vec<TaskRow>)>>;

    /// What resuming an execution needs.
    async fn resumable(&self, id: &str) -> Result<Option<Resumable>>;

    /// Takes an execution over for this process: `running`, this owner.
    async fn reopen(&self, execution: &str) -> Result<()>;

    /// An execution's state as recorded (`None`: not in this history).
    async fn state_of(&self, execution: &str) -> Result<Option<ExecutionState>>;

    /// Whether the process recorded for an execution may still live.
    async fn process_alive(&self, execution: &str) -> Result<bool>;

    /// Whether a `kflow worker` of this history is gone: stopped, or silent
    /// past any lease. A history without workers knows none (`false`).
    async fn worker_gone(&self, _worker: &str) -> Result<bool> {
        Ok(false)
    }

    /// The server's own executions left interrupted, paused or queued by a
    /// server that is gone.
    async fn server_orphans(&self) -> Result<Vec<(String, ExecutionState)>>;

    /// A new execution waits for its turn (a concurrency limit).
    async fn mark_queued(&self, execution: &str) -> Result<()>;

    /// The lines of an execution's log past `offset` (0: its start; else
    /// an offset this call returned), about `max_bytes` of them at most (at
    /// least one line), and the offset to read on from. Whole lines only: a
    /// line still being written waits for the next call.
    async fn read_log(&self, execution: &str, offset: u64, max_bytes: u64) -> Result<(Vec<LogEntry>, u64)>;

    // What the server keeps besides executions.

    /// Records a delivery decided at once (unknown, unverified, failed).
    async fn record_delivery(&self, d: &NewDelivery<'_>) -> Result<String>;

    /// Claims a verified delivery, unless its id was taken before.
    async fn claim_delivery(&self, d: &NewDelivery<'_>) -> Result<Claim>;

    /// Records how a claimed delivery was decided.
    async fn settle_delivery(
        &self,
        id: &str,
        status: u16,
        verdict: Verdict,
        reason: Option<&str>,
        execution: Option<&str>,
    ) -> Result<()>;

    /// The newest deliveries first.
    async fn deliveries(&self, limit: usize, before: Option<&str>) -> Result<Vec<Delivery>>;

    /// One delivery with its headers and body (for replay).
    async fn delivery(&self, id: &str) -> Result<Option<StoredDelivery>>;

    /// When a schedule last fired (RFC 3339).
    async fn last_fire(&self, flow: &str, trigger: &str) -> Result<Option<String>>;

    async fn set_last_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<()>;

    /// Takes the fire of a schedule at `at` (RFC 3339) for this server:
    /// `true` when no fire at or after `at` was recorded, and records it, so
    /// that of several servers on one history one fires each time.
    async fn claim_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<bool>;

    // Who may use the server.

    /// Adds a user; refused when the name is taken.
    async fn add_user(&self, name: &str, role: Role, password: Option<&str>) -> Result<()>;

    /// Every user, by name.
    async fn users(&self) -> Result<Vec<User>>;

    /// Removes a user and revokes their tokens; whether there was one.
    async fn remove_user(&self, name: &str) -> Result<bool>;

    /// The API tokens, newest first.
    async fn tokens(&self) -> Result<Vec<Token>>;

    async fn user(&self, name: &str) -> Result<Option<User>>;

    /// The token whose secret hashes to `hash`, with its user.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<(Token, User)>>;

    async fn add_token(&self, t: &NewToken<'_>) -> Result<()>;

    async fn touch_token(&self, id: &str) -> Result<()>;

    /// Revokes a token (a session, at sign-out); the id revoked.
    async fn revoke_token(&self, id: &str) -> Result<Option<String>>;

    /// Appends to the audit trail.
    async fn audit(&self, actor: &str, action: &str, target: &str, origin: &str, detail: &Json) -> Result<()>;

    async fn audit_log(&self, limit: usize, before: Option<i64>) -> Result<Vec<AuditEntry>>;

    /// A reviewer's vote on a gate (see [`SqliteStore::vote`]).
    async fn vote(&self, execution: &str, task: &str, d: &Decision) -> Result<VoteOutcome>;

    /// Every gate of an execution.
    async fn approvals(&self, execution: &str) -> Result<Vec<Approval>>;

    /// Every attempt of an execution's task runs, in the order they started.
    async fn attempts(&self, execution: &str) -> Result<Vec<AttemptRow>>;

    /// Gates waiting for a decision, oldest first: a reviewer's inbox.
    async fn open_approvals(&self, limit: usize) -> Result<Vec<Approval>>;

    /// Every task run that produced or handled `digest`, newest first.
    async fn digest_uses(&self, digest: &str, limit: usize) -> Result<Vec<DigestUse>>;

    /// Removes finished executions beyond the newest `keep` finished ones,
    /// or started before `before`, with all that is recorded of them (see
    /// [`SqliteStore::prune`]); the ids removed.
    async fn prune(&self, keep: Option<usize>, before: Option<jiff::Timestamp>) -> Result<Vec<String>>;
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

    async fn request_approval(&self, execution: &str, task: &str, gate: &GateRequest) -> Result<Approval> {
        SqliteStore::request_approval(self, execution, task, gate)
    }

    async fn approval(&self, execution: &str, task: &str) -> Result<Option<Approval>> {
        SqliteStore::approval(self, execution, task)
    }

    async fn unpause(&self, execution: &str) -> Result<()> {
        SqliteStore::unpause(self, execution)
    }

    async fn page(
        &self,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<ExecutionRow>, bool)> {
        SqliteStore::page(self, filter, limit, cursor)
    }

    async fn show(&self, id: &str) -> Result<Option<(ExecutionRow, Vec<TaskRow>)>> {
        SqliteStore::show(self, id)
    }

    async fn resumable(&self, id: &str) -> Result<Option<Resumable>> {
        SqliteStore::resumable(self, id)
    }

    async fn reopen(&self, execution: &str) -> Result<()> {
        SqliteStore::reopen(self, execution)
    }

    async fn state_of(&self, execution: &str) -> Result<Option<ExecutionState>> {
        SqliteStore::state_of(self, execution)
    }

    async fn process_alive(&self, execution: &str) -> Result<bool> {
        SqliteStore::process_alive(self, execution)
    }

    async fn server_orphans(&self) -> Result<Vec<(String, ExecutionState)>> {
        SqliteStore::server_orphans(self)
    }

    async fn mark_queued(&self, execution: &str) -> Result<()> {
        SqliteStore::mark_queued(self, execution)
    }

    async fn read_log(&self, execution: &str, offset: u64, max_bytes: u64) -> Result<(Vec<LogEntry>, u64)> {
        SqliteStore::read_log(self, execution, offset, max_bytes).await
    }

    async fn record_delivery(&self, d: &NewDelivery<'_>) -> Result<String> {
        SqliteStore::record_delivery(self, d)
    }

    async fn claim_delivery(&self, d: &NewDelivery<'_>) -> Result<Claim> {
        SqliteStore::claim_delivery(self, d)
    }

    async fn settle_delivery(
        &self,
        id: &str,
        status: u16,
        verdict: Verdict,
        reason: Option<&str>,
        execution: Option<&str>,
    ) -> Result<()> {
        SqliteStore::settle_delivery(self, id, status, verdict, reason, execution)
    }

    async fn deliveries(&self, limit: usize, before: Option<&str>) -> Result<Vec<Delivery>> {
        SqliteStore::deliveries(self, limit, before)
    }

    async fn delivery(&self, id: &str) -> Result<Option<StoredDelivery>> {
        SqliteStore::delivery(self, id)
    }

    async fn last_fire(&self, flow: &str, trigger: &str) -> Result<Option<String>> {
        SqliteStore::last_fire(self, flow, trigger)
    }

    async fn set_last_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<()> {
        SqliteStore::set_last_fire(self, flow, trigger, at)
    }

    async fn claim_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<bool> {
        SqliteStore::claim_fire(self, flow, trigger, at)
    }

    async fn add_user(&self, name: &str, role: Role, password: Option<&str>) -> Result<()> {
        SqliteStore::add_user(self, name, role, password)
    }

    async fn users(&self) -> Result<Vec<User>> {
        SqliteStore::users(self)
    }

    async fn remove_user(&self, name: &str) -> Result<bool> {
        SqliteStore::remove_user(self, name)
    }

    async fn tokens(&self) -> Result<Vec<Token>> {
        SqliteStore::tokens(self)
    }

    async fn user(&self, name: &str) -> Result<Option<User>> {
        SqliteStore::user(self, name)
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<(Token, User)>> {
        SqliteStore::token_by_hash(self, hash)
    }

    async fn add_token(&self, t: &NewToken<'_>) -> Result<()> {
        SqliteStore::add_token(self, t)
    }

    async fn revoke_token(&self, id: &str) -> Result<Option<String>> {
        SqliteStore::revoke_token(self, id)
    }

    async fn touch_token(&self, id: &str) -> Result<()> {
        SqliteStore::touch_token(self, id)
    }

    async fn audit(&self, actor: &str, action: &str, target: &str, origin: &str, detail: &Json) -> Result<()> {
        SqliteStore::audit(self, actor, action, target, origin, detail)
    }

    async fn audit_log(&self, limit: usize, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        SqliteStore::audit_log(self, limit, before)
    }

    async fn vote(&self, execution: &str, task: &str, d: &Decision) -> Result<VoteOutcome> {
        SqliteStore::vote(self, execution, task, d)
    }

    async fn approvals(&self, execution: &str) -> Result<Vec<Approval>> {
        SqliteStore::approvals(self, execution)
    }

    async fn attempts(&self, execution: &str) -> Result<Vec<AttemptRow>> {
        SqliteStore::attempts(self, execution)
    }

    async fn open_approvals(&self, limit: usize) -> Result<Vec<Approval>> {
        SqliteStore::open_approvals(self, limit)
    }

    async fn digest_uses(&self, digest: &str, limit: usize) -> Result<Vec<DigestUse>> {
        SqliteStore::digest_uses(self, digest, limit)
    }

    async fn prune(&self, keep: Option<usize>, before: Option<jiff::Timestamp>) -> Result<Vec<String>> {
        SqliteStore::prune(self, keep, before)
    }
}
