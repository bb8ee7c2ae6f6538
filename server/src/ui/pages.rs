//! The pages: executions (filtered, paged, states refreshed live), one
//! execution (its graph, tasks, gates, logs, artifacts and actions), the
//! approvals inbox, flows, a digest's history, deliveries and the audit
//! trail for admins.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use kflow_compiler::ir::Plan;
use kflow_runtime::schedule::Schedule;
use kflow_runtime::state::ExecutionState;
use kflow_runtime::store::{is_digest, Approval, AttemptRow, ExecutionFilter, ExecutionRow, Role, TaskRow};
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{self, badge, csrf, digest as digest_text, page, page_with, time, Section};
use super::{dag, page_ctx, Ctx};
use crate::App;

/// Executions one list page shows.
const PAGE: usize = 50;

/// Log bytes an execution page renders itself; the rest streams.
const LOG_PAGE: u64 = 256 * 1024;

type Params = Query<HashMap<String, String>>;

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", super::encode(v))))
        .collect();
    parts.join("&")
}

fn history_error(cx: &Ctx, e: impl std::fmt::Display) -> Response {
    eprintln!("kflow serve: the history: {e}");
    layout::error_page(
        Some(cx),
        StatusCode::INTERNAL_SERVER_ERROR,
        "the history could not be read",
    )
}

pub async fn executions(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri, Query(q): Params) -> Response {
    let cx = match page_ctx(&app, &headers, &uri).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let (flow, state, trigger, digest_q, cursor) = (
        param(&q, "flow"),
        param(&q, "state"),
        param(&q, "trigger"),
        param(&q, "digest"),
        param(&q, "cursor"),
    );
    let parsed_state = state.and_then(|s| s.parse::<ExecutionState>().ok());
    if state.is_some() && parsed_state.is_none() || digest_q.is_some_and(|d| !is_digest(d)) {
        return layout::error_page(
            Some(&cx),
            StatusCode::BAD_REQUEST,
            "unknown state, or not a digest (`sha256:` and 64 hex digits)",
        );
    }
    let filter = ExecutionFilter {
        flow: flow.map(str::to_string),
        state: parsed_state,
        trigger: trigger.map(str::to_string),
        digest: digest_q.map(str::to_string),
    };
    let (rows, more) = match app.store.page(&filter, PAGE, cursor).await {
        Ok(x) => x,
        Err(e) => return history_error(&cx, e),
    };
    let flows: Vec<String> = app.flows.read().await.flows.keys().cloned().collect();
    let filters = [
        ("flow", flow),
        ("state", state),
        ("trigger", trigger),
        ("digest", digest_q),
    ];
    let live = format!(
        "/api/v1/executions?{}",
        query_string(&[&filters[..], &[("limit", Some(PAGE.to_string().as_str()))]].concat())
    );
    let next = more.then(|| rows.last().map(|e| e.id.clone())).flatten();
    let body = html! {
        h1 { "Executions" }
        form.filters method="get" action="/executions" {
            label { "Flow"
                select name="flow" {
                    option value="" { "any" }
                    @for f in &flows { option value=(f) selected[flow == Some(f.as_str())] { (f) } }
                }
            }
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in ExecutionState::names() { option value=(s) selected[state == Some(s)] { (s) } }
                }
            }
            label { "Trigger" input name="trigger" value=[trigger] size="12"; }
            label { "Digest" input name="digest" value=[digest_q] placeholder="sha256:…" size="30"; }
            button type="submit" { "Filter" }
        }
        table data-live=(live) data-first=(cursor.is_none()) {
            thead { tr { th { "Execution" } th { "Flow" } th { "State" } th { "Trigger" } th { "Started" } th { "Ended" } } }
            tbody {
                @for e in &rows { (execution_row(e)) }
            }
        }
        @if rows.is_empty() {
            p.muted #no-executions { "No executions" @if filters.iter().any(|(_, v)| v.is_some()) { " match these filters" } "." }
        }
        @if let Some(next) = next {
            p.pager { a href=(format!("/executions?{}", query_string(&[&filters[..], &[("cursor", Some(next.as_str()))]].concat()))) { "Older executions →" } }
        }
    };
    page(&cx, Section::Executions, "Executions", body)
}

