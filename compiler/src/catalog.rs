//! The task catalog: the single table of task kinds, their properties and
//! outputs with types and docs, and their own rules as data. The checker,
//! the language server, `kflow docs` and the runtime (whose runners sit in
//! one table beside it, and which checks every run's outputs) all read it.

use rustc_hash::FxHashMap;
use std::sync::OnceLock;

use crate::types::{parse_spec, Ty};

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kind({})", self.name)
    }
}

pub struct Kind {
    pub name: &'static str,
    pub doc: &'static str,
    pub props: &'static [Prop],
    pub outputs: &'static [Out],
    pub methods: &'static [Method],
    /// Exactly one of these properties is required (e.g. `cmd` or `script`).
    pub one_of: &'static [&'static str],
    /// Running it changes nothing outside the execution, so a result nobody
    /// reads is dead code.
    pub pure: bool,
    /// Properties whose values are compared against fixed strings at compile time.
    pub choices: &'static [(&'static str, &'static [&'static str])],
    /// Pairs of optional properties that exclude each other.
    pub exclusive: &'static [(&'static str, &'static str)],
    /// Checks of literal values, shared with the runtime (which applies them
    /// to values computed during a run).
    pub validate: &'static [(&'static str, Validator)],
    /// The lints specific to this kind.
    pub lints: &'static [Lint],
    /// It puts an image in a registry: its `digest` output is the digest
    /// there, the one later tasks should pin.
    pub publishes: bool,
}

/// A check of a literal string property: `Err` says what is wrong.
pub type Validator = fn(&str) -> Result<(), String>;

