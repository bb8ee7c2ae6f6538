//! The kflow type system: types, their written form (`list<ref>`, `image|pinned`)
//! and assignability.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const SEVERITIES: &[&str] = &["unknown", "low", "medium", "high", "critical"];

/// The members of the catalog's other enums (`pull`, `backoff`, `sbom`),
/// bare words only where such an enum is expected.
pub const ENUM_WORDS: &[&str] = &[
    "never",
    "missing",
    "always",
    "constant",
    "exponential",
    "cyclonedx",
    "spdx",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ty {
    String,
    Int,
    Bool,
    Duration,
    Path,
    Digest,
    Image,
    Ref,
    Pinned,
    Secret,
    Severity,
    Credentials,
    /// A task used as a value (`after: [build]`).
    Task,
    /// A value of a delivery's JSON body (`trigger.body.…`): its shape is
    /// known only when it arrives, where it is converted to the type it is
    /// bound to (a delivery whose value does not convert is refused).
    Json,
    /// The output record of a task of this kind.
    Outputs(String),
    /// Bare identifiers from a closed set (`never|missing|always`).
    Enum(Vec<String>),
    /// A record literal with known fields (`retry`).
    Record(Vec<(String, Ty)>),
    List(Box<Ty>),
    Map(Box<Ty>),
    Optional(Box<Ty>),
    /// Any of these (`image|pinned|ref`).
    Union(Vec<Ty>),
    /// The type of something already diagnosed: it unifies with everything,
    /// so one mistake yields one diagnostic.
    Error,
}

impl Ty {
    pub fn list(t: Ty) -> Ty {
        Ty::List(Box::new(t))
    }
    pub fn optional(t: Ty) -> Ty {
        match t {
            Ty::Optional(_) | Ty::Error => t,
            t => Ty::Optional(Box::new(t)),
        }
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Ty::Error)
    }
    /// Whether a secret could hide in a value of this type.
    pub fn holds_secret(&self) -> bool {
        match self {
            Ty::Secret => true,
            Ty::List(t) | Ty::Map(t) | Ty::Optional(t) => t.holds_secret(),
            Ty::Union(ts) => ts.iter().all(Ty::holds_secret),
            Ty::Record(fs) => fs.iter().any(|(_, t)| t.holds_secret()),
            _ => false,
        }
    }
    pub fn enum_members(&self) -> Option<Vec<&str>> {
        match self {
            Ty::Severity => Some(SEVERITIES.to_vec()),
            Ty::Enum(xs) => Some(xs.iter().map(String::as_str).collect()),
            Ty::Union(ts) => {
                let all: Vec<&str> = ts.iter().filter_map(|t| t.enum_members()).flatten().collect();
                (!all.is_empty()).then_some(all)
            }
            Ty::Optional(t) => t.enum_members(),
            _ => None,
        }
    }
    /// The alternatives of a union, or the type itself.
    pub fn alternatives(&self) -> &[Ty] {
        match self {
            Ty::Union(ts) => ts,
            t => std::slice::from_ref(t),
        }
    }
    pub fn accepts(&self, want: &Ty) -> bool {
        self.alternatives().contains(want)
    }
}

/// How a value of type `actual` fits where `expected` is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    Yes,
    /// A `T?` where `T` is required.
    Optional,
    /// A secret where a non-secret is required.
    Secret,
    No,
}

