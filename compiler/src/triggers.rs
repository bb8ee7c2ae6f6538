//! The trigger kinds (`on webhook`, `on schedule`, `on file`): their
//! argument, the properties of their body, and the fields a delivery
//! carries (`trigger.tag`), with types and docs. The checker, the language
//! server and `kflow docs` read this table; the runtime fills the fields.

use crate::catalog::Prop;
use crate::literals;
use crate::types::{parse_spec, Ty};

pub struct TriggerKind {
    pub name: &'static str,
    pub doc: &'static str,
    /// What the argument after the kind is.
    pub arg: &'static str,
    /// Checks the argument (a plain string).
    pub check_arg: fn(&str) -> Result<(), String>,
    /// Properties of this kind's body, besides [`COMMON`].
    pub props: &'static [Prop],
    pub fields: &'static [Field],
}

/// A field of a delivery, read as `trigger.NAME` in `when` and `inputs`.
pub struct Field {
    pub name: &'static str,
    pub ty: &'static str,
    pub doc: &'static str,
    /// The webhook providers that fill it (empty: every delivery of the kind).
    pub providers: &'static [&'static str],
}

const fn prop(name: &'static str, ty: &'static str, required: bool, doc: &'static str) -> Prop {
    Prop {
        name,
        ty,
        required,
        doc,
    }
}

const fn field(name: &'static str, ty: &'static str, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        doc,
        providers: &[],
    }
}

const GIT: &[&str] = &["github", "gitlab"];

const fn git(name: &'static str, ty: &'static str, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        doc,
        providers: GIT,
    }
}

/// Properties every trigger's body accepts.
pub static COMMON: &[Prop] = &[
    prop(
        "when",
        "bool",
        false,
        "Start an execution only when true (reads `trigger.…`); otherwise the delivery is answered 204 and recorded as filtered.",
    ),
    prop(
        "inputs",
        "map<json>",
        false,
        "The flow's inputs, bound to trigger fields or constants: `{ version: trigger.tag }`. Every required input without a default must be bound; values are converted to the input's type when the delivery arrives.",
    ),
];

/// The webhook providers, as `provider:` names them.
pub const PROVIDERS: &[&str] = &["github", "gitlab", "standard", "token"];

pub static TRIGGERS: &[TriggerKind] = &[
    TriggerKind {
        name: "webhook",
        doc: "An HTTP delivery to `POST /hooks/FLOW/NAME` of `kflow serve`, verified on its raw body before it is read.",
        arg: "the webhook's name: the last part of its URL (letters, digits, `-` and `_`)",
        check_arg: webhook_name,
        props: &[
            prop(
                "provider",
                "github|gitlab|standard|token",
                true,
                "How deliveries are verified: `github` (X-Hub-Signature-256, HMAC-SHA256 of the body), `gitlab` (X-Gitlab-Token), `standard` (Standard Webhooks: webhook-id, webhook-timestamp within 5 minutes, webhook-signature v1), `token` (Authorization: Bearer).",
            ),
            prop(
                "secret",
                "secret",
                true,
                "The HMAC key (github, standard) or the token (gitlab, token) deliveries are checked with.",
            ),
            prop(
                "events",
                "list<string>",
                false,
                "Only these events start an execution (GitHub's X-GitHub-Event such as `push` or `pull_request`, GitLab's object kind such as `push` or `tag_push`); others are answered 204.",
            ),
        ],
        fields: &[
            field("delivery", "string", "The delivery's id (X-GitHub-Delivery, X-Gitlab-Event-UUID, webhook-id or Idempotency-Key); a repeat starts nothing."),
            field("event", "string", "The event's name (`push`, `pull_request`, `tag_push`, a Standard Webhooks `type`)."),
            field("body", "json", "The JSON body: `trigger.body.a.b` reads a value, converted to the input's type it is bound to."),
            field("headers", "map<string>", "The request's headers, by lower-case name (the signature headers left out)."),
            git("repository", "string", "The repository's full name (`owner/name`)."),
            git("sender", "string", "Who caused the event (the login of GitHub's sender, GitLab's user_username)."),
            git("ref", "string?", "The full Git reference pushed (`refs/tags/v1.2.0`); absent for events without one."),
            git("ref_type", "string?", "`tag` or `branch`, for a pushed reference."),
            git("tag", "string?", "The tag pushed, without `refs/tags/` (`v1.2.0`)."),
            git("branch", "string?", "The branch pushed, or a pull request's head branch."),
            git("sha", "string?", "The commit a push moved its reference to."),
            git("pr", "int?", "The pull (merge) request's number."),
            git("head_sha", "string?", "The head commit of the pull request."),
            git("action", "string?", "What happened to the pull request (`opened`, `synchronize`, `closed`; GitLab's `open`, `update`, `merge`)."),
        ],
    },
    TriggerKind {
        name: "schedule",
        doc: "A time: five cron fields (minute hour day month weekday), six with seconds first, or `@daily`, `@hourly`, `@weekly`, `@monthly`, `@yearly`.",
        arg: "the cron expression",
        check_arg: literals::cron,
        props: &[
            prop(
                "timezone",
                "string",
                false,
                "The IANA time zone the expression is read in (`Europe/Berlin`); UTC by default.",
            ),
            prop(
                "catchup",
                "none|last|all",
                false,
                "Fire times missed while the server was down: `last` (the default) runs the newest once, `all` runs each, `none` skips them.",
            ),
        ],
        fields: &[
            field("at", "string", "The scheduled instant (RFC 3339), not the moment it ran."),
            field("scheduled", "bool", "Always `true`: this execution was started by its schedule."),
        ],
    },
    TriggerKind {
        name: "file",
        doc: "A file matching a glob, relative to the flow's folder, created, changed or removed.",
        arg: "the glob (`drop/*.tar`, `**/*.json`)",
        check_arg: literals::glob,
        props: &[prop(
            "debounce",
            "duration",
            false,
            "Changes to one file closer together than this start one execution (default 500ms).",
        )],
        fields: &[
            field("path", "path", "The file, relative to the flow's folder."),
            field("change", "string", "`created`, `modified` or `removed`."),
        ],
    },
];

