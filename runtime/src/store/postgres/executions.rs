//! Executions, task runs, attempts and the digests they name.

use serde_json::Value as Json;
use tokio_postgres::Row;

use super::{like_prefix, opt_text, text, PgStore, LEASE_SECONDS};
use crate::state::{ExecutionState, TaskState};
use crate::store::{
    json_column, new_id, now, AttemptRow, Change, DigestUse, ExecutionFilter, ExecutionRow, NewExecution, Result,
    Resumable, StoreError, TaskRow,
};

/// The columns [`execution_row`] reads, in its order.
const EXECUTION_COLUMNS: &str =
    "id, flow, file, state, started_at, ended_at, inputs, failures, outputs, rerun_of, trigger,
     (lease_until IS NULL OR lease_until < now()) AS lapsed";

fn state<T: std::str::FromStr<Err = crate::state::UnknownState>>(word: &str) -> Result<T> {
    word.parse().map_err(|e| StoreError(format!("execution history: {e}")))
}

fn execution_row(r: &Row) -> Result<ExecutionRow> {
    let mut state: ExecutionState = state(r.get(3))?;
    // Its process let the lease lapse: as `mark_interrupted` would record it.
    if state == ExecutionState::Running && r.get::<_, bool>(11) {
        state = ExecutionState::Interrupted;
    }
    Ok(ExecutionRow {
        id: r.get(0),
        flow: r.get(1),
        file: r.get(2),
        state,
        started_at: r.get(4),
        ended_at: r.get(5),
        inputs: json_column(r.get(6)),
        failures: json_column(r.get(7)),
        outputs: json_column(r.get(8)),
        rerun_of: r.get(9),
        trigger: json_column(r.get(10)),
    })
}

