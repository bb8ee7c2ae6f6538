//! `kflow worker`: runs the task attempts a shared history queues.
//!
//! A worker claims attempts whose `runs_on` its labels include, as many as
//! it has free slots (`--jobs`), and runs each as the executor would run it
//! here: with its own Docker engine, and with the secrets the task refers
//! to read from its own environment and files — so a worker alone holds
//! what only it should. Its log lines go to the history as they come.
//!
//! Leases: every `lease / 5` the worker renews its claims. The database
//! answers which it still holds; an attempt it no longer holds (its lease
//! lapsed and it was recorded lost) is stopped at once. If renewals fail
//! for longer than `lease - lease / 3` (the database unreachable: cut off),
//! the worker stops every attempt itself, before the lease can lapse and
//! another worker start the same task — so a task never runs twice at once
//! through kflow's fault. Its late results are refused anyway (fencing).
//!
//! What a task produces that is secret (a token, a minted login) stays in
//! this worker's memory (`vault.rs`) for the later tasks of its execution,
//! which are queued for this worker.
//!
//! Draining (SIGTERM): no new claims; running attempts get `grace` to
//! finish, then are stopped and handed back to the queue for another
//! worker.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kflow_compiler::ir::Plan;
use kflow_compiler::types::Ty;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod vault;

use crate::dispatch::wire;
use crate::secret::Secret;
use crate::store::{AttemptOutcome, Claimed, LogAppend, PgStore, Store, QUEUED};
use crate::tasks::{registry, LogLine, TaskContext, TaskError};

/// What a worker is.
pub struct Config {
    /// Unique among the history's workers (`host-<random>` by default).
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// The engine it drives (`DOCKER_HOST`), as shown by `kflow workers list`.
    pub engine: Option<String>,
    pub jobs: usize,
    pub lease: Duration,
    /// How long running attempts may finish when it is asked to stop.
    pub grace: Duration,
    /// Where tasks keep artifacts.
    pub state_dir: PathBuf,
}

/// How often the queue is looked at when no notification came.
const POLL: Duration = Duration::from_secs(1);

/// An attempt this worker runs.
struct Running {
    cancel: CancellationToken,
    /// Its lease lapsed: it is stopped and its result would be refused.
    lost: Arc<AtomicBool>,
    /// Draining: stopped to be handed back, not reported cancelled.
    handed_back: Arc<AtomicBool>,
}

type Table = Arc<Mutex<HashMap<i64, Running>>>;

fn lock(t: &Table) -> std::sync::MutexGuard<'_, HashMap<i64, Running>> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's worker id, once it runs as one: it labels what the
/// attempts it runs create.
static CURRENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn current() -> Option<&'static str> {
    CURRENT.get().map(String::as_str)
}

/// How often a worker reaps what dead attempts left on its engine.
const REAP_EVERY: Duration = Duration::from_secs(60);

