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
    /// How many distinct reviewers must approve.
    pub required: u32,
    /// Whoever started the execution may not approve it.
    pub prevent_self: bool,
    /// Who started the execution, when a user did (through the API).
    pub started_by: Option<String>,
    /// The digest being approved (`repo@sha256:…`).
    pub subject: Option<String>,
    /// Name → link or file shown beside the decision.
    pub evidence: Json,
    /// The approvals given so far (a rejection decides at once).
    pub votes: Vec<Vote>,
}

/// One reviewer's approval of a gate that needs several.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    pub user: String,
    pub approved: bool,
    pub at: String,
    pub comment: String,
}

/// What a gate asks, as its task requests it.
#[derive(Debug, Clone, Default)]
pub struct GateRequest {
    pub summary: String,
    pub reviewers: Vec<String>,
    pub deadline: Option<String>,
    pub required: u32,
    pub prevent_self: bool,
    pub subject: Option<String>,
    pub evidence: Json,
}

/// What a vote did.
#[derive(Debug, Clone, PartialEq)]
pub enum VoteOutcome {
    /// The gate is decided (this vote was the last approval needed, or a
    /// rejection).
    Decided,
    /// Counted: `have` of `need` approvals so far.
    Counted { have: u32, need: u32 },
}

impl Approval {
    /// Whether `user` may decide this gate now; the reason when not.
    pub fn may_decide(&self, user: &str) -> std::result::Result<(), String> {
        if self.decision.is_some() {
            return Err(format!("`{}` is decided already", self.task));
        }
        if !self.reviewers.is_empty() && !self.reviewers.iter().any(|r| r == user) {
            return Err(format!(
                "{user} may not decide `{}` (reviewers: {})",
                self.task,
                self.reviewers.join(", ")
            ));
        }
        if self.prevent_self && self.started_by.as_deref() == Some(user) {
            return Err(format!(
                "{user} started this execution and may not approve it (prevent_self_approval)"
            ));
        }
        if self.votes.iter().any(|v| v.user == user) {
            return Err(format!("{user} has approved `{}` already", self.task));
        }
        if let Some(deadline) = &self.deadline {
            if deadline
                .parse::<jiff::Timestamp>()
                .is_ok_and(|d| jiff::Timestamp::now() >= d)
            {
                return Err(format!(
                    "`{}` expired at {deadline}: the gate fails, it can no longer be approved or rejected",
                    self.task
                ));
            }
        }
        Ok(())
    }
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

impl Resumable {
    /// An execution as recorded, with its plan and folder (as the store
    /// keeps them: JSON text, a path), ready to resume.
    pub(super) fn of(
        exec: super::ExecutionRow,
        tasks: Vec<super::TaskRow>,
        plan: Option<String>,
        base_dir: Option<String>,
    ) -> Result<Resumable> {
        let plan = json_column(plan);
        if plan.is_null() {
            return Err(StoreError(format!(
                "execution {} was recorded without its plan and cannot be resumed",
                exec.id
            )));
        }
        Ok(Resumable {
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
        })
    }
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
        required: r.get::<_, i64>(11)?.clamp(1, 1000) as u32,
        prevent_self: r.get::<_, i64>(12)? != 0,
        subject: r.get(13)?,
        evidence: json_column(r.get(14)?),
        started_by: r.get(15)?,
        votes: Vec::new(),
    })
}

const APPROVAL_COLUMNS: &str =
    "execution_id, task, summary, reviewers, requested_at, deadline, decision, decided_by, decided_at, comment, decided_os_user, required, prevent_self, subject, evidence, started_by";

/// Records a gate's decision unless it has one; how many rows changed.
fn set_decision(conn: &rusqlite::Connection, execution: &str, task: &str, d: &Decision) -> rusqlite::Result<usize> {
    conn.execute(
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
    )
}

