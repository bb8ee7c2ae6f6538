//! The execution history: SQLite (WAL mode, schema versioned with
//! `user_version`) for executions, task runs and attempts; task logs as files
//! beside it, capped in size. Everything written here is already redacted.
//!
//! An execution is recorded `running` with the pid of its `kflow` process;
//! whoever opens the store later and finds that process gone marks it
//! `interrupted`, so a `kill -9` leaves a consistent history. An execution
//! waiting for an approval is `paused`, with or without a process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

mod approvals;
mod deliveries;
mod digests;
mod logs;
mod port;
mod postgres;
mod users;

pub use approvals::{Approval, Decision, GateRequest, Resumable, Vote, VoteOutcome};
pub use deliveries::{Claim, Delivery, NewDelivery, Stored as StoredDelivery, Verdict};
pub use digests::{is_digest, places, DigestUse};
pub use logs::{Entry as LogEntry, Reader as LogReader, LOG_CAP, READ_CHUNK as LOG_READ_CHUNK};
pub use port::Store;
pub use postgres::{
    is_url as is_postgres_url, Claimed, Listener, NewTask, Outcome as AttemptOutcome, PgStore, QueueStats, Settled,
    WorkerRow, QUEUED, SETTLED,
};
pub use users::{AuditEntry, NewToken, Role, Token, User};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value as Json;

use crate::owner::{Liveness, Owner};
use crate::state::{ExecutionState, TaskState};

/// Migrations, applied in order and never edited or reordered once
/// committed: a history records how many it has applied.
const SCHEMA: &[&str] = &[
    r#"
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    file TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    pid INTEGER NOT NULL,
    failures TEXT,
    outputs TEXT
);
CREATE TABLE task_runs (
    execution_id TEXT NOT NULL REFERENCES executions(id),
    task TEXT NOT NULL,
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
    execution_id TEXT NOT NULL,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    error TEXT,
    PRIMARY KEY (execution_id, task, attempt)
);
CREATE INDEX executions_started ON executions(started_at);
"#,
    r#"
ALTER TABLE executions ADD COLUMN plan TEXT;
ALTER TABLE executions ADD COLUMN base_dir TEXT;
CREATE TABLE approvals (
    execution_id TEXT NOT NULL,
    task TEXT NOT NULL,
    summary TEXT NOT NULL,
    reviewers TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    deadline TEXT,
    decision TEXT,
    decided_by TEXT,
    decided_at TEXT,
    comment TEXT,
    PRIMARY KEY (execution_id, task)
);
"#,
    // The owner identity (see `owner.rs`) beside the bare pid, and the
    // history's own id, which labels what its executions create.
    r#"
ALTER TABLE executions ADD COLUMN owner TEXT;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('history', lower(hex(randomblob(16))));
"#,
    // Who was logged in on the machine when a local decision was taken,
    // beside the name given with `--as`.
    r#"
ALTER TABLE approvals ADD COLUMN decided_os_user TEXT;
"#,
    // The execution a `kflow rerun` started from.
    r#"
ALTER TABLE executions ADD COLUMN rerun_of TEXT;
"#,
    // The trigger that started an execution (JSON: name, kind, delivery),
    // absent for runs started by hand.
    r#"
ALTER TABLE executions ADD COLUMN trigger TEXT;
"#,
    // What `kflow serve` keeps: the webhook deliveries it answered, the
    // last time each schedule fired, and which executions it started.
    r#"
ALTER TABLE executions ADD COLUMN origin TEXT;
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
    body BLOB,
    replay_of TEXT
);
CREATE INDEX deliveries_by_id ON deliveries(flow, trigger, delivery);
CREATE TABLE schedule_fires (
    flow TEXT NOT NULL,
    trigger TEXT NOT NULL,
    last_fire TEXT NOT NULL,
    PRIMARY KEY (flow, trigger)
);
"#,
    // Who may use the server, and what they did.
    r#"
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    origin TEXT NOT NULL,
    detail TEXT
);
"#,
    // Gates that need several approvals, who may not approve them, what
    // they approve and the evidence beside it; each reviewer's vote.
    r#"
