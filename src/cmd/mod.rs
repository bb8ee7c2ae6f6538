pub mod approve;
pub mod check;
mod console;
pub mod deliveries;
mod delivery;
pub mod docs;
mod events;
pub mod executions;
pub mod fmt;
pub mod gc;
pub mod graph;
pub mod keys;
pub mod out;
pub mod recorded;
mod remote;
pub mod rerun;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod shell;
pub mod state;
pub mod users;
pub mod values;
pub mod worker;

use std::io::Read;
use std::path::{Path, PathBuf};

use kflow_compiler::analysis::Options;

/// A usage or I/O problem: one line on stderr, exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, UsageError>;

/// A file to work on: its name as shown to the user, and its text.
pub struct Source {
    pub name: String,
    pub path: Option<PathBuf>,
    pub text: String,
}

impl Source {
    /// Options for checking this file: paths resolve next to it (from
    /// standard input: next to the current folder).
    pub fn options(&self) -> Options {
        let dir = self
            .path
            .as_ref()
            .and_then(|p| p.parent())
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Options::in_dir(dir)
    }
}

/// Expands the command line: files as given, folders to their `.kflow`
/// files (recursively, sorted), `-` to standard input.
pub fn read_sources(args: &[PathBuf]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| UsageError(format!("cannot read standard input: {e}")))?;
            out.push(Source {
                name: "<stdin>".into(),
                path: None,
                text,
            });
        } else if arg.is_dir() {
            let mut files = Vec::new();
            walk(arg, &mut files).map_err(|e| UsageError(format!("cannot read {}: {e}", arg.display())))?;
            if files.is_empty() {
                return Err(UsageError(format!("{} holds no .kflow files", arg.display())));
            }
            files.sort();
            for f in files {
                out.push(read_file(&f)?);
            }
        } else {
            out.push(read_file(arg)?);
        }
    }
    Ok(out)
}

/// The one flow file `arg` names for `run` and `graph`: a file as given;
/// in a folder, the file defining the flow `flow`, or the folder's only
/// flow. A folder of several flows is refused with their list, never
/// settled by taking the first file.
pub fn flow_source(arg: &Path, flow: Option<&str>) -> Result<Source> {
    let mut sources = read_sources(std::slice::from_ref(&arg.to_path_buf()))?;
    if sources.len() == 1 {
        return Ok(sources.remove(0));
    }
    let mut flows: Vec<(String, usize)> = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let analysis = kflow_compiler::analysis::analyze(&source.text, &source.options());
        flows.extend(analysis.flows.iter().map(|f| (f.name.clone(), i)));
    }
    let dir = arg.display();
    let listing = || {
        flows
            .iter()
            .map(|(name, i)| format!("\n  {name:<14} {}", sources[*i].name))
            .collect::<String>()
    };
    let Some(wanted) = flow else {
        return match flows.as_slice() {
            [(_, i)] => Ok(sources.swap_remove(*i)),
            _ => Err(UsageError(format!(
                "{dir} holds {} flows; choose one with --flow NAME, or give its file:{}",
                flows.len(),
                listing()
            ))),
        };
    };
    let found: Vec<usize> = flows.iter().filter(|(n, _)| n == wanted).map(|(_, i)| *i).collect();
    match found.as_slice() {
        [i] => Ok(sources.swap_remove(*i)),
        [] => Err(UsageError(format!(
            "no flow `{wanted}` in {dir}; it holds:{}",
            listing()
        ))),
        several => Err(UsageError(format!(
            "flow `{wanted}` is defined in several files of {dir}: {}; give the file",
            several
                .iter()
                .map(|i| sources[*i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn read_file(path: &Path) -> Result<Source> {
    // A FIFO or a device would block or never end.
    let meta = std::fs::metadata(path)
        .map_err(|e| UsageError(format!("cannot read {}: {}", path.display(), io_reason(&e))))?;
    if !meta.is_file() {
        return Err(UsageError(format!("{} is not a regular file", path.display())));
    }
    let bytes =
        std::fs::read(path).map_err(|e| UsageError(format!("cannot read {}: {}", path.display(), io_reason(&e))))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        UsageError(format!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok(Source {
        name: path.display().to_string(),
        path: Some(path.to_path_buf()),
        text,
    })
}

/// The `.kflow` files under `dir` (see `kflow_runtime::flow_files::walk`);
/// what is skipped is said on standard error.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    kflow_runtime::flow_files::walk(dir, out, |path, why| {
        eprintln!("kflow: skipping {}: {why}", path.display())
    })
}

/// `No such file or directory` without Rust's `(os error 2)` suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Whether colour should be used on standard output/error.
/// A runtime on this thread, for a command's few calls to the history or
/// the engine.
pub fn one_thread_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))
}

pub fn use_color(stream_is_tty: bool) -> bool {
    stream_is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Width for human output: `COLUMNS`, else the terminal's, else 100.
pub fn term_width() -> usize {
    let from_env = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    let from_tty = || terminal_size::terminal_size().map(|(w, _)| usize::from(w.0));
    from_env.or_else(from_tty).filter(|&w| w >= 40).unwrap_or(100)
}
