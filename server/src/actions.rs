//! The write side of the API, each action taken by an authenticated user
//! with the role it needs and written to the audit trail: logging in
//! (rate-limited), starting an execution, cancelling one, deciding a gate.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kflow_runtime::state::ExecutionState;
use kflow_runtime::store::{Decision, NewToken, Role, VoteOutcome};
use kflow_runtime::trigger;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::identity::{self, Principal};
use crate::App;

/// The largest JSON body an API request may have.
pub const MAX_JSON: usize = 1024 * 1024;

/// Failed logins counted per user name and per address.
pub const LOGIN_FAILURES: usize = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How long a login session lasts.
const SESSION: i64 = 12 * 3600;

/// Reads a JSON body of at most [`MAX_JSON`] bytes.
async fn json_body<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_JSON).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "a request body is at most 1 MiB",
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))
}

pub(crate) fn peer(addr: &SocketAddr) -> String {
    addr.ip().to_string()
}

/// Recent failed logins, by user name and by address.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// How long until `key` may try again, if it is locked out.
    fn locked(&self, key: &str) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let q = map.get_mut(key)?;
        while q.front().is_some_and(|t| t.elapsed() > LOGIN_WINDOW) {
            q.pop_front();
        }
        (q.len() >= LOGIN_FAILURES)
            .then(|| LOGIN_WINDOW.saturating_sub(q.front().map_or(Duration::ZERO, |t| t.elapsed())))
    }

    fn fail(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: an attacker cycling names cannot grow it without end.
        if map.len() > 100_000 {
            map.retain(|_, q| q.back().is_some_and(|t| t.elapsed() < LOGIN_WINDOW));
        }
        let q = map.entry(key.to_string()).or_default();
        q.push_back(Instant::now());
        if q.len() > LOGIN_FAILURES {
            q.pop_front();
        }
    }

    fn clear(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[derive(Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

/// `POST /api/v1/login`: a session token for a user with a password.
pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Body,
) -> Result<Response, ApiError> {
    let l: Login = json_body(body).await?;
    let s = sign_in(&app, &l.username, l.password, &addr).await?;
    Ok(
        Json(json!({ "token": s.token, "user": s.user, "role": s.role.as_str(), "expires_at": s.expires_at }))
            .into_response(),
    )
}

/// A session: a token for a user who gave their password.
pub struct Session {
    pub token: String,
    pub user: String,
    pub role: Role,
    pub expires_at: String,
}

/// Checks a password (rate-limited per name and per address, audited) and
/// opens a session for its user: for the API's login and the UI's form.
pub async fn sign_in(app: &App, name: &str, password: String, addr: &SocketAddr) -> Result<Session, ApiError> {
    let name: String = name.chars().take(100).collect();
    let (by_user, by_addr) = (format!("user:{name}"), format!("addr:{}", peer(addr)));
    if let Some(wait) = app.logins.locked(&by_user).or_else(|| app.logins.locked(&by_addr)) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many failed logins: try again in {}s", wait.as_secs() + 1),
        )
        .retry_after(wait.as_secs() + 1));
    }
    let user = app.store.user(&name).await.map_err(ApiError::history)?;
    // The hash is computed even for an unknown user, so timing does not
    // tell which names exist.
    let hash = user.as_ref().and_then(|u| u.password.clone()).unwrap_or_else(|| {
        DUMMY_HASH
            .get_or_init(|| identity::hash_password("-").unwrap_or_default())
            .clone()
    });
    let ok = tokio::task::spawn_blocking(move || identity::verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|u| ok && u.password.is_some()) else {
        app.metrics.login_failed();
        app.logins.fail(&by_user);
        app.logins.fail(&by_addr);
        let _ = app
            .store
            .audit(&name, "login_failed", &name, &peer(addr), &Value::Null)
            .await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong user name or password",
        ));
    };
    app.logins.clear(&by_user);
    let t = identity::new_token();
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(SESSION))
        .map_err(|e| ApiError::internal(e.to_string()))?
        .to_string();
    app.store
        .add_token(&NewToken {
            id: &t.id,
            user: &user.name,
            kind: "session",
            label: "login",
            hash: &t.hash,
            expires_at: Some(&expires),
        })
        .await
        .map_err(ApiError::history)?;
    let _ = app
        .store
        .audit(&user.name, "login", &user.name, &peer(addr), &Value::Null)
        .await;
    Ok(Session {
        token: t.secret,
        user: user.name,
        role: user.role,
        expires_at: expires,
    })
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[derive(Deserialize)]
pub struct Start {
    #[serde(default)]
    inputs: BTreeMap<String, Value>,
}

