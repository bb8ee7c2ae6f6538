//! Task attempts run on `kflow worker`s: with a shared history, the
//! process that runs an execution (`kflow serve`) decides what is ready, as
//! it always does, and hands each attempt to the queue instead of running
//! it; a worker whose labels match claims it, runs it with its own engine
//! and secrets, writes its log lines to the history, and reports how it
//! ended. Only what a gate or the history itself decides (`approval`) stays
//! in the process.
//!
//! One watcher per dispatcher waits for every outstanding attempt at once:
//! woken by `NOTIFY kflow_done`, else every [`POLL`]; the same read records
//! attempts whose worker's lease lapsed as lost.

pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use crate::store::{AttemptOutcome, NewTask, PgStore, Settled, SETTLED};
use crate::tasks::{Outputs, Props, TaskContext, TaskError};
use crate::value::Value;

/// How often outstanding attempts are read when no notification came.
pub const POLL: Duration = Duration::from_millis(250);

/// Whether a kind runs on a worker. An approval is a record in the
/// history, decided by people: it waits where the execution runs.
pub fn remote(kind: &str) -> bool {
    kind != "approval"
}

/// Hands attempts to workers and waits for them.
pub struct Dispatcher {
    store: Arc<PgStore>,
    waiting: Mutex<HashMap<i64, oneshot::Sender<Settled>>>,
    wake: Notify,
}

impl Dispatcher {
    /// A dispatcher and its watcher (spawned on the current runtime).
    pub fn start(store: Arc<PgStore>) -> Arc<Dispatcher> {
        let d = Arc::new(Dispatcher {
            store,
            waiting: Mutex::default(),
            wake: Notify::new(),
        });
        tokio::spawn(watch(Arc::downgrade(&d)));
        d
    }

    /// The shared history it queues in.
    pub fn store(&self) -> &Arc<PgStore> {
        &self.store
    }

    /// Runs one attempt on a worker: queues it, waits for its result, and
    /// reads the outputs back with its kind's types. Cancelling the
    /// context withdraws it (or has its worker stop it).
    pub async fn run(&self, kind: &str, props: &Props, ctx: &TaskContext, attempt: u32) -> Result<Outputs, TaskError> {
        let mut props = props.clone();
        let labels = match props.remove("runs_on") {
            Some(Value::Map(m)) => m
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.to_text()?)))
                .collect::<BTreeMap<_, _>>(),
            _ => BTreeMap::new(),
        };
        let wire = wire::encode(&props).map_err(|e| TaskError::Invalid(format!("cannot run on a worker: {e}")))?;
        let on_worker = self.producer(&ctx.execution, kind, &props).await?;
        if let Some(w) = &on_worker {
            self.check_labels(w, &labels).await?;
        }
        // Written before the queue holds it, and not through the recorder's
        // batches: a worker may claim it and log its first line at once.
        let queued = if labels.is_empty() {
            "queued for a worker".to_string()
        } else {
            format!("queued for a worker labelled {}", crate::worker::format_labels(&labels))
        };
        let line = crate::store::LogAppend {
            task: &ctx.task,
            text: &queued,
        };
        if let Err(e) = self.store.append_logs(&ctx.execution, &[line]).await {
            ctx.log(
                crate::tasks::Stream::Stdout,
                &format!("{queued} (not in the history: {e})"),
            );
        }
        let seq = self
            .store
            .enqueue(&NewTask {
                execution: &ctx.execution,
                task: &ctx.task,
                attempt,
                kind,
                props: &wire,
                labels: &labels,
                on_worker: on_worker.as_deref(),
            })
            .await
            .map_err(|e| TaskError::Failed(e.0))?;
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(seq, tx);
        self.wake.notify_one();
        tokio::pin!(rx);
        let settled = tokio::select! {
            s = &mut rx => s,
            _ = ctx.cancel.cancelled() => {
                let _ = self.store.cancel_task(seq).await;
                // Its worker stops it at its next heartbeat; the result (or
                // the lapse of its lease) still settles it.
                rx.await
            }
        };
        let settled = settled.map_err(|_| TaskError::Failed("the dispatcher stopped".into()))?;
        match settled {
            Settled::Done(AttemptOutcome::Succeeded { outputs }) => wire::decode_outputs(kind, &outputs)
                .ok_or_else(|| TaskError::Failed(format!("the worker's outputs do not fit `{kind}`: {outputs}"))),
            Settled::Done(AttemptOutcome::Failed { error, transient: true }) => Err(TaskError::Failed(error)),
            Settled::Done(AttemptOutcome::Failed {
                error,
                transient: false,
            }) => Err(TaskError::Invalid(error)),
            Settled::Done(AttemptOutcome::Cancelled) => Err(TaskError::Cancelled),
            Settled::Lost { .. } if ctx.cancel.is_cancelled() => Err(TaskError::Cancelled),
            Settled::Lost { worker } => Err(TaskError::Lost(format!(
                "lost: worker {worker} stopped renewing its lease (killed, its machine lost or cut off)"
            ))),
        }
    }
}

