//! The read side of the HTTP API (`/api/v1`): flows with their triggers,
//! next schedule times, webhook URLs and the diagnostics of files that did
//! not load; executions; deliveries. JSON in, JSON out; errors as
//! [`ApiError`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use kflow_runtime::schedule::Schedule;
use kflow_runtime::store::{is_digest, Delivery, ExecutionFilter, ExecutionRow, Role, TaskRow};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, Query};
use crate::identity;
use crate::App;

/// Most items one page of a list holds.
const MAX_PAGE: usize = 1_000;

pub async fn healthz(State(app): State<Arc<App>>) -> Json<Value> {
    let flows = app.flows.read().await.flows.len();
    Json(json!({ "status": "ok", "flows": flows, "running": app.launcher.running.count() }))
}

pub async fn flows(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Viewer)?;
    let loaded = app.flows.read().await;
    let now = jiff::Timestamp::now();
    let flows: Vec<Value> = loaded
        .flows
        .values()
        .map(|f| {
            let plan = &f.plan;
            let triggers: Vec<Value> = plan
                .triggers
                .iter()
                .zip(plan.trigger_names())
                .map(|(t, name)| {
                    let mut v = json!({ "name": name, "kind": t.kind, "value": t.value });
                    match t.kind.as_str() {
                        "webhook" => {
                            v["provider"] = json!(t.provider);
                            v["url"] = json!(app.url(&format!("/hooks/{}/{}", plan.flow, name)));
                            v["events"] = json!(t.events);
                        }
                        "schedule" => {
                            v["timezone"] = json!(t.timezone.as_deref().unwrap_or("UTC"));
                            v["catchup"] = json!(t.catchup.as_deref().unwrap_or("last"));
                            if let Ok(s) = Schedule::new(&t.value, t.timezone.as_deref()) {
                                let next: Vec<String> = s.upcoming(now, 3).iter().map(|t| t.to_string()).collect();
                                v["next"] = json!(next);
                            }
                        }
                        _ => {}
                    }
                    v
                })
                .collect();
            let problems: Vec<String> = match &f.trigger_secrets {
                Err(e) => vec![format!("webhooks cannot verify deliveries: {e}")],
                Ok(_) => Vec::new(),
            };
            json!({
                "name": plan.flow, "file": f.file, "doc": plan.doc, "triggers": triggers,
                "inputs": plan.inputs.iter().map(|i| json!({ "name": i.name, "type": i.ty })).collect::<Vec<_>>(),
                "problems": problems,
            })
        })
        .collect();
    let broken: Vec<Value> = loaded
        .broken
        .iter()
        .map(|b| json!({ "file": b.file, "diagnostics": b.report, "serving": b.serving }))
        .collect();
    Ok(Json(json!({ "flows": flows, "broken": broken })))
}

#[derive(Deserialize)]
pub struct ListQuery {
    flow: Option<String>,
    state: Option<String>,
    trigger: Option<String>,
    /// A digest (`sha256:…`) one of their tasks produced or handled.
    digest: Option<String>,
    limit: Option<usize>,
    /// The id of the last execution of the previous page.
    cursor: Option<String>,
}

fn execution_json(e: &ExecutionRow, app: &App) -> Value {
    json!({
        "id": e.id, "flow": e.flow, "file": e.file, "state": e.state,
        "started_at": e.started_at, "ended_at": e.ended_at,
        "trigger": e.trigger, "inputs": e.inputs, "outputs": e.outputs, "failures": e.failures,
        "rerun_of": e.rerun_of, "url": app.execution_url(&e.id),
    })
}

fn task_json(t: &TaskRow) -> Value {
    json!({
        "task": t.task, "kind": t.kind, "state": t.state, "started_at": t.started_at,
        "ended_at": t.ended_at, "attempts": t.attempts, "error": t.error, "outputs": t.outputs,
    })
}

