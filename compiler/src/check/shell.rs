//! `kflow::lint::shell-interpolation`: a `${…}` pasted into shell code.
//!
//! `shell.run { script: "deploy ${version}" }` hands the value to `sh -c` as
//! code: a version of `1; rm -rf ~` runs. Constants are fine (their text is
//! known when the flow is checked); anything else — an input, a task's
//! output, a loop variable, an approver's comment — is reported, with a fix
//! that moves the value into `env` and reads it back quoted (`"$VERSION"`),
//! which reaches the process byte for byte.

use kflow_grammar::ast::{self, Expr, ExprKind, StrPart};
use kflow_grammar::diag::{Diagnostic, Edit, Fix, Span};

use super::{Checker, SymKind};
use crate::codes;

/// Programs whose `-c` argument is shell code.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"];

/// Variables with a meaning to the shell, the C library or common tools.
const RESERVED: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "IFS",
    "PWD",
    "OLDPWD",
    "SHELL",
    "USER",
    "LOGNAME",
    "TERM",
    "TMPDIR",
    "ENV",
    "PS1",
    "PS2",
    "PS4",
    "CDPATH",
    "HOSTNAME",
    "TZ",
    "PPID",
    "OPTIND",
    "OPTARG",
    "SHLVL",
    "EDITOR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// Where a position of a shell script is, as far as quoting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

impl Checker<'_> {
    /// Lints the shell code of a `shell.run`: `script`, or the argument
    /// after `-c` of a shell `cmd`.
    pub(super) fn shell_interpolation(&mut self, t: &ast::Task) {
        let mut code = Vec::new();
        if let Some(v) = t.prop("script").and_then(|p| p.value.as_ref()) {
            code.push(v);
        }
        if let Some(ExprKind::List(items)) = t.prop("cmd").and_then(|p| p.value.as_ref()).map(|v| &v.kind) {
            let program = items.first().and_then(Expr::as_plain_str);
            let is_shell = program.is_some_and(|p| SHELLS.contains(&p.rsplit('/').next().unwrap_or(&p)));
            if is_shell {
                let c = items.iter().position(|i| i.as_plain_str().as_deref() == Some("-c"));
                if let Some(script) = c.and_then(|c| items.get(c + 1)) {
                    code.push(script);
                }
            }
        }
        for script in code {
            let ExprKind::Str(parts) = &script.kind else { continue };
            // The script's text so far, an interpolation standing as `x`.
            let mut before = String::new();
            for (i, part) in parts.iter().enumerate() {
                match part {
                    StrPart::Text(s) => before.push_str(s),
                    StrPart::Interp(e) => {
                        if !self.constant(e) {
                            let next = match parts.get(i + 1) {
                                Some(StrPart::Text(s)) => s.chars().next(),
                                _ => None,
                            };
                            let d = self.interpolation_diagnostic(t, e, quote_at(&before), next);
                            self.push(d);
                        }
                        before.push('x');
                    }
                }
            }
        }
    }

    fn interpolation_diagnostic(&self, t: &ast::Task, e: &Expr, quote: Quote, next: Option<char>) -> Diagnostic {
        let shown = self.text(e.span).trim().to_string();
        let what = match &e.kind {
            ExprKind::Name(n) => match self.names.get(n).map(|&id| self.symbols[id].kind) {
                Some(SymKind::Input) => "an input",
                Some(SymKind::LoopVar) => "a loop variable",
                Some(SymKind::Let) => "a `let` that is not a constant",
                _ => "a value known only when the flow runs",
            },
            ExprKind::Field(..) => "a value known only when the flow runs",
            _ => "an expression evaluated when the flow runs",
        };
        let var = self.env_name(t, &shown);
        let whole = self.interpolation_span(e);
        let mut d = Diagnostic::warning(
            codes::SHELL_INTERPOLATION,
            whole.unwrap_or(e.span),
            format!("`${{{shown}}}` is pasted into shell code"),
        )
        .with_label(format!("{what}: its text becomes shell code (`;`, `$(…)`, quotes run)"))
        .with_help(format!(
            "pass it in the environment and quote it: `env: {{ {var}: {shown} }}` and `\"${var}\"` in the script"
        ));
        if let (Some(span), Some(env_edit)) = (whole, self.env_edit(t, &var, &shown)) {
            // Written inside the kflow string: its `"` escaped, and `\${`
            // where the shell needs braces.
            let read = match quote {
                Quote::Single => format!("'\\\"${var}\\\"'"),
                Quote::Double if next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    format!("\\${{{var}}}")
                }
                Quote::Double => format!("${var}"),
                Quote::None => format!("\\\"${var}\\\""),
            };
            d.fixes.push(Fix {
                title: format!("pass `{shown}` as the environment variable {var}"),
                edits: vec![Edit { span, text: read }, env_edit],
            });
        }
        d
    }

    /// Whether an interpolated value is known when the flow is checked: a
    /// literal, or a `let` of literals.
    fn constant(&self, e: &Expr) -> bool {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Bool(_) | ExprKind::Duration(_) => true,
            ExprKind::Str(parts) => parts.iter().all(|p| match p {
                StrPart::Text(_) => true,
                StrPart::Interp(e) => self.constant(e),
            }),
            ExprKind::Paren(inner) => self.constant(inner),
            ExprKind::List(items) => items.iter().all(|i| self.constant(i)),
            ExprKind::Name(n) => self
                .let_items
                .iter()
                .find(|l| &l.name.name == n)
                .is_some_and(|l| literal(&l.value)),
            _ => false,
        }
    }

    /// The `${ … }` around an interpolated expression, in the source.
    fn interpolation_span(&self, e: &Expr) -> Option<Span> {
        let head = self.src[..e.span.start].trim_end();
        let start = head.strip_suffix("${").map(str::len)?;
        let tail = &self.src[e.span.end..];
        let close = e.span.end + (tail.len() - tail.trim_start().len());
        (self.src[close..].starts_with('}')).then(|| Span::new(start, close + 1))
    }

    /// `build.image` → `BUILD_IMAGE`, unless the task's `env` already uses
    /// the name for another value.
    fn env_name(&self, t: &ast::Task, shown: &str) -> String {
        let mut base = String::new();
        for c in shown.chars() {
            if c.is_ascii_alphanumeric() {
                base.push(c.to_ascii_uppercase());
            } else if !base.ends_with('_') && !base.is_empty() {
                base.push('_');
            }
        }
        let mut base = base.trim_end_matches('_').to_string();
        if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
            base.insert_str(0, "VALUE_");
            base = base.trim_end_matches('_').to_string();
        }
        // A name the shell or the system gives a meaning (`lang` is not LANG).
        if RESERVED.contains(&base.as_str()) || ["KFLOW_", "LC_", "LD_", "DOCKER_"].iter().any(|p| base.starts_with(p))
        {
            base.push_str("_VALUE");
        }
        let taken: Vec<(&str, &Expr)> = match t.prop("env").and_then(|p| p.value.as_ref()).map(|v| &v.kind) {
            Some(ExprKind::Map(entries)) => entries.iter().map(|e| (e.key.as_str(), &e.value)).collect(),
            _ => Vec::new(),
        };
        let mut name = base.clone();
        for n in 2.. {
            match taken.iter().find(|(k, _)| *k == name) {
                None => break,
                Some((_, v)) if self.text(v.span).trim() == shown => break,
                Some(_) => name = format!("{base}_{n}"),
            }
        }
        name
    }

    /// The edit that maps `var` to `shown` in the task's `env` (added when
    /// absent); `None` when `env` is not a map literal, or maps it already.
    fn env_edit(&self, t: &ast::Task, var: &str, shown: &str) -> Option<Edit> {
        let entry = format!("{var}: {shown}");
        match t.prop("env").and_then(|p| p.value.as_ref()) {
            None => self.insert_props_edit(t, &[format!("env: {{ {entry} }}")]),
            Some(v) => match &v.kind {
                ExprKind::Map(entries) if entries.iter().any(|e| e.key == var) => {
                    // Already mapped to this value (see `env_name`): only the
                    // script changes. An empty edit keeps the fix one shape.
                    Some(Edit {
                        span: Span::new(v.span.end, v.span.end),
                        text: String::new(),
                    })
                }
                ExprKind::Map(entries) => match entries.last() {
                    Some(last) => Some(Edit {
                        span: Span::new(last.value.span.end, last.value.span.end),
                        text: format!(", {entry}"),
                    }),
                    None => Some(Edit {
                        span: v.span,
                        text: format!("{{ {entry} }}"),
                    }),
                },
                _ => None,
            },
        }
    }
}

