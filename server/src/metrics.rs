//! `GET /metrics`: counts in Prometheus' text format. Counters live for the
//! process (Prometheus handles restarts); nothing here names a secret or a
//! user.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::App;

#[derive(Default)]
pub struct Metrics {
    /// By verdict.
    deliveries: Mutex<BTreeMap<&'static str, u64>>,
    /// By what started them (`webhook`, `schedule`, `manual`, `resume`).
    started: Mutex<BTreeMap<&'static str, u64>>,
    logins_failed: AtomicU64,
    schedule_fires: AtomicU64,
}

impl Metrics {
    pub fn delivery(&self, verdict: &'static str) {
        *self
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(verdict)
            .or_default() += 1;
    }

    pub fn started(&self, by: &'static str) {
        *self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(by)
            .or_default() += 1;
    }

    pub fn login_failed(&self) {
        self.logins_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn schedule_fired(&self) {
        self.schedule_fires.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let (flows, broken) = {
        let f = app.flows.read().await;
        (f.flows.len(), f.broken.len())
    };
    let m = &app.metrics;
    let mut s = String::new();
    let mut gauge = |name: &str, help: &str, v: u64| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    gauge("kflow_flows_loaded", "Flows served.", flows as u64);
    gauge(
        "kflow_flow_files_broken",
        "Flow files that do not check (their last good flows serve).",
        broken as u64,
    );
    gauge(
        "kflow_executions_running",
        "Executions this server runs now.",
        app.launcher.running.count() as u64,
    );
    let _ = writeln!(
        s,
        "# HELP kflow_deliveries_total Webhook deliveries answered, by verdict.\n# TYPE kflow_deliveries_total counter"
    );
    for (verdict, n) in m.deliveries.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(s, "kflow_deliveries_total{{verdict=\"{verdict}\"}} {n}");
    }
    let _ = writeln!(
        s,
        "# HELP kflow_executions_started_total Executions started, by what started them.\n# TYPE kflow_executions_started_total counter"
    );
    for (by, n) in m.started.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(s, "kflow_executions_started_total{{by=\"{by}\"}} {n}");
    }
    let _ = writeln!(
        s,
        "# HELP kflow_schedule_fires_total Schedule fire times run.\n# TYPE kflow_schedule_fires_total counter\nkflow_schedule_fires_total {}",
        m.schedule_fires.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP kflow_logins_failed_total Failed password logins.\n# TYPE kflow_logins_failed_total counter\nkflow_logins_failed_total {}",
        m.logins_failed.load(Ordering::Relaxed)
    );
    // With a shared history, its queue; a history that does not answer
    // leaves these out rather than failing the scrape.
    let stats = match app.launcher.dispatcher() {
        Some(d) => d.store().queue_stats().await.ok(),
        None => None,
    };
    if let Some(q) = stats {
        let mut gauge = |name: &str, help: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "kflow_queue_depth",
            "Task attempts waiting for a worker.",
            q.queued.to_string(),
        );
        gauge(
            "kflow_queue_running",
            "Task attempts workers hold.",
            q.running.to_string(),
        );
        gauge(
            "kflow_workers_alive",
            "Workers with a recent heartbeat.",
            q.workers.to_string(),
        );
        let _ = writeln!(
            s,
            "# HELP kflow_attempts_lost_total Task attempts lost with their worker.\n# TYPE kflow_attempts_lost_total counter\nkflow_attempts_lost_total {}",
            q.lost
        );
        let _ = writeln!(
            s,
            "# HELP kflow_claim_latency_seconds From queued to claimed, over the last 1,000 claims.\n# TYPE kflow_claim_latency_seconds summary\nkflow_claim_latency_seconds{{quantile=\"0.5\"}} {}\nkflow_claim_latency_seconds{{quantile=\"0.95\"}} {}",
            q.claim_p50, q.claim_p95
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s)
}
