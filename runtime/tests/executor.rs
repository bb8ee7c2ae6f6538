//! The executor's rules, on real processes and timers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kflow_compiler::analysis::{analyze, Options};
use kflow_compiler::ir::Plan;
use kflow_runtime::executor::{execute, Event, Report, RunEnv, TaskState};
use kflow_runtime::value::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn plan(src: &str) -> Plan {
    let a = analyze(src, &Options::default());
    assert!(!a.has_errors(), "{:#?}", a.diagnostics);
    a.flows.into_iter().next().unwrap().plan
}

async fn run_with(plan: &Plan, cancel: CancellationToken, jobs: usize) -> (Report, Vec<Event>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let env = RunEnv {
        execution: "test".into(),
        dispatch: None,
        artifacts: std::env::temp_dir().join("kflow-test-artifacts"),
        state_dir: std::env::temp_dir().join("kflow-test-state"),
        // One history for every run of the tests (a fixed folder, reused).
        store: Arc::new(
            kflow_runtime::store::SqliteStore::open(&std::env::temp_dir().join("kflow-test-state")).unwrap(),
        ),
        state_hint: String::new(),
        detach: false,
        restored: Default::default(),
        inputs: kflow_runtime::inputs::resolve(plan, &[]).expect("defaults for every input"),
        secrets: BTreeMap::new(),
        base_dir: std::env::temp_dir(),
        jobs,
        cancel,
    };
    let report = execute(std::sync::Arc::new(plan.clone()), env, tx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (report, events)
}

async fn run(plan: &Plan) -> (Report, Vec<Event>) {
    run_with(plan, CancellationToken::new(), 8).await
}

/// Starts and finishes, in the order they were reported.
fn lifecycle(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Started { .. } => Some("start"),
            Event::Finished { .. } => Some("finish"),
            _ => None,
        })
        .collect()
}

fn state(r: &Report, name: &str) -> TaskState {
    r.task(name).map_or(TaskState::Pending, |t| t.state)
}

#[tokio::test]
async fn independent_tasks_run_at_the_same_time() {
    let p = plan("flow f {\n  task a = sleep { duration: 300ms }\n  task b = sleep { duration: 300ms }\n}\n");
    let (r, events) = run(&p).await;
    assert!(r.succeeded());
    let order = lifecycle(&events);
    assert_eq!(order, ["start", "start", "finish", "finish"]);
}

#[tokio::test]
async fn jobs_bound_the_parallelism() {
    let p = plan("flow f {\n  task a = sleep { duration: 100ms }\n  task b = sleep { duration: 100ms }\n}\n");
    let (r, events) = run_with(&p, CancellationToken::new(), 1).await;
    assert!(r.succeeded());
    let order = lifecycle(&events);
    assert_eq!(order, ["start", "finish", "start", "finish"]);
}