fn trigger_text(t: &Value) -> String {
    match t["kind"].as_str() {
        None => "by hand".to_string(),
        Some("manual") => format!("by {}", t["by"].as_str().unwrap_or("someone")),
        Some(kind) => format!("{kind} {}", t["name"].as_str().unwrap_or("")),
    }
}

fn execution_row(e: &ExecutionRow) -> Markup {
    let state = e.state.to_string();
    html! {
        tr data-id=(e.id) {
            td { a href=(format!("/executions/{}", e.id)) { code { (e.id) } } }
            td { a href=(format!("/flows/{}", e.flow)) { (e.flow) } }
            td { (badge(&state)) }
            td { (trigger_text(&e.trigger)) }
            td { (time(&e.started_at)) }
            td { @if let Some(t) = &e.ended_at { (time(t)) } }
        }
    }
}

pub async fn execution(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let cx = match page_ctx(&app, &headers, &uri).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let (exec, tasks) = match app.store.show(&id).await {
        Ok(Some((e, t))) if e.id == id => (e, t),
        Ok(_) => {
            return layout::error_page(
                Some(&cx),
                StatusCode::NOT_FOUND,
                &format!("no execution `{}`", clip(&id, 100)),
            )
        }
        Err(e) => return history_error(&cx, e),
    };
    let plan: Option<Plan> = match app.store.resumable(&id).await {
        Ok(Some(r)) => serde_json::from_value(r.plan).ok(),
        _ => None,
    };
    let gates = app.store.approvals(&id).await.unwrap_or_default();
    let attempts = app.store.attempts(&id).await.unwrap_or_default();
    let artifacts = crate::artifacts::list(&app, &id);
    let after: u64 = param(&q, "log_after").and_then(|v| v.parse().ok()).unwrap_or(0);
    let (lines, end) = app
        .store
        .read_log(&id, after, LOG_PAGE)
        .await
        .unwrap_or((Vec::new(), after));
    let state = exec.state.to_string();
    let runs: BTreeMap<String, String> = tasks.iter().map(|t| (t.task.clone(), t.state.to_string())).collect();
    let operator = cx.who.role >= Role::Operator;
    // As the resume action decides: not while a process still runs it.
    let resumable = match exec.state {
        ExecutionState::Interrupted => true,
        ExecutionState::Paused => {
            !app.launcher.running.is_running(&id) && !app.store.process_alive(&id).await.unwrap_or(true)
        }
        _ => false,
    };
    let scans = scan_counts(&tasks);
    let events = format!("/api/v1/executions/{id}/events?after={end}");
    let body = html! {
        h1 { "Execution " code { (exec.id) } " " span class=(format!("badge s-{state}")) data-execution-state { (state) } }
        dl.facts {
            dt { "Flow" } dd { a href=(format!("/flows/{}", exec.flow)) { (exec.flow) } }
            dt { "Started" } dd { (time(&exec.started_at)) " " (trigger_text(&exec.trigger)) }
            @if let Some(t) = &exec.ended_at { dt { "Ended" } dd { (time(t)) } }
            @if let Some(r) = &exec.rerun_of { dt { "Rerun of" } dd { a href=(format!("/executions/{r}")) { code { (r) } } } }
            @if let Some(inputs) = exec.inputs.as_object().filter(|o| !o.is_empty()) {
                dt { "Inputs" } dd { @for (k, v) in inputs { code { (k) " = " (value_text(v)) } " " } }
            }
            @if let Some(fails) = exec.failures.as_array().filter(|a| !a.is_empty()) {
                dt { "Failures" } dd { @for f in fails { div { (value_text(f)) } } }
            }
        }
        @if operator {
            div.actions {
                @if !exec.state.is_finished() {
                    (action_form(&cx, &format!("/executions/{id}/cancel"), "Cancel", "danger", None))
                }
                @if resumable {
                    (action_form(&cx, &format!("/executions/{id}/resume"), "Resume", "", None))
                }
                @if exec.state.is_finished() || exec.state == ExecutionState::Interrupted {
                    (action_form(&cx, &format!("/executions/{id}/rerun"), "Rerun", "", None))
                }
                @if matches!(exec.state, ExecutionState::Failed | ExecutionState::Interrupted) {
                    (action_form(&cx, &format!("/executions/{id}/rerun"), "Rerun failed tasks", "", Some(("from", "failed"))))
                }
            }
        }
        @for g in &gates { (gate(&cx, &app, g, &scans)) }
        @if let Some(plan) = &plan {
            h2 { "Graph" }
            div.dag { (dag::render(plan, &dag::node_states(plan, &runs))) }
        }
        @if !attempts.is_empty() {
            h2 { "Timeline" }
            div.dag { (super::timeline::render(&attempts, &exec.started_at, exec.ended_at.as_deref())) }
        }
        h2 { "Tasks" }
        table {
            thead { tr { th { "Task" } th { "Kind" } th { "State" } th { "Attempts" } th { "Started" } th { "Ended" } th { "Outputs / error" } } }
            tbody {
                @for t in &tasks { (task_row(t, &attempts)) }
            }
        }
        @if !artifacts.is_empty() {
            h2 { "Artifacts" }
            ul {
                @for a in &artifacts {
                    li {
                        a href=(relative_url(a["url"].as_str().unwrap_or(""))) download { (a["name"].as_str().unwrap_or("")) }
                        span.muted { " " (a["size"].as_u64().unwrap_or(0)) " bytes" }
                    }
                }
            }
        }
        h2 { "Logs" }
        p { label { "Search " input #log-search type="search" placeholder="filter lines"; } }
        div #logs .logs role="log" aria-live="polite" {
            @for l in &lines {
                span.line { span.task { (l.task) " | " } (l.text) "\n" }
            }
        }
        noscript {
            @if !lines.is_empty() {
                p.pager { a href=(format!("/executions/{id}?log_after={end}")) { "Next lines →" } }
            }
        }
    };
    page_with(
        &cx,
        Section::Executions,
        &format!("Execution {id}"),
        Some(&events),
        body,
    )
}

/// The path of a URL the API gave (links stay on the page's origin).
fn relative_url(url: &str) -> &str {
    url.find("/api/").map_or(url, |i| &url[i..])
}

fn action_form(cx: &Ctx, action: &str, label: &str, class: &str, extra: Option<(&str, &str)>) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(cx))
            @if let Some((k, v)) = extra { input type="hidden" name=(k) value=(v); }
            button type="submit" class=(class) { (label) }
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn task_row(t: &TaskRow, attempts: &[AttemptRow]) -> Markup {
    let failed: Vec<&AttemptRow> = attempts
        .iter()
        .filter(|a| a.task == t.task && a.error.is_some() && Some(&a.error) != Some(&t.error))
        .collect();
    let state = t.state.to_string();
    html! {
        tr id=(format!("task-{}", t.task)) {
            td { code { (t.task) } }
            td { (t.kind) }
            td { span class=(format!("badge s-{state}")) data-task=(t.task) { (state) } }
            td { (t.attempts) }
            td { @if let Some(s) = &t.started_at { (time(s)) } }
            td { @if let Some(s) = &t.ended_at { (time(s)) } }
            td {
                @if let Some(e) = &t.error { div.flash.error { (e) } }
                @for a in &failed { div.muted { "attempt " (a.attempt) " failed: " (a.error.as_deref().unwrap_or("")) } }
                @if let Some(o) = t.outputs.as_object() {
                    @for (k, v) in o {
                        div {
                            span.muted { (k) ": " }
                            @let text = value_text(v);
                            @if text.contains("sha256:") { (digest_text(&text)) } @else { code { (clip(&text, 300)) } }
                        }
                    }
                }
            }
        }
    }
}

