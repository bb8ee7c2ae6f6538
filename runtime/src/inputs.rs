//! Inputs given on the command line (`--input NAME=VALUE`), parsed and
//! type-checked against the flow's declarations before anything runs.

use std::collections::BTreeMap;

use kflow_compiler::ir::Plan;
use kflow_compiler::literals;
use kflow_compiler::suggest::closest;
use kflow_compiler::types::{Ty, SEVERITIES};

use crate::eval::{eval, EvalError, Scope};
use crate::value::Value;

/// Parses one value written on the command line as the given type. Lists
/// are comma-separated; an empty value of an optional type is absent.
pub fn parse_input(ty: &Ty, raw: &str) -> Result<Value, String> {
    Ok(match ty {
        Ty::Optional(inner) => {
            if raw.is_empty() {
                Value::Missing
            } else {
                parse_input(inner, raw)?
            }
        }
        Ty::String | Ty::Path => Value::Str(raw.to_string()),
        Ty::Int => Value::Int(raw.trim().parse().map_err(|_| format!("`{raw}` is not an integer"))?),
        Ty::Bool => match raw.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("`{raw}` is not a boolean: write `true` or `false`")),
        },
        Ty::Duration => Value::Duration(
            kflow_compiler::grammar::parse_duration(raw.trim())
                .ok_or_else(|| format!("`{raw}` is not a duration: write e.g. `500ms`, `30s`, `5m`, `2h`, `1d`"))?,
        ),
        Ty::Ref => {
            literals::tag_ref(raw)?;
            Value::Ref(raw.to_string())
        }
        Ty::Pinned => {
            literals::pinned(raw)?;
            Value::Pinned(raw.to_string())
        }
        Ty::Digest => {
            literals::digest(raw)?;
            Value::Digest(raw.to_string())
        }
        Ty::Severity => {
            let v = raw.trim();
            if !SEVERITIES.contains(&v) {
                return Err(format!("`{raw}` is not a severity: {}", SEVERITIES.join(", ")));
            }
            Value::Enum(v.to_string())
        }
        Ty::Enum(members) => {
            let v = raw.trim();
            if !members.iter().any(|m| m == v) {
                return Err(format!("`{raw}` is not one of {}", members.join(", ")));
            }
            Value::Enum(v.to_string())
        }
        Ty::List(inner) => {
            if raw.trim().is_empty() {
                Value::List(Vec::new())
            } else {
                Value::List(
                    raw.split(',')
                        .map(|item| parse_input(inner, item.trim()))
                        .collect::<Result<_, _>>()?,
                )
            }
        }
        other => {
            return Err(format!(
                "an input of type `{other}` cannot be given on the command line"
            ))
        }
    })
}

/// A scope that knows nothing: defaults are constants.
struct Empty;

impl Scope for Empty {
    fn input(&self, _: &str) -> Option<Value> {
        None
    }
    fn secret(&self, _: &str) -> Option<Value> {
        None
    }
    fn let_value(&self, name: &str) -> Result<Value, EvalError> {
        Err(EvalError(format!("`{name}` is not known before the flow runs")))
    }
    fn loop_var(&self, _: &str) -> Option<Value> {
        None
    }
    fn outputs(&self, _: &str) -> Option<Value> {
        None
    }
}

/// An input's value when none is given: its default, absent for an
/// optional one, else an error saying it is required.
pub fn default_value(decl: &kflow_compiler::ir::InputDecl) -> Result<Value, String> {
    match (&decl.default, &decl.ty) {
        (Some(d), _) => {
            eval(d, &Empty).map_err(|e| format!("input `{}`: its default cannot be computed: {e}", decl.name))
        }
        (None, Ty::Optional(_)) => Ok(Value::Missing),
        (None, ty) => Err(format!(
            "input `{}` (type `{ty}`) is required and has no value",
            decl.name
        )),
    }
}

