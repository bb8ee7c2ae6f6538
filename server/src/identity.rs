//! Passwords, tokens and who is asking. Passwords are kept as argon2id
//! hashes (PHC strings). A token is 32 random bytes, shown once as
//! `kflow_<id>_<secret>`; only the SHA-256 of the whole is kept (a random
//! 256-bit secret needs no slow hash), and it is looked up by that hash.
//! A token acts as its user, with the user's role.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kflow_runtime::store::{Role, Store};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::App;

/// The longest password accepted (argon2 takes any length; an unbounded one
/// is a way to spend the server's CPU).
pub const MAX_PASSWORD: usize = 1024;

pub fn hash_password(password: &str) -> Result<String, String> {
    if password.len() > MAX_PASSWORD {
        return Err(format!("a password is at most {MAX_PASSWORD} bytes"));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A new token: its public id, the secret to show once, and the hash to keep.
pub struct NewSecret {
    pub id: String,
    pub secret: String,
    pub hash: String,
}

pub fn new_token() -> NewSecret {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut id);
    OsRng.fill_bytes(&mut secret);
    let id = format!("tok_{}", hex::encode(id));
    let secret = format!("kflow_{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = token_hash(&secret);
    NewSecret { id, secret, hash }
}

pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    pub token: String,
}

impl Principal {
    /// Refuses a role below `need`.
    pub fn require(&self, need: Role) -> Result<(), ApiError> {
        if self.role >= need {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the role `{}`; `{}` is `{}`",
                need.as_str(),
                self.user,
                self.role.as_str()
            )))
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Who asks: the user of `Authorization: Bearer TOKEN`, else, when the
/// server trusts an authenticating proxy, the user its header names.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let store = &*app.store;
    if let (None, Some(header)) = (headers.get("authorization"), &app.proxy_user_header) {
        if let Some(name) = headers.get(header) {
            return proxy_user(store, header.as_str(), name).await;
        }
    }
    let Some(value) = headers.get("authorization") else {
        return Err(unauthorized(
            "send `Authorization: Bearer TOKEN` (kflow token create USER)",
        ));
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
    token_principal(store, secret).await
}

/// The browser's session cookie (set by the UI's sign-in form).
pub const SESSION_COOKIE: &str = "kflow_session";

/// Who reads: as [`authenticate`], or by the browser's session cookie.
/// Reads only: a write with a cookie needs the UI's forms, which carry a
/// CSRF token ([`csrf_token`]).
pub async fn authenticate_reader(app: &App, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if headers.get("authorization").is_none() {
        if let Some(secret) = cookie(headers, SESSION_COOKIE) {
            return token_principal(&*app.store, secret).await;
        }
    }
    authenticate(app, headers).await
}

/// A cookie's value, from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The CSRF token of a session (or of a sign-in form): a keyed hash of its
/// secret, so only a page of that session can hold it and nothing is
/// stored. The key is the server's, drawn at start: a restart makes open
/// forms stale.
pub fn csrf_token(key: &[u8; 32], subject: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(subject.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// A new key for CSRF tokens (one per server process).
pub fn csrf_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    key
}

/// The user of a token's secret, if the token is known, unexpired and not
/// revoked.
pub async fn token_principal(store: &dyn Store, secret: &str) -> Result<Principal, ApiError> {
    if secret.is_empty() || secret.len() > 256 {
        return Err(unauthorized("unknown token"));
    }
    let found = store
        .token_by_hash(&token_hash(secret))
        .await
        .map_err(ApiError::history)?;
    let Some((token, user)) = found else {
        return Err(unauthorized("unknown token"));
    };
    if token.revoked_at.is_some() {
        return Err(unauthorized("the token is revoked"));
    }
    let expired = token
        .expires_at
        .as_deref()
        .and_then(|e| e.parse::<jiff::Timestamp>().ok())
        .is_some_and(|e| jiff::Timestamp::now() >= e);
    if expired {
        return Err(unauthorized("the token has expired"));
    }
    // Last use to the minute: not a write per request.
    let stale = token
        .last_used_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_none_or(|t| jiff::Timestamp::now().as_second() - t.as_second() >= 60);
    if stale {
        let _ = store.touch_token(&token.id).await;
    }
    Ok(Principal {
        user: user.name,
        role: user.role,
        token: token.id,
    })
}

/// The user a trusted proxy names: a user of the server (added with
/// `kflow user add`, with or without a password), acting with their role.
async fn proxy_user(store: &dyn Store, header: &str, name: &HeaderValue) -> Result<Principal, ApiError> {
    let name = name
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 100)
        .ok_or_else(|| unauthorized(&format!("the {header} header does not name a user")))?;
    match store.user(name).await.map_err(ApiError::history)? {
        Some(user) => Ok(Principal {
            user: user.name,
            role: user.role,
            token: format!("proxy:{header}"),
        }),
        None => Err(unauthorized(&format!(
            "`{}` (from {header}) is not a user of this server: kflow user add",
            kflow_runtime::printable::printable(name)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horse "));
        assert!(!verify_password("not a hash", "x"));
        assert!(hash_password(&"x".repeat(MAX_PASSWORD + 1)).is_err());
    }

    #[test]
    fn tokens_are_random_and_kept_as_hashes() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&format!("kflow_{}_", a.id)));
        assert_eq!(a.hash, token_hash(&a.secret));
        assert!(!a.hash.contains(&a.secret));
    }
}
