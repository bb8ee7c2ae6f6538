use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use kflow_compiler::analysis::analyze;
use kflow_compiler::render::{self, FileReport, HumanStyle};
use kflow_compiler::{codes, Severity};

use super::{read_sources, Result, UsageError};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Rendered reports with source excerpts (colour only on a terminal).
    Human,
    /// One JSON document with every diagnostic.
    Json,
    /// SARIF 2.1.0, for code-scanning uploads.
    Sarif,
    /// GitHub Actions workflow commands (annotations).
    Github,
}

#[derive(clap::Args)]
pub struct Args {
    /// Files to check (folders: every .kflow file inside; `-`: standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    /// Silence a lint everywhere, e.g. `--allow latest-tag` (repeatable).
    #[arg(long, value_name = "LINT")]
    allow: Vec<String>,
    /// Print the time each stage took to standard error.
    #[arg(long, hide = true)]
    timings: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut allow = Vec::new();
    for name in &args.allow {
        allow.push(codes::resolve_lint(name).ok_or_else(|| {
            UsageError(format!(
                "`{name}` is not a lint (lints are the kflow::lint::* codes, e.g. `latest-tag`)"
            ))
        })?);
    }
    let sources = read_sources(&args.files)?;
    let analyses: Vec<_> = sources
        .iter()
        .map(|s| {
            let mut opts = s.options();
            opts.allow = allow.clone();
            analyze(&s.text, &opts)
        })
        .collect();
    if args.timings {
        for (s, a) in sources.iter().zip(&analyses) {
            let mb = s.text.len() as f64 / 1e6;
            let t = a.timings;
            eprintln!(
                "{}: {:.2} MB, parse {:.1} ms ({:.0} MB/s), check {:.1} ms ({:.0} MB/s)",
                s.name,
                mb,
                t.parse.as_secs_f64() * 1e3,
                mb / t.parse.as_secs_f64(),
                t.check.as_secs_f64() * 1e3,
                mb / t.check.as_secs_f64()
            );
        }
    }
    let reports: Vec<FileReport> = sources
        .iter()
        .zip(&analyses)
        .map(|(s, a)| FileReport {
            path: &s.name,
            src: &s.text,
            diagnostics: &a.diagnostics,
        })
        .collect();
    let count = |sev| {
        reports
            .iter()
            .flat_map(|r| r.diagnostics)
            .filter(|d| d.severity == sev)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let mut stdout = std::io::stdout().lock();
    let out = match args.format {
        Format::Human => {
            let style = HumanStyle {
                color: super::use_color(std::io::stdout().is_terminal()),
                width: super::term_width(),
            };
            let mut text: String = reports.iter().map(|r| render::human(r, style)).collect();
            let files = if sources.len() == 1 {
                "1 file".to_string()
            } else {
                format!("{} files", sources.len())
            };
            text.push_str(&format!("{files} checked: {}\n", render::summary(errors, warnings)));
            text
        }
        Format::Json => format!("{:#}\n", render::json(&reports)),
        Format::Sarif => format!("{:#}\n", render::sarif(&reports)),
        Format::Github => reports.iter().map(render::github).collect(),
    };
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = stdout.write_all(out.as_bytes());
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    // The process ends here: freeing every tree node one by one would only
    // cost time (a tenth of the run on large flows).
    std::mem::forget(analyses);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
