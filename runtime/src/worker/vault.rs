//! What tasks produced on this worker that must not leave it: the secrets
//! and logins of token tasks (`oidc.token`, `aws.ecr_login`, …). They are
//! kept in memory for the later tasks of the same execution, which the
//! server queues for this worker; the history and the server only ever see
//! stand-ins (see `dispatch::wire`).
//!
//! Each execution also has one redactor shared by its attempts here, as a
//! local run has one: a login re-minted while a later task uses it is
//! redacted in that task's log too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::secret::{Held, Redactor};
use crate::state::ExecutionState;
use crate::store::Store;
use crate::value::Value;

/// How many executions' values a worker keeps at once: past it, the one
/// used longest ago is forgotten (its later tasks fail, saying so).
const MAX_EXECUTIONS: usize = 256;

#[derive(Default)]
pub struct Vault {
    entries: Mutex<HashMap<String, Entry>>,
    /// Orders uses: the entry with the smallest was used longest ago.
    uses: AtomicU64,
}

struct Entry {
    redactor: Arc<Redactor>,
    /// By (task, output).
    held: HashMap<(String, String), Value>,
    used: u64,
}

impl Vault {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The execution's redactor here, made on its first attempt.
    pub fn redactor(&self, execution: &str) -> Arc<Redactor> {
        let mut all = self.lock();
        if !all.contains_key(execution) && all.len() >= MAX_EXECUTIONS {
            let oldest = all.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                all.remove(&oldest);
            }
        }
        let used = self.uses.fetch_add(1, Ordering::Relaxed);
        let entry = all.entry(execution.to_string()).or_insert_with(|| Entry {
            redactor: Arc::new(Redactor::default()),
            held: HashMap::new(),
            used,
        });
        entry.used = used;
        entry.redactor.clone()
    }

    /// Keeps what `task` produced as `output`.
    pub fn keep(&self, execution: &str, task: &str, output: &str, value: Value) {
        if let Some(e) = self.lock().get_mut(execution) {
            for s in value.secrets() {
                e.redactor.add(s);
            }
            e.held.insert((task.to_string(), output.to_string()), value);
        }
    }

    /// What an earlier task of `execution` produced here, for a task of the
    /// same execution: an execution never reads another's.
    pub fn get(&self, me: &str, execution: &str, h: &Held) -> Result<Value, String> {
        if h.worker != me {
            return Err(format!(
                "`{}.{}` is held by worker {}, not by this one",
                h.task, h.output, h.worker
            ));
        }
        self.lock()
            .get(execution)
            .and_then(|e| e.held.get(&(h.task.clone(), h.output.clone())))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "`{}.{}` is no longer held on worker {me} (it restarted, or kept too many executions' values): `kflow rerun --from-failed` produces it again",
                    h.task, h.output
                )
            })
    }

    /// Forgets the executions that ended: nothing will ask for their values.
    pub async fn forget_ended(&self, store: &dyn Store) {
        let executions: Vec<String> = self.lock().keys().cloned().collect();
        for execution in executions {
            let ended = match store.state_of(&execution).await {
                Ok(Some(ExecutionState::Queued | ExecutionState::Running | ExecutionState::Paused)) => false,
                Ok(_) => true,
                // The database is unreachable: ask again next time.
                Err(_) => false,
            };
            if ended {
                self.lock().remove(&execution);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn held(worker: &str, task: &str) -> Held {
        Held {
            worker: worker.into(),
            task: task.into(),
            output: "token".into(),
        }
    }

    #[test]
    fn values_are_given_to_the_same_execution_on_the_same_worker_only() {
        let vault = Vault::default();
        let redactor = vault.redactor("e1");
        vault.keep("e1", "id", "token", Value::Secret(Secret::new("jwt-value-123")));
        assert_eq!(
            vault.get("w1", "e1", &held("w1", "id")),
            Ok(Value::Secret(Secret::new("jwt-value-123")))
        );
        // Registered with the execution's redactor here.
        assert_eq!(redactor.redact("got jwt-value-123"), "got ***");
        let other = vault.get("w1", "e2", &held("w1", "id")).unwrap_err();
        assert!(other.contains("no longer held on worker w1"), "{other}");
        let elsewhere = vault.get("w2", "e1", &held("w1", "id")).unwrap_err();
        assert!(elsewhere.contains("held by worker w1, not by this one"), "{elsewhere}");
    }

    #[test]
    fn the_oldest_execution_is_forgotten_past_the_bound() {
        let vault = Vault::default();
        for i in 0..=MAX_EXECUTIONS {
            vault.redactor(&format!("e{i}"));
            vault.keep(&format!("e{i}"), "id", "token", Value::Secret(Secret::new("v")));
        }
        assert_eq!(vault.lock().len(), MAX_EXECUTIONS);
        assert!(vault.get("w", "e0", &held("w", "id")).is_err());
        assert!(vault.get("w", &format!("e{MAX_EXECUTIONS}"), &held("w", "id")).is_ok());
    }
}
