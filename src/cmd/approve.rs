//! `kflow approve`, `kflow reject` and `kflow resume`: deciding a paused
//! gate from any shell, and continuing an execution that paused or was
//! interrupted.

use crate::cmd::out::outln;
use std::path::PathBuf;
use std::process::ExitCode;

use kflow_runtime::state::ExecutionState;
use kflow_runtime::store::Decision;

use super::state::History;
use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct DecideArgs {
    /// The execution id (or a unique prefix of it).
    id: String,
    /// Who decides (checked against the gate's `reviewers`), for a local
    /// history; through a server, the token says who.
    #[arg(long = "as", value_name = "NAME")]
    by: Option<String>,
    /// Decide through this `kflow serve` (default: $KFLOW_SERVER), as the
    /// user of $KFLOW_TOKEN.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Why.
    #[arg(long, default_value = "")]
    comment: String,
    /// Which gate, when several wait.
    #[arg(long)]
    task: Option<String>,
    /// Folder of the execution history (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The shared PostgreSQL history, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    /// The execution id (or a unique prefix of it).
    id: String,
    /// Resume it in this `kflow serve` (default: $KFLOW_SERVER), as the user
    /// of $KFLOW_TOKEN.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    #[command(flatten)]
    run: super::recorded::RunFlags,
}

#[derive(clap::Args)]
pub struct CancelArgs {
    /// The execution id.
    id: String,
    /// The `kflow serve` running it (default: $KFLOW_SERVER); as the user of $KFLOW_TOKEN.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

/// `kflow cancel`: stops an execution a server runs (its `finally` blocks
/// run; it is recorded `cancelled`). A run of `kflow run` stops with Ctrl-C.
pub fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let Some(server) = super::remote::server(args.server.as_deref()) else {
        return Err(UsageError(
            "kflow cancel works through a server (--server URL or KFLOW_SERVER); a `kflow run` stops with Ctrl-C"
                .into(),
        ));
    };
    let client = super::remote::Client::new(server)?;
    client.post(
        &format!("/api/v1/executions/{}/cancel", url_part(&args.id)),
        &serde_json::json!({}),
    )?;
    outln!("execution {} cancelled", args.id);
    Ok(ExitCode::SUCCESS)
}

