//! Task logs: one file per execution, `logs/<id>.log`, a line per logged
//! line — `<UTC time> <task run> <text>` — in the order they were written,
//! so a run opens one file, not one per task (10,000 tasks would want
//! 10,000 descriptors), and a reader merges nothing. Each task run keeps at
//! most [`LOG_CAP`] bytes, then one note says its log was cut.
//!
//! Executions recorded by older versions have a folder instead,
//! `logs/<id>/<task run>.log`, lines `<UTC time> <text>`; they are read as
//! they are.

use std::collections::HashMap;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::{run_file_name, run_from_file_name, split_log_line, Result, StoreError};

/// Bytes of log kept per task run; the rest is dropped with a note.
pub const LOG_CAP: u64 = 10 * 1024 * 1024;
/// What a log that reached [`LOG_CAP`] ends with.
pub(super) const TRUNCATED: &str = "[kflow: log truncated at 10 MiB]";

/// The log of the execution being written.
pub(super) struct Writer {
    id: String,
    file: BufWriter<std::fs::File>,
    /// Per task run: how it is written in the log, bytes written, whether
    /// it was cut.
    runs: HashMap<String, Run>,
}

struct Run {
    name: String,
    budget: Budget,
}

/// What a task run may still log: every history keeps at most [`LOG_CAP`]
/// bytes of it, the note that it was cut included.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Budget {
    pub written: u64,
    pub cut: bool,
}

impl Budget {
    /// The text to keep for `line` (itself, or the note that the log was
    /// cut), counting `head` bytes of stamp and name beside it; `None` once
    /// the note was kept.
    pub fn admit<'a>(&mut self, head: usize, line: &'a str) -> Option<&'a str> {
        if self.cut {
            return None;
        }
        // Room is kept for the note, so a log that fills up always says so,
        // however exactly its lines meet the cap.
        let text = if self.written + (head + line.len() + 1) as u64 > LOG_CAP - (head + TRUNCATED.len() + 1) as u64 {
            self.cut = true;
            TRUNCATED
        } else {
            line
        };
        self.written += (head + text.len() + 1) as u64;
        Some(text)
    }
}

pub(super) fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join("logs").join(format!("{id}.log"))
}

/// The folder of an execution recorded by an older version.
pub(super) fn legacy_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join("logs").join(id)
}

impl Writer {
    pub fn open(dir: &Path, id: &str) -> Result<Writer> {
        std::fs::create_dir_all(dir.join("logs"))
            .map_err(|e| StoreError(format!("cannot create the log folder: {e}")))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path(dir, id))
            .map_err(|e| StoreError(format!("cannot open the log of execution {id}: {e}")))?;
        Ok(Writer {
            id: id.to_string(),
            file: BufWriter::with_capacity(64 * 1024, file),
            runs: HashMap::new(),
        })
    }

    /// Appends a line of `task` (buffered: see [`Writer::flush`]).
    pub fn line(&mut self, task: &str, line: &str, stamp: &str) -> Result<()> {
        if !self.runs.contains_key(task) {
            let run = Run {
                name: run_file_name(task),
                budget: Budget::default(),
            };
            self.runs.insert(task.to_string(), run);
        }
        let run = self.runs.get_mut(task).expect("inserted above");
        let Some(text) = run.budget.admit(stamp.len() + run.name.len() + 2, line) else {
            return Ok(());
        };
        let fail = |e: std::io::Error| StoreError(format!("cannot write the log of `{task}`: {e}"));
        self.file.write_all(stamp.as_bytes()).map_err(fail)?;
        self.file.write_all(b" ").map_err(fail)?;
        self.file.write_all(run.name.as_bytes()).map_err(fail)?;
        self.file.write_all(b" ").map_err(fail)?;
        self.file.write_all(text.as_bytes()).map_err(fail)?;
        self.file.write_all(b"\n").map_err(fail)
    }

    /// Makes what was logged readable (`kflow logs --follow`).
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| StoreError(format!("cannot write the log of execution {}: {e}", self.id)))
    }
}