/// Runs until `stop`, then drains. Errors only when it cannot start.
pub async fn run(store: Arc<PgStore>, cfg: Config, stop: CancellationToken) -> Result<(), String> {
    let _ = CURRENT.set(cfg.id.clone());
    store
        .register_worker(&cfg.id, &host(), &cfg.labels, cfg.engine.as_deref(), cfg.jobs as u32)
        .await
        .map_err(|e| e.0)?;
    let cfg = Arc::new(cfg);
    let table: Table = Arc::default();
    let beats = CancellationToken::new();
    let heart = tokio::spawn(heartbeat(store.clone(), cfg.clone(), table.clone(), beats.clone()));
    let plans = Plans::default();
    let vault = Arc::new(vault::Vault::default());
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut listener = None;
    let mut reaped = Instant::now();
    while !stop.is_cancelled() {
        if listener.is_none() {
            listener = store.listen(QUEUED).await.ok();
        }
        if reaped.elapsed() >= REAP_EVERY {
            reaped = Instant::now();
            if let Some(docker) = crate::reaper::connect_quickly().await {
                if let Err(e) = crate::reaper::reap(&docker, &*store, false).await {
                    eprintln!("kflow worker: the reaper: {e}");
                }
            }
            vault.forget_ended(&*store).await;
        }
        let free = cfg.jobs.saturating_sub(lock(&table).len());
        if free > 0 {
            match store.claim(&cfg.id, &cfg.labels, free, cfg.lease).await {
                Ok(claimed) => {
                    for c in claimed {
                        let running = Running {
                            cancel: CancellationToken::new(),
                            lost: Arc::default(),
                            handed_back: Arc::default(),
                        };
                        let job = Job {
                            store: store.clone(),
                            cfg: cfg.clone(),
                            plans: plans.clone(),
                            vault: vault.clone(),
                            cancel: running.cancel.clone(),
                            lost: running.lost.clone(),
                            handed_back: running.handed_back.clone(),
                            table: table.clone(),
                        };
                        lock(&table).insert(c.seq, running);
                        tasks.spawn(job.run(c));
                    }
                }
                Err(e) => eprintln!("kflow worker: cannot claim work: {e}"),
            }
        }
        let woken = async {
            match listener.as_mut() {
                Some(l) => l.rx.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ok = woken => if !ok { listener = None },
            Some(_) = tasks.join_next() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => {}
        }
    }
    // Draining: let running attempts finish, then hand back the rest.
    let running = lock(&table).len();
    if running > 0 {
        eprintln!(
            "kflow worker: stopping: {running} attempt(s) running, waiting up to {}s",
            cfg.grace.as_secs()
        );
    }
    let finished = tokio::time::timeout(cfg.grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        let seqs: Vec<i64> = {
            let table = lock(&table);
            for r in table.values() {
                r.handed_back.store(true, Ordering::SeqCst);
                r.cancel.cancel();
            }
            table.keys().copied().collect()
        };
        while tasks.join_next().await.is_some() {}
        match store.release_claims(&cfg.id, &seqs).await {
            Ok(n) => eprintln!("kflow worker: handed {n} attempt(s) back to the queue"),
            Err(e) => eprintln!("kflow worker: could not hand attempts back ({e}); their leases lapse instead"),
        }
    }
    beats.cancel();
    let _ = heart.await;
    store.stop_worker(&cfg.id).await.map_err(|e| e.0)
}

/// Renews the worker's claims; stops attempts it no longer holds, or all of
/// them when it cannot renew in time (see the module's comment).
async fn heartbeat(store: Arc<PgStore>, cfg: Arc<Config>, table: Table, stop: CancellationToken) {
    let every = cfg.lease / 5;
    let fence = cfg.lease - cfg.lease / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        // Only attempts claimed before the renewal is sent are judged by
        // its answer: one claimed meanwhile is not in it, and not lost.
        let judged: Vec<i64> = lock(&table).keys().copied().collect();
        // Bounded: a renewal that hangs (a cut connection) is a failed one.
        let beat = tokio::time::timeout(every, store.heartbeat(&cfg.id, cfg.lease)).await;
        match beat {
            Ok(Ok(held)) => {
                renewed = Instant::now();
                let held: HashMap<i64, bool> = held.into_iter().collect();
                for (seq, r) in lock(&table).iter().filter(|(seq, _)| judged.contains(seq)) {
                    match held.get(seq) {
                        None => {
                            if !r.lost.swap(true, Ordering::SeqCst) {
                                eprintln!(
                                    "kflow worker: attempt {seq} is no longer ours (its lease lapsed): stopping it"
                                );
                            }
                            r.cancel.cancel();
                        }
                        Some(true) => r.cancel.cancel(),
                        Some(false) => {}
                    }
                }
            }
            _ if renewed.elapsed() >= fence => {
                for (seq, r) in lock(&table).iter() {
                    if !r.lost.swap(true, Ordering::SeqCst) {
                        eprintln!(
                            "kflow worker: cannot renew leases for {}s: stopping attempt {seq} before its lease lapses",
                            renewed.elapsed().as_secs()
                        );
                    }
                    r.cancel.cancel();
                }
            }
            _ => {}
        }
    }
}

/// An execution's recorded plan and the folder its flow ran from.
type Recorded = Arc<(Plan, PathBuf)>;

/// How many executions' plans a worker keeps at once.
const MAX_PLANS: usize = 256;

