//! `kflow run` end to end: real processes, real signals.

mod support;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kflow(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kflow"));
    cmd.args(args).current_dir(dir).env_remove("NO_COLOR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("kflow runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const HELLO: &str = r#"flow hello {
  input name: string = "world"
  secret token = env("HELLO_TOKEN")
  task greet = shell.run { cmd: ["echo", "hello ${name}"] }
  task leak = shell.run { script: "echo the token is $TOKEN", env: { TOKEN: token }, after: [greet] }
  output greeting = greet.stdout
  output said = leak.stdout
}
"#;

#[test]
fn a_flow_runs_and_prints_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.kflow"), HELLO).unwrap();
    let o = kflow(
        dir.path(),
        &["run", "hello.kflow", "--input", "name=kflow"],
        &[("HELLO_TOKEN", "t0p-s3cret")],
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("greeting = hello kflow"), "{out}");
    // The secret is passed to the task, and redacted from everything it prints.
    assert!(out.contains("said = the token is ***"), "{out}");
    assert!(out.contains("leak | the token is ***"), "{out}");
    assert!(!out.contains("t0p-s3cret") && !text(&o.stderr).contains("t0p-s3cret"));
}

#[test]
fn json_events_are_one_object_per_line_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.kflow"), HELLO).unwrap();
    let o = kflow(
        dir.path(),
        &["run", "--json", "hello.kflow"],
        &[("HELLO_TOKEN", "t0p-s3cret")],
    );
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    assert!(!out.contains("t0p-s3cret"));
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events
        .iter()
        .any(|e| e["event"] == "log" && e["task"] == "greet" && e["text"] == "hello world"));
    let last = events.last().unwrap();
    assert_eq!(last["event"], "execution");
    assert_eq!(last["state"], "succeeded");
    assert_eq!(last["outputs"]["greeting"], "hello world");
}

#[test]
fn a_failing_flow_exits_1_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fail.kflow"),
        "flow fail {\n  task boom = shell.run { script: \"echo broken >&2; exit 7\" }\n}\n",
    )
    .unwrap();
    let o = kflow(dir.path(), &["run", "fail.kflow"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("flow fail failed:"), "{err}");
    assert!(
        err.contains("boom: `sh -c` exited with status 7:") && err.contains("broken"),
        "{err}"
    );
}

#[test]
fn bad_inputs_and_missing_secrets_stop_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.kflow"), HELLO).unwrap();
    let o = kflow(
        dir.path(),
        &["run", "hello.kflow", "--input", "nme=x"],
        &[("HELLO_TOKEN", "x")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "error: flow `hello` has no input `nme`: did you mean `name`?\n"
    );
    assert!(o.stdout.is_empty(), "nothing ran");
    let o = kflow(dir.path(), &["run", "hello.kflow"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "error: secret `token`: environment variable `HELLO_TOKEN` is not set\n"
    );
    let o = kflow(
        dir.path(),
        &["run", "hello.kflow", "--input", "name"],
        &[("HELLO_TOKEN", "x")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("write NAME=VALUE"));
}

#[test]
fn a_flow_with_errors_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.kflow"),
        "flow bad {\n  task t = log { mesage: \"x\" }\n}\n",
    )
    .unwrap();
    let o = kflow(dir.path(), &["run", "bad.kflow"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("kflow::name::unknown-property") && err.contains("nothing was run"),
        "{err}"
    );
}

#[test]
fn dry_run_prints_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.kflow"), HELLO).unwrap();
    let o = kflow(
        dir.path(),
        &["run", "--dry-run", "hello.kflow"],
        &[("HELLO_TOKEN", "x")],
    );
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    assert!(
        out.contains("flow hello: 2 tasks") && out.contains("leak (shell.run) after greet"),
        "{out}"
    );
}

/// Starts `kflow run FILE` in `dir` and waits until the flow's task has
/// created `marker`.
fn start_and_wait(dir: &Path, file: &str, marker: &Path, stdout: Stdio) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(["run", file])
        .current_dir(dir)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// SIGINT: running tasks are cancelled (their processes killed), `finally`
