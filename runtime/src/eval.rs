//! Evaluation of the plan's typed expressions against what is known while a
//! flow runs: inputs, secrets, lets, loop variables and task outputs.

use std::collections::BTreeMap;

use kflow_compiler::ir::{BinOp, Expr};
use kflow_compiler::literals;

use crate::value::{Credentials, Value};

/// An evaluation failure: a value that cannot be computed (an output of a
/// task that did not produce it, a reference that does not parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

type Result<T> = std::result::Result<T, EvalError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(EvalError(msg.into()))
}

/// What names mean at the point of evaluation.
pub trait Scope {
    fn input(&self, name: &str) -> Option<Value>;
    fn secret(&self, name: &str) -> Option<Value>;
    /// The value of a `let`, evaluated once and kept.
    fn let_value(&self, name: &str) -> Result<Value>;
    fn loop_var(&self, name: &str) -> Option<Value>;
    /// A task's output record (for a task inside a loop read from outside
    /// it: the list of its records); `None` when the task produced none.
    fn outputs(&self, task: &str) -> Option<Value>;
    /// A field of the delivery being bound (`None`: no delivery here).
    fn trigger(&self, _field: &str) -> Option<Value> {
        None
    }
}

pub fn eval(e: &Expr, scope: &dyn Scope) -> Result<Value> {
    Ok(match e {
        Expr::Str { value } => Value::Str(value.clone()),
        Expr::Int { value } => Value::Int(*value),
        Expr::Bool { value } => Value::Bool(*value),
        Expr::Duration { ms } => Value::Duration(*ms),
        Expr::Enum { value } => Value::Enum(value.clone()),
        Expr::Interp { parts } => {
            let mut s = String::new();
            for p in parts {
                let v = eval(p, scope)?;
                match v.to_text() {
                    Some(t) => s.push_str(&t),
                    None => return err("a value that cannot be written as text was interpolated"),
                }
            }
            Value::Str(s)
        }
        Expr::Input { name } => scope
            .input(name)
            .ok_or_else(|| EvalError(format!("input `{name}` has no value")))?,
        Expr::Secret { name } => scope
            .secret(name)
            .ok_or_else(|| EvalError(format!("secret `{name}` is not set")))?,
        Expr::Let { name } => scope.let_value(name)?,
        Expr::LoopVar { name } => scope
            .loop_var(name)
            .ok_or_else(|| EvalError(format!("loop variable `{name}` used outside its loop")))?,
        Expr::Task { name } => Value::Task(name.clone()),
        Expr::Trigger { field } => scope
            .trigger(field)
            .ok_or_else(|| EvalError(format!("`trigger.{field}` is read where no delivery is")))?,
        Expr::Output { task, field } => match scope.outputs(task) {
            Some(record) => project(&record, field),
            None => Value::Missing,
        },
        Expr::Field { base, field } => field_of(&eval(base, scope)?, field)?,
        Expr::List { items } => Value::List(items.iter().map(|i| eval(i, scope)).collect::<Result<_>>()?),
        Expr::Map { entries } => Value::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), eval(v, scope)?)))
                .collect::<Result<BTreeMap<_, _>>>()?,
        ),
        Expr::Not { expr } => Value::Bool(!as_bool(&eval(expr, scope)?)?),
        Expr::Binary { bin, left, right } => binary(*bin, left, right, scope)?,
        Expr::Call { func, args } => {
            let args: Vec<Value> = args.iter().map(|a| eval(a, scope)).collect::<Result<_>>()?;
            call(func, &args)?
        }
        Expr::Method { task, method, args } => {
            let args: Vec<Value> = args.iter().map(|a| eval(a, scope)).collect::<Result<_>>()?;
            match scope.outputs(task) {
                Some(record) => method_call(task, &record, method, &args)?,
                None => Value::Missing,
            }
        }
        Expr::Invalid => return err("the plan holds an expression that did not compile"),
    })
}

/// `record.field`; over a list of records (a loop's task read from outside
/// the loop), the list of that field.
fn project(record: &Value, field: &str) -> Value {
    match record {
        Value::Map(m) => m.get(field).cloned().unwrap_or(Value::Missing),
        Value::List(items) => Value::List(items.iter().map(|r| project(r, field)).collect()),
        _ => Value::Missing,
    }
}

fn field_of(v: &Value, field: &str) -> Result<Value> {
    match (v, field) {
        (Value::Missing, _) => Ok(Value::Missing),
        // A delivery's JSON: an absent key is absent.
        (Value::Map(m), _) => Ok(m.get(field).cloned().unwrap_or(Value::Missing)),
        (Value::Pinned(p), "digest") => match p.split_once('@') {
            Some((_, d)) => Ok(Value::Digest(d.to_string())),
            None => err(format!("`{p}` has no digest")),
        },
        (Value::Pinned(p), "repo") => Ok(Value::Str(p.split_once('@').map_or(p.as_str(), |(r, _)| r).to_string())),
        _ => err(format!("no field `{field}` on this value")),
    }
}

