//! `POST /hooks/{flow}/{trigger}`: a webhook delivery, verified on its raw
//! body before anything reads it. Unknown flows and triggers and bad
//! signatures get one and the same 404 (the reason goes to the deliveries
//! log and the server's log only); a repeated delivery id answers 200 with
//! the execution it started; filtered deliveries 204; values that do not
//! convert 422; accepted ones 202 with the execution. Every delivery is
//! recorded.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kflow_runtime::state::ExecutionState;
use kflow_runtime::store::{Claim, NewDelivery, Verdict};
use kflow_runtime::trigger::{self, Verdict as Bound};
use kflow_runtime::webhook::{self, Headers};
use serde_json::json;

use crate::error::ApiError;
use crate::launch::Started;
use crate::verify;
use crate::App;
use crate::{actions, identity};
use kflow_runtime::store::Role;

/// The largest body a delivery may have.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// The one answer to an unknown webhook and to a delivery that fails its
/// check: nothing tells them apart.
fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such webhook").into_response()
}

pub async fn receive(
    State(app): State<Arc<App>>,
    Path((flow, trigger)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let headers = webhook::headers(headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))));
    // Names from the URL are recorded: bounded, so a hostile URL cannot
    // bloat the log.
    let (flow, trigger) = (clip(&flow), clip(&trigger));
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let reason = "the body is larger than 25 MiB, or was cut off";
            app.record_unverified(&flow, &trigger, 413, reason).await;
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "a delivery's body is at most 25 MiB",
            )
            .into_response();
        }
    };
    deliver(&app, &flow, &trigger, &headers, body, None).await
}

/// `POST /api/v1/deliveries/{id}/replay` (admins): a recorded delivery
/// that passed its check, decided again as if it arrived now (its
/// `events`, `when` and inputs against the flow as it is served now). The
/// replay is a new delivery naming the one it replays; it is not a repeat.
pub async fn replay(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = identity::authenticate(&app, &headers).await?;
    replay_delivery(&app, &who, &id, &actions::peer(&addr)).await
}

/// Replays a recorded delivery on an admin's behalf, from `origin`.
pub async fn replay_delivery(
    app: &Arc<App>,
    who: &identity::Principal,
    id: &str,
    origin: &str,
) -> Result<Response, ApiError> {
    who.require(Role::Admin)?;
    let stored = app
        .store
        .delivery(&clip(id))
        .await
        .map_err(ApiError::history)?
        .ok_or_else(|| ApiError::not_found(format!("no delivery `{}`", clip(id))))?;
    let Some(body) = stored.body else {
        return Err(ApiError::conflict(format!(
            "delivery {} did not pass its check ({}): only verified deliveries are kept for replay",
            stored.delivery.id,
            stored.delivery.verdict.as_str()
        )));
    };
    // A replay of a replay replays the original.
    let original = stored.delivery.replay_of.clone().unwrap_or(stored.delivery.id.clone());
    let kept: Headers = stored
        .headers
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let _ = app
        .store
        .audit(
            &who.user,
            "replay",
            &original,
            origin,
            &json!({ "flow": stored.delivery.flow, "trigger": stored.delivery.trigger }),
        )
        .await;
    Ok(deliver(
        app,
        &stored.delivery.flow,
        &stored.delivery.trigger,
        &kept,
        Bytes::from(body),
        Some(&original),
    )
    .await)
}

