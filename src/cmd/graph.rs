use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use kflow_compiler::analysis::{analyze, FlowInfo};
use kflow_compiler::render::{self, FileReport, HumanStyle};

use super::{Result, UsageError};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// The serialised plan the runtime executes.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The flow file, or a folder of them (see --flow).
    file: PathBuf,
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
    /// Which flow, when the file (or folder) holds several.
    #[arg(long)]
    flow: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let source = super::flow_source(&args.file, args.flow.as_deref())?;
    let analysis = analyze(&source.text, &source.options());
    if analysis.has_errors() {
        let report = FileReport {
            path: &source.name,
            src: &source.text,
            diagnostics: &analysis.diagnostics,
        };
        let style = HumanStyle {
            color: super::use_color(std::io::stderr().is_terminal()),
            width: super::term_width(),
        };
        eprint!("{}", render::human(&report, style));
        eprintln!("error: {} has errors; no graph was produced", source.name);
        return Ok(ExitCode::from(1));
    }
    let flow = pick_flow(&analysis.flows, args.flow.as_deref(), &source.name)?;
    let text = match args.format {
        Format::Dot => kflow_compiler::graph::dot(&flow.plan),
        Format::Mermaid => kflow_compiler::graph::mermaid(&flow.plan),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&flow.plan).map_err(|e| UsageError(e.to_string()))?;
            s.push('\n');
            s
        }
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// The flow named by `--flow`, or the only one in the file.
pub fn pick_flow<'a>(flows: &'a [FlowInfo], wanted: Option<&str>, file: &str) -> Result<&'a FlowInfo> {
    let names = || flows.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
    match wanted {
        Some(name) => flows
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| UsageError(format!("{file} has no flow `{name}` (it has: {})", names()))),
        None => match flows {
            [one] => Ok(one),
            [] => Err(UsageError(format!("{file} defines no flow"))),
            _ => Err(UsageError(format!(
                "{file} defines several flows ({}); choose one with --flow",
                names()
            ))),
        },
    }
}
