//! The HTTP side of token services: bounded time and size, no redirects
//! (a token request carries a secret), and failures that name the endpoint
//! and say whether another attempt may help.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::MintError;
use crate::net::explain;

/// The largest answer read from a token service: tokens are kilobytes.
const MAX_ANSWER: usize = 1024 * 1024;
/// A token service that has not answered in this long has failed.
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn client() -> Result<reqwest::Client, MintError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| MintError::Transient(format!("cannot set up the HTTP client: {e}")))
}

/// A URL as errors name it: without its query, which may carry a token.
pub(crate) fn endpoint_name(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Sends `req` to `url` and reads the whole answer (at most 1 MiB) when it
/// succeeded; `what` names the exchange in errors ("ECR GetAuthorizationToken").
pub(crate) async fn send(what: &str, url: &str, req: RequestBuilder) -> Result<Vec<u8>, MintError> {
    let at = endpoint_name(url);
    let resp = req
        .send()
        .await
        .map_err(|e| MintError::Transient(format!("{what} at {at}: {}", explain(&e))))?;
    let status = resp.status();
    let body = read_capped(what, at, resp).await?;
    if status.is_success() {
        return Ok(body);
    }
    let said = provider_message(&body);
    let msg = format!("{what} at {at} answered {status}{said}");
    Err(match status {
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT => {
            MintError::Transient(msg)
        }
        _ => MintError::Refused(msg),
    })
}

/// [`send`], then the answer read as JSON of type `T`.
pub(crate) async fn json<T: DeserializeOwned>(what: &str, url: &str, req: RequestBuilder) -> Result<T, MintError> {
    let body = send(what, url, req).await?;
    parse(what, url, &body)
}

pub(crate) fn parse<T: DeserializeOwned>(what: &str, url: &str, body: &[u8]) -> Result<T, MintError> {
    // serde's message names a position and what was expected, never the
    // text it read: a token in the answer does not reach the error.
    serde_json::from_slice(body).map_err(|e| {
        MintError::Refused(format!(
            "{what} at {} gave an unreadable answer: {e}",
            endpoint_name(url)
        ))
    })
}

/// An answer without a usable expiry: `field` names what was missing.
pub(crate) fn no_expiry(what: &str, url: &str, field: &str) -> MintError {
    MintError::Refused(format!(
        "{what} at {} answered without {field}: a token of unknown life is refused",
        endpoint_name(url)
    ))
}

async fn read_capped(what: &str, at: &str, mut resp: Response) -> Result<Vec<u8>, MintError> {
    let too_big = || {
        MintError::Refused(format!(
            "{what} at {at}: the answer is over {MAX_ANSWER} bytes: refusing it"
        ))
    };
    if resp.content_length().is_some_and(|l| l > MAX_ANSWER as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| MintError::Transient(format!("{what} at {at}: reading the answer: {}", explain(&e))))?
    {
        if out.len() + chunk.len() > MAX_ANSWER {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// What a failing service said, as `: message` (OAuth2's `error` and
/// `error_description`, AWS's JSON `__type`/`message` or XML
/// `Code`/`Message`); empty when it said nothing readable. Cut short: it
/// is for a person reading one line.
fn provider_message(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let mut parts: Vec<String> = Vec::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&text) {
        for key in ["error", "__type", "code", "error_description", "message", "Message"] {
            match m.get(key) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => parts.push(s.clone()),
                // Google's `{"error": {"code": 400, "message": …, "status": …}}`.
                Some(serde_json::Value::Object(inner)) => {
                    for k in ["status", "message"] {
                        if let Some(serde_json::Value::String(s)) = inner.get(k) {
                            parts.push(s.clone());
                        }
                    }
                }
                _ => {}
            }
        }
    } else {
        for tag in ["Code", "Message"] {
            if let Some(v) = super::aws::xml_text(&text, tag) {
                parts.push(v);
            }
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    let mut said = format!(": {}", parts.join(": "));
    said.retain(|c| !c.is_control());
    if said.len() > MAX {
        let mut cut = MAX;
        while !said.is_char_boundary(cut) {
            cut -= 1;
        }
        said.truncate(cut);
        said.push('…');
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_say_why_in_their_own_shapes() {
        let oauth = br#"{"error":"invalid_grant","error_description":"Invalid JWT signature."}"#;
        assert_eq!(provider_message(oauth), ": invalid_grant: Invalid JWT signature.");
        let aws_json = br#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#;
        assert_eq!(
            provider_message(aws_json),
            ": UnrecognizedClientException: The security token included in the request is invalid."
        );
        let aws_xml = b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad &amp; old</Message></Error></ErrorResponse>";
        assert_eq!(provider_message(aws_xml), ": InvalidIdentityToken: bad & old");
        let google = br#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#;
        assert_eq!(provider_message(google), ": PERMISSION_DENIED: Permission denied");
        assert_eq!(provider_message(b"<html>Bad gateway</html>"), "");
        assert!(provider_message(format!(r#"{{"error":"{}"}}"#, "x".repeat(5000)).as_bytes()).len() < 400);
    }

    #[test]
    fn endpoints_are_named_without_their_query() {
        assert_eq!(
            endpoint_name("https://token.actions.example/x?api-version=2.0&audience=a"),
            "https://token.actions.example/x"
        );
    }
}