/// Finding counts of the execution's scans, by task.
fn scan_counts(tasks: &[TaskRow]) -> Vec<(String, [i64; 4])> {
    tasks
        .iter()
        .filter(|t| t.kind == "trivy.scan" && t.outputs.is_object())
        .map(|t| {
            let n = |k: &str| t.outputs[k].as_i64().unwrap_or(0);
            (t.task.clone(), [n("critical"), n("high"), n("medium"), n("low")])
        })
        .collect()
}

/// A gate: what it asks, the subject, the evidence, the scans, the votes,
/// and — for a user it lets decide — Approve and Reject with a comment.
fn gate(cx: &Ctx, app: &App, g: &Approval, scans: &[(String, [i64; 4])]) -> Markup {
    let may = cx.who.role >= Role::Approver && g.may_decide(&cx.who.user).is_ok();
    let approvals = g.votes.iter().filter(|v| v.approved).count();
    let artifacts_dir = crate::artifacts::folder(app, &g.execution);
    html! {
        section.gate id=(format!("gate-{}", g.task)) aria-label=(format!("gate {}", g.task)) {
            h2 { "Approval " code { (g.task) } }
            p { (g.summary) }
            dl.facts {
                @if let Some(s) = &g.subject { dt { "Subject" } dd { (digest_text(s)) " " @if let Some(d) = s.split_once('@').map(|x| x.1) { a href=(format!("/digests/{d}")) { "history" } } } }
                @if let Some(ev) = g.evidence.as_object().filter(|o| !o.is_empty()) {
                    dt { "Evidence" }
                    dd {
                        @for (name, v) in ev {
                            @let text = value_text(v);
                            div { span.muted { (name) ": " } (evidence_link(&text, &artifacts_dir, &g.execution)) }
                        }
                    }
                }
                @if !scans.is_empty() {
                    dt { "Scans" }
                    dd { @for (task, c) in scans { div { code { (task) } ": " (c[0]) " critical, " (c[1]) " high, " (c[2]) " medium, " (c[3]) " low" } } }
                }
                @if !g.reviewers.is_empty() { dt { "Reviewers" } dd { (g.reviewers.join(", ")) } }
                dt { "Approvals" } dd { (approvals) " of " (g.required) " required"
                    @for v in &g.votes { div { (v.user) " " @if v.approved { "approved" } @else { "rejected" } " " (time(&v.at)) @if !v.comment.is_empty() { ": " (v.comment) } } }
                }
                @if let Some(d) = &g.deadline {
                    dt { "Expires" } dd { (time(d)) " " span data-deadline=(d) {} }
                }
                @if let Some(d) = &g.decision {
                    dt { "Decision" }
                    dd { span class=(if d.approved { "badge s-succeeded" } else { "badge s-rejected" }) { @if d.approved { "approved" } @else { "rejected" } }
                         " by " (d.by) " " (time(&d.at)) @if !d.comment.is_empty() { ": " (d.comment) } }
                }
            }
            @if may {
                form method="post" action=(format!("/executions/{}/approvals/{}", g.execution, g.task)) {
                    (csrf(cx))
                    label { "Comment" textarea name="comment" maxlength="4096" {} }
                    div.actions {
                        button.primary type="submit" name="decision" value="approve" { "Approve" }
                        button.danger type="submit" name="decision" value="reject" { "Reject" }
                    }
                }
            }
        }
    }
}

