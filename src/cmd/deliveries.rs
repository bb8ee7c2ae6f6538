//! `kflow deliveries list`: the webhook deliveries a `kflow serve` answered,
//! newest first, with their verdict and the reason of those it refused,
//! read from the history the server writes. Replays are an admin's action
//! on the server (`POST /api/v1/deliveries/{id}/replay`), which re-checks
//! them against the flow as it is served.

use std::path::PathBuf;
use std::process::ExitCode;

use kflow_runtime::printable::printable;

use super::out::outln;
use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Folder of the history the server uses (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR", global = true)]
    state: Option<PathBuf>,
    /// The shared PostgreSQL history the server uses, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List deliveries, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> Result<ExitCode> {
    let runtime = super::one_thread_runtime()?;
    let history = super::state::History::find(args.state.as_deref(), args.store.as_deref());
    match args.command {
        Command::List { limit, json } => {
            let rows = runtime.block_on(async {
                history
                    .open()
                    .await?
                    .deliveries(limit.clamp(1, 10_000), None)
                    .await
                    .map_err(|e| UsageError(e.0))
            })?;
            for d in rows {
                if json {
                    outln!(
                        "{}",
                        serde_json::json!({
                            "id": d.id, "flow": d.flow, "trigger": d.trigger, "delivery": d.delivery,
                            "received_at": d.received_at, "status": d.status, "verdict": d.verdict.as_str(),
                            "reason": d.reason, "execution": d.execution, "replay_of": d.replay_of,
                        })
                    );
                    continue;
                }
                let mut line = format!(
                    "{}  {}  {}/{}  {} {}",
                    d.id,
                    d.received_at,
                    printable(&d.flow),
                    printable(&d.trigger),
                    d.status,
                    d.verdict.as_str()
                );
                if let Some(e) = &d.execution {
                    line.push_str(&format!("  execution {e}"));
                }
                if let Some(r) = &d.replay_of {
                    line.push_str(&format!("  replay of {r}"));
                }
                if let Some(why) = &d.reason {
                    line.push_str(&format!("  ({})", printable(why)));
                }
                outln!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