fn as_bool(v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => err("a condition is not a boolean"),
    }
}

fn binary(op: BinOp, l: &Expr, r: &Expr, scope: &dyn Scope) -> Result<Value> {
    Ok(match op {
        // Short-circuit, as users expect of `&&` and `||`.
        BinOp::And => Value::Bool(as_bool(&eval(l, scope)?)? && as_bool(&eval(r, scope)?)?),
        BinOp::Or => Value::Bool(as_bool(&eval(l, scope)?)? || as_bool(&eval(r, scope)?)?),
        BinOp::Eq => Value::Bool(same(&eval(l, scope)?, &eval(r, scope)?)),
        BinOp::Ne => Value::Bool(!same(&eval(l, scope)?, &eval(r, scope)?)),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let (a, b) = match (eval(l, scope)?, eval(r, scope)?) {
                (Value::Int(a), Value::Int(b)) => (a, b),
                (Value::Duration(a), Value::Duration(b)) => (a as i64, b as i64),
                _ => return err("`<`, `<=`, `>` and `>=` compare two ints or two durations"),
            };
            Value::Bool(match op {
                BinOp::Lt => a < b,
                BinOp::Le => a <= b,
                BinOp::Gt => a > b,
                _ => a >= b,
            })
        }
        BinOp::Coalesce => match eval(l, scope)? {
            Value::Missing => eval(r, scope)?,
            v => v,
        },
        BinOp::At => {
            let digest = match eval(r, scope)? {
                Value::Digest(d) => d,
                Value::Missing => return Ok(Value::Missing),
                _ => return err("`@` needs a digest on its right"),
            };
            let reference = match eval(l, scope)? {
                Value::Ref(s) | Value::Str(s) => s,
                Value::Missing => return Ok(Value::Missing),
                _ => return err("`@` needs a reference on its left"),
            };
            Value::Pinned(pin(&reference, &digest)?)
        }
    })
}

/// Equality as the language sees it: a string and a reference with the same
/// text are equal (the checker already made sure the types are compatible).
fn same(a: &Value, b: &Value) -> bool {
    match (a.to_text(), b.to_text()) {
        (Some(x), Some(y)) if !matches!((a, b), (Value::Int(_), _) | (_, Value::Int(_))) => x == y,
        _ => a == b,
    }
}

/// `registry/repo:tag` + digest → `registry/repo@digest` (the tag goes: a
/// pinned reference names bytes, not a tag).
pub fn pin(reference: &str, digest: &str) -> Result<String> {
    literals::digest(digest).map_err(EvalError)?;
    let r = literals::reference(reference).map_err(EvalError)?;
    let repo = match r.registry {
        Some(reg) => format!("{reg}/{}", r.repository),
        None => r.repository.to_string(),
    };
    Ok(format!("{repo}@{digest}"))
}

fn text_arg(args: &[Value]) -> Result<&str> {
    match args.first() {
        Some(Value::Str(s)) => Ok(s),
        _ => err("expected a string argument"),
    }
}

fn strings<'s>(pieces: impl Iterator<Item = &'s str>) -> Value {
    Value::List(pieces.map(|p| Value::Str(p.to_string())).collect())
}

fn call(func: &str, args: &[Value]) -> Result<Value> {
    Ok(match func {
        "digest" => {
            let s = text_arg(args)?;
            literals::digest(s).map_err(EvalError)?;
            Value::Digest(s.to_string())
        }
        "pinned" => {
            let s = text_arg(args)?;
            literals::pinned(s).map_err(EvalError)?;
            Value::Pinned(s.to_string())
        }
        "ref" => {
            let s = text_arg(args)?;
            literals::tag_ref(s).map_err(EvalError)?;
            Value::Ref(s.to_string())
        }
        "lines" => strings(text_arg(args)?.lines()),
        "split" => match args {
            [Value::Str(text), Value::Str(sep)] if !sep.is_empty() => strings(text.split(sep.as_str())),
            [Value::Str(_), Value::Str(_)] => return err("`split` needs a separator that is not empty"),
            _ => return err("`split` takes two strings"),
        },
        "trim" => Value::Str(text_arg(args)?.trim().to_string()),
        "docker_config" => Value::Credentials(Credentials::DockerConfig),
        "helper" => Value::Credentials(Credentials::Helper(text_arg(args)?.to_string())),
        // `env`/`file` are read when secrets are loaded, never evaluated here.
        other => return err(format!("`{other}(…)` cannot be evaluated here")),
    })
}

