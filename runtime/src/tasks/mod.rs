//! Task implementations, one module per namespace of the catalog. Each takes
//! its evaluated properties and a [`TaskContext`], and returns its output
//! record or a [`TaskError`].

pub mod approval;
pub mod basic;
pub mod cloud;
pub mod command;
pub mod http;
pub mod images;
pub mod lines;
pub mod registry;
pub mod shell;
pub mod signing;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::secret::Redactor;
use crate::value::Value;

/// Evaluated properties of one task run.
pub type Props = BTreeMap<String, Value>;
/// A task's output record.
pub type Outputs = BTreeMap<String, Value>;

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Written by kflow itself (the `log` task, progress notes).
    Info,
}

/// Where a task run's log lines go: the executor hands each on as an event
/// of that run, on the caller's thread (no task or channel per run).
pub type LogSink = Arc<dyn Fn(LogLine) + Send + Sync>;

/// A sink into a channel (for tests of a single task).
pub fn channel_sink(tx: mpsc::UnboundedSender<LogLine>) -> LogSink {
    Arc::new(move |line| {
        let _ = tx.send(line);
    })
}

/// One line of a task's log, already redacted.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub stream: Stream,
    pub text: String,
    /// The line's share of the execution's log budget, given back when the
    /// last holder (the printer and recorder of events) drops it.
    pub budget: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

impl PartialEq for LogLine {
    fn eq(&self, other: &Self) -> bool {
        (self.stream, &self.text) == (other.stream, &other.text)
    }
}

/// Bytes of process output in flight between the processes and the printer
/// and recorder of events: a process that writes faster than they keep up
/// waits (its pipe fills), instead of memory growing without end.
pub const LOG_BUDGET: usize = 16 * 1024 * 1024;
/// What one log line costs of [`LOG_BUDGET`] besides its text.
const LINE_OVERHEAD: usize = 256;

/// What a running task may use: where relative paths start, a way to log,
/// the secrets to redact, and the signal to stop.
#[derive(Clone)]
pub struct TaskContext {
    /// The execution's id, carried as a label by what tasks create.
    pub execution: Arc<str>,
    /// The history's id, carried as a label too.
    pub history: Arc<str>,
    pub base_dir: PathBuf,
    /// The task run's name (`scan`, `scan[2]`).
    pub task: Arc<str>,
    /// Where the execution keeps its artifacts (reports, SBOMs).
    pub artifacts: PathBuf,
    /// The history's folder (caches kept beside it).
    pub state_dir: PathBuf,
    /// The history (approvals read and write it).
    pub store: Arc<dyn crate::store::Store>,
    /// ` --state DIR` for printed hints, when they need it.
    pub state_hint: Arc<str>,
    /// An approval that would wait pauses the execution instead (`--detach`).
    pub detach: bool,
    pub docker: Arc<crate::docker::Engine>,
    pub cancel: CancellationToken,
    pub redactor: Arc<Redactor>,
    /// The environment variables that `env()` secrets were read from: no
    /// process a task starts inherits them (a task sees a secret only
    /// through its own `env`).
    pub hidden_env: Arc<[String]>,
    /// Set where attempts run on workers (see `dispatch`).
    pub dispatch: Option<Arc<crate::dispatch::Dispatcher>>,
    pub log: LogSink,
    /// [`LOG_BUDGET`] bytes for the whole execution.
    pub log_budget: Arc<tokio::sync::Semaphore>,
}

impl TaskContext {
    /// This task run's artifact folder, created on first use.
    pub fn artifact_dir(&self) -> Result<PathBuf, String> {
        let dir = self.artifacts.join(crate::store::run_file_name(&self.task));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the artifact folder {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// The labels on every container, network and volume a task creates:
    /// whose execution, in which history, made by which process (images
    /// carry the execution only).
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        use crate::docker::{EXECUTION_LABEL, HISTORY_LABEL, OWNER_LABEL, PID_LABEL, WORKER_LABEL};
        let mut labels = std::collections::BTreeMap::from([
            (EXECUTION_LABEL.to_string(), self.execution.to_string()),
            (HISTORY_LABEL.to_string(), self.history.to_string()),
            (OWNER_LABEL.to_string(), crate::owner::Owner::current().to_label()),
            (PID_LABEL.to_string(), std::process::id().to_string()),
        ]);
        if let Some(worker) = crate::worker::current() {
            labels.insert(WORKER_LABEL.to_string(), worker.to_string());
        }
        labels
    }

    /// A host process for this task: without the secret sources in its
    /// environment, and killed when kflow dies, even by SIGKILL.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> crate::host::HostCommand {
        let mut cmd = crate::host::HostCommand::new(program);
        for name in self.hidden_env.iter() {
            cmd.env_remove(name);
        }
        cmd.env("KFLOW_EXECUTION", &*self.execution);
        cmd
    }

    /// Logs a line, with every known secret value replaced.
    pub fn log(&self, stream: Stream, text: &str) {
        self.log_redacted(stream, self.redactor.redact(text).into_owned());
    }

    /// Logs a line that is already redacted (kflow's own, few and short:
    /// outside the budget).
    pub fn log_redacted(&self, stream: Stream, text: String) {
        (self.log)(LogLine {
            stream,
            text,
            budget: None,
        });
    }

    /// Logs a redacted line of a process's output, waiting while the
    /// execution's log budget is spent (back-pressure, never loss).
    pub async fn log_output(&self, stream: Stream, text: String) {
        // A line costs its text and what carries it (the string, the event,
        // the console's and the recorder's copies): 4-byte lines must not
        // hold millions of events in flight.
        let cost = (text.len() + LINE_OVERHEAD).min(LOG_BUDGET) as u32;
        let budget = self
            .log_budget
            .clone()
            .acquire_many_owned(cost)
            .await
            .ok()
            .map(Arc::new);
        (self.log)(LogLine { stream, text, budget });
    }
}

/// Why a task run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Something outside the task failed — a command's exit status, the
    /// engine, a registry, the network — and another attempt may succeed:
    /// `retry` retries it. The message is redacted.
    #[error("{0}")]
    Failed(String),
    /// The task cannot succeed with the values it was given (a malformed
    /// property, an unsupported URL): every attempt would fail the same
    /// way, so it is never retried. The message is redacted.
    #[error("{0}")]
    Invalid(String),
    /// The run was cancelled (timeout or interruption); never retried.
    #[error("cancelled")]
    Cancelled,
    /// An approval left waiting: the execution pauses here (`--detach`).
    #[error("paused")]
    Paused,
    /// The worker running the attempt stopped renewing its lease (killed,
    /// its machine lost or cut off): the attempt is recorded lost and the
    /// task queued again, outside its retry budget (the task did not fail).
    #[error("{0}")]
    Lost(String),
}

impl TaskError {
    /// A property whose value can never work.
    pub fn invalid(msg: impl Into<String>) -> TaskError {
        TaskError::Invalid(msg.into())
    }

    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TaskError::Failed(_) | TaskError::Lost(_))
    }
}

pub(crate) fn string_list(props: &Props, name: &str) -> Option<Vec<String>> {
    match props.get(name)? {
        Value::List(items) => Some(items.iter().filter_map(Value::to_text).collect()),
        _ => None,
    }
}

pub(crate) fn text(props: &Props, name: &str) -> Option<String> {
    props.get(name).and_then(Value::to_text)
}
