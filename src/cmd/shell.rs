//! What the command line says about itself: shell completion scripts and
//! man pages, both generated from the same clap definition `kflow` parses
//! with, so they cannot drift from it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap_complete::Shell;

use super::out::outln;
use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write kflow.1 and one page per subcommand (kflow-run.1, …) into DIR
    /// instead of printing kflow.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "kflow", &mut script);
    super::out::write_bytes(&script);
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs, command: clap::Command) -> Result<ExitCode> {
    let Some(dir) = args.dir else {
        let mut page = Vec::new();
        render(&command, &mut page)?;
        super::out::write_bytes(&page);
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).map_err(|e| UsageError(format!("cannot create {}: {e}", dir.display())))?;
    let mut command = command;
    command.build();
    let mut written = Vec::new();
    write_pages(&command, "kflow", &dir, &mut written)?;
    for file in written {
        outln!("{}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// One page per command, named as `man` looks them up (`kflow-executions-list.1`).
fn write_pages(command: &clap::Command, name: &str, dir: &std::path::Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let named = command.clone().name(name.to_string());
    let mut page = Vec::new();
    render(&named, &mut page)?;
    let file = dir.join(format!("{name}.1"));
    std::fs::write(&file, page).map_err(|e| UsageError(format!("cannot write {}: {e}", file.display())))?;
    written.push(file);
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

fn render(command: &clap::Command, to: &mut Vec<u8>) -> Result<()> {
    clap_mangen::Man::new(command.clone())
        .render(to)
        .map_err(|e| UsageError(format!("cannot render the man page: {e}")))
}
