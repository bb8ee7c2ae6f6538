//! The frame of every page (navigation, the signed-in user, sign-out), the
//! embedded stylesheet and script, and small pieces pages share.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kflow_runtime::store::Role;
use maud::{html, Markup, DOCTYPE};

use super::Ctx;

pub const CSS: &str = include_str!("../../assets/kflow.css");
pub const JS: &str = include_str!("../../assets/kflow.js");

pub async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

pub async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// What the navigation marks as the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Executions,
    Approvals,
    Flows,
    Deliveries,
    Audit,
    None,
}

/// A whole page for a signed-in user.
pub fn page(cx: &Ctx, section: Section, title: &str, body: Markup) -> Response {
    page_with(cx, section, title, None, body)
}

/// A page whose `main` carries the URL of its live events.
pub fn page_with(cx: &Ctx, section: Section, title: &str, events: Option<&str>, body: Markup) -> Response {
    let link = |s: Section, href: &str, text: &str| {
        html! {
            a href=(href) aria-current=[(s == section).then_some("page")] { (text) }
        }
    };
    let doc = document(
        title,
        true,
        html! {
                header.top {
                    a.brand href="/executions" { "kflow" }
                    nav aria-label="main" {
                        (link(Section::Executions, "/executions", "Executions"))
                        (link(Section::Approvals, "/approvals", "Approvals"))
                        (link(Section::Flows, "/flows", "Flows"))
                        @if cx.who.role >= Role::Admin {
                            (link(Section::Deliveries, "/deliveries", "Deliveries"))
                            (link(Section::Audit, "/audit", "Audit"))
                        }
                    }
                    span.muted { (cx.who.user) " (" (cx.who.role.as_str()) ")" }
                    form method="post" action="/logout" {
                        (csrf(cx))
                        button type="submit" { "Sign out" }
                    }
                }
                main data-events=[events] { (body) }
        },
    );
    html_response(StatusCode::OK, doc)
}

/// A page without a signed-in user (sign-in, errors): no navigation, no
/// script.
pub fn bare_page(status: StatusCode, title: &str, main: Markup) -> Response {
    html_response(status, document(title, false, html! { main { (main) } }))
}

/// The document around a page's body: its head, with the script where the
/// page has live parts.
fn document(title: &str, script: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · kflow" }
                link rel="stylesheet" href="/assets/kflow.css";
                @if script { script src="/assets/kflow.js" defer {} }
            }
            body { (body) }
        }
    }
}

pub fn html_response(status: StatusCode, doc: Markup) -> Response {
    let mut r = (status, doc).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Scripts and styles from this server only; no framing; no referrer
    // carrying execution ids elsewhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The hidden CSRF field every form carries.
pub fn csrf(cx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(cx.csrf); }
}

/// A state as a coloured badge.
pub fn badge(state: &str) -> Markup {
    html! { span class=(format!("badge s-{state}")) { (state) } }
}

/// A time: the UTC instant as written, shown in the viewer's zone by the
/// script.
pub fn time(at: &str) -> Markup {
    html! { time datetime=(at) { (at) } }
}

/// A digest or pinned reference in full, with a copy button (script).
pub fn digest(d: &str) -> Markup {
    html! { code data-copy=(d) { (d) } }
}

/// Diagnostics as `kflow check` renders them (plain text, escaped).
pub fn pre(text: &str) -> Markup {
    html! { pre.logs { (text) } }
}

/// An error page with the API's message.
pub fn error_page(cx: Option<&Ctx>, status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        p.flash.error role="alert" { (message) }
        p { a href="/executions" { "Back to the executions" } }
    };
    match cx {
        Some(cx) => {
            let mut r = page(cx, Section::None, "Error", body);
            *r.status_mut() = status;
            r
        }
        None => bare_page(status, "Error", body),
    }
}