/// Literals only: no name, field or call anywhere.
fn literal(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Int(_) | ExprKind::Bool(_) | ExprKind::Duration(_) => true,
        ExprKind::Str(parts) => parts.iter().all(|p| matches!(p, StrPart::Text(_))),
        ExprKind::Paren(inner) => literal(inner),
        ExprKind::List(items) => items.iter().all(literal),
        ExprKind::Map(entries) => entries.iter().all(|m| literal(&m.value)),
        _ => false,
    }
}

/// The quoting in force at the end of `script` (POSIX shell rules: `'…'`
/// takes everything literally, `"…"` and bare words honour `\`).
fn quote_at(script: &str) -> Quote {
    let mut q = Quote::None;
    let mut chars = script.chars();
    while let Some(c) = chars.next() {
        match (q, c) {
            (Quote::None, '\'') => q = Quote::Single,
            (Quote::Single, '\'') => q = Quote::None,
            (Quote::None, '"') => q = Quote::Double,
            (Quote::Double, '"') => q = Quote::None,
            (Quote::None | Quote::Double, '\\') => {
                chars.next();
            }
            _ => {}
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_the_shell() {
        assert_eq!(quote_at("echo "), Quote::None);
        assert_eq!(quote_at("echo 'hello "), Quote::Single);
        assert_eq!(quote_at("echo \"hello "), Quote::Double);
        assert_eq!(quote_at("echo 'a' \"b\" "), Quote::None);
        assert_eq!(quote_at("echo \\' "), Quote::None);
        assert_eq!(quote_at("echo \"it's "), Quote::Double);
        assert_eq!(quote_at("echo 'a\\' "), Quote::None, "no escapes in single quotes");
    }
}