/// The value of every input: given ones parsed, the others from their
/// defaults. Every problem is reported, one line each.
pub fn resolve(plan: &Plan, given: &[(String, String)]) -> Result<BTreeMap<String, Value>, Vec<String>> {
    let mut errors = Vec::new();
    let mut values = BTreeMap::new();
    // Given, well or badly: a bad value is its one error, not also missing.
    let mut named = std::collections::HashSet::new();
    for (name, raw) in given {
        let Some(decl) = plan.inputs.iter().find(|i| &i.name == name) else {
            let names: Vec<&str> = plan.inputs.iter().map(|i| i.name.as_str()).collect();
            let hint = match closest(name, names.iter().copied()) {
                Some(meant) => {
                    // Taken for `meant`: this error says so, and `meant`
                    // is not reported missing as well.
                    named.insert(meant);
                    format!(": did you mean `{meant}`?")
                }
                None if names.is_empty() => format!(": flow `{}` takes no inputs", plan.flow),
                None => format!(" (inputs: {})", names.join(", ")),
            };
            errors.push(format!("flow `{}` has no input `{name}`{hint}", plan.flow));
            continue;
        };
        if !named.insert(decl.name.as_str()) {
            errors.push(format!("input `{name}` is given twice"));
            continue;
        }
        match parse_input(&decl.ty, raw) {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(e) => errors.push(format!("input `{name}` (type `{}`): {e}", decl.ty)),
        }
    }
    for decl in &plan.inputs {
        if named.contains(decl.name.as_str()) {
            continue;
        }
        match (&decl.default, &decl.ty) {
            (Some(d), _) => match eval(d, &Empty) {
                Ok(v) => {
                    values.insert(decl.name.clone(), v);
                }
                Err(e) => errors.push(format!("input `{}`: its default cannot be computed: {e}", decl.name)),
            },
            (None, Ty::Optional(_)) => {
                values.insert(decl.name.clone(), Value::Missing);
            }
            (None, ty) => errors.push(format!(
                "input `{}` (type `{ty}`) is required: pass `--input {}=VALUE`",
                decl.name, decl.name
            )),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflow_compiler::types::parse_spec;

    #[test]
    fn every_input_type() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(parse_input(&Ty::Int, "-3"), Ok(Value::Int(-3)));
        assert_eq!(parse_input(&Ty::Bool, "true"), Ok(Value::Bool(true)));
        assert_eq!(parse_input(&Ty::Duration, "1h30m"), Ok(Value::Duration(5_400_000)));
        assert_eq!(parse_input(&Ty::Path, "./app"), Ok(Value::Str("./app".into())));
        assert_eq!(parse_input(&Ty::Ref, "r.io/a:1"), Ok(Value::Ref("r.io/a:1".into())));
        assert_eq!(parse_input(&Ty::Digest, d), Ok(Value::Digest(d.into())));
        assert_eq!(
            parse_input(&Ty::Pinned, &format!("r.io/a@{d}")),
            Ok(Value::Pinned(format!("r.io/a@{d}")))
        );
        assert_eq!(parse_input(&Ty::Severity, "high"), Ok(Value::Enum("high".into())));
        assert_eq!(
            parse_input(&parse_spec("list<severity>"), "high, critical"),
            Ok(Value::List(vec![
                Value::Enum("high".into()),
                Value::Enum("critical".into())
            ]))
        );
        assert_eq!(parse_input(&parse_spec("list<int>"), ""), Ok(Value::List(vec![])));
        assert_eq!(parse_input(&parse_spec("string?"), ""), Ok(Value::Missing));
    }

    #[test]
    fn bad_values_say_why() {
        assert!(parse_input(&Ty::Int, "three").unwrap_err().contains("not an integer"));
        assert!(parse_input(&Ty::Bool, "yes").unwrap_err().contains("`true` or `false`"));
        assert!(parse_input(&Ty::Duration, "5 minutes")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_input(&Ty::Ref, "Bad/Repo:1").unwrap_err().contains("lowercase"));
        assert!(parse_input(&Ty::Pinned, "r.io/a:1").unwrap_err().contains("no digest"));
        assert!(parse_input(&Ty::Severity, "urgent")
            .unwrap_err()
            .contains("not a severity"));
        assert!(parse_input(&parse_spec("list<int>"), "1,x").is_err());
    }

    fn plan(src: &str) -> Plan {
        let a = kflow_compiler::analysis::analyze(src, &Default::default());
        a.flows.into_iter().next().unwrap().plan
    }

    #[test]
    fn resolution_reports_every_problem() {
        let p = plan(
            "flow f {\n  input version: string\n  input n: int = 3\n  input maybe: string?\n  output o = \"${version}${n}${maybe ?? \"\"}\"\n}\n",
        );
        let ok = resolve(&p, &[("version".into(), "1.0".into())]).unwrap();
        assert_eq!(ok["n"], Value::Int(3));
        assert_eq!(ok["maybe"], Value::Missing);
        let errs = resolve(&p, &[("verson".into(), "1".into()), ("n".into(), "x".into())]).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("did you mean `version`?"));
        assert!(errs[1].contains("input `n` (type `int`)"));
        let errs = resolve(&p, &[("maybe".into(), "x".into())]).unwrap_err();
        assert_eq!(
            errs,
            ["input `version` (type `string`) is required: pass `--input version=VALUE`"]
        );
    }

    /// A bad value, a misspelt name, a second value: one error each, never
    /// also "is required" for the input they were meant for.
    #[test]
    fn each_bad_input_is_reported_once() {
        let p = plan("flow f {\n  input n: int\n  input d: duration\n  output o = \"${n}${d}\"\n}\n");
        let errs = resolve(&p, &[("n".into(), "abc".into()), ("dd".into(), "5s".into())]).unwrap_err();
        assert_eq!(
            errs,
            [
                "input `n` (type `int`): `abc` is not an integer",
                "flow `f` has no input `dd`: did you mean `d`?"
            ]
        );
        let errs = resolve(
            &p,
            &[
                ("n".into(), "x".into()),
                ("n".into(), "1".into()),
                ("d".into(), "1s".into()),
            ],
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "input `n` (type `int`): `x` is not an integer",
                "input `n` is given twice"
            ]
        );
    }
}
