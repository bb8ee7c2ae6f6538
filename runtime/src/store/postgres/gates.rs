//! Approval gates and reviewers' votes: a gate is decided once, whoever
//! votes at the same moment on whichever machine (the gate's row is locked
//! while a vote is counted).

use tokio_postgres::Row;

use super::{text, PgStore};
use crate::store::{json_column, now, Approval, Decision, GateRequest, Result, StoreError, Vote, VoteOutcome};

const APPROVAL_COLUMNS: &str = "execution_id, task, summary, reviewers, requested_at, deadline, decision, decided_by, decided_at, comment, decided_os_user, required, prevent_self, subject, evidence, started_by";

fn approval_row(r: &Row) -> Approval {
    let reviewers: String = r.get(3);
    let decision: Option<String> = r.get(6);
    Approval {
        execution: r.get(0),
        task: r.get(1),
        summary: r.get(2),
        reviewers: serde_json::from_str(&reviewers).unwrap_or_default(),
        requested_at: r.get(4),
        deadline: r.get(5),
        decision: decision.map(|d| Decision {
            approved: d == "approved",
            by: r.get::<_, Option<String>>(7).unwrap_or_default(),
            at: r.get::<_, Option<String>>(8).unwrap_or_default(),
            comment: r.get::<_, Option<String>>(9).unwrap_or_default(),
            os_user: r.get::<_, Option<String>>(10).unwrap_or_default(),
        }),
        required: r.get::<_, i32>(11).clamp(1, 1000) as u32,
        prevent_self: r.get(12),
        subject: r.get(13),
        evidence: json_column(r.get(14)),
        started_by: r.get(15),
        votes: Vec::new(),
    }
}

impl PgStore {
    async fn with_votes(&self, client: &tokio_postgres::Client, mut gates: Vec<Approval>) -> Result<Vec<Approval>> {
        let stmt = client
            .prepare(
                "SELECT reviewer, approved, at, comment FROM approval_votes WHERE execution_id = $1 AND task = $2 ORDER BY at, reviewer",
            )
            .await?;
        for g in &mut gates {
            g.votes = client
                .query(&stmt, &[&g.execution, &g.task])
                .await?
                .iter()
                .map(|r| Vote {
                    user: r.get(0),
                    approved: r.get(1),
                    at: r.get(2),
                    comment: r.get(3),
                })
                .collect();
        }
        Ok(gates)
    }

    pub async fn request_approval(&self, execution: &str, task: &str, g: &GateRequest) -> Result<Approval> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO approvals (execution_id, task, summary, reviewers, requested_at, deadline, required, prevent_self, subject, evidence, started_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                     (SELECT CASE WHEN trigger IS NULL THEN NULL ELSE trigger::jsonb ->> 'by' END FROM executions WHERE id = $1))
             ON CONFLICT DO NOTHING",
            &[
                &execution,
                &task,
                &text(&g.summary),
                &serde_json::to_string(&g.reviewers).expect("strings serialise"),
                &now(),
                &g.deadline,
                &(g.required.clamp(1, 1000) as i32),
                &g.prevent_self,
                &g.subject.as_deref().map(text),
                &g.evidence.to_string(),
            ],
        )
        .await?;
        tx.execute(
            "UPDATE executions SET state = 'paused' WHERE id = $1 AND state = 'running'",
            &[&execution],
        )
        .await?;
        tx.commit().await?;
        drop(client);
        self.approval(execution, task)
            .await?
            .ok_or_else(|| StoreError("the approval request was not stored".into()))
    }

    pub async fn approval(&self, execution: &str, task: &str) -> Result<Option<Approval>> {
        let client = self.client().await?;
        let gate = client
            .query_opt(
                &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = $1 AND task = $2"),
                &[&execution, &task],
            )
            .await?
            .map(|r| approval_row(&r));
        Ok(self.with_votes(&client, gate.into_iter().collect()).await?.pop())
    }

    pub async fn vote(&self, execution: &str, task: &str, d: &Decision) -> Result<VoteOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT decision, required FROM approvals WHERE execution_id = $1 AND task = $2 FOR UPDATE",
                &[&execution, &task],
            )
            .await?
            .ok_or_else(|| StoreError(format!("no gate `{task}` in execution {execution}")))?;
        if row.get::<_, Option<String>>(0).is_some() {
            return Err(StoreError(format!("`{task}` is decided already")));
        }
        let required = i64::from(row.get::<_, i32>(1).max(1));
        let added = tx
            .execute(
                "INSERT INTO approval_votes (execution_id, task, reviewer, approved, at, comment) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[&execution, &task, &d.by, &d.approved, &d.at, &text(&d.comment)],
            )
            .await?;
        if added == 0 {
            return Err(StoreError(format!("{} has decided `{task}` already", d.by)));
        }
        let have: i64 = tx
            .query_one(
                "SELECT count(*) FROM approval_votes WHERE execution_id = $1 AND task = $2 AND approved",
                &[&execution, &task],
            )
            .await?
            .get(0);
        let outcome = if !d.approved || have >= required {
            tx.execute(
                "UPDATE approvals SET decision = $3, decided_by = $4, decided_at = $5, comment = $6, decided_os_user = $7
                 WHERE execution_id = $1 AND task = $2 AND decision IS NULL",
                &[
                    &execution,
                    &task,
                    &if d.approved { "approved" } else { "rejected" },
                    &d.by,
                    &d.at,
                    &text(&d.comment),
                    &d.os_user,
                ],
            )
            .await?;
            VoteOutcome::Decided
        } else {
            VoteOutcome::Counted {
                have: have as u32,
                need: required as u32,
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub async fn approvals(&self, execution: &str) -> Result<Vec<Approval>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = $1 ORDER BY requested_at, task"
                ),
                &[&execution],
            )
            .await?;
        let gates = rows.iter().map(approval_row).collect();
        self.with_votes(&client, gates).await
    }

    pub async fn open_approvals(&self, limit: usize) -> Result<Vec<Approval>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals
                     WHERE decision IS NULL AND execution_id IN
                           (SELECT id FROM executions WHERE state IN ('running', 'paused', 'interrupted'))
                     ORDER BY requested_at LIMIT $1"
                ),
                &[&(limit.min(10_000) as i64)],
            )
            .await?;
        let gates = rows.iter().map(approval_row).collect();
        self.with_votes(&client, gates).await
    }
}
