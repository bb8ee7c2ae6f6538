//! Every diagnostic code, with its default severity and a one-line summary.
//! Codes are stable: tools match on them, and `// kflow:allow(…)` names them.

use kflow_grammar::diag::{codes as parse, Severity};

pub struct Code {
    pub code: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

const fn e(code: &'static str, summary: &'static str) -> Code {
    Code {
        code,
        severity: Severity::Error,
        summary,
    }
}

const fn w(code: &'static str, summary: &'static str) -> Code {
    Code {
        code,
        severity: Severity::Warning,
        summary,
    }
}

pub const UNKNOWN_NAME: &str = "kflow::name::unknown";
pub const UNKNOWN_KIND: &str = "kflow::name::unknown-kind";
pub const UNKNOWN_PROPERTY: &str = "kflow::name::unknown-property";
pub const MISSING_PROPERTY: &str = "kflow::name::missing-property";
pub const DUPLICATE_PROPERTY: &str = "kflow::name::duplicate-property";
pub const UNKNOWN_OUTPUT: &str = "kflow::name::unknown-output";
pub const UNKNOWN_FIELD: &str = "kflow::name::unknown-field";
pub const UNKNOWN_FUNCTION: &str = "kflow::name::unknown-function";
pub const UNKNOWN_TYPE: &str = "kflow::name::unknown-type";
pub const UNKNOWN_TASK: &str = "kflow::name::unknown-task";
pub const UNKNOWN_TRIGGER: &str = "kflow::name::unknown-trigger";
pub const TRIGGER_SCOPE: &str = "kflow::name::trigger-scope";
pub const DUPLICATE: &str = "kflow::name::duplicate";
pub const MISPLACED: &str = "kflow::name::misplaced-item";

pub const MISMATCH: &str = "kflow::type::mismatch";
pub const NOT_PINNED: &str = "kflow::type::not-pinned";
pub const IMAGE_NOT_DIGEST: &str = "kflow::type::image-not-digest";
pub const SECRET_LEAK: &str = "kflow::type::secret-leak";
pub const SECRET_SOURCE: &str = "kflow::type::secret-source";
pub const BAD_LITERAL: &str = "kflow::type::bad-literal";
pub const OPTIONAL: &str = "kflow::type::optional";
pub const WRONG_ARGS: &str = "kflow::type::arguments";
pub const NOT_CONSTANT: &str = "kflow::type::not-constant";
pub const ONE_OF: &str = "kflow::type::one-of";
pub const UNBOUND_INPUT: &str = "kflow::type::unbound-input";

pub const CYCLE: &str = "kflow::graph::cycle";

pub const UNUSED: &str = "kflow::lint::unused";
pub const UNPINNED_IMAGE: &str = "kflow::lint::unpinned-image";
pub const LATEST_TAG: &str = "kflow::lint::latest-tag";
pub const APPROVAL_TIMEOUT: &str = "kflow::lint::approval-without-timeout";
pub const PLACEMENT: &str = "kflow::lint::placement";
pub const MISSING_PATH: &str = "kflow::lint::missing-path";
pub const EMPTY_TRY: &str = "kflow::lint::empty-try";
pub const SHELL_INTERPOLATION: &str = "kflow::lint::shell-interpolation";
pub const UNKNOWN_LINT: &str = "kflow::lint::unknown-lint";

pub static CODES: &[Code] = &[
    e(parse::SYNTAX, "The text does not follow the grammar."),
    e(
        parse::UNTERMINATED_STRING,
        "A string is not closed before the end of its line.",
    ),
    e(parse::UNTERMINATED_COMMENT, "A `/*` comment is never closed."),
    e(parse::UNCLOSED, "A `{` is never closed."),
    e(
        parse::MISSING_SEPARATOR,
        "Two properties or map entries on one line without a `,`.",
    ),
    e(parse::BAD_ESCAPE, "An unknown escape sequence in a string."),
    e(parse::BAD_NUMBER, "An integer or duration literal out of range."),
    e(parse::TOO_DEEP, "Brackets nested deeper than the parser accepts."),
    e(parse::TOO_COMPLEX, "An expression with too many operators."),
    e(UNKNOWN_NAME, "A name that no item declares."),
    e(UNKNOWN_KIND, "A task kind that is not in the catalog."),
    e(UNKNOWN_PROPERTY, "A property the task kind does not have."),
    e(MISSING_PROPERTY, "A required property is missing."),
    e(DUPLICATE_PROPERTY, "A property given twice."),
    e(UNKNOWN_OUTPUT, "An output the task kind does not produce."),
    e(UNKNOWN_FIELD, "A field that a record or value does not have."),
    e(UNKNOWN_FUNCTION, "A call to a function that does not exist."),
    e(UNKNOWN_TYPE, "A type name that does not exist."),
    e(UNKNOWN_TASK, "`after` names something that is not a task."),
    e(
        UNKNOWN_TRIGGER,
        "An `on` trigger other than `webhook`, `schedule` or `file`.",
    ),
    e(
        TRIGGER_SCOPE,
        "`trigger.…` read outside a trigger's `when` and `inputs`, or a trigger reading an input, secret, `let` or task.",
    ),
    e(DUPLICATE, "Two items with the same name in one flow."),
    e(
        MISPLACED,
        "An item where it is not allowed (e.g. `input` inside `try`).",
    ),
    e(MISMATCH, "A value of the wrong type."),
    e(
        NOT_PINNED,
        "A mutable tag (`ref` or `string`) where a digest-pinned reference is required.",
    ),
    e(
        IMAGE_NOT_DIGEST,
        "A local image ID where a registry digest is required.",
    ),
    e(
        SECRET_LEAK,
        "A secret that could leak: interpolated, passed to a non-secret property, compared or output.",
    ),
    e(
        SECRET_SOURCE,
        "`env()`/`file()` outside a `secret` item, or a secret not read from them.",
    ),
    e(BAD_LITERAL, "A malformed digest, reference, cron or glob literal."),
    e(OPTIONAL, "An optional value (`T?`) read without a fallback."),
    e(WRONG_ARGS, "A call with the wrong number of arguments."),
    e(NOT_CONSTANT, "A value that must be known before the flow runs."),
    e(
        ONE_OF,
        "Properties that exclude each other, or none of a required pair.",
    ),
    e(
        UNBOUND_INPUT,
        "A trigger that leaves a required input (one without a default) unbound.",
    ),
    e(CYCLE, "Tasks that depend on each other in a cycle."),
    w(
        UNUSED,
        "An input, secret, `let` or side-effect-free task whose value is never used.",
    ),
    w(
        UNPINNED_IMAGE,
        "`container.run` or `trivy.scan` on a mutable tag: pin by digest.",
    ),
    w(LATEST_TAG, "Pushing or tagging `:latest`."),
    w(APPROVAL_TIMEOUT, "An `approval` without a `timeout` can wait forever."),
    w(
        PLACEMENT,
        "A task whose `runs_on` asks for labels the task that made what it uses (a local image, a stack, a token) does not.",
    ),
    w(
        MISSING_PATH,
        "A path property names a file or folder that does not exist.",
    ),
    w(EMPTY_TRY, "A `try` without `catch` or `finally` does nothing."),
    w(
        SHELL_INTERPOLATION,
        "A value known only at run time interpolated into shell code: pass it through `env`.",
    ),
    w(UNKNOWN_LINT, "`kflow:allow(…)` names something that is not a lint."),
];

/// `latest-tag` or `kflow::lint::latest-tag` → the full lint code.
pub fn resolve_lint(name: &str) -> Option<&'static str> {
    CODES
        .iter()
        .filter(|c| c.severity == Severity::Warning)
        .find(|c| c.code == name || c.code.rsplit("::").next() == Some(name))
        .map(|c| c.code)
}
