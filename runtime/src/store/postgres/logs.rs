//! Task logs as rows: `log_lines` numbered per execution. A batch takes the
//! execution's row lock to number its lines, so numbers follow commit order
//! and a reader that read up to line n has seen every line below it; the
//! number of the last line read is the reader's offset. Each task run keeps
//! at most [`LOG_CAP`](crate::store::LOG_CAP) bytes, as in the SQLite
//! history.

use std::collections::HashMap;

use super::{text, PgStore};
use crate::store::logs::Budget;
use crate::store::{log_stamp, run_file_name, LogAppend, LogEntry, Result};

/// Most lines one read returns, whatever their size.
const READ_LINES: i64 = 2000;

impl PgStore {
    pub async fn append_logs(&self, id: &str, lines: &[LogAppend<'_>]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt("SELECT log_lines FROM executions WHERE id = $1 FOR UPDATE", &[&id])
            .await?
        else {
            return Err(crate::store::StoreError(format!("no execution {id} to log to")));
        };
        let first: i64 = row.get(0);
        let mut tasks: Vec<&str> = lines.iter().map(|l| l.task).collect();
        tasks.sort_unstable();
        tasks.dedup();
        let mut budgets: HashMap<String, Budget> = tx
            .query(
                "SELECT task, written, cut FROM log_runs WHERE execution_id = $1 AND task = ANY($2)",
                &[&id, &tasks],
            )
            .await?
            .iter()
            .map(|r| {
                let written: i64 = r.get(1);
                (
                    r.get(0),
                    Budget {
                        written: written.max(0) as u64,
                        cut: r.get(2),
                    },
                )
            })
            .collect();
        let stamp = log_stamp();
        let (mut ns, mut names, mut texts) = (Vec::new(), Vec::new(), Vec::new());
        for l in lines {
            let budget = budgets.entry(l.task.to_string()).or_default();
            // Counted as the file the SQLite history writes would count it.
            let head = stamp.len() + run_file_name(l.task).len() + 2;
            if let Some(kept) = budget.admit(head, l.text) {
                ns.push(first + ns.len() as i64);
                names.push(text(l.task));
                texts.push(text(kept));
            }
        }
        tx.execute(
            "INSERT INTO log_lines (execution_id, n, task, stamp, text)
             SELECT $1, n, t, $2, x FROM unnest($3::bigint[], $4::text[], $5::text[]) AS u(n, t, x)",
            &[&id, &stamp, &ns, &names, &texts],
        )
        .await?;
        let (mut runs, mut written, mut cut) = (Vec::new(), Vec::new(), Vec::new());
        for (task, b) in &budgets {
            runs.push(task.as_str());
            written.push(b.written as i64);
            cut.push(b.cut);
        }
        tx.execute(
            "INSERT INTO log_runs (execution_id, task, written, cut)
             SELECT $1, t, w, c FROM unnest($2::text[], $3::bigint[], $4::bool[]) AS u(t, w, c)
             ON CONFLICT (execution_id, task) DO UPDATE SET written = excluded.written, cut = excluded.cut",
            &[&id, &runs, &written, &cut],
        )
        .await?;
        tx.execute(
            "UPDATE executions SET log_lines = $2 WHERE id = $1",
            &[&id, &(first + ns.len() as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The lines after `offset` (the number of lines read before), about
    /// `max_bytes` of them at most, and the new offset.
    pub async fn read_log(&self, id: &str, offset: u64, max_bytes: u64) -> Result<(Vec<LogEntry>, u64)> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT n, task, stamp, text FROM log_lines WHERE execution_id = $1 AND n >= $2 ORDER BY n LIMIT $3",
                &[&id, &(offset.min(i64::MAX as u64) as i64), &READ_LINES],
            )
            .await?;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut next = offset;
        for r in &rows {
            let line: String = r.get(3);
            // Always at least one line, however long.
            if !out.is_empty() && bytes + line.len() as u64 > max_bytes {
                break;
            }
            bytes += line.len() as u64;
            next = r.get::<_, i64>(0) as u64 + 1;
            out.push(LogEntry {
                stamp: Some(r.get(2)),
                task: r.get(1),
                text: line,
            });
        }
        Ok((out, next))
    }
}