/// Task methods read hidden fields of the task's record: `port(service,
/// container_port)` reads `ports`, keyed `service:port`.
fn method_call(task: &str, record: &Value, method: &str, args: &[Value]) -> Result<Value> {
    match (method, args) {
        ("port", [Value::Str(service), Value::Int(port)]) => {
            let key = format!("{service}:{port}");
            match project(record, "ports") {
                Value::Map(ports) => ports
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| EvalError(format!("`{task}`: service `{service}` publishes no port {port}"))),
                _ => err(format!("`{task}` published no ports")),
            }
        }
        _ => err(format!("`{task}.{method}(…)` cannot be evaluated")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fixed {
        inputs: HashMap<&'static str, Value>,
        outputs: HashMap<&'static str, Value>,
    }

    impl Scope for Fixed {
        fn input(&self, name: &str) -> Option<Value> {
            self.inputs.get(name).cloned()
        }
        fn secret(&self, name: &str) -> Option<Value> {
            (name == "token").then(|| Value::Secret(Secret::new("t0k3n")))
        }
        fn let_value(&self, name: &str) -> Result<Value> {
            err(format!("no let {name}"))
        }
        fn loop_var(&self, _: &str) -> Option<Value> {
            None
        }
        fn outputs(&self, task: &str) -> Option<Value> {
            self.outputs.get(task).cloned()
        }
    }

    fn plan_expr(src: &str) -> Expr {
        let flow = format!("flow f {{\n  input version: string = \"1\"\n  task push = docker.push {{ image: b.image, to: \"r.io/app:1\" }}\n  task b = docker.build {{ context: \".\" }}\n  output x = {src}\n}}\n");
        let a = kflow_compiler::analysis::analyze(&flow, &Default::default());
        assert!(!a.has_errors(), "{:#?}", a.diagnostics);
        a.flows[0].plan.outputs[0].value.clone()
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn scope() -> Fixed {
        let mut s = Fixed::default();
        s.inputs.insert("version", Value::Str("1.2".into()));
        s.outputs.insert(
            "push",
            Value::Map(BTreeMap::from([
                ("digest".to_string(), Value::Digest(D.into())),
                ("pinned".to_string(), Value::Pinned(format!("r.io/app@{D}"))),
            ])),
        );
        s
    }

    #[test]
    fn interpolation_and_fields() {
        let v = eval(&plan_expr(r#""v${version} ${push.pinned.repo} ${1h30m}""#), &scope()).unwrap();
        assert_eq!(v, Value::Str("v1.2 r.io/app 1h30m".into()));
    }

    #[test]
    fn pinning_drops_the_tag() {
        let v = eval(&plan_expr(r#"ref("r.io:5000/app:1") @ push.digest"#), &scope()).unwrap();
        assert_eq!(v, Value::Pinned(format!("r.io:5000/app@{D}")));
    }

    #[test]
    fn comparison_and_logic() {
        let v = eval(&plan_expr("push.pinned.digest == push.digest && !false"), &scope()).unwrap();
        assert_eq!(v, Value::Bool(true));
    }

    #[test]
    fn missing_outputs_fall_back() {
        let mut s = scope();
        s.outputs.clear();
        // `b` produced nothing: its output is missing, `??` supplies the default.
        let e = Expr::Binary {
            bin: BinOp::Coalesce,
            left: Box::new(Expr::Output {
                task: "b".into(),
                field: "image".into(),
            }),
            right: Box::new(Expr::Str { value: "none".into() }),
        };
        assert_eq!(eval(&e, &s).unwrap(), Value::Str("none".into()));
    }

    #[test]
    fn loop_outputs_project_over_iterations() {
        let mut s = Fixed::default();
        let rec = |d: &str| Value::Map(BTreeMap::from([("stdout".to_string(), Value::Str(d.into()))]));
        s.outputs.insert("each", Value::List(vec![rec("a"), rec("b")]));
        let e = Expr::Output {
            task: "each".into(),
            field: "stdout".into(),
        };
        assert_eq!(
            eval(&e, &s).unwrap(),
            Value::List(vec![Value::Str("a".into()), Value::Str("b".into())])
        );
    }

    #[test]
    fn secrets_cannot_become_text() {
        let e = Expr::Interp {
            parts: vec![Expr::Secret { name: "token".into() }],
        };
        let msg = eval(&e, &scope()).unwrap_err().0;
        assert!(!msg.contains("t0k3n"));
    }

    #[test]
    fn ports_of_a_stack() {
        let mut s = Fixed::default();
        s.outputs.insert(
            "stack",
            Value::Map(BTreeMap::from([(
                "ports".to_string(),
                Value::Map(BTreeMap::from([("app:8080".to_string(), Value::Int(32768))])),
            )])),
        );
        let call = |svc: &str| Expr::Method {
            task: "stack".into(),
            method: "port".into(),
            args: vec![Expr::Str { value: svc.into() }, Expr::Int { value: 8080 }],
        };
        assert_eq!(eval(&call("app"), &s).unwrap(), Value::Int(32768));
        assert!(eval(&call("db"), &s).unwrap_err().0.contains("publishes no port 8080"));
    }
}
