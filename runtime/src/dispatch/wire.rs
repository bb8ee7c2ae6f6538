//! A task's properties as they travel to a worker through the queue: the
//! JSON the history writes (`Value::to_json`), except that a secret is a
//! reference by name, `{"$secret": "NAME"}`, which the worker reads from its
//! own environment or files; credentials are `{"$credentials": …}` around
//! such references. A value never crosses the database, so a secret only
//! the prod-push worker holds stays on it.
//!
//! A secret a task produced on a worker (a token, a minted registry login)
//! stays on that worker too: its outputs report it as
//! `{"$held": {"worker", "task", "output"}}`, the server keeps a stand-in
//! ([`crate::secret::held`]), and a task that uses it is queued for that
//! worker and gets it back as `{"$held": …}`, resolved there.

use serde_json::{json, Map, Value as Json};

use crate::secret::{held, held_ref, reference_name, Held, Secret};
use crate::tasks::{Outputs, Props};
use crate::value::{Credentials, Value};
use kflow_compiler::types::Ty;

/// The properties in their wire form.
pub fn encode(props: &Props) -> Result<Json, String> {
    let mut out = Map::new();
    for (name, v) in props {
        out.insert(name.clone(), value(v).map_err(|e| format!("`{name}`: {e}"))?);
    }
    Ok(Json::Object(out))
}

fn secret(s: &Secret) -> Result<Json, String> {
    if let Some(name) = reference_name(s) {
        return Ok(json!({ "$secret": name }));
    }
    match held_ref(s) {
        Some(h) => Ok(json!({ "$held": h })),
        None => Err(
            "a secret that is neither one the flow declares nor one a task produced on a worker cannot travel to a worker"
                .into(),
        ),
    }
}

fn value(v: &Value) -> Result<Json, String> {
    Ok(match v {
        Value::Secret(s) => secret(s)?,
        Value::Credentials(Credentials::DockerConfig) => json!({ "$credentials": "docker_config" }),
        Value::Credentials(Credentials::Helper(h)) => json!({ "$credentials": { "helper": h } }),
        Value::Credentials(Credentials::Basic { username, password }) => {
            json!({ "$credentials": { "username": username, "password": secret(password)? } })
        }
        Value::Credentials(Credentials::Minted(_)) => {
            return Err("a login minted in this process cannot travel to a worker".into())
        }
        Value::List(items) => Json::Array(items.iter().map(value).collect::<Result<_, _>>()?),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), value(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.to_json(),
    })
}

/// Where a worker finds the secrets a task's properties refer to.
pub struct Sources<'a> {
    /// A secret the flow declares, by name, read on this machine.
    pub read: &'a dyn Fn(&str) -> Result<Secret, String>,
    /// A secret (or a login) an earlier task produced on this worker.
    pub held: &'a dyn Fn(&Held) -> Result<Value, String>,
}

/// The properties back, typed by the task's node.
pub fn decode(json: &Json, types: &std::collections::BTreeMap<String, Ty>, read: &Sources) -> Result<Props, String> {
    let Json::Object(fields) = json else {
        return Err("the queued properties are not an object".into());
    };
    let mut props = Props::new();
    for (name, j) in fields {
        let ty = types
            .get(name)
            .ok_or_else(|| format!("the task has no property `{name}` in the recorded plan"))?;
        let v = typed(j, ty, read).map_err(|e| format!("`{name}`: {e}"))?;
        props.insert(name.clone(), v);
    }
    Ok(props)
}

/// A value of type `ty`. A reference is read only where the type is a
/// secret or credentials: a map or text that merely looks like one (a
/// delivery's body) stays what it is.
fn typed(j: &Json, ty: &Ty, read: &Sources) -> Result<Value, String> {
    match (ty, j) {
        (Ty::Optional(_), Json::Null) => Ok(Value::Missing),
        (Ty::Optional(inner), j) => typed(j, inner, read),
        (Ty::Secret, j) => Ok(Value::Secret(secret_back(j, read)?)),
        (Ty::Credentials, j) => credentials(
            j.get("$credentials").ok_or("credentials that are not a reference")?,
            read,
        ),
        (Ty::List(inner), Json::Array(items)) => Ok(Value::List(
            items.iter().map(|i| typed(i, inner, read)).collect::<Result<_, _>>()?,
        )),
        (Ty::Map(inner), Json::Object(m)) => Ok(Value::Map(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), typed(v, inner, read)?)))
                .collect::<Result<_, String>>()?,
        )),
        (Ty::Record(fields), Json::Object(m)) => Ok(Value::Map(
            fields
                .iter()
                .filter_map(|(k, t)| m.get(k).map(|v| Ok((k.clone(), typed(v, t, read)?))))
                .collect::<Result<_, String>>()?,
        )),
        (Ty::Union(options), j) => options
            .iter()
            .find_map(|t| typed(j, t, read).ok())
            .ok_or_else(|| "a value of none of its types".to_string()),
        (ty, j) => Value::from_json(j, ty).ok_or_else(|| format!("not a {ty:?}")),
    }
}