/// The recorded plans of the executions this worker ran attempts of.
#[derive(Clone, Default)]
struct Plans(Arc<Mutex<HashMap<String, Recorded>>>);

impl Plans {
    async fn get(&self, store: &PgStore, execution: &str) -> Result<Recorded, String> {
        if let Some(p) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(execution) {
            return Ok(p.clone());
        }
        let r = store
            .resumable(execution)
            .await
            .map_err(|e| e.0)?
            .ok_or_else(|| format!("execution {execution} is not in the history"))?;
        let plan: Plan = serde_json::from_value(r.plan).map_err(|e| format!("the recorded plan: {e}"))?;
        let entry = Arc::new((plan, r.base_dir));
        let mut plans = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a worker that lives for months meets many executions.
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(execution.to_string(), entry.clone());
        Ok(entry)
    }
}

/// One claimed attempt, run to its report.
struct Job {
    store: Arc<PgStore>,
    cfg: Arc<Config>,
    plans: Plans,
    vault: Arc<vault::Vault>,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    handed_back: Arc<AtomicBool>,
    table: Table,
}

impl Job {
    async fn run(self, c: Claimed) {
        let (outcome, lines) = self.attempt(&c).await;
        if let Some(done) = lines {
            // Every line is in the history before the result is.
            let _ = done.await;
        }
        // A lost attempt is not reported: its lease lapses (or has), the
        // dispatcher records it lost and queues it again. Reported
        // cancelled, it would cancel the task.
        if self.lost.load(Ordering::SeqCst) {
            eprintln!(
                "kflow worker: {} (execution {}) stopped without a report: this worker lost its lease",
                c.task, c.execution
            );
            // Were the claim still ours after all (it lapsed but was not yet
            // recorded lost), it goes back to the queue rather than waiting.
            let _ = self.store.release_claims(&self.cfg.id, &[c.seq]).await;
        } else if !self.handed_back.load(Ordering::SeqCst) {
            match self.store.settle(c.seq, &self.cfg.id, &outcome).await {
                Ok(true) => {}
                Ok(false) => eprintln!(
                    "kflow worker: the result of {} (execution {}) was refused: this worker no longer holds it",
                    c.task, c.execution
                ),
                Err(e) => eprintln!("kflow worker: cannot report {}: {e}", c.task),
            }
        }
        lock(&self.table).remove(&c.seq);
    }

