//! `kflow serve`: the flows of a folder as a service. One process holds the
//! HTTP server (webhooks, the API), the trigger engine (schedules), the
//! executor (the runtime `kflow run` uses, recording into the same history)
//! and the reaper. The server drives executions only through the runtime's
//! public API and the store trait.
//!
//! Modules: `flows` (loading and reloading), `hooks` and `verify`
//! (webhooks), `schedules`, `launch` (executions and their concurrency),
//! `identity` (passwords, tokens, who asks), `api` (reads) and `actions`
//! (logins, starts, cancels, decisions), `error` (JSON errors).

pub mod actions;
pub mod api;
pub mod artifacts;
pub mod error;
pub mod files;
pub mod flows;
pub mod hooks;
pub mod identity;
pub mod launch;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod schedules;
pub mod tls;
pub mod ui;
pub mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use kflow_runtime::dispatch::Dispatcher;
use kflow_runtime::store::{NewDelivery, PgStore, SqliteStore, Store, Verdict};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::flows::Flows;
use crate::launch::{Launcher, Running};
use kflow_runtime::state::ExecutionState;

/// How `kflow serve` was asked to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Flow files and folders.
    pub paths: Vec<PathBuf>,
    pub listen: SocketAddr,
    /// The history's folder (with a PostgreSQL store: artifacts only).
    pub state: PathBuf,
    /// The shared history on PostgreSQL (`postgres://…`), instead of the
    /// folder's SQLite.
    pub store: Option<String>,
    /// The URL the server is reached at (behind a proxy); links use it.
    pub public_url: Option<String>,
    /// How long running executions may go on after a shutdown signal before
    /// they are cancelled.
    pub grace: Duration,
    /// How many tasks of one execution run at once.
    pub jobs: usize,
    /// A certificate chain and its key (PEM): serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How many executions run at once; more wait `queued`.
    pub max_executions: Option<usize>,
    /// A header naming the signed-in user, set by an authenticating proxy
    /// (`X-Forwarded-User`); trusted only when configured.
    pub trust_proxy_header: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Store(String),
    #[error("the HTTP server stopped: {0}")]
    Http(std::io::Error),
}

/// What every handler shares.
pub struct App {
    pub store: Arc<dyn Store>,
    pub flows: RwLock<Flows>,
    pub launcher: Launcher,
    /// `http://HOST:PORT` or the public URL, without a trailing `/`.
    pub base_url: String,
    pub logins: actions::LoginLimiter,
    pub metrics: metrics::Metrics,
    /// See [`Config::trust_proxy_header`].
    pub proxy_user_header: Option<axum::http::HeaderName>,
    /// Keys the UI's CSRF tokens.
    pub csrf_key: [u8; 32],
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn execution_url(&self, id: &str) -> String {
        self.url(&format!("/api/v1/executions/{id}"))
    }

    /// Records a delivery refused before its body was read (no such
    /// webhook, a bad signature, too large): no headers, no body.
    pub async fn record_unverified(&self, flow: &str, trigger: &str, status: u16, reason: &str) {
        eprintln!("kflow serve: delivery to /hooks/{flow}/{trigger} refused ({status}): {reason}");
        let d = NewDelivery {
            flow,
            trigger,
            delivery: None,
            status,
            verdict: Verdict::Unverified,
            reason: Some(reason),
            headers: None,
            body: None,
            replay_of: None,
            execution: None,
        };
        self.metrics.delivery(Verdict::Unverified.as_str());
        if let Err(e) = self.store.record_delivery(&d).await {
            eprintln!("kflow serve: the history: {e}");
        }
    }
}

/// Declares the routes once: the router is built from this list, and
/// [`ROUTES`] (held to the OpenAPI document by a test) is the same list.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:expr,)*) => {
        /// Every route: (method, path), as the router serves them.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn with_routes(router: Router<Arc<App>>) -> Router<Arc<App>> {
            router$(.route($path, $method($handler)))*
        }
    };
}