/// A path segment: ids are plain words, but what the user typed goes
/// through as data, never as more of the path.
fn url_part(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decides through a server: the gate named, or the one gate waiting.
fn decide_remote(server: String, args: &DecideArgs, approved: bool) -> Result<ExitCode> {
    if args.by.is_some() {
        return Err(UsageError(
            "--as is for a local history: through a server, KFLOW_TOKEN says who decides".into(),
        ));
    }
    let client = super::remote::Client::new(server)?;
    let id = url_part(&args.id);
    let task = match &args.task {
        Some(t) => t.clone(),
        None => {
            let e = client.get(&format!("/api/v1/executions/{id}"))?;
            let waiting: Vec<String> = e["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|g| g["decision"].is_null())
                .filter_map(|g| g["task"].as_str().map(str::to_string))
                .collect();
            match waiting.as_slice() {
                [] => return Err(UsageError(format!("execution {} has no approval waiting", args.id))),
                [one] => one.clone(),
                several => {
                    return Err(UsageError(format!(
                        "several approvals wait ({}): choose one with --task",
                        several.join(", ")
                    )))
                }
            }
        }
    };
    let body = serde_json::json!({
        "decision": if approved { "approve" } else { "reject" },
        "comment": args.comment,
    });
    let r = client.post(&format!("/api/v1/executions/{id}/approvals/{}", url_part(&task)), &body)?;
    let verb = if approved { "approved" } else { "rejected" };
    outln!(
        "{verb} `{task}` of execution {} as {}",
        args.id,
        r["by"].as_str().unwrap_or("?")
    );
    if r["decided"] == false {
        outln!(
            "{} of {} approvals: the gate waits for more",
            r["approvals"].as_u64().unwrap_or(0),
            r["required"].as_u64().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn approve(args: DecideArgs) -> Result<ExitCode> {
    decide(args, true)
}

pub fn reject(args: DecideArgs) -> Result<ExitCode> {
    decide(args, false)
}

/// A reviewer's name: what the gate's `reviewers` list and the history
/// record, so not empty, not blank, printable, and short.
fn reviewer_name(name: &str) -> Result<&str> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(UsageError("--as needs a name: who decides".into()));
    }
    if trimmed.chars().any(char::is_control) || trimmed.chars().count() > 128 {
        return Err(UsageError(
            "--as takes a name of at most 128 printable characters".into(),
        ));
    }
    Ok(trimmed)
}

fn decide(args: DecideArgs, approved: bool) -> Result<ExitCode> {
    if let Some(server) = super::remote::server(args.server.as_deref()) {
        return decide_remote(server, &args, approved);
    }
    let by = reviewer_name(args.by.as_deref().unwrap_or(""))?.to_string();
    let history = super::state::History::find(args.state.as_deref(), args.store.as_deref());
    super::one_thread_runtime()?.block_on(decide_local(&history, &args, by, approved))
}

async fn decide_local(history: &History, args: &DecideArgs, by: String, approved: bool) -> Result<ExitCode> {
    let store = history.open_existing().await?;
    let (exec, _) = store
        .show(&args.id)
        .await
        .map_err(|e| UsageError(e.0))?
        .ok_or_else(|| UsageError(format!("no execution `{}` in the history", args.id)))?;
    let mut pending = store.approvals(&exec.id).await.map_err(|e| UsageError(e.0))?;
    pending.retain(|a| a.decision.is_none());
    let gate = match (&args.task, pending.len()) {
        (_, 0) => {
            return Err(UsageError(format!(
                "execution {} has no approval waiting for a decision",
                exec.id
            )))
        }
        (Some(t), _) => pending
            .iter()
            .find(|a| &a.task == t)
            .ok_or_else(|| UsageError(format!("no approval `{t}` waits in execution {}", exec.id)))?,
        (None, 1) => &pending[0],
        (None, _) => {
            let names: Vec<&str> = pending.iter().map(|a| a.task.as_str()).collect();
            return Err(UsageError(format!(
                "several approvals wait ({}): choose one with --task",
                names.join(", ")
            )));
        }
    };
    gate.may_decide(&by).map_err(UsageError)?;
    let decision = Decision {
        approved,
        by: by.clone(),
        at: kflow_runtime::tasks::approval::rfc3339(jiff::Timestamp::now()),
        comment: args.comment.clone(),
        os_user: kflow_runtime::owner::os_user(),
    };
    let outcome = store
        .vote(&exec.id, &gate.task, &decision)
        .await
        .map_err(|e| UsageError(e.0))?;
    let verb = if approved { "approved" } else { "rejected" };
    outln!("{verb} `{}` of execution {} as {by}", gate.task, exec.id);
    if let kflow_runtime::store::VoteOutcome::Counted { have, need } = outcome {
        outln!("{have} of {need} approvals: the gate waits for more");
        return Ok(ExitCode::SUCCESS);
    }
    if !store.process_alive(&exec.id).await.map_err(|e| UsageError(e.0))? {
        outln!("the execution is not running: `kflow resume {}` continues it", exec.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn resume(args: ResumeArgs) -> Result<ExitCode> {
    if let Some(server) = super::remote::server(args.server.as_deref()) {
        let client = super::remote::Client::new(server)?;
        client.post(
            &format!("/api/v1/executions/{}/resume", url_part(&args.id)),
            &serde_json::json!({}),
        )?;
        outln!("execution {} resumed by the server", args.id);
        return Ok(ExitCode::SUCCESS);
    }
    super::out::outlive_reader();
    if args.run.jobs == 0 {
        return Err(UsageError("--jobs must be at least 1".into()));
    }
    let history = args.run.history();
    let runtime = super::run::runtime()?;
    let store = runtime.block_on(history.open_existing())?;
    let r = runtime
        .block_on(store.resumable(&args.id))
        .map_err(|e| UsageError(e.0))?
        .ok_or_else(|| UsageError(format!("no execution `{}` in the history", args.id)))?;
    let alive = runtime
        .block_on(store.process_alive(&r.id))
        .map_err(|e| UsageError(e.0))?;
    match r.state {
        ExecutionState::Paused | ExecutionState::Interrupted => {}
        ExecutionState::Running if alive => return Err(UsageError(format!("execution {} is still running", r.id))),
        other => {
            return Err(UsageError(format!(
                "execution {} {other}: only paused or interrupted executions resume (run the flow again instead)",
                r.id
            )))
        }
    }
    if alive {
        return Err(UsageError(format!(
            "execution {} is still waiting in another kflow process; decide with `kflow approve`",
            r.id
        )));
    }
    let super::recorded::Loaded { plan, inputs, secrets } = super::recorded::load(&r)?;
    let restored = super::recorded::restored(&plan, &r.done)?;
    runtime.block_on(store.reopen(&r.id)).map_err(|e| UsageError(e.0))?;
    if args.run.json {
        outln!("{}", super::events::execution_resumed(&r.id, &r.flow));
    } else {
        outln!(
            "resuming execution {} of flow {} ({} task run(s) done before)",
            r.id,
            r.flow,
            restored.len()
        );
    }
    super::run::execute_recorded(super::run::Recorded {
        runtime,
        plan,
        id: r.id,
        store,
        history,
        base_dir: r.base_dir,
        inputs,
        secrets,
        restored,
        jobs: args.run.jobs,
        json: args.run.json,
        detach: args.run.detach,
    })
}
