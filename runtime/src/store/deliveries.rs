//! What the server keeps besides executions: every webhook delivery it
//! answered (with its verdict, and the body of verified ones for replay),
//! and the last time each schedule fired.
//!
//! A delivery id is claimed before anything starts: the claim is a row that
//! a unique index keeps single per (flow, trigger, provider's delivery id),
//! so two copies of one delivery arriving at once start one execution.

use rusqlite::{params, OptionalExtension};
use serde_json::Value as Json;

use super::{json_column, now, Result, SqliteStore};

/// A delivery as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Ours: `d-` and a time-ordered id.
    pub id: String,
    pub flow: String,
    pub trigger: String,
    /// The provider's delivery id, when it gave one.
    pub delivery: Option<String>,
    pub received_at: String,
    /// The HTTP status answered.
    pub status: u16,
    pub verdict: Verdict,
    /// Why (for filtered, refused and unverified deliveries); never a secret.
    pub reason: Option<String>,
    pub execution: Option<String>,
    /// The delivery this one replays.
    pub replay_of: Option<String>,
}

/// A delivery with what a replay needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub delivery: Delivery,
    /// Its headers, credentials removed (JSON object).
    pub headers: Json,
    /// The body of a verified delivery.
    pub body: Option<Vec<u8>>,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Claimed, being decided (or the server stopped while deciding).
    Pending,
    /// An execution was started.
    Accepted,
    /// `events` or `when` left it out.
    Filtered,
    /// Its values did not convert to the flow's inputs.
    Refused,
    /// No such flow or trigger, or a bad signature, token or timestamp.
    Unverified,
    /// A repeat of a delivery already taken.
    Duplicate,
    /// It could not be handled (the history, a missing secret).
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pending => "pending",
            Verdict::Accepted => "accepted",
            Verdict::Filtered => "filtered",
            Verdict::Refused => "refused",
            Verdict::Unverified => "unverified",
            Verdict::Duplicate => "duplicate",
            Verdict::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Verdict {
        match s {
            "accepted" => Verdict::Accepted,
            "filtered" => Verdict::Filtered,
            "refused" => Verdict::Refused,
            "unverified" => Verdict::Unverified,
            "duplicate" => Verdict::Duplicate,
            "failed" => Verdict::Failed,
            _ => Verdict::Pending,
        }
    }
}

/// A delivery to record.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub flow: &'a str,
    pub trigger: &'a str,
    pub delivery: Option<&'a str>,
    pub status: u16,
    pub verdict: Verdict,
    pub reason: Option<&'a str>,
    /// Headers without credentials (JSON object), for replay.
    pub headers: Option<&'a Json>,
    /// The body of a verified delivery, for replay.
    pub body: Option<&'a [u8]>,
    /// The delivery this one replays.
    pub replay_of: Option<&'a str>,
    /// The execution it started (a repeat: the one its first copy started).
    pub execution: Option<&'a str>,
}

/// How a claim went.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This delivery is new: decide it and [`SqliteStore::settle_delivery`] the row.
    New(String),
    /// The provider's id was taken before: the delivery recorded then.
    Repeat(Delivery),
}

const COLUMNS: &str = "id, flow, trigger, delivery, received_at, status, verdict, reason, execution, replay_of";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        flow: r.get(1)?,
        trigger: r.get(2)?,
        delivery: r.get(3)?,
        received_at: r.get(4)?,
        status: r.get::<_, i64>(5)?.clamp(0, 999) as u16,
        verdict: Verdict::parse(&r.get::<_, String>(6)?),
        reason: r.get(7)?,
        execution: r.get(8)?,
        replay_of: r.get(9)?,
    })
}

