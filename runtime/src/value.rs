//! Run-time values: what expressions of the plan evaluate to and what tasks
//! produce. Every value has one of the language's types; secrets stay
//! opaque, and a missing optional value is explicit.

use std::collections::BTreeMap;

use serde_json::json;

use crate::secret::{Secret, REDACTED};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `string` and `path` (paths are resolved by the task that uses them).
    Str(String),
    Int(i64),
    Bool(bool),
    /// Milliseconds.
    Duration(u64),
    /// `sha256:<hex>`.
    Digest(String),
    /// A local image ID.
    Image(String),
    /// A multi-platform build (`docker.build { platforms }`): each
    /// platform's local image ID, in the order asked for. Its type is
    /// `image`; `docker.push` stores it as one index.
    Images(Vec<(String, String)>),
    /// `registry/repository:tag`.
    Ref(String),
    /// `registry/repository@sha256:<hex>`.
    Pinned(String),
    /// An enum value such as `high` or `never`.
    Enum(String),
    Secret(Secret),
    Credentials(Credentials),
    List(Vec<Value>),
    /// Maps, records (`retry`) and task output records.
    Map(BTreeMap<String, Value>),
    /// A task named in `after`.
    Task(String),
    /// An optional value that is absent (`T?`).
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// `~/.docker/config.json`: `auths`, `credHelpers`, `credsStore`.
    DockerConfig,
    /// A `docker-credential-<name>` helper.
    Helper(String),
    Basic {
        username: String,
        password: Secret,
    },
    /// A login minted by a token task for this run, renewed as it expires.
    Minted(std::sync::Arc<crate::cloud::Minted>),
}

impl Value {
    /// The value as the property's declared type wants it. The checker lets
    /// a `string` stand where a `ref` is wanted; the runtime then gets the
    /// `ref` the property is typed with, so a task never meets a type its
    /// checker accepted but its code does not expect.
    pub fn fitted(self, ty: &kflow_compiler::types::Ty) -> Value {
        use kflow_compiler::types::Ty;
        match (self, ty) {
            (v, Ty::Optional(t)) => v.fitted(t),
            (Value::Str(s), t) if t.accepts(&Ty::Ref) && !t.accepts(&Ty::String) => Value::Ref(s),
            (Value::List(items), Ty::List(t)) => Value::List(items.into_iter().map(|v| v.fitted(t)).collect()),
            (Value::Map(m), Ty::Map(t)) => Value::Map(m.into_iter().map(|(k, v)| (k, v.fitted(t))).collect()),
            (v, _) => v,
        }
    }

