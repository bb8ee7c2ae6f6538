//! Where the execution history is, by one rule for every subcommand:
//! `--state DIR`, else `KFLOW_STATE`, else the nearest `.kflow` folder from
//! the current folder upward (as git finds `.git`), else `.kflow` in the
//! current folder, created by the first run.
//!
//! The history itself may live in PostgreSQL instead (`--store URL`, else
//! `KFLOW_STORE`), shared by kflow processes on several machines; the
//! folder then keeps only what is local to a machine (artifacts, spools).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kflow_runtime::store::{PgStore, SqliteStore, Store};

/// Where the history is: a PostgreSQL database, else the folder's SQLite.
pub struct History {
    /// `postgres://…`, from `--store` or `KFLOW_STORE`.
    pub url: Option<String>,
    /// Whether `--store` gave it (then hints name it).
    url_flag: bool,
    pub state: StateDir,
}

impl History {
    pub fn find(state: Option<&Path>, store: Option<&str>) -> History {
        let env = || std::env::var("KFLOW_STORE").ok().filter(|v| !v.is_empty());
        History {
            url: store.map(str::to_string).or_else(env),
            url_flag: store.is_some(),
            state: StateDir::find(state),
        }
    }

    /// Opens the history to write it: PostgreSQL (migrated on first use),
    /// else the folder's, created if needed. Call it within the runtime
    /// that will use the store (a PostgreSQL store renews leases on it).
    pub async fn open(&self) -> super::Result<Arc<dyn Store>> {
        match self.url.as_deref() {
            Some(url) => Ok(Arc::new(connect(url).await?)),
            None => Ok(Arc::new(
                SqliteStore::open(&self.state.dir).map_err(|e| super::UsageError(e.0))?,
            )),
        }
    }

    /// Opens an existing history to change it (refused where no run made
    /// one).
    pub async fn open_existing(&self) -> super::Result<Arc<dyn Store>> {
        if self.url.is_none() {
            self.state.existing()?;
        }
        self.open().await
    }

    /// Opens an existing history to read it: a SQLite history needs no
    /// write access.
    pub async fn open_read(&self) -> super::Result<Arc<dyn Store>> {
        match self.url.as_deref() {
            Some(url) => Ok(Arc::new(connect(url).await?)),
            None => Ok(Arc::new(
                SqliteStore::open_read(self.state.existing()?).map_err(|e| super::UsageError(e.0))?,
            )),
        }
    }

    /// What printed hints add so they find this history: ` --store URL`
    /// without its password when the flag gave it (the reader supplies it
    /// again), else the folder's ` --state DIR`.
    pub fn hint(&self) -> String {
        match (&self.url, self.url_flag) {
            (Some(url), true) => format!(" --store {}", shell_word(&without_password(url))),
            (Some(_), false) => String::new(),
            (None, _) => self.state.hint(),
        }
    }
}

/// Refuses a `--store` that is no PostgreSQL URL, showing it without its
/// password.
pub fn check_url(url: &str) -> super::Result<()> {
    if kflow_runtime::store::is_postgres_url(url) {
        return Ok(());
    }
    Err(super::UsageError(format!(
        "--store `{}`: give a PostgreSQL URL, postgres://user:password@host:port/database (a history folder is --state DIR)",
        without_password(url)
    )))
}

/// The PostgreSQL history at `url`.
pub async fn connect(url: &str) -> super::Result<PgStore> {
    check_url(url)?;
    PgStore::connect(url).await.map_err(|e| super::UsageError(e.0))
}

/// A URL as it may be shown: any password replaced by `***`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let tail = hide_query_password(tail);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// A query's `password=` value replaced by `***`.
fn hide_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

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
    fn store_urls_are_shown_without_their_password() {
        assert_eq!(
            without_password("postgres://kflow:s3cr%40t@db.internal:5432/kflow"),
            "postgres://kflow:***@db.internal:5432/kflow"
        );
        assert_eq!(
            without_password("postgres://kflow@db/kflow"),
            "postgres://kflow@db/kflow"
        );
        assert_eq!(
            without_password("postgresql://db/kflow?user=k&password=hunter2&sslmode=disable"),
            "postgresql://db/kflow?user=k&password=***&sslmode=disable"
        );
        // An `@` in the password: the host is after the last one.
        assert_eq!(without_password("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
        assert_eq!(without_password("not a url"), "not a url");
    }

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
