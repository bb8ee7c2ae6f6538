//! Which blob each layer became when kflow last pushed it. A push gzips a
//! layer on its way to the registry, so the compressed digest is known only
//! once the upload is done; remembered here, the next push of that layer
//! asks the registry for that digest first and skips what it holds
//! (containers/image keeps a blob-info cache for the same reason).
//!
//! The compression is deterministic: under one [`gzip::FORMAT`] a layer is
//! always the same blob, so an entry never goes stale. The cache is a
//! disposable file beside the history (`layers.db`): missing, unreadable or
//! locked, pushes upload again and nothing fails.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::gzip;

const FILE: &str = "layers.db";

pub struct LayerCache(Mutex<Option<Connection>>);

/// A compressed layer: its blob's digest and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

impl LayerCache {
    /// The cache in the history folder `dir`; a cache that cannot be opened
    /// remembers nothing.
    pub fn open(dir: &Path) -> LayerCache {
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(dir.join(FILE))?;
            conn.busy_timeout(Duration::from_secs(2))?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS compressed (
                     diff_id TEXT NOT NULL,
                     format TEXT NOT NULL,
                     digest TEXT NOT NULL,
                     size INTEGER NOT NULL,
                     PRIMARY KEY (diff_id, format)
                 )",
            )?;
            Ok(conn)
        };
        LayerCache(Mutex::new(open().ok()))
    }

    /// The blob the layer `diff_id` became, if known.
    pub fn get(&self, diff_id: &str) -> Option<Blob> {
        let conn = self.0.lock().expect("not poisoned");
        conn.as_ref()?
            .query_row(
                "SELECT digest, size FROM compressed WHERE diff_id = ?1 AND format = ?2",
                params![diff_id, gzip::FORMAT],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .ok()
            .flatten()
            .and_then(|(digest, size)| {
                Some(Blob {
                    digest,
                    size: u64::try_from(size).ok()?,
                })
            })
    }

    /// Remembers that the layer `diff_id` became `blob`.
    pub fn put(&self, diff_id: &str, blob: &Blob) {
        if let Some(conn) = self.0.lock().expect("not poisoned").as_ref() {
            // A cache that cannot be written costs an upload next time only.
            let _ = conn.execute(
                "INSERT OR REPLACE INTO compressed (diff_id, format, digest, size) VALUES (?1, ?2, ?3, ?4)",
                params![diff_id, gzip::FORMAT, blob.digest, blob.size as i64],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_across_opens_and_never_fails() {
        let dir = tempfile::tempdir().unwrap();
        let blob = Blob {
            digest: "sha256:1".into(),
            size: 42,
        };
        LayerCache::open(dir.path()).put("sha256:a", &blob);
        let cache = LayerCache::open(dir.path());
        assert_eq!(cache.get("sha256:a"), Some(blob));
        assert_eq!(cache.get("sha256:b"), None);
        // Where no cache can be (not a folder), nothing is remembered.
        let nowhere = LayerCache::open(&dir.path().join(FILE).join("x"));
        nowhere.put(
            "sha256:a",
            &Blob {
                digest: "d".into(),
                size: 1,
            },
        );
        assert_eq!(nowhere.get("sha256:a"), None);
    }
}
