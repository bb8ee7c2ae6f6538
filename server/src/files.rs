//! Firing `on file "GLOB"` triggers. The flow's folder is scanned every
//! [`POLL`] (polled, like the flows themselves: the same on every file
//! system, including network and container mounts) and compared with the
//! previous scan: a new file is `created`, a changed size or modification
//! time `modified`, a vanished file `removed`. A file's changes start one
//! execution once the file has been quiet for the trigger's `debounce`
//! (default 500 ms), so a file still being written starts nothing yet.
//!
//! The first scan of a trigger (at start, or after its glob changed) is the
//! baseline: what exists then starts nothing. Changes while the server was
//! down are not seen (the `drop/` folder pattern: process what is there
//! with a run by hand, then the server takes the new arrivals).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use globset::{GlobBuilder, GlobMatcher};
use kflow_runtime::trigger::{self, Fields, Verdict};
use kflow_runtime::value::Value;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::flows::Flow;
use crate::App;

/// How often watched folders are scanned.
pub const POLL: Duration = Duration::from_millis(250);

/// Most files one trigger watches; beyond it the scan stops (and says so).
pub const MAX_FILES: usize = 10_000;

/// How deep a `**` glob descends.
const MAX_DEPTH: usize = 32;

const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);

/// What a file looked like at a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
}

/// One watched trigger: its last scan and the changes waiting out their
/// debounce.
struct Watch {
    /// The glob and folder it was scanned with; a change rebaselines.
    what: (String, PathBuf),
    files: BTreeMap<PathBuf, Seen>,
    pending: HashMap<PathBuf, (Change, Instant)>,
    /// Whether the last scan hit [`MAX_FILES`] (said once).
    capped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Created,
    Modified,
    Removed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Modified => "modified",
            Change::Removed => "removed",
        }
    }
}

pub async fn run(app: Arc<App>, stop: CancellationToken) {
    let mut watches: HashMap<(String, String), Watch> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
        let flows: Vec<Arc<Flow>> = app.flows.read().await.flows.values().cloned().collect();
        let mut live = Vec::new();
        for flow in flows {
            let plan = flow.plan.clone();
            for (t, name) in plan.triggers.iter().zip(plan.trigger_names()) {
                if t.kind != "file" {
                    continue;
                }
                let key = (plan.flow.clone(), name.clone());
                live.push(key.clone());
                let what = (t.value.clone(), flow.base_dir.clone());
                let Ok(matcher) = matcher(&t.value) else {
                    continue;
                };
                let glob = t.value.clone();
                let base = flow.base_dir.clone();
                let Ok((files, capped)) = tokio::task::spawn_blocking(move || scan(&base, &glob, &matcher)).await
                else {
                    continue;
                };
                let debounce = t.debounce_ms.map_or(DEFAULT_DEBOUNCE, Duration::from_millis);
                let watch = match watches.get_mut(&key) {
                    Some(w) if w.what == what => w,
                    _ => {
                        // New, or its glob or folder changed: a baseline.
                        watches.insert(
                            key.clone(),
                            Watch {
                                what,
                                files,
                                pending: HashMap::new(),
                                capped: false,
                            },
                        );
                        continue;
                    }
                };
                if capped && !watch.capped {
                    eprintln!(
                        "kflow serve: {}: `on file \"{}\"` matches more than {MAX_FILES} files; only the first are watched",
                        plan.flow, t.value
                    );
                }
                watch.capped = capped;
                let now = Instant::now();
                for (path, change) in diff(&watch.files, &files) {
                    note(&mut watch.pending, path, change, now);
                }
                watch.files = files;
                let ready: Vec<(PathBuf, Change)> = watch
                    .pending
                    .iter()
                    .filter(|(_, (_, at))| now.duration_since(*at) >= debounce)
                    .map(|(p, (c, _))| (p.clone(), *c))
                    .collect();
                for (path, change) in ready {
                    watch.pending.remove(&path);
                    fire(&app, &flow, t, &name, &path, change).await;
                }
            }
        }
        // Triggers no longer served are forgotten.
        watches.retain(|k, _| live.contains(k));
    }
}

/// Records a change to a file, merged with one still waiting: created then
/// modified is still created; created then removed is nothing.
fn note(pending: &mut HashMap<PathBuf, (Change, Instant)>, path: PathBuf, change: Change, now: Instant) {
    let merged = match (pending.get(&path).map(|(c, _)| *c), change) {
        (Some(Change::Created), Change::Removed) => {
            pending.remove(&path);
            return;
        }
        (Some(Change::Created), _) => Change::Created,
        (Some(Change::Removed), Change::Created) => Change::Modified,
        _ => change,
    };
    pending.insert(path, (merged, now));
}

/// The changes from one scan to the next.
fn diff(before: &BTreeMap<PathBuf, Seen>, after: &BTreeMap<PathBuf, Seen>) -> Vec<(PathBuf, Change)> {
    let mut out = Vec::new();
    for (p, seen) in after {
        match before.get(p) {
            None => out.push((p.clone(), Change::Created)),
            Some(old) if old != seen => out.push((p.clone(), Change::Modified)),
            Some(_) => {}
        }
    }
    for p in before.keys().filter(|p| !after.contains_key(*p)) {
        out.push((p.clone(), Change::Removed));
    }
    out
}

/// A glob as file triggers match it: `*` within one folder, `**` across.
pub fn matcher(glob: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.to_string())
}