/// A kind-specific lint, run by the checker on the task's properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lint {
    /// This property is an image that runs or is scanned: a mutable tag is
    /// warned about (pin it by digest).
    PinnedImage(&'static str),
    /// This property (or each item of this list) is a tag pushed to:
    /// `:latest`, or no tag, is warned about.
    PushedTag(&'static str),
    /// `${…}` in a shell script (`script`, or `sh -c` in `cmd`) is warned
    /// about: a value spliced into shell code can run as code.
    ShellScript,
    /// A gate without `timeout` is warned about: it can wait forever.
    Deadline,
}

pub struct Prop {
    pub name: &'static str,
    pub ty: &'static str,
    pub required: bool,
    pub doc: &'static str,
}

pub struct Out {
    pub name: &'static str,
    pub ty: &'static str,
    pub doc: &'static str,
}

pub struct Method {
    pub name: &'static str,
    pub params: &'static [(&'static str, &'static str)],
    pub ret: &'static str,
    pub doc: &'static str,
    /// The run's hidden output the method reads (not an output a flow can
    /// name: only the method's calls reach it).
    pub reads: &'static str,
}

const fn req(name: &'static str, ty: &'static str, doc: &'static str) -> Prop {
    Prop {
        name,
        ty,
        required: true,
        doc,
    }
}

const fn opt(name: &'static str, ty: &'static str, doc: &'static str) -> Prop {
    Prop {
        name,
        ty,
        required: false,
        doc,
    }
}

const fn out(name: &'static str, ty: &'static str, doc: &'static str) -> Out {
    Out { name, ty, doc }
}

const KIND: Kind = Kind {
    name: "",
    doc: "",
    props: &[],
    outputs: &[],
    methods: &[],
    one_of: &[],
    pure: false,
    choices: &[],
    exclusive: &[],
    validate: &[],
    lints: &[],
    publishes: false,
};

/// Properties every task accepts.
pub static COMMON: &[Prop] = &[
    opt("after", "list<task>", "Run after these tasks, without using their data."),
    opt(
        "when",
        "bool",
        "Run only when true; otherwise the task is `skipped`, and so are its dependants.",
    ),
    opt(
        "retry",
        "retry",
        "Retry a failure that another attempt may fix (a command's exit status, the engine, a registry, the network); never a cancellation, nor a failure that would repeat (a malformed value, a scan over its threshold, a rejected gate). `backoff` defaults to `constant`; `exponential` doubles the delay up to `max_delay`.",
    ),
    opt(
        "timeout",
        "duration",
        "Time limit per attempt; on expiry the task is cancelled (its container killed) and fails.",
    ),
    opt(
        "continue_on_error",
        "bool",
        "A failure does not fail the flow; the task's outputs become optional (`T?`).",
    ),
    opt(
        "runs_on",
        "map<string>",
        "With a shared history, run only on a `kflow worker` whose `--labels` include these (`{ env: \"prod\" }`): that worker's engine, and the secrets it holds. Where tasks run in the kflow process itself, it has no effect.",
    ),
];

/// Outputs every task has, whatever its kind. Set by the executor, never
/// by a task, and never optional: a task that failed or was skipped has its
/// `outcome` too.
pub static COMMON_OUTPUTS: &[Out] = &[out(
    "outcome",
    "string",
    "How the task ended: `succeeded`, `failed` (a cancellation too) or `skipped`. Reading only `outcome` waits for the task to end, not to succeed, so `catch`, `finally`, `continue_on_error` readers and `when` can look at a failure or a skip.",
)];

/// The kind of the node an `assert` item becomes: it runs like a task, but
/// is written as an item, so it has no catalog entry.
pub const ASSERT_KIND: &str = "assert";

/// What `outcome` can be.
pub const OUTCOMES: [&str; 3] = ["succeeded", "failed", "skipped"];

/// Whether every task has the output `name` (whatever its kind).
pub fn is_common_output(name: &str) -> bool {
    COMMON_OUTPUTS.iter().any(|o| o.name == name)
}

/// Parameters as they are written in signatures: `service: string, port: int`.
pub fn parameter_list(params: &[(&str, &str)]) -> String {
    let params: Vec<String> = params.iter().map(|(n, t)| format!("{n}: {t}")).collect();
    params.join(", ")
}

pub static KINDS: &[Kind] = &[
    Kind {
        name: "docker.build",
        doc: "Build an image with the Docker engine. Yields the local image ID, not a registry digest.",
        props: &[
            req("context", "path", "Build context folder, relative to the flow file; `.dockerignore` is honoured."),
            opt("dockerfile", "path", "Dockerfile to use (default: `Dockerfile` in the context)."),
            opt("dockerfile_inline", "string", "Dockerfile text, instead of a file."),
            opt("args", "map<string>", "Build arguments (`ARG`)."),
            opt("labels", "map<string>", "Labels to set on the image."),
            opt("target", "string", "Stage of a multi-stage build to stop at."),
            opt("tags", "list<ref>", "Local tags to give the image."),
            opt(
                "platform",
                "string",
                "Target platform, e.g. `linux/amd64`. The built image's config is checked against it: an image of another platform (the classic builder labels what it ran natively with the host's) fails the task and is not tagged.",
            ),
            opt(
                "platforms",
                "list<string>",
                "Build one image per platform, e.g. `[\"linux/amd64\", \"linux/arm64\"]`, each checked as `platform` is. `image` is then all of them: `docker.push` stores them under one tag as an OCI image index, `container.run` runs the engine's own platform's. Excludes `platform` and `tags` (a local tag names one image).",
            ),
            opt("no_cache", "bool", "Do not use the build cache."),
            opt(
                "builder",
                "string",
                "`buildkit`, `classic` or `auto` (default): `auto` builds with the engine's BuildKit where it offers it (Linux engines of Docker 18.09 and later), with the classic builder otherwise.",
            ),
            opt(
                "secrets",
                "map<secret>",
                "Build secrets by id, for `RUN --mount=type=secret,id=…` (BuildKit only). Each is handed to BuildKit from memory for the steps that mount it: never in the context, a build argument or a layer, and redacted from the build's output.",
            ),
        ],
        outputs: &[
            out("image", "image", "The local image ID (the config digest), or with `platforms` each platform's. Not a registry digest: push it to get one."),
            out("id", "digest", "The image's config digest (with `platforms`, the first platform's)."),
        ],
        pure: true,
        choices: &[("builder", &["auto", "buildkit", "classic"])],
        exclusive: &[
            ("dockerfile", "dockerfile_inline"),
            ("platform", "platforms"),
            ("tags", "platforms"),
        ],
        validate: &[("platform", crate::literals::platform), ("platforms", crate::literals::platform)],
        lints: &[Lint::PushedTag("tags")],
        ..KIND
    },
    Kind {
        name: "docker.tag",
        doc: "Give a local image another tag.",
        props: &[
            req("image", "image", "The local image."),
            req("tag", "ref", "The new tag."),
        ],
        outputs: &[out("ref", "ref", "The tag that was set.")],
        lints: &[Lint::PushedTag("tag")],
        ..KIND
    },
    Kind {
        name: "docker.push",
        doc: "Push a local image to a registry and read back the manifest digest the registry stored.",
        props: &[
            req("image", "image", "The local image to push."),
            req("to", "ref", "Where to push: `registry/repository:tag`."),
            opt(
                "credentials",
                "credentials",
                "Registry credentials: `docker_config()` (default), `helper(\"name\")` or `{ username, password }`.",
            ),
        ],
        outputs: &[
            out("digest", "digest", "The manifest digest in the registry."),
            out("pinned", "pinned", "`repository@sha256:…`: the pushed bytes, immutable."),
            out("ref", "ref", "The tag pushed to."),
        ],
        lints: &[Lint::PushedTag("to")],
        publishes: true,
        ..KIND
    },
    Kind {
        name: "registry.copy",
        doc: "Copy a manifest by digest to another repository or registry, without pulling or rebuilding, with its cosign signatures (an index with its images and theirs). The digest is kept and checked.",
        props: &[
            req("from", "pinned", "The source, pinned by digest."),
            req("to", "ref", "The destination tag."),
            opt(
                "from_credentials",
                "credentials",
                "Credentials to read the source with (default: `credentials`, else `docker_config()`).",
            ),
            opt(
                "to_credentials",
                "credentials",
                "Credentials to write the destination with (default: `credentials`, else `docker_config()`).",
            ),
            opt(
                "credentials",
                "credentials",
                "Credentials for both ends (default: `docker_config()`). A username and password are for one registry: a copy between two registries with them is refused; give `from_credentials` and `to_credentials`.",
            ),
            opt(
                "signatures",
                "bool",
                "Copy the cosign signatures, attestations and SBOM stored for the digest (`sha256-<hex>.sig`, `.att`, `.sbom`) with it, as `cosign copy` does (default `true`). Each is copied byte for byte; signatures or attestations the destination holds already are kept, merged with the source's. `false` copies the image alone.",
            ),
        ],
        outputs: &[
            out("digest", "digest", "The digest at the destination (equal to the source's)."),
            out("pinned", "pinned", "The destination pinned by digest."),
            out("ref", "ref", "The tag copied to (`to` as given)."),
        ],
        lints: &[Lint::PushedTag("to")],
        publishes: true,
        ..KIND
    },
    Kind {
        name: "oci.index",
        doc: "Assemble one OCI image index (a multi-platform tag) over images already pushed. Each child's platform is read from its own config, never assumed; children in another repository of the registry are copied in first (blobs mounted).",
        props: &[
            req("images", "list<pinned>", "The platform images, pinned by digest, on `to`'s registry; one per platform."),
            req("to", "ref", "Where to store the index: `registry/repository:tag`."),
            opt(
                "credentials",
                "credentials",
                "Credentials to read the images and write the index with (default: `docker_config()`).",
            ),
        ],
        outputs: &[
            out("digest", "digest", "The index's digest in the registry."),
            out("pinned", "pinned", "`repository@sha256:…` of the index."),
            out("ref", "ref", "The tag the index was stored under."),
        ],
        lints: &[Lint::PushedTag("to")],
        publishes: true,
        ..KIND
    },
    Kind {
        name: "aws.ecr_login",
        doc: "Mint an Amazon ECR login for this run: AWS credentials from the standard chain (the environment, the shared credentials and config files' profile, a web identity token), then ECR's `GetAuthorizationToken`, signed with SigV4. The password is a secret, never logged or recorded; a task that uses the login after it is about to expire (12 hours) gets a new one.",
        props: &[
            req("region", "string", "The registry's AWS region, e.g. `eu-west-1`."),
            opt(
                "registry_ids",
                "list<string>",
                "The accounts whose registries to log in to (default: the caller's); `registry` is the first's.",
            ),
            opt(
                "profile",
                "string",
                "The profile of `~/.aws/credentials` and `~/.aws/config` to use (default: `AWS_PROFILE`, else the environment's keys, then `default`).",
            ),
            opt("role_arn", "string", "The role to assume with `web_identity_token`."),
            opt(
                "web_identity_token",
                "secret",
                "An OIDC token (`oidc.token`) exchanged for the role's credentials with STS `AssumeRoleWithWebIdentity`.",
            ),
            opt(
                "endpoint",
                "string",
                "The ECR API endpoint (default: `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL`, else `https://api.ecr.REGION.amazonaws.com`).",
            ),
            opt(
                "sts_endpoint",
                "string",
                "The STS endpoint (default: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else `https://sts.REGION.amazonaws.com`).",
            ),
        ],
        outputs: &[
            out("credentials", "credentials", "The login: user `AWS` and the token as a secret password."),
            out("registry", "string", "The registry host, `ACCOUNT.dkr.ecr.REGION.amazonaws.com`."),
            out("expires_at", "string", "When the first token expires, RFC 3339 in UTC."),
        ],
        pure: true,
        ..KIND
    },
    Kind {
        name: "gcp.registry_login",
        doc: "Mint an Artifact Registry login for this run (user `oauth2accesstoken`, a Google access token as password): from a service-account key, a workload-identity-federation file, a gcloud user login, or the metadata server. Renewed when a later task needs it and it is about to expire (1 hour).",
        props: &[
            opt("location", "string", "The repository location: `LOCATION-docker.pkg.dev` is the registry (default `us`)."),
            opt(
                "credentials_file",
                "path",
                "A service-account key, `external_account` or `authorized_user` file (default: `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server at `GCE_METADATA_HOST`).",
            ),
            opt(
                "subject_token",
                "secret",
                "An OIDC token (`oidc.token`) for an `external_account` file, instead of its `credential_source`.",
            ),
        ],
        outputs: &[
            out("credentials", "credentials", "The login: user `oauth2accesstoken` and the access token as a secret password."),
            out("registry", "string", "The registry host, `LOCATION-docker.pkg.dev`."),
            out("expires_at", "string", "When the first token expires, RFC 3339 in UTC."),
        ],
        pure: true,
        ..KIND
    },
    Kind {
        name: "azure.acr_login",
        doc: "Mint an Azure Container Registry login for this run: a Microsoft identity token for an app (client secret or federated token), exchanged at the registry's `/oauth2/exchange` for a refresh token, the password of user `00000000-0000-0000-0000-000000000000`. Renewed when a later task needs it and it is about to expire.",
        props: &[
            req("registry", "string", "The registry host, `NAME.azurecr.io`."),
            opt("tenant", "string", "The directory (tenant) ID (default: `AZURE_TENANT_ID`)."),
            opt("client_id", "string", "The app's client ID (default: `AZURE_CLIENT_ID`)."),
            opt("client_secret", "secret", "The app's client secret."),
            opt(
                "federated_token",
                "secret",
                "A federated token (`oidc.token`) given as client assertion instead of a secret (default: the file `AZURE_FEDERATED_TOKEN_FILE`).",
            ),
            opt(
                "authority",
                "string",
                "The identity platform (default: `AZURE_AUTHORITY_HOST`, else `https://login.microsoftonline.com`).",
            ),
            opt("exchange_url", "string", "The token exchange (default: `https://REGISTRY/oauth2/exchange`)."),
        ],
        outputs: &[
            out("credentials", "credentials", "The login: the ACR refresh token as a secret password."),
            out("registry", "string", "The registry host, as given."),
            out("expires_at", "string", "When the first token expires, RFC 3339 in UTC."),
        ],
        exclusive: &[("client_secret", "federated_token")],
        pure: true,
        ..KIND
    },
    Kind {
        name: "oidc.token",
        doc: "Fetch the CI's OIDC identity token for an audience (GitHub Actions: `ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN`, set with `permissions: id-token: write`), to trade for cloud credentials. The token is a secret.",
        props: &[req(
            "audience",
            "string",
            "Who the token is for: `sts.amazonaws.com`, a workload identity provider, `api://AzureADTokenExchange`.",
        )],
        outputs: &[
            out("token", "secret", "The identity token (a JWT)."),
            out("expires_at", "string", "When it expires, RFC 3339 in UTC."),
        ],
        pure: true,
        ..KIND
    },
    Kind {
        name: "container.run",
        doc: "Run a command in a container and wait for it; the container is removed in every case.",
        props: &[
            req("image", "image|pinned|ref", "The image: a local `image`, or a registry reference (pin it by digest)."),
            req("cmd", "list<string>", "The command and its arguments."),
            opt("env", "map<string|secret>", "Environment variables; secret values are redacted from logs."),
            opt("workdir", "string", "Working directory inside the container."),
            opt("mounts", "list<string>", "Bind mounts, `host:container[:ro]`."),
            opt("network", "string", "Network to attach to."),
            opt("user", "string", "User to run as."),
            opt("pull", "never|missing|always", "When to pull the image (a local `image` is never pulled)."),
            opt("credentials", "credentials", "Credentials to pull with (default: `docker_config()`)."),
        ],
        outputs: &[
            out("exit_code", "int", "The command's exit status."),
            out("stdout", "string", "What the command wrote to standard output."),
            out("stderr", "string", "What the command wrote to standard error."),
        ],
        lints: &[Lint::PinnedImage("image")],
        ..KIND
    },
    Kind {
        name: "shell.run",
        doc: "Run a command on the host: `cmd` as an argument vector, or `script` through `sh -c`.",
        props: &[
            opt("cmd", "list<string>", "The command and its arguments (no shell)."),
            opt("script", "string", "A script run by `sh -c`."),
            opt("env", "map<string|secret>", "Environment variables; secret values are redacted from logs."),
            opt("cwd", "path", "Working directory (default: the flow file's folder)."),
        ],
        outputs: &[
            out("exit_code", "int", "The exit status."),
            out("stdout", "string", "Standard output."),
            out("stderr", "string", "Standard error."),
        ],
        one_of: &["cmd", "script"],
        lints: &[Lint::ShellScript],
        ..KIND
    },
    Kind {
        name: "http.request",
        doc: "Send an HTTP request and check its status.",
        props: &[
            req("url", "string", "The URL."),
            opt("method", "string", "The HTTP method (default `GET`)."),
            opt("headers", "map<string|secret>", "Request headers; secret values are redacted."),
            opt("body", "string", "The request body."),
            opt("expect_status", "list<int>", "Accepted statuses (default: any 2xx)."),
        ],
        outputs: &[
            out("status", "int", "The response status."),
            out("body", "string", "The response body."),
        ],
        choices: &[("method", &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])],
        ..KIND
    },
    Kind {
        name: "trivy.scan",
        doc: "Scan an image with Trivy and fail when a finding's severity is in `fail_on`.",
        props: &[
            req(
                "image",
                "image|pinned|ref",
                "The image to scan: a local `image`, or a registry reference (pin it by digest).",
            ),
            opt("fail_on", "list<severity>", "Severities that fail the task (default: none, report only)."),
            opt("ignore_unfixed", "bool", "Ignore findings without a fixed version."),
            opt("ignore_file", "path", "A `.trivyignore` file."),
            opt("sbom", "cyclonedx|spdx", "Also produce an SBOM in this format."),
        ],
        outputs: &[
            out("critical", "int", "Number of critical findings."),
            out("high", "int", "Number of high findings."),
            out("medium", "int", "Number of medium findings."),
            out("low", "int", "Number of low findings."),
            out("report", "path", "The JSON report, kept with the execution."),
            out("sbom", "path?", "The SBOM, when `sbom` is set."),
            out(
                "digest",
                "digest?",
                "The digest scanned: of a pinned `image`, or a local image's ID; absent for a tag.",
            ),
        ],
        lints: &[Lint::PinnedImage("image")],
        ..KIND
    },
    Kind {
        name: "cosign.sign",
        doc: "Sign an image's manifest digest the way cosign does, and store the signature in its registry.",
        props: &[
            req("image", "pinned", "The image to sign, pinned by digest (a tag could move)."),
            req("key", "secret", "The cosign private key (PEM)."),
            opt("password", "secret", "The key's password."),
            opt("annotations", "map<string>", "Annotations added to the signed payload."),
            opt(
                "credentials",
                "credentials",
                "Credentials to read the image and store the signature with (default: `docker_config()`).",
            ),
            opt(
                "recursive",
                "bool",
                "For an image index: sign every image (and index) it names too, as `cosign sign --recursive` does. A signature already stored for a digest is not appended again.",
            ),
        ],
        outputs: &[
            out("signature", "pinned", "The signature manifest, pinned."),
            out("digest", "digest", "The digest that was signed."),
        ],
        ..KIND
    },
    Kind {
        name: "cosign.verify",
        doc: "Verify the cosign signatures of an image digest against a public key.",
        props: &[
            req("image", "pinned", "The image, pinned by digest."),
            req("key", "path", "The cosign public key file."),
            opt(
                "credentials",
                "credentials",
                "Credentials to read the signatures with (default: `docker_config()`).",
            ),
        ],
        outputs: &[
            out("signatures", "int", "Number of valid signatures."),
            out("digest", "digest", "The digest whose signatures were verified."),
        ],
        ..KIND
    },
    Kind {
        name: "compose.up",
        doc: "Bring a Compose project up and wait for its services. Pair it with `compose.down` in a `finally`.",
        props: &[
            req("file", "path", "The Compose file."),
            req("project", "string", "The project name (lowercase letters, digits, `-`, `_`)."),
            opt("wait", "bool", "Wait until services are healthy or running (default true)."),
            opt("timeout", "duration", "How long to wait for the services."),
            opt("env", "map<string|secret>", "Variables for interpolation in the Compose file."),
        ],
        outputs: &[out("project", "string", "The project name.")],
        methods: &[Method {
            name: "port",
            params: &[("service", "string"), ("container_port", "int")],
            ret: "int",
            doc: "The host port published for a service's container port.",
            reads: "ports",
        }],
        validate: &[("project", crate::literals::compose_project)],
        ..KIND
    },
    Kind {
        name: "compose.down",
        doc: "Remove a Compose project's containers and networks (and volumes with `volumes: true`), orphans included.",
        props: &[
            req("project", "string", "The project name."),
            opt("volumes", "bool", "Also remove volumes."),
        ],
        validate: &[("project", crate::literals::compose_project)],
        ..KIND
    },
    Kind {
        name: "approval",
        doc: "Pause the execution until reviewers approve or one rejects it (`kflow approve` / `kflow reject`, or the server's API).",
        props: &[
            req("summary", "string", "What the reviewer is asked to approve."),
            opt("reviewers", "list<string>", "Who may decide (default: anyone); with `kflow serve`, user names."),
            opt("timeout", "duration", "How long to wait; on expiry the gate fails (it never approves)."),
            opt(
                "required",
                "int",
                "How many distinct reviewers must approve (default 1); one rejection fails the gate.",
            ),
            opt(
                "prevent_self_approval",
                "bool",
                "Whoever started the execution (a user, through the server's API) may not approve it.",
            ),
            opt("subject", "pinned", "The digest being approved: shown to reviewers, recorded with each decision, and an output."),
            opt(
                "evidence",
                "map<string|path>",
                "What reviewers see beside the decision: links or files by name (`{ scan: scan.report, signature: \"https://…\" }`).",
            ),
        ],
        outputs: &[
            out("by", "string", "Who approved (the last approval a gate needing several got)."),
            out("at", "string", "When, RFC 3339 with offset."),
            out("comment", "string", "The reviewer's comment."),
            out("approvers", "list<string>", "Every reviewer who approved, in order."),
            out("subject", "pinned?", "The `subject` approved, when the gate names one."),
        ],
        lints: &[Lint::Deadline],
        ..KIND
    },
    Kind {
        name: "log",
        doc: "Write a message to the execution log.",
        props: &[req("message", "string", "The message.")],
        ..KIND
    },
    Kind {
        name: "sleep",
        doc: "Wait for a while.",
        props: &[req("duration", "duration", "How long.")],
        ..KIND
    },
];

pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

impl Kind {
    /// Kind-specific properties, then the common ones.
    pub fn all_props(&self) -> impl Iterator<Item = &'static Prop> {
        self.props.iter().chain(COMMON)
    }
    pub fn prop(&self, name: &str) -> Option<&'static Prop> {
        self.props.iter().chain(COMMON).find(|p| p.name == name)
    }
    /// A declared output, or one every task has (`outcome`).
    pub fn output(&self, name: &str) -> Option<&'static Out> {
        self.all_outputs().find(|o| o.name == name)
    }
    /// Declared outputs, then those every task has.
    pub fn all_outputs(&self) -> impl Iterator<Item = &'static Out> {
        self.outputs.iter().chain(COMMON_OUTPUTS)
    }
    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.name == name)
    }
    /// Required properties, in catalog order.
    pub fn required(&self) -> impl Iterator<Item = &Prop> {
        self.props.iter().filter(|p| p.required)
    }
}

/// The parsed type of a catalog type spec. Every spec of the catalog is
/// parsed once, on first use; lookups take no lock.
pub fn ty(spec: &'static str) -> &'static Ty {
    static TYPES: OnceLock<FxHashMap<&'static str, Ty>> = OnceLock::new();
    let types = TYPES.get_or_init(|| {
        let specs = KINDS
            .iter()
            .flat_map(|k| {
                k.props
                    .iter()
                    .map(|p| p.ty)
                    .chain(k.outputs.iter().map(|o| o.ty))
                    .chain(
                        k.methods
                            .iter()
                            .flat_map(|m| m.params.iter().map(|(_, t)| *t).chain([m.ret])),
                    )
            })
            .chain(COMMON.iter().map(|p| p.ty))
            .chain(COMMON_OUTPUTS.iter().map(|o| o.ty));
        specs.map(|s| (s, parse_spec(s))).collect()
    });
    types.get(spec).expect("catalog type specs are all parsed up front")
}

pub fn kind_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name)
}