#[tokio::test]
async fn a_failure_skips_dependants_and_stops_new_work() {
    let p = plan(
        r#"flow f {
  task bad = shell.run { script: "exit 4" }
  task after_bad = log { message: "never", after: [bad] }
  task slow = sleep { duration: 300ms }
  task after_slow = log { message: "not started", after: [slow] }
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(!r.succeeded());
    assert_eq!(state(&r, "bad"), TaskState::Failed);
    assert_eq!(state(&r, "after_bad"), TaskState::Skipped);
    // Running work finishes; new work does not start.
    assert_eq!(state(&r, "slow"), TaskState::Succeeded);
    assert_eq!(state(&r, "after_slow"), TaskState::Skipped);
    assert_eq!(r.failures, ["bad: `sh -c` exited with status 4"]);
}

#[tokio::test]
async fn catch_and_finally_run_after_a_failure() {
    let p = plan(
        r#"flow f {
  try {
    task work = shell.run { script: "echo partial; exit 1" }
  } catch {
    task alarm = log { message: "failed" }
  } finally {
    task cleanup = shell.run { cmd: ["echo", "${work.stdout ?? "no output"}"] }
  }
  output out = cleanup.stdout
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(!r.succeeded(), "catch does not make the flow succeed");
    assert_eq!(state(&r, "alarm"), TaskState::Succeeded);
    assert_eq!(state(&r, "cleanup"), TaskState::Succeeded);
    assert_eq!(r.outputs["out"], Value::Str("no output".into()));
}

#[tokio::test]
async fn catch_is_skipped_when_the_block_succeeds() {
    let p = plan(
        r#"flow f {
  try {
    task work = log { message: "fine" }
  } catch {
    task alarm = log { message: "failed" }
  } finally {
    task cleanup = log { message: "done" }
  }
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(r.succeeded());
    assert_eq!(state(&r, "alarm"), TaskState::Skipped);
    assert_eq!(state(&r, "cleanup"), TaskState::Succeeded);
}

#[tokio::test]
async fn finally_runs_after_a_timeout() {
    let p = plan(
        r#"flow f {
  try {
    task stuck = shell.run { cmd: ["sleep", "30"], timeout: 200ms }
  } finally {
    task cleanup = log { message: "tearing down" }
  }
}"#,
    );
    let (r, _) = run(&p).await;
    assert_eq!(state(&r, "stuck"), TaskState::Failed);
    assert_eq!(r.task("stuck").unwrap().error.as_deref(), Some("timed out after 200ms"));
    assert_eq!(state(&r, "cleanup"), TaskState::Succeeded);
}

#[tokio::test]
async fn cancellation_stops_work_and_runs_finally() {
    let p = plan(
        r#"flow f {
  try {
    task long = sleep { duration: 30s }
  } finally {
    task cleanup = log { message: "tearing down" }
  }
  task later = log { message: "never", after: [long] }
}"#,
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let (r, _) = run_with(&p, cancel, 8).await;
    assert!(r.cancelled);
    assert_eq!(state(&r, "long"), TaskState::Cancelled);
    assert_eq!(state(&r, "cleanup"), TaskState::Succeeded);
    assert_eq!(state(&r, "later"), TaskState::Skipped);
}

#[tokio::test]
async fn retries_are_counted_and_stop_at_success() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("n");
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ]",
        c = counter.display()
    );
    let src = format!(
        "flow f {{\n  task flaky = shell.run {{ script: {script:?}, retry: {{ attempts: 5, delay: 10ms, backoff: exponential }} }}\n}}\n"
    );
    let p = plan(&src);
    let (r, events) = run(&p).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    assert_eq!(r.task("flaky").unwrap().attempts, 3);
    let retries: Vec<(u32, Duration)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Retrying { attempt, delay, .. } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [(2, Duration::from_millis(10)), (3, Duration::from_millis(20))]
    );
}

#[tokio::test]
async fn when_false_skips_the_task_and_its_dependants() {
    let p = plan(
        r#"flow f {
  input enabled: bool = false
  task maybe = log { message: "x", when: enabled }
  task next = log { message: "y", after: [maybe] }
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(r.succeeded());
    assert_eq!(state(&r, "maybe"), TaskState::Skipped);
    assert_eq!(state(&r, "next"), TaskState::Skipped);
}

#[tokio::test]
async fn continue_on_error_keeps_going_with_missing_outputs() {
    let p = plan(
        r#"flow f {
  task optional = shell.run { script: "exit 1", continue_on_error: true }
  task next = shell.run { cmd: ["echo", "${optional.exit_code ?? -1}"] }
  output out = next.stdout
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    assert_eq!(state(&r, "optional"), TaskState::Failed);
    assert_eq!(r.outputs["out"], Value::Str("-1".into()));
}

#[tokio::test]
async fn a_false_assert_fails_the_flow_with_its_message() {
    let p = plan(
        "flow f {\n  task a = shell.run { cmd: [\"echo\", \"1\"] }\n  assert a.stdout == \"2\", \"wrong output\"\n}\n",
    );
    let (r, _) = run(&p).await;
    assert_eq!(r.failures, ["assert_1: wrong output"]);
}

#[tokio::test]
async fn log_lines_come_before_the_task_is_reported_finished() {
    let p = plan("flow f {\n  task a = shell.run { script: \"echo one; echo two\" }\n}\n");
    let (_, events) = run(&p).await;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Started { .. } => "started".to_string(),
            Event::Log { line, .. } => line.text.clone(),
            Event::Finished { .. } => "finished".to_string(),
            Event::Retrying { .. } => "retrying".to_string(),
            Event::Restored { .. } => "restored".to_string(),
        })
        .collect();
    assert_eq!(kinds, ["started", "one", "two", "finished"]);
}

