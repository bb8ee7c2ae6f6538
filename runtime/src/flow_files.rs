//! Finding flow files: the `.kflow` files under a folder, for the commands
//! that take folders and for `kflow serve`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The `.kflow` files under `dir`, each once, in sorted order per folder:
/// symlinked folders are followed but never twice (a link loop ends), a file
/// reached by several paths is read once, hidden entries and `target/` are
/// skipped, and what is not a regular file (a FIFO, a device, a dangling
/// link) is passed to `skip` with the reason — reading a FIFO would wait
/// forever.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>, mut skip: impl FnMut(&Path, &str)) -> std::io::Result<()> {
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
                        let why = e.to_string();
                        skip(&path, why.split(" (os error").next().unwrap_or_default());
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
                    skip(&path, "not a regular file");
                } else if seen_files.insert(id(&meta)) {
                    out.push(path);
                }
            }
        }
    }
    Ok(())
}