routes! {
    get "/healthz" => api::healthz,
    get "/metrics" => metrics::metrics,
    post "/hooks/{flow}/{trigger}" => hooks::receive,
    get "/api/v1/openapi.json" => openapi::document,
    post "/api/v1/login" => actions::login,
    get "/api/v1/flows" => api::flows,
    post "/api/v1/flows/{flow}/executions" => actions::start,
    get "/api/v1/executions" => api::executions,
    get "/api/v1/executions/{id}" => api::execution,
    get "/api/v1/executions/{id}/events" => live::events,
    get "/api/v1/executions/{id}/logs" => live::logs,
    get "/api/v1/executions/{id}/logs/{task}" => live::task_logs,
    post "/api/v1/executions/{id}/cancel" => actions::cancel,
    post "/api/v1/executions/{id}/resume" => actions::resume,
    post "/api/v1/executions/{id}/rerun" => actions::rerun,
    get "/api/v1/executions/{id}/artifacts/{name}" => artifacts::download,
    get "/api/v1/digests/{digest}" => api::digest,
    post "/api/v1/executions/{id}/approvals/{task}" => actions::decide,
    get "/api/v1/deliveries" => api::deliveries,
    post "/api/v1/deliveries/{id}/replay" => hooks::replay,
    get "/api/v1/audit" => actions::audit,
}

pub fn router(app: Arc<App>) -> Router {
    with_routes(Router::new())
        .merge(ui::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        // Bodies are read by the handlers, with their own limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

/// Serves until SIGTERM or SIGINT: then stops accepting, lets running
/// executions finish for the grace period, cancels the rest (their
/// `finally` blocks run; they are recorded `interrupted`), and returns.
/// `ready` hears the address once the server listens.
pub async fn serve(config: Config, ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls::config(cert, key).map_err(ServeError::Tls)?),
        None => None,
    };
    let proxy_user_header = match &config.trust_proxy_header {
        Some(h) => Some(
            axum::http::HeaderName::try_from(h.as_str())
                .map_err(|_| ServeError::Config(format!("--trust-proxy-header: `{h}` is not a header name")))?,
        ),
        None => None,
    };
    if proxy_user_header.is_some() && !config.listen.ip().is_loopback() {
        eprintln!(
            "kflow serve: --trust-proxy-header on {}: whoever reaches this address directly can name any user; listen where only the proxy reaches",
            config.listen
        );
    }
    if tls.is_none()
        && !config.listen.ip().is_loopback()
        && config.public_url.as_deref().is_none_or(|u| u.starts_with("http://"))
    {
        eprintln!(
            "kflow serve: listening on {} in plain HTTP: tokens and passwords cross the network readable; put a TLS proxy in front (--public-url https://…)",
            config.listen
        );
    }
    // A shared history: its workers run the tasks (see `dispatch`).
    let (store, dispatch): (Arc<dyn Store>, _) = match &config.store {
        Some(url) => {
            let pg = Arc::new(PgStore::connect(url).await.map_err(|e| ServeError::Store(e.0))?);
            (pg.clone(), Some(Dispatcher::start(pg)))
        }
        None => {
            let sqlite = SqliteStore::open(&config.state)
                .map_err(|e| ServeError::Store(format!("the history in {}: {}", config.state.display(), e.0)))?;
            (Arc::new(sqlite), None)
        }
    };
    reap(&*store).await;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServeError::Listen(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(config.listen, e))?;
    let base_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{}://{addr}", if tls.is_some() { "https" } else { "http" }))
        .trim_end_matches('/')
        .to_string();
    let flows = flows::load(&config.paths, &Flows::default());
    report_broken(&flows);
    let app = Arc::new(App {
        store: store.clone(),
        flows: RwLock::new(flows),
        launcher: Launcher::new(
            store,
            config.state.clone(),
            config.jobs,
            config.max_executions,
            dispatch,
        ),
        base_url,
        logins: Default::default(),
        metrics: Default::default(),
        proxy_user_header,
        csrf_key: identity::csrf_key(),
    });
    resume_orphans(&app).await;
    let stop = CancellationToken::new();
    watch_signals(stop.clone(), app.launcher.running.clone());
    let reloader = tokio::spawn(reload(app.clone(), config.paths.clone(), stop.clone()));
    let scheduler = tokio::spawn(schedules::run(app.clone(), stop.clone()));
    let watcher = tokio::spawn(files::run(app.clone(), stop.clone()));
    ready(addr);
    let http = match tls {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls).map_err(|e| ServeError::Listen(addr, e))?;
            http(listener, app.clone(), stop.clone()).await
        }
        None => http(listener, app.clone(), stop.clone()).await,
    };
    let _ = reloader.await;
    let _ = scheduler.await;
    let _ = watcher.await;
    // Accepting stopped: running executions get the grace period.
    let running = app.launcher.running.clone();
    running.tracker.close();
    if running.count() > 0 {
        eprintln!(
            "kflow serve: {} execution(s) running: waiting up to {}s before cancelling them",
            running.count(),
            config.grace.as_secs()
        );
    }
    if tokio::time::timeout(config.grace, running.tracker.wait())
        .await
        .is_err()
    {
        running.cancel_all();
        running.tracker.wait().await;
    }
    http.map_err(ServeError::Http)
}

