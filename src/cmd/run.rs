use crate::cmd::out::outln;
use kflow_runtime::printable::printable;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kflow_compiler::analysis::analyze;
use kflow_compiler::ir::Plan;
use kflow_compiler::render::{self, FileReport, HumanStyle};
use kflow_runtime::executor::{execute, Event, Report, RunEnv, TaskRef};
use kflow_runtime::secret::Secret;
use kflow_runtime::store::{now, Change, NewExecution, Store};
use kflow_runtime::value::Value;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::console::{state_name, Console, Mode};
use super::{io_reason, Result, UsageError};

/// Tasks mostly wait on processes, registries and the network, so more of
/// them run at once than there are cores.
const DEFAULT_JOBS: usize = 16;

#[derive(clap::Args)]
pub struct Args {
    /// The flow file, or a folder of them (see --flow).
    file: PathBuf,
    /// An input value, `NAME=VALUE` (lists: comma-separated). Repeatable.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE")]
    inputs: Vec<String>,
    /// How many tasks may run at once.
    #[arg(long, default_value_t = DEFAULT_JOBS)]
    jobs: usize,
    /// Which flow, when the file (or folder) holds several.
    #[arg(long)]
    flow: Option<String>,
    /// Print one JSON event per line instead of the log.
    #[arg(long)]
    json: bool,
    /// Check, resolve the inputs and print the plan, without running anything.
    #[arg(long)]
    dry_run: bool,
    /// Folder of the execution history (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// When an approval has to wait, pause the execution and exit (printing
    /// its id) instead of waiting; `kflow resume ID` continues it.
    #[arg(long)]
    detach: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    // A reader that goes away must not stop the execution (see out.rs).
    super::out::outlive_reader();
    if args.jobs == 0 {
        return Err(UsageError("--jobs must be at least 1".into()));
    }
    let source = super::flow_source(&args.file, args.flow.as_deref())?;
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

    if let Some(why) = kflow_runtime::executor::unsupported(plan) {
        return Err(UsageError(format!("flow `{}` cannot run: {why}", plan.flow)));
    }

    let state = super::state::StateDir::find(args.state.as_deref());
    let mut store = Store::open(&state.dir).map_err(|e| UsageError(e.0))?;
    // Tasks in loops are recorded per iteration, as they start.
    let tasks: Vec<(String, String)> = kflow_runtime::executor::single_tasks(plan)
        .into_iter()
        .map(|id| (plan.nodes[id].name.clone(), plan.nodes[id].kind.clone()))
        .collect();
    let inputs_json: serde_json::Map<String, serde_json::Value> =
        inputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    let plan_json = serde_json::to_value(plan).map_err(|e| UsageError(format!("cannot record the plan: {e}")))?;
    let id = store
        .begin(&NewExecution {
            flow: &plan.flow,
            file: &source.name,
            inputs: &serde_json::Value::Object(inputs_json),
            tasks,
            plan: plan_json,
            base_dir: std::fs::canonicalize(&base_dir).unwrap_or_else(|_| base_dir.clone()),
            rerun_of: None,
        })
        .map_err(|e| UsageError(e.0))?;
    if args.json {
        outln!("{}", super::events::execution_started(&id, &plan.flow, None));
    } else {
        outln!("execution {id} of flow {}", plan.flow);
    }
    execute_recorded(Recorded {
        plan: plan.clone(),
        id,
        store,
        state,
        base_dir,
        inputs,
        secrets,
        restored: Default::default(),
        jobs: args.jobs,
        json: args.json,
        detach: args.detach,
    })
}

/// An execution in the history, ready to run (a new one, or a resumed one).
pub struct Recorded {
    pub plan: Plan,
    pub id: String,
    pub store: Store,
    pub state: super::state::StateDir,
    pub base_dir: PathBuf,
    pub inputs: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
    pub restored: std::collections::HashMap<String, kflow_runtime::tasks::Outputs>,
    pub jobs: usize,
    pub json: bool,
    pub detach: bool,
}

