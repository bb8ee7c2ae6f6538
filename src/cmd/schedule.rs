//! `kflow schedule FILE`: the next fire times of a flow's schedules, in
//! their own time zone and in UTC, as `kflow serve` will fire them.

use std::path::PathBuf;
use std::process::ExitCode;

use kflow_compiler::analysis::analyze;
use kflow_runtime::schedule::Schedule;

use super::out::outln;
use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct Args {
    /// The flow file, or a folder of them (see --flow).
    file: PathBuf,
    /// Which flow, when the file (or folder) holds several.
    #[arg(long)]
    flow: Option<String>,
    /// How many fire times to print per schedule.
    #[arg(long, short = 'n', default_value_t = 5)]
    count: usize,
    /// Count from this instant (RFC 3339, e.g. 2027-01-01T00:00:00Z) instead of now.
    #[arg(long, value_name = "TIME")]
    after: Option<String>,
    /// Print one JSON object per schedule.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let after: jiff::Timestamp = match &args.after {
        Some(t) => t
            .parse()
            .map_err(|e| UsageError(format!("--after `{t}` is not an RFC 3339 instant: {e}")))?,
        None => jiff::Timestamp::now(),
    };
    let count = args.count.min(1_000);
    let source = super::flow_source(&args.file, args.flow.as_deref())?;
    let analysis = analyze(&source.text, &source.options());
    if analysis.has_errors() {
        return Err(UsageError(format!(
            "{} has errors: `kflow check {}` shows them",
            source.name, source.name
        )));
    }
    let flow = super::graph::pick_flow(&analysis.flows, args.flow.as_deref(), &source.name)?;
    let plan = &flow.plan;
    let names = plan.trigger_names();
    let mut any = false;
    for (t, name) in plan.triggers.iter().zip(&names).filter(|(t, _)| t.kind == "schedule") {
        any = true;
        let s = Schedule::new(&t.value, t.timezone.as_deref()).map_err(UsageError)?;
        let zone = t.timezone.as_deref().unwrap_or("UTC");
        let times = s.upcoming(after, count);
        if args.json {
            let local: Vec<String> = times
                .iter()
                .map(|at| {
                    at.to_zoned_datetime(s.tz.clone())
                        .strftime("%Y-%m-%dT%H:%M:%S%:z")
                        .to_string()
                })
                .collect();
            let utc: Vec<String> = times.iter().map(|at| at.to_string()).collect();
            outln!(
                "{}",
                serde_json::json!({
                    "trigger": name, "cron": t.value, "timezone": zone,
                    "catchup": t.catchup.as_deref().unwrap_or("last"), "next": local, "next_utc": utc,
                })
            );
            continue;
        }
        outln!(
            "{name}: \"{}\" in {zone} (catchup: {})",
            t.value,
            t.catchup.as_deref().unwrap_or("last")
        );
        if times.is_empty() {
            outln!("  never fires (no such day within nine years)");
        }
        for at in times {
            let local = at.to_zoned_datetime(s.tz.clone());
            outln!("  {}   {}", local.strftime("%a %Y-%m-%d %H:%M:%S %:z"), at);
        }
    }
    if !any {
        return Err(UsageError(format!("flow `{}` has no schedule", plan.flow)));
    }
    Ok(ExitCode::SUCCESS)
}
