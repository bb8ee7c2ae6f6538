//! The task queue that `kflow worker`s take work from.
//!
//! Each attempt of a dispatched task run is one row. A worker claims ready
//! rows in a short transaction (`FOR UPDATE SKIP LOCKED`: workers never
//! wait on each other's claims) and holds each under a lease it renews by
//! heartbeat. A result is accepted only from the worker that holds the
//! row's claim while its lease holds (fencing): a worker that lost its
//! lease (killed, cut off, paused) and comes back late is refused, because
//! the dispatcher has recorded that attempt `lost` and queued another. Every
//! time compared is the database's `now()`, never a machine's clock. No
//! transaction stays open while a task runs.
//!
//! Wake-ups: `NOTIFY kflow_queue` when a row is queued (workers listen),
//! `NOTIFY kflow_done` when one is settled (dispatchers listen); both sides
//! poll as well, so a lost notification only costs a poll interval.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;

use super::{text, PgStore};
use crate::store::{json_column, Result, StoreError};

/// The channel workers listen on for queued work.
pub const QUEUED: &str = "kflow_queue";
/// The channel dispatchers listen on for settled work.
pub const SETTLED: &str = "kflow_done";

/// One attempt of a task run, to queue.
pub struct NewTask<'a> {
    pub execution: &'a str,
    /// The run's name (`build`, `build[linux/arm64]`).
    pub task: &'a str,
    pub attempt: u32,
    pub kind: &'a str,
    /// The properties in their wire form (secrets as references).
    pub props: &'a Json,
    /// What a worker's labels must include (`runs_on`).
    pub labels: &'a BTreeMap<String, String>,
    /// The one worker that may run it: the one whose engine holds a local
    /// image the task uses.
    pub on_worker: Option<&'a str>,
}

/// How long a worker may go without a heartbeat before work that only it
/// can run fails: longer than any lease a worker takes by default.
const GONE_AFTER_SECONDS: f64 = 60.0;

/// A claimed attempt, as a worker runs it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub seq: i64,
    pub execution: String,
    pub task: String,
    pub attempt: u32,
    pub kind: String,
    pub props: Json,
}

/// How an attempt ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded { outputs: Json },
    Failed { error: String, transient: bool },
    Cancelled,
}

/// An attempt's state, as its dispatcher reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    Done(Outcome),
    /// Its worker's lease lapsed: the worker is gone or cut off.
    Lost {
        worker: String,
    },
}

