//! `kflow keygen` and `kflow verify`: cosign-compatible keys and signature
//! checks from the command line.

use crate::cmd::out::outln;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kflow_runtime::registry::{credentials::Source, name::ImageName};
use kflow_runtime::secret::Secret;
use kflow_runtime::sign::{cosign, keys};

use super::{io_reason, Result, UsageError};

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Name of the files written: PREFIX.key and PREFIX.pub.
    #[arg(long, default_value = "cosign")]
    prefix: String,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The image, pinned by digest: `registry/repo@sha256:…`.
    image: String,
    /// The cosign public key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Log in to the registry as this user (the password from standard input).
    #[arg(long, value_name = "NAME", requires = "registry_password_stdin")]
    registry_username: Option<String>,
    /// Read the registry password from standard input (one line).
    #[arg(long, requires = "registry_username")]
    registry_password_stdin: bool,
    /// Ask this credential helper (`docker-credential-NAME`) for the login.
    #[arg(long, value_name = "NAME", conflicts_with = "registry_username")]
    credential_helper: Option<String>,
}

/// Where `kflow verify` finds the registry's login: the flags, else the
/// Docker config.
fn registry_source(args: &VerifyArgs) -> Result<Source> {
    use kflow_runtime::registry::credentials::{Login, Lookup};
    let lookup = if let Some(username) = &args.registry_username {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take(64 * 1024)
            .read_line(&mut line)
            .map_err(|e| {
                UsageError(format!(
                    "cannot read the registry password from standard input: {}",
                    io_reason(&e)
                ))
            })?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(UsageError(
                "--registry-password-stdin: standard input holds no password".into(),
            ));
        }
        Lookup::Given(Login::Basic {
            username: username.clone(),
            password: Secret::new(password),
        })
    } else if let Some(helper) = &args.credential_helper {
        Lookup::Helper(helper.clone())
    } else {
        Lookup::DockerConfig
    };
    Ok(Source {
        lookup,
        hint: "pass --registry-username NAME --registry-password-stdin, or --credential-helper NAME".into(),
    })
}

/// The key password: `COSIGN_PASSWORD`, then `KFLOW_PASSWORD` (either may be
/// empty), else asked twice on a terminal without echo.
fn password() -> Result<Secret> {
    for var in ["COSIGN_PASSWORD", "KFLOW_PASSWORD"] {
        if let Ok(p) = std::env::var(var) {
            return Ok(Secret::new(p));
        }
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            "no password: set COSIGN_PASSWORD (or KFLOW_PASSWORD), or run on a terminal to be asked".into(),
        ));
    }
    let first = rpassword::prompt_password("Password for the private key: ")
        .map_err(|e| UsageError(format!("cannot read the password: {e}")))?;
    let again =
        rpassword::prompt_password("Again: ").map_err(|e| UsageError(format!("cannot read the password: {e}")))?;
    if first != again {
        return Err(UsageError("the passwords differ".into()));
    }
    Ok(Secret::new(first))
}

pub fn keygen(args: KeygenArgs) -> Result<ExitCode> {
    let private = PathBuf::from(format!("{}.key", args.prefix));
    let public = PathBuf::from(format!("{}.pub", args.prefix));
    for p in [&private, &public] {
        // `symlink_metadata`: a dangling symlink exists too.
        if std::fs::symlink_metadata(p).is_ok() && !args.force {
            return Err(UsageError(format!(
                "{} exists; pass --force to overwrite it",
                p.display()
            )));
        }
    }
    let pw = password()?;
    let (key_pem, pub_pem) = keys::generate(&pw).map_err(|e| UsageError(e.0))?;
    write_new(&private, &key_pem, 0o600)?;
    write_new(&public, &pub_pem, 0o644)?;
    outln!("Private key written to {}", private.display());
    outln!("Public key written to {}", public.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes a new file in place of `path`, whatever was there: a temporary file
/// next to it (created with `mode`, never through a symlink) renamed over it,
/// so readers see the old file or the whole new one, and a private key is
/// never readable by others, not even for a moment.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let cannot = |e: std::io::Error| UsageError(format!("cannot write {}: {}", path.display(), io_reason(&e)));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kflow-key-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(cannot)?;
    // The umask may have taken bits away from a public key: set them exactly.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(cannot)?;
    tmp.write_all(text.as_bytes()).map_err(cannot)?;
    tmp.as_file().sync_all().map_err(cannot)?;
    tmp.persist(path).map_err(|e| cannot(e.error))?;
    Ok(())
}

pub fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let target = ImageName::parse(&args.image).map_err(|e| UsageError(format!("`{}`: {e}", args.image)))?;
    if target.digest.is_none() {
        return Err(UsageError(format!(
            "`{}` is not pinned: verify a digest, `repo@sha256:…` (a tag could move)",
            args.image
        )));
    }
    let pem = std::fs::read_to_string(&args.key)
        .map_err(|e| UsageError(format!("cannot read {}: {}", args.key.display(), io_reason(&e))))?;
    let key = keys::load_public(&pem).map_err(|e| UsageError(format!("{}: {e}", args.key.display())))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))?;
    let source = registry_source(&args)?;
    match runtime.block_on(cosign::verify(&target, &key, &source)) {
        Ok(n) => {
            outln!(
                "Verified {n} signature(s) of {} with {}",
                args.image,
                args.key.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