/// Properties of `concurrency { … }`.
pub static CONCURRENCY: &[Prop] = &[
    prop(
        "key",
        "string",
        false,
        "Executions with the same key share the limit (may read inputs: `\"pr-${pr}\"`); the flow's name by default.",
    ),
    prop(
        "limit",
        "int",
        false,
        "How many executions of one key may run at once (default 1).",
    ),
    prop(
        "on_conflict",
        "queue|cancel_running|skip",
        false,
        "A new execution over the limit: `queue` (the default) waits its turn, `cancel_running` cancels the running ones of its key (their `finally` runs) and starts, `skip` is not started.",
    ),
];

pub fn kind(name: &str) -> Option<&'static TriggerKind> {
    TRIGGERS.iter().find(|t| t.name == name)
}

pub fn kind_names() -> impl Iterator<Item = &'static str> {
    TRIGGERS.iter().map(|t| t.name)
}

impl TriggerKind {
    /// A property of this kind's body (its own or a common one).
    pub fn prop(&self, name: &str) -> Option<&'static Prop> {
        self.props.iter().chain(COMMON).find(|p| p.name == name)
    }

    /// The fields a delivery of this kind has, for a provider (`None`:
    /// every field of the kind).
    pub fn fields_for(&self, provider: Option<&str>) -> impl Iterator<Item = &'static Field> + '_ {
        let provider = provider.map(str::to_string);
        self.fields
            .iter()
            .filter(move |f| f.providers.is_empty() || provider.as_deref().is_none_or(|p| f.providers.contains(&p)))
    }
}

impl Field {
    pub fn ty(&self) -> Ty {
        parse_spec(self.ty)
    }
}

/// A webhook's name is the last segment of its URL.
pub fn webhook_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a webhook needs a name".into());
    }
    if s.len() > 64 {
        return Err("a webhook's name is at most 64 characters".into());
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(format!(
            "`{}` cannot be in a webhook's name (it is part of its URL): use letters, digits, `-` and `_`",
            c.escape_default()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_spec_parses_and_names_are_unique() {
        for t in TRIGGERS {
            let mut names: Vec<&str> = t.props.iter().chain(COMMON).map(|p| p.name).collect();
            names.extend(t.fields.iter().map(|f| f.name));
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "{}", t.name);
            for f in t.fields {
                assert!(!matches!(f.ty(), Ty::Enum(_)), "{}.{}: {}", t.name, f.name, f.ty);
            }
        }
    }

    #[test]
    fn webhook_names_are_url_segments() {
        assert!(webhook_name("release-1_x").is_ok());
        assert!(webhook_name("").is_err());
        assert!(webhook_name("a/b").is_err());
        assert!(webhook_name("a b").is_err());
        assert!(webhook_name(&"a".repeat(65)).is_err());
    }
}
