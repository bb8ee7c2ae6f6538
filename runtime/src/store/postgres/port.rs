//! [`Store`] on PostgreSQL: each call is the [`PgStore`] method of its name.

use async_trait::async_trait;
use serde_json::Value as Json;

use super::PgStore;
use crate::state::ExecutionState;
use crate::store::{
    Approval, AttemptRow, AuditEntry, Change, Claim, Decision, Delivery, DigestUse, ExecutionFilter, ExecutionRow,
    GateRequest, LogAppend, LogEntry, NewDelivery, NewExecution, NewToken, Result, Resumable, Role, Store,
    StoredDelivery, TaskRow, Token, User, Verdict, VoteOutcome,
};

#[async_trait]
impl Store for PgStore {
    fn history_id(&self) -> &str {
        PgStore::history_id(self)
    }

    async fn begin(&self, e: &NewExecution<'_>) -> Result<String> {
        PgStore::begin(self, e).await
    }

    async fn apply(&self, execution: &str, changes: &[Change]) -> Result<()> {
        PgStore::apply(self, execution, changes).await
    }

    async fn append_logs(&self, execution: &str, lines: &[LogAppend<'_>]) -> Result<()> {
        PgStore::append_logs(self, execution, lines).await
    }

    async fn finish(&self, execution: &str, state: ExecutionState, failures: &Json, outputs: &Json) -> Result<()> {
        PgStore::finish(self, execution, state, failures, outputs).await
    }

    async fn leave_paused(&self, execution: &str) -> Result<()> {
        PgStore::leave_paused(self, execution).await
    }

    async fn request_approval(&self, execution: &str, task: &str, gate: &GateRequest) -> Result<Approval> {
        PgStore::request_approval(self, execution, task, gate).await
    }

    async fn approval(&self, execution: &str, task: &str) -> Result<Option<Approval>> {
        PgStore::approval(self, execution, task).await
    }

    async fn unpause(&self, execution: &str) -> Result<()> {
        PgStore::unpause(self, execution).await
    }

    async fn page(
        &self,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<ExecutionRow>, bool)> {
        PgStore::page(self, filter, limit, cursor).await
    }

    async fn show(&self, id: &str) -> Result<Option<(ExecutionRow, Vec<TaskRow>)>> {
        PgStore::show(self, id).await
    }

    async fn resumable(&self, id: &str) -> Result<Option<Resumable>> {
        PgStore::resumable(self, id).await
    }

    async fn reopen(&self, execution: &str) -> Result<()> {
        PgStore::reopen(self, execution).await
    }

    async fn state_of(&self, execution: &str) -> Result<Option<ExecutionState>> {
        PgStore::state_of(self, execution).await
    }

    async fn process_alive(&self, execution: &str) -> Result<bool> {
        PgStore::process_alive(self, execution).await
    }

    async fn worker_gone(&self, worker: &str) -> Result<bool> {
        PgStore::worker_gone(self, worker).await
    }

    async fn server_orphans(&self) -> Result<Vec<(String, ExecutionState)>> {
        PgStore::server_orphans(self).await
    }

    async fn mark_queued(&self, execution: &str) -> Result<()> {
        PgStore::mark_queued(self, execution).await
    }

    async fn read_log(&self, execution: &str, offset: u64, max_bytes: u64) -> Result<(Vec<LogEntry>, u64)> {
        PgStore::read_log(self, execution, offset, max_bytes).await
    }

    async fn record_delivery(&self, d: &NewDelivery<'_>) -> Result<String> {
        PgStore::record_delivery(self, d).await
    }

    async fn claim_delivery(&self, d: &NewDelivery<'_>) -> Result<Claim> {
        PgStore::claim_delivery(self, d).await
    }

    async fn settle_delivery(
        &self,
        id: &str,
        status: u16,
        verdict: Verdict,
        reason: Option<&str>,
        execution: Option<&str>,
    ) -> Result<()> {
        PgStore::settle_delivery(self, id, status, verdict, reason, execution).await
    }

    async fn deliveries(&self, limit: usize, before: Option<&str>) -> Result<Vec<Delivery>> {
        PgStore::deliveries(self, limit, before).await
    }

    async fn delivery(&self, id: &str) -> Result<Option<StoredDelivery>> {
        PgStore::delivery(self, id).await
    }

    async fn last_fire(&self, flow: &str, trigger: &str) -> Result<Option<String>> {
        PgStore::last_fire(self, flow, trigger).await
    }

    async fn set_last_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<()> {
        PgStore::set_last_fire(self, flow, trigger, at).await
    }

    async fn claim_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<bool> {
        PgStore::claim_fire(self, flow, trigger, at).await
    }

    async fn add_user(&self, name: &str, role: Role, password: Option<&str>) -> Result<()> {
        PgStore::add_user(self, name, role, password).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        PgStore::users(self).await
    }

    async fn remove_user(&self, name: &str) -> Result<bool> {
        PgStore::remove_user(self, name).await
    }

    async fn tokens(&self) -> Result<Vec<Token>> {
        PgStore::tokens(self).await
    }

    async fn user(&self, name: &str) -> Result<Option<User>> {
        PgStore::user(self, name).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<(Token, User)>> {
        PgStore::token_by_hash(self, hash).await
    }

    async fn add_token(&self, t: &NewToken<'_>) -> Result<()> {
        PgStore::add_token(self, t).await
    }

    async fn revoke_token(&self, id: &str) -> Result<Option<String>> {
        PgStore::revoke_token(self, id).await
    }

    async fn touch_token(&self, id: &str) -> Result<()> {
        PgStore::touch_token(self, id).await
    }

    async fn audit(&self, actor: &str, action: &str, target: &str, origin: &str, detail: &Json) -> Result<()> {
        PgStore::audit(self, actor, action, target, origin, detail).await
    }

    async fn audit_log(&self, limit: usize, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        PgStore::audit_log(self, limit, before).await
    }

    async fn vote(&self, execution: &str, task: &str, d: &Decision) -> Result<VoteOutcome> {
        PgStore::vote(self, execution, task, d).await
    }

    async fn approvals(&self, execution: &str) -> Result<Vec<Approval>> {
        PgStore::approvals(self, execution).await
    }

    async fn attempts(&self, execution: &str) -> Result<Vec<AttemptRow>> {
        PgStore::attempts(self, execution).await
    }

    async fn open_approvals(&self, limit: usize) -> Result<Vec<Approval>> {
        PgStore::open_approvals(self, limit).await
    }

    async fn digest_uses(&self, digest: &str, limit: usize) -> Result<Vec<DigestUse>> {
        PgStore::digest_uses(self, digest, limit).await
    }

    async fn prune(&self, keep: Option<usize>, before: Option<jiff::Timestamp>) -> Result<Vec<String>> {
        PgStore::prune(self, keep, before).await
    }
}
