//! A task's properties as they travel to a worker through the queue: the
//! JSON the history writes (`Value::to_json`), except that a secret is a
//! reference by name, `{"$secret": "NAME"}`, which the worker reads from its
//! own environment or files; credentials are `{"$credentials": …}` around
//! such references. A value never crosses the database, so a secret only
//! the prod-push worker holds stays on it. What cannot be named — a secret
//! a task produced (a registry login a token task minted) — does not
//! travel: the task fails, saying why.

use serde_json::{json, Map, Value as Json};

use crate::secret::{reference_name, Secret};
use crate::tasks::Props;
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
    match reference_name(s) {
        Some(name) => Ok(json!({ "$secret": name })),
        None => Err(
            "a secret produced by another task (a minted login, a token) cannot travel to a worker: only the flow's declared secrets can, by name"
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
        Value::Credentials(Credentials::Minted(_)) => return Err(
            "a login minted by a token task cannot travel to a worker: run the token task on the worker that pushes"
                .into(),
        ),
        Value::List(items) => Json::Array(items.iter().map(value).collect::<Result<_, _>>()?),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), value(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.to_json(),
    })
}

/// The properties back, typed by the task's node; `read` reads a secret
/// the flow declares, by name, on this machine.
pub fn decode(
    json: &Json,
    types: &std::collections::BTreeMap<String, Ty>,
    read: &dyn Fn(&str) -> Result<Secret, String>,
) -> Result<Props, String> {
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
fn typed(j: &Json, ty: &Ty, read: &dyn Fn(&str) -> Result<Secret, String>) -> Result<Value, String> {
    match (ty, j) {
        (Ty::Optional(_), Json::Null) => Ok(Value::Missing),
        (Ty::Optional(inner), j) => typed(j, inner, read),
        (Ty::Secret, j) => match j.get("$secret").and_then(Json::as_str) {
            Some(name) => Ok(Value::Secret(read(name)?)),
            None => Err("a secret that is not a reference".into()),
        },
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

fn credentials(c: &Json, read: &dyn Fn(&str) -> Result<Secret, String>) -> Result<Value, String> {
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
                Some(name) => read(name)?,
                None => return Err("credentials whose password is not a declared secret".into()),
            },
        },
        _ => return Err("unknown credentials".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
        let back = decode(&wire, &types, &read).unwrap();
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
        let back = decode(&forged, &types, &read).unwrap();
        assert_eq!(back["message"], Value::Str("kflow-secret-ref:0:token".into()));
        assert_eq!(
            back["env"],
            Value::Map([("$secret".to_string(), Value::Str("token".into()))].into())
        );
    }
}
