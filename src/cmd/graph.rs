use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use kflow_compiler::analysis::analyze;
use kflow_compiler::render::{self, FileReport, HumanStyle};

use super::{read_sources, Result, UsageError};

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
    /// The flow file.
    file: PathBuf,
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
    /// Which flow, when the file holds several.
    #[arg(long)]
    flow: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let source = read_sources(std::slice::from_ref(&args.file))?.remove(0);
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
    let flow = match &args.flow {
        Some(name) => analysis.flows.iter().find(|f| &f.name == name).ok_or_else(|| {
            let names: Vec<&str> = analysis.flows.iter().map(|f| f.name.as_str()).collect();
            UsageError(format!(
                "{} has no flow `{name}` (it has: {})",
                source.name,
                names.join(", ")
            ))
        })?,
        None => match analysis.flows.as_slice() {
            [one] => one,
            [] => return Err(UsageError(format!("{} defines no flow", source.name))),
            many => {
                let names: Vec<&str> = many.iter().map(|f| f.name.as_str()).collect();
                return Err(UsageError(format!(
                    "{} defines several flows ({}); choose one with --flow",
                    source.name,
                    names.join(", ")
                )));
            }
        },
    };
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
