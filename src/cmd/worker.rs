//! `kflow worker`: runs the task attempts of a shared history on this
//! machine's Docker engine; `kflow workers list`: who runs what.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kflow_runtime::store::{PgStore, Store};
use kflow_runtime::worker;

use super::out::outln;
use super::state::History;
use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct Args {
    /// The shared PostgreSQL history, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// What this worker offers, `KEY=VALUE,…`: it takes only tasks whose
    /// `runs_on` these include.
    #[arg(long, value_name = "KEY=VALUE,…", default_value = "")]
    labels: String,
    /// The Docker engine its tasks use (a `DOCKER_HOST`: unix://, tcp://,
    /// ssh://; default: $DOCKER_HOST, else the local socket).
    #[arg(long, value_name = "DOCKER_HOST")]
    engine: Option<String>,
    /// Speak TLS to a tcp:// engine with the ca.pem, cert.pem and key.pem of
    /// this folder (as DOCKER_TLS_VERIFY=1 with DOCKER_CERT_PATH=DIR).
    #[arg(long, value_name = "DIR")]
    engine_certs: Option<PathBuf>,
    /// How many attempts it runs at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Its name among the history's workers (default: the host name and a random suffix).
    #[arg(long)]
    name: Option<String>,
    /// How long a claim lasts without renewal (renewed every fifth of it).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    lease: Duration,
    /// On SIGTERM, how long running attempts may finish before they are handed back.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    grace: Duration,
    /// Folder for what tasks keep on this machine (artifacts).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(subcommand)]
    command: ListCommand,
    /// The shared PostgreSQL history, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
}

#[derive(clap::Subcommand)]
enum ListCommand {
    /// Every worker: labels, engine, last heartbeat, what it runs.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// A duration of a second or more (a lease renewed every fifth of it).
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let d = super::serve::parse_duration(text)?;
    if d < Duration::from_secs(1) {
        return Err(format!("`{text}` is shorter than a second: write e.g. 15s, 1m"));
    }
    Ok(d)
}

/// The PostgreSQL history a worker command needs (SQLite has no workers).
async fn shared(history: &History) -> Result<Arc<PgStore>> {
    let Some(url) = history.url.as_deref() else {
        return Err(UsageError(
            "workers take their work from a shared history: give --store postgres://… or set KFLOW_STORE".into(),
        ));
    };
    Ok(Arc::new(super::state::connect(url).await?))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let labels = worker::parse_labels(&args.labels).map_err(|e| UsageError(format!("--labels: {e}")))?;
    if args.jobs == 0 {
        return Err(UsageError("--jobs must be at least 1".into()));
    }
    // Read by every connection to the engine this process makes (the
    // tasks', the reaper's, docker-compose's); set before any thread starts.
    if let Some(engine) = &args.engine {
        std::env::set_var("DOCKER_HOST", engine);
    }
    if let Some(dir) = &args.engine_certs {
        std::env::set_var("DOCKER_TLS_VERIFY", "1");
        std::env::set_var("DOCKER_CERT_PATH", dir);
    }
    // A wrong address or certificate is said now, not by every task.
    kflow_runtime::docker::endpoint::Endpoint::from_env().map_err(|e| UsageError(format!("the engine: {e}")))?;
    let history = History::find(args.state.as_deref(), args.store.as_deref());
    let runtime = super::run::runtime()?;
    runtime.block_on(async {
        let store = shared(&history).await?;
        // What killed attempts left on this engine goes first.
        super::gc::reap_quietly(&*store as &dyn Store).await;
        let cfg = worker::Config {
            id: args.name.clone().unwrap_or_else(worker::new_id),
            labels,
            engine: Some(kflow_runtime::docker::engine_address()),
            jobs: args.jobs,
            lease: args.lease,
            grace: args.grace,
            state_dir: history.state.dir.clone(),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        // SIGTERM or SIGINT drains (see `worker::run`); a second stops at once.
        super::run::on_signals(
            stop.clone(),
            "kflow worker: stopping: no new work; running attempts may finish (again to stop at once)",
        );
        eprintln!(
            "kflow worker {}: taking work from {} (labels: {}; jobs: {})",
            cfg.id,
            super::state::without_password(history.url.as_deref().unwrap_or_default()),
            if args.labels.is_empty() { "none" } else { &args.labels },
            cfg.jobs
        );
        worker::run(store, cfg, stop).await.map_err(UsageError)?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn list(args: ListArgs) -> Result<ExitCode> {
    let history = History::find(None, args.store.as_deref());
    super::one_thread_runtime()?.block_on(async {
        let store = shared(&history).await?;
        let ListCommand::List { json } = args.command;
        let workers = store.workers().await.map_err(|e| UsageError(e.0))?;
        let depth = store.queue_depth().await.map_err(|e| UsageError(e.0))?;
        if json {
            let rows: Vec<serde_json::Value> = workers
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "id": w.id, "host": w.host, "labels": w.labels, "engine": w.engine,
                        "jobs": w.jobs, "started_at": w.started_at, "heartbeat_age_s": w.silent_for,
                        "stopped": w.stopped, "running": w.running,
                    })
                })
                .collect();
            outln!("{}", serde_json::json!({ "queued": depth, "workers": rows }));
            return Ok(ExitCode::SUCCESS);
        }
        if workers.is_empty() {
            outln!("no workers yet ({depth} attempt(s) queued)");
            return Ok(ExitCode::SUCCESS);
        }
        for w in &workers {
            let status = if w.stopped {
                "stopped".to_string()
            } else {
                format!("heartbeat {:.0}s ago", w.silent_for)
            };
            outln!(
                "{}  {}  labels {}  jobs {}  {status}  running {}",
                w.id,
                w.host,
                if w.labels.is_empty() {
                    "-".into()
                } else {
                    worker::format_labels(&w.labels)
                },
                w.jobs,
                w.running.len()
            );
            for r in &w.running {
                outln!("    {r}");
            }
        }
        outln!("{depth} attempt(s) queued");
        Ok(ExitCode::SUCCESS)
    })
}
