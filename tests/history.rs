//! Reading and tending the execution history: `kflow logs` (timestamps,
//! `--follow`, `latest`), `kflow executions list` filters and
//! `kflow executions prune`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kflow(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(args)
        .current_dir(dir)
        .env_remove("KFLOW_STATE")
        .output()
        .expect("kflow runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn list(dir: &Path, filters: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["executions", "list", "--json"];
    args.extend_from_slice(filters);
    let o = kflow(dir, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

const TWO: &str = r#"flow good {
  task say = shell.run { script: "echo one; echo two" }
}

flow bad {
  task fail = shell.run { script: "echo about to fail; exit 3" }
}
"#;

/// Three executions: good, bad, good (oldest first).
fn three_runs(dir: &Path) {
    std::fs::write(dir.join("good.kflow"), TWO.split("\n\n").next().unwrap()).unwrap();
    std::fs::write(dir.join("bad.kflow"), TWO.split("\n\n").nth(1).unwrap()).unwrap();
    for (file, code) in [("good.kflow", 0), ("bad.kflow", 1), ("good.kflow", 0)] {
        let o = kflow(dir, &["run", file]);
        assert_eq!(o.status.code(), Some(code), "{}", text(&o.stderr));
    }
}

#[test]
fn logs_carry_timestamps_on_request_and_latest_names_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let newest = list(dir.path(), &[])[0]["id"].as_str().unwrap().to_string();

    let plain = kflow(dir.path(), &["logs", "latest"]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
    assert_eq!(text(&plain.stdout), "say | one\nsay | two\n");

    let stamped = kflow(dir.path(), &["logs", "latest", "say", "--timestamps"]);
    let out = text(&stamped.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, want) in lines.iter().zip(["one", "two"]) {
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, want);
        let at: jiff::Timestamp = stamp.parse().unwrap_or_else(|e| panic!("{stamp}: {e}"));
        let age = jiff::Timestamp::now().as_second() - at.as_second();
        assert!((0..600).contains(&age), "{stamp}");
    }

    let show = kflow(dir.path(), &["executions", "show", "latest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["id"], newest.as_str());
}

#[test]
fn executions_list_filters_by_flow_and_status_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    assert_eq!(list(dir.path(), &[]).len(), 3);
    let good = list(dir.path(), &["--flow", "good"]);
    assert_eq!(good.len(), 2);
    assert!(good.iter().all(|e| e["flow"] == "good"));
    let failed = list(dir.path(), &["--status", "failed"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["flow"], "bad");
    let one = list(dir.path(), &["--limit", "1"]);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["id"], list(dir.path(), &[])[0]["id"]);
    let o = kflow(dir.path(), &["executions", "list", "--status", "sleeping"]);
    assert_eq!(o.status.code(), Some(2), "an unknown status is a usage error");
}

#[test]
fn prune_removes_old_finished_executions_with_their_logs_and_keeps_paused_ones() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let gate = r#"flow gated {
  task ask = approval { summary: "ship?", reviewers: ["alice"] }
}
"#;
    std::fs::write(dir.path().join("gated.kflow"), gate).unwrap();
    let o = kflow(dir.path(), &["run", "gated.kflow", "--detach"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let all = list(dir.path(), &[]);
    assert_eq!(all.len(), 4);
    assert_eq!(all[0]["state"], "paused");
    let oldest = all[3]["id"].as_str().unwrap().to_string();
    let logs = dir.path().join(".kflow/logs").join(format!("{oldest}.log"));
    assert!(logs.is_file());

    let o = kflow(dir.path(), &["executions", "prune"]);
    assert_eq!(o.status.code(), Some(2), "prune needs --keep or --older-than");

    let o = kflow(dir.path(), &["executions", "prune", "--keep", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let left = list(dir.path(), &[]);
    let ids: Vec<&str> = left.iter().map(|e| e["id"].as_str().unwrap()).collect();
    // The paused one is kept whatever its age (it can still be resumed),
    // and the newest finished one is the one kept.
    assert_eq!(ids, [all[0]["id"].as_str().unwrap(), all[1]["id"].as_str().unwrap()]);
    assert!(text(&o.stdout).contains("removed 2 executions"), "{}", text(&o.stdout));
    assert!(!logs.exists(), "the logs of a pruned execution are removed");

    let o = kflow(dir.path(), &["executions", "prune", "--older-than", "1h"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(list(dir.path(), &[]).len(), 2, "nothing is an hour old");
    let o = kflow(dir.path(), &["executions", "prune", "--older-than", "0s"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(list(dir.path(), &[]).len(), 1, "only the paused one stays");
    let o = kflow(dir.path(), &["executions", "prune", "--older-than", "soon"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn logs_follow_prints_lines_as_they_come_and_ends_with_the_execution() {
    let dir = tempfile::tempdir().unwrap();
    let flow = r#"flow slow {
  task first = shell.run { script: "echo start" }
  task tick = shell.run { script: "for i in 1 2 3; do echo tick $i; sleep 0.5; done", after: [first] }
}
"#;
    std::fs::write(dir.path().join("slow.kflow"), flow).unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(["run", "slow.kflow"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the execution to be recorded, then follow it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.path().join(".kflow/history.db").exists()
        || kflow(dir.path(), &["executions", "list", "--json"]).stdout.len() < 5
    {
        assert!(Instant::now() < deadline, "the execution never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let follow = kflow(dir.path(), &["logs", "latest", "--follow"]);
    assert!(run.wait().unwrap().success());
    assert_eq!(follow.status.code(), Some(0), "{}", text(&follow.stderr));
    assert_eq!(
        text(&follow.stdout),
        "first | start\ntick | tick 1\ntick | tick 2\ntick | tick 3\n"
    );
    assert!(started.elapsed() > Duration::from_millis(800), "it waited for the task");
    // Following a finished execution prints it all and ends at once.
    let again = kflow(dir.path(), &["logs", "latest", "--follow"]);
    assert_eq!(again.stdout, follow.stdout);
}

/// A flow whose second task fails until a file exists, counting its first
/// task's runs in another file.
const FLAKY: &str = r#"flow flaky {
  input who: string = "nobody"
  task count = shell.run { script: "echo run >> runs.txt; echo counted ${who}" }
  task check = shell.run { script: "test -f fixed", after: [count] }
  output said = count.stdout
}
"#;

#[test]
fn rerun_starts_a_new_linked_execution_with_the_same_inputs_and_from_failed_keeps_what_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flaky.kflow"), FLAKY).unwrap();
    let o = kflow(dir.path(), &["run", "flaky.kflow", "--input", "who=ann"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let first = list(dir.path(), &[])[0]["id"].as_str().unwrap().to_string();

    // The same inputs, every task again: still failing.
    let o = kflow(dir.path(), &["rerun", &first]);
    assert_eq!(o.status.code(), Some(1), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("runs.txt")).unwrap(),
        "run\nrun\n"
    );
    let second = list(dir.path(), &[])[0].clone();
    assert_ne!(second["id"], first.as_str());
    assert_eq!(second["rerun_of"], first.as_str());
    assert_eq!(second["inputs"]["who"], "ann");

    // Fixed: from the failed task on, `count` is restored, not run.
    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let o = kflow(dir.path(), &["rerun", "latest", "--from-failed"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("runs.txt")).unwrap(),
        "run\nrun\n"
    );
    assert!(out.contains("said = counted ann"), "{out}");
    let third = list(dir.path(), &[])[0].clone();
    assert_eq!(third["rerun_of"], second["id"]);
    assert_eq!(third["state"], "succeeded");
    let show = kflow(dir.path(), &["executions", "show", "latest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let states: Vec<(&str, &str)> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["task"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("count", "succeeded"), ("check", "succeeded")]);
    let text_show = kflow(dir.path(), &["executions", "show", "latest"]);
    let shown = text(&text_show.stdout);
    let link = shown
        .lines()
        .find(|l| l.starts_with("rerun of"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(link.ends_with(second["id"].as_str().unwrap()), "{shown}");

    // Nothing failed in a succeeded execution.
    let o = kflow(dir.path(), &["rerun", "latest", "--from-failed"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("succeeded"), "{}", text(&o.stderr));
}

/// An execution logs through one file, however many task runs log: with
/// 128 file descriptors, 400 logging tasks lose no line (one file per task
/// run, kept open, ran out of descriptors after about a hundred).
#[test]
fn many_logging_tasks_need_one_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut flow = String::from("flow many {\n");
    for i in 0..400 {
        flow.push_str(&format!("  task t{i} = log {{ message: \"line of t{i}\" }}\n"));
    }
    flow.push_str("}\n");
    std::fs::write(dir.path().join("many.kflow"), flow).unwrap();
    let o = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -n 128 && exec {} run many.kflow", env!("CARGO_BIN_EXE_kflow")),
        ])
        .current_dir(dir.path())
        .env_remove("KFLOW_STATE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("Too many open files"), "{}", text(&o.stderr));
    let o = kflow(dir.path(), &["logs", "latest"]);
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 400, "{out}");
    assert!(out.contains("t399 | line of t399"), "{out}");
    let o = kflow(dir.path(), &["logs", "latest", "t7"]);
    assert_eq!(text(&o.stdout), "line of t7\n");
}
