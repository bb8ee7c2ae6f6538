//! Where each digest went: every succeeded task run whose outputs name a
//! `sha256:…` digest (alone or pinned, `repo@sha256:…`), with the tag it
//! was pushed or copied to. Filled when a task run finishes, so the
//! question "which executions built, pushed, scanned, signed, copied or
//! approved this digest" is one indexed lookup.

use rusqlite::params;

use super::{Result, SqliteStore};

/// Fills the index from the task runs that `$filter` selects (SQL over
/// `task_runs t`): every output that is a digest or a pinned reference.
/// One statement for the migration that fills it from older executions
/// and for each task run as it finishes.
macro_rules! index_digests {
    ($filter:literal) => {
        concat!(
            "INSERT OR IGNORE INTO digests (digest, execution_id, task, kind, output, repository, tag, at)
             SELECT substr(j.value, instr(j.value, 'sha256:')), t.execution_id, t.task, t.kind, j.key,
                    CASE WHEN instr(j.value, '@') > 0 THEN substr(j.value, 1, instr(j.value, '@') - 1) END,
                    CASE WHEN json_type(t.outputs, '$.ref') = 'text' THEN json_extract(t.outputs, '$.ref') END,
                    COALESCE(t.ended_at, '')
             FROM task_runs t, json_each(t.outputs) j
             WHERE t.state = 'succeeded' AND json_valid(t.outputs) AND json_type(t.outputs) = 'object'
               AND j.type = 'text' AND length(substr(j.value, instr(j.value, 'sha256:'))) = 71
               AND (j.value GLOB 'sha256:*' OR j.value GLOB '*@sha256:*') AND ",
            $filter
        )
    };
}
pub(crate) use index_digests;

/// The migration creating the index, filled from what is recorded.
pub(super) const MIGRATION: &str = concat!(
    "CREATE TABLE digests (
    digest TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task TEXT NOT NULL,
    kind TEXT NOT NULL,
    output TEXT NOT NULL,
    repository TEXT,
    tag TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (digest, execution_id, task, output)
);
CREATE INDEX digests_by_execution ON digests(execution_id);
",
    index_digests!("1;")
);

/// One task run that produced or handled a digest.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestUse {
    pub execution: String,
    pub flow: String,
    pub task: String,
    pub kind: String,
    /// The output naming it (`digest`, `pinned`, `subject`, …).
    pub output: String,
    /// The repository of a pinned reference (`registry/repo`).
    pub repository: Option<String>,
    /// The tag the task pushed or copied to (its `ref` output).
    pub tag: Option<String>,
    pub at: String,
}

impl DigestUse {
    /// What the task did with the digest, by its kind.
    pub fn role(&self) -> &'static str {
        match (self.kind.as_str(), self.output.as_str()) {
            ("cosign.sign", "signature") => "signature",
            ("docker.build", _) => "built",
            ("docker.push", _) => "pushed",
            ("registry.copy", _) => "copied",
            ("cosign.sign", _) => "signed",
            ("cosign.verify", _) => "verified",
            ("trivy.scan", _) => "scanned",
            ("approval", _) => "approved",
            _ => "output",
        }
    }
}

/// Where uses of a digest put it: the repositories and the tags, each
/// sorted, once.
pub fn places(uses: &[DigestUse]) -> (Vec<&str>, Vec<&str>) {
    fn sorted(mut v: Vec<&str>) -> Vec<&str> {
        v.sort();
        v.dedup();
        v
    }
    (
        sorted(uses.iter().filter_map(|u| u.repository.as_deref()).collect()),
        sorted(uses.iter().filter_map(|u| u.tag.as_deref()).collect()),
    )
}

/// Whether `s` is a digest as the index keeps them.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

impl SqliteStore {
    /// Every task run that named `digest`, newest first, at most `limit`.
    pub fn digest_uses(&self, digest: &str, limit: usize) -> Result<Vec<DigestUse>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT d.execution_id, e.flow, d.task, d.kind, d.output, d.repository, d.tag, d.at
             FROM digests d JOIN executions e ON e.id = d.execution_id
             WHERE d.digest = ?1 ORDER BY d.at DESC, d.execution_id DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![digest, limit as i64], |r| {
                Ok(DigestUse {
                    execution: r.get(0)?,
                    flow: r.get(1)?,
                    task: r.get(2)?,
                    kind: r.get(3)?,
                    output: r.get(4)?,
                    repository: r.get(5)?,
                    tag: r.get(6)?,
                    at: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TaskState;
    use crate::store::{Change, NewExecution, Origin};
    use serde_json::json;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn finished_task_runs_index_the_digests_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let id = s
            .begin(&NewExecution {
                flow: "release",
                file: "release.kflow",
                inputs: &json!({}),
                tasks: vec![],
                plan: json!({}),
                base_dir: dir.path().into(),
                rerun_of: None,
                trigger: None,
                origin: Origin::Cli,
            })
            .unwrap();
        let finished = |task: &str, kind: &str, state: TaskState, outputs: serde_json::Value| Change::Finished {
            task: task.into(),
            kind: kind.into(),
            state,
            error: None,
            outputs,
            at: crate::store::now(),
        };
        s.apply(
            &id,
            &[
                finished(
                    "push",
                    "docker.push",
                    TaskState::Succeeded,
                    json!({ "digest": D, "pinned": format!("127.0.0.1:5000/app@{D}"), "ref": "127.0.0.1:5000/app:1.0" }),
                ),
                finished("gate", "approval", TaskState::Succeeded, json!({ "subject": format!("r/app@{D}"), "by": "ann" })),
                // Not a digest, a failed run, a digest of the wrong length.
                finished("note", "shell.run", TaskState::Succeeded, json!({ "stdout": "sha256: none" })),
                finished("bad", "docker.push", TaskState::Failed, json!({ "digest": D })),
                finished("short", "shell.run", TaskState::Succeeded, json!({ "stdout": "sha256:0123" })),
            ],
        )
        .unwrap();
        let uses = s.digest_uses(D, 100).unwrap();
        let mut seen: Vec<String> = uses
            .iter()
            .map(|u| format!("{} {} {} {:?} {:?}", u.task, u.output, u.role(), u.repository, u.tag))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                r#"gate subject approved Some("r/app") None"#,
                r#"push digest pushed None Some("127.0.0.1:5000/app:1.0")"#,
                r#"push pinned pushed Some("127.0.0.1:5000/app") Some("127.0.0.1:5000/app:1.0")"#,
            ]
        );
        assert!(uses.iter().all(|u| u.flow == "release" && u.execution == id));
        assert!(is_digest(D) && !is_digest("sha256:0123") && !is_digest(&D.to_uppercase()));
    }
}