/// runs, the exit code is 130.
#[test]
fn sigint_cancels_and_runs_finally() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let pidfile = dir.path().join("grandchild.pid");
    // The task leaves a grandchild in the background: cancelling the task
    // must kill it too.
    let flow = format!(
        "flow sig {{\n  try {{\n    task long = shell.run {{ script: \"sleep 60 & echo $! > {}; touch {}; sleep 30\" }}\n  }} finally {{\n    task cleanup = shell.run {{ cmd: [\"echo\", \"tore down\"] }}\n  }}\n}}\n",
        pidfile.display(),
        marker.display()
    );
    std::fs::write(dir.path().join("sig.kflow"), flow).unwrap();
    let mut child = start_and_wait(dir.path(), "sig.kflow", &marker, Stdio::piped());
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(out.contains("long | cancelled"), "{out}");
    assert!(out.contains("cleanup | tore down"), "{out}");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!process_alive(pid), "the task's background process {pid} survived");
}

/// Whether a process exists and is not a zombie waiting for its parent.
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn only_execution(dir: &Path) -> serde_json::Value {
    let o = kflow(dir, &["executions", "list", "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 1);
    list[0].clone()
}

/// `executions show --json` of the history's one execution.
fn shown_only_execution(dir: &Path) -> serde_json::Value {
    let exec = only_execution(dir);
    let o = kflow(
        dir,
        &["executions", "show", exec["id"].as_str().unwrap(), "--json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn executions_are_recorded_with_tasks_attempts_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.kflow"), HELLO).unwrap();
    let o = kflow(dir.path(), &["run", "hello.kflow"], &[("HELLO_TOKEN", "t0p-s3cret")]);
    assert_eq!(o.status.code(), Some(0));
    let exec = only_execution(dir.path());
    assert_eq!(exec["state"], "succeeded");
    assert_eq!(exec["outputs"]["greeting"], "hello world");
    let id = exec["id"].as_str().unwrap();
    let o = kflow(dir.path(), &["executions", "show", id, "--json"], &[]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tasks = shown["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(tasks.iter().all(|t| t["state"] == "succeeded" && t["attempts"] == 1));
    let o = kflow(dir.path(), &["logs", id, "leak"], &[]);
    assert_eq!(text(&o.stdout), "the token is ***\n");
    // Nothing in the history holds the secret.
    for entry in support::files_under(&dir.path().join(".kflow")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("t0p-s3cret"),
            "{} holds the secret",
            entry.display()
        );
    }
    let o = kflow(dir.path(), &["executions", "show", "nope"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o.stderr), "error: no execution `nope` in the history\n");
}

/// After `kill -9` nothing is half-written: the execution shows as interrupted.
#[test]
fn an_execution_killed_with_sigkill_shows_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let flow = format!(
        // Short: after SIGKILL nothing is left to kill this sleep.
        "flow k {{\n  task long = shell.run {{ script: \"touch {}; sleep 3\" }}\n}}\n",
        marker.display()
    );
    std::fs::write(dir.path().join("k.kflow"), flow).unwrap();
    let mut child = start_and_wait(dir.path(), "k.kflow", &marker, Stdio::null());
    child.kill().unwrap();
    child.wait().unwrap();
    let exec = only_execution(dir.path());
    assert_eq!(exec["state"], "interrupted");
    let o = kflow(
        dir.path(),
        &["executions", "show", exec["id"].as_str().unwrap(), "--json"],
        &[],
    );
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["tasks"][0]["state"], "interrupted");
}

/// Processes of this machine started for an execution (by the variable
/// kflow gives every process a task starts).
fn processes_of(execution: &str) -> Vec<i32> {
    let want = format!("KFLOW_EXECUTION={execution}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == want.as_bytes()))
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}

#[test]
fn no_process_of_a_killed_execution_outlives_the_next_kflow() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let flow = format!(
        "flow k {{\n  task long = shell.run {{ script: \"sleep 300 & sleep 301 & touch {}; sleep 302\" }}\n}}\n",
        marker.display()
    );
    std::fs::write(dir.path().join("k.kflow"), flow).unwrap();
    let mut child = start_and_wait(dir.path(), "k.kflow", &marker, Stdio::null());
    let exec = only_execution(dir.path());
    let id = exec["id"].as_str().unwrap().to_string();
    assert!(processes_of(&id).len() >= 3, "{:?}", processes_of(&id));
    child.kill().unwrap();
    child.wait().unwrap();
    // The task's shell dies with kflow (a parent-death signal); what it
    // started is taken by the next kflow of this history (here `gc`; a run
    // does it too). The shell's death is asynchronous: count what is left
    // once it is gone (the three sleeps), or the count races it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_of(&id).len() > 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = processes_of(&id).len();
    let o = kflow(dir.path(), &["gc"], &[]);
    let said = format!("killed {} process(es)", before);
    assert!(
        text(&o.stdout).contains(&said),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !processes_of(&id).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(processes_of(&id).is_empty(), "left running: {:?}", processes_of(&id));
}

#[test]
fn retry_does_not_retry_what_cannot_succeed() {
    // A malformed URL, or one kflow cannot fetch, fails the same way on
    // every attempt: retried, it only wastes the delays. A command that
    // fails is retried (tested below).
    let dir = tempfile::tempdir().unwrap();
    let flow = "flow r {\n  input url: string = \"not a url\"\n  task parsed = http.request {\n    url: url\n    retry: { attempts: 3, delay: 10ms }\n    continue_on_error: true\n  }\n  task fetched = http.request {\n    url: \"ftp://127.0.0.1/file\"\n    retry: { attempts: 3, delay: 10ms }\n    continue_on_error: true\n  }\n}\n";
    std::fs::write(dir.path().join("r.kflow"), flow).unwrap();
    let o = kflow(dir.path(), &["run", "r.kflow"], &[]);
    let out = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(out.contains("is not a valid URL"), "{out}");
    assert!(!out.contains("attempt 2"), "{out}");
    let shown = shown_only_execution(dir.path());
    for task in shown["tasks"].as_array().unwrap() {
        assert_eq!(task["attempts"], 1, "{task}");
        assert_eq!(task["state"], "failed", "{task}");
    }
}

#[test]
fn retries_are_counted_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let flow = "flow r {\n  task flaky = shell.run {\n    script: \"n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 2 ]\"\n    retry: { attempts: 4, delay: 10ms }\n  }\n}\n";
    std::fs::write(dir.path().join("r.kflow"), flow).unwrap();
    let o = kflow(dir.path(), &["run", "r.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("flaky | attempt 3"));
    let shown = shown_only_execution(dir.path());
    assert_eq!(shown["tasks"][0]["attempts"], 3);
    assert_eq!(shown["tasks"][0]["state"], "succeeded");
}

#[test]
fn finally_runs_after_a_timeout_and_dependants_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let flow = "flow t {\n  try {\n    task stuck = shell.run { cmd: [\"sleep\", \"30\"], timeout: 300ms }\n  } finally {\n    task cleanup = shell.run { cmd: [\"echo\", \"cleaned\"] }\n  }\n  task after_all = log { message: \"unreachable\", after: [stuck] }\n}\n";
    std::fs::write(dir.path().join("t.kflow"), flow).unwrap();
    let o = kflow(dir.path(), &["run", "t.kflow"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(
        out.contains("stuck | failed") && out.contains("timed out after 300ms"),
        "{out}"
    );
    assert!(out.contains("cleanup | cleaned"), "{out}");
    assert!(out.contains("after_all | skipped"), "{out}");
}

/// `for` over a list given on the command line: one task run per item,
/// `--jobs` bounding how many run at once, every iteration in the history.
#[test]
fn loops_fan_out_within_jobs_and_are_recorded_per_iteration() {
    let dir = tempfile::tempdir().unwrap();
    // Each iteration records when it starts and ends (ms since the epoch).
    let flow = r#"flow fan {
  input targets: list<string>
  for t in targets {
    task probe = shell.run {
      script: "s=$(date +%s%3N); sleep 0.3; echo ${t} $s $(date +%s%3N)"
    }
  }
  output seen = probe.stdout
}
"#;
    std::fs::write(dir.path().join("fan.kflow"), flow).unwrap();
    let o = kflow(
        dir.path(),
        &["run", "--json", "--jobs", "2", "fan.kflow", "-i", "targets=a,b,c,d"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let events: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let finished: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "finished")
        .map(|e| e["task"].as_str().unwrap())
        .collect();
    let mut sorted = finished.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["probe[a]", "probe[b]", "probe[c]", "probe[d]"]);
    let seen = events.last().unwrap()["outputs"]["seen"].as_array().unwrap().clone();
    let spans: Vec<(String, u64, u64)> = seen
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.as_str().unwrap().split(' ').collect();
            (
                parts[0].to_string(),
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
            )
        })
        .collect();
    // In the order of the list, whatever order they ran in.
    let names: Vec<&str> = spans.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    // Never more than two at once: at each start, count who is running.
    for (_, start, _) in &spans {
        let running = spans.iter().filter(|(_, s, e)| s <= start && start < e).count();
        assert!(running <= 2, "{spans:?}");
    }
    // And the fan-out did run in parallel: at some start, two were running
    // (measured from inside the tasks, so a loaded machine cannot fake it).
    let most = spans
        .iter()
        .map(|(_, start, _)| spans.iter().filter(|(_, s, e)| s <= start && start < e).count())
        .max()
        .unwrap();
    assert_eq!(most, 2, "{spans:?}");
    let exec = only_execution(dir.path());
    let o = kflow(
        dir.path(),
        &["executions", "show", exec["id"].as_str().unwrap(), "--json"],
        &[],
    );
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tasks = shown["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    assert!(tasks
        .iter()
        .all(|t| t["state"] == "succeeded" && t["kind"] == "shell.run"));
    let o = kflow(dir.path(), &["logs", exec["id"].as_str().unwrap(), "probe[c]"], &[]);
    assert!(text(&o.stdout).starts_with("c "), "{}", text(&o.stdout));
}

/// Outputs print in the order the flow declares them (here and in
/// `executions show`), one that would not read back on one line quoted;
/// loop runs are named by their items where those are short plain words.
#[test]
fn outputs_keep_their_order_and_loop_runs_are_named_by_their_items() {
    let dir = tempfile::tempdir().unwrap();
    let flow = r#"flow order {
  input platforms: list<string> = ["linux/amd64", "linux/arm64"]
  input twins: list<string> = ["x", "x"]
  for p in platforms {
    task build = shell.run { cmd: ["echo", "built ${p}"] }
  }
  for t in twins {
    task twin = shell.run { cmd: ["echo", t] }
  }
  task notes = shell.run { script: "printf 'one\ntwo'" }
  output zeta = "last letter"
  output notes = notes.stdout
  output alpha = "first letter"
}
"#;
    std::fs::write(dir.path().join("order.kflow"), flow).unwrap();
    let o = kflow(dir.path(), &["run", "order.kflow"], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let tail: Vec<&str> = out.lines().rev().take(3).collect();
    assert_eq!(
        tail,
        ["alpha = first letter", r#"notes = "one\ntwo""#, "zeta = last letter"],
        "{out}"
    );
    assert!(out.contains("build[linux/arm64] | built linux/arm64"), "{out}");
    assert!(out.contains("twin[1] | x"), "{out}");
    let o = kflow(dir.path(), &["logs", "latest", "build[linux/arm64]"], &[]);
    assert_eq!(text(&o.stdout), "built linux/arm64\n", "{}", text(&o.stderr));
    let o = kflow(dir.path(), &["executions", "show", "latest"], &[]);
    let shown = text(&o.stdout);
    let outputs: Vec<&str> = shown.lines().filter(|l| l.starts_with("output ")).collect();
    assert_eq!(
        outputs,
        [
            "output zeta = last letter",
            r#"output notes = "one\ntwo""#,
            "output alpha = first letter"
        ],
        "{shown}"
    );
    assert!(shown.contains("build[linux/amd64]"), "{shown}");
    // The item's `/` makes no folder of the history's logs: one file holds
    // the execution's.
    let logs = support::files_under(&dir.path().join(".kflow/logs"));
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].parent().unwrap(), dir.path().join(".kflow/logs"), "{logs:?}");
}