#[tokio::test]
async fn loops_fan_out_and_their_outputs_become_lists() {
    let p = plan(
        r#"flow f {
  input words: list<string> = ["a", "b", "c"]
  for w in words {
    task up = shell.run { script: "echo ${w} | tr a-z A-Z" }
    task twice = shell.run { cmd: ["echo", up.stdout, up.stdout] }
  }
  // A list known only once the first loop ran.
  for u in up.stdout {
    for n in ["1", "2"] {
      task pair = shell.run { cmd: ["echo", "${u}${n}"] }
    }
  }
  output ups = up.stdout
  output twices = twice.stdout
  output pairs = pair.stdout
}"#,
    );
    let (r, events) = run(&p).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    let list = |items: &[&str]| Value::List(items.iter().map(|s| Value::Str(s.to_string())).collect());
    assert_eq!(r.outputs["ups"], list(&["A", "B", "C"]));
    assert_eq!(r.outputs["twices"], list(&["A A", "B B", "C C"]));
    assert_eq!(
        r.outputs["pairs"],
        Value::List(vec![list(&["A1", "A2"]), list(&["B1", "B2"]), list(&["C1", "C2"])])
    );
    // Each iteration is its own task run, named by its item.
    assert_eq!(state(&r, "up[c]"), TaskState::Succeeded);
    assert_eq!(state(&r, "pair[B][1]"), TaskState::Succeeded);
    assert_eq!(r.tasks.len(), 3 + 3 + 6);
    let started = events.iter().filter(|e| matches!(e, Event::Started { .. })).count();
    assert_eq!(started, 12);
}

