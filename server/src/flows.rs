//! The flows a server serves: loaded from its paths, checked, and checked
//! again when a file changes. A file with errors is not loaded: its
//! diagnostics are kept (rendered as `kflow check` renders them) and the
//! flows it defined before keep serving from their last good version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use kflow_compiler::analysis::{analyze, Options};
use kflow_compiler::ir::Plan;
use kflow_compiler::render::{self, FileReport, HumanStyle};
use kflow_runtime::secret::{self, Secret};

/// Flow files larger than this are not read (a flow of 10,000 tasks is
/// well under it).
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// A flow that checked clean.
#[derive(Debug)]
pub struct Flow {
    pub plan: Arc<Plan>,
    /// The file, as given (shown and recorded).
    pub file: PathBuf,
    /// Its folder: relative paths of the flow resolve here.
    pub base_dir: PathBuf,
    /// The secrets its triggers read (webhook keys), by secret name, or why
    /// they could not be read.
    pub trigger_secrets: Result<BTreeMap<String, Secret>, String>,
}

/// A file that did not check: its diagnostics as `kflow check` prints them.
#[derive(Debug, Clone)]
pub struct Broken {
    pub file: PathBuf,
    pub report: String,
    /// The flows it held when it last checked clean (still serving).
    pub serving: Vec<String>,
}

/// What is loaded now.
#[derive(Debug, Default, Clone)]
pub struct Flows {
    pub flows: BTreeMap<String, Arc<Flow>>,
    pub broken: Vec<Broken>,
    /// Files and their change stamps when last loaded.
    stamps: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

impl Flows {
    pub fn get(&self, name: &str) -> Option<&Arc<Flow>> {
        self.flows.get(name)
    }
}

/// The `.kflow` files of the server's paths (files as given, folders walked).
fn files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let _ = kflow_runtime::flow_files::walk(p, &mut out, |path, why| {
                eprintln!("kflow serve: skipping {}: {why}", path.display())
            });
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Whether any file changed, appeared or went since `current` was loaded.
pub fn changed(paths: &[PathBuf], current: &Flows) -> bool {
    let now: Vec<(PathBuf, Option<(SystemTime, u64)>)> = files(paths)
        .into_iter()
        .map(|f| {
            let s = stamp(&f);
            (f, s)
        })
        .collect();
    now != current.stamps
}

/// Loads every file; a file that does not check keeps the flows it had in
/// `previous`.
pub fn load(paths: &[PathBuf], previous: &Flows) -> Flows {
    let mut next = Flows::default();
    for file in files(paths) {
        next.stamps.push((file.clone(), stamp(&file)));
        let base_dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let text = match read(&file) {
            Ok(t) => t,
            Err(why) => {
                keep_previous(&file, previous, &mut next, format!("{}: {why}\n", file.display()));
                continue;
            }
        };
        let analysis = analyze(&text, &Options::in_dir(&base_dir));
        if analysis.has_errors() {
            let errors: Vec<_> = analysis.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
            let name = file.display().to_string();
            let report = render::human(
                &FileReport {
                    path: &name,
                    src: &text,
                    diagnostics: &errors,
                },
                HumanStyle {
                    color: false,
                    width: 100,
                },
            );
            keep_previous(&file, previous, &mut next, report);
            continue;
        }
        for info in analysis.flows {
            let plan = info.plan;
            if let Some(other) = next.flows.get(&plan.flow) {
                next.broken.push(Broken {
                    file: file.clone(),
                    report: format!(
                        "{}: flow `{}` is defined in {} already; this one is not served\n",
                        file.display(),
                        plan.flow,
                        other.file.display()
                    ),
                    serving: Vec::new(),
                });
                continue;
            }
            if let Some(why) = kflow_runtime::executor::unsupported(&plan) {
                next.broken.push(Broken {
                    file: file.clone(),
                    report: format!("{}: flow `{}` cannot run: {why}\n", file.display(), plan.flow),
                    serving: Vec::new(),
                });
                continue;
            }
            let trigger_secrets = secret::read(&plan, &base_dir, secret::Readers::Triggers);
            next.flows.insert(
                plan.flow.clone(),
                Arc::new(Flow {
                    plan: Arc::new(plan),
                    file: file.clone(),
                    base_dir: base_dir.clone(),
                    trigger_secrets,
                }),
            );
        }
    }
    next
}

fn read(file: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|e| reason(&e))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("larger than {} MiB", MAX_FILE / 1024 / 1024));
    }
    std::fs::read_to_string(file).map_err(|e| reason(&e))
}

fn reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or_default().to_string()
}

/// A file that failed: its previous flows go on serving.
fn keep_previous(file: &Path, previous: &Flows, next: &mut Flows, report: String) {
    let mut serving = Vec::new();
    for (name, flow) in &previous.flows {
        if flow.file == file && !next.flows.contains_key(name) {
            next.flows.insert(name.clone(), flow.clone());
            serving.push(name.clone());
        }
    }
    next.broken.push(Broken {
        file: file.to_path_buf(),
        report,
        serving,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_edit_keeps_the_last_good_version_serving() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.kflow");
        std::fs::write(&f, "flow a {\n  task t = log { message: \"one\" }\n}\n").unwrap();
        let paths = vec![dir.path().to_path_buf()];
        let first = load(&paths, &Flows::default());
        assert!(first.broken.is_empty(), "{:?}", first.broken);
        assert!(!changed(&paths, &first));
        std::fs::write(&f, "flow a {\n  task t = log { mesage: \"two\" }\n}\n").unwrap();
        assert!(changed(&paths, &first));
        let second = load(&paths, &first);
        assert!(
            Arc::ptr_eq(&first.flows["a"], &second.flows["a"]),
            "the good version serves on"
        );
        assert_eq!(second.broken.len(), 1);
        assert!(
            second.broken[0].report.contains("kflow::name::unknown-property"),
            "{}",
            second.broken[0].report
        );
        assert_eq!(second.broken[0].serving, ["a"]);
    }
}