pub async fn executions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Viewer)?;
    let state = match &q.state {
        Some(s) => Some(s.parse::<kflow_runtime::state::ExecutionState>().map_err(|_| {
            ApiError::bad_request(format!(
                "unknown state `{}`: one of {}",
                s.chars().take(40).collect::<String>(),
                kflow_runtime::state::ExecutionState::names().join(", ")
            ))
        })?),
        None => None,
    };
    if let Some(d) = &q.digest {
        digest_param(d)?;
    }
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let filter = ExecutionFilter {
        flow: q.flow.clone(),
        state,
        trigger: q.trigger.clone(),
        digest: q.digest.clone(),
    };
    let (page, more) = app
        .store
        .page(&filter, limit, q.cursor.as_deref())
        .await
        .map_err(ApiError::history)?;
    Ok(Json(json!({
        "executions": page.iter().map(|e| execution_json(e, &app)).collect::<Vec<_>>(),
        "next_cursor": if more { page.last().map(|e| e.id.clone()) } else { None },
    })))
}

pub async fn execution(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Viewer)?;
    if id.len() > 64 || id == "latest" {
        return Err(ApiError::not_found("no such execution"));
    }
    let found = app.store.show(&id).await;
    let (exec, tasks) = match found {
        Ok(Some(x)) => x,
        Ok(None) => return Err(ApiError::not_found(format!("no execution `{id}`"))),
        // A prefix matching several.
        Err(e) if e.0.contains("matches") => return Err(ApiError::bad_request(e.0)),
        Err(e) => return Err(ApiError::history(e)),
    };
    let mut v = execution_json(&exec, &app);
    v["tasks"] = json!(tasks.iter().map(task_json).collect::<Vec<_>>());
    v["artifacts"] = json!(crate::artifacts::list(&app, &exec.id));
    let gates = app.store.approvals(&exec.id).await.map_err(ApiError::history)?;
    v["approvals"] = json!(gates
        .iter()
        .map(|g| {
            let d = g.decision.as_ref();
            json!({
                "task": g.task, "summary": g.summary, "reviewers": g.reviewers,
                "requested_at": g.requested_at, "deadline": g.deadline,
                "decision": d.map(|d| if d.approved { "approved" } else { "rejected" }),
                "by": d.map(|d| &d.by), "at": d.map(|d| &d.at), "comment": d.map(|d| &d.comment),
                "required": g.required, "prevent_self_approval": g.prevent_self,
                "subject": g.subject, "evidence": g.evidence,
                "votes": g.votes.iter().map(|v| json!({
                    "user": v.user, "approved": v.approved, "at": v.at, "comment": v.comment,
                })).collect::<Vec<_>>(),
            })
        })
        .collect::<Vec<_>>());
    Ok(Json(v))
}

/// A digest parameter, or a 400 saying what one looks like.
fn digest_param(d: &str) -> Result<(), ApiError> {
    if is_digest(d) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{}` is not a digest: `sha256:` and 64 lower-case hex digits",
            d.chars().take(80).collect::<String>()
        )))
    }
}

/// `GET /api/v1/digests/{digest}`: every task run that built, pushed,
/// scanned, signed, copied, verified or approved a digest, newest first,
/// and every repository and tag it went to.
pub async fn digest(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Json<Value>, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Viewer)?;
    digest_param(&digest)?;
    let uses = app
        .store
        .digest_uses(&digest, MAX_PAGE)
        .await
        .map_err(ApiError::history)?;
    let (repositories, tags) = kflow_runtime::store::places(&uses);
    Ok(Json(json!({
        "digest": digest,
        "repositories": repositories,
        "tags": tags,
        "uses": uses.iter().map(|u| json!({
            "execution": u.execution, "flow": u.flow, "task": u.task, "kind": u.kind,
            "role": u.role(), "output": u.output, "repository": u.repository, "tag": u.tag,
            "at": u.at, "url": app.execution_url(&u.execution),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    limit: Option<usize>,
    before: Option<String>,
}

fn delivery_json(d: &Delivery) -> Value {
    json!({
        "id": d.id, "flow": d.flow, "trigger": d.trigger, "delivery": d.delivery,
        "received_at": d.received_at, "status": d.status, "verdict": d.verdict.as_str(),
        "reason": d.reason, "execution": d.execution, "replay_of": d.replay_of,
    })
}

pub async fn deliveries(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Admin)?;
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let rows = app
        .store
        .deliveries(limit, q.before.as_deref())
        .await
        .map_err(ApiError::history)?;
    Ok(Json(
        json!({ "deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>() }),
    ))
}
