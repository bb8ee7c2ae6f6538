//! Where the engine is and how to speak to it, read from Docker's own
//! variables as the `docker` CLI reads them: `DOCKER_HOST` (`unix://`,
//! `tcp://`, `ssh://`), and for `tcp://` `DOCKER_TLS_VERIFY` with
//! `DOCKER_CERT_PATH` (a folder holding `ca.pem`, `cert.pem`, `key.pem`;
//! else `DOCKER_CONFIG`, else `~/.docker`). The certificates are read and
//! checked before the first request, so a wrong path says so instead of
//! failing the handshake.

use std::path::{Path, PathBuf};

use bollard::Docker;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Seconds a single request to the engine may take (bollard's default).
const REQUEST_TIMEOUT: u64 = 120;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// Plain HTTP, `host:port`.
    Tcp(String),
    /// HTTPS with a client certificate, as `dockerd --tlsverify` expects.
    /// The engine's certificate is verified against `ca.pem` (bollard's
    /// requests also accept the system's roots; BuildKit's session only
    /// `ca.pem`).
    Tls {
        addr: String,
        certs: Certs,
    },
    /// `ssh://[user@]host[:port]`: the `ssh` client runs
    /// `docker system dial-stdio` on the host, as the `docker` CLI does.
    Ssh(String),
}

/// The three files of a TLS engine's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Endpoint {
    /// The engine of this process's environment.
    pub fn from_env() -> Result<Endpoint, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        // As the CLI: DOCKER_CERT_PATH, else its configuration folder.
        let cert_dir = var("DOCKER_CERT_PATH")
            .or_else(|| var("DOCKER_CONFIG"))
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".docker")));
        let endpoint = Endpoint::parse(&super::engine_address(), var("DOCKER_TLS_VERIFY").is_some(), cert_dir)?;
        if let Endpoint::Tls { certs, .. } = &endpoint {
            certs.check()?;
        }
        Ok(endpoint)
    }

    fn parse(host: &str, tls: bool, cert_dir: Option<PathBuf>) -> Result<Endpoint, String> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.into()));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            if addr.is_empty() {
                return Err(format!("DOCKER_HOST {host} names no host"));
            }
            if !tls {
                return Ok(Endpoint::Tcp(addr.to_string()));
            }
            let dir = cert_dir.ok_or("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME names the folder of ca.pem, cert.pem and key.pem")?;
            return Ok(Endpoint::Tls {
                addr: addr.to_string(),
                certs: Certs {
                    ca: dir.join("ca.pem"),
                    cert: dir.join("cert.pem"),
                    key: dir.join("key.pem"),
                },
            });
        }
        if host.starts_with("ssh://") {
            let host = host.trim_end_matches('/');
            ssh_destination(host)?;
            return Ok(Endpoint::Ssh(host.to_string()));
        }
        Err(format!(
            "DOCKER_HOST {host} is not an engine kflow speaks to: use unix://PATH, tcp://HOST:PORT (with DOCKER_TLS_VERIFY for TLS) or ssh://[USER@]HOST[:PORT]"
        ))
    }

    /// A bollard client for it; no request is made yet.
    pub fn client(&self) -> Result<Docker, String> {
        let version = bollard::API_DEFAULT_VERSION;
        let client = match self {
            Endpoint::Unix(path) => {
                Docker::connect_with_unix(&format!("unix://{}", path.display()), REQUEST_TIMEOUT, version)
            }
            Endpoint::Tcp(addr) => Docker::connect_with_http(&format!("tcp://{addr}"), REQUEST_TIMEOUT, version),
            Endpoint::Tls { addr, certs } => {
                install_crypto();
                Docker::connect_with_ssl(addr, &certs.key, &certs.cert, &certs.ca, REQUEST_TIMEOUT, version)
            }
            Endpoint::Ssh(url) => Docker::connect_with_ssh(url, REQUEST_TIMEOUT, version, None),
        };
        client.map_err(|e| super::describe(&e))
    }
}

/// The user, host and port of `ssh://[USER@]HOST[:PORT]`. A user or host
/// starting with `-` is refused: `ssh` would read it as an option
/// (`-oProxyCommand=…`).
fn ssh_destination(url: &str) -> Result<(Option<&str>, &str, Option<&str>), String> {
    let bad = |why: &str| format!("DOCKER_HOST {url}: {why}; write ssh://[USER@]HOST[:PORT]");
    let rest = url.strip_prefix("ssh://").unwrap_or(url);
    if rest.contains(['/', '?', '#']) {
        return Err(bad("an SSH engine has no path"));
    }
    let (user, at) = match rest.rsplit_once('@') {
        Some((user, at)) => (Some(user), at),
        None => (None, rest),
    };
    let (host, port) = match at.strip_prefix('[') {
        Some(v6) => {
            let (host, tail) = v6.split_once(']').ok_or_else(|| bad("an unclosed ["))?;
            (host, tail.strip_prefix(':'))
        }
        None => match at.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (at, None),
        },
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.starts_with('-') || user.is_some_and(|u| u.is_empty() || u.starts_with('-')) {
        return Err(bad("a user or host may not start with `-`"));
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(bad("the port is not a number"));
    }
    Ok((user, host, port))
}

