//! `kflow`: a thin command-line front over the compiler and the runtime.
//! Exit codes: 0 success; 1 the files have errors (or would be reformatted),
//! or the flow failed; 2 usage, compile or I/O error; 130 interrupted.

mod cmd;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kflow",
    version,
    about = "Typed pipelines for container supply chains",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Type-check .kflow files and report every problem at once.
    Check(cmd::check::Args),
    /// Print the compiled task graph of a flow.
    Graph(cmd::graph::Args),
    /// Run a flow: compile it, check its inputs, execute its tasks.
    Run(cmd::run::Args),
    /// Serve flows: webhooks, schedules and an HTTP API, recording into the history.
    Serve(cmd::serve::Args),
    /// Users of `kflow serve`: add, list, remove.
    User(cmd::users::UserArgs),
    /// API tokens of `kflow serve`: create, list, revoke.
    Token(cmd::users::TokenArgs),
    /// Webhook deliveries a `kflow serve` answered: list them.
    Deliveries(cmd::deliveries::Args),
    /// Run the task attempts a shared history queues, on this machine's engine.
    Worker(cmd::worker::Args),
    /// The workers of a shared history: list them.
    Workers(cmd::worker::ListArgs),
    /// Print the next fire times of a flow's schedules.
    Schedule(cmd::schedule::Args),
    /// Run a recorded execution again with the same inputs (--from-failed: only what did not succeed).
    Rerun(cmd::rerun::Args),
    /// Approve a paused execution's gate.
    Approve(cmd::approve::DecideArgs),
    /// Reject a paused execution's gate (the gate fails).
    Reject(cmd::approve::DecideArgs),
    /// Continue a paused or interrupted execution; what succeeded is not run again.
    Resume(cmd::approve::ResumeArgs),
    /// Cancel an execution a `kflow serve` runs (its finally blocks run).
    Cancel(cmd::approve::CancelArgs),
    /// Remove containers, networks and volumes of executions no longer alive, and the images finished executions built that nothing else names.
    Gc(cmd::gc::Args),
    /// The execution history: list executions, show one.
    Executions(cmd::executions::Args),
    /// Print the logs of an execution (all tasks, or one).
    Logs(cmd::executions::LogsArgs),
    /// Write a cosign-compatible key pair (PREFIX.key, PREFIX.pub).
    Keygen(cmd::keys::KeygenArgs),
    /// Verify the cosign signatures of an image digest against a public key.
    Verify(cmd::keys::VerifyArgs),
    /// Rewrite .kflow files in the canonical layout.
    Fmt(cmd::fmt::Args),
    /// Print the language reference generated from the task catalog and the diagnostic codes.
    Docs(cmd::docs::Args),
    /// Run the language server on stdin/stdout, for editors.
    Lsp,
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions(cmd::shell::CompletionsArgs),
    /// Print kflow's man page, or write one page per subcommand with --dir.
    Man(cmd::shell::ManArgs),
}

/// A panic is a bug of kflow; its message may quote the data being worked on
/// (a key file, a secret), so only where it happened is printed unless
/// `KFLOW_PANIC_DETAILS=1` asks for the message too.
fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("KFLOW_PANIC_DETAILS").is_some_and(|v| v == "1") {
            return default(info);
        }
        let at = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!("kflow: internal error{at} (a bug of kflow; KFLOW_PANIC_DETAILS=1 prints its message)");
    }));
}

fn main() -> ExitCode {
    quiet_panics();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => cmd::check::run(a),
        Command::Graph(a) => cmd::graph::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::User(a) => cmd::users::user(a),
        Command::Token(a) => cmd::users::token(a),
        Command::Schedule(a) => cmd::schedule::run(a),
        Command::Deliveries(a) => cmd::deliveries::run(a),
        Command::Worker(a) => cmd::worker::run(a),
        Command::Workers(a) => cmd::worker::list(a),
        Command::Rerun(a) => cmd::rerun::run(a),
        Command::Approve(a) => cmd::approve::approve(a),
        Command::Reject(a) => cmd::approve::reject(a),
        Command::Resume(a) => cmd::approve::resume(a),
        Command::Cancel(a) => cmd::approve::cancel(a),
        Command::Gc(a) => cmd::gc::run(a),
        Command::Executions(a) => cmd::executions::run(a),
        Command::Logs(a) => cmd::executions::logs(a),
        Command::Keygen(a) => cmd::keys::keygen(a),
        Command::Verify(a) => cmd::keys::verify(a),
        Command::Fmt(a) => cmd::fmt::run(a),
        Command::Docs(a) => cmd::docs::run(a),
        Command::Completions(a) => cmd::shell::completions(a, Cli::command()),
        Command::Man(a) => cmd::shell::man(a, Cli::command()),
        Command::Lsp => kflow_lsp::serve_stdio()
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| cmd::UsageError(format!("the language server could not start: {e}"))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Errors may quote what a registry or a file said.
            eprintln!("error: {}", kflow_runtime::printable::printable(&e.to_string()));
            ExitCode::from(2)
        }
    }
}