pub fn fit(actual: &Ty, expected: &Ty) -> Fit {
    use Ty::*;
    match (actual, expected) {
        (Error, _) | (_, Error) => Fit::Yes,
        (a, e) if a == e => Fit::Yes,
        (a, Union(ts)) => {
            let fits: Vec<Fit> = ts.iter().map(|t| fit(a, t)).collect();
            if fits.contains(&Fit::Yes) {
                Fit::Yes
            } else if fits.contains(&Fit::Optional) {
                Fit::Optional
            } else if fits.contains(&Fit::Secret) {
                Fit::Secret
            } else {
                Fit::No
            }
        }
        (Union(ts), e) => {
            if ts.iter().all(|t| fit(t, e) == Fit::Yes) {
                Fit::Yes
            } else {
                Fit::No
            }
        }
        (Optional(a), Optional(e)) => fit(a, e),
        (a, Optional(e)) => fit(a, e),
        (Optional(a), e) => match fit(a, e) {
            Fit::Yes => Fit::Optional,
            other => other,
        },
        (Secret, Secret) => Fit::Yes,
        (Secret, _) => Fit::Secret,
        // A string is accepted where a path or a tag reference is expected.
        (String, Path | Ref) => Fit::Yes,
        (Enum(xs), Severity) if xs.iter().all(|x| SEVERITIES.contains(&x.as_str())) => Fit::Yes,
        (Enum(xs), Enum(ys)) if xs.iter().all(|x| ys.contains(x)) => Fit::Yes,
        (List(a), List(e)) | (Map(a), Map(e)) => match fit(a, e) {
            Fit::Optional => Fit::No,
            f => f,
        },
        (Outputs(_), Task) => Fit::Yes,
        // Converted when the delivery arrives; never into a secret or a
        // value only the engine or a task makes.
        (Json, Secret | Credentials | Task | Outputs(_) | Image) => Fit::No,
        (Json, _) => Fit::Yes,
        _ => Fit::No,
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::String => f.write_str("string"),
            Ty::Int => f.write_str("int"),
            Ty::Bool => f.write_str("bool"),
            Ty::Duration => f.write_str("duration"),
            Ty::Path => f.write_str("path"),
            Ty::Digest => f.write_str("digest"),
            Ty::Image => f.write_str("image"),
            Ty::Ref => f.write_str("ref"),
            Ty::Pinned => f.write_str("pinned"),
            Ty::Secret => f.write_str("secret"),
            Ty::Severity => f.write_str("severity"),
            Ty::Credentials => f.write_str("credentials"),
            Ty::Task => f.write_str("task"),
            Ty::Json => f.write_str("json"),
            Ty::Outputs(kind) => write!(f, "task<{kind}>"),
            Ty::Enum(xs) => f.write_str(&xs.join("|")),
            Ty::Record(fields) => {
                f.write_str("{ ")?;
                for (i, (n, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n}: {t}")?;
                }
                f.write_str(" }")
            }
            Ty::List(t) => write!(f, "list<{t}>"),
            Ty::Map(t) => write!(f, "map<{t}>"),
            Ty::Optional(t) => write!(f, "{t}?"),
            Ty::Union(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    write!(f, "{t}")?;
                }
                Ok(())
            }
            Ty::Error => f.write_str("{unknown}"),
        }
    }
}

/// A type named in source (`input x: list<severity>`), or `None`.
pub fn named(name: &str) -> Option<Ty> {
    Some(match name {
        "string" => Ty::String,
        "int" => Ty::Int,
        "bool" => Ty::Bool,
        "duration" => Ty::Duration,
        "path" => Ty::Path,
        "digest" => Ty::Digest,
        "image" => Ty::Image,
        "ref" => Ty::Ref,
        "pinned" => Ty::Pinned,
        "secret" => Ty::Secret,
        "severity" => Ty::Severity,
        "credentials" => Ty::Credentials,
        "task" => Ty::Task,
        _ => return None,
    })
}

pub const TYPE_NAMES: &[&str] = &[
    "string",
    "int",
    "bool",
    "duration",
    "path",
    "digest",
    "image",
    "ref",
    "pinned",
    "secret",
    "severity",
    "credentials",
    "task",
];

/// Parses the written form used by the catalog and the serialised IR:
/// `list<ref>`, `map<string|secret>`, `path?`, `never|missing|always`, `retry`.
/// Words that are not type names are enum members.
pub fn parse_spec(spec: &str) -> Ty {
    let (t, rest) = parse_union(spec.trim());
    debug_assert!(rest.trim().is_empty(), "trailing text in type spec {spec:?}");
    t
}

