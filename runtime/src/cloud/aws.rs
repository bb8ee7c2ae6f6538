//! `aws.ecr_login`: AWS credentials from the standard chain, then ECR's
//! `GetAuthorizationToken`, signed with SigV4 (the `aws-sigv4` crate alone:
//! the SDK's ECR and STS clients would add a runtime and about 200 crates
//! to the build for two JSON and form requests; see docs/performance.md).
//!
//! The chain, as the AWS SDKs walk it: a `web_identity_token` given in the
//! flow with `role_arn`; the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); the profile of the shared
//! credentials and config files (keys, or `role_arn` with
//! `web_identity_token_file`); a web identity token file named by
//! `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`. Web identities are
//! exchanged at STS with `AssumeRoleWithWebIdentity`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jiff::Timestamp;
use serde::Deserialize;

use super::http::{self, endpoint_name};
use super::{env, read_small, Mint, MintError, MintFuture, Token};
use crate::secret::{Redactor, Secret};

/// What `aws.ecr_login` was given.
pub struct EcrLogin {
    pub region: String,
    pub registry_ids: Vec<String>,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub web_identity_token: Option<Secret>,
    pub endpoint: Option<String>,
    pub sts_endpoint: Option<String>,
    /// Where secrets read on the way (keys from files) are registered.
    pub redactor: Arc<Redactor>,
}

/// Keys to sign with.
struct Keys {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

/// A web identity to exchange for keys.
struct WebIdentity {
    role_arn: String,
    token: Secret,
    session_name: String,
}

impl EcrLogin {
    /// A service's endpoint: the property, the service's variable
    /// (`AWS_ENDPOINT_URL_ECR`), `AWS_ENDPOINT_URL`, else the region's.
    fn endpoint(&self, given: &Option<String>, service: &str, host: &str) -> String {
        given
            .clone()
            .or_else(|| env(&format!("AWS_ENDPOINT_URL_{service}")))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://{host}.{}.amazonaws.com", self.region))
    }

    fn ecr_endpoint(&self) -> String {
        self.endpoint(&self.endpoint, "ECR", "api.ecr")
    }

    fn sts_endpoint(&self) -> String {
        self.endpoint(&self.sts_endpoint, "STS", "sts")
    }

    /// The first link of the chain that has something.
    async fn keys(&self, client: &reqwest::Client) -> Result<Keys, MintError> {
        if let Some(token) = &self.web_identity_token {
            let role_arn = self.role_arn.clone().ok_or_else(|| {
                MintError::Refused("`web_identity_token` needs `role_arn`: the role to assume with it".into())
            })?;
            let identity = WebIdentity {
                role_arn,
                token: token.clone(),
                session_name: session_name(None),
            };
            return self.assume(client, identity).await;
        }
        if self.profile.is_none() {
            if let Some(keys) = env_keys()? {
                return Ok(keys);
            }
        }
        let profile = self
            .profile
            .clone()
            .or_else(|| env("AWS_PROFILE"))
            .unwrap_or_else(|| "default".into());
        match profile_source(&profile)? {
            Some(ProfileSource::Keys(keys)) => return Ok(keys),
            Some(ProfileSource::WebIdentity(identity)) => return self.assume(client, identity).await,
            None if self.profile.is_some() => {
                return Err(MintError::Refused(format!(
                    "the AWS profile `{profile}` is in neither {} nor {}",
                    shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials").display(),
                    shared_file("AWS_CONFIG_FILE", "config").display()
                )))
            }
            None => {}
        }
        if let (Some(file), Some(role_arn)) = (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN")) {
            let identity = WebIdentity {
                role_arn,
                token: read_token_file(&file)?,
                session_name: session_name(env("AWS_ROLE_SESSION_NAME")),
            };
            return self.assume(client, identity).await;
        }
        Err(MintError::Refused(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in ~/.aws/credentials, \
             AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, or give `web_identity_token` and `role_arn`"
                .into(),
        ))
    }

