use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kflow_compiler::analysis::analyze;
use kflow_compiler::ir::Plan;
use kflow_compiler::render::{self, FileReport, HumanStyle};
use kflow_runtime::executor::{execute, Event, Report, RunEnv, State};
use kflow_runtime::secret::Secret;
use kflow_runtime::tasks::Stream;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{io_reason, read_sources, Result, UsageError};

/// Tasks mostly wait on processes, registries and the network, so more of
/// them run at once than there are cores.
const DEFAULT_JOBS: usize = 16;

#[derive(clap::Args)]
pub struct Args {
    /// The flow file.
    file: PathBuf,
    /// An input value, `NAME=VALUE` (lists: comma-separated). Repeatable.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE")]
    inputs: Vec<String>,
    /// How many tasks may run at once.
    #[arg(long, default_value_t = DEFAULT_JOBS)]
    jobs: usize,
    /// Which flow, when the file holds several.
    #[arg(long)]
    flow: Option<String>,
    /// Print one JSON event per line instead of the log.
    #[arg(long)]
    json: bool,
    /// Check, resolve the inputs and print the plan, without running anything.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.jobs == 0 {
        return Err(UsageError("--jobs must be at least 1".into()));
    }
    let source = read_sources(std::slice::from_ref(&args.file))?.remove(0);
    let analysis = analyze(&source.text, &source.options());
    if analysis.has_errors() {
        let errors: Vec<_> = analysis.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
        let report = FileReport {
            path: &source.name,
            src: &source.text,
            diagnostics: &errors,
        };
        let style = HumanStyle {
            color: super::use_color(std::io::stderr().is_terminal()),
            width: super::term_width(),
        };
        eprint!("{}", render::human(&report, style));
        return Err(UsageError(format!("{} has errors; nothing was run", source.name)));
    }
    let flow = super::graph::pick_flow(&analysis.flows, args.flow.as_deref(), &source.name)?;
    let plan = &flow.plan;
    let mut given = Vec::new();
    for raw in &args.inputs {
        let (name, value) = raw
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--input `{raw}`: write NAME=VALUE")))?;
        given.push((name.trim().to_string(), value.to_string()));
    }
    let inputs = kflow_runtime::inputs::resolve(plan, &given).map_err(|errs| UsageError(errs.join("\nerror: ")))?;
    let base_dir = match source.path.as_ref().and_then(|p| p.parent()) {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let secrets = read_secrets(plan, &base_dir)?;
    if args.dry_run {
        print_plan(plan, &inputs);
        return Ok(ExitCode::SUCCESS);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))?;
    let report = runtime.block_on(async {
        let cancel = CancellationToken::new();
        watch_signals(cancel.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let printer = tokio::spawn(print_events(rx, plan.clone(), args.json));
        let env = RunEnv {
            inputs,
            secrets,
            base_dir,
            jobs: args.jobs,
            cancel,
        };
        let report = execute(plan, env, tx).await;
        let _ = printer.await;
        report
    });
    print_result(plan, &report, args.json);
    Ok(if report.cancelled {
        ExitCode::from(130)
    } else if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads every secret before anything runs; a missing one is a usage error
/// naming the variable or file, never the value.
fn read_secrets(plan: &Plan, base_dir: &std::path::Path) -> Result<BTreeMap<String, Secret>> {
    let mut out = BTreeMap::new();
    for s in &plan.secrets {
        let arg = match &s.arg {
            kflow_compiler::ir::Expr::Str { value } => value.clone(),
            _ => {
                return Err(UsageError(format!(
                    "secret `{}`: its source must be a plain string",
                    s.name
                )))
            }
        };
        let value = match s.source.as_str() {
            "env" => std::env::var(&arg)
                .map_err(|_| UsageError(format!("secret `{}`: environment variable `{arg}` is not set", s.name)))?,
            _ => {
                let path = base_dir.join(&arg);
                std::fs::read_to_string(&path).map_err(|e| {
                    UsageError(format!(
                        "secret `{}`: cannot read {}: {}",
                        s.name,
                        path.display(),
                        io_reason(&e)
                    ))
                })?
            }
        };
        out.insert(s.name.clone(), Secret::new(value));
    }
    Ok(out)
}

/// First SIGINT/SIGTERM: stop the work and run `finally` blocks. Second:
/// stop at once.
fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                eprintln!("kflow: interrupted: stopping tasks and running finally blocks (again to stop at once)");
                cancel.cancel();
            } else {
                eprintln!("kflow: stopping at once");
                std::process::exit(130);
            }
        }
    });
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Pending => "pending",
        State::Running => "running",
        State::Succeeded => "succeeded",
        State::Failed => "failed",
        State::Skipped => "skipped",
        State::Cancelled => "cancelled",
    }
}