/// A history folder that cannot be created stops the run before anything
/// runs, with one line saying where.
#[test]
fn an_unusable_history_folder_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.kflow"), HELLO).unwrap();
    std::fs::write(dir.path().join("not-a-folder"), "").unwrap();
    let o = kflow(
        dir.path(),
        &["run", "hello.kflow", "--state", "not-a-folder/state"],
        &[("HELLO_TOKEN", "x")],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.starts_with("error: cannot create the history folder not-a-folder/state:"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "nothing ran");
}

/// On a terminal (a pseudo-terminal from `script`), running tasks are shown
/// in a live footer that is redrawn, and finished tasks scroll above it.
#[test]
fn a_terminal_gets_a_live_view_of_running_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let flow = r#"flow live {
  for i in ["1", "2"] {
    task nap = shell.run { script: "echo start ${i}; sleep 0.${i}5" }
  }
  task fin = log { message: "all done", after: [nap] }
}
"#;
    std::fs::write(dir.path().join("live.kflow"), flow).unwrap();
    let command = format!("{} run live.kflow", env!("CARGO_BIN_EXE_kflow"));
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("COLUMNS", "80")
        .env("NO_COLOR", "1")
        .output()
        .expect("script (util-linux) runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let out = text(&o.stdout);
    // The footer: counts and each running task with its duration, erased
    // (cursor up, clear) before anything else is printed.
    assert!(out.contains("running 2 · 0 done"), "{out:?}");
    assert!(out.contains("  nap[1]  0."), "{out:?}");
    assert!(out.contains("\x1b[3F\x1b[J"), "{out:?}");
    // Finished tasks scroll above it; starts are not printed as lines.
    assert!(out.contains("nap[2] | succeeded in 0.2"), "{out:?}");
    assert!(out.contains("fin | all done"), "{out:?}");
    assert!(!out.contains("| started"), "{out:?}");
    // The footer is gone at the end: the last thing printed is not it.
    let tail = out.rsplit("\x1b[J").next().unwrap();
    assert!(!tail.contains("running "), "{tail:?}");
}

