//! `kflow executions list|show` and `kflow logs`: reading the history.

use crate::cmd::out::outln;
use kflow_runtime::printable::printable;
use std::path::PathBuf;
use std::process::ExitCode;

use kflow_runtime::state::ExecutionState;
use kflow_runtime::store::{ExecutionFilter, ExecutionRow, Store, TaskRow, LOG_READ_CHUNK};

use super::state::History;
use serde_json::json;

use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct StateArg {
    /// Folder of the execution history (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR", global = true)]
    state: Option<PathBuf>,
    /// The shared PostgreSQL history, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
}

impl StateArg {
    fn history(&self) -> History {
        History::find(self.state.as_deref(), self.store.as_deref())
    }
}

/// The executions matching `filter`, newest first, at most `limit`: read a
/// page at a time.
async fn executions(store: &dyn Store, filter: &ExecutionFilter, limit: usize) -> Result<Vec<ExecutionRow>> {
    let mut rows: Vec<ExecutionRow> = Vec::new();
    loop {
        let want = (limit - rows.len()).min(1000);
        let cursor = rows.last().map(|e| e.id.clone());
        let (page, more) = store
            .page(filter, want, cursor.as_deref())
            .await
            .map_err(|e| UsageError(e.0))?;
        rows.extend(page);
        if !more || rows.len() >= limit {
            return Ok(rows);
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// List executions, newest first.
    List {
        #[arg(long)]
        json: bool,
        /// Only the executions of this flow.
        #[arg(long, value_name = "NAME")]
        flow: Option<String>,
        /// Only executions in this state (`--state` names the history folder).
        #[arg(long, value_name = "STATE", value_parser = clap::builder::PossibleValuesParser::new(ExecutionState::names()))]
        status: Option<String>,
        /// At most this many (the newest).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// One execution: its inputs, tasks, attempts, errors and outputs.
    Show {
        /// The execution id (or a unique prefix of it, or `latest`).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove finished executions with their logs and artifacts (paused and
    /// interrupted ones stay: they can still be resumed).
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["keep", "older_than"])))]
    Prune {
        /// Keep the newest N finished executions.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Remove finished executions started longer ago than this (`30d`, `12h`, `1w`).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<jiff::Span>,
    },
}

fn parse_age(text: &str) -> std::result::Result<jiff::Span, String> {
    text.parse::<jiff::Span>()
        .map_err(|_| format!("`{text}` is not an age; write e.g. `30d`, `12h` or `90m`"))
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    state: StateArg,
}

fn exec_json(e: &ExecutionRow) -> serde_json::Value {
    json!({
        "id": e.id, "flow": e.flow, "file": e.file, "state": e.state,
        "started_at": e.started_at, "ended_at": e.ended_at,
        "inputs": e.inputs, "failures": e.failures, "outputs": e.outputs,
        "rerun_of": e.rerun_of, "trigger": e.trigger,
    })
}

fn approvals_json(approvals: &[kflow_runtime::store::Approval]) -> serde_json::Value {
    approvals
        .iter()
        .map(|a| {
            let d = a.decision.as_ref();
            json!({
                "task": a.task,
                "requested_at": a.requested_at,
                "deadline": a.deadline,
                "decision": d.map(|d| if d.approved { "approved" } else { "rejected" }),
                "by": d.map(|d| &d.by),
                "os_user": d.map(|d| &d.os_user),
                "at": d.map(|d| &d.at),
                "comment": d.map(|d| &d.comment),
            })
        })
        .collect()
}

fn task_json(t: &TaskRow) -> serde_json::Value {
    json!({
        "task": t.task, "kind": t.kind, "state": t.state, "started_at": t.started_at,
        "ended_at": t.ended_at, "attempts": t.attempts, "error": t.error, "outputs": t.outputs,
    })
}

pub fn run(args: Args) -> Result<ExitCode> {
    super::one_thread_runtime()?.block_on(run_on(args))
}