async fn print_events(mut rx: mpsc::UnboundedReceiver<Event>, plan: Plan, json: bool) {
    let start = Instant::now();
    let width = plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
    let mut out = std::io::stdout();
    while let Some(event) = rx.recv().await {
        let t = start.elapsed().as_secs_f64();
        let line = if json {
            let name = |id: usize| plan.nodes[id].name.clone();
            let v = match &event {
                Event::Started { node, attempt } => {
                    json!({ "event": "started", "task": name(*node), "attempt": attempt, "t": t })
                }
                Event::Log { node, line } => json!({
                    "event": "log",
                    "task": name(*node),
                    "stream": match line.stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr", Stream::Info => "info" },
                    "text": line.text,
                    "t": t,
                }),
                Event::Retrying {
                    node,
                    attempt,
                    error,
                    delay,
                } => json!({
                    "event": "retrying", "task": name(*node), "attempt": attempt, "error": error,
                    "delay_ms": delay.as_millis() as u64, "t": t,
                }),
                Event::Finished {
                    node,
                    state,
                    error,
                    elapsed,
                } => json!({
                    "event": "finished", "task": name(*node), "state": state_name(*state), "error": error,
                    "elapsed_ms": elapsed.as_millis() as u64, "t": t,
                }),
            };
            v.to_string()
        } else {
            let name = |id: usize| format!("{:>width$}", plan.nodes[id].name);
            match &event {
                Event::Started { node, attempt: 1 } => format!("[{t:8.3}s] {} | started", name(*node)),
                Event::Started { node, attempt } => format!("[{t:8.3}s] {} | attempt {attempt}", name(*node)),
                Event::Log { node, line } => format!("[{t:8.3}s] {} | {}", name(*node), line.text),
                Event::Retrying {
                    node,
                    attempt,
                    error,
                    delay,
                } => format!(
                    "[{t:8.3}s] {} | failed, attempt {attempt} in {}: {}",
                    name(*node),
                    kflow_runtime::value::format_duration(delay.as_millis() as u64),
                    error.lines().next().unwrap_or("")
                ),
                Event::Finished {
                    node,
                    state: State::Skipped,
                    ..
                } => {
                    format!("[{t:8.3}s] {} | skipped", name(*node))
                }
                Event::Finished {
                    node,
                    state,
                    error,
                    elapsed,
                } => {
                    let mut s = format!(
                        "[{t:8.3}s] {} | {} in {:.2}s",
                        name(*node),
                        state_name(*state),
                        elapsed.as_secs_f64()
                    );
                    // Multi-line errors (a command's stderr) keep the prefix.
                    let mut lines = error.as_deref().unwrap_or("").lines();
                    if let Some(first) = lines.next() {
                        s.push_str(&format!(": {first}"));
                    }
                    for more in lines {
                        s.push_str(&format!("\n[{t:8.3}s] {} |   {more}", name(*node)));
                    }
                    s
                }
            }
        };
        let _ = writeln!(out, "{line}");
    }
}

fn print_plan(plan: &Plan, inputs: &BTreeMap<String, kflow_runtime::value::Value>) {
    println!("flow {}: {} tasks", plan.flow, plan.nodes.len());
    for (name, v) in inputs {
        println!("  input {name} = {}", v.to_json());
    }
    for n in &plan.nodes {
        let deps: Vec<&str> = n.deps.iter().map(|d| plan.nodes[d.node].name.as_str()).collect();
        if deps.is_empty() {
            println!("  {} ({})", n.name, n.kind);
        } else {
            println!("  {} ({}) after {}", n.name, n.kind, deps.join(", "));
        }
    }
}

fn print_result(plan: &Plan, report: &Report, json: bool) {
    let outputs: serde_json::Map<String, serde_json::Value> =
        report.outputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    if json {
        let state = if report.cancelled {
            "interrupted"
        } else if report.succeeded() {
            "succeeded"
        } else {
            "failed"
        };
        println!(
            "{}",
            json!({ "event": "execution", "flow": plan.flow, "state": state, "failures": report.failures, "outputs": outputs })
        );
        return;
    }
    for (name, v) in &outputs {
        match v {
            serde_json::Value::Null => println!("{name} (not produced)"),
            serde_json::Value::String(s) => println!("{name} = {s}"),
            other => println!("{name} = {other}"),
        }
    }
    if report.cancelled {
        eprintln!("flow {} was interrupted", plan.flow);
    } else if !report.succeeded() {
        eprintln!("flow {} failed:", plan.flow);
        for f in &report.failures {
            let mut lines = f.lines();
            eprintln!("  {}", lines.next().unwrap_or(""));
            for more in lines {
                eprintln!("    {more}");
            }
        }
    }
}
