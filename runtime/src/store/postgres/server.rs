//! What `kflow serve` keeps besides executions: webhook deliveries,
//! schedule fires, users, tokens and the audit trail.

use serde_json::Value as Json;
use tokio_postgres::Row;

use super::{like_prefix, text, PgStore};
use crate::store::{
    json_column, new_id, now, AuditEntry, Claim, Delivery, NewDelivery, NewToken, Result, Role, StoreError,
    StoredDelivery, Token, User, Verdict,
};

const DELIVERY_COLUMNS: &str =
    "id, flow, trigger, delivery, received_at, status, verdict, reason, execution, replay_of";
const USER_COLUMNS: &str = "name, role, password, created_at";
const TOKEN_COLUMNS: &str = "id, owner, kind, label, created_at, expires_at, revoked_at, last_used_at";

/// An advisory lock's key for a tuple of names: the first 8 bytes of their
/// SHA-256, each name length-prefixed so no two tuples share one.
fn lock_key(parts: &[&str]) -> i64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    i64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

fn delivery_row(r: &Row) -> Delivery {
    Delivery {
        id: r.get(0),
        flow: r.get(1),
        trigger: r.get(2),
        delivery: r.get(3),
        received_at: r.get(4),
        status: r.get::<_, i32>(5).clamp(0, 999) as u16,
        verdict: Verdict::parse(r.get(6)),
        reason: r.get(7),
        execution: r.get(8),
        replay_of: r.get(9),
    }
}

fn user_row(r: &Row) -> User {
    User {
        name: r.get(0),
        role: Role::parse(r.get(1)).unwrap_or(Role::Viewer),
        password: r.get(2),
        created_at: r.get(3),
    }
}

fn token_row(r: &Row) -> Token {
    Token {
        id: r.get(0),
        user: r.get(1),
        kind: r.get(2),
        label: r.get(3),
        created_at: r.get(4),
        expires_at: r.get(5),
        revoked_at: r.get(6),
        last_used_at: r.get(7),
    }
}

