//! A webhook delivery read as its provider sends it: the fields a trigger
//! sees (`trigger.event`, `trigger.tag`, `trigger.pr`, …) taken from the
//! headers and the JSON body of GitHub, GitLab, Standard Webhooks and plain
//! token deliveries. Verification of signatures happens before this, on the
//! raw body (the server's job); this only reads.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::trigger::{from_json, Fields};
use crate::value::Value;

/// Headers that carry a delivery's credentials: never a trigger field.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-gitlab-token",
    "webhook-signature",
];

/// Whether a header (lower-case name) carries a delivery's credentials.
pub fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name)
}

/// Headers by lower-case name (the last value of a repeated one).
pub type Headers = BTreeMap<String, String>;

/// Lower-cases header names.
pub fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Headers {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect()
}

/// The id a provider gives a delivery, when it gives one: what makes a
/// repeat recognisable.
pub fn delivery_id(provider: &str, headers: &Headers) -> Option<String> {
    let names: &[&str] = match provider {
        "github" => &["x-github-delivery"],
        "gitlab" => &["x-gitlab-event-uuid", "idempotency-key"],
        "standard" => &["webhook-id"],
        _ => &["idempotency-key"],
    };
    names.iter().find_map(|n| headers.get(*n)).cloned()
}

/// The fields of a delivery of `provider` (`github`, `gitlab`, `standard`,
/// `token`). The body must be JSON (an empty body reads as `{}`).
pub fn fields(provider: &str, headers: &Headers, body: &[u8]) -> Result<Fields, String> {
    let json: Json = if body.iter().all(u8::is_ascii_whitespace) {
        Json::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            let form = headers
                .get("content-type")
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
            if form {
                "the body is form-encoded: set the webhook's content type to application/json".to_string()
            } else {
                format!("the body is not JSON: {e}")
            }
        })?
    };
    let mut f = Fields::new();
    let text = |s: &str| Value::Str(s.to_string());
    f.insert(
        "delivery".into(),
        text(&delivery_id(provider, headers).unwrap_or_default()),
    );
    f.insert(
        "headers".into(),
        Value::Map(
            headers
                .iter()
                .filter(|(k, _)| !is_credential_header(k))
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
        ),
    );
    let event = match provider {
        "github" => headers
            .get("x-github-event")
            .cloned()
            .unwrap_or_else(|| guess_github_event(&json)),
        "gitlab" => str_at(&json, &["object_kind"]).unwrap_or_default(),
        "standard" => str_at(&json, &["type"]).unwrap_or_default(),
        _ => headers
            .get("x-event")
            .cloned()
            .or_else(|| str_at(&json, &["type"]))
            .unwrap_or_default(),
    };
    f.insert("event".into(), text(&event));
    match provider {
        "github" => github(&json, &event, &mut f),
        "gitlab" => gitlab(&json, &event, &mut f),
        _ => {}
    }
    f.insert("body".into(), from_json(&json));
    Ok(f)
}

/// GitHub names the event in a header; a payload saved without its
/// headers (`kflow run --payload`) is recognised by its shape.
pub fn guess_github_event(json: &Json) -> String {
    if json.get("pull_request").is_some() {
        "pull_request".into()
    } else if json.get("ref").is_some() && json.get("after").is_some() {
        "push".into()
    } else if json.get("ref_type").is_some() {
        "create".into()
    } else {
        String::new()
    }
}

fn str_at(json: &Json, path: &[&str]) -> Option<String> {
    let mut at = json;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str().map(str::to_string)
}

fn int_at(json: &Json, path: &[&str]) -> Option<i64> {
    let mut at = json;
    for key in path {
        at = at.get(key)?;
    }
    at.as_i64()
}

fn put(f: &mut Fields, name: &str, v: Option<String>) {
    if let Some(v) = v {
        f.insert(name.into(), Value::Str(v));
    }
}

/// `ref`, `ref_type`, `tag`, `branch` from a full reference.
fn reference(f: &mut Fields, full: Option<String>) {
    let Some(full) = full else { return };
    if let Some(tag) = full.strip_prefix("refs/tags/") {
        put(f, "ref_type", Some("tag".into()));
        put(f, "tag", Some(tag.into()));
    } else if let Some(branch) = full.strip_prefix("refs/heads/") {
        put(f, "ref_type", Some("branch".into()));
        put(f, "branch", Some(branch.into()));
    }
    put(f, "ref", Some(full));
}