/// Text that runs something if a shell ever reads it as code.
const HOSTILE: &str = "1; touch PWNED1 $(touch PWNED2) `touch PWNED3` ' \" \\ é\n${HOME} *";

fn pwned(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("PWNED"))
        .collect()
}

#[test]
fn values_reach_processes_byte_for_byte_through_env_and_argv() {
    let dir = tempfile::tempdir().unwrap();
    let flow = r#"flow safe {
  input v: string
  task by_env = shell.run { script: "printf '%s' \"$V\" > from-env", env: { V: v } }
  task by_argv = shell.run { cmd: ["sh", "-c", "printf '%s' \"$1\" > from-argv", "sh", v] }
}
"#;
    std::fs::write(dir.path().join("safe.kflow"), flow).unwrap();
    let o = kflow(dir.path(), &["check", "--deny-warnings", "safe.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let o = kflow(dir.path(), &["run", "safe.kflow", "-i", &format!("v={HOSTILE}")], &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    for f in ["from-env", "from-argv"] {
        assert_eq!(std::fs::read_to_string(dir.path().join(f)).unwrap(), HOSTILE, "{f}");
    }
    assert!(pwned(dir.path()).is_empty());
}

/// The lint finds the injection, and its fix, applied as an editor would
/// (from `check --format json`), makes the same flow safe.
#[test]
fn the_shell_interpolation_fix_closes_the_injection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut src = r#"flow unsafe {
  input v: string
  task quoted = shell.run { script: "echo 'v=${v}' > single" }
  task bare = shell.run {
    script: "echo ${v} > bare; echo \"${v}x\" > double"
  }
}
"#
    .to_string();
    std::fs::write(d.join("f.kflow"), &src).unwrap();
    // The injection is real.
    let o = kflow(d, &["run", "f.kflow", "-i", "v=x'; touch PWNED0; echo '"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(pwned(d), ["PWNED0"]);
    std::fs::remove_file(d.join("PWNED0")).unwrap();
    // Apply one fix at a time, re-checking in between, until none is left.
    for round in 0.. {
        assert!(round < 10, "the fixes do not converge:\n{src}");
        let o = kflow(d, &["check", "--format", "json", "f.kflow"], &[]);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let diags = report["diagnostics"].as_array().unwrap();
        let Some(d0) = diags.first() else { break };
        assert_eq!(d0["code"], "kflow::lint::shell-interpolation", "{d0}");
        let mut edits: Vec<(usize, usize, String)> = d0["fixes"][0]["edits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let span = &e["span"];
                let (a, b) = (
                    span["start"].as_u64().unwrap() as usize,
                    span["end"].as_u64().unwrap() as usize,
                );
                (a, b, e["text"].as_str().unwrap().to_string())
            })
            .collect();
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (a, b, t) in edits {
            src.replace_range(a..b, &t);
        }
        std::fs::write(d.join("f.kflow"), &src).unwrap();
    }
    let o = kflow(d, &["check", "--deny-warnings", "f.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{src}\n{}", text(&o.stdout));
    let o = kflow(d, &["run", "f.kflow", "-i", &format!("v={HOSTILE}")], &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{src}\n{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(pwned(d).is_empty(), "{src}");
    assert_eq!(
        std::fs::read_to_string(d.join("single")).unwrap(),
        format!("v={HOSTILE}\n"),
        "{src}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("bare")).unwrap(),
        format!("{HOSTILE}\n"),
        "{src}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("double")).unwrap(),
        format!("{HOSTILE}x\n"),
        "{src}"
    );
}

/// `kflow executions` and `kflow logs` read a history they may not write:
/// here as the unprivileged user `nobody`, of a root-owned history.
#[test]
fn a_history_that_cannot_be_written_can_still_be_read() {
    use std::os::unix::fs::PermissionsExt;
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0");
    if !is_root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to read as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hello.kflow"), HELLO).unwrap();
    let o = kflow(d, &["run", "hello.kflow"], &[("HELLO_TOKEN", "t0p-s3cret")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // The binary and the history where `nobody` may read but not write.
    let bin = d.join("kflow");
    std::fs::copy(env!("CARGO_BIN_EXE_kflow"), &bin).unwrap();
    for p in [d.to_path_buf(), d.join(".kflow")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .current_dir(d)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = as_nobody(&["executions", "list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap();
    let o = as_nobody(&["logs", id, "leak"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "the token is ***\n");
    let o = as_nobody(&["executions", "show", id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// Another process takes the history's write lock in the middle of a run
/// and holds it longer than SQLite's busy timeout: no write is dropped, and
/// once the lock is free the history says what really happened.
#[test]
fn writes_wait_out_a_locked_history_and_are_never_dropped() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 holds the lock in this test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let started = d.join("started");
    let flow = format!(
        "flow l {{\n  task first = shell.run {{ script: \"touch {}; sleep 1; echo one\" }}\n  task second = log {{ message: \"two\", after: [first] }}\n}}\n",
        started.display()
    );
    std::fs::write(d.join("l.kflow"), flow).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(["run", "l.kflow"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !started.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let flag = d.join("locked");
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time, pathlib\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             pathlib.Path(sys.argv[2]).touch()\n\
             time.sleep(13)\n\
             c.execute('COMMIT')\n",
        ])
        .arg(d.join(".kflow/history.db"))
        .arg(&flag)
        .spawn()
        .unwrap();
    let o = run.wait_with_output().unwrap();
    holder.wait().unwrap();
    assert!(flag.exists(), "the lock was taken");
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let exec = only_execution(d);
    assert_eq!(exec["state"], "succeeded", "{exec}");
    let id = exec["id"].as_str().unwrap();
    let o = kflow(d, &["executions", "show", id, "--json"], &[]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tasks = shown["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    for t in tasks {
        assert_eq!(t["state"], "succeeded", "{t}");
    }
}

/// Control sequences from a task (or a registry's message in an error)
/// are shown, not obeyed: no raw escape but colours reaches the terminal.
#[test]
fn control_characters_from_outside_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let flow = "flow esc {\n  task t = shell.run { script: \"printf 'a\\\\033[2Jb\\\\033]0;pwned\\\\007c\\\\033[31mred\\\\033[0m\\\\n'; printf 'digest sha256:\\\\033[2J' >&2; exit 3\" }\n}\n";
    std::fs::write(dir.path().join("esc.kflow"), flow).unwrap();
    let o = kflow(dir.path(), &["run", "esc.kflow"], &[]);
    assert_eq!(o.status.code(), Some(1));
    for (name, out) in [("stdout", text(&o.stdout)), ("stderr", text(&o.stderr))] {
        let raw_escapes = out.matches('\x1b').count();
        let colours = out.matches("\x1b[31m").count() + out.matches("\x1b[0m").count();
        assert_eq!(raw_escapes, colours, "{name}: {out:?}");
        assert!(!out.contains('\x07'), "{name}: {out:?}");
    }
    assert!(
        text(&o.stdout).contains("a\\x1b[2Jb\\x1b]0;pwned\\x07c"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stderr).contains("digest sha256:\\x1b[2J"),
        "{}",
        text(&o.stderr)
    );
    let exec = only_execution(dir.path());
    let o = kflow(dir.path(), &["logs", exec["id"].as_str().unwrap()], &[]);
    assert!(!text(&o.stdout).contains("\x1b[2J"), "{:?}", text(&o.stdout));
}

/// Peak resident memory of a finished child, from `/usr/bin/time -f %M` (KiB).
fn peak_rss_kib(stderr: &str) -> u64 {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("maxrss="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"))
}

/// A task that prints a 100 MB line without a newline, or 30 MB of short
/// lines faster than they can be printed and recorded: kflow's memory stays
/// bounded (long lines are cut, the output waits for the printer), and
/// nothing is lost from the log it keeps.
#[test]
fn task_output_is_bounded_in_memory() {
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("skipped: /usr/bin/time measures the peak memory");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let flow = r#"flow loud {
  task long = shell.run { script: "head -c 100000000 /dev/zero | tr '\\0' a" }
  task many = shell.run { script: "yes 'a short line of output' | head -c 30000000", after: [long] }
}
"#;
    std::fs::write(dir.path().join("loud.kflow"), flow).unwrap();
    let o = Command::new("/usr/bin/time")
        .args(["-f", "maxrss=%M"])
        .arg(env!("CARGO_BIN_EXE_kflow"))
        .args(["run", "loud.kflow"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let peak_mib = peak_rss_kib(&err) / 1024;
    eprintln!("peak RSS {peak_mib} MiB");
    assert!(peak_mib < 150, "peak RSS {peak_mib} MiB");
    let exec = only_execution(dir.path());
    let o = kflow(dir.path(), &["logs", exec["id"].as_str().unwrap(), "many"], &[]);
    let log = text(&o.stdout);
    assert!(
        log.starts_with("a short line of output\n"),
        "{}",
        &log[..80.min(log.len())]
    );
    assert!(log.ends_with("[kflow: log truncated at 10 MiB]\n"));
}
