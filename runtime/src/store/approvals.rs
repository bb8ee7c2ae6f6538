//! Approvals in the history: a gate's request (summary, reviewers, deadline),
//! the decision recorded by `kflow approve`/`reject` from any shell, and what
//! `kflow resume` needs to continue an execution.

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};
use serde_json::Value as Json;

use super::{json_column, now, Result, SqliteStore, StoreError};
use crate::state::{ExecutionState, TaskState};

/// A gate waiting for, or having had, a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub execution: String,
    pub task: String,
    pub summary: String,
    pub reviewers: Vec<String>,
    pub requested_at: String,
    /// RFC 3339; past it the gate fails.
    pub deadline: Option<String>,
    pub decision: Option<Decision>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub at: String,
    pub comment: String,
    /// The operating-system user who ran `kflow approve`/`reject`.
    pub os_user: String,
}

/// An execution as `kflow resume` finds it.
#[derive(Debug, Clone)]
pub struct Resumable {
    pub id: String,
    pub flow: String,
    pub file: String,
    pub state: ExecutionState,
    pub plan: Json,
    pub base_dir: PathBuf,
    pub inputs: Json,
    /// Outputs of the task runs that succeeded, by run name.
    pub done: Vec<(String, Json)>,
}

fn approval_row(r: &rusqlite::Row) -> rusqlite::Result<Approval> {
    let reviewers: String = r.get(3)?;
    let decision: Option<String> = r.get(6)?;
    Ok(Approval {
        execution: r.get(0)?,
        task: r.get(1)?,
        summary: r.get(2)?,
        reviewers: serde_json::from_str(&reviewers).unwrap_or_default(),
        requested_at: r.get(4)?,
        deadline: r.get(5)?,
        decision: match decision {
            Some(d) => Some(Decision {
                approved: d == "approved",
                by: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                at: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                comment: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                os_user: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

const APPROVAL_COLUMNS: &str =
    "execution_id, task, summary, reviewers, requested_at, deadline, decision, decided_by, decided_at, comment, decided_os_user";

impl SqliteStore {
    /// Records a gate's request (kept as it is if it exists: a resumed gate
    /// keeps its deadline and any decision taken meanwhile) and marks the
    /// execution `paused`; returns the request as stored.
    pub fn request_approval(
        &self,
        execution: &str,
        task: &str,
        summary: &str,
        reviewers: &[String],
        deadline: Option<String>,
    ) -> Result<Approval> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO approvals (execution_id, task, summary, reviewers, requested_at, deadline) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![execution, task, summary, serde_json::to_string(reviewers).expect("strings serialise"), now(), deadline],
        )?;
        tx.execute(
            "UPDATE executions SET state = 'paused' WHERE id = ?1 AND state = 'running'",
            params![execution],
        )?;
        tx.commit()?;
        drop(conn);
        self.approval(execution, task)?
            .ok_or_else(|| StoreError("the approval request was not stored".into()))
    }

    pub fn approval(&self, execution: &str, task: &str) -> Result<Option<Approval>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = ?1 AND task = ?2"),
                params![execution, task],
                approval_row,
            )
            .optional()?)
    }

    /// Every gate of an execution, in the order they were requested.
    pub fn approvals(&self, execution: &str) -> Result<Vec<Approval>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = ?1 ORDER BY requested_at"
        ))?;
        let rows = stmt
            .query_map(params![execution], approval_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Gates of an execution without a decision.
    pub fn pending_approvals(&self, execution: &str) -> Result<Vec<Approval>> {
        let mut all = self.approvals(execution)?;
        all.retain(|a| a.decision.is_none());
        Ok(all)
    }

    /// Records a decision, unless one was already taken (first decision wins).
    pub fn decide(&self, execution: &str, task: &str, d: &Decision) -> Result<bool> {
        let changed = self.conn().execute(
            "UPDATE approvals SET decision = ?3, decided_by = ?4, decided_at = ?5, comment = ?6, decided_os_user = ?7 WHERE execution_id = ?1 AND task = ?2 AND decision IS NULL",
            params![
                execution,
                task,
                if d.approved { "approved" } else { "rejected" },
                d.by,
                d.at,
                d.comment,
                d.os_user
            ],
        )?;
        Ok(changed == 1)
    }

    /// A paused execution goes on: back to `running`.
    pub fn unpause(&self, execution: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE executions SET state = 'running' WHERE id = ?1 AND state = 'paused'",
            params![execution],
        )?;
        Ok(())
    }

    /// The state of an execution by its full id; `None` when unknown here.
    pub fn state_of(&self, execution: &str) -> Result<Option<ExecutionState>> {
        Ok(self
            .conn()
            .query_row("SELECT state FROM executions WHERE id = ?1", params![execution], |r| {
                super::state_column(r, 0)
            })
            .optional()?)
    }

    /// Whether the process recorded for an execution may still live (only
    /// one provably dead does not).
    pub fn process_alive(&self, execution: &str) -> Result<bool> {
        let row: Option<(i64, Option<String>)> = self
            .conn()
            .query_row(
                "SELECT pid, owner FROM executions WHERE id = ?1",
                params![execution],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.is_some_and(|(pid, owner)| super::recorded_alive(owner.as_deref(), pid)))
    }

    /// What `kflow resume` needs; `None` for an unknown id.
    pub fn resumable(&self, id: &str) -> Result<Option<Resumable>> {
        let Some((exec, tasks)) = self.show(id)? else {
            return Ok(None);
        };
        let (plan, base_dir): (Option<String>, Option<String>) = self.conn().query_row(
            "SELECT plan, base_dir FROM executions WHERE id = ?1",
            params![exec.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let plan = json_column(plan);
        if plan.is_null() {
            return Err(StoreError(format!(
                "execution {} was recorded without its plan and cannot be resumed",
                exec.id
            )));
        }
        Ok(Some(Resumable {
            id: exec.id,
            flow: exec.flow,
            file: exec.file,
            state: exec.state,
            plan,
            base_dir: PathBuf::from(base_dir.unwrap_or_else(|| ".".into())),
            inputs: exec.inputs,
            done: tasks
                .into_iter()
                .filter(|t| t.state == TaskState::Succeeded)
                .map(|t| (t.task, t.outputs))
                .collect(),
        }))
    }

    /// The executions the server started that are `interrupted`, or
    /// `paused` or `queued` with their process gone: what a server resumes
    /// when it starts (oldest first).
    pub fn server_orphans(&self) -> Result<Vec<(String, ExecutionState)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, pid, owner, state FROM executions WHERE origin = 'server' AND state IN ('interrupted', 'paused', 'queued') ORDER BY started_at, id",
        )?;
        let rows: Vec<(String, i64, Option<String>, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows
            .into_iter()
            .filter(|(_, pid, owner, state)| state == "interrupted" || !super::recorded_alive(owner.as_deref(), *pid))
            .filter_map(|(id, _, _, state)| Some((id, state.parse().ok()?)))
            .collect())
    }

    /// A new execution waits for its turn (a concurrency limit).
    pub fn mark_queued(&self, execution: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE executions SET state = 'queued' WHERE id = ?1 AND state = 'running'",
            params![execution],
        )?;
        Ok(())
    }

    /// A run that detached at an approval: the execution stays `paused`.
    pub fn leave_paused(&self, execution: &str) -> Result<()> {
        self.close_log(execution)?;
        self.conn().execute(
            "UPDATE executions SET state = 'paused', ended_at = NULL WHERE id = ?1",
            params![execution],
        )?;
        Ok(())
    }

    /// Takes an execution over for this process: `running`, this pid.
    pub fn reopen(&self, execution: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE executions SET state = 'running', pid = ?2, owner = ?3, ended_at = NULL WHERE id = ?1",
            params![execution, std::process::id(), crate::owner::Owner::current().to_label()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::new_execution;
    use super::*;

    #[test]
    fn a_gate_is_requested_decided_once_and_kept_across_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let id = s
            .begin(&new_execution(vec![("gate".into(), "approval".into())]))
            .unwrap();
        let a = s
            .request_approval(
                &id,
                "gate",
                "Promote?",
                &["alice".into()],
                Some("2999-01-01T00:00:00+00:00".into()),
            )
            .unwrap();
        assert_eq!(a.reviewers, ["alice"]);
        assert_eq!(s.show(&id).unwrap().unwrap().0.state, ExecutionState::Paused);
        assert_eq!(s.pending_approvals(&id).unwrap().len(), 1);
        let d = Decision {
            approved: true,
            by: "alice".into(),
            at: now(),
            comment: "ship it".into(),
            os_user: "ci".into(),
        };
        assert!(s.decide(&id, "gate", &d).unwrap());
        // A second decision does not replace the first.
        let late = Decision {
            approved: false,
            ..d.clone()
        };
        assert!(!s.decide(&id, "gate", &late).unwrap());
        // Requesting again (a resume) keeps the deadline and the decision.
        let again = s.request_approval(&id, "gate", "Promote?", &[], None).unwrap();
        assert_eq!(again.deadline.as_deref(), Some("2999-01-01T00:00:00+00:00"));
        assert_eq!(again.decision, Some(d));
        // A paused execution whose process is gone stays paused.
        drop(s);
        let s = SqliteStore::open(dir.path()).unwrap();
        assert!(s.pending_approvals(&id).unwrap().is_empty());
    }
}