impl Dispatcher {
    /// A task pinned to worker `w` must still run where its `runs_on` says:
    /// if `w` is not labelled so, no worker could ever claim it.
    async fn check_labels(&self, w: &str, wanted: &BTreeMap<String, String>) -> Result<(), TaskError> {
        if wanted.is_empty() {
            return Ok(());
        }
        let Some(has) = self.store.worker_labels(w).await.map_err(|e| TaskError::Failed(e.0))? else {
            return Ok(());
        };
        let missing: BTreeMap<String, String> = wanted
            .iter()
            .filter(|(k, v)| has.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(TaskError::Invalid(format!(
            "its `runs_on` asks for {} but what it uses is held by worker {w} (a local image or Compose stack on its engine, or a secret a task produced there), which is not labelled so: give the task that made it the same `runs_on`",
            crate::worker::format_labels(&missing)
        )))
    }

    /// The worker that holds what the task uses: the local images (or the
    /// Compose stack) on its engine, which exist on one engine only, and
    /// the secrets earlier tasks produced there, which never leave it. What
    /// two workers hold cannot be used by one task.
    async fn producer(&self, execution: &str, kind: &str, props: &Props) -> Result<Option<String>, TaskError> {
        let mut held = Vec::new();
        for v in props.values() {
            held_secrets(v, &mut held);
        }
        let mut worker: Option<String> = None;
        for h in held {
            match &worker {
                Some(w) if *w != h.worker => {
                    return Err(TaskError::Invalid(format!(
                        "it uses secrets produced on two workers ({w} and {}): produce them in tasks with the same `runs_on`",
                        h.worker
                    )))
                }
                _ => worker = Some(h.worker),
            }
        }
        let mut images = Vec::new();
        for v in props.values() {
            local_images(v, &mut images);
        }
        // A Compose stack, like an image, lives on the engine that made it:
        // taking it down is for that worker (found by its `project` output).
        if let (true, Some(Value::Str(project))) = (kind == "compose.down", props.get("project")) {
            images.push(
                serde_json::json!({ "project": project })
                    .to_string()
                    .trim_matches(['{', '}'])
                    .to_string(),
            );
        }
        for image in images {
            let found = self
                .store
                .producer(execution, &image)
                .await
                .map_err(|e| TaskError::Failed(e.0))?;
            match (&worker, found) {
                (Some(a), Some(b)) if *a != b => {
                    return Err(TaskError::Invalid(format!(
                        "it uses what two workers hold ({a} and {b}: local images, or a secret a task produced): build them in one task, or push one and use it by digest"
                    )))
                }
                (None, Some(b)) => worker = Some(b),
                _ => {}
            }
        }
        Ok(worker)
    }
}

/// Where the stand-ins of produced secrets inside a value point.
fn held_secrets(v: &Value, out: &mut Vec<crate::secret::Held>) {
    match v {
        Value::Secret(s) | Value::Credentials(crate::value::Credentials::Basic { password: s, .. }) => {
            out.extend(crate::secret::held_ref(s))
        }
        Value::List(items) => items.iter().for_each(|i| held_secrets(i, out)),
        Value::Map(m) => m.values().for_each(|i| held_secrets(i, out)),
        _ => {}
    }
}

/// The local image ids inside a value.
fn local_images(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Image(id) => out.push(id.clone()),
        Value::Images(images) => out.extend(images.iter().map(|(_, id)| id.clone())),
        Value::List(items) => items.iter().for_each(|i| local_images(i, out)),
        Value::Map(m) => m.values().for_each(|i| local_images(i, out)),
        _ => {}
    }
}

/// Reads the outstanding attempts whenever woken, and at least every
/// [`POLL`], until the dispatcher is dropped.
async fn watch(d: std::sync::Weak<Dispatcher>) {
    let mut listener = None;
    loop {
        let Some(dispatcher) = d.upgrade() else { return };
        if listener.is_none() {
            listener = dispatcher.store.listen(SETTLED).await.ok();
        }
        let seqs: Vec<i64> = dispatcher
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        if let Ok(settled) = dispatcher.store.settled(&seqs).await {
            let mut waiting = dispatcher.waiting.lock().unwrap_or_else(|p| p.into_inner());
            for (seq, s) in settled {
                if let Some(tx) = waiting.remove(&seq) {
                    let _ = tx.send(s);
                }
            }
        }
        let woken = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.rx.recv().await.is_none() {
                        // The connection dropped: listen again next round.
                        return false;
                    }
                    true
                }
                None => std::future::pending().await,
            }
        };
        let keep = tokio::select! {
            k = woken => k,
            _ = dispatcher.wake.notified() => true,
            _ = tokio::time::sleep(POLL) => true,
        };
        if !keep {
            listener = None;
        }
        drop(dispatcher);
    }
}
