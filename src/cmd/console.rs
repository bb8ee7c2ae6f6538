//! What `kflow run` prints while a flow runs: one JSON event per line
//! (`--json`), plain timestamped lines (not a terminal), or, on a terminal, the
//! same lines scrolling above a live footer of the running tasks.

use kflow_runtime::printable::printable;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kflow_runtime::executor::{Event, TaskRef, TaskState};
use kflow_runtime::tasks::Stream;
use kflow_runtime::value::format_duration;

pub enum Mode {
    Json,
    Plain,
    Live { color: bool, columns: usize },
}

/// Running tasks listed in the footer; the rest are counted.
const FOOTER_TASKS: usize = 8;

pub struct Console {
    mode: Mode,
    start: Instant,
    /// Task names are right-aligned to this width in plain lines.
    width: usize,
    out: std::io::Stdout,
    running: Vec<(Arc<str>, Instant)>,
    succeeded: usize,
    failed: usize,
    skipped: usize,
    /// Lines of footer on screen, to erase before printing more.
    drawn: usize,
}

/// Names longer than this are not padded to (one long loop item must not
/// push every line to the right).
const WIDTH_MAX: usize = 40;

impl Console {
    pub fn new(mode: Mode, width: usize) -> Console {
        Console {
            mode,
            start: super::events::start(),
            width,
            out: std::io::stdout(),
            running: Vec::new(),
            succeeded: 0,
            failed: 0,
            skipped: 0,
            drawn: 0,
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self.mode, Mode::Live { .. })
    }

    /// Prints a burst of events: the footer is erased once, the lines go
    /// above it, and it is drawn again.
    pub fn print(&mut self, events: &[Event]) {
        self.erase();
        for event in events {
            let t = self.start.elapsed().as_secs_f64();
            self.track(event);
            let text = match self.mode {
                Mode::Json => Some(super::events::task_event(event, t)),
                Mode::Plain => Some(plain_event(event, t, self.width, false)),
                Mode::Live { color, .. } => live_event(event, t, self.width, color),
            };
            if let Some(text) = text {
                let _ = writeln!(self.out, "{text}");
            }
        }
        self.draw();
    }

    /// Redraws the footer (durations go on while nothing is printed).
    pub fn tick(&mut self) {
        if self.is_live() && !self.running.is_empty() {
            self.erase();
            self.draw();
        }
    }

    /// Removes the footer before the final report.
    pub fn finish(&mut self) {
        self.erase();
        let _ = self.out.flush();
    }

    fn track(&mut self, event: &Event) {
        match event {
            Event::Started { task, attempt: 1 } => {
                // Loop runs named by their items are longer than the
                // plan's guess: later lines align to the longest seen.
                self.width = self.width.max(task.name.chars().count().min(WIDTH_MAX));
                self.running.push((task.name.clone(), Instant::now()))
            }
            Event::Finished { task, state, .. } => {
                self.running.retain(|(n, _)| *n != task.name);
                match state {
                    TaskState::Succeeded => self.succeeded += 1,
                    TaskState::Skipped => self.skipped += 1,
                    TaskState::Paused => {}
                    _ => self.failed += 1,
                }
            }
            Event::Restored { .. } => self.succeeded += 1,
            _ => {}
        }
    }

