//! `gcp.registry_login`: a Google access token for Artifact Registry, whose
//! registries take it as the password of `oauth2accesstoken`.
//!
//! Where the token comes from, as Google's client libraries look: the
//! `credentials_file` property, else `GOOGLE_APPLICATION_CREDENTIALS`: a
//! service-account key (an RS256 JWT bearer grant at the key's
//! `token_uri`), a workload-identity-federation file (`external_account`:
//! the subject token exchanged at its `token_url`, then optionally a service
//! account impersonated) or a gcloud user login (`authorized_user`); with
//! neither, the metadata server (`GCE_METADATA_HOST` overrides its address).

use std::path::PathBuf;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::http::{self, no_expiry};
use super::jwt::RsaKey;
use super::{Mint, MintError, MintFuture, Token};
use crate::secret::{Redactor, Secret};

pub const USERNAME: &str = "oauth2accesstoken";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const DEFAULT_STS: &str = "https://sts.googleapis.com/v1/token";
/// The largest credentials file read.
const MAX_FILE: u64 = 1024 * 1024;

/// What `gcp.registry_login` was given.
pub struct RegistryLogin {
    /// The credentials file: the property, else `GOOGLE_APPLICATION_CREDENTIALS`.
    pub credentials_file: Option<PathBuf>,
    /// A subject token given in the flow (`oidc.token`), used instead of
    /// an `external_account` file's `credential_source`.
    pub subject_token: Option<Secret>,
    pub redactor: Arc<Redactor>,
}

/// The registry host of a location: `europe-west1` → `europe-west1-docker.pkg.dev`.
pub fn registry_host(location: &str) -> String {
    format!("{location}-docker.pkg.dev")
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum CredentialsFile {
    ServiceAccount {
        client_email: String,
        private_key: String,
        #[serde(default)]
        private_key_id: Option<String>,
        #[serde(default)]
        token_uri: Option<String>,
    },
    ExternalAccount {
        audience: String,
        subject_token_type: String,
        #[serde(default)]
        token_url: Option<String>,
        #[serde(default)]
        credential_source: Option<CredentialSource>,
        #[serde(default)]
        service_account_impersonation_url: Option<String>,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        #[serde(default)]
        token_uri: Option<String>,
    },
}

#[derive(Deserialize)]
struct CredentialSource {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    format: Option<SourceFormat>,
}

#[derive(Deserialize)]
struct SourceFormat {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    subject_token_field_name: Option<String>,
}

/// An OAuth2 token answer.
#[derive(Deserialize)]
struct AccessToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// The IAM credentials API's answer to `generateAccessToken`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Impersonated {
    access_token: String,
    #[serde(default)]
    expire_time: Option<String>,
}

impl RegistryLogin {
    fn file(&self) -> Option<PathBuf> {
        self.credentials_file.clone().or_else(|| {
            std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    async fn token(&self) -> Result<Token, MintError> {
        let client = http::client()?;
        let (access, expires_at) = match self.file() {
            Some(path) => self.with_file(&client, &path).await?,
            None => {
                if self.subject_token.is_some() {
                    return Err(MintError::Refused(
                        "`subject_token` needs a workload identity federation file (`credentials_file`, type `external_account`)"
                            .into(),
                    ));
                }
                metadata(&client).await?
            }
        };
        let password = Secret::new(access);
        self.redactor.add(&password);
        Ok(Token {
            username: USERNAME.into(),
            password,
            expires_at,
        })
    }

    async fn with_file(
        &self,
        client: &reqwest::Client,
        path: &std::path::Path,
    ) -> Result<(String, Timestamp), MintError> {
        let shown = path.display();
        let text = read_bounded(path).map_err(|e| MintError::Refused(format!("cannot read {shown}: {e}")))?;
        let file: CredentialsFile = serde_json::from_str(&text).map_err(|e| {
            MintError::Refused(format!(
                "{shown} is not a Google credentials file (service_account, external_account or authorized_user): {e}"
            ))
        })?;
        match file {
            CredentialsFile::ServiceAccount {
                client_email,
                private_key,
                private_key_id,
                token_uri,
            } => {
                self.redactor.add(&Secret::new(private_key.as_str()));
                let key = RsaKey::from_pem(&private_key)
                    .map_err(|e| MintError::Refused(format!("{shown}: `private_key`: {e}")))?;
                let uri = token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.into());
                let now = Timestamp::now().as_second();
                let claims = serde_json::json!({
                    "iss": client_email, "scope": SCOPE, "aud": uri, "iat": now, "exp": now + 3600,
                });
                let assertion = key
                    .sign(&claims, private_key_id.as_deref())
                    .map_err(|e| MintError::Refused(format!("{shown}: {e}")))?;
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ];
                let what = "the service account's token grant";
                oauth(what, &uri, client.post(&uri).form(&form)).await
            }
            CredentialsFile::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => {
                self.redactor.add(&Secret::new(client_secret.as_str()));
                self.redactor.add(&Secret::new(refresh_token.as_str()));
                let uri = token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.into());
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.as_str()),
                    ("refresh_token", refresh_token.as_str()),
                ];
                oauth("the user's refresh grant", &uri, client.post(&uri).form(&form)).await
            }
            CredentialsFile::ExternalAccount {
                audience,
                subject_token_type,
                token_url,
                credential_source,
                service_account_impersonation_url,
            } => {
                let subject = match (&self.subject_token, credential_source) {
                    (Some(t), _) => t.clone(),
                    (None, Some(source)) => subject_token(client, &source, path).await?,
                    (None, None) => {
                        return Err(MintError::Refused(format!(
                            "{shown} has no `credential_source`, and no `subject_token` was given"
                        )))
                    }
                };
                self.redactor.add(&subject);
                let url = token_url.unwrap_or_else(|| DEFAULT_STS.into());
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                    ("audience", audience.as_str()),
                    ("scope", SCOPE),
                    ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                    ("subject_token", subject.expose()),
                    ("subject_token_type", subject_token_type.as_str()),
                ];
                let (federated, expires_at) = oauth(
                    "the workload identity token exchange",
                    &url,
                    client.post(&url).form(&form),
                )
                .await?;
                let Some(impersonate) = service_account_impersonation_url else {
                    return Ok((federated, expires_at));
                };
                self.redactor.add(&Secret::new(federated.as_str()));
                let what = "the service account impersonation";
                let req = client
                    .post(&impersonate)
                    .bearer_auth(&federated)
                    .json(&serde_json::json!({ "scope": [SCOPE], "lifetime": "3600s" }));
                let answer: Impersonated = http::json(what, &impersonate, req).await?;
                let expires_at = answer
                    .expire_time
                    .as_deref()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .ok_or_else(|| no_expiry(what, &impersonate, "`expireTime`"))?;
                Ok((answer.access_token, expires_at))
            }
        }
    }
}