fn github(json: &Json, event: &str, f: &mut Fields) {
    put(f, "repository", str_at(json, &["repository", "full_name"]));
    put(f, "sender", str_at(json, &["sender", "login"]));
    match event {
        "push" => {
            reference(f, str_at(json, &["ref"]));
            // A deleted reference points nowhere.
            put(
                f,
                "sha",
                str_at(json, &["after"]).filter(|s| s.bytes().any(|b| b != b'0')),
            );
        }
        // `create` and `delete` name the reference short, with its type.
        "create" | "delete" => {
            let short = str_at(json, &["ref"]);
            match str_at(json, &["ref_type"]).as_deref() {
                Some("tag") => reference(f, short.map(|s| format!("refs/tags/{s}"))),
                Some("branch") => reference(f, short.map(|s| format!("refs/heads/{s}"))),
                _ => {}
            }
        }
        "pull_request" | "pull_request_target" | "pull_request_review" => {
            if let Some(n) = int_at(json, &["number"]).or_else(|| int_at(json, &["pull_request", "number"])) {
                f.insert("pr".into(), Value::Int(n));
            }
            put(f, "head_sha", str_at(json, &["pull_request", "head", "sha"]));
            put(f, "branch", str_at(json, &["pull_request", "head", "ref"]));
        }
        _ => {}
    }
    put(f, "action", str_at(json, &["action"]));
}

fn gitlab(json: &Json, event: &str, f: &mut Fields) {
    put(f, "repository", str_at(json, &["project", "path_with_namespace"]));
    put(
        f,
        "sender",
        str_at(json, &["user_username"]).or_else(|| str_at(json, &["user", "username"])),
    );
    match event {
        "push" | "tag_push" => {
            reference(f, str_at(json, &["ref"]));
            put(
                f,
                "sha",
                str_at(json, &["checkout_sha"])
                    .or_else(|| str_at(json, &["after"]))
                    .filter(|s| s.bytes().any(|b| b != b'0')),
            );
        }
        "merge_request" => {
            if let Some(n) = int_at(json, &["object_attributes", "iid"]) {
                f.insert("pr".into(), Value::Int(n));
            }
            put(f, "head_sha", str_at(json, &["object_attributes", "last_commit", "id"]));
            put(f, "branch", str_at(json, &["object_attributes", "source_branch"]));
            put(f, "action", str_at(json, &["object_attributes", "action"]));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        headers(pairs.iter().copied())
    }

    #[test]
    fn a_github_tag_push() {
        let body = json!({
            "ref": "refs/tags/v1.2.0", "before": "0000000000000000000000000000000000000000",
            "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "repository": { "full_name": "octo/app" }, "sender": { "login": "octocat" }
        });
        let f = fields(
            "github",
            &h(&[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", "d-1"),
                ("X-Hub-Signature-256", "sha256=00"),
            ]),
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(f["event"], Value::Str("push".into()));
        assert_eq!(f["delivery"], Value::Str("d-1".into()));
        assert_eq!(f["tag"], Value::Str("v1.2.0".into()));
        assert_eq!(f["ref_type"], Value::Str("tag".into()));
        assert_eq!(f["repository"], Value::Str("octo/app".into()));
        assert!(!f.contains_key("branch"));
        let Value::Map(hs) = &f["headers"] else { panic!() };
        assert!(!hs.contains_key("x-hub-signature-256"), "{hs:?}");
    }

    #[test]
    fn a_gitlab_merge_request() {
        let body = json!({
            "object_kind": "merge_request", "user": { "username": "root" },
            "project": { "path_with_namespace": "group/app" },
            "object_attributes": { "iid": 7, "action": "open", "source_branch": "feature",
                                   "last_commit": { "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7" } }
        });
        let f = fields(
            "gitlab",
            &h(&[("X-Gitlab-Event-UUID", "u-1")]),
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(f["event"], Value::Str("merge_request".into()));
        assert_eq!(f["pr"], Value::Int(7));
        assert_eq!(f["action"], Value::Str("open".into()));
        assert_eq!(f["sender"], Value::Str("root".into()));
        assert_eq!(f["delivery"], Value::Str("u-1".into()));
    }

    #[test]
    fn bodies_that_are_not_json_are_refused_with_the_reason() {
        assert!(fields("token", &h(&[]), b"{oops").unwrap_err().contains("not JSON"));
        let form = h(&[("Content-Type", "application/x-www-form-urlencoded")]);
        assert!(fields("github", &form, b"payload=%7B%7D")
            .unwrap_err()
            .contains("application/json"));
        // Nesting beyond serde_json's limit is an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(fields("token", &h(&[]), deep.as_bytes()).is_err());
        assert!(fields("token", &h(&[]), b"").is_ok());
    }
}