ALTER TABLE approvals ADD COLUMN required INTEGER NOT NULL DEFAULT 1;
ALTER TABLE approvals ADD COLUMN prevent_self INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN subject TEXT;
ALTER TABLE approvals ADD COLUMN evidence TEXT;
ALTER TABLE approvals ADD COLUMN started_by TEXT;
CREATE TABLE approval_votes (
    execution_id TEXT NOT NULL,
    task TEXT NOT NULL,
    user TEXT NOT NULL,
    approved INTEGER NOT NULL,
    at TEXT NOT NULL,
    comment TEXT NOT NULL,
    PRIMARY KEY (execution_id, task, user)
);
"#,
    // Where each digest went (see `digests.rs`), filled from what is
    // recorded already.
    digests::MIGRATION,
];

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(format!("execution history: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub fn now() -> String {
    jiff::ZonedDateTime::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// Each kept log line starts with the UTC time it was written, to the
/// millisecond and of fixed width, then a space: `2026-12-02T15:40:01.123Z `.
const STAMP_LEN: usize = 24;

fn log_stamp() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A kept log line split into the time it was written, where it has one
/// (the truncation note and logs of older versions have none), and its text.
pub fn split_log_line(line: &str) -> (Option<&str>, &str) {
    let b = line.as_bytes();
    let stamped = b.len() > STAMP_LEN
        && b[STAMP_LEN] == b' '
        && b[STAMP_LEN - 1] == b'Z'
        && b[10] == b'T'
        && line.is_char_boundary(STAMP_LEN)
        && line[..STAMP_LEN].parse::<jiff::Timestamp>().is_ok();
    if stamped {
        (Some(&line[..STAMP_LEN]), &line[STAMP_LEN + 1..])
    } else {
        (None, line)
    }
}

/// A new execution id, time-ordered like a ULID: the UTC time to the
/// millisecond, then 64 random bits from the operating system
/// (`20261201-205121123-3f9a2c1d0e4b5a69`), so ids sort by start and two
/// executions never share one (a collision needs ~4 billion ids in one ms).
/// Commands take any unique prefix.
fn new_id() -> String {
    use rand_core::RngCore;
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("%Y%m%d-%H%M%S").to_string();
    let ms = now.subsec_millisecond();
    format!("{stamp}{ms:03}-{:016x}", rand_core::OsRng.next_u64())
}

/// Whether the process recorded for an execution lives: by its owner
/// identity when recorded (namespace-safe), else by the bare pid of older
/// histories. Only a provably dead process counts as dead.
fn recorded_alive(owner: Option<&str>, pid: i64) -> bool {
    match owner.and_then(Owner::parse) {
        Some(o) => o.liveness() != Liveness::Dead,
        None => pid_alive(pid),
    }
}

/// Whether a process lives: it exists and is not a zombie (a killed process
/// whose parent has not collected it yet is gone for our purposes).
fn pid_alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 only asks whether the process exists.
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => true,
    }
}

/// What an execution starts with; the plan and the flow's folder are kept so
/// that `kflow resume` runs exactly what was paused.
pub struct NewExecution<'a> {
    pub flow: &'a str,
    pub file: &'a str,
    pub inputs: &'a Json,
    /// Tasks known before the run (loop iterations are added as they start).
    pub tasks: Vec<(String, String)>,
    pub plan: Json,
    pub base_dir: PathBuf,
    /// The execution this one reruns.
    pub rerun_of: Option<&'a str>,
    /// The trigger that started it (`{"name", "kind", "delivery"}`).
    pub trigger: Option<Json>,
    /// Who runs it.
    pub origin: Origin,
}

/// Who started an execution: a command, or the server (which resumes its
/// own executions when it starts again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cli,
    Server,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cli => "cli",
            Origin::Server => "server",
        }
    }
}

/// The SQLite history: one file shared by every process that opens the
/// folder (WAL mode). Calls lock one connection briefly, so one value serves
/// every execution of a process (`kflow serve` runs many at once).
pub struct SqliteStore {
    conn: Mutex<Connection>,
    dir: PathBuf,
    /// This history's id (see [`SqliteStore::history_id`]).
    history: String,
    /// The open log of each execution this process writes.
    logs: Mutex<HashMap<String, logs::Writer>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub id: String,
    pub flow: String,
    pub file: String,
    pub state: ExecutionState,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub inputs: Json,
    pub failures: Json,
    pub outputs: Json,
    /// The execution this one reruns (`kflow rerun`).
    pub rerun_of: Option<String>,
    /// The trigger that started it (null: started by hand).
    pub trigger: Json,
}

/// One attempt of a task run: a retry is a new attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub task: String,
    pub attempt: i64,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub task: String,
    pub kind: String,
    pub state: TaskState,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    pub outputs: Json,
}

