//! The `--json` event stream of `run`, `resume` and `rerun`: every event is
//! made here, each with `event` and `t`, as `docs/cli.md` lists them and
//! `docs/events.schema.json` defines them (a test holds all three to each
//! other).

use std::sync::OnceLock;
use std::time::Instant;

use kflow_runtime::executor::Event;
use serde_json::{json, Value};

use super::console::stream_name;

static START: OnceLock<Instant> = OnceLock::new();

/// When the clock of `t` starts: the first event (or the console) sets it.
pub fn start() -> Instant {
    *START.get_or_init(Instant::now)
}

/// Seconds since [`start`], the `t` of every event.
pub fn elapsed() -> f64 {
    start().elapsed().as_secs_f64()
}

/// The first line of a new execution (`rerun_of`: the execution a rerun
/// repeats, else null).
pub fn execution_started(id: &str, flow: &str, rerun_of: Option<&str>) -> String {
    json!({ "event": "execution_started", "id": id, "flow": flow, "rerun_of": rerun_of, "t": elapsed() }).to_string()
}

/// The first line of `kflow resume`.
pub fn execution_resumed(id: &str, flow: &str) -> String {
    json!({ "event": "execution_resumed", "id": id, "flow": flow, "t": elapsed() }).to_string()
}

/// The last line: how the execution ended (or that it paused).
pub fn execution_ended(
    id: &str,
    flow: &str,
    state: &str,
    failures: &[String],
    outputs: &serde_json::Map<String, Value>,
) -> String {
    json!({
        "event": "execution", "id": id, "flow": flow, "state": state,
        "failures": failures, "outputs": outputs, "t": elapsed(),
    })
    .to_string()
}

/// A task's event.
pub fn task_event(event: &Event, t: f64) -> String {
    let v = match event {
        Event::Started { task, attempt } => {
            json!({ "event": "started", "task": &*task.name, "attempt": attempt, "t": t })
        }
        Event::Log { task, line } => json!({
            "event": "log", "task": &*task.name, "stream": stream_name(line.stream), "text": line.text, "t": t,
        }),
        Event::Retrying {
            task,
            attempt,
            error,
            delay,
        } => json!({
            "event": "retrying", "task": &*task.name, "attempt": attempt, "error": error,
            "delay_ms": delay.as_millis() as u64, "t": t,
        }),
        Event::Restored { task } => json!({ "event": "restored", "task": &*task.name, "t": t }),
        Event::Finished {
            task,
            state,
            error,
            elapsed,
            ..
        } => json!({
            "event": "finished", "task": &*task.name, "state": state.as_str(), "error": error,
            "elapsed_ms": elapsed.as_millis() as u64, "t": t,
        }),
    };
    v.to_string()
}