impl SqliteStore {
    /// Records a delivery decided at once (unknown, unverified, failed).
    pub fn record_delivery(&self, d: &NewDelivery) -> Result<String> {
        let id = format!("d-{}", super::new_id());
        self.conn().execute(
            "INSERT INTO deliveries (id, flow, trigger, delivery, received_at, status, verdict, reason, headers, body, replay_of, execution) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                id,
                d.flow,
                d.trigger,
                d.delivery,
                now(),
                d.status,
                d.verdict.as_str(),
                d.reason,
                d.headers.map(Json::to_string),
                d.body,
                d.replay_of,
                d.execution
            ],
        )?;
        Ok(id)
    }

    /// Claims a verified delivery: a new row, `pending`, unless the
    /// provider's id was taken by an earlier delivery of the trigger (a
    /// replay from the API claims anew).
    pub fn claim_delivery(&self, d: &NewDelivery) -> Result<Claim> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let (Some(delivery), None) = (d.delivery, d.replay_of) {
            let earlier = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM deliveries WHERE flow = ?1 AND trigger = ?2 AND delivery = ?3 AND replay_of IS NULL AND verdict IN ('pending', 'accepted', 'filtered', 'refused') ORDER BY seq LIMIT 1"
                    ),
                    params![d.flow, d.trigger, delivery],
                    row,
                )
                .optional()?;
            if let Some(earlier) = earlier {
                return Ok(Claim::Repeat(earlier));
            }
        }
        let id = format!("d-{}", super::new_id());
        tx.execute(
            "INSERT INTO deliveries (id, flow, trigger, delivery, received_at, status, verdict, reason, headers, body, replay_of) VALUES (?1, ?2, ?3, ?4, ?5, 0, 'pending', NULL, ?6, ?7, ?8)",
            params![
                id,
                d.flow,
                d.trigger,
                d.delivery,
                now(),
                d.headers.map(Json::to_string),
                d.body,
                d.replay_of
            ],
        )?;
        tx.commit()?;
        Ok(Claim::New(id))
    }

    /// Records how a claimed delivery was decided.
    pub fn settle_delivery(
        &self,
        id: &str,
        status: u16,
        verdict: Verdict,
        reason: Option<&str>,
        execution: Option<&str>,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE deliveries SET status = ?2, verdict = ?3, reason = ?4, execution = ?5 WHERE id = ?1",
            params![id, status, verdict.as_str(), reason, execution],
        )?;
        Ok(())
    }

    /// The newest deliveries first, up to `limit`, older than `before` (a
    /// delivery id) when given.
    pub fn deliveries(&self, limit: usize, before: Option<&str>) -> Result<Vec<Delivery>> {
        let conn = self.conn();
        let limit = limit.min(10_000) as i64;
        let rows = match before {
            Some(b) => conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM deliveries WHERE seq < (SELECT seq FROM deliveries WHERE id = ?1) ORDER BY seq DESC LIMIT ?2"
                ))?
                .query_map(params![b, limit], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => conn
                .prepare(&format!("SELECT {COLUMNS} FROM deliveries ORDER BY seq DESC LIMIT ?1"))?
                .query_map(params![limit], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    }

    /// One delivery with what a replay needs: its headers and body.
    pub fn delivery(&self, id: &str) -> Result<Option<Stored>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS}, headers, body FROM deliveries WHERE id = ?1"),
                params![id],
                |r| {
                    Ok(Stored {
                        delivery: row(r)?,
                        headers: json_column(r.get(10)?),
                        body: r.get(11)?,
                    })
                },
            )
            .optional()?)
    }

    /// When a schedule last fired (RFC 3339), if it ever did.
    pub fn last_fire(&self, flow: &str, trigger: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT last_fire FROM schedule_fires WHERE flow = ?1 AND trigger = ?2",
                params![flow, trigger],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// See [`Store::claim_fire`](super::Store::claim_fire): times compared
    /// as instants, whatever their offset or precision.
    pub fn claim_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<bool> {
        let changed = self.conn().execute(
            "INSERT INTO schedule_fires (flow, trigger, last_fire) VALUES (?1, ?2, ?3) ON CONFLICT (flow, trigger)
             DO UPDATE SET last_fire = excluded.last_fire WHERE julianday(schedule_fires.last_fire) < julianday(excluded.last_fire)",
            params![flow, trigger, at],
        )?;
        Ok(changed == 1)
    }

    pub fn set_last_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO schedule_fires (flow, trigger, last_fire) VALUES (?1, ?2, ?3) ON CONFLICT (flow, trigger) DO UPDATE SET last_fire = excluded.last_fire",
            params![flow, trigger, at],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new<'a>(delivery: Option<&'a str>) -> NewDelivery<'a> {
        NewDelivery {
            flow: "release",
            trigger: "release",
            delivery,
            status: 0,
            verdict: Verdict::Pending,
            reason: None,
            headers: None,
            body: Some(b"{}"),
            replay_of: None,
            execution: None,
        }
    }

    #[test]
    fn a_delivery_id_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let Claim::New(first) = s.claim_delivery(&new(Some("abc"))).unwrap() else {
            panic!("a new delivery")
        };
        s.settle_delivery(&first, 202, Verdict::Accepted, None, Some("exec-1"))
            .unwrap();
        match s.claim_delivery(&new(Some("abc"))).unwrap() {
            Claim::Repeat(d) => {
                assert_eq!(d.id, first);
                assert_eq!(d.execution.as_deref(), Some("exec-1"));
            }
            other => panic!("{other:?}"),
        }
        // Without an id, or as a replay, every delivery is new.
        assert!(matches!(s.claim_delivery(&new(None)).unwrap(), Claim::New(_)));
        let replay = NewDelivery {
            replay_of: Some(&first),
            ..new(Some("abc"))
        };
        assert!(matches!(s.claim_delivery(&replay).unwrap(), Claim::New(_)));
        // An unverified delivery with the id does not take it.
        let Claim::New(other) = s
            .claim_delivery(&NewDelivery {
                trigger: "other",
                ..new(Some("x"))
            })
            .unwrap()
        else {
            panic!()
        };
        s.settle_delivery(&other, 404, Verdict::Unverified, Some("bad signature"), None)
            .unwrap();
        assert!(matches!(
            s.claim_delivery(&NewDelivery {
                trigger: "other",
                ..new(Some("x"))
            })
            .unwrap(),
            Claim::New(_)
        ));
        let all = s.deliveries(10, None).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(s.deliveries(10, Some(&all[1].id)).unwrap().len(), 3);
        let stored = s.delivery(&first).unwrap().unwrap();
        let d = &stored.delivery;
        assert_eq!(
            (d.status, d.verdict, stored.body.as_deref()),
            (202, Verdict::Accepted, Some(&b"{}"[..]))
        );
    }

    #[test]
    fn schedules_remember_their_last_fire() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.last_fire("f", "schedule").unwrap(), None);
        s.set_last_fire("f", "schedule", "2026-12-05T03:00:00Z").unwrap();
        s.set_last_fire("f", "schedule", "2026-12-06T03:00:00Z").unwrap();
        assert_eq!(
            s.last_fire("f", "schedule").unwrap().as_deref(),
            Some("2026-12-06T03:00:00Z")
        );
    }
}
