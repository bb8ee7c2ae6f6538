//! `kflow executions list|show` and `kflow logs`: reading the history.

use crate::cmd::out::outln;
use kflow_runtime::printable::printable;
use std::path::PathBuf;
use std::process::ExitCode;

use kflow_runtime::store::{ExecutionRow, Store, TaskRow};
use serde_json::json;

use super::{io_reason, Result, UsageError};

#[derive(clap::Args)]
pub struct StateArg {
    /// Folder of the execution history (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR", global = true)]
    state: Option<PathBuf>,
}

impl StateArg {
    fn open(&self) -> Result<Store> {
        let dir = super::state::StateDir::find(self.state.as_deref()).dir;
        if !dir.join("history.db").exists() {
            return Err(UsageError(format!(
                "no execution history in {} (run a flow first, or pass --state DIR)",
                dir.display()
            )));
        }
        // Reading needs no write access.
        Store::open_read(&dir).map_err(|e| UsageError(e.0))
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// List executions, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One execution: its inputs, tasks, attempts, errors and outputs.
    Show {
        /// The execution id (or a unique prefix of it).
        id: String,
        #[arg(long)]
        json: bool,
    },
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
    let store = args.state.open()?;
    match args.command {
        Command::List { json } => {
            let rows = store.list().map_err(|e| UsageError(e.0))?;
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
            let Some((exec, tasks)) = store.show(&id).map_err(|e| UsageError(e.0))? else {
                return Err(UsageError(format!("no execution `{id}` in the history")));
            };
            let artifacts = store.artifacts(&exec.id);
            let approvals = store.approvals(&exec.id).map_err(|e| UsageError(e.0))?;
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
                    outln!("output {k} = {}", printable(&v.to_string()));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The execution id (or a unique prefix of it).
    id: String,
    /// Only this task's log.
    task: Option<String>,
    #[command(flatten)]
    state: StateArg,
}

pub fn logs(args: LogsArgs) -> Result<ExitCode> {
    let store = args.state.open()?;
    let Some((exec, tasks)) = store.show(&args.id).map_err(|e| UsageError(e.0))? else {
        return Err(UsageError(format!("no execution `{}` in the history", args.id)));
    };
    let names: Vec<&str> = tasks.iter().map(|t| t.task.as_str()).collect();
    let wanted: Vec<&str> = match &args.task {
        Some(t) if names.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => {
            return Err(UsageError(format!(
                "execution {} has no task `{t}` (tasks: {})",
                exec.id,
                names.join(", ")
            )))
        }
        None => names,
    };
    for task in wanted {
        let path = store.log_path(&exec.id, task);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(UsageError(format!("cannot read {}: {}", path.display(), io_reason(&e)))),
        };
        for line in printable(&text).lines() {
            if args.task.is_some() {
                outln!("{line}");
            } else {
                outln!("{task} | {line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
