//! `kflow serve [PATH…]`: the flows of the paths as a service (see
//! kflow_server and docs/server.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct Args {
    /// Flow files and folders to serve (default: the current folder).
    paths: Vec<PathBuf>,
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8420")]
    listen: SocketAddr,
    /// Folder of the execution history (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Keep the history in a shared PostgreSQL database,
    /// `postgres://user:password@host:port/db` (default: $KFLOW_STORE); the
    /// --state folder then keeps only artifacts.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The URL the server is reached at, for links (behind a reverse proxy).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// How long running executions may finish after SIGTERM before they are cancelled.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    grace: Duration,
    /// How many tasks of one execution run at once.
    #[arg(long, default_value_t = 16)]
    jobs: usize,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How many executions run at once; more wait, recorded `queued`.
    #[arg(long, value_name = "N")]
    max_executions: Option<usize>,
    /// Take the signed-in user's name from this header, set by an
    /// authenticating proxy (e.g. X-Forwarded-User). Only where nothing but
    /// the proxy reaches the server.
    #[arg(long, value_name = "HEADER")]
    trust_proxy_header: Option<String>,
}

pub(super) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    kflow_compiler::grammar::parse_duration(s)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is not a duration: write e.g. `30s`, `2m`"))
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.jobs == 0 {
        return Err(UsageError("--jobs must be at least 1".into()));
    }
    if args.max_executions == Some(0) {
        return Err(UsageError("--max-executions must be at least 1".into()));
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths
    };
    for p in &paths {
        if !p.exists() {
            return Err(UsageError(format!("{} does not exist", p.display())));
        }
    }
    if let Some(url) = &args.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(UsageError(format!(
                "--public-url `{url}` must start with http:// or https://"
            )));
        }
    }
    let history = super::state::History::find(args.state.as_deref(), args.store.as_deref());
    if let Some(url) = &history.url {
        super::state::check_url(url)?;
    }
    let config = kflow_server::Config {
        paths,
        listen: args.listen,
        state: history.state.dir,
        store: history.url,
        public_url: args.public_url,
        grace: args.grace,
        jobs: args.jobs,
        tls: args.tls_cert.zip(args.tls_key),
        max_executions: args.max_executions,
        trust_proxy_header: args.trust_proxy_header,
    };
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(kflow_server::serve(config, |addr| {
            // The first line of standard output: where to reach it.
            println!("kflow serve: listening on {scheme}://{addr}");
        }))
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}
