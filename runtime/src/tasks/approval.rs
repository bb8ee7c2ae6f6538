//! `approval`: the execution pauses until a named reviewer decides from any
//! shell (`kflow approve` / `kflow reject`, which write the decision into the
//! history). The request and its deadline are stored once, so a resumed
//! gate keeps both, and expiry fails the gate — it never approves.

use std::time::Duration;

use super::{string_list, text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::store::{Approval, GateRequest};
use crate::value::Value;

/// How often the gate looks for a decision.
const POLL: Duration = Duration::from_millis(250);

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

/// RFC 3339 with the local offset.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn expired(deadline: &Option<String>) -> bool {
    deadline
        .as_deref()
        .and_then(|d| d.parse::<jiff::Timestamp>().ok())
        .is_some_and(|d| jiff::Timestamp::now() >= d)
}

/// A history call's error, as the gate's failure.
fn history(e: crate::store::StoreError) -> TaskError {
    failed(format!("the history: {e}"))
}

pub async fn approval(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let summary = text(props, "summary").unwrap_or_default();
    let reviewers = string_list(props, "reviewers").unwrap_or_default();
    let deadline = match props.get("timeout") {
        Some(Value::Duration(ms)) => {
            let at = jiff::Timestamp::now().as_millisecond().saturating_add(*ms as i64);
            jiff::Timestamp::from_millisecond(at).ok().map(rfc3339)
        }
        _ => None,
    };
    let (exec, task) = (ctx.execution.to_string(), ctx.task.to_string());
    let required = match props.get("required") {
        Some(Value::Int(n)) if (1..=1000).contains(n) => *n as u32,
        Some(Value::Int(n)) => {
            return Err(TaskError::Invalid(format!(
                "`required` is {n}: a gate needs between 1 and 1000 approvals"
            )))
        }
        _ => 1,
    };
    if !reviewers.is_empty() && required as usize > reviewers.len() {
        return Err(TaskError::Invalid(format!(
            "`required` is {required} but only {} reviewer(s) may decide: the gate could never be approved",
            reviewers.len()
        )));
    }
    let evidence: serde_json::Map<String, serde_json::Value> = match props.get("evidence") {
        Some(Value::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), serde_json::Value::String(v.to_text()?))))
            .collect(),
        _ => Default::default(),
    };
    let request = GateRequest {
        summary,
        reviewers,
        deadline,
        required,
        prevent_self: matches!(props.get("prevent_self_approval"), Some(Value::Bool(true))),
        subject: match props.get("subject") {
            Some(Value::Pinned(p)) => Some(p.clone()),
            _ => None,
        },
        evidence: serde_json::Value::Object(evidence),
    };
    let mut gate: Approval = ctx
        .store
        .request_approval(&exec, &task, &request)
        .await
        .map_err(history)?;
    let who = if gate.reviewers.is_empty() {
        "anyone".to_string()
    } else {
        gate.reviewers.join(", ")
    };
    // A gate decided while the execution was paused is not waited on.
    if gate.decision.is_none() && !expired(&gate.deadline) {
        ctx.log(Stream::Info, &format!("waiting for approval: {}", gate.summary));
        let st = &ctx.state_hint;
        ctx.log(
            Stream::Info,
            &format!(
                "decide with `kflow approve {exec} --as NAME{st}` or `kflow reject {exec} --as NAME{st}` (reviewers: {who}{})",
                gate.deadline
                    .as_deref()
                    .map(|d| format!("; expires {d}"))
                    .unwrap_or_default()
            ),
        );
    }
    loop {
        if let Some(d) = gate.decision.clone() {
            ctx.store.unpause(&exec).await.map_err(history)?;
            if !d.approved {
                let mut msg = format!("rejected by {} at {}", d.by, d.at);
                if !d.comment.is_empty() {
                    msg.push_str(&format!(": {}", d.comment));
                }
                // A decision is final.
                return Err(TaskError::Invalid(msg));
            }
            ctx.log(Stream::Info, &format!("approved by {} at {}", d.by, d.at));
            let mut approvers: Vec<Value> = gate
                .votes
                .iter()
                .filter(|v| v.approved)
                .map(|v| Value::Str(v.user.clone()))
                .collect();
            if approvers.is_empty() {
                approvers.push(Value::Str(d.by.clone()));
            }
            return Ok(Outputs::from([
                ("by".to_string(), Value::Str(d.by)),
                ("at".to_string(), Value::Str(d.at)),
                ("comment".to_string(), Value::Str(d.comment)),
                ("approvers".to_string(), Value::List(approvers)),
                (
                    "subject".to_string(),
                    gate.subject.clone().map_or(Value::Missing, Value::Pinned),
                ),
            ]));
        }
        if expired(&gate.deadline) {
            ctx.store.unpause(&exec).await.map_err(history)?;
            return Err(failed(format!(
                "no decision before {}: the gate fails (expiry never approves)",
                gate.deadline.clone().unwrap_or_default()
            )));
        }
        if ctx.detach {
            return Err(TaskError::Paused);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
        }
        if let Some(a) = ctx.store.approval(&exec, &task).await.map_err(history)? {
            gate = a;
        }
    }
}
