//! The web UI: server-rendered HTML (maud, escaped by construction) with a
//! small script for live parts, its assets embedded in the binary. It uses
//! the same actions and permissions as the API: a page shows a button only
//! to a user the action would accept, and the action refuses the others
//! anyway.
//!
//! Sign-in is a form that sets a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` over HTTPS) holding a session token like the
//! API's login answers. Every form carries a CSRF token derived from the
//! session (a keyed hash: nothing stored, and no page of another session or
//! site can know it); a form without the right one is refused. Behind a
//! trusted proxy (`--trust-proxy-header`) the proxy's user is signed in.

mod dag;
mod layout;
mod pages;
mod timeline;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;

use crate::actions;
use crate::error::ApiError;
use crate::identity::{self, Principal, SESSION_COOKIE};
use crate::App;

pub use layout::{CSS, JS};

/// The cookie pairing the sign-in form with its CSRF token.
const LOGIN_COOKIE: &str = "kflow_login";

/// The largest form body.
const MAX_FORM: usize = 64 * 1024;

/// Who is looking at a page, and the CSRF token their forms carry.
pub struct Ctx {
    pub who: Principal,
    pub csrf: String,
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/executions") }))
        .route("/assets/kflow.css", get(layout::css))
        .route("/assets/kflow.js", get(layout::js))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/executions", get(pages::executions))
        .route("/executions/{id}", get(pages::execution))
        .route("/executions/{id}/cancel", post(cancel))
        .route("/executions/{id}/rerun", post(rerun))
        .route("/executions/{id}/resume", post(resume))
        .route("/executions/{id}/approvals/{task}", post(decide))
        .route("/approvals", get(pages::approvals))
        .route("/flows", get(pages::flows))
        .route("/flows/{flow}", get(pages::flow))
        .route("/digests/{digest}", get(pages::digest))
        .route("/deliveries", get(pages::deliveries))
        .route("/deliveries/{id}/replay", post(replay))
        .route("/audit", get(pages::audit))
        .layer(DefaultBodyLimit::max(MAX_FORM))
}

/// The signed-in user of a request: the session cookie, else the trusted
/// proxy's user.
pub async fn ctx(app: &App, headers: &HeaderMap) -> Option<Ctx> {
    if let Some(secret) = identity::cookie(headers, SESSION_COOKIE) {
        if let Ok(who) = identity::token_principal(&*app.store, secret).await {
            let csrf = identity::csrf_token(&app.csrf_key, secret);
            return Some(Ctx { who, csrf });
        }
    }
    let header = app.proxy_user_header.as_ref()?;
    headers.get(header)?;
    let who = identity::authenticate(app, headers).await.ok()?;
    let csrf = identity::csrf_token(&app.csrf_key, &format!("proxy\0{}", who.user));
    Some(Ctx { who, csrf })
}

/// To the sign-in form, coming back here after.
fn to_login(uri: &Uri) -> Response {
    let next = uri.path_and_query().map_or("/executions", |p| p.as_str());
    Redirect::to(&format!("/login?next={}", encode(next))).into_response()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after signing in: a path of this server only.
fn local(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.len() < 2048 => n,
        _ => "/executions",
    }
}

/// Whether cookies should be `Secure`: the server or its public URL is HTTPS.
fn secure(app: &App) -> bool {
    app.base_url.starts_with("https://")
}

fn set_cookie(r: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie(app: &App, name: &str, value: &str, max_age: i64) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure(app) { "; Secure" } else { "" }
    )
}

async fn login_form(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if ctx(&app, &headers).await.is_some() {
        return Redirect::to(local(q.get("next").map(String::as_str))).into_response();
    }
    login_page(&app, q.get("next").map(String::as_str), None, StatusCode::OK)
}