/// The queue at a glance (see [`PgStore::queue_stats`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    /// Attempts lost with their worker, in all.
    pub lost: i64,
    /// Workers with a recent heartbeat.
    pub workers: i64,
    /// Seconds from queued to claimed, over the last 1,000 claims.
    pub claim_p50: f64,
    pub claim_p95: f64,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub labels: BTreeMap<String, String>,
    pub engine: Option<String>,
    pub jobs: u32,
    pub started_at: String,
    /// Seconds since its last heartbeat, by the database's clock.
    pub silent_for: f64,
    pub stopped: bool,
    /// `execution/task` of the attempts it holds.
    pub running: Vec<String>,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl PgStore {
    /// Records a worker (again, after a restart under the same id).
    pub async fn register_worker(
        &self,
        id: &str,
        host: &str,
        labels: &BTreeMap<String, String>,
        engine: Option<&str>,
        jobs: u32,
    ) -> Result<()> {
        let labels = serde_json::to_string(labels).expect("strings serialise");
        self.client()
            .await?
            .execute(
                "INSERT INTO workers (id, host, labels, engine, jobs) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET host = excluded.host, labels = excluded.labels, engine = excluded.engine,
                     jobs = excluded.jobs, started_at = now(), heartbeat_at = now(), stopped_at = NULL",
                &[&id, &text(host), &text(&labels), &engine.map(text), &(jobs.min(i32::MAX as u32) as i32)],
            )
            .await?;
        Ok(())
    }

    /// A worker stopped (drained): its row stays for `kflow workers list`.
    pub async fn stop_worker(&self, id: &str) -> Result<()> {
        self.client()
            .await?
            .execute("UPDATE workers SET stopped_at = now() WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }

    /// Queues one attempt; its row's number.
    pub async fn enqueue(&self, t: &NewTask<'_>) -> Result<i64> {
        let labels = serde_json::to_string(t.labels).expect("strings serialise");
        let client = self.client().await?;
        let seq: i64 = client
            .query_one(
                "INSERT INTO task_queue (execution_id, task, attempt, kind, props, labels, worker_wanted, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued') RETURNING seq",
                &[
                    &t.execution,
                    &text(t.task),
                    &(t.attempt.min(i32::MAX as u32) as i32),
                    &t.kind,
                    &text(&t.props.to_string()),
                    &text(&labels),
                    &t.on_worker,
                ],
            )
            .await?
            .get(0);
        client.execute(&format!("NOTIFY {QUEUED}"), &[]).await?;
        Ok(seq)
    }

    /// Claims up to `max` queued attempts whose labels the worker's
    /// include, oldest first, and records the worker on their attempts.
    pub async fn claim(
        &self,
        worker: &str,
        labels: &BTreeMap<String, String>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let labels = serde_json::to_string(labels).expect("strings serialise");
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "UPDATE task_queue SET state = 'claimed', worker = $1, claimed_at = now(),
                        lease_until = now() + make_interval(secs => $4)
                 WHERE seq IN (SELECT seq FROM task_queue
                               WHERE state = 'queued' AND labels::jsonb <@ $2::text::jsonb
                                 AND (worker_wanted IS NULL OR worker_wanted = $1)
                               ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING seq, execution_id, task, attempt, kind, props",
                &[&worker, &labels, &(max.min(1000) as i64), &seconds(lease)],
            )
            .await?;
        let mut claimed: Vec<Claimed> = rows
            .iter()
            .map(|r| Claimed {
                seq: r.get(0),
                execution: r.get(1),
                task: r.get(2),
                attempt: r.get::<_, i32>(3).max(0) as u32,
                kind: r.get(4),
                props: json_column(r.get(5)),
            })
            .collect();
        claimed.sort_by_key(|c| c.seq);
        for c in &claimed {
            tx.execute(
                "UPDATE attempts SET worker = $4 WHERE execution_id = $1 AND task = $2 AND attempt = $3",
                &[&c.execution, &c.task, &(c.attempt as i32), &worker],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// A worker's heartbeat: renews its own lease and those of the attempts
    /// it still holds; returns those (row, whether cancellation was asked).
    /// An attempt missing from the answer is no longer the worker's.
    pub async fn heartbeat(&self, worker: &str, lease: Duration) -> Result<Vec<(i64, bool)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("UPDATE workers SET heartbeat_at = now() WHERE id = $1", &[&worker])
            .await?;
        let held = tx
            .query(
                "UPDATE task_queue SET lease_until = now() + make_interval(secs => $2)
                 WHERE worker = $1 AND state = 'claimed' AND lease_until >= now() RETURNING seq, cancel",
                &[&worker, &seconds(lease)],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().await?;
        Ok(held)
    }

    /// Reports how an attempt ended. Accepted only from the worker holding
    /// its claim while the lease holds; `false` when refused (fenced).
    pub async fn settle(&self, seq: i64, worker: &str, outcome: &Outcome) -> Result<bool> {
        let (state, outputs, error, transient) = match outcome {
            Outcome::Succeeded { outputs } => ("succeeded", Some(text(&outputs.to_string()).into_owned()), None, false),
            Outcome::Failed { error, transient } => ("failed", None, Some(text(error).into_owned()), *transient),
            Outcome::Cancelled => ("cancelled", None, None, false),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE task_queue SET state = $3, outputs = $4, error = $5, transient = $6, ended_at = now()
                 WHERE seq = $1 AND worker = $2 AND state = 'claimed' AND lease_until >= now()",
                &[&seq, &worker, &state, &outputs, &error, &transient],
            )
            .await?;
        if changed == 1 {
            tx.execute(
                "UPDATE attempts a SET worker = q.worker FROM task_queue q
                 WHERE q.seq = $1 AND a.execution_id = q.execution_id AND a.task = q.task AND a.attempt = q.attempt",
                &[&seq],
            )
            .await?;
            tx.execute(&format!("NOTIFY {SETTLED}"), &[]).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Hands a draining worker's claims back to the queue, for another
    /// worker to take.
    pub async fn release_claims(&self, worker: &str, seqs: &[i64]) -> Result<u64> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE task_queue SET state = 'queued', worker = NULL, claimed_at = NULL, lease_until = NULL
                 WHERE worker = $1 AND state = 'claimed' AND seq = ANY($2)",
                &[&worker, &seqs],
            )
            .await?;
        if n > 0 {
            client.execute(&format!("NOTIFY {QUEUED}"), &[]).await?;
        }
        Ok(n)
    }

    /// The attempts among `seqs` that ended, or whose worker's lease lapsed
    /// (recorded `lost` here, in the same statement that reads them, so a
    /// late result can no longer be accepted).
    pub async fn settled(&self, seqs: &[i64]) -> Result<Vec<(i64, Settled)>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let lost: Vec<(i64, Settled)> = tx
            .query(
                "UPDATE task_queue SET state = 'lost', ended_at = now()
                 WHERE seq = ANY($1) AND state = 'claimed' AND lease_until < now() RETURNING seq, worker",
                &[&seqs],
            )
            .await?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Settled::Lost {
                        worker: r.get::<_, Option<String>>(1).unwrap_or_default(),
                    },
                )
            })
            .collect();
        // Work only a gone worker could run fails: its engine holds what
        // the task needs.
        tx.execute(
            "UPDATE task_queue SET state = 'failed', ended_at = now(), transient = FALSE,
                    error = 'it needs what only worker ' || worker_wanted || ' holds (a local image or Compose stack on its engine, a secret a task produced there), and that worker is gone (stopped, or no heartbeat for '
                            || $2::float8::int || ' s): `kflow rerun --from-failed` makes it again'
             WHERE seq = ANY($1) AND state = 'queued' AND worker_wanted IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = worker_wanted AND w.stopped_at IS NULL
                               AND w.heartbeat_at > now() - make_interval(secs => $2))",
            &[&seqs, &GONE_AFTER_SECONDS],
        )
        .await?;
        let done = tx
            .query(
                "SELECT seq, state, outputs, error, transient FROM task_queue
                 WHERE seq = ANY($1) AND state IN ('succeeded', 'failed', 'cancelled')",
                &[&seqs],
            )
            .await?;
        tx.commit().await?;
        let mut out = lost;
        for r in &done {
            let outcome = match r.get::<_, &str>(1) {
                "succeeded" => Outcome::Succeeded {
                    outputs: json_column(r.get(2)),
                },
                "failed" => Outcome::Failed {
                    error: r.get::<_, Option<String>>(3).unwrap_or_default(),
                    transient: r.get(4),
                },
                _ => Outcome::Cancelled,
            };
            out.push((r.get(0), Settled::Done(outcome)));
        }
        Ok(out)
    }

    /// The worker whose attempt of this execution produced `image` (a local
    /// image id in its outputs), if a worker did.
    pub async fn producer(&self, execution: &str, image: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT worker FROM task_queue WHERE execution_id = $1 AND state = 'succeeded'
                   AND strpos(outputs, $2) > 0 ORDER BY seq DESC LIMIT 1",
                &[&execution, &image],
            )
            .await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Asks for an attempt to stop: a queued one is withdrawn at once, a
    /// claimed one is cancelled by its worker at its next heartbeat.
    pub async fn cancel_task(&self, seq: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE task_queue SET cancel = TRUE,
                        state = CASE state WHEN 'queued' THEN 'cancelled' ELSE state END,
                        ended_at = CASE state WHEN 'queued' THEN now() ELSE ended_at END
                 WHERE seq = $1",
                &[&seq],
            )
            .await?;
        Ok(())
    }

    /// What `/metrics` says of the queue.
    pub async fn queue_stats(&self) -> Result<QueueStats> {
        let r = self
            .client()
            .await?
            .query_one(
                "SELECT (SELECT count(*) FROM task_queue WHERE state = 'queued'),
                        (SELECT count(*) FROM task_queue WHERE state = 'claimed'),
                        (SELECT count(*) FROM task_queue WHERE state = 'lost'),
                        (SELECT count(*) FROM workers WHERE stopped_at IS NULL
                            AND heartbeat_at > now() - make_interval(secs => $1)),
                        (SELECT ARRAY[COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 0),
                                      COALESCE(percentile_cont(0.95) WITHIN GROUP (ORDER BY d), 0)]
                         FROM (SELECT extract(epoch FROM claimed_at - enqueued_at)::float8 AS d FROM task_queue
                               WHERE claimed_at IS NOT NULL ORDER BY seq DESC LIMIT 1000) recent)",
                &[&GONE_AFTER_SECONDS],
            )
            .await?;
        let latency: Vec<f64> = r.get(4);
        Ok(QueueStats {
            queued: r.get(0),
            running: r.get(1),
            lost: r.get(2),
            workers: r.get(3),
            claim_p50: latency.first().copied().unwrap_or(0.0),
            claim_p95: latency.get(1).copied().unwrap_or(0.0),
        })
    }

    /// Whether a worker stopped, or has been silent past any lease.
    pub async fn worker_gone(&self, id: &str) -> Result<bool> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM workers WHERE id = $1 AND stopped_at IS NULL
                                    AND heartbeat_at > now() - make_interval(secs => $2))",
                &[&id, &GONE_AFTER_SECONDS],
            )
            .await?
            .get(0))
    }

    /// Attempts waiting for a worker.
    pub async fn queue_depth(&self) -> Result<i64> {
        Ok(self
            .client()
            .await?
            .query_one("SELECT count(*) FROM task_queue WHERE state = 'queued'", &[])
            .await?
            .get(0))
    }

    /// The labels of worker `id`, if it ever registered.
    pub async fn worker_labels(&self, id: &str) -> Result<Option<BTreeMap<String, String>>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT labels FROM workers WHERE id = $1", &[&id])
            .await?;
        row.map(|r| serde_json::from_str(r.get(0)).map_err(|e| StoreError(format!("worker labels: {e}"))))
            .transpose()
    }

    /// Every worker, the newest first, with what it runs.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT w.id, w.host, w.labels, w.engine, w.jobs, to_char(w.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        extract(epoch FROM now() - w.heartbeat_at)::float8, w.stopped_at IS NOT NULL,
                        COALESCE(array_agg(q.execution_id || '/' || q.task ORDER BY q.seq) FILTER (WHERE q.seq IS NOT NULL), '{}')
                 FROM workers w LEFT JOIN task_queue q ON q.worker = w.id AND q.state = 'claimed'
                 GROUP BY w.id ORDER BY w.started_at DESC, w.id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRow {
                    id: r.get(0),
                    host: r.get(1),
                    labels: serde_json::from_str(r.get(2)).map_err(|e| StoreError(format!("worker labels: {e}")))?,
                    engine: r.get(3),
                    jobs: r.get::<_, i32>(4).max(0) as u32,
                    started_at: r.get(5),
                    silent_for: r.get(6),
                    stopped: r.get(7),
                    running: r.get(8),
                })
            })
            .collect()
    }
}
