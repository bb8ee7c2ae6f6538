//! `azure.acr_login`: a Microsoft identity platform token for an app
//! registration (client secret, or a federated token as client assertion),
//! exchanged at the registry's `/oauth2/exchange` for an ACR refresh token:
//! the password of the user `00000000-0000-0000-0000-000000000000`, as
//! `az acr login --expose-token` gives it.
//!
//! Unset properties come from the variables Azure's workload identity and
//! SDKs use: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::http::{self, no_expiry};
use super::{env, read_small, Mint, MintError, MintFuture, Token};
use crate::registry::name::plain_http;
use crate::secret::{Redactor, Secret};

pub const USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// The token audience ACR's exchange takes, as `az acr login` asks for it.
const SCOPE: &str = "https://management.azure.com/.default";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The largest federated token file read: tokens are a few kilobytes.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// What `azure.acr_login` was given.
pub struct AcrLogin {
    pub registry: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub federated_token: Option<Secret>,
    pub authority: Option<String>,
    pub exchange_url: Option<String>,
    pub redactor: Arc<Redactor>,
}

enum Proof {
    Secret(Secret),
    Assertion(Secret),
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Exchanged {
    refresh_token: String,
}

fn needed(what: &str, property: &str, variable: &str) -> MintError {
    MintError::Refused(format!("no {what}: give `{property}` or set {variable}"))
}

impl AcrLogin {
    fn proof(&self) -> Result<Proof, MintError> {
        if let Some(s) = &self.client_secret {
            return Ok(Proof::Secret(s.clone()));
        }
        if let Some(t) = &self.federated_token {
            return Ok(Proof::Assertion(t.clone()));
        }
        if let Some(file) = env("AZURE_FEDERATED_TOKEN_FILE") {
            // Re-read at every mint: the platform rotates the file.
            let text = read_small(std::path::Path::new(&file), MAX_TOKEN_FILE)
                .map_err(|e| MintError::Refused(format!("cannot read AZURE_FEDERATED_TOKEN_FILE {file}: {e}")))?;
            let token = Secret::new(text.trim());
            self.redactor.add(&token);
            return Ok(Proof::Assertion(token));
        }
        Err(MintError::Refused(
            "no client credential: give `client_secret` or `federated_token` (`oidc.token`), or set AZURE_FEDERATED_TOKEN_FILE"
                .into(),
        ))
    }

    fn exchange_url(&self) -> String {
        self.exchange_url.clone().unwrap_or_else(|| {
            let scheme = if plain_http(&self.registry) { "http" } else { "https" };
            format!("{scheme}://{}/oauth2/exchange", self.registry)
        })
    }

    async fn token(&self) -> Result<Token, MintError> {
        let tenant = self
            .tenant
            .clone()
            .or_else(|| env("AZURE_TENANT_ID"))
            .ok_or_else(|| needed("tenant", "tenant", "AZURE_TENANT_ID"))?;
        let client_id = self
            .client_id
            .clone()
            .or_else(|| env("AZURE_CLIENT_ID"))
            .ok_or_else(|| needed("client id", "client_id", "AZURE_CLIENT_ID"))?;
        let authority = self
            .authority
            .clone()
            .or_else(|| env("AZURE_AUTHORITY_HOST"))
            .unwrap_or_else(|| DEFAULT_AUTHORITY.into());
        let url = format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/'));
        let client = http::client()?;
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id),
            ("scope", SCOPE.to_string()),
        ];
        match self.proof()? {
            Proof::Secret(s) => form.push(("client_secret", s.expose().to_string())),
            Proof::Assertion(t) => {
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", t.expose().to_string()));
            }
        }
        let what = "the Microsoft identity token request";
        let aad: AccessToken = http::json(what, &url, client.post(&url).form(&form)).await?;
        // The answer's `expires_in` must be there (a number, or a string of one).
        aad.expires_in
            .as_ref()
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
            .ok_or_else(|| no_expiry(what, &url, "`expires_in`"))?;
        let aad_token = Secret::new(aad.access_token);
        self.redactor.add(&aad_token);

        let exchange = self.exchange_url();
        let form = [
            ("grant_type", "access_token"),
            ("service", self.registry.as_str()),
            ("tenant", tenant.as_str()),
            ("access_token", aad_token.expose()),
        ];
        let what = "the ACR token exchange";
        let answer: Exchanged = http::json(what, &exchange, client.post(&exchange).form(&form)).await?;
        let password = Secret::new(answer.refresh_token);
        self.redactor.add(&password);
        // ACR's refresh token is a JWT; its `exp` is its life.
        let expires_at = super::jwt::expiry(password.expose())
            .filter(|t| *t > Timestamp::now() - SignedDuration::from_mins(1))
            .ok_or_else(|| no_expiry(what, &exchange, "an `exp` in the future"))?;
        Ok(Token {
            username: USERNAME.into(),
            password,
            expires_at,
        })
    }
}

impl Mint for AcrLogin {
    fn mint(&self) -> MintFuture<'_> {
        Box::pin(self.token())
    }
}
