//! Commands that act through a `kflow serve` (`--server URL` or
//! `KFLOW_SERVER`, with `KFLOW_TOKEN`): the server decides who is asking
//! from the token, never from a flag.

use std::time::Duration;

use serde_json::Value;

use super::{Result, UsageError};

/// The server to act through: the flag, else `KFLOW_SERVER`.
pub fn server(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_string)
        .or_else(|| std::env::var("KFLOW_SERVER").ok())
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('/').to_string())
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(base: String) -> Result<Client> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(UsageError(format!(
                "the server `{base}` must be an http:// or https:// URL"
            )));
        }
        let token = std::env::var("KFLOW_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                UsageError("set KFLOW_TOKEN to a token of yours (kflow token create, on the server)".into())
            })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| UsageError(format!("cannot make an HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))?;
        Ok(Client {
            base,
            token,
            http,
            runtime,
        })
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let req = req.bearer_auth(&self.token);
        let base = &self.base;
        self.runtime.block_on(async {
            let resp = req
                .send()
                .await
                .map_err(|e| UsageError(format!("cannot reach the server at {base}: {e}")))?;
            let status = resp.status();
            // Answers are small JSON; a huge one is not the server's.
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| UsageError(format!("the server's answer was cut off: {e}")))?;
            if bytes.len() > 16 * 1024 * 1024 {
                return Err(UsageError("the server's answer is too large".into()));
            }
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status.is_success() {
                Ok(v)
            } else {
                let message = v
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| status.to_string());
                Err(UsageError(format!(
                    "the server refused ({}): {}",
                    status.as_u16(),
                    kflow_runtime::printable::printable(&message)
                )))
            }
        })
    }
}
