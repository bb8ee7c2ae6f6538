//! `kflow user` and `kflow token`: who may use `kflow serve`, kept in the
//! history the server reads. Passwords are read from `KFLOW_PASSWORD` or a
//! prompt that does not echo, and kept as argon2id hashes; a token is shown
//! once, on the last line of the output, and only its hash is kept. Every
//! change is written to the audit trail under the operating-system user.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kflow_runtime::store::{NewToken, Role, Store};
use kflow_server::identity;

use super::out::outln;
use super::{Result, UsageError};

#[derive(clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
    /// Folder of the history the server uses (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR", global = true)]
    state: Option<PathBuf>,
    /// The shared PostgreSQL history the server uses, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Add a user (password from KFLOW_PASSWORD, else a prompt).
    Add {
        name: String,
        /// viewer, operator, approver or admin (each includes the ones before).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["viewer", "operator", "approver", "admin"]))]
        role: String,
        /// A machine user (such as CI): tokens only, no password.
        #[arg(long)]
        no_password: bool,
    },
    /// List users and their roles.
    List,
    /// Remove a user (their tokens stop working).
    Remove { name: String },
}

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// Folder of the history the server uses (default: $KFLOW_STATE, else the nearest `.kflow` upward).
    #[arg(long, value_name = "DIR", global = true)]
    state: Option<PathBuf>,
    /// The shared PostgreSQL history the server uses, `postgres://…` (default: $KFLOW_STORE).
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Create an API token that acts as USER (printed once, on the last line).
    Create {
        user: String,
        /// How long it works (e.g. 90d); without it, until revoked.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// What it is for, shown by `token list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List API tokens (never their secrets).
    List,
    /// Revoke a token by its id (or a unique prefix).
    Revoke { id: String },
}

/// The operating-system user, as the audit trail names a command's actor.
fn os_actor() -> String {
    format!("os:{}", kflow_runtime::owner::os_user())
}

/// The history the server reads, and a runtime to reach it on.
fn open(state: Option<&std::path::Path>, store: Option<&str>) -> Result<(tokio::runtime::Runtime, Arc<dyn Store>)> {
    let runtime = super::one_thread_runtime()?;
    let history = super::state::History::find(state, store);
    let store = runtime.block_on(history.open())?;
    Ok((runtime, store))
}

/// A user name: what reviewers lists and the audit trail show.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "`{}` is not a user name: 1 to 64 letters, digits, `-`, `_`, `.` and `@`",
            kflow_runtime::printable::printable(name)
        )))
    }
}

pub fn user(args: UserArgs) -> Result<ExitCode> {
    let (runtime, store) = open(args.state.as_deref(), args.store.as_deref())?;
    runtime.block_on(user_on(args.command, &*store))
}