/// Fills in the votes of gates read from the history.
fn with_votes(conn: &rusqlite::Connection, mut gates: Vec<Approval>) -> rusqlite::Result<Vec<Approval>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user, approved, at, comment FROM approval_votes WHERE execution_id = ?1 AND task = ?2 ORDER BY at, user",
    )?;
    for g in &mut gates {
        g.votes = stmt
            .query_map(params![g.execution, g.task], |r| {
                Ok(Vote {
                    user: r.get(0)?,
                    approved: r.get::<_, i64>(1)? != 0,
                    at: r.get(2)?,
                    comment: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(gates)
}

impl SqliteStore {
    /// Records a gate's request (kept as it is if it exists: a resumed gate
    /// keeps its deadline and any decision taken meanwhile) and marks the
    /// execution `paused`; returns the request as stored.
    pub fn request_approval(&self, execution: &str, task: &str, g: &GateRequest) -> Result<Approval> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Who started the execution, when a user did: the `by` of its trigger.
        tx.execute(
            "INSERT OR IGNORE INTO approvals (execution_id, task, summary, reviewers, requested_at, deadline, required, prevent_self, subject, evidence, started_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, (SELECT json_extract(trigger, '$.by') FROM executions WHERE id = ?1))",
            params![
                execution,
                task,
                g.summary,
                serde_json::to_string(&g.reviewers).expect("strings serialise"),
                now(),
                g.deadline,
                g.required.max(1),
                g.prevent_self,
                g.subject,
                g.evidence.to_string()
            ],
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
        let conn = self.conn();
        let gate = conn
            .query_row(
                &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = ?1 AND task = ?2"),
                params![execution, task],
                approval_row,
            )
            .optional()?;
        Ok(with_votes(&conn, gate.into_iter().collect())?.pop())
    }

    /// A reviewer's decision: a rejection decides the gate; an approval is
    /// counted, and decides it once `required` distinct reviewers approved
    /// (the last of them is its `by`). Who may vote is the caller's to check
    /// ([`Approval::may_decide`]); a second vote of one user, or a vote on a
    /// decided gate, changes nothing and says so.
    pub fn vote(&self, execution: &str, task: &str, d: &Decision) -> Result<VoteOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (decided, required): (Option<String>, i64) = tx
            .query_row(
                "SELECT decision, required FROM approvals WHERE execution_id = ?1 AND task = ?2",
                params![execution, task],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError(format!("no gate `{task}` in execution {execution}")))?;
        if decided.is_some() {
            return Err(StoreError(format!("`{task}` is decided already")));
        }
        let added = tx.execute(
            "INSERT OR IGNORE INTO approval_votes (execution_id, task, user, approved, at, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![execution, task, d.by, d.approved, d.at, d.comment],
        )?;
        if added == 0 {
            return Err(StoreError(format!("{} has decided `{task}` already", d.by)));
        }
        let have: i64 = tx.query_row(
            "SELECT count(*) FROM approval_votes WHERE execution_id = ?1 AND task = ?2 AND approved = 1",
            params![execution, task],
            |r| r.get(0),
        )?;
        let outcome = if !d.approved || have >= required.max(1) {
            set_decision(&tx, execution, task, d)?;
            VoteOutcome::Decided
        } else {
            VoteOutcome::Counted {
                have: have as u32,
                need: required.max(1) as u32,
            }
        };
        tx.commit()?;
        Ok(outcome)
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
        drop(stmt);
        Ok(with_votes(&conn, rows)?)
    }

    /// Every gate still waiting for its decision, of executions that have
    /// not ended, oldest first (at most `limit`): a reviewer's inbox.
    pub fn open_approvals(&self, limit: usize) -> Result<Vec<Approval>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals
             WHERE decision IS NULL AND execution_id IN
                   (SELECT id FROM executions WHERE state IN ('running', 'paused', 'interrupted'))
             ORDER BY requested_at LIMIT ?1"
        ))?;
        let rows = stmt
            .query_map(params![limit as i64], approval_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(stmt);
        Ok(with_votes(&conn, rows)?)
    }

    /// Gates of an execution without a decision.
    pub fn pending_approvals(&self, execution: &str) -> Result<Vec<Approval>> {
        let mut all = self.approvals(execution)?;
        all.retain(|a| a.decision.is_none());
        Ok(all)
    }

    /// Records a decision, unless one was already taken (first decision wins).
    pub fn decide(&self, execution: &str, task: &str, d: &Decision) -> Result<bool> {
        Ok(set_decision(&self.conn(), execution, task, d)? == 1)
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
        Resumable::of(exec, tasks, plan, base_dir).map(Some)
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
                &GateRequest {
                    summary: "Promote?".into(),
                    reviewers: vec!["alice".into()],
                    deadline: Some("2999-01-01T00:00:00+00:00".into()),
                    ..Default::default()
                },
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
        let again = s
            .request_approval(
                &id,
                "gate",
                &GateRequest {
                    summary: "Promote?".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(again.deadline.as_deref(), Some("2999-01-01T00:00:00+00:00"));
        assert_eq!(again.decision, Some(d));
        // A gate that needs two approvals: one counts, a second vote of the
        // same reviewer does not, another reviewer's decides.
        let two = GateRequest {
            summary: "Ship?".into(),
            required: 2,
            ..Default::default()
        };
        let g = s.request_approval(&id, "two", &two).unwrap();
        assert_eq!((g.required, g.votes.len()), (2, 0));
        let vote = |by: &str, approved: bool| Decision {
            approved,
            by: by.into(),
            at: now(),
            comment: String::new(),
            os_user: String::new(),
        };
        assert_eq!(
            s.vote(&id, "two", &vote("alice", true)).unwrap(),
            VoteOutcome::Counted { have: 1, need: 2 }
        );
        assert!(s.vote(&id, "two", &vote("alice", true)).is_err());
        let g = s.approval(&id, "two").unwrap().unwrap();
        assert_eq!(g.may_decide("alice").unwrap_err(), "alice has approved `two` already");
        assert!(g.decision.is_none());
        assert_eq!(s.vote(&id, "two", &vote("bob", true)).unwrap(), VoteOutcome::Decided);
        let g = s.approval(&id, "two").unwrap().unwrap();
        assert_eq!(g.decision.map(|d| d.by), Some("bob".to_string()));
        assert_eq!(g.votes.len(), 2);
        // A rejection decides at once.
        s.request_approval(&id, "three", &GateRequest { required: 3, ..two })
            .unwrap();
        assert_eq!(
            s.vote(&id, "three", &vote("carol", false)).unwrap(),
            VoteOutcome::Decided
        );
        // A paused execution whose process is gone stays paused.
        drop(s);
        let s = SqliteStore::open(dir.path()).unwrap();
        assert!(s.pending_approvals(&id).unwrap().is_empty());
    }
}