/// `POST /api/v1/flows/{flow}/executions`: a run started by hand, its
/// inputs typed as `--input` values are.
pub async fn start(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(flow_name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let who = identity::authenticate(&app, &headers).await?;
    who.require(Role::Operator)?;
    let req: Start = json_body(body).await?;
    let flow = app
        .flows
        .read()
        .await
        .get(&flow_name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no flow `{}` is served", clip(&flow_name))))?;
    let plan = &flow.plan;
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, v) in &req.inputs {
        match plan.inputs.iter().find(|i| &i.name == name) {
            None => errors.push(format!("flow `{}` has no input `{}`", plan.flow, clip(name))),
            Some(decl) => match trigger::convert(trigger::from_json(v), &decl.ty) {
                Ok(v) => {
                    values.insert(name.clone(), v);
                }
                Err(e) => errors.push(format!("input `{name}` (type `{}`): {e}", decl.ty)),
            },
        }
    }
    for decl in &plan.inputs {
        if !values.contains_key(&decl.name) && !req.inputs.contains_key(&decl.name) {
            match kflow_runtime::inputs::default_value(decl) {
                Ok(v) => {
                    values.insert(decl.name.clone(), v);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_inputs",
            errors.join("; "),
        ));
    }
    let record = json!({ "name": "manual", "kind": "manual", "by": who.user });
    let started = app
        .launcher
        .start(&flow, values, record)
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", e))?;
    app.metrics.started("manual");
    let _ = app
        .store
        .audit(
            &who.user,
            "start",
            &started.id,
            &peer(&addr),
            &json!({ "flow": plan.flow }),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "execution": started.id, "state": started.state, "url": app.execution_url(&started.id) })),
    )
        .into_response())
}

/// `POST /api/v1/executions/{id}/cancel`: stops an execution on purpose
/// (its `finally` blocks run); it is recorded `cancelled`.
pub async fn cancel(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = identity::authenticate(&app, &headers).await?;
    let done = cancel_execution(&app, &who, &id, &peer(&addr)).await?;
    Ok((StatusCode::ACCEPTED, Json(done)).into_response())
}

/// Cancels an execution on `who`'s behalf (operator), from `origin`.
pub async fn cancel_execution(app: &App, who: &Principal, id: &str, origin: &str) -> Result<Value, ApiError> {
    who.require(Role::Operator)?;
    let exec = find(app, id).await?;
    if exec.is_finished() {
        return Err(ApiError::conflict(format!(
            "execution {id} has ended ({exec}): nothing to cancel"
        )));
    }
    let why = format!("cancelled by {}", who.user);
    if !app.launcher.running.stop(id, &why) {
        // Not running here (paused without a process, queued, interrupted).
        app.launcher.dequeue(id).await;
        app.store
            .finish(id, ExecutionState::Cancelled, &json!([why]), &json!({}))
            .await
            .map_err(ApiError::history)?;
    }
    let _ = app.store.audit(&who.user, "cancel", id, origin, &Value::Null).await;
    Ok(json!({ "execution": id, "state": "cancelled" }))
}

#[derive(Deserialize)]
pub struct Decide {
    decision: String,
    #[serde(default)]
    comment: String,
}

/// The longest approval comment kept.
const MAX_COMMENT: usize = 4096;