    /// STS `AssumeRoleWithWebIdentity`: unsigned, the token is the proof.
    async fn assume(&self, client: &reqwest::Client, identity: WebIdentity) -> Result<Keys, MintError> {
        self.redactor.add(&identity.token);
        let url = self.sts_endpoint();
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", identity.role_arn.as_str()),
            ("RoleSessionName", identity.session_name.as_str()),
            ("WebIdentityToken", identity.token.expose()),
        ];
        let what = "STS AssumeRoleWithWebIdentity";
        let body = http::send(what, &url, client.post(&url).form(&form)).await?;
        let text = String::from_utf8_lossy(&body);
        let field = |tag: &str| {
            xml_text(&text, tag).ok_or_else(|| {
                MintError::Refused(format!("{what} at {} answered without `{tag}`", endpoint_name(&url)))
            })
        };
        let keys = Keys {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: Secret::new(field("SecretAccessKey")?),
            session_token: Some(Secret::new(field("SessionToken")?)),
        };
        Ok(keys)
    }

    /// A login, and the registry host it is for (ECR's `proxyEndpoint`).
    pub async fn authorization_token(&self) -> Result<(Token, String), MintError> {
        let client = http::client()?;
        let keys = self.keys(&client).await?;
        // Wherever they were read from, the keys are secrets of this run.
        self.redactor.add(&keys.secret_access_key);
        if let Some(t) = &keys.session_token {
            self.redactor.add(t);
        }
        let url = self.ecr_endpoint();
        let body = if self.registry_ids.is_empty() {
            "{}".to_string()
        } else {
            serde_json::json!({ "registryIds": self.registry_ids }).to_string()
        };
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            (
                "x-amz-target",
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            ),
        ];
        let signed = sign(&keys, &self.region, "ecr", &url, &headers, body.as_bytes())?;
        let mut req = client.post(&url).body(body);
        for (name, value) in headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain(signed)
        {
            req = req.header(name, value);
        }
        let what = "ECR GetAuthorizationToken";
        let answer: AuthorizationAnswer = http::json(what, &url, req).await?;
        let refused = |why: &str| MintError::Refused(format!("{what} at {} {why}", endpoint_name(&url)));
        let data = answer
            .authorization_data
            .into_iter()
            .next()
            .ok_or_else(|| refused("answered with no authorization data"))?;
        let token = data
            .authorization_token
            .ok_or_else(|| refused("answered without a token"))?;
        let decoded = STANDARD
            .decode(token.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| refused("answered with a token that is not base64 of `user:password`"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| refused("answered with a token that is not `user:password`"))?;
        let expires_at = data
            .expires_at
            .and_then(|s| Timestamp::from_second(s as i64).ok())
            .ok_or_else(|| refused("answered without `expiresAt`: a token of unknown life is refused"))?;
        let registry = data
            .proxy_endpoint
            .as_deref()
            .map(|e| {
                e.trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string()
            })
            .filter(|r| !r.is_empty())
            .ok_or_else(|| refused("answered without `proxyEndpoint`"))?;
        let token = Token {
            username: user.to_string(),
            password: Secret::new(password),
            expires_at,
        };
        Ok((token, registry))
    }
}

impl Mint for EcrLogin {
    fn mint(&self) -> MintFuture<'_> {
        Box::pin(async move { self.authorization_token().await.map(|(t, _)| t) })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationAnswer {
    #[serde(default)]
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: Option<String>,
    /// Seconds since the epoch (a JSON number, maybe with a fraction).
    expires_at: Option<f64>,
    proxy_endpoint: Option<String>,
}

/// SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`)
/// for a request with these headers and body.
fn sign(
    keys: &Keys,
    region: &str,
    service: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>, MintError> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = aws_credential_types::Credentials::new(
        &keys.access_key_id,
        keys.secret_access_key.expose(),
        keys.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "kflow",
    )
    .into();
    let refused = |e: &dyn std::fmt::Display| MintError::Refused(format!("cannot sign the request to {url}: {e}"));
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| refused(&e))?
        .into();
    let signable = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| refused(&e))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| refused(&e))?.into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect())
}

fn env_keys() -> Result<Option<Keys>, MintError> {
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Ok(Some(Keys {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: env("AWS_SESSION_TOKEN").map(Secret::new),
        })),
        (Some(_), None) => Err(MintError::Refused(
            "AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY".into(),
        )),
        _ => Ok(None),
    }
}

fn session_name(given: Option<String>) -> String {
    given.unwrap_or_else(|| format!("kflow-{}", std::process::id()))
}

/// The largest web identity token file read: tokens are a few kilobytes.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