async fn run_on(args: Args) -> Result<ExitCode> {
    let history = args.state.history();
    if let Command::Prune { keep, older_than } = args.command {
        return prune(&history, keep, older_than).await;
    }
    let store = history.open_read().await?;
    match args.command {
        Command::Prune { .. } => unreachable!("handled above"),
        Command::List {
            json,
            flow,
            status,
            limit,
        } => {
            let filter = ExecutionFilter {
                flow,
                state: status.as_deref().and_then(|s| s.parse().ok()),
                ..Default::default()
            };
            let rows = executions(&*store, &filter, limit.unwrap_or(usize::MAX)).await?;
            if json {
                outln!("{}", serde_json::Value::Array(rows.iter().map(exec_json).collect()));
            } else if rows.is_empty() {
                outln!("no executions yet");
            } else {
                for e in &rows {
                    outln!("{}  {:<11}  {}  {} ({})", e.id, e.state, e.started_at, e.flow, e.file);
                }
            }
        }
        Command::Show { id, json } => {
            let Some((exec, tasks)) = store.show(&id).await.map_err(|e| UsageError(e.0))? else {
                return Err(UsageError(format!("no execution `{id}` in the history")));
            };
            let artifacts = kflow_runtime::store::artifacts_in(&history.state.dir, &exec.id);
            let approvals = store.approvals(&exec.id).await.map_err(|e| UsageError(e.0))?;
            if json {
                let mut v = exec_json(&exec);
                v["tasks"] = serde_json::Value::Array(tasks.iter().map(task_json).collect());
                v["artifacts"] = artifacts
                    .iter()
                    .map(|(task, path, size)| json!({ "task": task, "path": path, "bytes": size }))
                    .collect();
                v["approvals"] = approvals_json(&approvals);
                outln!("{v:#}");
                return Ok(ExitCode::SUCCESS);
            }
            outln!("execution {} of flow {} ({})", exec.id, exec.flow, exec.file);
            outln!("state      {}", exec.state);
            if let Some(first) = &exec.rerun_of {
                outln!("rerun of   {first}");
            }
            if let Some(name) = exec.trigger.get("name").and_then(|n| n.as_str()) {
                let delivery = exec.trigger.get("delivery").and_then(|d| d.as_str()).unwrap_or("");
                let delivery = if delivery.is_empty() {
                    String::new()
                } else {
                    format!(" (delivery {delivery})")
                };
                outln!("trigger    {}{delivery}", printable(name));
            }
            outln!("started    {}", exec.started_at);
            outln!("ended      {}", exec.ended_at.as_deref().unwrap_or("-"));
            outln!("inputs     {}", exec.inputs);
            for t in &tasks {
                let tries = if t.attempts > 1 {
                    format!(" after {} attempts", t.attempts)
                } else {
                    String::new()
                };
                outln!("  {:<20} {:<14} {}{tries}", t.task, t.kind, t.state);
                if let Some(e) = &t.error {
                    for line in printable(e).lines() {
                        outln!("      {line}");
                    }
                }
            }
            for (task, path, size) in &artifacts {
                outln!("artifact   {task}: {} ({size} bytes)", path.display());
            }
            for a in &approvals {
                match &a.decision {
                    Some(d) => outln!(
                        "approval   {}: {} by {} (OS user {}) at {}",
                        a.task,
                        if d.approved { "approved" } else { "rejected" },
                        d.by,
                        d.os_user,
                        d.at
                    ),
                    None => outln!("approval   {}: waiting since {}", a.task, a.requested_at),
                }
            }
            if let serde_json::Value::Object(outputs) = &exec.outputs {
                for (k, v) in outputs {
                    outln!("output {}", super::values::output_line(k, v));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn prune(history: &History, keep: Option<usize>, older_than: Option<jiff::Span>) -> Result<ExitCode> {
    let before = match older_than {
        None => None,
        Some(age) => Some(
            jiff::ZonedDateTime::now()
                .checked_sub(age)
                .map_err(|e| UsageError(format!("--older-than {age}: {e}")))?
                .timestamp(),
        ),
    };
    let store = history.open_existing().await?;
    let removed = store.prune(keep, before).await.map_err(|e| UsageError(e.0))?;
    if history.url.is_some() {
        // The records went; what tasks kept on this machine goes too.
        for id in &removed {
            let dir = history.state.dir.join("artifacts").join(id);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(UsageError(format!("cannot remove {}: {e}", dir.display())));
                }
            }
        }
    }
    for id in &removed {
        outln!("removed {id}");
    }
    let plural = if removed.len() == 1 { "" } else { "s" };
    outln!("removed {} execution{plural}", removed.len());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The execution id (or a unique prefix of it, or `latest`).
    id: String,
    /// Only this task's log.
    task: Option<String>,
    /// Begin each line with the UTC time it was written.
    #[arg(long, short = 't')]
    timestamps: bool,
    /// Keep printing lines as they are written, until the execution ends.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    state: StateArg,
}

pub fn logs(args: LogsArgs) -> Result<ExitCode> {
    super::one_thread_runtime()?.block_on(logs_on(args))
}

async fn logs_on(args: LogsArgs) -> Result<ExitCode> {
    let store = args.state.history().open_read().await?;
    let Some((exec, tasks)) = store.show(&args.id).await.map_err(|e| UsageError(e.0))? else {
        return Err(UsageError(format!("no execution `{}` in the history", args.id)));
    };
    if let Some(t) = &args.task {
        if !tasks.iter().any(|r| &r.task == t) {
            let names: Vec<&str> = tasks.iter().map(|t| t.task.as_str()).collect();
            return Err(UsageError(format!(
                "execution {} has no task `{t}` (tasks: {})",
                exec.id,
                names.join(", ")
            )));
        }
    }
    let mut printer = LogPrinter {
        offset: 0,
        task: args.task.clone(),
        timestamps: args.timestamps,
    };
    if !args.follow {
        printer.print_new(&*store, &exec.id).await?;
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let running = store
            .show(&exec.id)
            .await
            .map_err(|e| UsageError(e.0))?
            .is_some_and(|(e, _)| e.state == ExecutionState::Running);
        // What was written before the state was read is all there is once
        // the execution has ended.
        printer.print_new(&*store, &exec.id).await?;
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Prints an execution's log lines as they are read.
struct LogPrinter {
    /// Where in the log the next read starts.
    offset: u64,
    /// Only this task's log (printed without the task's name).
    task: Option<String>,
    timestamps: bool,
}

impl LogPrinter {
    /// Prints every line written since the last call.
    async fn print_new(&mut self, store: &dyn Store, execution: &str) -> Result<()> {
        loop {
            let (lines, next) = store
                .read_log(execution, self.offset, LOG_READ_CHUNK)
                .await
                .map_err(|e| UsageError(e.0))?;
            self.offset = next;
            if lines.is_empty() {
                return Ok(());
            }
            for e in lines {
                if self.task.as_ref().is_some_and(|t| *t != e.task) {
                    continue;
                }
                let stamp = match (&e.stamp, self.timestamps) {
                    (Some(s), true) => format!("{s} "),
                    _ => String::new(),
                };
                let text = printable(&e.text);
                if self.task.is_some() {
                    outln!("{stamp}{text}");
                } else {
                    outln!("{stamp}{} | {text}", e.task);
                }
            }
        }
    }
}