/// `POST /api/v1/executions/{id}/approvals/{task}`: an authenticated
/// user's decision on a gate, if the gate lets them decide.
pub async fn decide(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((id, task)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let who: Principal = identity::authenticate(&app, &headers).await?;
    who.require(Role::Approver)?;
    let d: Decide = json_body(body).await?;
    let done = decide_gate(&app, &who, &id, &task, &d.decision, &d.comment, &peer(&addr)).await?;
    Ok(Json(done).into_response())
}

/// `who`'s decision (`approve` or `reject`) on a gate, if the gate lets
/// them decide, from `origin`.
pub async fn decide_gate(
    app: &App,
    who: &Principal,
    id: &str,
    task: &str,
    decision: &str,
    comment: &str,
    origin: &str,
) -> Result<Value, ApiError> {
    who.require(Role::Approver)?;
    let approved = match decision {
        "approve" => true,
        "reject" => false,
        _ => return Err(ApiError::bad_request("`decision` is `approve` or `reject`")),
    };
    if comment.len() > MAX_COMMENT {
        return Err(ApiError::bad_request(format!(
            "a comment is at most {MAX_COMMENT} bytes"
        )));
    }
    find(app, id).await?;
    let gates = app.store.approvals(id).await.map_err(ApiError::history)?;
    let gate = gates
        .iter()
        .find(|g| g.task == task)
        .ok_or_else(|| ApiError::not_found(format!("execution {id} has no gate `{}` waiting", clip(task))))?;
    if let Err(why) = gate.may_decide(&who.user) {
        let conflict = gate.decision.is_some() || gate.votes.iter().any(|v| v.user == who.user);
        return Err(if conflict {
            ApiError::conflict(why)
        } else {
            ApiError::forbidden(why)
        });
    }
    let decision = Decision {
        approved,
        by: who.user.clone(),
        at: kflow_runtime::store::now(),
        comment: comment.to_string(),
        os_user: String::new(),
    };
    // Another reviewer may have decided it since it was read.
    let outcome = app
        .store
        .vote(id, task, &decision)
        .await
        .map_err(|e| ApiError::conflict(e.0))?;
    let action = if approved { "approve" } else { "reject" };
    let _ = app
        .store
        .audit(
            &who.user,
            action,
            &format!("{id}/{task}"),
            origin,
            &json!({ "comment": comment, "subject": gate.subject }),
        )
        .await;
    let (decided, have, need) = match outcome {
        VoteOutcome::Decided => (true, gate.votes.len() as u32 + u32::from(approved), gate.required),
        VoteOutcome::Counted { have, need } => (false, have, need),
    };
    Ok(json!({
        "execution": id, "task": task, "decision": action, "by": who.user,
        "decided": decided, "approvals": have, "required": need,
    }))
}

/// `POST /api/v1/executions/{id}/resume`: runs on an `interrupted` or
/// `paused` execution that no process runs, in this server.
pub async fn resume(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = identity::authenticate(&app, &headers).await?;
    let done = resume_execution(&app, &who, &id, &peer(&addr)).await?;
    Ok((StatusCode::ACCEPTED, Json(done)).into_response())
}

/// Runs on an interrupted or paused execution no process runs (operator).
pub async fn resume_execution(app: &App, who: &Principal, id: &str, origin: &str) -> Result<Value, ApiError> {
    who.require(Role::Operator)?;
    let state = find(app, id).await?;
    if !matches!(state, ExecutionState::Interrupted | ExecutionState::Paused) {
        return Err(ApiError::conflict(format!(
            "execution {id} is {state}: only interrupted or paused executions resume"
        )));
    }
    if app.launcher.running.is_running(id) || app.store.process_alive(id).await.map_err(ApiError::history)? {
        return Err(ApiError::conflict(format!(
            "execution {id} is still run by a process (a paused one goes on once decided)"
        )));
    }
    app.launcher
        .resume(id)
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_resume", e))?;
    let _ = app.store.audit(&who.user, "resume", id, origin, &Value::Null).await;
    Ok(json!({ "execution": id, "state": "running" }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rerun {
    /// Keep what succeeded and run the failed, skipped and unfinished tasks.
    #[serde(default)]
    from_failed: bool,
}

/// `POST /api/v1/executions/{id}/rerun`: a new execution of an ended one,
/// with its recorded plan and inputs; `{"from_failed": true}` keeps what
/// succeeded.
pub async fn rerun(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let who = identity::authenticate(&app, &headers).await?;
    who.require(Role::Operator)?;
    let bytes = axum::body::to_bytes(body, MAX_JSON)
        .await
        .map_err(|_| ApiError::bad_request("a request body is at most 1 MiB"))?;
    let req: Rerun = if bytes.iter().all(u8::is_ascii_whitespace) {
        Rerun::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))?
    };
    let done = rerun_execution(&app, &who, &id, req.from_failed, &peer(&addr)).await?;
    Ok((StatusCode::CREATED, Json(done)).into_response())
}

/// A new execution of an ended one (operator); `from_failed` keeps what
/// succeeded.
pub async fn rerun_execution(
    app: &App,
    who: &Principal,
    id: &str,
    from_failed: bool,
    origin: &str,
) -> Result<Value, ApiError> {
    who.require(Role::Operator)?;
    let state = find(app, id).await?;
    if !state.is_finished() && !matches!(state, ExecutionState::Interrupted) {
        return Err(ApiError::conflict(format!(
            "execution {id} is {state}: only an ended execution is rerun"
        )));
    }
    let record = json!({ "name": "rerun", "kind": "manual", "by": who.user, "rerun_of": id });
    let started = app
        .launcher
        .rerun(id, from_failed, record)
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_rerun", e))?;
    app.metrics.started("manual");
    let _ = app
        .store
        .audit(
            &who.user,
            "rerun",
            &started.id,
            origin,
            &json!({ "rerun_of": id, "from_failed": from_failed }),
        )
        .await;
    Ok(
        json!({ "execution": started.id, "state": started.state, "rerun_of": id, "url": app.execution_url(&started.id) }),
    )
}

/// The state of an execution, or a 404.
async fn find(app: &App, id: &str) -> Result<ExecutionState, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found("no such execution"));
    }
    match app.store.show(id).await {
        Ok(Some((e, _))) if e.id == id => Ok(e.state),
        Ok(_) => Err(ApiError::not_found(format!("no execution `{id}` (give the whole id)"))),
        Err(e) => Err(ApiError::history(e)),
    }
}

/// `GET /api/v1/audit` (admins).
pub async fn audit(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let who = identity::authenticate(&app, &headers).await?;
    who.require(Role::Admin)?;
    let rows = app.store.audit_log(200, None).await.map_err(ApiError::history)?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|a| {
            json!({ "seq": a.seq, "at": a.at, "actor": a.actor, "action": a.action,
                    "target": a.target, "from": a.origin, "detail": a.detail })
        })
        .collect();
    Ok(Json(json!({ "audit": rows })))
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}