impl PgStore {
    pub async fn begin(&self, e: &NewExecution<'_>) -> Result<String> {
        let id = new_id();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO executions (id, flow, file, inputs, state, started_at, plan, base_dir, owner, rerun_of, trigger, origin, lease_until)
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9, $10, $11, now() + make_interval(secs => $12))",
            &[
                &id,
                &text(e.flow),
                &text(e.file),
                &text(&e.inputs.to_string()),
                &now(),
                &text(&e.plan.to_string()),
                &text(&e.base_dir.to_string_lossy()),
                &self.owner,
                &e.rerun_of,
                &e.trigger.as_ref().map(Json::to_string),
                &e.origin.as_str(),
                &LEASE_SECONDS,
            ],
        )
        .await?;
        let (tasks, kinds): (Vec<&str>, Vec<&str>) = e.tasks.iter().map(|(t, k)| (t.as_str(), k.as_str())).unzip();
        tx.execute(
            "INSERT INTO task_runs (execution_id, task, kind, state)
             SELECT $1, t, k, 'pending' FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(t, k, i) ORDER BY i",
            &[&id, &tasks, &kinds],
        )
        .await?;
        tx.commit().await?;
        self.hold(&id);
        Ok(id)
    }

    pub async fn apply(&self, id: &str, changes: &[Change]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let declare = tx
            .prepare_cached(
                "INSERT INTO task_runs (execution_id, task, kind, state) VALUES ($1, $2, $3, 'pending') ON CONFLICT DO NOTHING",
            )
            .await?;
        for c in changes {
            match c {
                Change::Started {
                    task,
                    kind,
                    attempt,
                    at,
                } => {
                    let attempt = i32::try_from(*attempt).unwrap_or(i32::MAX);
                    tx.execute(&declare, &[&id, &text(task), &text(kind)]).await?;
                    tx.execute(
                        "UPDATE task_runs SET state = 'running', started_at = COALESCE(started_at, $3), attempts = $4 WHERE execution_id = $1 AND task = $2",
                        &[&id, &text(task), at, &attempt],
                    )
                    .await?;
                    tx.execute(
                        // The worker, when one claimed the attempt before this
                        // was recorded (the queue and the recorder race).
                        "INSERT INTO attempts (execution_id, task, attempt, started_at, worker)
                         VALUES ($1, $2, $3, $4, (SELECT worker FROM task_queue WHERE execution_id = $1 AND task = $2
                                                  AND attempt = $3 ORDER BY seq DESC LIMIT 1))
                         ON CONFLICT (execution_id, task, attempt) DO UPDATE SET started_at = excluded.started_at, ended_at = NULL,
                             error = NULL, worker = COALESCE(attempts.worker, excluded.worker)",
                        &[&id, &text(task), &attempt, at],
                    )
                    .await?;
                }
                Change::AttemptFailed {
                    task,
                    attempt,
                    error,
                    at,
                } => {
                    let attempt = i32::try_from(*attempt).unwrap_or(i32::MAX);
                    tx.execute(
                        "UPDATE attempts SET ended_at = $4, error = $5 WHERE execution_id = $1 AND task = $2 AND attempt = $3",
                        &[&id, &text(task), &attempt, at, &text(error)],
                    )
                    .await?;
                }
                Change::Finished {
                    task,
                    kind,
                    state,
                    error,
                    outputs,
                    at,
                } => {
                    let error = opt_text(error.as_deref());
                    tx.execute(&declare, &[&id, &text(task), &text(kind)]).await?;
                    tx.execute(
                        "UPDATE task_runs SET state = $3, ended_at = $4, error = $5, outputs = $6 WHERE execution_id = $1 AND task = $2",
                        &[&id, &text(task), &state.as_str(), at, &error, &outputs.to_string()],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE attempts SET ended_at = $3, error = $4 WHERE execution_id = $1 AND task = $2 AND ended_at IS NULL",
                        &[&id, &text(task), at, &error],
                    )
                    .await?;
                    if *state == TaskState::Succeeded {
                        for d in digests_named(outputs) {
                            tx.execute(
                                "INSERT INTO digests (digest, execution_id, task, kind, output, repository, tag, at)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                                &[
                                    &d.digest,
                                    &id,
                                    &text(task),
                                    &text(kind),
                                    &text(d.output),
                                    &d.repository,
                                    &d.tag,
                                    at,
                                ],
                            )
                            .await?;
                        }
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn finish(&self, id: &str, state: ExecutionState, failures: &Json, outputs: &Json) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE executions SET state = $2, ended_at = $3, failures = $4, outputs = $5, lease_until = NULL WHERE id = $1",
                &[&id, &state.as_str(), &now(), &failures.to_string(), &outputs.to_string()],
            )
            .await?;
        self.release(id);
        Ok(())
    }

    pub async fn leave_paused(&self, id: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE executions SET state = 'paused', ended_at = NULL, lease_until = NULL WHERE id = $1",
                &[&id],
            )
            .await?;
        self.release(id);
        Ok(())
    }

    pub async fn unpause(&self, id: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE executions SET state = 'running' WHERE id = $1 AND state = 'paused'",
                &[&id],
            )
            .await?;
        Ok(())
    }

    pub async fn mark_queued(&self, id: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE executions SET state = 'queued' WHERE id = $1 AND state = 'running'",
                &[&id],
            )
            .await?;
        Ok(())
    }

    pub async fn reopen(&self, id: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE executions SET state = 'running', owner = $2, ended_at = NULL,
                        lease_until = now() + make_interval(secs => $3) WHERE id = $1",
                &[&id, &self.owner, &LEASE_SECONDS],
            )
            .await?;
        self.hold(id);
        Ok(())
    }

    pub async fn state_of(&self, id: &str) -> Result<Option<ExecutionState>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT state FROM executions WHERE id = $1", &[&id])
            .await?;
        row.map(|r| state(r.get(0))).transpose()
    }

    /// Whether the process running an execution may live: its lease holds.
    pub async fn process_alive(&self, id: &str) -> Result<bool> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT lease_until IS NOT NULL AND lease_until >= now() FROM executions WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    pub async fn server_orphans(&self) -> Result<Vec<(String, ExecutionState)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, CASE state WHEN 'running' THEN 'interrupted' ELSE state END FROM executions
                 WHERE origin = 'server' AND state IN ('running', 'interrupted', 'paused', 'queued')
                   AND (state = 'interrupted' OR lease_until IS NULL OR lease_until < now())
                 ORDER BY started_at, id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get(0), r.get::<_, &str>(1).parse().ok()?)))
            .collect())
    }

    pub async fn page(
        &self,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<ExecutionRow>, bool)> {
        let client = self.client().await?;
        let after = match cursor {
            Some(c) => match client
                .query_opt("SELECT started_at, id FROM executions WHERE id = $1", &[&c])
                .await?
            {
                Some(r) => Some((r.get::<_, String>(0), r.get::<_, String>(1))),
                None => return Ok((Vec::new(), false)),
            },
            None => None,
        };
        let (at, id) = after.unzip();
        let limit = limit.min(10_000);
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions
                 WHERE ($1::text IS NULL OR flow = $1)
                   AND ($2::text IS NULL OR state = $2)
                   AND ($3::text IS NULL OR (CASE WHEN trigger IS NULL THEN NULL ELSE trigger::jsonb ->> 'name' END) = $3)
                   AND ($4::text IS NULL OR started_at < $4 OR (started_at = $4 AND id < $5))
                   AND ($7::text IS NULL OR id IN (SELECT execution_id FROM digests WHERE digest = $7))
                 ORDER BY started_at DESC, id DESC LIMIT $6"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &filter.flow,
                    &filter.state.map(ExecutionState::as_str),
                    &filter.trigger,
                    &at,
                    &id,
                    &(limit as i64 + 1),
                    &filter.digest,
                ],
            )
            .await?;
        let mut rows = rows.iter().map(execution_row).collect::<Result<Vec<_>>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    pub async fn show(&self, id: &str) -> Result<Option<(ExecutionRow, Vec<TaskRow>)>> {
        let client = self.client().await?;
        let mut matches = if id == "latest" {
            client
                .query(
                    &format!("SELECT {EXECUTION_COLUMNS} FROM executions ORDER BY started_at DESC, id DESC LIMIT 1"),
                    &[],
                )
                .await?
        } else {
            // At most two: enough to tell a unique prefix from an ambiguous one.
            client
                .query(
                    &format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id LIKE $1 ORDER BY id LIMIT 2"),
                    &[&like_prefix(id)],
                )
                .await?
        };
        let exec = match matches.len() {
            0 => return Ok(None),
            1 => execution_row(&matches.remove(0))?,
            _ => {
                return Err(StoreError(format!(
                    "`{id}` matches several executions: give more of the id"
                )))
            }
        };
        let rows = client
            .query(
                "SELECT task, kind, state, started_at, ended_at, attempts, error, outputs FROM task_runs WHERE execution_id = $1 ORDER BY seq",
                &[&exec.id],
            )
            .await?;
        let interrupted = exec.state == ExecutionState::Interrupted;
        let tasks = rows
            .iter()
            .map(|r| {
                let mut state: TaskState = state(r.get(2))?;
                if interrupted && state == TaskState::Running {
                    state = TaskState::Interrupted;
                }
                Ok(TaskRow {
                    task: r.get(0),
                    kind: r.get(1),
                    state,
                    started_at: r.get(3),
                    ended_at: r.get(4),
                    attempts: i64::from(r.get::<_, i32>(5)),
                    error: r.get(6),
                    outputs: json_column(r.get(7)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((exec, tasks)))
    }

    pub async fn resumable(&self, id: &str) -> Result<Option<Resumable>> {
        let Some((exec, tasks)) = self.show(id).await? else {
            return Ok(None);
        };
        let row = self
            .client()
            .await?
            .query_one("SELECT plan, base_dir FROM executions WHERE id = $1", &[&exec.id])
            .await?;
        Resumable::of(exec, tasks, row.get(0), row.get(1)).map(Some)
    }

    /// Removes finished executions beyond the newest `keep` finished ones,
    /// or started before `before`; their task runs, attempts, gates, votes,
    /// digests and log lines go with them (`ON DELETE CASCADE`).
    pub async fn prune(&self, keep: Option<usize>, before: Option<jiff::Timestamp>) -> Result<Vec<String>> {
        let finished: Vec<&str> = ExecutionState::names()
            .into_iter()
            .filter(|n| n.parse::<ExecutionState>().is_ok_and(ExecutionState::is_finished))
            .collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT id, started_at FROM executions WHERE state = ANY($1) ORDER BY started_at DESC, id DESC FOR UPDATE",
                &[&finished],
            )
            .await?;
        let doomed: Vec<String> = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                let beyond = keep.is_some_and(|k| *i >= k);
                // A start time that cannot be read is not old enough.
                let old = before.is_some_and(|b| r.get::<_, &str>(1).parse::<jiff::Timestamp>().is_ok_and(|t| t < b));
                beyond || old
            })
            .map(|(_, r)| r.get(0))
            .collect();
        tx.execute("DELETE FROM executions WHERE id = ANY($1)", &[&doomed])
            .await?;
        tx.commit().await?;
        Ok(doomed)
    }

    pub async fn attempts(&self, id: &str) -> Result<Vec<AttemptRow>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT task, attempt, started_at, ended_at, error FROM attempts WHERE execution_id = $1 ORDER BY started_at, task, attempt",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AttemptRow {
                task: r.get(0),
                attempt: i64::from(r.get::<_, i32>(1)),
                started_at: r.get(2),
                ended_at: r.get(3),
                error: r.get(4),
            })
            .collect())
    }

    pub async fn digest_uses(&self, digest: &str, limit: usize) -> Result<Vec<DigestUse>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT d.execution_id, e.flow, d.task, d.kind, d.output, d.repository, d.tag, d.at
                 FROM digests d JOIN executions e ON e.id = d.execution_id
                 WHERE d.digest = $1 ORDER BY d.at DESC, d.execution_id DESC LIMIT $2",
                &[&digest, &(limit.min(100_000) as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DigestUse {
                execution: r.get(0),
                flow: r.get(1),
                task: r.get(2),
                kind: r.get(3),
                output: r.get(4),
                repository: r.get(5),
                tag: r.get(6),
                at: r.get(7),
            })
            .collect())
    }
}