    /// Runs the attempt; its outcome and the task writing its log lines.
    async fn attempt(&self, c: &Claimed) -> (AttemptOutcome, Option<tokio::task::JoinHandle<()>>) {
        let failed = |error: String| {
            (
                AttemptOutcome::Failed {
                    error,
                    transient: false,
                },
                None,
            )
        };
        let entry = match self.plans.get(&self.store, &c.execution).await {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        let (plan, base_dir) = &*entry;
        let template = c.task.split('[').next().unwrap_or(&c.task);
        let Some(node) = plan.nodes.iter().find(|n| n.name == template) else {
            return failed(format!("the recorded plan has no task `{template}`"));
        };
        let catalog = kflow_compiler::catalog::kind(&c.kind);
        let mut types: BTreeMap<String, Ty> = node.props.iter().map(|(k, p)| (k.clone(), p.ty.clone())).collect();
        if let Some(k) = catalog {
            for p in k.all_props() {
                types
                    .entry(p.name.to_string())
                    .or_insert_with(|| kflow_compiler::catalog::ty(p.ty).clone());
            }
        }
        // The secrets the task refers to, read here, and those earlier
        // tasks produced here; all redacted from every log of the execution.
        let redactor = self.vault.redactor(&c.execution);
        let decoded = {
            let reader = |name: &str| -> Result<Secret, String> {
                let s = crate::secret::read_named(plan, name, base_dir)?;
                redactor.add(&s);
                Ok(s)
            };
            let held = |h: &crate::secret::Held| self.vault.get(&self.cfg.id, &c.execution, h);
            let sources = wire::Sources {
                read: &reader,
                held: &held,
            };
            wire::decode(&c.props, &types, &sources)
        };
        let props = match decoded {
            Ok(p) => p,
            Err(e) => return failed(format!("on worker {}: {e}", self.cfg.id)),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<LogLine>();
        let writer = tokio::spawn(write_log(self.store.clone(), c.execution.clone(), c.task.clone(), rx));
        let ctx = TaskContext {
            execution: c.execution.as_str().into(),
            history: self.store.history_id().into(),
            base_dir: base_dir.clone(),
            task: c.task.as_str().into(),
            artifacts: self.cfg.state_dir.join("artifacts").join(&c.execution),
            state_dir: self.cfg.state_dir.clone(),
            store: self.store.clone() as Arc<dyn Store>,
            state_hint: "".into(),
            detach: false,
            docker: Arc::new(crate::docker::Engine::default()),
            cancel: self.cancel.clone(),
            redactor,
            hidden_env: crate::executor::secret_variables(plan),
            dispatch: None,
            log: crate::tasks::channel_sink(tx),
            log_budget: Arc::new(tokio::sync::Semaphore::new(crate::tasks::LOG_BUDGET)),
        };
        ctx.log(
            crate::tasks::Stream::Stdout,
            &format!("attempt {} on worker {}", c.attempt, self.cfg.id),
        );
        let result = registry::run(&c.kind, &props, &ctx)
            .await
            .and_then(|outputs| registry::check_outputs(&c.kind, &outputs).map(|()| outputs));
        drop(ctx);
        let outcome = match result {
            Ok(outputs) => {
                let (reported, kept) = wire::encode_outputs(&outputs, &self.cfg.id, &c.task);
                for (name, value) in kept {
                    self.vault.keep(&c.execution, &c.task, &name, value);
                }
                AttemptOutcome::Succeeded { outputs: reported }
            }
            Err(TaskError::Cancelled) => AttemptOutcome::Cancelled,
            Err(e @ (TaskError::Failed(_) | TaskError::Lost(_))) => AttemptOutcome::Failed {
                error: e.to_string(),
                transient: true,
            },
            Err(TaskError::Invalid(e)) => AttemptOutcome::Failed {
                error: e,
                transient: false,
            },
            Err(TaskError::Paused) => AttemptOutcome::Failed {
                error: format!("`{}` cannot wait for a decision on a worker", c.kind),
                transient: false,
            },
        };
        (outcome, Some(writer))
    }
}

/// Appends an attempt's log lines to the history in batches, as they come.
async fn write_log(
    store: Arc<PgStore>,
    execution: String,
    task: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<LogLine>,
) {
    let mut batch: Vec<LogLine> = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let lines: Vec<LogAppend> = batch
            .iter()
            .map(|l| LogAppend {
                task: &task,
                text: &l.text,
            })
            .collect();
        if let Err(e) = store.append_logs(&execution, &lines).await {
            eprintln!("kflow worker: cannot write the log of {task}: {e}");
        }
        // Dropping the lines gives their bytes back to the log budget.
        batch.clear();
    }
}

/// This machine's name, for `kflow workers list`.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A new worker id: the host and 32 random bits.
pub fn new_id() -> String {
    use rand_core::RngCore;
    format!("{}-{:08x}", host(), rand_core::OsRng.next_u32())
}

/// Labels as `--labels` writes them, `k=v,k2=v2` (the inverse of
/// [`parse_labels`]).
pub fn format_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The labels `k=v,k2=v2` of `--labels`.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("label `{pair}`: write KEY=VALUE"))?;
        let (k, v) = (k.trim(), v.trim());
        let plain = |s: &str| {
            !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        };
        if !plain(k) || !plain(v) {
            return Err(format!(
                "label `{pair}`: keys and values are 1 to 63 letters, digits, `-`, `_`, `.` or `/`"
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label `{k}` is given twice"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_plain_pairs() {
        let l = parse_labels("env=prod, arch=amd64").unwrap();
        assert_eq!(l["env"], "prod");
        assert_eq!(l["arch"], "amd64");
        assert!(parse_labels("env").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_labels("env=prod,env=dev").unwrap_err().contains("twice"));
        assert!(parse_labels("e nv=x").is_err());
        assert!(parse_labels("").unwrap().is_empty());
    }
}
