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
use kflow_runtime::executor::{Report, RunEnv};
use kflow_runtime::secret::Secret;
use kflow_runtime::state::ExecutionState;
use kflow_runtime::store::{NewExecution, Store};
use kflow_runtime::value::Value;
use tokio_util::sync::CancellationToken;

use super::console::{Console, Mode};
use super::{Result, UsageError};

/// Tasks mostly wait on processes, registries and the network, so more of
/// them run at once than there are cores.
const DEFAULT_JOBS: usize = 16;

#[derive(clap::Args)]
pub struct Args {
    /// The flow file, or a folder of them (see --flow).
    file: PathBuf,
    /// An input value, `NAME=VALUE` (lists: comma-separated). Repeatable.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", conflicts_with = "trigger")]
    inputs: Vec<String>,
    /// Run as a delivery of this trigger would start the flow (a webhook's
    /// name, `schedule`, `file`): its filters and input bindings apply.
    #[arg(long, value_name = "NAME")]
    trigger: Option<String>,
    /// The delivery's body (a webhook's JSON payload; for a schedule or a
    /// file trigger, a JSON object of its fields).
    #[arg(long, value_name = "FILE", requires = "trigger")]
    payload: Option<PathBuf>,
    /// A header of the webhook delivery, `NAME=VALUE` (e.g.
    /// `X-GitHub-Event=push`). Repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE", requires = "trigger")]
    headers: Vec<String>,
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
    /// Record the execution in a shared PostgreSQL history,
    /// `postgres://user:password@host:port/db` (default: $KFLOW_STORE); the
    /// --state folder then keeps only artifacts.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
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
    let (inputs, trigger) = match &args.trigger {
        Some(name) => match super::delivery::bind(plan, name, args.payload.as_deref(), &args.headers)? {
            super::delivery::Outcome::Start { inputs, record } => (inputs, Some(record)),
            super::delivery::Outcome::Filtered(why) => {
                outln!("the delivery starts nothing: {}", printable(&why));
                return Ok(ExitCode::SUCCESS);
            }
        },
        None => {
            let mut given = Vec::new();
            for raw in &args.inputs {
                let (name, value) = raw
                    .split_once('=')
                    .ok_or_else(|| UsageError(format!("--input `{raw}`: write NAME=VALUE")))?;
                given.push((name.trim().to_string(), value.to_string()));
            }
            let inputs =
                kflow_runtime::inputs::resolve(plan, &given).map_err(|errs| UsageError(errs.join("\nerror: ")))?;
            (inputs, None)
        }
    };
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

    let history = super::state::History::find(args.state.as_deref(), args.store.as_deref());
    let runtime = runtime()?;
    let store = runtime.block_on(history.open())?;
    // Tasks in loops are recorded per iteration, as they start.
    let tasks: Vec<(String, String)> = kflow_runtime::executor::single_tasks(plan)
        .into_iter()
        .map(|id| (plan.nodes[id].name.clone(), plan.nodes[id].kind.clone()))
        .collect();
    let inputs_json: serde_json::Map<String, serde_json::Value> =
        inputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    let plan_json = serde_json::to_value(plan).map_err(|e| UsageError(format!("cannot record the plan: {e}")))?;
    let id = runtime
        .block_on(store.begin(&NewExecution {
            flow: &plan.flow,
            file: &source.name,
            inputs: &serde_json::Value::Object(inputs_json),
            tasks,
            plan: plan_json,
            base_dir: std::fs::canonicalize(&base_dir).unwrap_or_else(|_| base_dir.clone()),
            rerun_of: None,
            trigger,
            origin: kflow_runtime::store::Origin::Cli,
        }))
        .map_err(|e| UsageError(e.0))?;
    if args.json {
        outln!("{}", super::events::execution_started(&id, &plan.flow, None));
    } else {
        outln!("execution {id} of flow {}", plan.flow);
    }
    execute_recorded(Recorded {
        runtime,
        plan: plan.clone(),
        id,
        store,
        history,
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
    /// The runtime the store was opened on, which runs the execution.
    pub runtime: tokio::runtime::Runtime,
    pub plan: Plan,
    pub id: String,
    pub store: Arc<dyn Store>,
    pub history: super::state::History,
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
        runtime,
        plan,
        id,
        store,
        history,
        base_dir,
        inputs,
        secrets,
        restored,
        jobs,
        json,
        detach,
    } = r;
    let state = &history.state;
    let ended = runtime.block_on(async {
        super::gc::reap_quietly(&*store).await;
        let cancel = CancellationToken::new();
        watch_signals(cancel.clone());
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
        let env = RunEnv {
            execution: id.clone(),
            dispatch: None,
            artifacts: state.dir.join("artifacts").join(&id),
            state_dir: state.dir.clone(),
            store: store.clone(),
            state_hint: history.hint(),
            detach,
            restored,
            inputs,
            secrets,
            base_dir,
            jobs,
            cancel,
        };
        kflow_runtime::recorder::run(Arc::new(plan.clone()), env, console).await
    });
    let report = &ended.report;
    let outputs = &ended.outputs;
    let outcome = report.outcome();
    if outcome == ExecutionState::Paused {
        if json {
            outln!(
                "{}",
                super::events::execution_ended(&id, &plan.flow, outcome.as_str(), &report.failures, outputs)
            );
        } else {
            outln!("execution {id} is paused, waiting for approval");
            let st = history.hint();
            outln!("decide: kflow approve {id} --as NAME{st}   (or kflow reject {id} --as NAME{st})");
            outln!("then:   kflow resume {id}{st}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_result(&plan, &id, report, outputs, json);
    Ok(match outcome {
        ExecutionState::Interrupted => ExitCode::from(130),
        ExecutionState::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// The runtime an execution runs on (tasks mostly wait, on several
/// threads).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))
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

/// Reads every secret the run uses before anything runs (a webhook's key is
/// the server's alone); a missing one is a usage error naming the variable
/// or file, never the value.
pub fn read_secrets(plan: &Plan, base_dir: &std::path::Path) -> Result<BTreeMap<String, Secret>> {
    kflow_runtime::secret::read(plan, base_dir, kflow_runtime::secret::Readers::Run).map_err(UsageError)
}

/// First SIGINT/SIGTERM: stop the work and run `finally` blocks. Second:
/// stop at once.
fn watch_signals(cancel: CancellationToken) {
    on_signals(
        cancel,
        "kflow: interrupted: stopping tasks and running finally blocks (again to stop at once)",
    );
}

/// First SIGINT/SIGTERM: say `first` and cancel. Second: exit at once.
pub fn on_signals(cancel: CancellationToken, first: &'static str) {
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
                eprintln!("{first}");
                cancel.cancel();
            } else {
                eprintln!("kflow: stopping at once");
                std::process::exit(130);
            }
        }
    });
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
            super::events::execution_ended(id, &plan.flow, report.outcome().as_str(), &report.failures, outputs)
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