/// The files under `base` that `glob` matches, by path relative to `base`,
/// at most [`MAX_FILES`] (and whether there were more). The walk starts at
/// the glob's literal folder and follows no symbolic link to a folder.
fn scan(base: &Path, glob: &str, m: &GlobMatcher) -> (BTreeMap<PathBuf, Seen>, bool) {
    let mut out = BTreeMap::new();
    let literal: PathBuf = glob
        .split('/')
        .take_while(|c| !c.contains(['*', '?', '[', '{', '\\']))
        .collect();
    // The last literal component may be the file itself.
    let start = if base.join(&literal).is_dir() {
        literal
    } else {
        literal.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let depth = if glob.contains("**") {
        MAX_DEPTH
    } else {
        glob.split('/').count().saturating_sub(start.components().count())
    };
    let capped = walk(base, &start, depth, m, &mut out);
    (out, capped)
}

/// Adds matching files under `base/rel`; true when [`MAX_FILES`] stopped it.
fn walk(base: &Path, rel: &Path, depth: usize, m: &GlobMatcher, out: &mut BTreeMap<PathBuf, Seen>) -> bool {
    if depth == 0 {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(base.join(rel)) else {
        return false;
    };
    for e in entries.flatten() {
        let path = rel.join(e.file_name());
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if walk(base, &path, depth - 1, m, out) {
                return true;
            }
            continue;
        }
        if !m.is_match(&path) {
            continue;
        }
        // A link to a file counts as the file.
        let Ok(meta) = std::fs::metadata(base.join(&path)) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if out.len() >= MAX_FILES {
            return true;
        }
        out.insert(
            path,
            Seen {
                len: meta.len(),
                modified: meta.modified().ok(),
            },
        );
    }
    false
}

async fn fire(app: &Arc<App>, flow: &Flow, t: &kflow_compiler::ir::Trigger, name: &str, path: &Path, change: Change) {
    let rel = path.display().to_string();
    let fields = Fields::from([
        ("path".to_string(), Value::Str(rel.clone())),
        ("change".to_string(), Value::Str(change.as_str().to_string())),
    ]);
    let flow_name = &flow.plan.flow;
    match trigger::bind(&flow.plan, t, &fields) {
        Verdict::Start(inputs) => {
            app.metrics.started("file");
            let record = json!({ "name": name, "kind": "file", "path": rel, "change": change.as_str() });
            match app.launcher.start(flow, inputs, record).await {
                Ok(s) => eprintln!(
                    "kflow serve: {flow_name}: {name}: {rel} {}: execution {} {}",
                    change.as_str(),
                    s.id,
                    s.state
                ),
                Err(e) => eprintln!("kflow serve: {flow_name}: {name}: {rel} cannot start: {e}"),
            }
        }
        Verdict::Filtered(why) => eprintln!("kflow serve: {flow_name}: {name}: {rel} {}: {why}", change.as_str()),
        Verdict::Refused(why) => eprintln!("kflow serve: {flow_name}: {name}: {rel} refused: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_folders() {
        let m = matcher("drop/*.tar").unwrap();
        assert!(m.is_match("drop/a.tar"));
        assert!(!m.is_match("drop/sub/a.tar") && !m.is_match("drop/a.tar.part"));
        let deep = matcher("**/*.json").unwrap();
        assert!(deep.is_match("a.json") && deep.is_match("x/y/a.json"));
    }

    #[test]
    fn scans_find_what_the_glob_names_and_diff_into_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("drop/sub")).unwrap();
        std::fs::write(dir.path().join("drop/a.tar"), "a").unwrap();
        std::fs::write(dir.path().join("drop/b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("drop/sub/c.tar"), "c").unwrap();
        let (before, capped) = scan(dir.path(), "drop/*.tar", &matcher("drop/*.tar").unwrap());
        assert!(!capped);
        assert_eq!(before.keys().collect::<Vec<_>>(), [Path::new("drop/a.tar")]);
        let (deep, _) = scan(dir.path(), "drop/**/*.tar", &matcher("drop/**/*.tar").unwrap());
        assert_eq!(deep.len(), 2);

        std::fs::write(dir.path().join("drop/a.tar"), "longer").unwrap();
        std::fs::write(dir.path().join("drop/d.tar"), "d").unwrap();
        let (after, _) = scan(dir.path(), "drop/*.tar", &matcher("drop/*.tar").unwrap());
        let mut changes = diff(&before, &after);
        changes.sort();
        assert_eq!(
            changes,
            [
                (PathBuf::from("drop/a.tar"), Change::Modified),
                (PathBuf::from("drop/d.tar"), Change::Created)
            ]
        );
        std::fs::remove_file(dir.path().join("drop/a.tar")).unwrap();
        let (gone, _) = scan(dir.path(), "drop/*.tar", &matcher("drop/*.tar").unwrap());
        assert_eq!(diff(&after, &gone), [(PathBuf::from("drop/a.tar"), Change::Removed)]);
    }

    #[test]
    fn waiting_changes_merge() {
        let mut p = HashMap::new();
        let now = Instant::now();
        let f = PathBuf::from("f");
        note(&mut p, f.clone(), Change::Created, now);
        note(&mut p, f.clone(), Change::Modified, now);
        assert_eq!(p[&f].0, Change::Created);
        note(&mut p, f.clone(), Change::Removed, now);
        assert!(p.is_empty(), "created and removed before it settled: nothing");
        note(&mut p, f.clone(), Change::Removed, now);
        note(&mut p, f.clone(), Change::Created, now);
        assert_eq!(p[&f].0, Change::Modified);
    }

    #[test]
    fn a_scan_stops_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        for i in 0..MAX_FILES + 5 {
            std::fs::write(dir.path().join(format!("d/{i}")), "").unwrap();
        }
        let (files, capped) = scan(dir.path(), "d/*", &matcher("d/*").unwrap());
        assert!(capped);
        assert_eq!(files.len(), MAX_FILES);
    }
}
