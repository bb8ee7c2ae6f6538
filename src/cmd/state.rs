//! Where the execution history is, by one rule for every subcommand:
//! `--state DIR`, else `KFLOW_STATE`, else the nearest `.kflow` folder from
//! the current folder upward (as git finds `.git`), else `.kflow` in the
//! current folder, created by the first run.

use std::path::{Path, PathBuf};

/// The history folder, and whether `--state` chose it (then the hints
/// kflow prints name it, so they work as printed).
pub struct StateDir {
    pub dir: PathBuf,
    pub flag: Option<PathBuf>,
}

impl StateDir {
    pub fn find(given: Option<&Path>) -> StateDir {
        if let Some(dir) = given {
            return StateDir {
                dir: dir.to_path_buf(),
                flag: Some(dir.to_path_buf()),
            };
        }
        let dir = std::env::var_os("KFLOW_STATE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(nearest)
            .unwrap_or_else(|| PathBuf::from(".kflow"));
        StateDir { dir, flag: None }
    }

    /// The folder, once it holds a history; refused before any run made one.
    pub fn existing(&self) -> super::Result<&Path> {
        if self.dir.join("history.db").exists() {
            Ok(&self.dir)
        } else {
            Err(super::UsageError(format!(
                "no execution history in {} (run a flow first, or pass --state DIR)",
                self.dir.display()
            )))
        }
    }

    /// The history, to change it (see [`StateDir::existing`]).
    pub fn open(&self) -> super::Result<kflow_runtime::store::SqliteStore> {
        kflow_runtime::store::SqliteStore::open(self.existing()?).map_err(|e| super::UsageError(e.0))
    }

    /// ` --state DIR` when the folder came from the flag, for hints.
    pub fn hint(&self) -> String {
        self.flag
            .as_ref()
            .map(|d| format!(" --state {}", shell_word(&d.to_string_lossy())))
            .unwrap_or_default()
    }
}

/// The nearest `.kflow` folder from the current folder upward.
fn nearest() -> Option<PathBuf> {
    let here = std::env::current_dir().ok()?;
    let found = here.ancestors().map(|d| d.join(".kflow")).find(|d| d.is_dir())?;
    // Shown relative when it is the current folder's own.
    Some(if found == here.join(".kflow") {
        PathBuf::from(".kflow")
    } else {
        found
    })
}

/// `word` as one shell word: bare when it is safe, else single-quoted.
pub fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_quote_what_the_shell_would_split() {
        assert_eq!(shell_word("a/b.c"), "a/b.c");
        assert_eq!(shell_word("my state"), "'my state'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        let s = StateDir::find(Some(Path::new("x y")));
        assert_eq!(s.hint(), " --state 'x y'");
    }
}