    fn erase(&mut self) {
        if self.drawn > 0 {
            // To the first footer line, then clear to the end of the screen.
            let _ = write!(self.out, "\x1b[{}F\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn draw(&mut self) {
        let Mode::Live { color, columns } = self.mode else {
            let _ = self.out.flush();
            return;
        };
        if self.running.is_empty() {
            let _ = self.out.flush();
            return;
        }
        let now = Instant::now();
        let mut lines = vec![format!(
            "running {} · {} done{}{} · {}",
            self.running.len(),
            self.succeeded,
            if self.failed > 0 {
                format!(", {} failed", self.failed)
            } else {
                String::new()
            },
            if self.skipped > 0 {
                format!(", {} skipped", self.skipped)
            } else {
                String::new()
            },
            seconds(self.start.elapsed()),
        )];
        for (name, since) in self.running.iter().take(FOOTER_TASKS) {
            lines.push(format!("  {name}  {}", seconds(now - *since)));
        }
        if self.running.len() > FOOTER_TASKS {
            lines.push(format!("  … and {} more", self.running.len() - FOOTER_TASKS));
        }
        for line in &lines {
            // A footer line must not wrap, or erasing it would miss a row.
            let line: String = line.chars().take(columns.saturating_sub(1)).collect();
            let _ = if color {
                writeln!(self.out, "\x1b[2m{line}\x1b[0m")
            } else {
                writeln!(self.out, "{line}")
            };
        }
        self.drawn = lines.len();
        let _ = self.out.flush();
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

pub fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
        Stream::Info => "info",
    }
}

/// `[   1.234s]     build | text`: multi-line text keeps the prefix.
fn plain_event(event: &Event, t: f64, width: usize, color: bool) -> String {
    let prefix = |task: &TaskRef| {
        let name = format!("{:>width$}", task.name);
        if color {
            format!("\x1b[2m[{t:8.3}s]\x1b[0m \x1b[1m{name}\x1b[0m |")
        } else {
            format!("[{t:8.3}s] {name} |")
        }
    };
    let (task, body) = match event {
        Event::Started { task, attempt: 1 } => (task, "started".to_string()),
        Event::Started { task, attempt } => (task, format!("attempt {attempt}")),
        Event::Log { task, line } => (task, line.text.clone()),
        Event::Retrying {
            task,
            attempt,
            error,
            delay,
        } => (
            task,
            format!(
                "failed, attempt {attempt} in {}: {}",
                format_duration(delay.as_millis() as u64),
                error.lines().next().unwrap_or("")
            ),
        ),
        Event::Restored { task } => (task, "succeeded in an earlier run: not run again".to_string()),
        Event::Finished {
            task,
            state: TaskState::Skipped,
            ..
        } => (task, "skipped".to_string()),
        Event::Finished {
            task,
            state: TaskState::Paused,
            ..
        } => (task, "paused: waiting for a decision".to_string()),
        Event::Finished {
            task,
            state,
            error,
            elapsed,
            ..
        } => {
            let mut s = format!("{} in {:.2}s", state.as_str(), elapsed.as_secs_f64());
            if let Some(e) = error {
                s.push_str(": ");
                s.push_str(e);
            }
            (task, s)
        }
    };
    let p = prefix(task);
    // Task output and error messages come from outside: no control
    // sequence of theirs reaches the terminal.
    let body = printable(&body);
    let mut lines = body.lines();
    let mut out = format!("{p} {}", lines.next().unwrap_or(""));
    for more in lines {
        out.push_str(&format!("\n{p}   {more}"));
    }
    out
}

/// On a terminal, starts show in the footer, not as lines.
fn live_event(event: &Event, t: f64, width: usize, color: bool) -> Option<String> {
    match event {
        Event::Started { attempt: 1, .. } => None,
        Event::Finished {
            state: TaskState::Succeeded,
            ..
        } if color => {
            let line = plain_event(event, t, width, true);
            Some(line.replacen("succeeded", "\x1b[32msucceeded\x1b[0m", 1))
        }
        Event::Finished {
            state: TaskState::Failed | TaskState::Cancelled,
            ..
        } if color => {
            let line = plain_event(event, t, width, true);
            Some(line.replacen("| failed", "| \x1b[31mfailed\x1b[0m", 1).replacen(
                "| cancelled",
                "| \x1b[33mcancelled\x1b[0m",
                1,
            ))
        }
        _ => Some(plain_event(event, t, width, color)),
    }
}

/// The console hears an execution's events through the runtime's recorder.
impl kflow_runtime::recorder::Subscriber for Console {
    fn events(&mut self, batch: &[Event]) {
        self.print(batch);
    }

    fn wants_ticks(&self) -> bool {
        self.is_live()
    }

    fn tick(&mut self) {
        Console::tick(self);
    }

    fn warn(&mut self, message: &str) {
        // The footer goes first, or the message would be drawn over.
        Console::finish(self);
        eprintln!("kflow: {message}");
    }

    fn finish(&mut self) {
        Console::finish(self);
    }
}