/// Runs a recorded execution to its end (or its pause), printing and
/// recording every event; the exit code says how it ended.
pub fn execute_recorded(r: Recorded) -> Result<ExitCode> {
    let Recorded {
        plan,
        id,
        store,
        state,
        base_dir,
        inputs,
        secrets,
        restored,
        jobs,
        json,
        detach,
    } = r;
    let history = store.history_id().map_err(|e| UsageError(e.0))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))?;
    let (report, recorder) = runtime.block_on(async {
        super::gc::reap_quietly(&store).await;
        let cancel = CancellationToken::new();
        watch_signals(cancel.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let mode = if json {
            Mode::Json
        } else if std::io::stdout().is_terminal() {
            Mode::Live {
                color: super::use_color(true),
                columns: super::term_width(),
            }
        } else {
            Mode::Plain
        };
        let width = plan.nodes.iter().map(|n| run_name_len(&plan, n)).max().unwrap_or(4);
        let console = Console::new(mode, width);
        let consumer = tokio::spawn(consume(rx, plan.clone(), console, store, id.clone()));
        let env = RunEnv {
            execution: id.clone(),
            history,
            artifacts: state.dir.join("artifacts").join(&id),
            state_dir: state.dir.clone(),
            state_hint: state.hint(),
            detach,
            restored,
            inputs,
            secrets,
            base_dir,
            jobs,
            cancel,
        };
        let report = execute(Arc::new(plan.clone()), env, tx).await;
        let recorder = consumer.await.expect("the event consumer does not panic");
        (report, recorder)
    });
    let Recorder { mut store, unrecorded } = recorder;
    let hint = state.hint();
    let state = report.outcome();
    let outputs: serde_json::Map<String, serde_json::Value> =
        report.outputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    if state == "paused" {
        // Left paused for `kflow approve` and `kflow resume`.
        if let Err(e) = store.leave_paused(&id) {
            eprintln!("kflow: {e}");
        }
        if json {
            outln!(
                "{}",
                super::events::execution_ended(&id, &plan.flow, "paused", &report.failures, &outputs)
            );
        } else {
            outln!("execution {id} is paused, waiting for approval");
            let st = &hint;
            outln!("decide: kflow approve {id} --as NAME{st}   (or kflow reject {id} --as NAME{st})");
            outln!("then:   kflow resume {id}{st}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A history that missed changes must not claim the run ended: it says
    // `interrupted` (and `resume` reruns what it did not see succeed).
    let (recorded_state, mut failures) = if unrecorded > 0 {
        ("interrupted", report.failures.clone())
    } else {
        (state, report.failures.clone())
    };
    if unrecorded > 0 {
        failures.push(format!(
            "the history could not record {unrecorded} change(s) of this execution (locked by another process)"
        ));
    }
    let deadline = std::time::Instant::now() + HISTORY_WAIT;
    loop {
        match store.finish(
            &id,
            recorded_state,
            &json!(failures),
            &serde_json::Value::Object(outputs.clone()),
        ) {
            Ok(()) => break,
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(500)),
            Err(e) => {
                eprintln!("kflow: {e}: the end of this execution is not recorded (it will show as interrupted)");
                break;
            }
        }
    }
    print_result(&plan, &id, &report, &outputs, json);
    Ok(match state {
        "interrupted" => ExitCode::from(130),
        "succeeded" => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// The length of a task run's name: loop iterations add `[i]` per loop
/// (counted as `[0]`, so small lists align).
fn run_name_len(plan: &Plan, node: &kflow_compiler::ir::Node) -> usize {
    let mut loops = 0;
    let mut at = node.scope;
    while let Some(r) = at {
        if matches!(plan.scopes[r.scope].kind, kflow_compiler::ir::ScopeKind::For { .. }) {
            loops += 1;
        }
        at = plan.scopes[r.scope].parent;
    }
    node.name.len() + 3 * loops
}

/// Reads every secret before anything runs; a missing one is a usage error
/// naming the variable or file, never the value.
pub fn read_secrets(plan: &Plan, base_dir: &std::path::Path) -> Result<BTreeMap<String, Secret>> {
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
                let mut text = std::fs::read_to_string(&path).map_err(|e| {
                    UsageError(format!(
                        "secret `{}`: cannot read {}: {}",
                        s.name,
                        path.display(),
                        io_reason(&e)
                    ))
                })?;
                // Editors and `echo pw > file` end the file with a line
                // ending that is not part of the secret: one is dropped.
                let end = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .map(str::len);
                if let Some(end) = end {
                    text.truncate(end);
                }
                text
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

/// Prints each event and records it in the history; store writes are
/// batched (one transaction per burst of events).
async fn consume(
    mut rx: mpsc::UnboundedReceiver<Event>,
    plan: Plan,
    mut console: Console,
    mut store: Store,
    id: String,
) -> Recorder {
    let mut warned = false;
    let mut pending: Vec<Change> = Vec::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let first = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => break,
            },
            _ = tick.tick(), if console.is_live() => {
                console.tick();
                continue;
            }
        };
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 1_000 {
                break;
            }
        }
        console.print(&batch);
        let mut changes = Vec::new();
        for event in &batch {
            let kind = |t: &TaskRef| plan.nodes[t.node].kind.clone();
            let result = match event {
                Event::Log { task, line } => store.log(&id, &task.name, &line.text).map(|_| ()),
                // Already recorded as succeeded before the resume.
                Event::Restored { .. } => Ok(()),
                Event::Started { task, attempt } => {
                    changes.push(Change::Started {
                        task: task.name.to_string(),
                        kind: kind(task),
                        attempt: *attempt,
                        at: now(),
                    });
                    Ok(())
                }
                Event::Retrying {
                    task, attempt, error, ..
                } => {
                    changes.push(Change::AttemptFailed {
                        task: task.name.to_string(),
                        attempt: attempt - 1,
                        error: error.clone(),
                        at: now(),
                    });
                    Ok(())
                }
                Event::Finished {
                    task,
                    state,
                    error,
                    outputs,
                    ..
                } => {
                    changes.push(Change::Finished {
                        task: task.name.to_string(),
                        kind: kind(task),
                        state: state_name(*state).to_string(),
                        error: error.clone(),
                        outputs: outputs.clone().unwrap_or(serde_json::Value::Null),
                        at: now(),
                    });
                    Ok(())
                }
            };
            if let (Err(e), false) = (result, warned) {
                console.finish();
                eprintln!("kflow: {e} (the run goes on)");
                warned = true;
            }
        }
        // The batch's lines are readable before its tasks are recorded as
        // finished.
        if let (Err(e), false) = (store.flush_logs(), warned) {
            console.finish();
            eprintln!("kflow: {e} (the run goes on)");
            warned = true;
        }
        // Changes that could not be written (another process holds the
        // history's lock past the busy timeout) are kept and written with
        // the next batch, in order: never dropped.
        pending.extend(changes);
        if let Err(e) = store.apply(&id, &pending) {
            if !warned {
                console.finish();
                eprintln!("kflow: {e}; the run goes on and the history is written when it can be");
                warned = true;
            }
        } else {
            pending.clear();
        }
    }
    console.finish();
    // The last changes wait for the lock a while longer before giving up.
    let deadline = std::time::Instant::now() + HISTORY_WAIT;
    while !pending.is_empty() {
        match store.apply(&id, &pending) {
            Ok(()) => pending.clear(),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await
            }
            Err(e) => {
                eprintln!(
                    "kflow: {e}: {} change(s) of this execution could not be recorded",
                    pending.len()
                );
                break;
            }
        }
    }
    Recorder {
        store,
        unrecorded: pending.len(),
    }
}

/// How long the end of a run waits for a history another process keeps
/// locked (on top of SQLite's own busy timeout per attempt).
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The history after a run, and how many changes it could not record.
struct Recorder {
    store: Store,
    unrecorded: usize,
}

fn print_plan(plan: &Plan, inputs: &BTreeMap<String, kflow_runtime::value::Value>) {
    outln!("flow {}: {} tasks", plan.flow, plan.nodes.len());
    for (name, v) in inputs {
        outln!("  input {name} = {}", v.to_json());
    }
    for n in &plan.nodes {
        let deps: Vec<&str> = n.deps.iter().map(|d| plan.nodes[d.node].name.as_str()).collect();
        if deps.is_empty() {
            outln!("  {} ({})", n.name, n.kind);
        } else {
            outln!("  {} ({}) after {}", n.name, n.kind, deps.join(", "));
        }
    }
}

fn print_result(
    plan: &Plan,
    id: &str,
    report: &Report,
    outputs: &serde_json::Map<String, serde_json::Value>,
    json: bool,
) {
    if json {
        outln!(
            "{}",
            super::events::execution_ended(id, &plan.flow, report.outcome(), &report.failures, outputs)
        );
        return;
    }
    for (name, v) in outputs {
        outln!("{}", super::values::output_line(name, v));
    }
    if report.cancelled {
        eprintln!("flow {} was interrupted", plan.flow);
    } else if !report.succeeded() {
        eprintln!("flow {} failed:", plan.flow);
        for f in &report.failures {
            let f = printable(f);
            let mut lines = f.lines();
            eprintln!("  {}", lines.next().unwrap_or(""));
            for more in lines {
                eprintln!("    {more}");
            }
        }
    }
}
