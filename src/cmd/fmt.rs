use crate::cmd::out::outln;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use kflow_compiler::render::{self, FileReport, HumanStyle};

use super::{io_reason, read_sources, Result, UsageError};

#[derive(clap::Args)]
pub struct Args {
    /// Files to format (folders: every .kflow file inside; `-`: standard input to standard output).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Do not write; list the files that would change and exit 1 if any.
    #[arg(long)]
    check: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let sources = read_sources(&args.files)?;
    let mut failed = false;
    for s in &sources {
        let formatted = match kflow_compiler::format::format(&s.text) {
            Ok(f) => f,
            Err(errors) => {
                let style = HumanStyle {
                    color: super::use_color(std::io::stderr().is_terminal()),
                    width: super::term_width(),
                };
                let report = FileReport {
                    path: &s.name,
                    src: &s.text,
                    diagnostics: &errors,
                };
                eprint!("{}", render::human(&report, style));
                eprintln!("error: {} has syntax errors; it was not formatted", s.name);
                failed = true;
                continue;
            }
        };
        match (&s.path, args.check) {
            (None, false) => {
                let _ = std::io::stdout().lock().write_all(formatted.as_bytes());
            }
            (_, true) => {
                if formatted != s.text {
                    outln!("would reformat {}", s.name);
                    failed = true;
                }
            }
            (Some(path), false) => {
                if formatted != s.text {
                    std::fs::write(path, &formatted)
                        .map_err(|e| UsageError(format!("cannot write {}: {}", path.display(), io_reason(&e))))?;
                    eprintln!("formatted {}", s.name);
                }
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