/// Evidence: a link when it is a URL or a file of the execution's
/// artifacts, else the text.
fn evidence_link(text: &str, artifacts: &std::path::Path, execution: &str) -> Markup {
    if text.starts_with("https://") || text.starts_with("http://") {
        return html! { a href=(text) rel="noreferrer" { (text) } };
    }
    if let Ok(rel) = std::path::Path::new(text).strip_prefix(artifacts) {
        let name = rel.display().to_string();
        return html! { a href=(crate::artifacts::path(execution, &name)) download { (name) } };
    }
    if text.contains("sha256:") {
        return digest_text(text);
    }
    html! { code { (text) } }
}

pub async fn approvals(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let cx = match page_ctx(&app, &headers, &uri).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let open = match app.store.open_approvals(500).await {
        Ok(o) => o,
        Err(e) => return history_error(&cx, e),
    };
    let mine: Vec<&Approval> = open
        .iter()
        .filter(|g| cx.who.role >= Role::Approver && g.may_decide(&cx.who.user).is_ok())
        .collect();
    // Each gate with the scan counts of its execution.
    let mut shown = Vec::new();
    for g in &mine {
        let tasks = match app.store.show(&g.execution).await {
            Ok(Some((_, tasks))) => tasks,
            _ => Vec::new(),
        };
        shown.push((*g, scan_counts(&tasks)));
    }
    let body = html! {
        h1 { "Approvals" }
        @if mine.is_empty() {
            p.muted { "No gate is waiting for your decision." }
        }
        @for (g, scans) in &shown {
            p { "Execution " a href=(format!("/executions/{}#gate-{}", g.execution, g.task)) { code { (g.execution) } } " asks since " (time(&g.requested_at)) }
            (gate(&cx, &app, g, scans))
        }
    };
    page(&cx, Section::Approvals, "Approvals", body)
}

