//! The history on PostgreSQL, shared by `kflow` processes on several
//! machines: the records of the SQLite history behind the same [`Store`]
//! trait, plus what a shared database needs.
//!
//! - **Liveness by lease.** A process on another machine cannot be asked
//!   whether it lives, so each execution a process runs holds a lease
//!   (`lease_until`, by the database's clock) that the process renews every
//!   [`LEASE_RENEW`]; a running execution whose lease ran out is
//!   interrupted.
//! - **Logs as rows**, numbered per execution under the execution's row
//!   lock: numbers are given in commit order, so a reader that has seen
//!   line n never misses a line below n.
//! - **Pooled connections** (deadpool): a call takes one for its statements
//!   and gives it back; a connection the server closed (a restart) is
//!   replaced, and no transaction outlives the call that opened it.
//!
//! Times recorded in the history are the RFC 3339 text the SQLite history
//! keeps, from the process's clock (the executor stamps its events); leases
//! use the database's.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

mod executions;
mod gates;
mod logs;
mod port;
mod queue;
mod schema;
mod server;

pub use queue::{Claimed, NewTask, Outcome, QueueStats, Settled, WorkerRow, QUEUED, SETTLED};

use super::{Result, StoreError};

/// How often a process renews the leases of the executions it runs.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How long a lease lasts: three renewals may fail before it lapses.
const LEASE_SECONDS: f64 = 30.0;

/// The PostgreSQL history.
pub struct PgStore {
    pool: Pool,
    /// For connections of their own (`LISTEN`).
    config: tokio_postgres::Config,
    history: String,
    /// This process, as recorded on the executions it runs.
    owner: String,
    /// The executions whose leases this process renews.
    held: Arc<Mutex<HashSet<String>>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The database's own message (a constraint, a lost connection);
        // tokio-postgres never puts the connection's password in one.
        match e.as_db_error() {
            Some(db) => StoreError(format!("execution history (PostgreSQL): {}", db.message())),
            None => match std::error::Error::source(&e) {
                Some(cause) => StoreError(format!("execution history (PostgreSQL): {e}: {cause}")),
                None => StoreError(format!("execution history (PostgreSQL): {e}")),
            },
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Timeout(_) => {
                StoreError("execution history (PostgreSQL): no connection within 30 s".into())
            }
            other => StoreError(format!("execution history (PostgreSQL): {other}")),
        }
    }
}

/// Whether `location` names a PostgreSQL database rather than a folder.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `postgres://user@host:port/db`: where a URL points, without its password,
/// for messages.
pub fn shown(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

impl PgStore {
    /// Connects to the database a `postgres://` URL names, brings its schema
    /// up to date, and marks running executions whose lease lapsed as
    /// `interrupted`. Must be called within a Tokio runtime: the lease
    /// renewer runs on it.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            StoreError("the --store URL is not a PostgreSQL URL (postgres://user:password@host:port/database)".into())
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError(
                "sslmode=require: this kflow connects to PostgreSQL without TLS; reach it over a trusted network or a local tunnel"
                    .into(),
            ));
        }
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("kflow");
        let place = shown(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(Duration::from_secs(30)),
                create: Some(Duration::from_secs(10)),
                recycle: Some(Duration::from_secs(5)),
            })
            .build()
            .map_err(|e| StoreError(format!("cannot set up connections to {place}: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| StoreError(format!("cannot connect to {place}: {}", StoreError::from(e).0)))?;
        schema::migrate(&mut client).await?;
        let history: String = client
            .query_one("SELECT value FROM meta WHERE key = 'history'", &[])
            .await?
            .get(0);
        drop(client);
        let held = Arc::new(Mutex::new(HashSet::new()));
        let owner = crate::owner::Owner::current().to_label();
        let renewer = tokio::spawn(renew_leases(pool.clone(), owner.clone(), held.clone()));
        let store = PgStore {
            pool,
            config,
            history,
            owner,
            held,
            renewer,
        };
        store.mark_interrupted().await?;
        Ok(store)
    }

    pub fn history_id(&self) -> &str {
        &self.history
    }

    /// A connection of its own that listens on `channel`: its receiver gets
    /// a wake-up per notification and closes when the connection drops
    /// (the caller polls meanwhile, and listens again).
    pub async fn listen(&self, channel: &str) -> Result<Listener> {
        use futures_util::StreamExt;
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(_) = message {
                    // One pending wake-up is enough: the listener reads all
                    // that is ready when it wakes.
                    let _ = tx.try_send(());
                }
            }
        });
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        Ok(Listener { rx, _client: client })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    fn hold(&self, execution: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(execution.to_string());
    }

    fn release(&self, execution: &str) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(execution);
    }

    /// Running executions whose process let its lease lapse.
    async fn mark_interrupted(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let at = super::now();
        let ids: Vec<String> = tx
            .query(
                "UPDATE executions SET state = 'interrupted', ended_at = $1
                 WHERE state = 'running' AND (lease_until IS NULL OR lease_until < now()) RETURNING id",
                &[&at],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(
            "UPDATE task_runs SET state = 'interrupted', ended_at = $2 WHERE execution_id = ANY($1) AND state = 'running'",
            &[&ids, &at],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Notifications on one channel (see [`PgStore::listen`]).
pub struct Listener {
    pub rx: tokio::sync::mpsc::Receiver<()>,
    /// Kept open while the listener lives.
    _client: tokio_postgres::Client,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews, every [`LEASE_RENEW`], the leases of the executions this process
/// runs. A renewal that fails is tried again at the next tick; the lease
/// lasts three ticks.
async fn renew_leases(pool: Pool, owner: String, held: Arc<Mutex<HashSet<String>>>) {
    let mut tick = tokio::time::interval(LEASE_RENEW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids: Vec<String> = held.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        if let Ok(client) = pool.get().await {
            let _ = client
                .execute(
                    "UPDATE executions SET lease_until = now() + make_interval(secs => $3)
                     WHERE id = ANY($1) AND owner = $2",
                    &[&ids, &owner, &LEASE_SECONDS],
                )
                .await;
        }
    }
}

/// PostgreSQL's text holds no NUL byte: one in a task's output or error is
/// kept as U+FFFD rather than failing the write.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn opt_text(s: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    s.map(text)
}

/// `text` with `_`, `%` and `\` taken literally in a `LIKE` pattern.
fn like_prefix(text: &str) -> String {
    format!(
        "{}%",
        text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
    )
}
