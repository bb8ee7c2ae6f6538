//! An execution's attempts on one time axis, as SVG: a row a task run,
//! a bar an attempt (a failed attempt red, its error on hover), from the
//! execution's start to its end (or now).

use kflow_runtime::store::AttemptRow;
use maud::{html, Markup};

const LABEL: f64 = 180.0;
const WIDTH: f64 = 900.0;
const ROW: f64 = 20.0;

fn at(t: &str) -> Option<i64> {
    t.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

pub fn render(attempts: &[AttemptRow], started: &str, ended: Option<&str>) -> Markup {
    let now = jiff::Timestamp::now().as_millisecond();
    let start = at(started).unwrap_or(now);
    let end = ended.and_then(at).unwrap_or(now).max(start + 1);
    let span = (end - start) as f64;
    let mut rows: Vec<&str> = Vec::new();
    for a in attempts {
        if !rows.contains(&a.task.as_str()) {
            rows.push(&a.task);
        }
    }
    let x = |t: i64| LABEL + ((t - start).max(0) as f64 / span * (WIDTH - LABEL)).min(WIDTH - LABEL);
    let height = rows.len() as f64 * ROW + 24.0;
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" role="img" aria-label="attempts over time"
            width=(WIDTH + 10.0) height=(height) viewBox=(format!("0 0 {} {height}", WIDTH + 10.0)) {
            @for (i, task) in rows.iter().enumerate() {
                text.label x="4" y=(i as f64 * ROW + 14.0) { (task) }
            }
            @for a in attempts {
                @let row = rows.iter().position(|r| *r == a.task).unwrap_or(0);
                @let (x0, x1) = (x(at(&a.started_at).unwrap_or(start)), x(a.ended_at.as_deref().and_then(at).unwrap_or(now)));
                @let class = if a.error.is_some() { "bar failed" } else if a.ended_at.is_none() { "bar running" } else { "bar" };
                rect class=(class) x=(format!("{x0:.1}")) y=(row as f64 * ROW + 4.0) width=(format!("{:.1}", (x1 - x0).max(2.0))) height=(ROW - 8.0) {
                    title {
                        (a.task) " attempt " (a.attempt) ": " (a.started_at) " – " (a.ended_at.as_deref().unwrap_or("running"))
                        @if let Some(e) = &a.error { " — " (e) }
                    }
                }
            }
            text.label x=(LABEL) y=(height - 4.0) { "0 s" }
            text.label x=(WIDTH - 60.0) y=(height - 4.0) { (format!("{:.1} s", span / 1000.0)) }
        }
    }
}