/// Decides a delivery (also a replay of a recorded one: `replay_of`).
pub async fn deliver(
    app: &Arc<App>,
    flow_name: &str,
    trigger_name: &str,
    headers: &Headers,
    body: Bytes,
    replay_of: Option<&str>,
) -> Response {
    let found = {
        let flows = app.flows.read().await;
        flows.get(flow_name).cloned()
    };
    let Some(flow) = found else {
        app.record_unverified(
            flow_name,
            trigger_name,
            404,
            &format!("no flow `{flow_name}` is served"),
        )
        .await;
        return not_found();
    };
    let Some(t) = flow.plan.trigger(trigger_name).filter(|t| t.kind == "webhook").cloned() else {
        app.record_unverified(
            flow_name,
            trigger_name,
            404,
            &format!("flow `{flow_name}` has no webhook `{trigger_name}`"),
        )
        .await;
        return not_found();
    };
    let provider = t.provider.clone().unwrap_or_default();
    // A replay was verified when it first arrived.
    if replay_of.is_none() {
        let secret = match (&flow.trigger_secrets, &t.secret) {
            (Ok(secrets), Some(name)) => secrets.get(name).cloned(),
            _ => None,
        };
        let Some(secret) = secret else {
            let why = match &flow.trigger_secrets {
                Err(e) => format!("the webhook's secret cannot be read: {e}"),
                Ok(_) => "the webhook has no secret".to_string(),
            };
            app.record_unverified(flow_name, trigger_name, 404, &why).await;
            return not_found();
        };
        let now = jiff::Timestamp::now().as_second();
        if let Err(why) = verify::verify(&provider, secret.expose(), headers, &body, now) {
            app.record_unverified(flow_name, trigger_name, 404, &why).await;
            return not_found();
        }
    }
    let delivery_id = webhook::delivery_id(&provider, headers).map(|d| clip(&d));
    let kept_headers = json!(headers
        .iter()
        .filter(|(k, _)| !webhook::is_credential_header(k))
        .collect::<std::collections::BTreeMap<_, _>>());
    let claim = app
        .store
        .claim_delivery(&NewDelivery {
            flow: flow_name,
            trigger: trigger_name,
            delivery: delivery_id.as_deref(),
            status: 0,
            verdict: Verdict::Pending,
            reason: None,
            headers: Some(&kept_headers),
            body: Some(&body),
            replay_of,
            execution: None,
        })
        .await;
    let id = match claim {
        Ok(Claim::New(id)) => id,
        Ok(Claim::Repeat(earlier)) => {
            app.metrics.delivery(Verdict::Duplicate.as_str());
            let _ = app
                .store
                .record_delivery(&NewDelivery {
                    flow: flow_name,
                    trigger: trigger_name,
                    delivery: delivery_id.as_deref(),
                    status: 200,
                    verdict: Verdict::Duplicate,
                    reason: Some(&format!("a repeat of {}", earlier.id)),
                    headers: None,
                    body: None,
                    replay_of: None,
                    execution: earlier.execution.as_deref(),
                })
                .await;
            return (
                StatusCode::OK,
                Json(json!({
                    "execution": earlier.execution,
                    "url": earlier.execution.as_deref().map(|e| app.execution_url(e)),
                    "duplicate_of": earlier.id,
                })),
            )
                .into_response();
        }
        Err(e) => {
            eprintln!("kflow serve: the history: {e}");
            return ApiError::internal("the history cannot record the delivery").into_response();
        }
    };
    let fields = match webhook::fields(&provider, headers, &body) {
        Ok(f) => f,
        Err(why) => return settle(app, &id, 422, Verdict::Refused, Some(&why), None).await,
    };
    match trigger::bind(&flow.plan, &t, &fields) {
        Bound::Filtered(why) => settle(app, &id, 204, Verdict::Filtered, Some(&why), None).await,
        Bound::Refused(why) => settle(app, &id, 422, Verdict::Refused, Some(&why), None).await,
        Bound::Start(inputs) => {
            let record = json!({
                "name": trigger_name, "kind": "webhook",
                "delivery": delivery_id.clone().unwrap_or_default(), "delivery_record": id,
            });
            match app.launcher.start(&flow, inputs, record).await {
                Ok(started) => {
                    let why = match started.state {
                        ExecutionState::Running => None,
                        other => Some(format!("the execution is {other}")),
                    };
                    settle(app, &id, 202, Verdict::Accepted, why.as_deref(), Some(&started)).await
                }
                Err(why) => {
                    eprintln!("kflow serve: {flow_name}: cannot start: {why}");
                    settle(app, &id, 500, Verdict::Failed, Some(&why), None).await
                }
            }
        }
    }
}

/// Records a claimed delivery's verdict and answers it.
async fn settle(
    app: &Arc<App>,
    id: &str,
    status: u16,
    verdict: Verdict,
    reason: Option<&str>,
    started: Option<&Started>,
) -> Response {
    let execution = started.map(|s| s.id.as_str());
    app.metrics.delivery(verdict.as_str());
    if started.is_some() {
        app.metrics.started("webhook");
    }
    if let Err(e) = app.store.settle_delivery(id, status, verdict, reason, execution).await {
        eprintln!("kflow serve: the history: {e}");
    }
    match (verdict, started) {
        // Running, queued behind its concurrency key, or skipped by it.
        (Verdict::Accepted, Some(s)) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "execution": s.id, "state": s.state, "url": app.execution_url(&s.id), "delivery": id,
            })),
        )
            .into_response(),
        (Verdict::Filtered, _) => StatusCode::NO_CONTENT.into_response(),
        (Verdict::Refused, _) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            reason.unwrap_or("the delivery's values do not make the flow's inputs"),
        )
        .into_response(),
        _ => ApiError::internal("the execution could not be started; see the deliveries log").into_response(),
    }
}

/// At most 200 characters of a name from the URL.
fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}
