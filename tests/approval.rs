//! Approvals that pause and resume: the real binary, decisions from another
//! process, the history in between.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A flow whose first task counts its runs, then a gate, then a task using
/// the decision.
const GATE: &str = r#"flow gate {
  task before = shell.run { script: "n=$(cat runs 2>/dev/null || echo 0); echo $((n+1)) > runs; echo build-$((n+1))" }
  task gate = approval { summary: "Ship ${before.stdout}?", reviewers: ["alice", "bob"], timeout: TIMEOUT }
  task after = shell.run { cmd: ["echo", "approved by", gate.by, gate.comment], after: [gate] }
  output by = gate.by
  output at = gate.at
  output first = before.stdout
  output said = after.stdout
}
"#;

fn write_gate(dir: &Path, timeout: &str) {
    std::fs::write(dir.join("gate.kflow"), GATE.replace("TIMEOUT", timeout)).unwrap();
}

fn only_id(dir: &Path) -> String {
    last_execution(dir, ".kflow")["id"].as_str().unwrap().to_string()
}

fn state_of(dir: &Path, id: &str) -> String {
    let o = kflow(dir, &["executions", "show", id, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["state"].as_str().unwrap().to_string()
}

#[test]
fn a_detached_gate_pauses_is_approved_by_a_reviewer_and_resumes_without_rerunning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_gate(d, "1h");
    let o = kflow(d, &["run", "--detach", "gate.kflow"], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let id = only_id(d);
    assert!(
        out.contains(&format!("execution {id} is paused, waiting for approval")),
        "{out}"
    );
    assert_eq!(state_of(d, &id), "paused");
    // Reopening the history does not turn a paused execution into an
    // interrupted one, though its process is gone.
    assert_eq!(state_of(d, &id), "paused");

    // Someone else is refused; a reviewer decides.
    let o = kflow(d, &["approve", &id, "--as", "mallory"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "error: mallory may not decide `gate` (reviewers: alice, bob)\n"
    );
    let o = kflow(d, &["approve", &id[..12], "--as", "alice", "--comment", "ship it"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("`kflow resume"), "{}", text(&o.stdout));
    let o = kflow(d, &["approve", &id, "--as", "bob"], &[]);
    assert_eq!(o.status.code(), Some(2), "one decision per gate");

    let o = kflow(d, &["resume", &id], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(
        out.contains("before | succeeded in an earlier run: not run again"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("runs")).unwrap().trim(),
        "1",
        "`before` ran once"
    );
    // Decided while paused: the resumed gate says who decided, and never
    // that it waits.
    assert!(!out.contains("waiting for approval"), "{out}");
    assert!(out.contains("gate | approved by alice at "), "{out}");
    assert_eq!(output(&out, "first"), "build-1");
    assert_eq!(output(&out, "by"), "alice");
    assert_eq!(output(&out, "said"), "approved by alice ship it");
    // RFC 3339 with an offset.
    let at = output(&out, "at");
    assert!(
        at.len() == 25 && at.as_bytes()[10] == b'T' && (at[19..].starts_with('+') || at[19..].starts_with('-')),
        "{at}"
    );
    assert_eq!(state_of(d, &id), "succeeded");
    let o = kflow(d, &["resume", &id], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("only paused or interrupted executions resume"));
}

/// A gate rejected while paused: resuming fails it at once with who
/// rejected it and why, and says nothing of waiting.
#[test]
fn resuming_a_rejected_gate_fails_it_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_gate(d, "1h");
    let o = kflow(d, &["run", "--detach", "gate.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let id = only_id(d);
    let o = kflow(d, &["reject", &id, "--as", "bob", "--comment", "not today"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = kflow(d, &["resume", &id], &[]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        !out.contains("waiting for approval") && !out.contains("decide with"),
        "{out}"
    );
    assert!(
        out.contains("gate | failed in ") && err.contains("gate: rejected by bob at "),
        "{out}{err}"
    );
    assert!(err.contains(": not today"), "{err}");
    assert!(out.contains("after | skipped"), "{out}");
    assert_eq!(state_of(d, &id), "failed");
}

#[test]
fn a_waiting_run_continues_when_another_shell_approves_or_rejects() {
    for (verb, code) in [("approve", 0), ("reject", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_gate(d, "1h");
        let child = Command::new(env!("CARGO_BIN_EXE_kflow"))
            .args(["run", "gate.kflow"])
            .current_dir(d)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the gate to be requested.
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = loop {
            assert!(Instant::now() < deadline, "the gate never paused");
            if d.join(".kflow/history.db").exists() {
                let o = kflow(d, &["executions", "list", "--json"], &[]);
                if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout) {
                    if list.first().is_some_and(|e| e["state"] == "paused") {
                        break list[0]["id"].as_str().unwrap().to_string();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let o = kflow(d, &[verb, &id, "--as", "bob", "--comment", "not today"], &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        assert!(
            !text(&o.stdout).contains("not running"),
            "the waiting process picks it up"
        );
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        if verb == "reject" {
            assert!(
                text(&out.stderr).contains("gate: rejected by bob at ") && text(&out.stderr).contains(": not today"),
                "{}",
                text(&out.stderr)
            );
            assert!(text(&out.stdout).contains("after | skipped"));
        } else {
            assert_eq!(output(&text(&out.stdout), "by"), "bob");
        }
    }
}

#[test]
fn an_expired_gate_fails_and_can_no_longer_be_approved() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_gate(d, "1s");
    let o = kflow(d, &["run", "gate.kflow"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("gate: no decision before ")
            && text(&o.stderr).contains("the gate fails (expiry never approves)"),
        "{}",
        text(&o.stderr)
    );
    let id = only_id(d);
    let o = kflow(d, &["approve", &id, "--as", "alice"], &[]);
    assert_eq!(o.status.code(), Some(2));

    // Detached, the deadline passes while nobody runs: resuming fails the gate.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_gate(d, "1s");
    let o = kflow(d, &["run", "--detach", "gate.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let id = only_id(d);
    std::thread::sleep(Duration::from_millis(1200));
    let o = kflow(d, &["approve", &id, "--as", "alice"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("expired"), "{}", text(&o.stderr));
    let o = kflow(d, &["resume", &id], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("expiry never approves"), "{}", text(&o.stderr));
}

/// After `kill -9`, `kflow resume` continues the interrupted execution:
/// what succeeded is kept, what was cut off runs again.
#[test]
fn an_execution_killed_mid_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flow = r#"flow crash {
  task first = shell.run { script: "n=$(cat first-runs 2>/dev/null || echo 0); echo $((n+1)) > first-runs; echo once" }
  task slow = shell.run { script: "if [ -e second-time ]; then echo quick; else touch second-time started; sleep 30; fi", after: [first] }
  output first = first.stdout
  output slow = slow.stdout
}
"#;
    std::fs::write(d.join("crash.kflow"), flow).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(["run", "crash.kflow"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.join("started").exists() {
        assert!(Instant::now() < deadline, "the slow task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let id = only_id(d);
    assert_eq!(state_of(d, &id), "interrupted");
    let o = kflow(d, &["resume", &id], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("first | succeeded in an earlier run"), "{out}");
    assert_eq!(output(&out, "first"), "once");
    assert_eq!(output(&out, "slow"), "quick");
    assert_eq!(std::fs::read_to_string(d.join("first-runs")).unwrap().trim(), "1");
    assert_eq!(state_of(d, &id), "succeeded");
}

#[test]
fn a_decision_needs_a_name_and_records_the_os_user_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("open.kflow"),
        "flow open {\n  task gate = approval { summary: \"go?\", timeout: 1h }\n}\n",
    )
    .unwrap();
    let o = kflow(d, &["run", "--detach", "open.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let id = only_id(d);
    for bad in ["", "   ", "al\nice", "\u{1b}[2Jalice"] {
        let o = kflow(d, &["approve", &id, "--as", bad], &[]);
        assert_eq!(o.status.code(), Some(2), "--as {bad:?} was accepted");
        assert!(text(&o.stderr).contains("--as"), "{}", text(&o.stderr));
    }
    assert_eq!(state_of(d, &id), "paused", "no refused name decided the gate");
    let o = kflow(d, &["approve", &id, "--as", "  alice ", "--comment", "ok"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = kflow(d, &["executions", "show", &id, "--json"], &[]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let gate = &shown["approvals"][0];
    assert_eq!(gate["decision"], "approved");
    assert_eq!(gate["by"], "alice");
    let me = Command::new("id").arg("-un").output().unwrap();
    assert_eq!(gate["os_user"], text(&me.stdout).trim(), "{gate}");
}

/// Every subcommand finds the history by one rule (`--state`, else
/// `KFLOW_STATE`, else the nearest `.kflow` upward), and the commands kflow
/// prints work as printed, `--state` included when it was given.
#[test]
fn every_subcommand_finds_the_history_by_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    let deeper = project.join("flows/deeper");
    std::fs::create_dir_all(&deeper).unwrap();
    write_gate(&project.join("flows"), "1h");
    let o = kflow(project, &["run", "--detach", "flows/gate.kflow"], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(
        project.join(".kflow/history.db").exists(),
        "the history is where kflow was run"
    );
    assert!(!project.join("flows/.kflow").exists());
    let id = only_id(project);
    // Found upward from a subfolder.
    let o = kflow(&deeper, &["executions", "list"], &[]);
    assert!(text(&o.stdout).contains(&id), "{}{}", text(&o.stdout), text(&o.stderr));
    // The printed commands, run as printed (a name for NAME) from a subfolder.
    let printed = |out: &str, prefix: &str| {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{out}"));
        line.split("   (").next().unwrap().replace("NAME", "alice")
    };
    let sh = |cwd: &Path, command: &str| {
        Command::new("sh")
            .args([
                "-c",
                &format!(
                    "{} {}",
                    env!("CARGO_BIN_EXE_kflow"),
                    command.strip_prefix("kflow ").unwrap()
                ),
            ])
            .current_dir(cwd)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = sh(&deeper, &printed(&out, "decide: "));
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let o = sh(&deeper, &printed(&out, "then:   "));
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(state_of(project, &id), "succeeded");

    // A history given with --state is named in the hints.
    let o = kflow(
        project,
        &["run", "--detach", "--state", "other place", "flows/gate.kflow"],
        &[],
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let decide = printed(&out, "decide: ");
    assert!(decide.ends_with(" --as alice --state 'other place'"), "{decide}");
    let o = sh(project, &decide);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    // KFLOW_STATE points every subcommand there.
    let o = kflow(
        &deeper,
        &["executions", "list"],
        &[("KFLOW_STATE", &project.join("other place").to_string_lossy())],
    );
    let listed = text(&o.stdout);
    assert!(listed.contains("paused") && !listed.contains(&id), "{listed}");
}