/// Runs `f` again while the database is busy, for up to 10 s: for the
/// operations SQLite does not wait on by itself.
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) the history in `dir`, and marks
    /// executions whose process is gone as `interrupted`.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create the history folder {}: {e}", dir.display())))?;
        let mut conn = Connection::open(dir.join("history.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Turning a new file to WAL takes an exclusive lock, and SQLite
        // reports a concurrent opener's lock at once rather than waiting.
        retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Two processes may open a new history at once: the schema version is
        // read and brought up to date under one write lock, so only one of
        // them migrates and the other sees the result.
        let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if (current as usize) < SCHEMA.len() {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            for step in SCHEMA.iter().skip(version as usize) {
                tx.execute_batch(step)?;
            }
            tx.pragma_update(None, "user_version", SCHEMA.len() as i64)?;
            tx.commit()?;
        }
        let history = read_history_id(&conn)?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
            history,
            logs: Mutex::default(),
        };
        store.mark_interrupted()?;
        Ok(store)
    }

    /// Opens an existing history for reading only: nothing is created,
    /// migrated or marked, so a history on a read-only disk, or of another
    /// user, can be read. A history written by an older kflow is refused
    /// (its columns differ) with a note on how to upgrade it.
    pub fn open_read(dir: &Path) -> Result<SqliteStore> {
        use rusqlite::OpenFlags;
        let path = dir.join("history.db");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let probe = |conn: &Connection| conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0));
        let conn = Connection::open_with_flags(&path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let (conn, version) = match probe(&conn) {
            Ok(v) => (conn, v),
            // A WAL history needs its shared-memory file; where that cannot
            // be created (a read-only folder), read the file as it is.
            Err(_) => {
                let escaped = path
                    .to_string_lossy()
                    .replace('%', "%25")
                    .replace('?', "%3f")
                    .replace('#', "%23");
                let uri = format!("file:{escaped}?immutable=1");
                let conn = Connection::open_with_flags(uri, flags)?;
                let v = probe(&conn)?;
                (conn, v)
            }
        };
        if (version as usize) < SCHEMA.len() {
            return Err(StoreError(format!(
                "the history in {} was written by an older kflow: run any kflow command that writes it (`kflow gc --state {}`) once with write access to upgrade it",
                dir.display(),
                dir.display()
            )));
        }
        Ok(SqliteStore {
            history: read_history_id(&conn)?,
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
            logs: Mutex::default(),
        })
    }

    /// The connection, for one call. A panic while it was held leaves
    /// nothing half-written (SQLite rolls back an open transaction when its
    /// guard drops), so a poisoned lock is taken over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_interrupted(&self) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, pid, owner FROM executions WHERE state = 'running'")?;
        let rows: Vec<(String, i64, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, pid, owner) in rows {
            if !recorded_alive(owner.as_deref(), pid) {
                conn.execute(
                    "UPDATE executions SET state = 'interrupted', ended_at = ?2 WHERE id = ?1",
                    params![id, now()],
                )?;
                conn.execute(
                    "UPDATE task_runs SET state = 'interrupted', ended_at = ?2 WHERE execution_id = ?1 AND state = 'running'",
                    params![id, now()],
                )?;
            }
        }
        Ok(())
    }

    /// This history's id: the label `io.kflow.history` on what its
    /// executions create, so the reaper knows which history to ask.
    pub fn history_id(&self) -> &str {
        &self.history
    }

    pub fn begin(&self, e: &NewExecution) -> Result<String> {
        let id = new_id();
        // Writes take the lock up front (IMMEDIATE): a deferred transaction
        // that reads, then writes after another process wrote, fails at once.
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO executions (id, flow, file, inputs, state, started_at, pid, plan, base_dir, owner, rerun_of, trigger, origin) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                id,
                e.flow,
                e.file,
                e.inputs.to_string(),
                now(),
                std::process::id(),
                e.plan.to_string(),
                e.base_dir.to_string_lossy(),
                Owner::current().to_label(),
                e.rerun_of,
                e.trigger.as_ref().map(Json::to_string),
                e.origin.as_str()
            ],
        )?;
        let tasks = &e.tasks;
        {
            let mut stmt =
                tx.prepare("INSERT INTO task_runs (execution_id, task, kind, state) VALUES (?1, ?2, ?3, 'pending')")?;
            for (task, kind) in tasks {
                stmt.execute(params![id, task, kind])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    /// Applies a batch of changes in one transaction.
    pub fn apply(&self, id: &str, changes: &[Change]) -> Result<()> {
        // Statements are prepared once per connection (parsing SQL was a
        // fifth of the time of a run of quick tasks).
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for c in changes {
            match c {
                Change::Started {
                    task,
                    kind,
                    attempt,
                    at,
                } => {
                    declare_run(&tx, id, task, kind)?;
                    tx.prepare_cached(
                        "UPDATE task_runs SET state = 'running', started_at = COALESCE(started_at, ?3), attempts = ?4 WHERE execution_id = ?1 AND task = ?2",
                    )?
                    .execute(params![id, task, at, attempt])?;
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO attempts (execution_id, task, attempt, started_at) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![id, task, attempt, at])?;
                }
                Change::AttemptFailed {
                    task,
                    attempt,
                    error,
                    at,
                } => {
                    tx.prepare_cached(
                        "UPDATE attempts SET ended_at = ?4, error = ?5 WHERE execution_id = ?1 AND task = ?2 AND attempt = ?3",
                    )?
                    .execute(params![id, task, attempt, at, error])?;
                }
                Change::Finished {
                    task,
                    kind,
                    state,
                    error,
                    outputs,
                    at,
                } => {
                    declare_run(&tx, id, task, kind)?;
                    tx.prepare_cached(
                        "UPDATE task_runs SET state = ?3, ended_at = ?4, error = ?5, outputs = ?6 WHERE execution_id = ?1 AND task = ?2",
                    )?
                    .execute(params![id, task, state.as_str(), at, error, outputs.to_string()])?;
                    tx.prepare_cached(
                        "UPDATE attempts SET ended_at = ?3, error = ?4 WHERE execution_id = ?1 AND task = ?2 AND ended_at IS NULL",
                    )?
                    .execute(params![id, task, at, error])?;
                    if *state == TaskState::Succeeded {
                        tx.prepare_cached(digests::index_digests!("t.execution_id = ?1 AND t.task = ?2"))?
                            .execute(params![id, task])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn finish(&self, id: &str, state: ExecutionState, failures: &Json, outputs: &Json) -> Result<()> {
        self.close_log(id)?;
        self.conn().execute(
            "UPDATE executions SET state = ?2, ended_at = ?3, failures = ?4, outputs = ?5 WHERE id = ?1",
            params![id, state.as_str(), now(), failures.to_string(), outputs.to_string()],
        )?;
        Ok(())
    }

    /// Appends lines to task runs' logs, each up to [`LOG_CAP`] bytes, and
    /// makes them readable. An execution's log stays open until it finishes
    /// or pauses.
    pub fn append_logs(&self, id: &str, lines: &[LogAppend<'_>]) -> Result<()> {
        let mut open = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let writer = match open.entry(id.to_string()) {
            std::collections::hash_map::Entry::Occupied(w) => w.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(logs::Writer::open(&self.dir, id)?),
        };
        let stamp = log_stamp();
        for l in lines {
            writer.line(l.task, l.text, &stamp)?;
        }
        writer.flush()
    }

    /// Closes an execution's log (its end, or its pause: a resume opens it
    /// again).
    fn close_log(&self, id: &str) -> Result<()> {
        let writer = self.logs.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        match writer {
            Some(mut w) => w.flush(),
            None => Ok(()),
        }
    }

    /// A reader of an execution's logs, from their start.
    pub fn log_reader(&self, id: &str) -> LogReader {
        LogReader::new(&self.dir, id)
    }

    /// A reader of an execution's logs from a byte offset a reader reached.
    pub fn log_reader_at(&self, id: &str, offset: u64) -> LogReader {
        LogReader::at(&self.dir, id, offset)
    }

    /// The lines of an execution's log past a byte offset, about
    /// `max_bytes` of them, and the offset reached (see [`Store::read_log`]).
    /// The file is read on a blocking thread. An execution of an older
    /// version, whose log is a folder of per-task files, is read whole at
    /// offset 0.
    pub async fn read_log(&self, id: &str, offset: u64, max_bytes: u64) -> Result<(Vec<LogEntry>, u64)> {
        let legacy = !logs::path(&self.dir, id).exists() && logs::legacy_dir(&self.dir, id).is_dir();
        let tasks: Vec<String> = match (legacy, offset) {
            (false, _) => Vec::new(),
            (true, 0) => self
                .show(id)?
                .map(|(_, runs)| runs.into_iter().map(|r| r.task).collect())
                .unwrap_or_default(),
            (true, _) => return Ok((Vec::new(), offset)),
        };
        let mut reader = LogReader::at(&self.dir, id, offset).with_chunk(max_bytes);
        let read = tokio::task::spawn_blocking(move || -> Result<(Vec<LogEntry>, u64)> {
            if !legacy {
                let lines = reader.next(&[])?;
                return Ok((lines, reader.offset()));
            }
            let mut all = Vec::new();
            loop {
                let more = reader.next(&tasks)?;
                if more.is_empty() {
                    return Ok((all, 1));
                }
                all.extend(more);
            }
        });
        read.await
            .map_err(|e| StoreError(format!("reading the log of execution {id}: {e}")))?
    }

    /// Files tasks kept for an execution (reports, SBOMs): (task, path, bytes).
    pub fn artifacts(&self, id: &str) -> Vec<(String, PathBuf, u64)> {
        artifacts_in(&self.dir, id)
    }

    /// One page of executions, newest first: those matching the filter,
    /// older than the `cursor` execution when given, at most `limit`; and
    /// whether more follow. Filtered and paged in SQL, so a page costs the
    /// same with a hundred executions or a hundred thousand.
    pub fn page(
        &self,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<ExecutionRow>, bool)> {
        let conn = self.conn();
        let after: Option<(String, String)> = match cursor {
            Some(c) => conn
                .query_row("SELECT started_at, id FROM executions WHERE id = ?1", params![c], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?,
            None => None,
        };
        if cursor.is_some() && after.is_none() {
            return Ok((Vec::new(), false));
        }
        let (at, id) = after.unzip();
        let limit = limit.min(10_000);
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions
             WHERE (?1 IS NULL OR flow = ?1)
               AND (?2 IS NULL OR state = ?2)
               AND (?3 IS NULL OR json_extract(trigger, '$.name') = ?3)
               AND (?4 IS NULL OR started_at < ?4 OR (started_at = ?4 AND id < ?5))
               AND (?7 IS NULL OR id IN (SELECT execution_id FROM digests WHERE digest = ?7))
             ORDER BY started_at DESC, id DESC LIMIT ?6"
        ))?;
        let mut rows = stmt
            .query_map(
                params![
                    filter.flow,
                    filter.state.map(ExecutionState::as_str),
                    filter.trigger,
                    at,
                    id,
                    limit as i64 + 1,
                    filter.digest
                ],
                execution_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    /// Every attempt of an execution's task runs, in the order they started.
    pub fn attempts(&self, execution: &str) -> Result<Vec<AttemptRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT task, attempt, started_at, ended_at, error FROM attempts WHERE execution_id = ?1 ORDER BY started_at, task, attempt",
        )?;
        let rows = stmt
            .query_map(params![execution], |r| {
                Ok(AttemptRow {
                    task: r.get(0)?,
                    attempt: r.get(1)?,
                    started_at: r.get(2)?,
                    ended_at: r.get(3)?,
                    error: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn list(&self) -> Result<Vec<ExecutionRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions ORDER BY started_at DESC, id DESC"
        ))?;
        let rows = stmt
            .query_map([], execution_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Removes finished executions (see [`FINISHED_STATES`]) beyond the
    /// newest `keep` finished ones, or started before `before`, with their
    /// task runs, attempts, approvals, logs and artifacts. Running, paused and
    /// interrupted executions stay whatever their age: they may still be
    /// running or be resumed. Returns the ids removed.
    pub fn prune(&self, keep: Option<usize>, before: Option<jiff::Timestamp>) -> Result<Vec<String>> {
        let finished: Vec<ExecutionRow> = self.list()?.into_iter().filter(|e| e.state.is_finished()).collect();
        let doomed: Vec<String> = finished
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                let beyond = keep.is_some_and(|k| *i >= k);
                // A start time that cannot be read is not old enough.
                let old = before.is_some_and(|b| e.started_at.parse::<jiff::Timestamp>().is_ok_and(|t| t < b));
                beyond || old
            })
            .map(|(_, e)| e.id.clone())
            .collect();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in &doomed {
            for table in ["attempts", "task_runs", "approvals", "approval_votes", "digests"] {
                tx.execute(&format!("DELETE FROM {table} WHERE execution_id = ?1"), [id])?;
            }
            tx.execute("DELETE FROM executions WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        drop(conn);
        // The records go first: a crash in between leaves files without a
        // record, never a record whose logs are gone.
        for id in &doomed {
            let gone = |r: std::io::Result<()>, path: &Path| match r {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(StoreError(format!("cannot remove {}: {e}", path.display())))
                }
                _ => Ok(()),
            };
            let file = logs::path(&self.dir, id);
            gone(std::fs::remove_file(&file), &file)?;
            for path in [logs::legacy_dir(&self.dir, id), self.dir.join("artifacts").join(id)] {
                gone(std::fs::remove_dir_all(&path), &path)?;
            }
        }
        Ok(doomed)
    }

    /// One execution (an id, a unique prefix of one, or `latest` for the
    /// newest) and its task runs.
    pub fn show(&self, id: &str) -> Result<Option<(ExecutionRow, Vec<TaskRow>)>> {
        if id == "latest" {
            return match self.list()?.first() {
                Some(newest) => self.show(&newest.id.clone()),
                None => Ok(None),
            };
        }
        let conn = self.conn();
        let mut matches = conn
            .prepare(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE id LIKE ?1 || '%' ESCAPE '\\'"
            ))?
            // A prefix is literal text: `_` and `%` are not wildcards.
            .query_map(
                [id.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")],
                execution_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let exec = match matches.len() {
            0 => return Ok(None),
            1 => matches.remove(0),
            n => {
                return Err(StoreError(format!(
                    "`{id}` matches {n} executions: give more of the id"
                )))
            }
        };
        let full = exec.id.clone();
        let mut stmt = conn.prepare(
            "SELECT task, kind, state, started_at, ended_at, attempts, error, outputs FROM task_runs WHERE execution_id = ?1 ORDER BY rowid",
        )?;
        let tasks = stmt
            .query_map([&full], |r| {
                Ok(TaskRow {
                    task: r.get(0)?,
                    kind: r.get(1)?,
                    state: state_column(r, 2)?,
                    started_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    attempts: r.get(5)?,
                    error: r.get(6)?,
                    outputs: json_column(r.get::<_, Option<String>>(7)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<TaskRow>>>()?;
        // As `mark_interrupted` would have recorded it, for a reader that
        // may not write.
        let tasks = if exec.state == ExecutionState::Interrupted {
            tasks
                .into_iter()
                .map(|mut t| {
                    if t.state == TaskState::Running {
                        t.state = TaskState::Interrupted;
                    }
                    t
                })
                .collect()
        } else {
            tasks
        };
        Ok(Some((exec, tasks)))
    }
}

/// Files tasks kept for an execution in a state folder (reports, SBOMs):
/// (task, path, bytes). They stay on the machine that ran the task,
/// whichever history records it.
pub fn artifacts_in(dir: &Path, id: &str) -> Vec<(String, PathBuf, u64)> {
    let root = dir.join("artifacts").join(id);
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(&root) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(files) = std::fs::read_dir(task.path()) else {
            continue;
        };
        for f in files.flatten() {
            let size = f.metadata().map_or(0, |m| m.len());
            out.push((run_from_file_name(&task.file_name().to_string_lossy()), f.path(), size));
        }
    }
    out.sort();
    out
}

/// Records a task run unless known: iterations of loops (`task[i]`) are
/// known once they start (or are skipped).
fn declare_run(tx: &rusqlite::Transaction, id: &str, task: &str, kind: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO task_runs (execution_id, task, kind, state) VALUES (?1, ?2, ?3, 'pending')",
    )?
    .execute(params![id, task, kind])?;
    Ok(())
}

/// The columns `execution_row` reads, in its order.
const EXECUTION_COLUMNS: &str =
    "id, flow, file, state, started_at, ended_at, inputs, failures, outputs, pid, owner, rerun_of, trigger";

/// A state column read into its enum; a word that is none of ours is an
/// error rather than a guess.
fn state_column<T: std::str::FromStr<Err = crate::state::UnknownState>>(
    r: &rusqlite::Row,
    i: usize,
) -> rusqlite::Result<T> {
    let word: String = r.get(i)?;
    word.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn read_history_id(conn: &Connection) -> Result<String> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = 'history'", [], |r| r.get(0))?)
}

fn json_column(text: Option<String>) -> Json {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Json::Null)
}

fn execution_row(r: &rusqlite::Row) -> rusqlite::Result<ExecutionRow> {
    let mut state: ExecutionState = state_column(r, 3)?;
    // A reader that may not write (see `open_read`) still tells the truth
    // about an execution whose process is gone.
    if state == ExecutionState::Running && !recorded_alive(r.get::<_, Option<String>>(10)?.as_deref(), r.get(9)?) {
        state = ExecutionState::Interrupted;
    }
    Ok(ExecutionRow {
        id: r.get(0)?,
        flow: r.get(1)?,
        file: r.get(2)?,
        state,
        started_at: r.get(4)?,
        ended_at: r.get(5)?,
        inputs: json_column(r.get(6)?),
        failures: json_column(r.get(7)?),
        outputs: json_column(r.get(8)?),
        rerun_of: r.get(11)?,
        trigger: json_column(r.get(12)?),
    })
}

/// Which executions a page holds.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub flow: Option<String>,
    pub state: Option<ExecutionState>,
    /// The name of the trigger that started them.
    pub trigger: Option<String>,
    /// A digest (`sha256:…`) one of their tasks produced or handled.
    pub digest: Option<String>,
}

/// A change to record, derived from an executor event.
#[derive(Debug, Clone)]
pub enum Change {
    Started {
        task: String,
        kind: String,
        attempt: u32,
        at: String,
    },
    AttemptFailed {
        task: String,
        attempt: u32,
        error: String,
        at: String,
    },
    Finished {
        task: String,
        kind: String,
        state: TaskState,
        error: Option<String>,
        outputs: Json,
        at: String,
    },
}

/// A line for an execution's log.
#[derive(Debug, Clone, Copy)]
pub struct LogAppend<'a> {
    pub task: &'a str,
    pub text: &'a str,
}

/// A task run's name as one file name (its log, its artifact folder):
/// a loop item such as `linux/arm64` must not make a folder, so every byte
/// but letters, digits and `-_.[]:@+=` is written `%XX`.
pub fn run_file_name(task: &str) -> String {
    let mut out = String::with_capacity(task.len());
    for b in task.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.[]:@+=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The task run a [`run_file_name`] names.
pub fn run_from_file_name(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn new_execution(tasks: Vec<(String, String)>) -> NewExecution<'static> {
        static INPUTS: std::sync::OnceLock<Json> = std::sync::OnceLock::new();
        NewExecution {
            flow: "f",
            file: "f.kflow",
            inputs: INPUTS.get_or_init(|| serde_json::json!({"v": "1"})),
            tasks,
            plan: serde_json::json!({}),
            base_dir: PathBuf::from("."),
            rerun_of: None,
            trigger: None,
            origin: Origin::Cli,
        }
    }

    #[test]
    fn run_names_make_one_file_name_each_and_read_back() {
        for task in ["build", "build[linux/arm64]", "t[0][a:b]", "odd%2F/..", "ünï"] {
            let file = run_file_name(task);
            assert!(!file.contains('/') && file != ".." && file != ".", "{file}");
            assert_eq!(run_from_file_name(&file), task);
        }
        assert_eq!(run_file_name("build[linux/arm64]"), "build[linux%2Farm64]");
    }

    #[test]
    fn executions_are_recorded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let id = s
            .begin(&new_execution(vec![("build".to_string(), "shell.run".to_string())]))
            .unwrap();
        s.apply(
            &id,
            &[
                Change::Started {
                    task: "build".into(),
                    kind: "shell.run".into(),
                    attempt: 1,
                    at: now(),
                },
                Change::AttemptFailed {
                    task: "build".into(),
                    attempt: 1,
                    error: "boom".into(),
                    at: now(),
                },
                Change::Started {
                    task: "build".into(),
                    kind: "shell.run".into(),
                    attempt: 2,
                    at: now(),
                },
                Change::Finished {
                    task: "build".into(),
                    kind: "shell.run".into(),
                    state: TaskState::Succeeded,
                    error: None,
                    outputs: serde_json::json!({"stdout": "ok"}),
                    at: now(),
                },
                // An iteration of a loop: not declared up front.
                Change::Finished {
                    task: "each[0]".into(),
                    kind: "log".into(),
                    state: TaskState::Skipped,
                    error: None,
                    outputs: serde_json::Value::Null,
                    at: now(),
                },
            ],
        )
        .unwrap();
        s.append_logs(
            &id,
            &[LogAppend {
                task: "build",
                text: "line one",
            }],
        )
        .unwrap();
        s.finish(
            &id,
            ExecutionState::Succeeded,
            &serde_json::json!([]),
            &serde_json::json!({"o": 1}),
        )
        .unwrap();
        let (exec, runs) = s.show(&id[..12]).unwrap().unwrap();
        assert_eq!(exec.state, ExecutionState::Succeeded);
        assert_eq!(exec.inputs["v"], "1");
        assert_eq!(runs[0].attempts, 2);
        let attempts = s.attempts(&id).unwrap();
        assert_eq!(attempts.iter().filter(|a| a.task == "build").count(), 2);
        assert!(
            attempts[0].error.is_some() && attempts[0].ended_at.is_some(),
            "{attempts:?}"
        );
        assert_eq!(runs[0].outputs["stdout"], "ok");
        assert_eq!((runs[1].task.as_str(), runs[1].kind.as_str()), ("each[0]", "log"));
        let log = s.log_reader(&id).next(&[]).unwrap();
        assert_eq!((log[0].task.as_str(), log[0].text.as_str()), ("build", "line one"));
        assert!(
            log[0]
                .stamp
                .as_ref()
                .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
            "{log:?}"
        );
        // Lines of older versions, and the truncation note, have no time.
        assert_eq!(split_log_line("2026-12-02 not a time"), (None, "2026-12-02 not a time"));
        assert_eq!(
            split_log_line("2026-12-02T15:40:01.123Z"),
            (None, "2026-12-02T15:40:01.123Z")
        );
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn pages_follow_their_cursor_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let flow = if i % 2 == 0 { "even" } else { "odd" };
            let trigger = serde_json::json!({ "name": format!("t{i}") });
            ids.push(
                s.begin(&NewExecution {
                    flow,
                    trigger: Some(trigger),
                    ..new_execution(Vec::new())
                })
                .unwrap(),
            );
        }
        // Pages of two, each after the last of the one before, hold every
        // execution once, in the order of the whole list.
        let all = ExecutionFilter::default();
        let (mut paged, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let (page, more) = s.page(&all, 2, cursor.as_deref()).unwrap();
            assert!(page.len() <= 2);
            paged.extend(page.iter().map(|e| e.id.clone()));
            cursor = page.last().map(|e| e.id.clone());
            if !more {
                break;
            }
        }
        let listed: Vec<String> = s.list().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(paged, listed);
        assert_eq!(paged.len(), 5);
        let even = ExecutionFilter {
            flow: Some("even".into()),
            ..Default::default()
        };
        assert_eq!(s.page(&even, 10, None).unwrap().0.len(), 3);
        let t3 = ExecutionFilter {
            trigger: Some("t3".into()),
            state: Some(ExecutionState::Running),
            ..Default::default()
        };
        assert_eq!(s.page(&t3, 10, None).unwrap().0[0].id, ids[3]);
        assert!(s.page(&all, 10, Some("no-such-id")).unwrap().0.is_empty());
    }

    #[test]
    fn an_id_prefix_is_literal_text() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let id = s.begin(&new_execution(Vec::new())).unwrap();
        assert!(s.show(&id[..10]).unwrap().is_some());
        assert!(s.show("________").unwrap().is_none(), "`_` matched any character");
        assert!(s.show("%").unwrap().is_none());
    }

    #[test]
    fn execution_ids_never_collide_and_sort_by_time() {
        let ids: Vec<String> = (0..20_000).map(|_| new_id()).collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // The time part (to the millisecond) never goes back.
        assert!(ids.windows(2).all(|w| w[0][..18] <= w[1][..18]), "{:?}", &ids[..3]);
        assert_eq!(ids[0].len(), "20261201-205121123-3f9a2c1d0e4b5a69".len());
    }

    #[test]
    fn a_new_history_opened_by_several_at_once_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || SqliteStore::open(&p).map(|_| ()).map_err(|e| e.0))
            })
            .collect();
        for o in openers {
            assert_eq!(o.join().unwrap(), Ok(()));
        }
    }

    #[test]
    fn an_execution_owned_in_another_pid_namespace_is_not_taken_for_dead() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current();
        // The same kernel boot, another PID namespace (a kflow in a container
        // sharing the history); its pid means nothing here.
        let elsewhere = Owner {
            pidns: "1".into(),
            pid: 4_194_305,
            ..me.clone()
        };
        let reused = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        let (other, recycled) = {
            let s = SqliteStore::open(dir.path()).unwrap();
            let mut ids = Vec::new();
            for owner in [&elsewhere, &reused] {
                let id = s.begin(&new_execution(Vec::new())).unwrap();
                s.conn()
                    .execute(
                        "UPDATE executions SET pid = ?2, owner = ?3 WHERE id = ?1",
                        params![id, owner.pid, owner.to_label()],
                    )
                    .unwrap();
                ids.push(id);
            }
            (ids[0].clone(), ids[1].clone())
        };
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.show(&other).unwrap().unwrap().0.state, ExecutionState::Running);
        assert!(s.process_alive(&other).unwrap());
        assert_eq!(
            s.show(&recycled).unwrap().unwrap().0.state,
            ExecutionState::Interrupted,
            "a reused pid"
        );
        assert_eq!(s.history_id().len(), 32);
    }

    #[test]
    fn executions_of_dead_processes_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = SqliteStore::open(dir.path()).unwrap();
            let id = s.begin(&new_execution(Vec::new())).unwrap();
            // Pretend the recording process died: a pid that cannot exist.
            s.conn()
                .execute(
                    "UPDATE executions SET pid = 999999999, owner = NULL WHERE id = ?1",
                    [&id],
                )
                .unwrap();
            id
        };
        let s = SqliteStore::open(dir.path()).unwrap();
        let (exec, _) = s.show(&id).unwrap().unwrap();
        assert_eq!(exec.state, ExecutionState::Interrupted);
        assert!(exec.ended_at.is_some());
    }

    /// Every line of `task` in an execution's log, read to its end.
    fn read_all(s: &SqliteStore, id: &str, task: &str) -> (Vec<String>, u64) {
        let mut reader = s.log_reader(id);
        let (mut lines, mut bytes) = (Vec::new(), 0);
        loop {
            let got = reader.next(&[]).unwrap();
            if got.is_empty() {
                return (lines, bytes);
            }
            for e in got.into_iter().filter(|e| e.task == task) {
                bytes += (e.stamp.map_or(0, |s| s.len() + 1) + e.task.len() + 1 + e.text.len() + 1) as u64;
                lines.push(e.text);
            }
        }
    }

    #[test]
    fn logs_are_capped_per_task_run() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let line = "x".repeat(1024 * 1024);
        for _ in 0..12 {
            s.append_logs("e", &[LogAppend { task: "t", text: &line }]).unwrap();
            s.append_logs(
                "e",
                &[LogAppend {
                    task: "other",
                    text: "small",
                }],
            )
            .unwrap();
        }
        let (lines, bytes) = read_all(&s, "e", "t");
        assert!(bytes <= LOG_CAP, "{bytes}");
        assert_eq!(lines.last().unwrap(), logs::TRUNCATED);
        // The other task's lines are all there, after the cut too.
        assert_eq!(read_all(&s, "e", "other").0.len(), 12);
    }

    #[test]
    fn a_log_filled_exactly_to_its_cap_still_says_it_was_cut() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        // Lines that add up to the cap exactly, then one more.
        let line = "y".repeat(1024 * 1024 - 1);
        for _ in 0..11 {
            s.append_logs("e", &[LogAppend { task: "t", text: &line }]).unwrap();
        }
        let fits = "z".repeat(1000);
        s.append_logs("e", &[LogAppend { task: "u", text: &fits }]).unwrap();
        let (lines, bytes) = read_all(&s, "e", "t");
        assert!(bytes <= LOG_CAP, "{bytes}");
        assert_eq!(lines.last().unwrap(), logs::TRUNCATED);
        // A log that just fits is not marked.
        assert_eq!(read_all(&s, "e", "u").0, [fits]);
    }

    #[test]
    fn many_task_runs_log_through_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        for i in 0..5_000 {
            s.append_logs(
                "e",
                &[LogAppend {
                    task: &format!("t[{i}]"),
                    text: "done",
                }],
            )
            .unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path().join("logs")).unwrap().count(), 1);
        assert_eq!(read_all(&s, "e", "t[4999]").0, ["done"]);
    }

    #[test]
    fn logs_of_an_older_version_are_read_task_by_task() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let old = dir.path().join("logs/e");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("a.log"), "2026-12-01T10:00:00.002Z second\n").unwrap();
        std::fs::write(old.join("b[0].log"), "2026-12-01T10:00:00.001Z first\n").unwrap();
        let got = s.log_reader("e").next(&["a".into(), "b[0]".into()]).unwrap();
        let got: Vec<(&str, &str)> = got.iter().map(|e| (e.task.as_str(), e.text.as_str())).collect();
        assert_eq!(got, [("b[0]", "first"), ("a", "second")]);
    }
}
