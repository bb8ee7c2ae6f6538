//! Who may use a server: users with a role, their API tokens (only a hash
//! of each is kept), and the audit trail of what they did. The hashing of
//! passwords and tokens is the server's; this keeps what it computed.

use rusqlite::{params, OptionalExtension};
use serde_json::Value as Json;

use super::{json_column, now, Result, SqliteStore, StoreError};

/// What a user may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read everything but secrets.
    Viewer,
    /// Start, cancel, rerun, resume.
    Operator,
    /// Decide approvals where the gate allows them.
    Approver,
    /// Users, tokens, deliveries, replays.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The argon2id hash (PHC string); `None` for machine users, who use
    /// tokens only.
    pub password: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Public: how the token is listed and revoked.
    pub id: String,
    pub user: String,
    /// `api` (created with `kflow token create`) or `session` (a login).
    pub kind: String,
    pub label: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// A token to keep: `hash` is what the server computed of its secret.
pub struct NewToken<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub kind: &'a str,
    pub label: &'a str,
    pub hash: &'a str,
    pub expires_at: Option<&'a str>,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    /// The user (or `os:NAME` for a command run on the server's machine).
    pub actor: String,
    /// `login`, `login_failed`, `token_created`, `token_revoked`,
    /// `user_added`, `user_removed`, `start`, `cancel`, `rerun`, `resume`,
    /// `approve`, `reject`, `replay`.
    pub action: String,
    pub target: String,
    /// Where from: the peer address, or `cli`.
    pub origin: String,
    pub detail: Json,
}

const USER_COLUMNS: &str = "name, role, password, created_at";
const TOKEN_COLUMNS: &str = "id, user, kind, label, created_at, expires_at, revoked_at, last_used_at";

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
    let role: String = r.get(1)?;
    Ok(User {
        name: r.get(0)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        password: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn token_row(r: &rusqlite::Row) -> rusqlite::Result<Token> {
    Ok(Token {
        id: r.get(0)?,
        user: r.get(1)?,
        kind: r.get(2)?,
        label: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
        last_used_at: r.get(7)?,
    })
}

impl SqliteStore {
    /// Adds a user; an error if the name is taken.
    pub fn add_user(&self, name: &str, role: Role, password: Option<&str>) -> Result<()> {
        let changed = self.conn().execute(
            "INSERT OR IGNORE INTO users (name, role, password, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), password, now()],
        )?;
        if changed == 0 {
            return Err(StoreError(format!("a user named `{name}` exists already")));
        }
        Ok(())
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let rows = conn
            .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?
            .query_map([], user_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                params![name],
                user_row,
            )
            .optional()?)
    }

    /// Removes a user and revokes their tokens; whether they existed.
    pub fn remove_user(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE user = ?1 AND revoked_at IS NULL",
            params![name, now()],
        )?;
        let gone = tx.execute("DELETE FROM users WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(gone == 1)
    }

    pub fn add_token(&self, t: &NewToken) -> Result<()> {
        self.conn().execute(
            "INSERT INTO tokens (id, user, kind, label, hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![t.id, t.user, t.kind, t.label, t.hash, now(), t.expires_at],
        )?;
        Ok(())
    }

    /// Every token of kind `api`, newest first (sessions are not listed).
    pub fn tokens(&self) -> Result<Vec<Token>> {
        let conn = self.conn();
        let rows = conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = 'api' ORDER BY created_at DESC, id"
            ))?
            .query_map([], token_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The token whose secret hashes to `hash`, with its user, when it
    /// exists and its user does (revocation and expiry are the caller's to
    /// judge, so that it can say which).
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<(Token, User)>> {
        let conn = self.conn();
        let found = conn
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"),
                params![hash],
                token_row,
            )
            .optional()?;
        let Some(token) = found else { return Ok(None) };
        let user = conn
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                params![token.user],
                user_row,
            )
            .optional()?;
        Ok(user.map(|u| (token, u)))
    }

    /// Revokes a token (by id, or a unique prefix of one); the id revoked.
    pub fn revoke_token(&self, id: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM tokens WHERE id LIKE ?1 || '%' ESCAPE '\\' AND revoked_at IS NULL")?
            .query_map(
                [id.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")],
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?;
        match ids.as_slice() {
            [] => Ok(None),
            [one] => {
                conn.execute("UPDATE tokens SET revoked_at = ?2 WHERE id = ?1", params![one, now()])?;
                Ok(Some(one.clone()))
            }
            _ => Err(StoreError(format!(
                "`{id}` matches {} tokens: give more of the id",
                ids.len()
            ))),
        }
    }

    /// Notes when a token was last used (at most once a minute matters).
    pub fn touch_token(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE tokens SET last_used_at = ?2 WHERE id = ?1", params![id, now()])?;
        Ok(())
    }

    pub fn audit(&self, actor: &str, action: &str, target: &str, origin: &str, detail: &Json) -> Result<()> {
        self.conn().execute(
            "INSERT INTO audit (at, actor, action, target, origin, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now(), actor, action, target, origin, detail.to_string()],
        )?;
        Ok(())
    }

    /// The audit trail, newest first, older than `before` (a `seq`) if given.
    pub fn audit_log(&self, limit: usize, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let rows = conn
            .prepare(
                "SELECT seq, at, actor, action, target, origin, detail FROM audit WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2",
            )?
            .query_map(params![before.unwrap_or(i64::MAX), limit.min(10_000) as i64], |r| {
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    origin: r.get(5)?,
                    detail: json_column(r.get(6)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_tokens_and_the_audit_trail() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.add_user("alice", Role::Approver, Some("$argon2id$…")).unwrap();
        assert!(s.add_user("alice", Role::Admin, None).is_err());
        s.add_user("ci", Role::Operator, None).unwrap();
        assert_eq!(s.users().unwrap().len(), 2);
        s.add_token(&NewToken {
            id: "tok_1",
            user: "ci",
            kind: "api",
            label: "pipeline",
            hash: "h1",
            expires_at: None,
        })
        .unwrap();
        let (t, u) = s.token_by_hash("h1").unwrap().unwrap();
        assert_eq!((t.id.as_str(), u.role), ("tok_1", Role::Operator));
        assert!(s.token_by_hash("h2").unwrap().is_none());
        assert_eq!(s.revoke_token("tok_").unwrap().as_deref(), Some("tok_1"));
        assert!(s.token_by_hash("h1").unwrap().unwrap().0.revoked_at.is_some());
        assert!(s.remove_user("ci").unwrap());
        assert!(
            s.token_by_hash("h1").unwrap().is_none(),
            "a removed user's tokens act for no one"
        );
        s.audit(
            "alice",
            "approve",
            "exec/gate",
            "127.0.0.1",
            &serde_json::json!({"comment": "ok"}),
        )
        .unwrap();
        s.audit("os:root", "user_added", "bob", "cli", &Json::Null).unwrap();
        let log = s.audit_log(10, None).unwrap();
        assert_eq!(log[0].action, "user_added");
        assert_eq!(s.audit_log(10, Some(log[0].seq)).unwrap().len(), 1);
    }

    #[test]
    fn roles_order_and_read_back() {
        assert!(Role::Viewer < Role::Operator && Role::Approver < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