async fn user_on(command: UserCommand, store: &dyn Store) -> Result<ExitCode> {
    match command {
        UserCommand::Add {
            name,
            role,
            no_password,
        } => {
            check_name(&name)?;
            let role = Role::parse(&role).expect("clap checked the role");
            let hash = if no_password {
                None
            } else {
                let password = match std::env::var("KFLOW_PASSWORD") {
                    Ok(p) => p,
                    Err(_) => {
                        let p = rpassword::prompt_password(format!("Password for {name}: ")).map_err(|e| {
                            UsageError(format!("cannot read the password: {e} (or set KFLOW_PASSWORD)"))
                        })?;
                        let again = rpassword::prompt_password("Again: ")
                            .map_err(|e| UsageError(format!("cannot read the password: {e}")))?;
                        if p != again {
                            return Err(UsageError("the passwords differ".into()));
                        }
                        p
                    }
                };
                if password.chars().count() < 8 {
                    return Err(UsageError("a password has at least 8 characters".into()));
                }
                Some(identity::hash_password(&password).map_err(UsageError)?)
            };
            store
                .add_user(&name, role, hash.as_deref())
                .await
                .map_err(|e| UsageError(e.0))?;
            let _ = store
                .audit(
                    &os_actor(),
                    "user_added",
                    &name,
                    "cli",
                    &serde_json::json!({ "role": role.as_str() }),
                )
                .await;
            outln!("user {name} added ({})", role.as_str());
        }
        UserCommand::List => {
            for u in store.users().await.map_err(|e| UsageError(e.0))? {
                let how = if u.password.is_some() {
                    "password"
                } else {
                    "tokens only"
                };
                outln!("{:<24} {:<9} {how:<12} since {}", u.name, u.role.as_str(), u.created_at);
            }
        }
        UserCommand::Remove { name } => {
            if !store.remove_user(&name).await.map_err(|e| UsageError(e.0))? {
                return Err(UsageError(format!(
                    "no user `{}`",
                    kflow_runtime::printable::printable(&name)
                )));
            }
            let _ = store
                .audit(&os_actor(), "user_removed", &name, "cli", &serde_json::Value::Null)
                .await;
            outln!("user {name} removed; their tokens no longer work");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn token(args: TokenArgs) -> Result<ExitCode> {
    let (runtime, store) = open(args.state.as_deref(), args.store.as_deref())?;
    runtime.block_on(token_on(args.command, &*store))
}

async fn token_on(command: TokenCommand, store: &dyn Store) -> Result<ExitCode> {
    match command {
        TokenCommand::Create { user, expires, name } => {
            let u = store
                .user(&user)
                .await
                .map_err(|e| UsageError(e.0))?
                .ok_or_else(|| UsageError(format!("no user `{}`", kflow_runtime::printable::printable(&user))))?;
            let expires_at = match expires {
                None => None,
                Some(d) => {
                    let ms = kflow_compiler::grammar::parse_duration(&d)
                        .filter(|ms| *ms > 0)
                        .ok_or_else(|| UsageError(format!("--expires `{d}` is not a duration: write e.g. 90d, 12h")))?;
                    let at = jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::from_millis(ms.min(i64::MAX as u64) as i64))
                        .map_err(|_| UsageError(format!("--expires `{d}` is too far away")))?;
                    Some(at.to_string())
                }
            };
            let label: String = name.chars().take(100).collect();
            let t = identity::new_token();
            store
                .add_token(&NewToken {
                    id: &t.id,
                    user: &u.name,
                    kind: "api",
                    label: &label,
                    hash: &t.hash,
                    expires_at: expires_at.as_deref(),
                })
                .await
                .map_err(|e| UsageError(e.0))?;
            let _ = store
                .audit(
                    &os_actor(),
                    "token_created",
                    &t.id,
                    "cli",
                    &serde_json::json!({ "user": u.name, "expires_at": expires_at }),
                )
                .await;
            eprintln!(
                "token {} acts as {} ({}){}; it is shown once:",
                t.id,
                u.name,
                u.role.as_str(),
                expires_at.map(|e| format!(" until {e}")).unwrap_or_default()
            );
            outln!("{}", t.secret);
        }
        TokenCommand::List => {
            for t in store.tokens().await.map_err(|e| UsageError(e.0))? {
                let status = match (&t.revoked_at, &t.expires_at) {
                    (Some(r), _) => format!("revoked {r}"),
                    (None, Some(e)) => format!("expires {e}"),
                    (None, None) => "no expiry".to_string(),
                };
                outln!(
                    "{}  {:<16} {:<24} {status}  last used {}",
                    t.id,
                    t.user,
                    t.label,
                    t.last_used_at.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let revoked = store
                .revoke_token(&id)
                .await
                .map_err(|e| UsageError(e.0))?
                .ok_or_else(|| UsageError(format!("no live token `{}`", kflow_runtime::printable::printable(&id))))?;
            let _ = store
                .audit(&os_actor(), "token_revoked", &revoked, "cli", &serde_json::Value::Null)
                .await;
            outln!("token {revoked} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