pub async fn flows(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let cx = match page_ctx(&app, &headers, &uri).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let loaded = app.flows.read().await;
    let body = html! {
        h1 { "Flows" }
        table {
            thead { tr { th { "Flow" } th { "File" } th { "Triggers" } } }
            tbody {
                @for f in loaded.flows.values() {
                    tr {
                        td { a href=(format!("/flows/{}", f.plan.flow)) { (f.plan.flow) } }
                        td { code { (f.file.display()) } }
                        td { @for t in &f.plan.triggers { span.badge { (t.kind) } " " } }
                    }
                }
            }
        }
        @for b in &loaded.broken {
            h2 { "Not loaded: " code { (b.file.display()) } }
            @if !b.serving.is_empty() { p { "Still serving its last good version of " (b.serving.join(", ")) "." } }
            (layout::pre(&b.report))
        }
    };
    drop(loaded);
    page(&cx, Section::Flows, "Flows", body)
}

pub async fn flow(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri, Path(name): Path<String>) -> Response {
    let cx = match page_ctx(&app, &headers, &uri).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    let Some(f) = app.flows.read().await.get(&name).cloned() else {
        return layout::error_page(
            Some(&cx),
            StatusCode::NOT_FOUND,
            &format!("no flow `{}` is served", clip(&name, 100)),
        );
    };
    let filter = ExecutionFilter {
        flow: Some(name.clone()),
        ..Default::default()
    };
    let recent = app.store.page(&filter, 20, None).await.map(|p| p.0).unwrap_or_default();
    let now = jiff::Timestamp::now();
    let plan = &f.plan;
    let body = html! {
        h1 { "Flow " (plan.flow) }
        @if let Some(doc) = &plan.doc { p { (doc) } }
        dl.facts {
            dt { "File" } dd { code { (f.file.display()) } }
            @if !plan.inputs.is_empty() {
                dt { "Inputs" } dd { @for i in &plan.inputs { code { (i.name) ": " (i.ty) } " " } }
            }
            @if let Err(e) = &f.trigger_secrets { dt { "Problem" } dd.flash.error { "webhooks cannot verify deliveries: " (e) } }
        }
        h2 { "Triggers" }
        @if plan.triggers.is_empty() { p.muted { "None: started by hand only." } }
        ul {
            @for (t, tname) in plan.triggers.iter().zip(plan.trigger_names()) {
                li {
                    strong { (t.kind) " " (tname) }
                    @match t.kind.as_str() {
                        "webhook" => {
                            @let url = app.url(&format!("/hooks/{}/{}", plan.flow, tname));
                            " (" (t.provider.as_deref().unwrap_or("")) ") " code data-copy=(url) { (url) }
                        }
                        "schedule" => {
                            " " code { (t.value) } " in " (t.timezone.as_deref().unwrap_or("UTC")) ", next: "
                            @if let Ok(s) = Schedule::new(&t.value, t.timezone.as_deref()) {
                                @for at in s.upcoming(now, 3) { (time(&at.to_string())) " " }
                            }
                        }
                        _ => { " " code { (t.value) } }
                    }
                }
            }
        }
        h2 { "Recent executions" }
        table {
            tbody { @for e in &recent { (execution_row(e)) } }
        }
        p { a href=(format!("/executions?flow={}", super::encode(&plan.flow))) { "All executions of " (plan.flow) " →" } }
    };
    page(&cx, Section::Flows, &format!("Flow {name}"), body)
}

