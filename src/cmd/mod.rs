pub mod approve;
pub mod check;
mod console;
pub mod docs;
pub mod executions;
pub mod fmt;
pub mod gc;
pub mod graph;
pub mod keys;
pub mod run;

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

fn read_file(path: &Path) -> Result<Source> {
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

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden || path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "kflow") {
            out.push(path);
        }
    }
    Ok(())
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
pub fn use_color(stream_is_tty: bool) -> bool {
    stream_is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Width for human output: `COLUMNS`, else the terminal's, else 100.
pub fn term_width() -> usize {
    let from_env = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    let from_tty = || terminal_size::terminal_size().map(|(w, _)| usize::from(w.0));
    from_env.or_else(from_tty).filter(|&w| w >= 40).unwrap_or(100)
}
