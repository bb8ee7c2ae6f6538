//! An execution's logs over HTTP, paged, and its live events as
//! server-sent events: task states and log lines as they are recorded,
//! read from the history (so they work for executions any process runs),
//! resumable with `Last-Event-ID`.
//!
//! A log's position is its byte offset: a page's `next` and a `logs`
//! event's id. Reading goes in chunks of at most 4 MiB, so a 10 MB log is
//! pages, never one answer held whole.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream};
use kflow_runtime::store::{LogEntry, Role, LOG_READ_CHUNK};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, Query};
use crate::identity;
use crate::App;

/// How often a live stream looks for news.
const POLL: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
pub struct LogQuery {
    /// The byte offset a previous page ended at.
    after: Option<u64>,
    /// Only this task run's lines.
    task: Option<String>,
}

fn line_json(e: &LogEntry) -> Value {
    json!({ "task": e.task, "time": e.stamp, "text": e.text })
}

async fn known(app: &App, id: &str) -> Result<String, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found("no such execution"));
    }
    match app.store.show(id).await {
        Ok(Some((e, _))) if e.id == id => Ok(e.id),
        Ok(_) => Err(ApiError::not_found(format!("no execution `{id}` (give the whole id)"))),
        Err(e) => Err(ApiError::history(e)),
    }
}

/// `GET /api/v1/executions/{id}/logs?after=&task=`: a page of the log.
pub async fn logs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Viewer)?;
    let id = known(&app, &id).await?;
    page(&app, &id, q.after.unwrap_or(0), q.task.as_deref()).await
}

/// `GET /api/v1/executions/{id}/logs/{task}`: a page of one task run's lines.
pub async fn task_logs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, task)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Viewer)?;
    let id = known(&app, &id).await?;
    page(&app, &id, q.after.unwrap_or(0), Some(&task)).await
}

async fn page(app: &App, id: &str, after: u64, task: Option<&str>) -> Result<Json<Value>, ApiError> {
    let (lines, next) = app
        .store
        .read_log(id, after, LOG_READ_CHUNK)
        .await
        .map_err(ApiError::history)?;
    let lines: Vec<Value> = lines
        .iter()
        .filter(|e| task.is_none_or(|t| e.task == t))
        .map(line_json)
        .collect();
    Ok(Json(json!({ "lines": lines, "next": next, "more": next > after })))
}

/// Most log bytes one `logs` event carries.
const LIVE_CHUNK: u64 = 256 * 1024;

#[derive(Deserialize)]
pub struct EventsQuery {
    /// The log offset to stream lines from.
    after: Option<u64>,
}

/// What a live stream has told its client so far.
struct Watch {
    app: Arc<App>,
    id: String,
    /// How far into the log the client has been sent.
    offset: u64,
    states: BTreeMap<String, String>,
    started: bool,
    done: bool,
}

/// `GET /api/v1/executions/{id}/events`: `state` (every task run's state,
/// first and after a resume), `task` (a run's new state), `logs` (lines,
/// the event's id their end offset), `end` (the execution's final state).
pub async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Viewer)?;
    let id = known(&app, &id).await?;
    // A reconnecting client says where it was; a page that rendered the
    // first lines itself says where they ended (`?after=`).
    let offset = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.after)
        .unwrap_or(0);
    let watch = Watch {
        offset,
        app,
        id,
        states: BTreeMap::new(),
        started: false,
        done: false,
    };
    let stream = stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            let batch = w.poll().await;
            if !batch.is_empty() {
                return Some((stream::iter(batch.into_iter().map(Ok)), w));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    use futures_util::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

impl Watch {
    /// What changed since the last look.
    async fn poll(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        // States before lines: an execution that ended has all its lines
        // written, so reading them after its end state misses none.
        let shown = self.app.store.show(&self.id).await.ok().flatten();
        // Small batches: a page never gets megabytes in one event.
        let lines = self.app.store.read_log(&self.id, self.offset, LIVE_CHUNK).await;
        let Some((exec, tasks)) = shown else {
            self.done = true;
            return vec![Event::default()
                .event("end")
                .data(json!({ "state": "unknown" }).to_string())];
        };
        let now: BTreeMap<String, String> = tasks.iter().map(|t| (t.task.clone(), t.state.to_string())).collect();
        if !self.started {
            self.started = true;
            out.push(
                Event::default()
                    .event("state")
                    .data(json!({ "state": exec.state, "tasks": now }).to_string()),
            );
        } else {
            for (task, state) in &now {
                if self.states.get(task) != Some(state) {
                    out.push(
                        Event::default()
                            .event("task")
                            .data(json!({ "task": task, "state": state }).to_string()),
                    );
                }
            }
        }
        self.states = now;
        if let Ok((lines, next)) = lines {
            self.offset = next;
            if !lines.is_empty() {
                let lines: Vec<Value> = lines.iter().map(line_json).collect();
                out.push(
                    Event::default()
                        .event("logs")
                        .id(next.to_string())
                        .data(Value::Array(lines).to_string()),
                );
            }
        }
        if exec.state.is_finished() || exec.state == kflow_runtime::state::ExecutionState::Interrupted {
            // Lines written after the state was read are read once more.
            if self.reader_has_more().await {
                return out;
            }
            self.done = true;
            out.push(
                Event::default()
                    .event("end")
                    .data(json!({ "state": exec.state }).to_string()),
            );
        }
        out
    }

    /// Whether the log holds lines past what was sent.
    async fn reader_has_more(&self) -> bool {
        self.app
            .store
            .read_log(&self.id, self.offset, 1)
            .await
            .is_ok_and(|(lines, _)| !lines.is_empty())
    }
}
