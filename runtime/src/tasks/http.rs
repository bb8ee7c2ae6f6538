//! `http.request`: one HTTP request over rustls, its status checked.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::net::explain;

use super::{text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::value::Value;

/// Response bytes kept as the `body` output; the rest is dropped with a note.
pub const BODY_CAP: usize = 4 * 1024 * 1024;
/// Characters of the body quoted in the error of an unexpected status.
const EXCERPT_CHARS: usize = 500;

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

/// The request's headers, and the names of those whose value is a secret.
fn headers(props: &Props) -> Result<(HeaderMap, Vec<HeaderName>), TaskError> {
    let mut out = HeaderMap::new();
    let mut secret_names = Vec::new();
    let Some(Value::Map(given)) = props.get("headers") else {
        return Ok((out, secret_names));
    };
    for (name, value) in given {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| TaskError::invalid(format!("`{name}` is not a valid header name")))?;
        let (raw, secret) = match value {
            Value::Secret(s) => (s.expose().to_string(), true),
            other => (other.to_text().unwrap_or_default(), false),
        };
        let mut v = HeaderValue::from_str(&raw).map_err(|_| {
            // Never quote a secret, even a malformed one.
            failed(format!(
                "the value of header `{name}` is not valid in a header (control characters?)"
            ))
        })?;
        v.set_sensitive(secret);
        if secret {
            secret_names.push(key.clone());
        }
        out.insert(key, v);
    }
    Ok((out, secret_names))
}

/// A client per request: requests are rare in a pipeline, and a fresh client
/// keeps no connection state between tasks. Redirects are followed by
/// [`send`], which knows which headers are secret.
fn client() -> Result<reqwest::Client, TaskError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(crate::net::idle_timeout())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| failed(format!("cannot set up the HTTP client: {e}")))
}

/// Redirects followed before giving up (browsers and curl use 10 to 50).
const MAX_REDIRECTS: usize = 10;

/// Sends the request, following redirects. A redirect to another origin
/// (scheme, host or port) drops the secret headers and the credentials
/// reqwest itself would drop (`Authorization`, `Cookie`).
async fn send(
    client: &reqwest::Client,
    mut method: reqwest::Method,
    mut url: reqwest::Url,
    mut headers: HeaderMap,
    secret_names: &[HeaderName],
    mut body: Option<String>,
) -> Result<reqwest::Response, String> {
    use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, PROXY_AUTHORIZATION};
    for _ in 0..=MAX_REDIRECTS {
        let mut req = client.request(method.clone(), url.clone()).headers(headers.clone());
        if let Some(b) = &body {
            req = req.body(b.clone());
        }
        let resp = req.send().await.map_err(|e| explain(&e))?;
        let status = resp.status();
        let location = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok());
        let (true, Some(location)) = (status.is_redirection(), location) else {
            return Ok(resp);
        };
        let next = url
            .join(location)
            .map_err(|e| format!("answered {} with an invalid Location: {e}", status.as_u16()))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(format!("redirected to a {} URL", next.scheme()));
        }
        if next.origin() != url.origin() {
            for name in secret_names
                .iter()
                .chain([&AUTHORIZATION, &COOKIE, &PROXY_AUTHORIZATION])
            {
                headers.remove(name);
            }
        }
        // 303, and 301/302 after a POST, turn into a GET without a body.
        let code = status.as_u16();
        if code == 303 || (matches!(code, 301 | 302) && method == reqwest::Method::POST) {
            if method != reqwest::Method::HEAD {
                method = reqwest::Method::GET;
            }
            body = None;
            headers.remove(reqwest::header::CONTENT_TYPE);
            headers.remove(reqwest::header::CONTENT_LENGTH);
        }
        url = next;
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

pub async fn request(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let url = text(props, "url").ok_or_else(|| TaskError::invalid("`url` is missing"))?;
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| TaskError::invalid(format!("`{url}` is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TaskError::invalid(format!(
            "`{url}`: only http and https URLs are supported"
        )));
    }
    let method = text(props, "method").unwrap_or_else(|| "GET".into());
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| TaskError::invalid(format!("`{method}` is not an HTTP method")))?;
    let (headers, secret_names) = headers(props)?;
    let client = client()?;
    ctx.log(Stream::Info, &format!("{method} {url}"));
    let send = async {
        let mut resp = send(
            &client,
            method.clone(),
            parsed,
            headers,
            &secret_names,
            text(props, "body"),
        )
        .await
        .map_err(|e| failed(format!("{method} {url}: {e}")))?;
        let status = resp.status().as_u16();
        // Read past the cap by the longest secret form: redaction comes
        // before the cut, so the cut cannot keep part of a secret.
        let limit = BODY_CAP + ctx.redactor.longest();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| failed(format!("{method} {url}: reading the response: {}", explain(&e))))?
        {
            let room = limit.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                truncated = true;
                break;
            }
        }
        Ok::<_, TaskError>((status, body, truncated))
    };
    let (status, body, truncated) = tokio::select! {
        r = send => r?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
    };
    let received = body.len();
    let body = ctx.redactor.redact_cut(&String::from_utf8_lossy(&body), BODY_CAP);
    let truncated = truncated || received > BODY_CAP;
    ctx.log(Stream::Info, &format!("{status} ({received} bytes)"));
    if truncated {
        ctx.log(
            Stream::Info,
            &format!("response body truncated at {} MiB", BODY_CAP >> 20),
        );
    }
    let accepted = match props.get("expect_status") {
        Some(Value::List(codes)) => codes.iter().any(|c| *c == Value::Int(i64::from(status))),
        _ => (200..300).contains(&status),
    };
    if !accepted {
        let expected = match props.get("expect_status") {
            Some(Value::List(codes)) => codes.iter().filter_map(Value::to_text).collect::<Vec<_>>().join(", "),
            _ => "2xx".into(),
        };
        // `body` is redacted already: cutting it cannot split a secret.
        let excerpt: String = body.trim().chars().take(EXCERPT_CHARS).collect();
        let mut msg = format!("{method} {url} answered {status}, expected {expected}");
        if !excerpt.is_empty() {
            msg.push_str(&format!("\n{excerpt}"));
        }
        return Err(failed(ctx.redactor.redact(&msg).into_owned()));
    }
    let mut out = Outputs::new();
    out.insert("status".into(), Value::Int(i64::from(status)));
    out.insert("body".into(), Value::Str(body));
    Ok(out)
}
