//! Triggers offline: `kflow run --trigger NAME --payload F.json` binds a
//! delivery as the server will (GitHub's real payload shapes, in
//! tests/fixtures/webhooks), and `kflow schedule` prints fire times.

mod support;

use std::path::{Path, PathBuf};

use support::{kflow, output, text};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn payload(name: &str) -> String {
    root()
        .join("tests/fixtures/webhooks")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn docs_flow() -> String {
    root().join("docs/flows/triggers.kflow").to_string_lossy().into_owned()
}

fn executions(dir: &Path) -> Vec<serde_json::Value> {
    let o = kflow(dir, &["executions", "list", "--json", "--state", "st"], &[]);
    if o.status.code() != Some(0) {
        return Vec::new();
    }
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The documented flow, run as each of its triggers would start it: a tag
/// push releases the tag, a branch push starts nothing, the schedule and
/// the file trigger bind their constants and fields. The webhook's key is
/// not set: only the server reads it.
#[test]
fn the_documented_triggers_bind_their_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let flow = docs_flow();
    let o = kflow(
        dir.path(),
        &[
            "run",
            "--state",
            "st",
            &flow,
            "--trigger",
            "release",
            "--payload",
            &payload("github-push-tag.json"),
            "--header",
            "X-GitHub-Event=push",
            "--header",
            "X-GitHub-Delivery=72d3162e-cc78-11e3-81ab-4c9367dc0958",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(output(&text(&o.stdout), "said"), "releasing v1.4.0 from none.tar");
    let runs = executions(dir.path());
    assert_eq!(runs[0]["inputs"]["version"], "v1.4.0");
    assert_eq!(
        runs[0]["trigger"],
        serde_json::json!({ "name": "release", "kind": "webhook", "delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958" })
    );

    // Without the event header, the payload's shape says `push`.
    let o = kflow(
        dir.path(),
        &[
            "run",
            "--state",
            "st",
            &flow,
            "--trigger",
            "release",
            "--payload",
            &payload("github-push-branch.json"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("the delivery starts nothing: `when` is false"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(executions(dir.path()).len(), 1, "a filtered delivery starts nothing");

    // An event the trigger does not take.
    let o = kflow(
        dir.path(),
        &[
            "run",
            "--state",
            "st",
            &flow,
            "--trigger",
            "release",
            "--payload",
            &payload("github-push-tag.json"),
            "--header",
            "X-GitHub-Event=create",
        ],
        &[],
    );
    assert!(
        text(&o.stdout).contains("event `create` is not one of push"),
        "{}",
        text(&o.stdout)
    );

    let o = kflow(
        dir.path(),
        &["run", "--state", "st", &flow, "--trigger", "schedule"],
        &[],
    );
    assert_eq!(output(&text(&o.stdout), "said"), "releasing nightly from none.tar");
    let file = dir.path().join("file.json");
    std::fs::write(&file, r#"{"path": "drop/app.tar"}"#).unwrap();
    let o = kflow(
        dir.path(),
        &[
            "run",
            "--state",
            "st",
            &flow,
            "--trigger",
            "file",
            "--payload",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output(&text(&o.stdout), "said"), "releasing dropped from drop/app.tar");
    let runs = executions(dir.path());
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["trigger"]["name"], "file");
}

const PREVIEW: &str = r##"flow preview {
  secret hook_key = env("PREVIEW_HOOK_SECRET")

  /// Each opened or updated pull request gets its preview; a newer push
  /// replaces the older run.
  on webhook "pr" {
    provider: github
    secret: hook_key
    events: ["pull_request"]
    when: trigger.action == "opened" || trigger.action == "synchronize"
    inputs: { pr: trigger.pr, head: trigger.head_sha, title: trigger.body.pull_request.title, draft: trigger.body.pull_request.draft }
  }
  on webhook "manual" { provider: token, secret: hook_key, inputs: { pr: trigger.body.number, head: trigger.body.head } }

  concurrency { key: "pr-${pr}", on_conflict: cancel_running }

  input pr: int
  input head: string
  input title: string = "untitled"
  input draft: bool = false

  task show = shell.run {
    script: "echo \"#$PR at $HEAD: $TITLE (draft: $DRAFT)\""
    env: { PR: "${pr}", HEAD: head, TITLE: title, DRAFT: "${draft}" }
  }

  output said = show.stdout
}
"##;

/// A pull request's number, head and title, read from GitHub's payload and
/// converted to the inputs' types; a value that does not convert refuses
/// the delivery with the reason and starts nothing.
#[test]
fn pull_request_fields_and_body_values_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("preview.kflow"), PREVIEW).unwrap();
    let o = kflow(dir.path(), &["check", "preview.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = kflow(
        dir.path(),
        &[
            "run",
            "--state",
            "st",
            "preview.kflow",
            "--trigger",
            "pr",
            "--payload",
            &payload("github-pull-request.json"),
            "--header",
            "X-GitHub-Event=pull_request",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        output(&text(&o.stdout), "said"),
        "#42 at ec26c3e57ca3a959ca5aad62de7213c562f8c821: Update the README with new information. (draft: false)"
    );
    assert_eq!(executions(dir.path())[0]["inputs"]["pr"], 42);

    // `number` is text where an int is wanted, and `head` is absent.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"number": "forty-two"}"#).unwrap();
    let o = kflow(
        dir.path(),
        &[
            "run",
            "--state",
            "st",
            "preview.kflow",
            "--trigger",
            "manual",
            "--payload",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(err.contains("the delivery is refused"), "{err}");
    assert!(
        err.contains("input `pr` (type `int`): `forty-two` is not an integer"),
        "{err}"
    );
    assert!(
        err.contains("input `head` (type `string`): absent from this delivery"),
        "{err}"
    );
    // A number written as text converts, as `--input` reads it.
    std::fs::write(&bad, r#"{"number": "7", "head": "abc"}"#).unwrap();
    let o = kflow(
        dir.path(),
        &[
            "run",
            "--state",
            "st",
            "preview.kflow",
            "--trigger",
            "manual",
            "--payload",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(executions(dir.path()).len(), 2, "the refused delivery started nothing");
}

/// Payloads that are not what a delivery is: each a clear error, no panic.
#[test]
fn hostile_payloads_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("preview.kflow"), PREVIEW).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed",
            b"{\"action\": \"opened\", ".to_vec(),
            "the payload: the body is not JSON",
        ),
        (
            "deep",
            "[".repeat(200_000).into_bytes(),
            "the payload: the body is not JSON",
        ),
        (
            "not utf-8",
            b"{\"action\": \"\xff\xfe\"}".to_vec(),
            "the payload: the body is not JSON",
        ),
        (
            "huge",
            vec![b' '; 25 * 1024 * 1024 + 1],
            "larger than a delivery may be",
        ),
    ];
    for (what, body, want) in cases {
        let f = dir.path().join("payload.json");
        std::fs::write(&f, &body).unwrap();
        let o = kflow(
            dir.path(),
            &[
                "run",
                "--state",
                "st",
                "preview.kflow",
                "--trigger",
                "pr",
                "--payload",
                f.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o.stdout));
        assert!(text(&o.stderr).contains(want), "{what}: {}", text(&o.stderr));
    }
    let o = kflow(dir.path(), &["run", "preview.kflow", "--trigger", "nope"], &[]);
    assert!(text(&o.stderr).contains("flow `preview` has no trigger `nope` (its triggers: pr, manual)"));
    let o = kflow(
        dir.path(),
        &["run", "preview.kflow", "--trigger", "pr", "--input", "pr=1"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "--input and --trigger exclude each other");
    assert!(executions(dir.path()).is_empty());
}

/// `kflow schedule` prints fire times in the schedule's zone and in UTC,
/// across a daylight-saving change.
#[test]
fn schedule_prints_the_next_fire_times() {
    let dir = tempfile::tempdir().unwrap();
    let o = kflow(
        dir.path(),
        &["schedule", &docs_flow(), "--after", "2026-10-23T12:00:00Z", "-n", "3"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "schedule: \"0 3 * * *\" in Europe/Berlin (catchup: last)\n\
         \x20 Sat 2026-10-24 03:00:00 +02:00   2026-10-24T01:00:00Z\n\
         \x20 Sun 2026-10-25 03:00:00 +01:00   2026-10-25T02:00:00Z\n\
         \x20 Mon 2026-10-26 03:00:00 +01:00   2026-10-26T02:00:00Z\n"
    );
    std::fs::write(
        dir.path().join("none.kflow"),
        "flow f {\n  task t = log { message: \"hi\" }\n}\n",
    )
    .unwrap();
    let o = kflow(dir.path(), &["schedule", "none.kflow"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("flow `f` has no schedule"));
}