pub async fn digest(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri, Path(d): Path<String>) -> Response {
    let cx = match page_ctx(&app, &headers, &uri).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    if !is_digest(&d) {
        return layout::error_page(
            Some(&cx),
            StatusCode::BAD_REQUEST,
            "not a digest: `sha256:` and 64 lower-case hex digits",
        );
    }
    let uses = match app.store.digest_uses(&d, 1000).await {
        Ok(u) => u,
        Err(e) => return history_error(&cx, e),
    };
    let (repos, tags) = kflow_runtime::store::places(&uses);
    // One row a task run, naming every output of it that holds the digest.
    let mut runs: Vec<(&kflow_runtime::store::DigestUse, Vec<&str>)> = Vec::new();
    for u in &uses {
        match runs
            .iter_mut()
            .find(|(r, _)| r.execution == u.execution && r.task == u.task)
        {
            Some((_, outputs)) => outputs.push(&u.output),
            None => runs.push((u, vec![&u.output])),
        }
    }
    let body = html! {
        h1 { "Digest" }
        p { (digest_text(&d)) }
        @if uses.is_empty() { p.muted { "No execution of this history produced or handled this digest." } }
        @if !repos.is_empty() { h2 { "Repositories" } ul { @for r in &repos { li { code { (r) "@" (d) } } } } }
        @if !tags.is_empty() { h2 { "Tags" } ul { @for t in &tags { li { code { (t) } } } } }
        @if !uses.is_empty() {
            h2 { "Where it came from and went" }
            table {
                thead { tr { th { "When" } th { "What" } th { "Execution" } th { "Task" } th { "Output" } } }
                tbody {
                    @for (u, outputs) in &runs {
                        tr {
                            td { (time(&u.at)) }
                            td { span.badge { (u.role()) } }
                            td { a href=(format!("/executions/{}", u.execution)) { code { (u.execution) } } " " (u.flow) }
                            td { code { (u.task) } " (" (u.kind) ")" }
                            td { (outputs.join(", ")) @if let Some(t) = &u.tag { " → " code { (t) } } }
                        }
                    }
                }
            }
        }
    };
    page(&cx, Section::None, "Digest", body)
}

pub async fn deliveries(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri, Query(q): Params) -> Response {
    let cx = match page_ctx(&app, &headers, &uri).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    if let Err(e) = cx.who.require(Role::Admin) {
        return layout::error_page(Some(&cx), e.status, &e.message);
    }
    let rows = match app.store.deliveries(PAGE, param(&q, "before")).await {
        Ok(r) => r,
        Err(e) => return history_error(&cx, e),
    };
    let body = html! {
        h1 { "Deliveries" }
        table {
            thead { tr { th { "Received" } th { "Webhook" } th { "Status" } th { "Verdict" } th { "Execution" } th { "Reason" } th {} } }
            tbody {
                @for d in &rows {
                    tr {
                        td { (time(&d.received_at)) br; code.muted { (d.id) } }
                        td { (d.flow) "/" (d.trigger) @if let Some(id) = &d.delivery { br; code.muted { (id) } } }
                        td { (d.status) }
                        td { span.badge { (d.verdict.as_str()) } @if let Some(r) = &d.replay_of { br; span.muted { "replay of " code { (r) } } } }
                        td { @if let Some(e) = &d.execution { a href=(format!("/executions/{e}")) { code { (e) } } } }
                        td { @if let Some(r) = &d.reason { (r) } }
                        td { @if d.verdict.as_str() != "unverified" { (action_form(&cx, &format!("/deliveries/{}/replay", d.id), "Replay", "", None)) } }
                    }
                }
            }
        }
        @if rows.len() == PAGE {
            @if let Some(last) = rows.last() { p.pager { a href=(format!("/deliveries?before={}", super::encode(&last.id))) { "Older deliveries →" } } }
        }
    };
    page(&cx, Section::Deliveries, "Deliveries", body)
}

pub async fn audit(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri, Query(q): Params) -> Response {
    let cx = match page_ctx(&app, &headers, &uri).await {
        Ok(cx) => cx,
        Err(r) => return r,
    };
    if let Err(e) = cx.who.require(Role::Admin) {
        return layout::error_page(Some(&cx), e.status, &e.message);
    }
    let before = param(&q, "before").and_then(|b| b.parse().ok());
    let rows = match app.store.audit_log(PAGE, before).await {
        Ok(r) => r,
        Err(e) => return history_error(&cx, e),
    };
    let body = html! {
        h1 { "Audit trail" }
        table {
            thead { tr { th { "When" } th { "Who" } th { "What" } th { "Target" } th { "From" } th { "Detail" } } }
            tbody {
                @for a in &rows {
                    tr {
                        td { (time(&a.at)) }
                        td { (a.actor) }
                        td { span.badge { (a.action) } }
                        td { code { (a.target) } }
                        td { (a.origin) }
                        td { @if !a.detail.is_null() { code { (clip(&a.detail.to_string(), 300)) } } }
                    }
                }
            }
        }
        @if rows.len() == PAGE {
            @if let Some(last) = rows.last() { p.pager { a href=(format!("/audit?before={}", last.seq)) { "Older entries →" } } }
        }
    };
    page(&cx, Section::Audit, "Audit", body)
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}
