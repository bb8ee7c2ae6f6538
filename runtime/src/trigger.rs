//! What a trigger makes of a delivery: its fields (`trigger.tag`), whether
//! it starts an execution (`events`, `when`), and the inputs it binds,
//! converted to their declared types as `--input` values are. The server
//! and `kflow run --trigger` decide through here, so a delivery tested
//! offline is bound exactly as it will be when it arrives.

use std::collections::BTreeMap;

use kflow_compiler::ir::{Plan, Trigger};
use kflow_compiler::types::Ty;
use serde_json::Value as Json;

use crate::eval::{eval, EvalError, Scope};
use crate::inputs::parse_input;
use crate::value::Value;

/// A delivery's fields, by name (`tag`, `body`, `headers`); absent optional
/// fields are not in it.
pub type Fields = BTreeMap<String, Value>;

/// What a delivery comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Start an execution with these inputs (every input of the flow).
    Start(BTreeMap<String, Value>),
    /// Not for this trigger (`events`, `when`): nothing starts; the reason.
    Filtered(String),
    /// Its values do not make the flow's inputs: the reason, to answer and
    /// record.
    Refused(String),
}

/// Decides about a delivery of `trigger` (a trigger of `plan`).
pub fn bind(plan: &Plan, trigger: &Trigger, fields: &Fields) -> Verdict {
    if !trigger.events.is_empty() {
        let event = match fields.get("event") {
            Some(Value::Str(e)) => e.as_str(),
            _ => "",
        };
        if !trigger.events.iter().any(|e| e == event) {
            return Verdict::Filtered(format!("event `{event}` is not one of {}", trigger.events.join(", ")));
        }
    }
    let scope = Delivered(fields);
    if let Some(when) = &trigger.when {
        match eval(when, &scope) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => return Verdict::Filtered("`when` is false for this delivery".into()),
            Ok(_) => return Verdict::Refused("`when` did not give a boolean".into()),
            Err(e) => return Verdict::Refused(format!("`when` cannot be computed: {e}")),
        }
    }
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, expr) in &trigger.inputs {
        let Some(decl) = plan.inputs.iter().find(|i| &i.name == name) else {
            continue;
        };
        let value = match eval(expr, &scope) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("input `{name}`: {e}"));
                continue;
            }
        };
        match convert(value, &decl.ty) {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(e) => errors.push(format!("input `{name}` (type `{}`): {e}", decl.ty)),
        }
    }
    for decl in &plan.inputs {
        if values.contains_key(&decl.name) || trigger.inputs.iter().any(|(n, _)| *n == decl.name) {
            continue;
        }
        match crate::inputs::default_value(decl) {
            Ok(v) => {
                values.insert(decl.name.clone(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Verdict::Start(values)
    } else {
        Verdict::Refused(errors.join("; "))
    }
}

/// A delivered value as the type it is bound to: text is read as
/// `--input` reads it, other JSON values by their shape.
pub fn convert(value: Value, ty: &Ty) -> Result<Value, String> {
    match (value, ty) {
        (Value::Missing, Ty::Optional(_)) => Ok(Value::Missing),
        (Value::Missing, _) => Err("absent from this delivery".into()),
        (v, Ty::Optional(inner)) => convert(v, inner),
        (Value::Str(s), ty) => parse_input(ty, &s),
        (Value::Int(n), Ty::Int) => Ok(Value::Int(n)),
        (Value::Int(n), Ty::String | Ty::Path) => Ok(Value::Str(n.to_string())),
        (Value::Bool(b), Ty::Bool) => Ok(Value::Bool(b)),
        (Value::List(items), Ty::List(inner)) => items
            .into_iter()
            .map(|i| convert(i, inner))
            .collect::<Result<_, _>>()
            .map(Value::List),
        (Value::Map(m), Ty::Map(inner)) => m
            .into_iter()
            .map(|(k, v)| Ok((k, convert(v, inner)?)))
            .collect::<Result<_, String>>()
            .map(Value::Map),
        (v, ty) => Err(format!("a {} cannot be a `{ty}`", shape(&v))),
    }
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "number",
        Value::Bool(_) => "boolean",
        Value::List(_) => "list",
        Value::Map(_) => "JSON object",
        _ => "value",
    }
}

/// A JSON value as the runtime reads it before it is bound: objects are
/// maps, arrays lists, integers ints, other numbers their text, null absent.
pub fn from_json(j: &Json) -> Value {
    match j {
        Json::Null => Value::Missing,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Str(n.to_string()),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(from_json).collect()),
        Json::Object(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

/// The scope of a trigger's expressions: the delivery's fields only.
struct Delivered<'a>(&'a Fields);

impl Scope for Delivered<'_> {
    fn input(&self, _: &str) -> Option<Value> {
        None
    }
    fn secret(&self, _: &str) -> Option<Value> {
        None
    }
    fn let_value(&self, name: &str) -> Result<Value, EvalError> {
        Err(EvalError(format!("`{name}` is not known to a trigger")))
    }
    fn loop_var(&self, _: &str) -> Option<Value> {
        None
    }
    fn outputs(&self, _: &str) -> Option<Value> {
        None
    }
    fn trigger(&self, field: &str) -> Option<Value> {
        Some(self.0.get(field).cloned().unwrap_or(Value::Missing))
    }
}
