//! A recorded execution made runnable again, for `kflow resume` and
//! `kflow rerun` (see `kflow_runtime::resume`), and the flags they share.

use std::collections::HashMap;
use std::path::PathBuf;

use kflow_compiler::ir::Plan;
use kflow_runtime::store::Resumable;
use kflow_runtime::tasks::Outputs;

use super::{Result, UsageError};

/// The flags `resume` and `rerun` share: how the execution runs on.
#[derive(clap::Args)]
pub struct RunFlags {
    /// Print one JSON event per line instead of the log.
    #[arg(long)]
    pub json: bool,
    /// Pause (and exit, printing the id) when an approval has to wait.
    #[arg(long)]
    pub detach: bool,
    /// How many tasks may run at once.
    #[arg(long, default_value_t = 16)]
    pub jobs: usize,
    /// Folder of the execution history (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The shared PostgreSQL history, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

impl RunFlags {
    pub fn history(&self) -> super::state::History {
        super::state::History::find(self.state.as_deref(), self.store.as_deref())
    }
}

pub use kflow_runtime::resume::Loaded;

pub fn load(r: &Resumable) -> Result<Loaded> {
    kflow_runtime::resume::load(r, kflow_runtime::secret::Sourcing::Read).map_err(UsageError)
}

/// The outputs of the task runs that succeeded, by run name, as the
/// executor takes them instead of running those tasks again.
pub fn restored(plan: &Plan, done: &[(String, serde_json::Value)]) -> Result<HashMap<String, Outputs>> {
    kflow_runtime::resume::restored(plan, done).map_err(UsageError)
}
