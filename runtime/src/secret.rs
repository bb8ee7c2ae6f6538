//! Secret values: opaque in memory (no `Debug`/`Display`/`Serialize` that
//! could print them) and redacted by value from any text that leaves a task.

use std::fmt;

/// A secret read from the environment or a file. Formatting it prints
/// `***`; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for handing to a process, a registry or a signer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

pub const REDACTED: &str = "***";

/// Replaces every occurrence of every known secret value in text.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    values: Vec<Secret>,
}

impl Redactor {
    pub fn add(&mut self, secret: &Secret) {
        // Very short values would redact ordinary text; they are still never
        // printed by kflow itself, only not searched for in task output.
        if secret.0.len() < 3 || self.values.contains(secret) {
            return;
        }
        self.values.push(secret.clone());
        self.values.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for s in &self.values {
            if out.contains(s.expose()) {
                out = std::borrow::Cow::Owned(out.replace(s.expose(), REDACTED));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_format() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn redaction_by_value() {
        let mut r = Redactor::default();
        r.add(&Secret::new("token-abc"));
        r.add(&Secret::new("token-abc-long"));
        assert_eq!(r.redact("a token-abc-long b token-abc c"), "a *** b *** c");
        assert!(matches!(r.redact("clean"), std::borrow::Cow::Borrowed(_)));
    }
}