impl PgStore {
    pub async fn record_delivery(&self, d: &NewDelivery<'_>) -> Result<String> {
        let id = format!("d-{}", new_id());
        self.client()
            .await?
            .execute(
                "INSERT INTO deliveries (id, flow, trigger, delivery, received_at, status, verdict, reason, headers, body, replay_of, execution)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &id,
                    &text(d.flow),
                    &text(d.trigger),
                    &d.delivery.map(text),
                    &now(),
                    &i32::from(d.status),
                    &d.verdict.as_str(),
                    &d.reason.map(text),
                    &d.headers.map(|h| text(&h.to_string()).into_owned()),
                    &d.body,
                    &d.replay_of,
                    &d.execution,
                ],
            )
            .await?;
        Ok(id)
    }

    /// Claims a delivery id once, whichever server sees it first: the
    /// transaction takes a lock named by the (flow, trigger, delivery) it
    /// claims, so two servers answering the same redelivery at once do not
    /// both find it new.
    pub async fn claim_delivery(&self, d: &NewDelivery<'_>) -> Result<Claim> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let (Some(delivery), None) = (d.delivery, d.replay_of) {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&lock_key(&[d.flow, d.trigger, delivery])],
            )
            .await?;
            let earlier = tx
                .query_opt(
                    &format!(
                        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE flow = $1 AND trigger = $2 AND delivery = $3 AND replay_of IS NULL
                         AND verdict IN ('pending', 'accepted', 'filtered', 'refused') ORDER BY seq LIMIT 1"
                    ),
                    &[&text(d.flow), &text(d.trigger), &text(delivery)],
                )
                .await?;
            if let Some(earlier) = earlier {
                return Ok(Claim::Repeat(delivery_row(&earlier)));
            }
        }
        let id = format!("d-{}", new_id());
        tx.execute(
            "INSERT INTO deliveries (id, flow, trigger, delivery, received_at, status, verdict, headers, body, replay_of)
             VALUES ($1, $2, $3, $4, $5, 0, 'pending', $6, $7, $8)",
            &[
                &id,
                &text(d.flow),
                &text(d.trigger),
                &d.delivery.map(text),
                &now(),
                &d.headers.map(|h| text(&h.to_string()).into_owned()),
                &d.body,
                &d.replay_of,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Claim::New(id))
    }

    pub async fn settle_delivery(
        &self,
        id: &str,
        status: u16,
        verdict: Verdict,
        reason: Option<&str>,
        execution: Option<&str>,
    ) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE deliveries SET status = $2, verdict = $3, reason = $4, execution = $5 WHERE id = $1",
                &[
                    &id,
                    &i32::from(status),
                    &verdict.as_str(),
                    &reason.map(text),
                    &execution,
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn deliveries(&self, limit: usize, before: Option<&str>) -> Result<Vec<Delivery>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries
                     WHERE ($1::text IS NULL OR seq < (SELECT seq FROM deliveries WHERE id = $1))
                     ORDER BY seq DESC LIMIT $2"
                ),
                &[&before, &(limit.min(10_000) as i64)],
            )
            .await?;
        Ok(rows.iter().map(delivery_row).collect())
    }

    pub async fn delivery(&self, id: &str) -> Result<Option<StoredDelivery>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {DELIVERY_COLUMNS}, headers, body FROM deliveries WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.map(|r| StoredDelivery {
            delivery: delivery_row(&r),
            headers: json_column(r.get(10)),
            body: r.get(11),
        }))
    }

    pub async fn last_fire(&self, flow: &str, trigger: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT last_fire FROM schedule_fires WHERE flow = $1 AND trigger = $2",
                &[&flow, &trigger],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn set_last_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO schedule_fires (flow, trigger, last_fire) VALUES ($1, $2, $3)
                 ON CONFLICT (flow, trigger) DO UPDATE SET last_fire = excluded.last_fire",
                &[&flow, &trigger, &at],
            )
            .await?;
        Ok(())
    }

    /// See [`Store::claim_fire`](crate::store::Store::claim_fire): the row
    /// is locked by the upsert, so two servers cannot both take a time.
    pub async fn claim_fire(&self, flow: &str, trigger: &str, at: &str) -> Result<bool> {
        let changed = self
            .client()
            .await?
            .execute(
                "INSERT INTO schedule_fires (flow, trigger, last_fire) VALUES ($1, $2, $3) ON CONFLICT (flow, trigger)
                 DO UPDATE SET last_fire = excluded.last_fire
                 WHERE schedule_fires.last_fire::timestamptz < excluded.last_fire::timestamptz",
                &[&flow, &trigger, &at],
            )
            .await?;
        Ok(changed == 1)
    }

    pub async fn add_user(&self, name: &str, role: Role, password: Option<&str>) -> Result<()> {
        let changed = self
            .client()
            .await?
            .execute(
                "INSERT INTO users (name, role, password, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&text(name), &role.as_str(), &password, &now()],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError(format!("a user named `{name}` exists already")));
        }
        Ok(())
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = self
            .client()
            .await?
            .query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"), &[])
            .await?;
        Ok(rows.iter().map(user_row).collect())
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"),
                &[&text(name)],
            )
            .await?;
        Ok(row.as_ref().map(user_row))
    }

    pub async fn remove_user(&self, name: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE owner = $1 AND revoked_at IS NULL",
            &[&name, &now()],
        )
        .await?;
        let gone = tx.execute("DELETE FROM users WHERE name = $1", &[&name]).await?;
        tx.commit().await?;
        Ok(gone == 1)
    }

    pub async fn add_token(&self, t: &NewToken<'_>) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO tokens (id, owner, kind, label, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&t.id, &t.user, &t.kind, &text(t.label), &t.hash, &now(), &t.expires_at],
            )
            .await?;
        Ok(())
    }

    pub async fn tokens(&self) -> Result<Vec<Token>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = 'api' ORDER BY created_at DESC, id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(token_row).collect())
    }

    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<(Token, User)>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT t.id, t.owner, t.kind, t.label, t.created_at, t.expires_at, t.revoked_at, t.last_used_at,
                        u.name, u.role, u.password, u.created_at
                 FROM tokens t JOIN users u ON u.name = t.owner WHERE t.hash = $1",
                &[&hash],
            )
            .await?;
        Ok(row.map(|r| {
            let user = User {
                name: r.get(8),
                role: Role::parse(r.get(9)).unwrap_or(Role::Viewer),
                password: r.get(10),
                created_at: r.get(11),
            };
            (token_row(&r), user)
        }))
    }

    pub async fn revoke_token(&self, id: &str) -> Result<Option<String>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let ids: Vec<String> = tx
            .query(
                "SELECT id FROM tokens WHERE id LIKE $1 AND revoked_at IS NULL ORDER BY id LIMIT 2 FOR UPDATE",
                &[&like_prefix(id)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        match ids.as_slice() {
            [] => Ok(None),
            [one] => {
                tx.execute("UPDATE tokens SET revoked_at = $2 WHERE id = $1", &[one, &now()])
                    .await?;
                tx.commit().await?;
                Ok(Some(one.clone()))
            }
            _ => Err(StoreError(format!(
                "`{id}` matches several tokens: give more of the id"
            ))),
        }
    }

    pub async fn touch_token(&self, id: &str) -> Result<()> {
        self.client()
            .await?
            .execute("UPDATE tokens SET last_used_at = $2 WHERE id = $1", &[&id, &now()])
            .await?;
        Ok(())
    }

    pub async fn audit(&self, actor: &str, action: &str, target: &str, origin: &str, detail: &Json) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO audit (at, actor, action, target, origin, detail) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &now(),
                    &text(actor),
                    &action,
                    &text(target),
                    &text(origin),
                    &detail.to_string(),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: usize, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, at, actor, action, target, origin, detail FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                &[&before.unwrap_or(i64::MAX), &(limit.min(10_000) as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                target: r.get(4),
                origin: r.get(5),
                detail: json_column(r.get(6)),
            })
            .collect())
    }
}