fn parse_union(s: &str) -> (Ty, &str) {
    let mut alts = Vec::new();
    let mut rest = s;
    loop {
        let (t, r) = parse_atom(rest.trim_start());
        alts.push(t);
        rest = r.trim_start();
        match rest.strip_prefix('|') {
            Some(r) => rest = r,
            None => break,
        }
    }
    // Consecutive enum members form one enum.
    let mut out: Vec<Ty> = Vec::new();
    for t in alts {
        match (out.last_mut(), t) {
            (Some(Ty::Enum(xs)), Ty::Enum(ys)) => xs.extend(ys),
            (_, t) => out.push(t),
        }
    }
    let t = if out.len() == 1 {
        out.pop().expect("one")
    } else {
        Ty::Union(out)
    };
    (t, rest)
}

fn parse_atom(s: &str) -> (Ty, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let (word, mut rest) = s.split_at(end);
    let mut t = match word {
        "list" | "map" => {
            let inner = rest.strip_prefix('<').expect("type spec: `<` after list/map");
            let (t, r) = parse_union(inner);
            rest = r.trim_start().strip_prefix('>').expect("type spec: closing `>`");
            if word == "list" {
                Ty::List(Box::new(t))
            } else {
                Ty::Map(Box::new(t))
            }
        }
        "retry" => retry_record(),
        "json" => Ty::Json,
        "unknown_type" => Ty::Error,
        w if w.starts_with("task<") => Ty::Outputs(w[5..].to_string()),
        w => named(w).unwrap_or_else(|| Ty::Enum(vec![w.to_string()])),
    };
    if let Some(r) = rest.strip_prefix('?') {
        rest = r;
        t = Ty::optional(t);
    }
    (t, rest)
}

/// The fields of the common `retry` property.
pub fn retry_record() -> Ty {
    Ty::Record(vec![
        ("attempts".into(), Ty::Int),
        ("delay".into(), Ty::Duration),
        (
            "backoff".into(),
            Ty::Enum(vec!["constant".into(), "exponential".into()]),
        ),
        ("max_delay".into(), Ty::Duration),
    ])
}

/// The record form of `credentials`.
pub fn credentials_record() -> Ty {
    Ty::Record(vec![("username".into(), Ty::String), ("password".into(), Ty::Secret)])
}

impl Serialize for Ty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ty::Record(_) if *self == retry_record() => s.serialize_str("retry"),
            Ty::Error => s.serialize_str("unknown_type"),
            _ => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Ty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(parse_spec(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        for spec in [
            "list<ref>",
            "map<string|secret>",
            "path?",
            "never|missing|always",
            "image|pinned|ref",
            "list<severity>",
        ] {
            assert_eq!(parse_spec(spec).to_string(), spec);
        }
        assert_eq!(parse_spec("retry"), retry_record());
    }

    #[test]
    fn fit_rules() {
        assert_eq!(fit(&Ty::String, &Ty::Ref), Fit::Yes);
        assert_eq!(fit(&Ty::String, &Ty::Pinned), Fit::No);
        assert_eq!(fit(&Ty::Ref, &Ty::Pinned), Fit::No);
        assert_eq!(fit(&Ty::Secret, &Ty::String), Fit::Secret);
        assert_eq!(fit(&Ty::optional(Ty::Image), &Ty::Image), Fit::Optional);
        assert_eq!(fit(&Ty::Image, &parse_spec("image|pinned|ref")), Fit::Yes);
        assert_eq!(fit(&Ty::Secret, &parse_spec("string|secret")), Fit::Yes);
        assert_eq!(fit(&Ty::Enum(vec!["high".into()]), &Ty::Severity), Fit::Yes);
    }
}
