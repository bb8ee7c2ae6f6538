//! `oidc.token`: the CI's OIDC identity token, for a cloud to trade for
//! credentials (`aws.ecr_login`'s `web_identity_token`,
//! `gcp.registry_login`'s `subject_token`, `azure.acr_login`'s
//! `federated_token`). GitHub Actions gives it on request:
//! `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` with
//! `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answering
//! `{"value": JWT}`.

use jiff::Timestamp;
use serde::Deserialize;

use super::http;
use super::MintError;
use crate::secret::{Redactor, Secret};

#[derive(Deserialize)]
struct Answer {
    value: String,
}

/// The token for `audience`, and when it expires.
pub async fn github_actions(audience: &str, redactor: &Redactor) -> Result<(Secret, Timestamp), MintError> {
    let var = |name: &str| {
        std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
            MintError::Refused(format!(
                "{name} is not set: GitHub Actions sets it in a job with `permissions: id-token: write`"
            ))
        })
    };
    let url = var("ACTIONS_ID_TOKEN_REQUEST_URL")?;
    let request_token = Secret::new(var("ACTIONS_ID_TOKEN_REQUEST_TOKEN")?);
    redactor.add(&request_token);
    let mut full = reqwest::Url::parse(&url)
        .map_err(|e| MintError::Refused(format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}")))?;
    full.query_pairs_mut().append_pair("audience", audience);
    let client = http::client()?;
    let req = client
        .get(full.as_str())
        .header("authorization", format!("bearer {}", request_token.expose()));
    let what = "the GitHub Actions OIDC token request";
    let answer: Answer = http::json(what, &url, req).await?;
    let expires_at = super::jwt::expiry(&answer.value).ok_or_else(|| {
        MintError::Refused(format!(
            "{what} at {} answered with a token without `exp`",
            http::endpoint_name(&url)
        ))
    })?;
    let token = Secret::new(answer.value);
    redactor.add(&token);
    Ok((token, expires_at))
}