/// A secret reference: declared (`$secret`) or held here (`$held`).
fn secret_back(j: &Json, read: &Sources) -> Result<Secret, String> {
    if let Some(name) = j.get("$secret").and_then(Json::as_str) {
        return (read.read)(name);
    }
    match (read.held)(&held_in(j)?)? {
        Value::Secret(s) => Ok(s),
        _ => Err("a held value that is not a secret".into()),
    }
}

fn held_in(j: &Json) -> Result<Held, String> {
    j.get("$held")
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .ok_or_else(|| "a secret that is not a reference".into())
}

fn credentials(c: &Json, read: &Sources) -> Result<Value, String> {
    // A login a token task minted on this worker comes back whole (it
    // mints its next token itself); a produced secret as a password.
    if let Some(h) = c.get("password").filter(|p| p.get("$held").is_some()) {
        let username = c.get("username").and_then(Json::as_str).unwrap_or_default();
        return match (read.held)(&held_in(h)?)? {
            Value::Credentials(c) => Ok(Value::Credentials(c)),
            Value::Secret(password) => Ok(Value::Credentials(Credentials::Basic {
                username: username.to_string(),
                password,
            })),
            _ => Err("a held value that is not a secret".into()),
        };
    }
    Ok(Value::Credentials(match c {
        Json::String(s) if s == "docker_config" => Credentials::DockerConfig,
        Json::Object(o) if o.contains_key("helper") => {
            Credentials::Helper(o["helper"].as_str().ok_or("a helper's name is not text")?.to_string())
        }
        Json::Object(o) => Credentials::Basic {
            username: o
                .get("username")
                .and_then(Json::as_str)
                .ok_or("credentials without a username")?
                .to_string(),
            password: match o.get("password").and_then(|p| p.get("$secret")).and_then(Json::as_str) {
                Some(name) => (read.read)(name)?,
                None => return Err("credentials whose password is not a declared secret".into()),
            },
        },
        _ => return Err("unknown credentials".into()),
    }))
}

/// Whether an output stays on the worker that produced it.
fn stays(v: &Value) -> bool {
    matches!(
        v,
        Value::Secret(_) | Value::Credentials(Credentials::Minted(_) | Credentials::Basic { .. })
    )
}

/// A task's outputs as its worker reports them, and those that stay on the
/// worker (secrets, logins), reported as `{"$held": …}` (a login with its
/// username, which is no secret).
pub fn encode_outputs(outputs: &Outputs, worker: &str, task: &str) -> (Json, Vec<(String, Value)>) {
    let mut json = Map::new();
    let mut kept = Vec::new();
    for (name, v) in outputs {
        if !stays(v) {
            json.insert(name.clone(), v.to_json());
            continue;
        }
        let h = Held {
            worker: worker.to_string(),
            task: task.to_string(),
            output: name.clone(),
        };
        let mut stand_in = json!({ "$held": h });
        if let Value::Credentials(c) = v {
            let username = match c {
                Credentials::Minted(m) => m.username().to_string(),
                Credentials::Basic { username, .. } => username.clone(),
                _ => String::new(),
            };
            stand_in["username"] = json!(username);
        }
        json.insert(name.clone(), stand_in);
        kept.push((name.clone(), v.clone()));
    }
    (Json::Object(json), kept)
}