#[tokio::test]
async fn iterations_run_at_the_same_time_within_jobs() {
    let p = plan(
        r#"flow f {
  for i in ["1", "2", "3", "4"] {
    task nap = sleep { duration: 200ms }
  }
}"#,
    );
    let t = std::time::Instant::now();
    let (r, _) = run_with(&p, CancellationToken::new(), 2).await;
    assert!(r.succeeded());
    // Two at a time: two rounds of 200ms, not one, not four.
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(390) && elapsed < Duration::from_millis(790),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_failing_iteration_fails_the_loop_and_skips_its_readers() {
    let p = plan(
        r#"flow f {
  try {
    for x in ["ok", "bad", "ok"] {
      task check = shell.run { script: "[ ${x} = ok ] || { echo ${x} >&2; exit 3; }" }
    }
  } finally {
    task cleanup = log { message: "tearing down" }
  }
  task report = log { message: "all checked", after: [check] }
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(!r.succeeded());
    assert_eq!(state(&r, "check[1]"), TaskState::Failed);
    assert!(r.failures[0].starts_with("check[1]: "), "{:?}", r.failures);
    assert_eq!(state(&r, "cleanup"), TaskState::Succeeded);
    assert_eq!(state(&r, "report"), TaskState::Skipped);
}

#[tokio::test]
async fn a_loop_over_more_items_than_the_bound_fails_before_any_iteration() {
    // `lines` of a task's output can be millions of items long; a loop
    // would start a task run for each.
    let p = plan(
        r#"flow f {
  task numbers = shell.run { cmd: ["seq", "10001"] }
  for n in lines(numbers.stdout) {
    task each = log { message: n }
  }
  output count = each.outcome
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(!r.succeeded());
    let said = r.failures.join("\n");
    assert!(said.contains("10001 items") && said.contains("10000"), "{said}");
    assert!(!r.tasks.iter().any(|t| t.name.starts_with("each[")), "an iteration ran");
}

#[tokio::test]
async fn an_empty_list_runs_no_iteration() {
    let p = plan(
        r#"flow f {
  input xs: list<string> = []
  for x in xs {
    task each = shell.run { cmd: ["echo", x] }
  }
  task after_all = log { message: "done", after: [each] }
  output n = each.stdout
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    assert_eq!(state(&r, "after_all"), TaskState::Succeeded);
    assert_eq!(r.tasks.len(), 1);
    assert_eq!(r.outputs["n"], Value::List(vec![]));
}

#[tokio::test]
async fn comparisons_decide_whether_a_task_runs() {
    let p = plan(
        r#"flow f {
  input n: int = 3
  input wait: duration = 90s
  task big = log { message: "big", when: n > 2 }
  task small = log { message: "small", when: n <= 2 }
  task edge = log { message: "edge", when: n >= 3 && n < 4 }
  task long = log { message: "long", when: wait >= 1m && wait < 2m }
  task short = log { message: "short", when: wait < 1m30s }
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    assert_eq!(state(&r, "big"), TaskState::Succeeded);
    assert_eq!(state(&r, "small"), TaskState::Skipped);
    assert_eq!(state(&r, "edge"), TaskState::Succeeded);
    assert_eq!(state(&r, "long"), TaskState::Succeeded);
    assert_eq!(state(&r, "short"), TaskState::Skipped);
}

/// The text of every log line, in order.
fn logged(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { line, .. } => Some(line.text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn outcome_is_readable_after_a_failure_a_skip_and_in_a_loop() {
    let p = plan(
        r#"flow f {
  input enabled: bool = false
  task lint = shell.run { script: "exit 3", continue_on_error: true }
  task maybe = log { message: "x", when: enabled }
  task fine = log { message: "fine" }
  // Reading only `outcome` waits for a task to settle, not to succeed.
  task report = log {
    message: "lint ${lint.outcome}, maybe ${maybe.outcome}, fine ${fine.outcome}"
    when: lint.outcome == "failed"
  }
  for w in ["a", "b"] {
    task each = shell.run { script: "test \"$W\" = a", env: { W: w }, continue_on_error: true }
  }
  output lint_outcome = lint.outcome
  output each_outcome = each.outcome
  output lint_exit = lint.exit_code ?? -1
}"#,
    );
    let (r, events) = run(&p).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    assert_eq!(state(&r, "report"), TaskState::Succeeded);
    assert!(
        logged(&events).contains(&"lint failed, maybe skipped, fine succeeded".to_string()),
        "{:?}",
        logged(&events)
    );
    assert_eq!(r.outputs["lint_outcome"], Value::Str("failed".into()));
    assert_eq!(r.outputs["lint_exit"], Value::Int(-1));
    let strs = |xs: &[&str]| Value::List(xs.iter().map(|s| Value::Str(s.to_string())).collect());
    assert_eq!(r.outputs["each_outcome"], strs(&["succeeded", "failed"]));
}

#[tokio::test]
async fn finally_reads_the_outcome_of_the_try_block() {
    let p = plan(
        r#"flow f {
  input skip_notes: bool = true
  try {
    task deploy = shell.run { script: "exit 1" }
    task notes = log { message: "notes", when: !skip_notes }
  } finally {
    task note = log { message: "deploy ${deploy.outcome}, notes ${notes.outcome}" }
  }
}"#,
    );
    let (r, events) = run(&p).await;
    assert!(!r.succeeded());
    assert_eq!(state(&r, "note"), TaskState::Succeeded);
    assert!(
        logged(&events).contains(&"deploy failed, notes skipped".to_string()),
        "{:?}",
        logged(&events)
    );
}

#[tokio::test]
async fn a_skipped_loop_has_no_outcomes() {
    let p = plan(
        r#"flow f {
  input enabled: bool = false
  task gate = log { message: "gate", when: enabled }
  for w in ["a", "b"] {
    task each = log { message: w, after: [gate] }
  }
  output outcomes = each.outcome
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    assert_eq!(r.outputs["outcomes"], Value::List(Vec::new()));
}

#[tokio::test]
async fn lines_split_and_trim_fan_out_over_what_a_task_printed() {
    let p = plan(
        r#"flow f {
  task ls = shell.run { script: "printf ' a.1 \n\tb.2\r\nc.3\n'" }
  for line in lines(ls.stdout) {
    task first = shell.run { cmd: ["echo", trim(line)] }
  }
  output trimmed = first.stdout
  output parts = split("x,y,,z", ",")
  output lines = lines("one\ntwo\n")
  output bare = trim("  hi \n")
}"#,
    );
    let (r, _) = run(&p).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    let strs = |xs: &[&str]| Value::List(xs.iter().map(|s| Value::Str(s.to_string())).collect());
    assert_eq!(r.outputs["trimmed"], strs(&["a.1", "b.2", "c.3"]));
    assert_eq!(r.outputs["parts"], strs(&["x", "y", "", "z"]));
    assert_eq!(r.outputs["lines"], strs(&["one", "two"]));
    assert_eq!(r.outputs["bare"], Value::Str("hi".into()));
}

/// The recorder writes what the executor reports into the history, through
/// the store trait, and tells its subscriber every event first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_writes_an_execution_into_the_history() {
    use kflow_runtime::recorder::{self, Subscriber};
    use kflow_runtime::state::{ExecutionState, TaskState as S};
    use kflow_runtime::store::{NewExecution, SqliteStore, Store};

    struct Seen(Arc<std::sync::Mutex<Vec<String>>>);
    impl Subscriber for Seen {
        fn events(&mut self, batch: &[Event]) {
            let mut seen = self.0.lock().unwrap();
            for e in batch {
                if let Event::Finished { task, state, .. } = e {
                    seen.push(format!("{} {}", task.name, state));
                }
            }
        }
        fn warn(&mut self, message: &str) {
            panic!("unexpected warning: {message}");
        }
    }

    let p = plan(
        r#"flow f {
  task hello = shell.run { script: "echo hi" }
  task bye = log { message: "bye ${hello.stdout}" }
  output said = hello.stdout
}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let tasks = kflow_runtime::executor::single_tasks(&p)
        .into_iter()
        .map(|id| (p.nodes[id].name.clone(), p.nodes[id].kind.clone()))
        .collect();
    let id = Store::begin(
        &*store,
        &NewExecution {
            flow: "f",
            file: "f.kflow",
            inputs: &serde_json::json!({}),
            tasks,
            plan: serde_json::to_value(&p).unwrap(),
            base_dir: dir.path().to_path_buf(),
            rerun_of: None,
            trigger: None,
            origin: kflow_runtime::store::Origin::Cli,
        },
    )
    .await
    .unwrap();
    let env = RunEnv {
        execution: id.clone(),
        dispatch: None,
        artifacts: dir.path().join("artifacts"),
        state_dir: dir.path().to_path_buf(),
        store: store.clone(),
        state_hint: String::new(),
        detach: false,
        restored: Default::default(),
        inputs: BTreeMap::new(),
        secrets: BTreeMap::new(),
        base_dir: dir.path().to_path_buf(),
        jobs: 2,
        cancel: CancellationToken::new(),
    };
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ended = recorder::run(Arc::new(p), env, Seen(seen.clone())).await;
    assert_eq!(ended.state, ExecutionState::Succeeded, "{:?}", ended.failures);
    assert_eq!(*seen.lock().unwrap(), ["hello succeeded", "bye succeeded"]);

    let (exec, runs) = store.show(&id).unwrap().unwrap();
    assert_eq!(exec.state, ExecutionState::Succeeded);
    assert_eq!(exec.outputs["said"], "hi");
    let states: Vec<(&str, S)> = runs.iter().map(|r| (r.task.as_str(), r.state)).collect();
    assert_eq!(states, [("hello", S::Succeeded), ("bye", S::Succeeded)]);
    let lines = store.log_reader(&id).next(&[]).unwrap();
    let lines: Vec<(&str, &str)> = lines.iter().map(|e| (e.task.as_str(), e.text.as_str())).collect();
    assert!(lines.contains(&("hello", "hi")), "{lines:?}");
}
