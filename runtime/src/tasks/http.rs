//! `http.request`: one HTTP request over rustls, its status checked.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::net::explain;

use super::{text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::value::Value;

/// Response bytes kept as the `body` output; the rest is dropped with a note.
pub const BODY_CAP: usize = 4 * 1024 * 1024;

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

fn headers(props: &Props) -> Result<HeaderMap, TaskError> {
    let mut out = HeaderMap::new();
    let Some(Value::Map(given)) = props.get("headers") else {
        return Ok(out);
    };
    for (name, value) in given {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| failed(format!("`{name}` is not a valid header name")))?;
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
        out.insert(key, v);
    }
    Ok(out)
}

/// A client per request: requests are rare in a pipeline, and a fresh client
/// keeps no connection state between tasks.
fn client() -> Result<reqwest::Client, TaskError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("kflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| failed(format!("cannot set up the HTTP client: {e}")))
}

pub async fn request(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let url = text(props, "url").ok_or_else(|| failed("`url` is missing"))?;
    let parsed = reqwest::Url::parse(&url).map_err(|e| failed(format!("`{url}` is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(failed(format!("`{url}`: only http and https URLs are supported")));
    }
    let method = text(props, "method").unwrap_or_else(|| "GET".into());
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| failed(format!("`{method}` is not an HTTP method")))?;
    let mut req = client()?.request(method.clone(), parsed).headers(headers(props)?);
    if let Some(body) = text(props, "body") {
        req = req.body(body);
    }
    ctx.log(Stream::Info, &format!("{method} {url}"));
    let send = async {
        let mut resp = req
            .send()
            .await
            .map_err(|e| failed(format!("{method} {url}: {}", explain(&e))))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| failed(format!("{method} {url}: reading the response: {}", explain(&e))))?
        {
            let room = BODY_CAP.saturating_sub(body.len());
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
    let body = String::from_utf8_lossy(&body).into_owned();
    ctx.log(Stream::Info, &format!("{status} ({} bytes)", body.len()));
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
        let excerpt: String = body.chars().take(500).collect();
        let excerpt = ctx.redactor.redact(excerpt.trim()).into_owned();
        let mut msg = format!("{method} {url} answered {status}, expected {expected}");
        if !excerpt.is_empty() {
            msg.push_str(&format!("\n{excerpt}"));
        }
        return Err(failed(ctx.redactor.redact(&msg).into_owned()));
    }
    let mut out = Outputs::new();
    out.insert("status".into(), Value::Int(i64::from(status)));
    out.insert("body".into(), Value::Str(ctx.redactor.redact(&body).into_owned()));
    Ok(out)
}