/// The outputs a worker reported, typed by the task's kind: an output the
/// kind declares a secret or credentials is a stand-in
/// ([`crate::secret::held`]); every other output is data, whatever it looks
/// like (a `{"$held": …}` in a response is not one). `None` when they do
/// not fit the kind.
pub fn decode_outputs(kind: &str, json: &Json) -> Option<Outputs> {
    let declared = kflow_compiler::catalog::kind(kind);
    let secret_type = |name: &str| {
        declared
            .and_then(|k| k.output(name))
            .map(|o| o.ty.trim_end_matches('?'))
            .filter(|t| matches!(*t, "secret" | "credentials"))
    };
    let Json::Object(fields) = json else {
        return crate::executor::restore_kind_outputs(kind, json);
    };
    // Most tasks produce no secret: their outputs are read as they are.
    if !fields.keys().any(|name| secret_type(name).is_some()) {
        return crate::executor::restore_kind_outputs(kind, json);
    }
    let rest: Map<String, Json> = fields
        .iter()
        .filter(|(name, _)| secret_type(name).is_none())
        .map(|(name, j)| (name.clone(), j.clone()))
        .collect();
    let mut outputs = crate::executor::restore_kind_outputs(kind, &Json::Object(rest))?;
    for (name, j) in fields {
        let Some(ty) = secret_type(name) else { continue };
        let h: Held = serde_json::from_value(j.get("$held")?.clone()).ok()?;
        let value = match ty {
            "secret" => Value::Secret(held(&h)),
            _ => Value::Credentials(Credentials::Basic {
                username: j.get("username").and_then(Json::as_str)?.to_string(),
                password: held(&h),
            }),
        };
        outputs.insert(name.clone(), value);
    }
    Some(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sources<'a>(
        read: &'a dyn Fn(&str) -> Result<Secret, String>,
        held: &'a dyn Fn(&Held) -> Result<Value, String>,
    ) -> Sources<'a> {
        Sources { read, held }
    }

    fn nothing_held(_: &Held) -> Result<Value, String> {
        panic!("nothing is held")
    }

    fn no_declared(_: &str) -> Result<Secret, String> {
        panic!("nothing to read")
    }

    #[test]
    fn a_produced_secret_stays_on_its_worker_and_comes_back_there() {
        // The worker reports an OIDC token it fetched: a stand-in, no value.
        let mut outputs = Outputs::new();
        outputs.insert("token".into(), Value::Secret(Secret::new("jwt-value-123")));
        outputs.insert("expires_at".into(), Value::Str("2100-01-01T00:00:00Z".into()));
        let (reported, kept) = encode_outputs(&outputs, "w1", "id");
        assert!(!reported.to_string().contains("jwt-value-123"), "{reported}");
        assert_eq!(
            kept,
            vec![("token".to_string(), Value::Secret(Secret::new("jwt-value-123")))]
        );
        let expected = Held {
            worker: "w1".into(),
            task: "id".into(),
            output: "token".into(),
        };

        // The server's stand-in, typed as the kind declares.
        let back = decode_outputs("oidc.token", &reported).unwrap();
        let Value::Secret(stand_in) = &back["token"] else {
            panic!("{back:?}")
        };
        assert_eq!(held_ref(stand_in), Some(expected.clone()));
        assert_eq!(back["expires_at"], Value::Str("2100-01-01T00:00:00Z".into()));

        // A task using it: the stand-in travels as `$held`, resolved on the worker.
        let mut props = Props::new();
        props.insert("token".into(), back["token"].clone());
        props.insert(
            "auth".into(),
            Value::Credentials(Credentials::Basic {
                username: "ci".into(),
                password: stand_in.clone(),
            }),
        );
        let wire = encode(&props).unwrap();
        assert_eq!(wire["token"], json!({ "$held": expected }));
        assert!(!wire.to_string().contains("kflow-held-ref"), "{wire}");
        let types: BTreeMap<String, Ty> =
            [("token".to_string(), Ty::Secret), ("auth".to_string(), Ty::Credentials)].into();
        let held = |h: &Held| -> Result<Value, String> {
            assert_eq!(*h, expected);
            Ok(Value::Secret(Secret::new("jwt-value-123")))
        };
        let decoded = decode(&wire, &types, &sources(&no_declared, &held)).unwrap();
        assert_eq!(decoded["token"], Value::Secret(Secret::new("jwt-value-123")));
        assert!(
            matches!(&decoded["auth"], Value::Credentials(Credentials::Basic { username, password })
            if username == "ci" && password.expose() == "jwt-value-123")
        );
    }

    #[test]
    fn a_minted_login_is_reported_with_its_username_only() {
        let mut outputs = Outputs::new();
        let login = Value::Credentials(Credentials::Basic {
            username: "oauth2accesstoken".into(),
            password: Secret::new("ya29.secret-access"),
        });
        outputs.insert("credentials".into(), login.clone());
        let (reported, kept) = encode_outputs(&outputs, "w2", "login");
        assert!(!reported.to_string().contains("ya29"), "{reported}");
        assert_eq!(reported["credentials"]["username"], "oauth2accesstoken");
        assert_eq!(kept.len(), 1);
        let back = decode_outputs("gcp.registry_login", &reported).unwrap();
        let Value::Credentials(Credentials::Basic { username, password }) = &back["credentials"] else {
            panic!("{back:?}")
        };
        assert_eq!(username, "oauth2accesstoken");
        assert_eq!(held_ref(password).unwrap().task, "login");
        // The worker gives back the login it holds, whole.
        let mut props = Props::new();
        props.insert("credentials".into(), back["credentials"].clone());
        let wire = encode(&props).unwrap();
        let types: BTreeMap<String, Ty> = [("credentials".to_string(), Ty::Credentials)].into();
        let held = |_: &Held| -> Result<Value, String> { Ok(login.clone()) };
        let decoded = decode(&wire, &types, &sources(&no_declared, &held)).unwrap();
        assert_eq!(decoded["credentials"], login);
    }

    #[test]
    fn only_an_output_declared_secret_is_read_as_a_stand_in() {
        // A stack's `ports` (data, outside the catalog) shaped like a
        // stand-in stays data: no secret, and the outputs still fit.
        let reported = json!({
            "project": "p1",
            "ports": { "$held": { "worker": "w1", "task": "id", "output": "token" } },
        });
        let back = decode_outputs("compose.up", &reported).unwrap();
        assert_eq!(back["project"], Value::Str("p1".into()));
        assert!(!matches!(back.get("ports"), Some(Value::Secret(_))), "{back:?}");
        // A declared secret that is not a stand-in does not fit.
        assert!(decode_outputs("oidc.token", &json!({ "token": "***", "expires_at": "x" })).is_none());
    }

    #[test]
    fn a_stand_in_of_another_process_is_no_stand_in() {
        let h = serde_json::to_string(&Held {
            worker: "w1".into(),
            task: "id".into(),
            output: "token".into(),
        })
        .unwrap();
        let forged = Secret::new(format!("kflow-held-ref:0000000000000000:{h}"));
        assert_eq!(held_ref(&forged), None);
        let mut props = Props::new();
        props.insert("token".into(), Value::Secret(forged));
        assert!(encode(&props).unwrap_err().contains("cannot travel"));
    }

    fn plan_with_secret() -> kflow_compiler::ir::Plan {
        let src = "flow f {\n  secret token = env(\"WIRE_TEST_TOKEN\")\n  task t = log { message: \"x\" }\n}\n";
        let a = kflow_compiler::analysis::analyze(src, &Default::default());
        assert!(!a.has_errors(), "{:#?}", a.diagnostics);
        a.flows.into_iter().next().unwrap().plan
    }

    #[test]
    fn declared_secrets_travel_by_name_and_never_by_value() {
        let plan = plan_with_secret();
        let refs = crate::secret::references(&plan);
        let mut props = Props::new();
        props.insert("token".into(), Value::Secret(refs["token"].clone()));
        props.insert(
            "auth".into(),
            Value::Credentials(Credentials::Basic {
                username: "ci".into(),
                password: refs["token"].clone(),
            }),
        );
        props.insert("args".into(), Value::List(vec![Value::Str("a".into()), Value::Int(3)]));
        let wire = encode(&props).unwrap();
        assert_eq!(wire["token"], json!({"$secret": "token"}));
        assert_eq!(wire["auth"]["$credentials"]["password"], json!({"$secret": "token"}));
        let text = wire.to_string();
        assert!(!text.contains("kflow-secret-ref"), "{text}");

        let types: BTreeMap<String, Ty> = [
            ("token".to_string(), Ty::Secret),
            ("auth".to_string(), Ty::Credentials),
            (
                "args".to_string(),
                Ty::List(Box::new(Ty::Union(vec![Ty::String, Ty::Int]))),
            ),
        ]
        .into();
        let read = |name: &str| -> Result<Secret, String> {
            assert_eq!(name, "token");
            Ok(Secret::new("the-real-value"))
        };
        let back = decode(&wire, &types, &sources(&read, &nothing_held)).unwrap();
        assert_eq!(back["token"], Value::Secret(Secret::new("the-real-value")));
        assert!(
            matches!(&back["auth"], Value::Credentials(Credentials::Basic { username, password })
            if username == "ci" && password.expose() == "the-real-value")
        );
        assert_eq!(back["args"], Value::List(vec![Value::Str("a".into()), Value::Int(3)]));
    }

    #[test]
    fn a_secret_that_is_no_reference_does_not_travel() {
        let mut props = Props::new();
        props.insert("token".into(), Value::Secret(Secret::new("a-real-value-9")));
        let err = encode(&props).unwrap_err();
        assert!(
            err.contains("cannot travel") && !err.contains("a-real-value-9"),
            "{err}"
        );
        // What merely looks like a reference where no secret is expected
        // (a map from a delivery's body) stays what it is.
        let types: BTreeMap<String, Ty> = [
            ("message".to_string(), Ty::String),
            ("env".to_string(), Ty::Map(Box::new(Ty::String))),
        ]
        .into();
        let read = |_: &str| -> Result<Secret, String> { panic!("nothing to read") };
        let forged = json!({"message": "kflow-secret-ref:0:token", "env": {"$secret": "token"}});
        let back = decode(&forged, &types, &sources(&read, &nothing_held)).unwrap();
        assert_eq!(back["message"], Value::Str("kflow-secret-ref:0:token".into()));
        assert_eq!(
            back["env"],
            Value::Map([("$secret".to_string(), Value::Str("token".into()))].into())
        );
    }
}