/// A digest a task run's outputs name, as the SQLite history indexes it
/// (`digests::index_digests!`): a string output that is `sha256:<64>` or
/// ends in `@sha256:<64>`.
struct Named<'a> {
    digest: String,
    output: &'a str,
    repository: Option<String>,
    tag: Option<String>,
}

fn digests_named(outputs: &Json) -> Vec<Named<'_>> {
    let Some(map) = outputs.as_object() else {
        return Vec::new();
    };
    let tag = map.get("ref").and_then(Json::as_str).map(str::to_string);
    map.iter()
        .filter_map(|(output, v)| {
            let v = v.as_str()?;
            let at = v.find("sha256:")?;
            let digest = &v[at..];
            let shaped = digest.len() == 71 && (at == 0 || v.contains("@sha256:"));
            shaped.then(|| Named {
                digest: digest.to_string(),
                output,
                repository: v.find('@').map(|i| v[..i].to_string()),
                tag: tag.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_found_as_the_sqlite_history_finds_them() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let outputs = serde_json::json!({
            "digest": d,
            "pinned": format!("127.0.0.1:5000/app@{d}"),
            "ref": "127.0.0.1:5000/app:1",
            "short": "sha256:abc",
            "n": 3,
        });
        let found = digests_named(&outputs);
        let by: Vec<(&str, Option<&str>)> = found.iter().map(|n| (n.output, n.repository.as_deref())).collect();
        assert_eq!(by, [("digest", None), ("pinned", Some("127.0.0.1:5000/app"))]);
        assert!(found
            .iter()
            .all(|n| n.digest == d && n.tag.as_deref() == Some("127.0.0.1:5000/app:1")));
    }
}
