use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;

use super::Result;

#[derive(Clone, Copy, ValueEnum)]
pub enum Part {
    /// The task catalog: kinds, properties, outputs.
    Catalog,
    /// The built-in functions.
    Functions,
    /// Every diagnostic code, with an example.
    Diagnostics,
    /// Trigger kinds, their properties and fields, and `concurrency`.
    Triggers,
    /// All of them.
    All,
}

#[derive(clap::Args)]
pub struct Args {
    /// Which part of the reference to print (Markdown).
    #[arg(value_enum, default_value = "all")]
    part: Part,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let text = match args.part {
        Part::Catalog => kflow_compiler::docs::catalog_markdown(),
        Part::Functions => kflow_compiler::docs::functions_markdown(),
        Part::Diagnostics => kflow_compiler::docs::diagnostics_markdown(),
        Part::Triggers => kflow_compiler::docs::triggers_markdown(),
        Part::All => format!(
            "### Task catalog\n\n{}\n### Functions\n\n{}\n### Triggers\n\n{}\n### Diagnostic codes\n\n{}",
            kflow_compiler::docs::catalog_markdown(),
            kflow_compiler::docs::functions_markdown(),
            kflow_compiler::docs::triggers_markdown(),
            kflow_compiler::docs::diagnostics_markdown()
        ),
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
