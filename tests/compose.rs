//! Compose stacks with guaranteed teardown: the example end to end,
//! isolation of concurrent executions, readiness failures, and randomised
//! fault injection (failing tests, timeouts, SIGINT, SIGTERM, SIGKILL) after
//! which nothing of the execution may remain.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn leftovers(execution: &str) -> Vec<String> {
    let mut all = Vec::new();
    for kind in ["container", "network", "volume"] {
        for id in labelled(kind, execution) {
            all.push(format!("{kind} {id}"));
        }
    }
    all
}

/// `kflow gc --state STATE [more…]`, which must succeed.
fn gc(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["gc", "--state"];
    all.extend_from_slice(args);
    let o = kflow(dir, &all, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    o
}

fn newest_id(dir: &Path, state: &str) -> String {
    last_execution(dir, state)["id"].as_str().unwrap().to_string()
}

#[test]
fn the_compose_example_runs_and_tears_down() {
    if !docker_or_skip("the_compose_example_runs_and_tears_down") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let o = kflow(
        root,
        &["run", "--state", st, "examples/compose-tests.kflow", "-i", "pr=9001"],
        &[],
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("stack | pr-9001: 2 service(s) ready"), "{out}");
    assert!(out.contains(r#"page = "<!doctype html>\n<title>"#), "{out}");
    assert!(
        out.contains("down | pr-9001: removed 2 container(s), 1 network(s), 1 volume(s)"),
        "{out}"
    );
    let id = newest_id(root, st);
    assert!(leftovers(&id).is_empty(), "{:?}", leftovers(&id));
}

/// A small stack: one service with a healthcheck, and a one-off.
fn stack(dir: &Path, healthy: bool) {
    let check = if healthy { "test -f /w/ready" } else { "false" };
    std::fs::write(
        dir.join("stack.yml"),
        format!(
            r#"services:
  web:
    image: ${{IMG}}
    command: ["sh", "-c", "mkdir -p /w && touch /w/ready && echo web up && exec httpd -f -p 8080 -h /w"]
    ports: ["127.0.0.1::8080"]
    volumes: ["cache:/cache"]
    healthcheck:
      test: ["CMD", "sh", "-c", "{check}"]
      interval: 1s
      retries: 60
volumes:
  cache:
"#
        ),
    )
    .unwrap();
}

/// Builds the busybox image the stacks run, once per test.
/// The image the fault flow's stack runs.
const IMG: &str = "kflow-test/compose-busybox:1";

/// A folder holding the test image (built), the stack (healthy or not) and
/// `flow` as `f.kflow`.
fn flow_dir(healthy: bool, flow: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    busybox_image(dir.path(), IMG);
    stack(dir.path(), healthy);
    std::fs::write(dir.path().join("f.kflow"), flow).unwrap();
    dir
}

/// `kflow run` of `f.kflow` for a pull request, with the history in `st`.
fn run_args(pr: &str) -> Vec<String> {
    [
        "run",
        "--state",
        "st",
        "f.kflow",
        "-i",
        &format!("img={IMG}"),
        "-i",
        &format!("pr={pr}"),
    ]
    .map(String::from)
    .to_vec()
}

fn busybox_image(dir: &Path, tag: &str) {
    let ctx = busybox_context(dir, "");
    let o = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
}

const FLOW: &str = r#"flow fault {
  input img: string
  input pr: int
  input script: string = "sleep 1"
  input test_timeout: duration = 1m
  try {
    task stack = compose.up { file: "stack.yml", project: "kflow-fault-${pr}", env: { IMG: img }, timeout: 30s }
    task probe = shell.run { cmd: ["echo", "port ${stack.port("web", 8080)}"] }
    task test = shell.run { script: script, timeout: test_timeout, after: [probe] }
  } finally {
    task down = compose.down { project: "kflow-fault-${pr}", volumes: true }
  }
}
"#;

#[test]
fn a_service_that_never_gets_healthy_fails_with_its_name_and_logs() {
    if !docker_or_skip("a_service_that_never_gets_healthy_fails_with_its_name_and_logs") {
        return;
    }
    let dir = flow_dir(false, &FLOW.replace("timeout: 30s", "timeout: 3s"));
    let d = dir.path();
    let args = run_args("1");
    let o = kflow(d, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}{err}", text(&o.stdout));
    assert!(
        err.contains("stack: service `web` of kflow-fault-1 is not ready after 3s (running, health: ")
            && err.contains("web up"),
        "{err}"
    );
    assert!(leftovers(&newest_id(d, "st")).is_empty());
}

/// A service that exited, and that Docker will not restart, cannot become
/// ready: `compose.up` fails at once with its exit code and logs, not at the
/// end of its timeout.
#[test]
fn a_service_that_exits_fails_the_stack_at_once() {
    if !docker_or_skip("a_service_that_exits_fails_the_stack_at_once") {
        return;
    }
    let dir = flow_dir(true, &FLOW.replace("timeout: 30s", "timeout: 2m"));
    let d = dir.path();
    let stack = std::fs::read_to_string(d.join("stack.yml")).unwrap();
    let broken = stack.replace(
        r#"command: ["sh", "-c", "mkdir -p /w && touch /w/ready && echo web up && exec httpd -f -p 8080 -h /w"]"#,
        r#"command: ["sh", "-c", "echo web broke: no config; exit 3"]"#,
    );
    assert_ne!(broken, stack);
    std::fs::write(d.join("stack.yml"), broken).unwrap();
    let args = run_args("3");
    let started = Instant::now();
    let o = kflow(d, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let took = started.elapsed();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}{err}", text(&o.stdout));
    assert!(
        err.contains("stack: service `web` of kflow-fault-3 exited with code 3 and will not be restarted")
            && err.contains("web broke: no config"),
        "{err}"
    );
    // Far from the 2 minutes it was given.
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(leftovers(&newest_id(d, "st")).is_empty());
}

#[test]
fn concurrent_executions_of_one_flow_do_not_collide() {
    if !docker_or_skip("concurrent_executions_of_one_flow_do_not_collide") {
        return;
    }
    let dir = flow_dir(true, FLOW);
    let d = dir.path();
    let start = |pr: &str| {
        Command::new(env!("CARGO_BIN_EXE_kflow"))
            .args(run_args(pr))
            .current_dir(d)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start("201"), start("202"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    }
    // Each got its own published port.
    let port = |o: &std::process::Output| {
        text(&o.stdout)
            .lines()
            .find_map(|l| l.split("probe | port ").nth(1).map(str::to_string))
            .unwrap()
    };
    assert_ne!(port(&a), port(&b));
}

/// Randomised faults at random moments; after each, the execution's
/// containers, networks and volumes are gone (after SIGKILL, once the reaper
/// — `kflow gc` — has run). `KFLOW_FAULT_RUNS` sets the number of runs.
#[test]
fn no_fault_leaks_resources() {
    if !docker_or_skip("no_fault_leaks_resources") {
        return;
    }
    let runs: usize = std::env::var("KFLOW_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = flow_dir(true, FLOW);
    let d = dir.path();
    // A small, seeded generator: the sequence of faults is reproducible.
    let seed: u64 = std::env::var("KFLOW_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261128);
    let mut x = seed;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut leaks = Vec::new();
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    for run in 0..runs {
        let fault = ["test-fails", "timeout", "sigint", "sigterm", "sigkill"][next(5) as usize];
        *tally.entry(fault).or_default() += 1;
        let mut args = run_args(&(3000 + run).to_string());
        let more: &[&str] = match fault {
            "test-fails" => &["-i", "script=echo broken >&2; exit 3"],
            "timeout" => &["-i", "script=sleep 30", "-i", "test_timeout=1s"],
            _ => &["-i", "script=sleep 30"],
        };
        args.extend(more.iter().map(|a| a.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_kflow"))
            .args(&args)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let signal = match fault {
            "sigint" => Some(libc::SIGINT),
            "sigterm" => Some(libc::SIGTERM),
            "sigkill" => Some(libc::SIGKILL),
            _ => None,
        };
        if let Some(sig) = signal {
            // Anywhere from before the stack is up to the middle of the test.
            std::thread::sleep(Duration::from_millis(200 + next(4000)));
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child.id() as i32, sig);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "run {run} ({fault}) did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
        let id = newest_id(d, "st");
        if fault == "sigkill" {
            // What the engine was still creating settles, then the reaper runs.
            std::thread::sleep(Duration::from_millis(500));
            // An interrupted execution keeps its named volumes unless asked.
            gc(d, &["st", "--interrupted"]);
        }
        let left = leftovers(&id);
        if !left.is_empty() {
            leaks.push(format!("run {run} ({fault}, execution {id}): {left:?}"));
        }
    }
    eprintln!("fault runs: {runs} {tally:?}; leaks: {}", leaks.len());
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// A stack with a named volume, then a gate: `--detach` pauses there with
/// the stack up.
const PAUSING: &str = r#"flow pausing {
  input img: string
  input pr: int
  task stack = compose.up { file: "stack.yml", project: "kflow-reap-${pr}", env: { IMG: img }, timeout: 30s }
  task gate = approval { summary: "promote?", after: [stack] }
}
"#;

/// Named volumes of an execution (Compose names them `PROJECT_NAME`).
fn volumes(execution: &str) -> Vec<String> {
    labelled("volume", execution)
}

#[test]
fn the_reaper_never_takes_a_paused_execution_of_another_history() {
    if !docker_or_skip("the_reaper_never_takes_a_paused_execution_of_another_history") {
        return;
    }
    let dir = flow_dir(true, PAUSING);
    let d = dir.path();
    let pr = (std::process::id() % 50_000 + 10_000).to_string();
    let mut args = run_args(&pr);
    args.insert(1, "--detach".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = kflow(d, &args, &[]);
    assert!(
        text(&o.stdout).contains("paused"),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let id = newest_id(d, "st");
    let before = leftovers(&id);
    assert!(!volumes(&id).is_empty(), "the stack has a named volume: {before:?}");
    // Another history's reaper, and this history's own: both keep it all.
    for state in ["other", "st"] {
        gc(d, &[state]);
        assert_eq!(
            leftovers(&id),
            before,
            "gc --state {state} took part of a paused execution"
        );
    }
    // A run of another history reaps at its start: still nothing taken.
    std::fs::write(
        d.join("noop.kflow"),
        "flow noop {\n  task t = log { message: \"hi\" }\n}\n",
    )
    .unwrap();
    let o = kflow(d, &["run", "--state", "other", "noop.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(leftovers(&id), before);
    // Once rejected and resumed the execution is finished: its own history
    // takes everything, named volume included.
    let o = kflow(d, &["reject", &id, "--as", "test", "--state", "st"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = kflow(d, &["resume", &id, "--state", "st"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", text(&o.stdout), text(&o.stderr));
    gc(d, &["st"]);
    assert!(leftovers(&id).is_empty(), "{:?}", leftovers(&id));
}

#[test]
fn a_killed_execution_loses_its_containers_but_keeps_its_named_volumes() {
    if !docker_or_skip("a_killed_execution_loses_its_containers_but_keeps_its_named_volumes") {
        return;
    }
    let dir = flow_dir(true, FLOW);
    let d = dir.path();
    let pr = (std::process::id() % 50_000 + 60_000).to_string();
    let mut args = run_args(&pr);
    args.extend(["-i".to_string(), "script=sleep 60".to_string()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(&args)
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the stack is up and the test sleeps.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        assert!(Instant::now() < deadline, "the stack never came up");
        std::thread::sleep(Duration::from_millis(200));
        let o = kflow(d, &["executions", "list", "--json", "--state", "st"], &[]);
        let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout) else {
            continue;
        };
        let Some(id) = list.first().and_then(|e| e["id"].as_str()).map(str::to_string) else {
            continue;
        };
        let o = kflow(d, &["executions", "show", &id, "--json", "--state", "st"], &[]);
        let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let test_running = shown["tasks"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["task"] == "test" && t["state"] == "running"));
        if test_running {
            break id;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let before = leftovers(&id);
    let named = volumes(&id);
    assert!(!named.is_empty(), "{before:?}");
    gc(d, &["other"]);
    assert_eq!(
        leftovers(&id),
        before,
        "another history took a killed execution's resources"
    );
    gc(d, &["st"]);
    assert!(labelled("container", &id).is_empty(), "{:?}", leftovers(&id));
    assert!(labelled("network", &id).is_empty(), "{:?}", leftovers(&id));
    assert_eq!(
        volumes(&id),
        named,
        "an interrupted execution's named volume was removed"
    );
    // Unless asked: the execution can then no longer resume with its data.
    gc(d, &["st", "--interrupted"]);
    assert!(leftovers(&id).is_empty(), "{:?}", leftovers(&id));
}

#[test]
fn the_reaper_leaves_what_no_history_of_its_own_labelled() {
    if !docker_or_skip("the_reaper_leaves_what_no_history_of_its_own_labelled") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tag = "kflow-test/reaper:latest";
    busybox_image(d, tag);
    // A pid no process has: beyond the kernel's pid_max.
    let dead = "4194305";
    let stamp = std::process::id();
    let create = |exec: &str, labels: &[String]| {
        let mut c = Command::new("docker");
        c.args(["create", "--label", &format!("io.kflow.execution={exec}")]);
        for l in labels {
            c.args(["--label", l]);
        }
        let o = c.args([tag, "true"]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    // An older kflow's (a bare pid), and another history's, with a dead pid.
    let legacy = format!("reaper-test-{stamp}-legacy");
    let foreign = format!("reaper-test-{stamp}-foreign");
    create(&legacy, &[format!("io.kflow.pid={dead}")]);
    create(
        &foreign,
        &[format!("io.kflow.pid={dead}"), "io.kflow.history=0123abcd".into()],
    );
    let o = gc(d, &["st"]);
    assert!(text(&o.stdout).contains("left the resources of"), "{}", text(&o.stdout));
    let kept: Vec<String> = [&legacy, &foreign]
        .iter()
        .flat_map(|e| labelled("container", e))
        .collect();
    for id in &kept {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    assert_eq!(kept.len(), 2, "a container of another history was taken");
}