    /// The text of a value interpolated into a string (`"${x}"`). Secrets,
    /// lists, maps and missing values have none: the checker rejects them,
    /// so meeting one here is a bug reported as an error, not printed.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Str(s) | Value::Digest(s) | Value::Image(s) | Value::Ref(s) | Value::Pinned(s) | Value::Enum(s) => {
                s.clone()
            }
            Value::Images(images) => images
                .iter()
                .map(|(platform, id)| format!("{platform}={id}"))
                .collect::<Vec<_>>()
                .join(","),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Duration(ms) => format_duration(*ms),
            Value::Task(t) => t.clone(),
            Value::Secret(_) | Value::Credentials(_) | Value::List(_) | Value::Map(_) | Value::Missing => return None,
        })
    }

    /// A JSON form for outputs, events and the execution store; secrets are
    /// written as `***`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) | Value::Digest(s) | Value::Image(s) | Value::Ref(s) | Value::Pinned(s) | Value::Enum(s) => {
                json!(s)
            }
            Value::Images(images) => json!(images
                .iter()
                .map(|(platform, id)| json!({ "platform": platform, "image": id }))
                .collect::<Vec<_>>()),
            Value::Int(i) => json!(i),
            Value::Bool(b) => json!(b),
            Value::Duration(ms) => json!(format_duration(*ms)),
            Value::Task(t) => json!(t),
            Value::Secret(_) => json!(REDACTED),
            Value::Credentials(Credentials::DockerConfig) => json!("docker_config()"),
            Value::Credentials(Credentials::Helper(h)) => json!(format!("helper({h:?})")),
            Value::Credentials(Credentials::Basic { username, .. }) => {
                json!({ "username": username, "password": REDACTED })
            }
            Value::Credentials(Credentials::Minted(m)) => {
                json!({ "username": m.username(), "password": REDACTED, "registry": m.registry() })
            }
            Value::List(items) => json!(items.iter().map(Value::to_json).collect::<Vec<_>>()),
            Value::Map(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::Missing => serde_json::Value::Null,
        }
    }

    /// Reads back what [`Value::to_json`] wrote, given the type (inputs and
    /// outputs recorded in the history, for `kflow resume`). `None` when the
    /// JSON does not fit the type.
    pub fn from_json(json: &serde_json::Value, ty: &kflow_compiler::types::Ty) -> Option<Value> {
        use kflow_compiler::types::Ty;
        use serde_json::Value as J;
        Some(match (ty, json) {
            (Ty::Optional(_), J::Null) => Value::Missing,
            (Ty::Optional(inner), j) => Value::from_json(j, inner)?,
            (Ty::String | Ty::Path, J::String(s)) => Value::Str(s.clone()),
            (Ty::Int, J::Number(n)) => Value::Int(n.as_i64()?),
            (Ty::Bool, J::Bool(b)) => Value::Bool(*b),
            (Ty::Duration, J::String(s)) => Value::Duration(kflow_compiler::grammar::parse_duration(s)?),
            (Ty::Digest, J::String(s)) => Value::Digest(s.clone()),
            (Ty::Image, J::String(s)) => Value::Image(s.clone()),
            (Ty::Image, J::Array(items)) => Value::Images(
                items
                    .iter()
                    .map(|i| {
                        Some((
                            i.get("platform")?.as_str()?.to_string(),
                            i.get("image")?.as_str()?.to_string(),
                        ))
                    })
                    .collect::<Option<_>>()?,
            ),
            (Ty::Ref, J::String(s)) => Value::Ref(s.clone()),
            (Ty::Pinned, J::String(s)) => Value::Pinned(s.clone()),
            (Ty::Severity | Ty::Enum(_), J::String(s)) => Value::Enum(s.clone()),
            (Ty::Task, J::String(s)) => Value::Task(s.clone()),
            (Ty::List(inner), J::Array(items)) => Value::List(
                items
                    .iter()
                    .map(|i| Value::from_json(i, inner))
                    .collect::<Option<_>>()?,
            ),
            (Ty::Map(inner), J::Object(m)) => Value::Map(
                m.iter()
                    .map(|(k, v)| Some((k.clone(), Value::from_json(v, inner)?)))
                    .collect::<Option<_>>()?,
            ),
            (Ty::Record(fields), J::Object(m)) => Value::Map(
                fields
                    .iter()
                    .filter_map(|(k, t)| m.get(k).map(|v| Some((k.clone(), Value::from_json(v, t)?))))
                    .collect::<Option<_>>()?,
            ),
            (Ty::Union(options), j) => options.iter().find_map(|t| Value::from_json(j, t))?,
            _ => return None,
        })
    }

    /// Secrets inside this value (to register them with the redactor).
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            Value::Secret(s) => vec![s],
            Value::Credentials(Credentials::Basic { password, .. }) => vec![password],
            Value::List(items) => items.iter().flat_map(Value::secrets).collect(),
            Value::Map(m) => m.values().flat_map(Value::secrets).collect(),
            _ => Vec::new(),
        }
    }
}

/// `90000` → `1m30s`: the largest units first, as the language writes them.
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_written() {
        assert_eq!(format_duration(90_000), "1m30s");
        assert_eq!(format_duration(500), "500ms");
        assert_eq!(format_duration(86_400_000 + 1_000), "1d1s");
    }

    #[test]
    fn a_multi_platform_image_reads_back_as_written() {
        let images = Value::Images(vec![
            ("linux/amd64".into(), "sha256:aa".into()),
            ("linux/arm64".into(), "sha256:bb".into()),
        ]);
        let ty = kflow_compiler::types::Ty::Image;
        assert_eq!(Value::from_json(&images.to_json(), &ty), Some(images.clone()));
        assert_eq!(images.to_text().unwrap(), "linux/amd64=sha256:aa,linux/arm64=sha256:bb");
        assert_eq!(Value::from_json(&json!([{ "platform": "linux/amd64" }]), &ty), None);
    }

    #[test]
    fn secrets_stay_out_of_json_and_text() {
        let v = Value::Map(BTreeMap::from([
            ("token".to_string(), Value::Secret(Secret::new("s3cr3t"))),
            (
                "creds".to_string(),
                Value::Credentials(Credentials::Basic {
                    username: "ci".into(),
                    password: Secret::new("pw-123"),
                }),
            ),
        ]));
        let json = v.to_json().to_string();
        assert!(!json.contains("s3cr3t") && !json.contains("pw-123"), "{json}");
        assert_eq!(v.secrets().len(), 2);
        assert_eq!(Value::Secret(Secret::new("x")).to_text(), None);
    }

    #[test]
    fn strings_become_the_refs_their_property_is_typed_with() {
        use kflow_compiler::catalog;
        // Every property the checker lets a string into as a `ref`.
        for kind in catalog::KINDS {
            for p in kind.props {
                let ty = catalog::ty(p.ty);
                let fits = kflow_compiler::types::fit(&kflow_compiler::types::Ty::String, ty);
                if fits != kflow_compiler::types::Fit::Yes || ty.accepts(&kflow_compiler::types::Ty::String) {
                    continue;
                }
                let v = Value::Str("127.0.0.1:5000/app:1".into()).fitted(ty);
                assert!(
                    matches!(v, Value::Ref(_)) || ty.accepts(&kflow_compiler::types::Ty::Path),
                    "{}.{}: {v:?}",
                    kind.name,
                    p.name
                );
            }
        }
    }
}
