//! Recording an execution: every event of the executor goes into the
//! history, and to whoever else listens (the console of `kflow run`, the
//! live streams of `kflow serve`). One recorder, used by every command that
//! runs executions, so they all record the same way.
//!
//! The history is written in batches (one transaction per burst of events);
//! a batch's log lines are readable before its tasks are recorded as
//! finished. Changes the history cannot take yet (another process holds its
//! lock) are kept and written with the next batch, in order, never dropped;
//! an execution whose changes could not all be written ends `interrupted`,
//! so the history never claims more than it saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kflow_compiler::ir::Plan;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

use crate::executor::{execute, Event, Report, RunEnv, TaskRef};
use crate::state::ExecutionState;
use crate::store::{now, Change, LogAppend, Store};

/// How long the end of a run waits for a history another process keeps
/// locked (on top of SQLite's own busy timeout per attempt).
pub const HISTORY_WAIT: Duration = Duration::from_secs(60);

/// Most events taken into one batch.
const BATCH: usize = 1_000;

/// A listener to an execution's events besides the history.
pub trait Subscriber: Send {
    /// A burst of events, in order, before they are recorded.
    fn events(&mut self, batch: &[Event]);

    /// Whether [`Subscriber::tick`] should be called every 100 ms.
    fn wants_ticks(&self) -> bool {
        false
    }

    /// Nothing happened for a while (live displays redraw durations).
    fn tick(&mut self) {}

    /// A problem of the history worth telling whoever watches; said once
    /// per execution, the run goes on.
    fn warn(&mut self, message: &str);

    /// The last event was seen.
    fn finish(&mut self) {}
}

/// A subscriber that hears nothing and writes warnings to standard error.
pub struct Quiet;

impl Subscriber for Quiet {
    fn events(&mut self, _: &[Event]) {}

    fn warn(&mut self, message: &str) {
        eprintln!("kflow: {message}");
    }
}

/// How a recorded execution ended.
#[derive(Debug)]
pub struct Recorded {
    pub report: Report,
    /// The state the history holds now.
    pub state: ExecutionState,
    /// The report's failures, and what the history could not record.
    pub failures: Vec<String>,
    /// The flow's outputs as JSON (secrets written `***`).
    pub outputs: serde_json::Map<String, Json>,
}

/// Runs an execution already begun in `env.store` to its end (or its
/// pause), recording every event and telling `subscriber`; records how it
/// ended.
pub async fn run(plan: Arc<Plan>, env: RunEnv, subscriber: impl Subscriber + 'static) -> Recorded {
    run_stoppable(plan, env, subscriber, Arc::default()).await
}

/// Like [`run`]; when the execution is cancelled and `stopped` holds a
/// reason by then, it was stopped on purpose (a newer run of its
/// concurrency key, a cancel request): it is recorded `cancelled` with the
/// reason, never `interrupted` (which `resume` would run on).
pub async fn run_stoppable(
    plan: Arc<Plan>,
    env: RunEnv,
    subscriber: impl Subscriber + 'static,
    stopped: Arc<std::sync::OnceLock<String>>,
) -> Recorded {
    let store = env.store.clone();
    let id = env.execution.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let consumer = tokio::spawn(record(rx, plan.clone(), store.clone(), id.clone(), subscriber));
    let report = execute(plan, env, tx).await;
    let unrecorded = consumer.await.unwrap_or_else(|e| {
        // A panic in a subscriber: the history may have missed changes.
        eprintln!("kflow: the event recorder stopped: {e}");
        usize::MAX
    });
    conclude(&*store, &id, report, unrecorded, stopped.get().map(String::as_str)).await
}