/// Serves the router on `listener` until `stop`.
async fn http<L>(listener: L, app: Arc<App>, stop: CancellationToken) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use axum::serve::ListenerExt;
    // `tap_io` gives any listener with socket addresses the peer address
    // the handlers read (`ConnectInfo`).
    let listener = listener.tap_io(|_| {});
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// What killed executions left (containers, networks, volumes, processes)
/// is reclaimed before anything starts.
async fn reap(store: &dyn Store) {
    use kflow_runtime::reaper;
    if let Err(e) = reaper::kill_leftover_processes(store).await {
        eprintln!("kflow serve: {e}");
    }
    if let Some(docker) = reaper::connect_quickly().await {
        if let Err(e) = reaper::reap(&docker, store, false).await {
            eprintln!("kflow serve: the reaper: {e}");
        }
    }
}

/// Executions this server started and did not finish go on: interrupted
/// ones run from what succeeded, paused ones wait at their gate again.
async fn resume_orphans(app: &App) {
    let orphans = match app.store.server_orphans().await {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("kflow serve: the history: {e}");
            return;
        }
    };
    for (id, state) in orphans {
        let done = match state {
            ExecutionState::Queued => app.launcher.admit(&id).await,
            _ => app.launcher.resume(&id).await,
        };
        match done {
            Ok(()) => eprintln!("kflow serve: resumed execution {id} ({state})"),
            Err(e) => eprintln!("kflow serve: cannot resume execution {id}: {e}"),
        }
    }
}

fn report_broken(flows: &Flows) {
    for b in &flows.broken {
        eprint!("{}", b.report);
        if !b.serving.is_empty() {
            eprintln!(
                "kflow serve: still serving the last good version of {}",
                b.serving.join(", ")
            );
        }
    }
    eprintln!("kflow serve: serving {} flow(s)", flows.flows.len());
}

/// Checks the flows again when a file changes (polled: the same on every
/// file system, including network and container mounts).
async fn reload(app: Arc<App>, paths: Vec<PathBuf>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => return,
        }
        let current = app.flows.read().await.clone();
        let paths_now = paths.clone();
        let changed = tokio::task::spawn_blocking(move || flows::changed(&paths_now, &current))
            .await
            .unwrap_or(false);
        if changed {
            let current = app.flows.read().await.clone();
            let paths = paths.clone();
            // Reading and checking files is blocking work.
            let Ok(next) = tokio::task::spawn_blocking(move || flows::load(&paths, &current)).await else {
                continue;
            };
            report_broken(&next);
            *app.flows.write().await = next;
        }
    }
}

/// The first SIGTERM or SIGINT stops the server gracefully; a second one
/// cancels running executions at once (their `finally` blocks run and they
/// are recorded); a third exits without waiting.
fn watch_signals(stop: CancellationToken, running: Arc<Running>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("kflow serve: stopping: no new deliveries; running executions may finish (again to cancel them)");
        stop.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("kflow serve: cancelling running executions (again to exit at once)");
        running.cancel_all();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
}
