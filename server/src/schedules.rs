//! Firing `on schedule` triggers. Each schedule's last fire time is kept in
//! the history, so a restart knows what it missed; what is missed (while
//! the server was down, or any pause longer than a tick) follows the
//! trigger's `catchup`: `last` runs the newest missed time once, `all` runs
//! each (at most [`MAX_CATCHUP`], the newest), `none` skips them. A
//! schedule seen for the first time starts counting from now.
//!
//! The fire time is recorded before the execution starts: a crash in
//! between loses that one run rather than doubling it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kflow_runtime::schedule::{Catchup, Schedule};
use kflow_runtime::trigger::{self, Fields, Verdict};
use kflow_runtime::value::Value;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::App;

/// Most missed fire times one catch-up runs.
pub const MAX_CATCHUP: usize = 100;

/// How far back a catch-up looks.
const LOOKBACK: Duration = Duration::from_secs(31 * 24 * 3600);

/// A fire time this late is still on time (a tick is a second; a slow
/// host or a busy history may delay one).
const ON_TIME: i64 = 60;

pub async fn run(app: Arc<App>, stop: CancellationToken) {
    loop {
        let now = Timestamp::now();
        let mut next_wake = now.as_millisecond() + 1_000;
        let flows: Vec<_> = app.flows.read().await.flows.values().cloned().collect();
        for flow in flows {
            let plan = flow.plan.clone();
            for (t, name) in plan.triggers.iter().zip(plan.trigger_names()) {
                if t.kind != "schedule" {
                    continue;
                }
                let Ok(schedule) = Schedule::new(&t.value, t.timezone.as_deref()) else {
                    continue;
                };
                let last = match app.store.last_fire(&plan.flow, &name).await {
                    Ok(Some(l)) => l.parse::<Timestamp>().unwrap_or(now),
                    Ok(None) => {
                        // First seen: count from now.
                        let _ = app.store.set_last_fire(&plan.flow, &name, &now.to_string()).await;
                        now
                    }
                    Err(e) => {
                        eprintln!("kflow serve: the history: {e}");
                        continue;
                    }
                };
                let (run, newest) = due(&schedule, last, now, Catchup::from_word(t.catchup.as_deref()));
                for at in &run {
                    // Another server on the same history may have taken it.
                    match app.store.claim_fire(&plan.flow, &name, &at.to_string()).await {
                        Ok(true) => fire(&app, &flow, t, &name, *at).await,
                        Ok(false) => {}
                        Err(e) => {
                            eprintln!("kflow serve: the history: {e}");
                            break;
                        }
                    }
                }
                // Times the catch-up skips are passed over for good.
                if let Some(newest) = newest.filter(|n| run.last() != Some(n)) {
                    let _ = app.store.set_last_fire(&plan.flow, &name, &newest.to_string()).await;
                }
                if let Some(next) = schedule.next_after(now) {
                    next_wake = next_wake.min(next.as_millisecond());
                }
            }
        }
        let wait = (next_wake - Timestamp::now().as_millisecond()).clamp(10, 1_000) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The fire times in `(last, now]` to run now, and the newest of them all
/// (run or skipped).
fn due(schedule: &Schedule, last: Timestamp, now: Timestamp, catchup: Catchup) -> (Vec<Timestamp>, Option<Timestamp>) {
    let floor = now
        .checked_sub(jiff::SignedDuration::try_from(LOOKBACK).unwrap_or_default())
        .unwrap_or(last);
    let from = last.max(floor);
    let mut times = schedule.missed(from, now, Catchup::All, MAX_CATCHUP);
    let newest = times.last().copied();
    let run = match catchup {
        Catchup::All => times,
        Catchup::Last => times.split_off(times.len().saturating_sub(1)),
        Catchup::None => {
            times.retain(|t| now.as_second() - t.as_second() <= ON_TIME);
            times.split_off(times.len().saturating_sub(1))
        }
    };
    (run, newest)
}

async fn fire(app: &Arc<App>, flow: &crate::flows::Flow, t: &kflow_compiler::ir::Trigger, name: &str, at: Timestamp) {
    let fields = Fields::from([
        ("at".to_string(), Value::Str(at.to_string())),
        ("scheduled".to_string(), Value::Bool(true)),
    ]);
    app.metrics.schedule_fired();
    match trigger::bind(&flow.plan, t, &fields) {
        Verdict::Start(inputs) => {
            app.metrics.started("schedule");
            let record = json!({ "name": name, "kind": "schedule", "at": at.to_string() });
            match app.launcher.start(flow, inputs, record).await {
                Ok(s) => eprintln!(
                    "kflow serve: {}: {name} at {at}: execution {} {}",
                    flow.plan.flow, s.id, s.state
                ),
                Err(e) => eprintln!("kflow serve: {}: {name} at {at} cannot start: {e}", flow.plan.flow),
            }
        }
        Verdict::Filtered(why) => eprintln!("kflow serve: {}: {name} at {at}: {why}", flow.plan.flow),
        Verdict::Refused(why) => eprintln!("kflow serve: {}: {name} at {at} refused: {why}", flow.plan.flow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catchup_decides_what_runs_after_a_pause() {
        let s = Schedule::new("0 * * * *", None).unwrap();
        let last: Timestamp = "2026-12-05T00:30:00Z".parse().unwrap();
        let now: Timestamp = "2026-12-05T04:00:20Z".parse().unwrap();
        let four: Timestamp = "2026-12-05T04:00:00Z".parse().unwrap();
        assert_eq!(due(&s, last, now, Catchup::All).0.len(), 4);
        assert_eq!(due(&s, last, now, Catchup::Last), (vec![four], Some(four)));
        // 04:00 is 20 s late: on time even for `none`.
        assert_eq!(due(&s, last, now, Catchup::None).0.len(), 1);
        let later: Timestamp = "2026-12-05T04:30:00Z".parse().unwrap();
        assert_eq!(due(&s, last, later, Catchup::None), (vec![], Some(four)));
        // Nothing due.
        assert_eq!(due(&s, now, now, Catchup::All), (vec![], None));
    }
}
