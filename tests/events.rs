//! `kflow run --json` (and `rerun`, `resume`) speak as documented: every
//! event they print validates against `docs/events.schema.json`, every event
//! the schema defines is printed by some run here, and `docs/cli.md` lists
//! the same events.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::*;

const FLOW: &str = r#"flow events {
  task first = shell.run { script: "echo one; echo two >&2" }
  task flaky = shell.run { script: "test -e fixed", retry: { attempts: 2, delay: 10ms }, after: [first] }
  task skipped = shell.run { cmd: ["true"], after: [flaky] }
  for p in ["linux/amd64", "linux/arm64"] {
    task each = shell.run { cmd: ["echo", p], after: [first] }
  }
  task gate = approval { summary: "ship?", reviewers: ["alice"], timeout: 1h, after: [flaky] }
  task later = shell.run { cmd: ["echo", "approved by", gate.by] }
  output said = later.stdout
  output first = first.stdout
}
"#;

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/events.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The events of one command, each checked against the schema.
fn events(dir: &Path, args: &[&str], validator: &jsonschema::Validator) -> Vec<serde_json::Value> {
    let o = kflow(dir, args, &[]);
    let out = text(&o.stdout);
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{out}{}",
        text(&o.stderr)
    );
    out.lines()
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let errors: Vec<String> = validator.iter_errors(&event).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{line}\n{}", errors.join("\n"));
            event
        })
        .collect()
}

#[test]
fn json_events_validate_against_the_schema_kept_in_the_repository() {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("events.kflow"), FLOW).unwrap();

    // Fails (after a retry): started, log, retrying, finished, execution.
    let failed = events(d, &["run", "--json", "--detach", "events.kflow"], &validator);
    let id = failed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(failed[0]["event"], "execution_started");
    assert_eq!(failed[0]["rerun_of"], serde_json::Value::Null);
    let last = failed.last().unwrap();
    assert_eq!(
        (&last["event"], &last["state"], &last["id"]),
        (&"execution".into(), &"failed".into(), &id.as_str().into())
    );
    // The clock runs forward, from the first line to the last.
    let ts: Vec<f64> = failed.iter().map(|e| e["t"].as_f64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");

    // From the failure on: restored, then paused at the gate.
    std::fs::write(d.join("fixed"), "").unwrap();
    let paused = events(d, &["rerun", &id, "--from-failed", "--json", "--detach"], &validator);
    assert_eq!(paused[0]["rerun_of"], id.as_str());
    let rerun = paused[0]["id"].as_str().unwrap().to_string();
    let last = paused.last().unwrap();
    assert_eq!(
        (&last["state"], &last["id"]),
        (&"paused".into(), &rerun.as_str().into())
    );

    let o = kflow(d, &["approve", &rerun, "--as", "alice"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let resumed = events(d, &["resume", &rerun, "--json"], &validator);
    assert_eq!(resumed[0]["event"], "execution_resumed");
    let last = resumed.last().unwrap();
    assert_eq!(
        (&last["state"], &last["id"]),
        (&"succeeded".into(), &rerun.as_str().into())
    );
    // Outputs in declaration order, in JSON too.
    let names: Vec<&String> = last["outputs"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["said", "first"]);

    // Every event the schema defines was printed (a schema that keeps a
    // definition nothing prints is out of date too).
    let printed: BTreeSet<String> = [failed, paused, resumed]
        .iter()
        .flatten()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    let defined: BTreeSet<String> = schema["properties"]["event"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(printed, defined);
    assert_eq!(documented_events(), defined, "docs/cli.md § Events lists other events");
}

/// The events `docs/cli.md` lists in its table of `--json` events.
fn documented_events() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    let section = doc.split("### Events (`--json`)").nth(1).unwrap();
    let section = section.split("\n#").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|name| *name != "event")
        .map(str::to_string)
        .collect()
}