/// One line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was written (lines of the oldest versions have none).
    pub stamp: Option<String>,
    pub task: String,
    pub text: String,
}

/// Reads an execution's log from where it last stopped, whole lines only
/// (a line still being written waits for the next call).
pub struct Reader {
    dir: PathBuf,
    id: String,
    offset: u64,
    /// Offsets in the per-task files of an older version.
    legacy: HashMap<String, u64>,
    /// Most bytes one call reads.
    chunk: u64,
}

impl Reader {
    pub(super) fn new(dir: &Path, id: &str) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            id: id.to_string(),
            offset: 0,
            legacy: HashMap::new(),
            chunk: READ_CHUNK,
        }
    }

    /// Reads at most `bytes` a call (a page a browser renders at once).
    pub fn with_chunk(mut self, bytes: u64) -> Reader {
        self.chunk = bytes.max(1);
        self
    }

    /// A reader that starts at a byte offset of the log a previous reader
    /// reached ([`Reader::offset`]): how a stream resumes.
    pub(super) fn at(dir: &Path, id: &str, offset: u64) -> Reader {
        Reader {
            offset,
            ..Reader::new(dir, id)
        }
    }

    /// How far into the log this reader has read (bytes).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The lines written since the last call, in the order they were
    /// written; `tasks` names the task runs to look for in a log of an
    /// older version, which keeps one file per task run.
    pub fn next(&mut self, tasks: &[String]) -> Result<Vec<Entry>> {
        let file = path(&self.dir, &self.id);
        if file.exists() || !legacy_dir(&self.dir, &self.id).is_dir() {
            let mut out = Vec::new();
            for line in complete_lines(&file, &mut self.offset, self.chunk)? {
                let (stamp, rest) = split_log_line(&line);
                let (task, text) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push(Entry {
                    stamp: stamp.map(str::to_string),
                    task: run_from_file_name(task),
                    text: text.to_string(),
                });
            }
            return Ok(out);
        }
        let mut out = Vec::new();
        for task in tasks {
            let file = legacy_dir(&self.dir, &self.id).join(format!("{}.log", run_file_name(task)));
            let offset = self.legacy.entry(task.clone()).or_insert(0);
            for line in complete_lines(&file, offset, self.chunk)? {
                let (stamp, text) = split_log_line(&line);
                out.push(Entry {
                    stamp: stamp.map(str::to_string),
                    task: task.clone(),
                    text: text.to_string(),
                });
            }
        }
        // Stable: a task's own lines keep their order.
        out.sort_by(|a, b| a.stamp.cmp(&b.stamp));
        Ok(out)
    }
}

/// Bytes read per call: a reader's memory does not grow with the log.
pub const READ_CHUNK: u64 = 4 * 1024 * 1024;

/// The complete lines of `file` past `offset`, at most [`READ_CHUNK`]
/// bytes of them, moving `offset` past them.
fn complete_lines(file: &Path, offset: &mut u64, chunk: u64) -> Result<Vec<String>> {
    let fail = |e: std::io::Error| StoreError(format!("cannot read {}: {e}", file.display()));
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(e)),
    };
    let mut f = std::io::BufReader::new(f);
    f.seek(std::io::SeekFrom::Start(*offset)).map_err(fail)?;
    let mut bytes = Vec::new();
    f.take(chunk).read_to_end(&mut bytes).map_err(fail)?;
    let end = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => end,
        // A line longer than a chunk: taken as it is.
        None if bytes.len() as u64 == chunk => bytes.len(),
        None => return Ok(Vec::new()),
    };
    *offset += (end + 1).min(bytes.len()) as u64;
    Ok(String::from_utf8_lossy(&bytes[..end])
        .split('\n')
        .map(str::to_string)
        .collect())
}
