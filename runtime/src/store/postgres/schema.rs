//! The PostgreSQL history's migrations: applied in order, in one
//! transaction under an advisory lock (two processes starting on a new
//! database migrate once), never edited or reordered once committed. The
//! table `kflow_schema` records how many were applied.
//!
//! The records are those of the SQLite history (`store/mod.rs`), column for
//! column, with times kept as the same RFC 3339 text; what only a shared
//! database needs is added: an execution's lease, which replaces asking the
//! operating system whether its process lives, and logs as rows.

use tokio_postgres::Client;

use super::super::{Result, StoreError};

/// Any number: it names kflow's migration lock among the database's
/// advisory locks.
const MIGRATION_LOCK: i64 = 0x6b66_6c6f_7700;

pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('history', md5(random()::text || clock_timestamp()::text));
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    file TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    failures TEXT,
    outputs TEXT,
    plan TEXT,
    base_dir TEXT,
    rerun_of TEXT,
    trigger TEXT,
    origin TEXT,
    -- The process that runs it, and until when (the database's clock) it
    -- is taken to live: it renews the lease while it runs.
    owner TEXT,
    lease_until TIMESTAMPTZ,
    -- Lines logged so far: the next line's number.
    log_lines BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX executions_started ON executions (started_at DESC, id DESC);
CREATE TABLE task_runs (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    seq BIGSERIAL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    outputs TEXT,
    PRIMARY KEY (execution_id, task)
);
CREATE TABLE attempts (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    error TEXT,
    PRIMARY KEY (execution_id, task, attempt)
);
CREATE TABLE approvals (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    summary TEXT NOT NULL,
    reviewers TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    deadline TEXT,
    decision TEXT,
    decided_by TEXT,
    decided_at TEXT,
    comment TEXT,
    decided_os_user TEXT,
    required INTEGER NOT NULL DEFAULT 1,
    prevent_self BOOLEAN NOT NULL DEFAULT FALSE,
    subject TEXT,
    evidence TEXT,
    started_by TEXT,
    PRIMARY KEY (execution_id, task)
);
CREATE TABLE approval_votes (
    execution_id TEXT NOT NULL,
    task TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    approved BOOLEAN NOT NULL,
    at TEXT NOT NULL,
    comment TEXT NOT NULL,
    PRIMARY KEY (execution_id, task, reviewer),
    FOREIGN KEY (execution_id, task) REFERENCES approvals (execution_id, task) ON DELETE CASCADE
);
CREATE TABLE digests (
    digest TEXT NOT NULL,
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    kind TEXT NOT NULL,
    output TEXT NOT NULL,
    repository TEXT,
    tag TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (digest, execution_id, task, output)
);
CREATE INDEX digests_by_execution ON digests (execution_id);
CREATE TABLE log_lines (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    n BIGINT NOT NULL,
    task TEXT NOT NULL,
    stamp TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (execution_id, n)
);
-- Bytes logged per task run, for the cap every history keeps.
CREATE TABLE log_runs (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    written BIGINT NOT NULL,
    cut BOOLEAN NOT NULL,
    PRIMARY KEY (execution_id, task)
);
CREATE TABLE deliveries (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    flow TEXT NOT NULL,
    trigger TEXT NOT NULL,
    delivery TEXT,
    received_at TEXT NOT NULL,
    status INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT,
    execution TEXT,
    headers TEXT,
    body BYTEA,
    replay_of TEXT
);
CREATE INDEX deliveries_by_id ON deliveries (flow, trigger, delivery);
CREATE TABLE schedule_fires (
    flow TEXT NOT NULL,
    trigger TEXT NOT NULL,
    last_fire TEXT NOT NULL,
    PRIMARY KEY (flow, trigger)
);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    origin TEXT NOT NULL,
    detail TEXT
);
"#,
    // The task queue of `kflow worker`s (see `queue.rs`): each attempt of a
    // task run dispatched to a worker, and the workers themselves. Their
    // times are the database's: leases are compared with `now()`.
    r#"
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    labels TEXT NOT NULL,
    engine TEXT,
    jobs INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped_at TIMESTAMPTZ
);
CREATE TABLE task_queue (
    seq BIGSERIAL PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    kind TEXT NOT NULL,
    props TEXT NOT NULL,
    labels TEXT NOT NULL,
    -- The one worker that may run it (it holds the local image the task
    -- uses), or any whose labels match.
    worker_wanted TEXT,
    state TEXT NOT NULL,
    worker TEXT,
    enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_at TIMESTAMPTZ,
    lease_until TIMESTAMPTZ,
    ended_at TIMESTAMPTZ,
    cancel BOOLEAN NOT NULL DEFAULT FALSE,
    outputs TEXT,
    error TEXT,
    transient BOOLEAN NOT NULL DEFAULT FALSE
);
-- Not unique: a resumed execution queues its unfinished attempts again.
CREATE INDEX task_queue_by_run ON task_queue (execution_id, task, attempt);
CREATE INDEX task_queue_ready ON task_queue (seq) WHERE state = 'queued';
CREATE INDEX task_queue_held ON task_queue (worker) WHERE state = 'claimed';
ALTER TABLE attempts ADD COLUMN worker TEXT;
"#,
];

/// Brings the database's schema up to date; refuses one written by a newer
/// kflow (its tables may hold what this version would lose).
pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS kflow_schema (version INTEGER NOT NULL)")
        .await?;
    let version: i32 = tx
        .query_opt("SELECT version FROM kflow_schema", &[])
        .await?
        .map_or(0, |r| r.get(0));
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(StoreError(format!(
            "this database's history was written by a newer kflow (schema {version}, this kflow knows {known}): upgrade kflow"
        )));
    }
    for step in &MIGRATIONS[version as usize..] {
        tx.batch_execute(step).await?;
    }
    if version < known {
        tx.execute("DELETE FROM kflow_schema", &[]).await?;
        tx.execute("INSERT INTO kflow_schema (version) VALUES ($1)", &[&known])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
