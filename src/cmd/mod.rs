pub mod approve;
pub mod check;
mod console;
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
pub mod rerun;
pub mod run;
pub mod schedule;
pub mod shell;
pub mod state;
pub mod values;

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

/// The `.kflow` files under `dir`, each once: symlinked folders are
/// followed but never twice (a link loop ends), a file reached by several
/// paths is read once, and what is not a regular file (a FIFO, a device,
/// a dangling link) is skipped with a note on standard error — reading a
/// FIFO would wait forever.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    let id = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let mut seen_dirs: HashSet<(u64, u64)> = HashSet::new();
    let mut seen_files: HashSet<(u64, u64)> = HashSet::new();
    seen_dirs.insert(id(&std::fs::metadata(dir)?));
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        entries.sort();
        for path in entries {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let is_kflow = path.extension().is_some_and(|e| e == "kflow");
            // Follows symlinks: what the path names in the end.
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    if is_kflow {
                        eprintln!("kflow: skipping {}: {}", path.display(), io_reason(&e));
                    }
                    continue;
                }
            };
            if meta.is_dir() {
                if seen_dirs.insert(id(&meta)) {
                    todo.push(path);
                }
            } else if is_kflow {
                if !meta.is_file() {
                    eprintln!("kflow: skipping {}: not a regular file", path.display());
                } else if seen_files.insert(id(&meta)) {
                    out.push(path);
                }
            }
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