fn login_page(app: &App, next: Option<&str>, error: Option<&str>, status: StatusCode) -> Response {
    let nonce = identity::new_token().hash;
    let csrf = identity::csrf_token(&app.csrf_key, &format!("login\0{nonce}"));
    let form = html! {
        form.login method="post" action="/login" {
            h1 { "Sign in to kflow" }
            @if let Some(e) = error { p.flash.error role="alert" { (e) } }
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(local(next));
            label { "User name" input name="username" autocomplete="username" required autofocus; }
            label { "Password" input name="password" type="password" autocomplete="current-password" required; }
            button.primary type="submit" { "Sign in" }
        }
    };
    let mut r = layout::bare_page(status, "Sign in", form);
    set_cookie(&mut r, cookie(app, LOGIN_COOKIE, &nonce, 3600));
    r
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let next = f.get("next").map(String::as_str);
    let nonce = identity::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    let expected = identity::csrf_token(&app.csrf_key, &format!("login\0{nonce}"));
    if nonce.is_empty() || !same(f.get("csrf").map_or("", String::as_str), &expected) {
        return login_page(
            &app,
            next,
            Some("The form expired: sign in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let (Some(name), Some(password)) = (f.get("username"), f.get("password")) else {
        return login_page(
            &app,
            next,
            Some("Give a user name and a password."),
            StatusCode::BAD_REQUEST,
        );
    };
    match actions::sign_in(&app, name, password.clone(), &addr).await {
        Ok(session) => {
            let mut r = Redirect::to(local(next)).into_response();
            set_cookie(&mut r, cookie(&app, SESSION_COOKIE, &session.token, 12 * 3600));
            set_cookie(&mut r, cookie(&app, LOGIN_COOKIE, "", 0));
            r
        }
        Err(e) => login_page(&app, next, Some(&e.message), e.status),
    }
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if let Some(cx) = ctx(&app, &headers).await {
        if !same(f.get("csrf").map_or("", String::as_str), &cx.csrf) {
            return layout::error_page(Some(&cx), StatusCode::FORBIDDEN, FORGED);
        }
        if identity::cookie(&headers, SESSION_COOKIE).is_some() {
            let _ = app.store.revoke_token(&cx.who.token).await;
        }
    }
    let mut r = Redirect::to("/login").into_response();
    set_cookie(&mut r, cookie(&app, SESSION_COOKIE, "", 0));
    r
}

const FORGED: &str = "This form has no valid CSRF token (it is stale, or was not sent by this server's page): nothing was done. Reload the page and try again.";

/// Constant-time equality of two tokens.
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A form's signed-in user with a valid CSRF token, or the response that
/// refuses it.
async fn form_ctx(app: &App, headers: &HeaderMap, f: &HashMap<String, String>) -> Result<Ctx, Response> {
    let Some(cx) = ctx(app, headers).await else {
        return Err(layout::error_page(None, StatusCode::UNAUTHORIZED, "Sign in first."));
    };
    if !same(f.get("csrf").map_or("", String::as_str), &cx.csrf) {
        return Err(layout::error_page(Some(&cx), StatusCode::FORBIDDEN, FORGED));
    }
    Ok(cx)
}

/// After an action: back to the page, or the action's refusal.
fn done(cx: &Ctx, result: Result<String, ApiError>) -> Response {
    match result {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => layout::error_page(Some(cx), e.status, &e.message),
    }
}

async fn cancel(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let cx = match form_ctx(&app, &headers, &f).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let r = actions::cancel_execution(&app, &cx.who, &id, &actions::peer(&addr)).await;
    done(&cx, r.map(|_| format!("/executions/{id}")))
}

async fn rerun(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let cx = match form_ctx(&app, &headers, &f).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let from_failed = f.get("from").is_some_and(|v| v == "failed");
    let r = actions::rerun_execution(&app, &cx.who, &id, from_failed, &actions::peer(&addr)).await;
    done(
        &cx,
        r.map(|v| format!("/executions/{}", v["execution"].as_str().unwrap_or(&id))),
    )
}

async fn resume(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let cx = match form_ctx(&app, &headers, &f).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let r = actions::resume_execution(&app, &cx.who, &id, &actions::peer(&addr)).await;
    done(&cx, r.map(|_| format!("/executions/{id}")))
}

async fn decide(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, task)): Path<(String, String)>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let cx = match form_ctx(&app, &headers, &f).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let decision = f.get("decision").map_or("", String::as_str);
    let comment = f.get("comment").map_or("", String::as_str);
    let r = actions::decide_gate(&app, &cx.who, &id, &task, decision, comment, &actions::peer(&addr)).await;
    done(&cx, r.map(|_| format!("/executions/{id}#task-{task}")))
}

async fn replay(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let cx = match form_ctx(&app, &headers, &f).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    match crate::hooks::replay_delivery(&app, &cx.who, &id, &actions::peer(&addr)).await {
        Ok(_) => Redirect::to("/deliveries").into_response(),
        Err(e) => layout::error_page(Some(&cx), e.status, &e.message),
    }
}

/// A page's signed-in user, or the way to the sign-in form.
pub(crate) async fn page_ctx(app: &App, headers: &HeaderMap, uri: &Uri) -> Result<Ctx, Response> {
    ctx(app, headers).await.ok_or_else(|| to_login(uri))
}
