//! Registry logins minted for this run by a cloud's token service (ECR,
//! Artifact Registry, ACR), and the CI's OIDC token that can feed them.
//!
//! A minted login is a `credentials` value that can mint itself again: a
//! task that uses it when it has (nearly) expired gets a fresh one, so an
//! execution that waits hours at a gate still pushes. Every password minted
//! is added to the execution's redactor before anything can print it, and
//! none is ever recorded: the history keeps the username and registry only.

pub mod aws;
pub mod azure;
pub mod gcp;
mod http;
pub mod jwt;
pub mod oidc;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use crate::secret::{Redactor, Secret};
use crate::tasks::TaskError;

/// One login a token service gave.
pub struct Token {
    pub username: String,
    pub password: Secret,
    pub expires_at: Timestamp,
}

/// Why a token could not be had. Either names the endpoint that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The service was unreachable, slow or failing (5xx, 429): another
    /// attempt may succeed, so a task's `retry` retries it.
    #[error("{0}")]
    Transient(String),
    /// The service refused what was sent (a wrong key, an unknown role, a
    /// malformed key file, an answer without expiry): every attempt would
    /// fail alike.
    #[error("{0}")]
    Refused(String),
}

impl From<MintError> for TaskError {
    fn from(e: MintError) -> TaskError {
        match e {
            MintError::Transient(m) => TaskError::Failed(m),
            MintError::Refused(m) => TaskError::Invalid(m),
        }
    }
}

pub type MintFuture<'a> = Pin<Box<dyn Future<Output = Result<Token, MintError>> + Send + 'a>>;

/// Something that mints a login: the whole exchange, from reading the
/// ambient credentials to the registry's password, done again each time.
pub trait Mint: Send + Sync {
    fn mint(&self) -> MintFuture<'_>;
}

/// A login minted for one registry, renewed when it is about to expire.
pub struct Minted {
    registry: String,
    username: String,
    mint: Box<dyn Mint>,
    redactor: Arc<Redactor>,
    current: tokio::sync::Mutex<Current>,
}

struct Current {
    password: Secret,
    minted_at: Timestamp,
    expires_at: Timestamp,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Minted({} for {})", self.username, self.registry)
    }
}

/// Minted logins are equal only to themselves.
impl PartialEq for Minted {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

/// How long before its expiry a login is renewed: 5 minutes, or half its
/// life when that is shorter (a token minted for 2 minutes is renewed after
/// one, not at once).
fn renew_before(minted_at: Timestamp, expires_at: Timestamp) -> SignedDuration {
    let life = expires_at.duration_since(minted_at);
    (life / 2).min(SignedDuration::from_mins(5))
}

impl Minted {
    /// A login for `registry` whose first token is `first`; `mint` makes
    /// the next ones.
    pub fn new(registry: String, first: Token, mint: Box<dyn Mint>, redactor: Arc<Redactor>) -> Arc<Minted> {
        redactor.add(&first.password);
        Arc::new(Minted {
            registry,
            username: first.username,
            mint,
            redactor,
            current: tokio::sync::Mutex::new(Current {
                password: first.password,
                minted_at: Timestamp::now(),
                expires_at: first.expires_at,
            }),
        })
    }

    /// The registry host the login is for (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// When the current login expires.
    pub async fn expires_at(&self) -> Timestamp {
        self.current.lock().await.expires_at
    }

    /// A login valid for a while yet: the current one, or a new one minted
    /// when it is expired or about to be. Concurrent users wait for one
    /// renewal rather than each minting.
    pub async fn login(&self) -> Result<(String, Secret), MintError> {
        let mut current = self.current.lock().await;
        let now = Timestamp::now();
        if now >= current.expires_at - renew_before(current.minted_at, current.expires_at) {
            let token = self.mint.mint().await?;
            self.redactor.add(&token.password);
            *current = Current {
                password: token.password,
                minted_at: now,
                expires_at: token.expires_at,
            };
        }
        Ok((self.username.clone(), current.password.clone()))
    }
}

/// An environment variable that is set and not blank.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A small file (a key, a token, a credentials file) read whole; one over
/// `max` bytes is refused, never read into memory.
pub(crate) fn read_small(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is over {max} bytes"),
        ));
    }
    Ok(text)
}

/// `expires_at` as the tasks output it: RFC 3339 in UTC, to the second.
pub fn rfc3339(t: Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        life: SignedDuration,
        minted: Arc<AtomicUsize>,
    }

    impl Mint for Counting {
        fn mint(&self) -> MintFuture<'_> {
            Box::pin(async move {
                let n = self.minted.fetch_add(1, Ordering::SeqCst);
                Ok(Token {
                    username: "user".into(),
                    password: Secret::new(format!("password-number-{n}")),
                    expires_at: Timestamp::now() + self.life,
                })
            })
        }
    }

    #[tokio::test]
    async fn a_login_is_renewed_near_its_expiry_and_every_password_redacted() {
        let minted = Arc::new(AtomicUsize::new(0));
        let redactor = Arc::new(Redactor::default());
        let hour = Counting {
            life: SignedDuration::from_hours(1),
            minted: minted.clone(),
        };
        let first = hour.mint().await.unwrap();
        let login = Minted::new("r.example".into(), first, Box::new(hour), redactor.clone());
        let (_, first) = login.login().await.unwrap();
        let (_, again) = login.login().await.unwrap();
        assert_eq!(first, again, "an hour-long login is kept");
        assert_eq!(minted.load(Ordering::SeqCst), 1);
        assert_eq!(redactor.redact("pw password-number-0"), "pw ***");

        let short = Counting {
            life: SignedDuration::from_millis(200),
            minted: minted.clone(),
        };
        let first = short.mint().await.unwrap();
        let login = Minted::new("r.example".into(), first, Box::new(short), redactor.clone());
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let (_, renewed) = login.login().await.unwrap();
        assert_eq!(
            renewed.expose(),
            "password-number-2",
            "past half its life, it is renewed"
        );
        assert_eq!(redactor.redact("password-number-2"), "***");
    }

    #[test]
    fn expiry_is_written_in_utc_to_the_second() {
        let t: Timestamp = "2026-12-05T15:04:05.678Z".parse().unwrap();
        assert_eq!(rfc3339(t), "2026-12-05T15:04:06Z");
    }
}
