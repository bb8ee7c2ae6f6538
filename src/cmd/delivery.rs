//! `kflow run --trigger NAME --payload F.json`: a flow run as a delivery of
//! one of its triggers would start it, signature checks aside. The fields,
//! the `events` and `when` filters and the input bindings are the runtime's
//! (`trigger::bind`), exactly as `kflow serve` applies them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use kflow_compiler::ir::{Plan, Trigger};
use kflow_runtime::trigger::{self, Fields, Verdict};
use kflow_runtime::value::Value;
use kflow_runtime::webhook;

use super::{io_reason, Result, UsageError};

/// A payload larger than a webhook body may be is refused.
pub const MAX_PAYLOAD: u64 = 25 * 1024 * 1024;

/// What a delivery comes to, for `run`.
pub enum Outcome {
    /// The inputs it binds, and how the execution records its trigger.
    Start {
        inputs: BTreeMap<String, Value>,
        record: serde_json::Value,
    },
    /// The reason nothing would start.
    Filtered(String),
}

/// Binds a delivery of the trigger `name` of `plan`: `payload` is the body
/// of a webhook delivery, or the fields of a schedule's or a file's.
pub fn bind(plan: &Plan, name: &str, payload: Option<&Path>, headers: &[String]) -> Result<Outcome> {
    let Some(t) = plan.trigger(name) else {
        let names = plan.trigger_names();
        let known = if names.is_empty() {
            format!("flow `{}` has no triggers", plan.flow)
        } else {
            format!("its triggers: {}", names.join(", "))
        };
        return Err(UsageError(format!(
            "flow `{}` has no trigger `{name}` ({known})",
            plan.flow
        )));
    };
    let body = match payload {
        Some(p) => read_payload(p)?,
        None => Vec::new(),
    };
    let mut pairs = Vec::new();
    for h in headers {
        let (k, v) = h
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--header `{h}`: write NAME=VALUE")))?;
        pairs.push((k.trim(), v));
    }
    if t.kind != "webhook" && !pairs.is_empty() {
        return Err(UsageError(format!(
            "--header is for webhooks; `{name}` is a {} trigger",
            t.kind
        )));
    }
    let fields = fields(t, &body, &pairs)?;
    let delivery = match fields.get("delivery") {
        Some(Value::Str(d)) => d.clone(),
        _ => String::new(),
    };
    match trigger::bind(plan, t, &fields) {
        Verdict::Start(inputs) => Ok(Outcome::Start {
            inputs,
            record: serde_json::json!({ "name": name, "kind": t.kind, "delivery": delivery }),
        }),
        Verdict::Filtered(why) => Ok(Outcome::Filtered(why)),
        Verdict::Refused(why) => Err(UsageError(format!("the delivery is refused: {why}"))),
    }
}

fn read_payload(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .map_err(|e| UsageError(format!("cannot read {}: {}", path.display(), io_reason(&e))))?;
    let mut body = Vec::new();
    file.take(MAX_PAYLOAD + 1)
        .read_to_end(&mut body)
        .map_err(|e| UsageError(format!("cannot read {}: {}", path.display(), io_reason(&e))))?;
    if body.len() as u64 > MAX_PAYLOAD {
        return Err(UsageError(format!(
            "{} is larger than a delivery may be (25 MiB)",
            path.display()
        )));
    }
    Ok(body)
}

/// The fields a delivery of `t` carries.
fn fields(t: &Trigger, body: &[u8], headers: &[(&str, &str)]) -> Result<Fields> {
    if t.kind == "webhook" {
        let provider = t.provider.as_deref().unwrap_or("token");
        let headers = webhook::headers(headers.iter().copied());
        return webhook::fields(provider, &headers, body).map_err(|e| UsageError(format!("the payload: {e}")));
    }
    // Schedules and file triggers: the payload, if any, is a JSON object of
    // their fields.
    let given: serde_json::Map<String, serde_json::Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                return Err(UsageError(
                    "the payload of a schedule or file trigger is a JSON object of its fields".into(),
                ))
            }
            Err(e) => return Err(UsageError(format!("the payload is not JSON: {e}"))),
        }
    };
    let text = |k: &str| given.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let mut f = Fields::new();
    if t.kind == "schedule" {
        let at = text("at").unwrap_or_else(|| jiff::Timestamp::now().to_string());
        f.insert("at".into(), Value::Str(at));
        f.insert("scheduled".into(), Value::Bool(true));
    } else {
        let path = text("path")
            .ok_or_else(|| UsageError("a file trigger's payload names the file: {\"path\": \"drop/a.tar\"}".into()))?;
        f.insert("path".into(), Value::Str(path));
        f.insert(
            "change".into(),
            Value::Str(text("change").unwrap_or_else(|| "created".into())),
        );
    }
    Ok(f)
}