impl Mint for RegistryLogin {
    fn mint(&self) -> MintFuture<'_> {
        Box::pin(self.token())
    }
}

/// An OAuth2 token request: the token and when it expires.
async fn oauth(what: &str, url: &str, req: reqwest::RequestBuilder) -> Result<(String, Timestamp), MintError> {
    let answer: AccessToken = http::json(what, url, req).await?;
    let expires_in = answer
        .expires_in
        .filter(|s| *s > 0)
        .ok_or_else(|| no_expiry(what, url, "`expires_in`"))?;
    Ok((
        answer.access_token,
        Timestamp::now() + SignedDuration::from_secs(expires_in),
    ))
}

/// The metadata server's token for the instance's service account.
async fn metadata(client: &reqwest::Client) -> Result<(String, Timestamp), MintError> {
    let host = std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "metadata.google.internal".into());
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let req = client.get(&url).header("Metadata-Flavor", "Google");
    oauth("the metadata server (no GOOGLE_APPLICATION_CREDENTIALS)", &url, req).await
}

/// The subject token an `external_account` file points at: a file, or a
/// URL; as text, or a field of a JSON document.
async fn subject_token(
    client: &reqwest::Client,
    source: &CredentialSource,
    file: &std::path::Path,
) -> Result<Secret, MintError> {
    let text = match (&source.file, &source.url) {
        (Some(path), _) => read_bounded(std::path::Path::new(path))
            .map_err(|e| MintError::Refused(format!("cannot read the subject token file {path}: {e}")))?,
        (None, Some(url)) => {
            let mut req = client.get(url);
            for (k, v) in &source.headers {
                req = req.header(k, v);
            }
            String::from_utf8_lossy(&http::send("the subject token source", url, req).await?).into_owned()
        }
        (None, None) => {
            return Err(MintError::Refused(format!(
                "{}: `credential_source` names neither a `file` nor a `url`",
                file.display()
            )))
        }
    };
    let token = match source.format.as_ref().and_then(|f| f.kind.as_deref()) {
        Some("json") => {
            let field = source
                .format
                .as_ref()
                .and_then(|f| f.subject_token_field_name.clone())
                .unwrap_or_default();
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| MintError::Refused(format!("the subject token source is not JSON: {e}")))?;
            doc.get(&field)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| MintError::Refused(format!("the subject token source has no string field `{field}`")))?
        }
        _ => text.trim().to_string(),
    };
    if token.is_empty() {
        return Err(MintError::Refused("the subject token source is empty".into()));
    }
    Ok(Secret::new(token))
}

fn read_bounded(path: &std::path::Path) -> Result<String, String> {
    super::read_small(path, MAX_FILE).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_artifact_registry_hosts() {
        assert_eq!(registry_host("europe-west1"), "europe-west1-docker.pkg.dev");
    }

    #[test]
    fn credential_files_are_told_apart_by_type() {
        let sa = r#"{"type":"service_account","client_email":"a@b","private_key":"k"}"#;
        assert!(matches!(
            serde_json::from_str(sa),
            Ok(CredentialsFile::ServiceAccount { .. })
        ));
        let other = r#"{"type":"impersonated_service_account"}"#;
        assert!(serde_json::from_str::<CredentialsFile>(other).is_err());
    }
}
