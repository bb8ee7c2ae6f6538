//! Registry credentials: given in the flow, or found the way the Docker CLI
//! finds them — `~/.docker/config.json` (`auths`, `credHelpers`,
//! `credsStore`), helpers spoken to through the credential helper protocol
//! (`docker-credential-NAME get`, server on stdin, JSON on stdout).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use crate::secret::Secret;
use crate::value::{Credentials, Value};

/// How to log in to one registry.
#[derive(Clone, Debug)]
pub enum Login {
    Basic {
        username: String,
        password: Secret,
    },
    /// An OAuth2 refresh token (what `docker login` keeps for some registries).
    IdentityToken(Secret),
}

/// Where a task's credentials come from, and how its user gives others
/// (named when a registry asks and none are found).
#[derive(Clone, Debug)]
pub struct Source {
    pub lookup: Lookup,
    /// What to do instead, as the task or command offers it: "give
    /// `credentials`", "pass --registry-username …".
    pub hint: String,
}

#[derive(Clone, Debug)]
pub enum Lookup {
    DockerConfig,
    Helper(String),
    Given(Login),
    /// Minted by a token task; renewed when it is about to expire.
    Minted(std::sync::Arc<crate::cloud::Minted>),
}

impl Source {
    /// The Docker config's credentials, for a task whose `credentials`
    /// property is not set.
    pub fn docker_config() -> Source {
        Source {
            lookup: Lookup::DockerConfig,
            hint: "give `credentials`".into(),
        }
    }

    /// Credentials given in full.
    pub fn given(login: Login) -> Source {
        Source {
            lookup: Lookup::Given(login),
            hint: String::new(),
        }
    }

    /// From a task's credentials property `name` (absent: the Docker config).
    pub fn of(value: Option<&Value>, name: &str) -> Result<Source, String> {
        let lookup = match value {
            None | Some(Value::Missing) | Some(Value::Credentials(Credentials::DockerConfig)) => Lookup::DockerConfig,
            Some(Value::Credentials(Credentials::Helper(h))) => Lookup::Helper(h.clone()),
            Some(Value::Credentials(Credentials::Basic { username, password })) => Lookup::Given(Login::Basic {
                username: username.clone(),
                password: password.clone(),
            }),
            Some(Value::Credentials(Credentials::Minted(m))) => Lookup::Minted(m.clone()),
            Some(Value::Map(m)) => {
                let username = m.get("username").and_then(Value::to_text).unwrap_or_default();
                let password = match m.get("password") {
                    Some(Value::Secret(s)) => s.clone(),
                    Some(v) => Secret::new(v.to_text().unwrap_or_default()),
                    None => return Err(format!("`{name}` needs a `password`")),
                };
                Lookup::Given(Login::Basic { username, password })
            }
            Some(_) => {
                return Err(format!(
                    "`{name}` must be `docker_config()`, `helper(\"name\")` or `{{ username, password }}`"
                ))
            }
        };
        Ok(Source {
            lookup,
            hint: format!("give `{name}`"),
        })
    }

    /// Whether these are one registry's username and password, which must
    /// not be sent to another registry.
    pub fn is_given(&self) -> bool {
        matches!(self.lookup, Lookup::Given(_) | Lookup::Minted(_))
    }

    /// The login for a registry host, if there is one.
    pub async fn login(&self, host: &str) -> Result<Option<Login>, String> {
        match &self.lookup {
            Lookup::Given(l) => Ok(Some(l.clone())),
            Lookup::Minted(m) => {
                let (username, password) = m.login().await.map_err(|e| e.to_string())?;
                Ok(Some(Login::Basic { username, password }))
            }
            Lookup::Helper(h) => helper_get(h, host),
            Lookup::DockerConfig => from_docker_config(host),
        }
    }
}

pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: std::collections::HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// `https://index.docker.io/v1/`, `http://host:5000`, `host:5000/v2/` → the
/// host as it appears in image references.
fn config_key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The name Docker uses for a host in its config and with helpers.
fn server_url(host: &str) -> String {
    if host == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        host.to_string()
    }
}

fn from_docker_config(host: &str) -> Result<Option<Login>, String> {
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let config: DockerConfig =
        serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let host = if host == "registry-1.docker.io" {
        "docker.io"
    } else {
        host
    };
    if let Some(helper) = config
        .cred_helpers
        .iter()
        .find(|(k, _)| config_key_host(k) == host)
        .map(|(_, v)| v)
    {
        return helper_get(helper, host);
    }
    if let Some(entry) = config
        .auths
        .iter()
        .find(|(k, _)| config_key_host(k) == host)
        .map(|(_, v)| v)
    {
        if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Login::IdentityToken(Secret::new(token.clone()))));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Login::Basic {
                username: u.clone(),
                password: Secret::new(p.clone()),
            }));
        }
        if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    format!(
                        "{}: the `auth` of {host} is not base64 of `user:password`",
                        path.display()
                    )
                })?;
            let (u, p) = decoded
                .split_once(':')
                .ok_or_else(|| format!("{}: the `auth` of {host} is not `user:password`", path.display()))?;
            return Ok(Some(Login::Basic {
                username: u.to_string(),
                password: Secret::new(p),
            }));
        }
    }
    match config.creds_store.as_deref().filter(|s| !s.is_empty()) {
        Some(store) => helper_get(store, host),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// `docker-credential-NAME get`: the server on stdin, `{Username, Secret}`
/// on stdout; "credentials not found" means there are none.
fn helper_get(name: &str, host: &str) -> Result<Option<Login>, String> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!(
                    "credential helper `{program}` is not on PATH (named for {host} in the Docker config or the flow)"
                )
            }
            _ => format!("cannot start `{program}`: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server_url(host).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{program}` failed: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let why = String::from_utf8_lossy(&out.stderr);
        let why = if why.trim().is_empty() {
            stdout.trim()
        } else {
            why.trim()
        };
        return Err(format!("`{program} get` for {host} failed: {why}"));
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout)
        .map_err(|_| format!("`{program} get` for {host} did not answer with {{\"Username\", \"Secret\"}}"))?;
    Ok(Some(if answer.username == "<token>" {
        Login::IdentityToken(Secret::new(answer.secret))
    } else {
        Login::Basic {
            username: answer.username,
            password: Secret::new(answer.secret),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_name_hosts() {
        assert_eq!(config_key_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(config_key_host("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(config_key_host("ghcr.io"), "ghcr.io");
    }
}