fn read_token_file(path: &str) -> Result<Secret, MintError> {
    let text = read_small(std::path::Path::new(path), MAX_TOKEN_FILE)
        .map_err(|e| MintError::Refused(format!("cannot read the web identity token file {path}: {e}")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(MintError::Refused(format!(
            "the web identity token file {path} is empty"
        )));
    }
    Ok(Secret::new(token))
}

fn shared_file(variable: &str, name: &str) -> PathBuf {
    env(variable).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        PathBuf::from(home).join(".aws").join(name)
    })
}

enum ProfileSource {
    Keys(Keys),
    WebIdentity(WebIdentity),
}

/// A profile from the shared credentials file (`[name]`), then the config
/// file (`[profile name]`, `[default]`), the credentials file winning for
/// keys as in the SDKs. `None` when neither has it.
fn profile_source(profile: &str) -> Result<Option<ProfileSource>, MintError> {
    let credentials = read_ini(&shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))?;
    let config = read_ini(&shared_file("AWS_CONFIG_FILE", "config"))?;
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let from_credentials = credentials.get(profile);
    let from_config = config.get(&config_section);
    if from_credentials.is_none() && from_config.is_none() {
        return Ok(None);
    }
    let get = |key: &str| {
        from_credentials
            .and_then(|s| s.get(key))
            .or_else(|| from_config.and_then(|s| s.get(key)))
            .cloned()
    };
    if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
        return Ok(Some(ProfileSource::Keys(Keys {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: get("aws_session_token").map(Secret::new),
        })));
    }
    if let (Some(role_arn), Some(file)) = (get("role_arn"), get("web_identity_token_file")) {
        return Ok(Some(ProfileSource::WebIdentity(WebIdentity {
            role_arn,
            token: read_token_file(&file)?,
            session_name: session_name(get("role_session_name")),
        })));
    }
    Err(MintError::Refused(format!(
        "the AWS profile `{profile}` has neither `aws_access_key_id` with `aws_secret_access_key` nor \
         `role_arn` with `web_identity_token_file` (kflow does not follow `source_profile`, SSO or `credential_process`)"
    )))
}

type Ini = std::collections::HashMap<String, std::collections::HashMap<String, String>>;

/// The largest shared config or credentials file read.
const MAX_SHARED_FILE: u64 = 1024 * 1024;

/// An INI file as the AWS shared files are written: `[section]`, `key = value`,
/// `#` and `;` comments. A missing file is empty.
fn read_ini(path: &std::path::Path) -> Result<Ini, MintError> {
    match read_small(path, MAX_SHARED_FILE) {
        Ok(text) => Ok(parse_ini(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ini::new()),
        Err(e) => Err(MintError::Refused(format!("cannot read {}: {e}", path.display()))),
    }
}

fn parse_ini(text: &str) -> Ini {
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            ini.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            ini.entry(s.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    ini
}

/// The text of the first `<tag>…</tag>` in an AWS XML answer, with XML's
/// five escapes undone.
pub(crate) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    let raw = xml[start..end].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_files_parse_as_the_sdks_read_them() {
        let ini = parse_ini(
            "# keys\n[default]\naws_access_key_id = AKIDDEFAULT\nAWS_Secret_Access_Key=abc=def\n\n[profile  ci ]\n; a comment\nrole_arn = arn:aws:iam::1:role/ci\n",
        );
        assert_eq!(ini["default"]["aws_access_key_id"], "AKIDDEFAULT");
        assert_eq!(ini["default"]["aws_secret_access_key"], "abc=def");
        assert_eq!(ini["profile ci"]["role_arn"], "arn:aws:iam::1:role/ci");
    }

    #[test]
    fn xml_fields_are_read_and_unescaped() {
        let xml =
            "<R><Credentials><AccessKeyId>ASIA1</AccessKeyId><SessionToken>a&amp;b</SessionToken></Credentials></R>";
        assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_text(xml, "SessionToken").as_deref(), Some("a&b"));
        assert_eq!(xml_text(xml, "Expiration"), None);
    }

    #[test]
    fn requests_are_signed_for_the_service_and_region() {
        let keys = Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: Some(Secret::new("session")),
        };
        let headers = sign(
            &keys,
            "eu-west-1",
            "ecr",
            "https://api.ecr.eu-west-1.amazonaws.com/",
            &[],
            b"{}",
        )
        .unwrap();
        let auth = &headers.iter().find(|(n, _)| n == "authorization").unwrap().1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/eu-west-1/ecr/aws4_request"), "{auth}");
        assert!(headers
            .iter()
            .any(|(n, v)| n == "x-amz-security-token" && v == "session"));
    }
}