/// Records the events of one execution until the executor drops its
/// sender; how many changes could not be written.
pub async fn record(
    mut rx: mpsc::UnboundedReceiver<Event>,
    plan: Arc<Plan>,
    store: Arc<dyn Store>,
    id: String,
    mut subscriber: impl Subscriber,
) -> usize {
    let mut warned = false;
    let mut warn = |subscriber: &mut dyn Subscriber, message: String| {
        if !warned {
            subscriber.warn(&message);
            warned = true;
        }
    };
    let mut pending: Vec<Change> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let first = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => break,
            },
            _ = tick.tick(), if subscriber.wants_ticks() => {
                subscriber.tick();
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        subscriber.events(&batch);
        let kind = |t: &TaskRef| plan.nodes[t.node].kind.clone();
        let mut lines = Vec::new();
        for event in &batch {
            match event {
                Event::Log { task, line } => lines.push(LogAppend {
                    task: &task.name,
                    text: &line.text,
                }),
                // Already recorded as succeeded before the resume.
                Event::Restored { .. } => {}
                Event::Started { task, attempt } => pending.push(Change::Started {
                    task: task.name.to_string(),
                    kind: kind(task),
                    attempt: *attempt,
                    at: now(),
                }),
                Event::Retrying {
                    task, attempt, error, ..
                } => pending.push(Change::AttemptFailed {
                    task: task.name.to_string(),
                    attempt: attempt - 1,
                    error: error.clone(),
                    at: now(),
                }),
                Event::Finished {
                    task,
                    state,
                    error,
                    outputs,
                    ..
                } => pending.push(Change::Finished {
                    task: task.name.to_string(),
                    kind: kind(task),
                    state: *state,
                    error: error.clone(),
                    outputs: outputs.clone().unwrap_or(Json::Null),
                    at: now(),
                }),
            }
        }
        if !lines.is_empty() {
            if let Err(e) = store.append_logs(&id, &lines).await {
                warn(&mut subscriber, format!("{e} (the run goes on)"));
            }
        }
        match store.apply(&id, &pending).await {
            Ok(()) => pending.clear(),
            Err(e) => warn(
                &mut subscriber,
                format!("{e}; the run goes on and the history is written when it can be"),
            ),
        }
    }
    subscriber.finish();
    // The last changes wait for the lock a while longer before giving up.
    let deadline = Instant::now() + HISTORY_WAIT;
    while !pending.is_empty() {
        match store.apply(&id, &pending).await {
            Ok(()) => pending.clear(),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => {
                subscriber.warn(&format!(
                    "{e}: {} change(s) of this execution could not be recorded",
                    pending.len()
                ));
                break;
            }
        }
    }
    pending.len()
}

/// Records how an execution ended: paused (left for a decision and a
/// resume), or its final state, which is `interrupted` when the history
/// missed changes.
pub async fn conclude(
    store: &dyn Store,
    id: &str,
    report: Report,
    unrecorded: usize,
    stopped: Option<&str>,
) -> Recorded {
    let outputs: serde_json::Map<String, Json> = report.outputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    let mut failures = report.failures.clone();
    let mut state = report.outcome();
    if state == ExecutionState::Paused {
        if let Err(e) = store.leave_paused(id).await {
            eprintln!("kflow: {e}");
        }
        return Recorded {
            report,
            state,
            failures,
            outputs,
        };
    }
    if let (ExecutionState::Interrupted, Some(why)) = (state, stopped) {
        state = ExecutionState::Cancelled;
        failures.push(why.to_string());
    }
    if unrecorded > 0 {
        state = ExecutionState::Interrupted;
        failures.push(if unrecorded == usize::MAX {
            "the history may have missed changes of this execution (its recorder stopped)".to_string()
        } else {
            format!("the history could not record {unrecorded} change(s) of this execution (locked by another process)")
        });
    }
    let deadline = Instant::now() + HISTORY_WAIT;
    loop {
        match store
            .finish(id, state, &json!(failures), &Json::Object(outputs.clone()))
            .await
        {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => {
                eprintln!("kflow: {e}: the end of this execution is not recorded (it will show as interrupted)");
                break;
            }
        }
    }
    Recorded {
        report,
        state,
        failures,
        outputs,
    }
}