impl Endpoint {
    /// For an SSH engine, the command that carries its API over its stdin
    /// and stdout, as the `docker` CLI opens it: `ssh … HOST docker system
    /// dial-stdio`, run with the user's own ssh configuration and keys.
    pub fn dial_stdio(&self) -> Option<tokio::process::Command> {
        let Endpoint::Ssh(url) = self else { return None };
        let (user, host, port) = ssh_destination(url).ok()?;
        let mut ssh = tokio::process::Command::new("ssh");
        // No prompt can be answered here; a key or an agent is needed.
        ssh.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-T"]);
        if let Some(user) = user {
            ssh.args(["-l", user]);
        }
        if let Some(port) = port {
            ssh.args(["-p", port]);
        }
        ssh.args(["--", host, "docker", "system", "dial-stdio"]);
        Some(ssh)
    }
}

/// bollard's TLS asks rustls for the process's provider; with more than one
/// compiled in (ring here, aws-lc-rs through a dependency) none is chosen
/// until one is installed. Installing twice is harmless.
pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Certs {
    /// Reads the three files as the handshake will, saying which is wrong.
    pub fn check(&self) -> Result<(), String> {
        self.roots()?;
        self.identity()?;
        Ok(())
    }

    fn read(path: &Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| {
            format!(
                "DOCKER_TLS_VERIFY is set but {} cannot be read: {e} (DOCKER_CERT_PATH names the folder of ca.pem, cert.pem and key.pem)",
                path.display()
            )
        })
    }

    fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
        let pem = Self::read(path)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} holds no readable PEM certificate: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(certs)
    }

    /// The CA the engine's certificate must chain to, and only it: as the
    /// `docker` CLI does, a TLS engine is trusted through its own CA.
    fn roots(&self) -> Result<rustls::RootCertStore, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in Self::certificates(&self.ca)? {
            roots
                .add(cert)
                .map_err(|e| format!("{} is not a usable CA certificate: {e}", self.ca.display()))?;
        }
        Ok(roots)
    }

    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let chain = Self::certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&Self::read(&self.key)?)
            .map_err(|e| format!("{} holds no readable PEM private key: {e}", self.key.display()))?;
        Ok((chain, key))
    }

    /// The client side of the handshake, for the connections kflow opens
    /// itself (BuildKit's session).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        install_crypto();
        let (chain, key) = self.identity()?;
        rustls::ClientConfig::builder()
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{} does not match {}: {e}", self.key.display(), self.cert.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_forms() {
        let dir = Some(PathBuf::from("/certs"));
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock", false, None),
            Ok(Endpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375", false, None),
            Ok(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.1:2376/", true, dir.clone()),
            Ok(Endpoint::Tls {
                addr: "10.0.0.1:2376".into(),
                certs: Certs {
                    ca: "/certs/ca.pem".into(),
                    cert: "/certs/cert.pem".into(),
                    key: "/certs/key.pem".into(),
                }
            })
        );
        assert_eq!(
            Endpoint::parse("ssh://builder@host:2222", false, None),
            Ok(Endpoint::Ssh("ssh://builder@host:2222".into()))
        );
        for bad in [
            "ssh://-oProxyCommand=x",
            "ssh://-l@host",
            "ssh://host/path",
            "ssh://host:port",
            "ssh://",
        ] {
            assert!(Endpoint::parse(bad, false, None).is_err(), "{bad}");
        }
        let ssh = Endpoint::parse("ssh://ci@[::1]:2222", false, None).unwrap();
        let args: Vec<_> = ssh
            .dial_stdio()
            .unwrap()
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args.join(" "),
            "-o BatchMode=yes -o ConnectTimeout=30 -T -l ci -p 2222 -- ::1 docker system dial-stdio"
        );
        assert!(Endpoint::parse("tcp://", false, None)
            .unwrap_err()
            .contains("names no host"));
        assert!(Endpoint::parse("npipe:////./pipe/docker_engine", false, dir)
            .unwrap_err()
            .contains("not an engine kflow speaks to"));
    }

    #[test]
    fn unreadable_certificates_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let e = certs.check().unwrap_err();
        assert!(e.contains("ca.pem cannot be read"), "{e}");
        std::fs::write(&certs.ca, "not a certificate").unwrap();
        let e = certs.check().unwrap_err();
        assert!(e.contains("ca.pem holds no PEM certificate"), "{e}");
    }
}
