//! The project's plain diagnostic data: produced by every stage, rendered by
//! the compiler (miette, JSON, SARIF, GitHub) and converted by the LSP.

use serde::Serialize;

/// A byte range in one source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A secondary place that explains the primary one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One replacement of source text: `span` (empty to insert) becomes `text`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edit {
    pub span: Span,
    pub text: String,
}

/// A machine-applicable fix: what `help` says, as edits (the language
/// server offers them as code actions; `--format json` and SARIF list them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// What applying it does, e.g. ``replace with `image` ``.
    pub title: String,
    pub edits: Vec<Edit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable, namespaced code such as `kflow::type::tag-not-pinned`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// Text shown at the primary span.
    pub label: Option<String>,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
    pub fixes: Vec<Fix>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            label: None,
            secondary: Vec::new(),
            help: None,
            fixes: Vec::new(),
        }
    }
    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// A fix of one edit.
    pub fn with_fix(mut self, title: impl Into<String>, span: Span, text: impl Into<String>) -> Self {
        self.fixes.push(Fix {
            title: title.into(),
            edits: vec![Edit {
                span,
                text: text.into(),
            }],
        });
        self
    }
    /// The usual fix of a near miss: write `text` instead of what is at `span`.
    pub fn with_replacement(self, span: Span, text: &str) -> Self {
        self.with_fix(format!("replace with `{text}`"), span, text)
    }
    /// A near miss: ``did you mean `c`?`` as help, and the replacement of
    /// `span` by `c` as its fix.
    pub fn did_you_mean(self, span: Span, c: &str) -> Self {
        self.with_help(format!("did you mean `{c}`?")).with_replacement(span, c)
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Diagnostic codes raised by the parser.
pub mod codes {
    pub const SYNTAX: &str = "kflow::parse::syntax";
    pub const UNTERMINATED_STRING: &str = "kflow::parse::unterminated-string";
    pub const UNCLOSED: &str = "kflow::parse::unclosed";
    pub const TOO_DEEP: &str = "kflow::parse::too-deep";
    pub const TOO_COMPLEX: &str = "kflow::parse::too-complex";
    pub const BAD_ESCAPE: &str = "kflow::parse::bad-escape";
    pub const BAD_NUMBER: &str = "kflow::parse::bad-number";
    pub const MISSING_SEPARATOR: &str = "kflow::parse::missing-separator";
    pub const UNTERMINATED_COMMENT: &str = "kflow::parse::unterminated-comment";
}
