//! `kflow serve` on a shared PostgreSQL history with real `kflow worker`
//! processes: placement by labels, secrets read only by the worker that
//! runs the task, and the faults — a worker killed or frozen mid-task, the
//! database restarted, many tasks over several workers.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::postgres::{Postgres, Worker};
use support::server::Server;

const PLACED: &str = r#"flow placed {
  secret prod_token = env("PROD_TOKEN")
  task anywhere = shell.run { script: "echo anywhere" }
  task prod = shell.run {
    script: "test -n \"$T\" && echo token is $T && printf %s \"$T\" | wc -c"
    env: { T: prod_token }
    runs_on: { env: "prod" }
  }
  output length = prod.stdout
}
"#;

const SLOW: &str = r#"flow slow {
  task slow = shell.run { script: "echo start; sleep 4; echo end" }
  output said = slow.stdout
}
"#;

const MANY: &str = r#"flow many {
  input items: list<string>
  for i in items {
    task noop = log { message: "item ${i}" }
  }
}
"#;

/// A server on the shared history at `pg`, serving `flows` (written into
/// `dir`), its admin user and token in the database too.
fn serve(dir: &Path, pg: &Postgres, flows: &[(&str, &str)], args: &[&str]) -> Server {
    for (name, text) in flows {
        std::fs::write(dir.join(name), text).unwrap();
    }
    // `kflow user add` and `token create` (run by the helper) read it too.
    std::env::set_var("KFLOW_STORE", pg.url());
    let mut all: Vec<&str> = flows.iter().map(|(n, _)| *n).collect();
    all.extend_from_slice(args);
    Server::start_with(dir, &all, &[("KFLOW_STORE", pg.url().as_str())])
}

fn start(server: &Server, flow: &str, inputs: serde_json::Value) -> String {
    let auth = format!("Bearer {}", server.admin);
    let body = serde_json::json!({ "inputs": inputs }).to_string();
    let r = server.request(
        "POST",
        &format!("/api/v1/flows/{flow}/executions"),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["execution"].as_str().unwrap().to_string()
}

/// Polls `sql` until it prints `want`.
fn wait_for(pg: &Postgres, sql: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = pg.sql(sql);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "`{sql}` is {got:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The execution's log, as the API serves it.
fn log_texts(server: &Server, id: &str) -> Vec<String> {
    server.get(&format!("/api/v1/executions/{id}/logs"))["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{} | {}", l["task"].as_str().unwrap(), l["text"].as_str().unwrap()))
        .collect()
}

/// The error a task of an ended execution failed with.
fn task_error(ended: &serde_json::Value, task: &str) -> String {
    let tasks = ended["tasks"].as_array().unwrap();
    let t = tasks.iter().find(|t| t["task"] == task).unwrap();
    t["error"].as_str().unwrap_or_default().to_string()
}

/// The worker that ran `task`'s (last) attempt.
fn ran_on(pg: &Postgres, id: &str, task: &str) -> String {
    pg.sql(&format!(
        "SELECT worker FROM attempts WHERE execution_id = '{id}' AND task = '{task}' ORDER BY attempt DESC LIMIT 1"
    ))
}

/// Kills worker `name` and ages its heartbeat past a minute, after which
/// it counts as gone.
fn gone(pg: &Postgres, workers: &[Worker], name: &str) {
    workers.iter().find(|w| w.name == name).unwrap().signal(libc::SIGKILL);
    pg.sql(&format!(
        "UPDATE workers SET heartbeat_at = now() - interval '2 minutes' WHERE id = '{name}'"
    ));
}

#[test]
fn tasks_go_to_workers_with_their_labels_and_only_that_worker_reads_the_secret() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const TOKEN: &str = "prod-only-token-4411";
    // The server has no PROD_TOKEN: it reads no secret of a task a worker runs.
    let server = serve(d, &pg, &[("placed.kflow", PLACED)], &[]);
    let any = Worker::start(d, &pg.url(), "w-any", &["--labels", "arch=amd64"], &[]);
    let id = start(&server, "placed", serde_json::json!({}));
    wait_for(
        &pg,
        &format!("SELECT state FROM task_runs WHERE execution_id = '{id}' AND task = 'anywhere'"),
        "succeeded",
        Duration::from_secs(20),
    );
    // No worker with env=prod: the task waits, queued, and w-any never takes it.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        pg.sql(&format!(
            "SELECT state, worker IS NULL FROM task_queue WHERE execution_id = '{id}' AND task = 'prod'"
        )),
        "queued|t"
    );
    let listed = support::kflow(d, &["workers", "list", "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["queued"], 1, "{listed}");
    assert_eq!(listed["workers"][0]["labels"]["arch"], "amd64");

    let prod = Worker::start(
        d,
        &pg.url(),
        "w-prod",
        &["--labels", "env=prod,arch=amd64"],
        &[("PROD_TOKEN", TOKEN)],
    );
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    // The task saw the value (its length), and its output holds it redacted.
    assert_eq!(
        ended["outputs"]["length"],
        format!("token is ***\n{}", TOKEN.len()).as_str(),
        "{ended}"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT task || '=' || worker FROM attempts WHERE execution_id = '{id}' ORDER BY task"
        )),
        "anywhere=w-any\nprod=w-prod"
    );
    let log = log_texts(&server, &id);
    assert!(log.contains(&"prod | token is ***".to_string()), "{log:?}");
    // The value is nowhere in the database, nor in what the processes said.
    let dump = pg.sql("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM log_lines) t")
        + &pg.sql("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM task_queue) t")
        + &pg.sql("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM task_runs) t")
        + &pg.sql("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM executions) t");
    assert!(!dump.contains(TOKEN), "the token is in the database");
    assert!(!server.log().contains(TOKEN) && !prod.log().contains(TOKEN));
    drop(any);
}

/// Which worker holds the running attempt of `task`, once one does.
fn holder(pg: &Postgres, id: &str, task: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = pg.sql(&format!(
            "SELECT COALESCE(worker, '') FROM task_queue WHERE execution_id = '{id}' AND task = '{task}' AND state = 'claimed'"
        ));
        if !w.is_empty() {
            // Started, not just claimed: its first line is logged.
            let started = pg.sql(&format!(
                "SELECT count(*) FROM log_lines WHERE execution_id = '{id}' AND text = 'start'"
            ));
            if started != "0" {
                return w;
            }
        }
        assert!(Instant::now() < deadline, "nobody runs {task}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The slow flow running on one of two workers with short leases.
struct Slow {
    pg: Postgres,
    server: Server,
    workers: [Worker; 2],
    id: String,
    /// The worker that runs it.
    first: String,
}

impl Slow {
    fn running(d: &Path) -> Slow {
        let pg = Postgres::start();
        let server = serve(d, &pg, &[("slow.kflow", SLOW)], &[]);
        let workers = [
            Worker::start(d, &pg.url(), "w1", &["--lease", "3s", "--jobs", "1"], &[]),
            Worker::start(d, &pg.url(), "w2", &["--lease", "3s", "--jobs", "1"], &[]),
        ];
        let id = start(&server, "slow", serde_json::json!({}));
        let first = holder(&pg, &id, "slow");
        Slow {
            pg,
            server,
            workers,
            id,
            first,
        }
    }
}

#[test]
fn a_worker_killed_mid_task_loses_the_attempt_and_another_worker_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let Slow {
        pg,
        server,
        workers,
        id,
        first,
    } = Slow::running(dir.path());
    let victim = workers.iter().position(|w| w.name == first).unwrap();
    workers[victim].signal(libc::SIGKILL);
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert_eq!(ended["outputs"]["said"], "start\nend");
    let attempts = pg.sql(&format!(
        "SELECT attempt || '|' || COALESCE(worker, '') || '|' || COALESCE(error, '') FROM attempts WHERE execution_id = '{id}' ORDER BY attempt"
    ));
    let rows: Vec<&str> = attempts.lines().collect();
    assert_eq!(rows.len(), 2, "{attempts}");
    assert!(
        rows[0].starts_with(&format!("1|{first}|lost: worker {first}")),
        "{attempts}"
    );
    let other = if first == "w1" { "w2" } else { "w1" };
    assert_eq!(rows[1], format!("2|{other}|"));
    assert_eq!(
        pg.sql(&format!("SELECT state FROM task_runs WHERE execution_id = '{id}'")),
        "succeeded",
        "recorded once, as succeeded"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT string_agg(state, ',' ORDER BY seq) FROM task_queue WHERE execution_id = '{id}'"
        )),
        "lost,succeeded"
    );
    let metrics = metrics(&server);
    assert!(metrics.contains("\nkflow_attempts_lost_total 1\n"), "{metrics}");
}

fn metrics(server: &Server) -> String {
    let r = server.request("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn a_frozen_worker_is_fenced_and_its_late_result_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Slow {
        pg,
        server,
        workers,
        id,
        first,
    } = Slow::running(dir.path());
    let frozen = workers.iter().find(|w| w.name == first).unwrap();
    // Cut off: it renews nothing while its task's process runs on.
    frozen.signal(libc::SIGSTOP);
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    // The link heals: its task's process ended meanwhile, and its result
    // is refused, or never sent (it learns it no longer holds the claim).
    frozen.signal(libc::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(frozen.log().contains("no longer")
        || frozen.log().contains("refused")
        || frozen.log().contains("lost its lease"))
    {
        assert!(
            Instant::now() < deadline,
            "the frozen worker never noticed: {}",
            frozen.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pg.sql(&format!(
            "SELECT string_agg(state, ',' ORDER BY seq) FROM task_queue WHERE execution_id = '{id}'"
        )),
        "lost,succeeded",
        "its late result changed nothing"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT state || ' ' || attempts FROM task_runs WHERE execution_id = '{id}'"
        )),
        "succeeded 2"
    );
}

#[test]
fn the_database_restarted_mid_run_loses_nothing() {
    let mut pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = serve(d, &pg, &[("slow.kflow", SLOW)], &[]);
    let _worker = Worker::start(d, &pg.url(), "w1", &["--lease", "10s"], &[]);
    let id = start(&server, "slow", serde_json::json!({}));
    holder(&pg, &id, "slow");
    pg.restart();
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}\n{}", server.log());
    assert_eq!(ended["outputs"]["said"], "start\nend");
    assert_eq!(
        pg.sql(&format!(
            "SELECT string_agg(state, ',') FROM task_queue WHERE execution_id = '{id}'"
        )),
        "succeeded"
    );
    let lines = log_texts(&server, &id);
    assert!(lines.contains(&"slow | end".to_string()), "{lines:?}");
}

#[test]
fn a_thousand_tasks_over_three_workers_each_run_exactly_once() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = serve(d, &pg, &[("many.kflow", MANY)], &["--jobs", "64"]);
    let _workers: Vec<Worker> = (1..=3)
        .map(|i| Worker::start(d, &pg.url(), &format!("w{i}"), &["--jobs", "16"], &[]))
        .collect();
    let items: Vec<String> = (0..1000).map(|i| format!("i{i}")).collect();
    let id = start(&server, "many", serde_json::json!({ "items": items }));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let e = server.get(&format!("/api/v1/executions/{id}"));
        if !matches!(e["state"].as_str(), Some("running" | "queued")) {
            assert_eq!(e["state"], "succeeded", "{}", server.log());
            break;
        }
        assert!(Instant::now() < deadline, "1,000 tasks did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) || ' ' || count(DISTINCT task) || ' ' || count(*) FILTER (WHERE state = 'succeeded')
             FROM task_queue WHERE execution_id = '{id}'"
        )),
        "1000 1000 1000",
        "each task queued, claimed and settled once"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) FROM task_runs WHERE execution_id = '{id}' AND state = 'succeeded' AND attempts = 1"
        )),
        "1000"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) FROM log_lines WHERE execution_id = '{id}' AND text LIKE 'item %'"
        )),
        "1000",
        "no lost update of the log"
    );
    let spread = pg.sql(&format!(
        "SELECT count(DISTINCT worker) FROM attempts WHERE execution_id = '{id}'"
    ));
    assert_eq!(spread, "3", "all three workers took a share");
    let metrics = metrics(&server);
    for line in ["kflow_queue_depth 0", "kflow_queue_running 0", "kflow_workers_alive 3"] {
        assert!(metrics.contains(&format!("\n{line}\n")), "{line}: {metrics}");
    }
    assert!(
        metrics.contains("kflow_claim_latency_seconds{quantile=\"0.95\"} "),
        "{metrics}"
    );
}

const LOCAL: &str = r#"flow local {
  task build = docker.build { context: "img", builder: "classic" }
  task pause = sleep { duration: 3s, after: [build] }
  task use = container.run { image: build.image, cmd: ["echo", "ran here"], after: [pause] }
  output said = use.stdout
}
"#;

#[test]
fn a_task_using_a_local_image_runs_on_the_worker_that_built_it_or_fails_saying_it_is_gone() {
    if !support::docker_or_skip("a_task_using_a_local_image_runs_on_the_worker_that_built_it") {
        return;
    }
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::busybox_context(d, "");
    let server = serve(d, &pg, &[("local.kflow", LOCAL)], &[]);
    // Short leases: a `pause` that was on the killed builder is lost and
    // runs again on the other within seconds.
    let workers = [
        Worker::start(d, &pg.url(), "w1", &["--jobs", "1", "--lease", "3s"], &[]),
        Worker::start(d, &pg.url(), "w2", &["--jobs", "1", "--lease", "3s"], &[]),
    ];
    // Both workers drive this machine's engine, so either could run the
    // image; placement must still pick its builder.
    let id = start(&server, "local", serde_json::json!({}));
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert_eq!(ended["outputs"]["said"], "ran here");
    let by = pg.sql(&format!(
        "SELECT string_agg(task || '=' || worker, ',' ORDER BY task) FROM attempts WHERE execution_id = '{id}' AND task IN ('build', 'use')"
    ));
    let builder = ran_on(&pg, &id, "build");
    assert_eq!(by, format!("build={builder},use={builder}"));

    // The builder is gone before the image is used: the task says so.
    let id = start(&server, "local", serde_json::json!({}));
    wait_for(
        &pg,
        &format!("SELECT state FROM task_runs WHERE execution_id = '{id}' AND task = 'build'"),
        "succeeded",
        Duration::from_secs(30),
    );
    let builder = ran_on(&pg, &id, "build");
    gone(&pg, &workers, &builder);
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "failed", "{ended}");
    let error = task_error(&ended, "use");
    assert!(
        error.contains(&format!("what only worker {builder} holds"))
            && error.contains("that worker is gone")
            && error.contains("--from-failed"),
        "{error}"
    );
}

const SPLIT: &str = r#"flow split {
  task build = docker.build { context: "img", builder: "classic" }
  task use = container.run { image: build.image, cmd: ["echo", "x"], runs_on: { env: "prod" } }
}
"#;

#[test]
fn a_task_pinned_to_a_worker_without_its_labels_fails_at_once() {
    if !support::docker_or_skip("a_task_pinned_to_a_worker_without_its_labels_fails_at_once") {
        return;
    }
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::busybox_context(d, "");
    let server = serve(d, &pg, &[("split.kflow", SPLIT)], &[]);
    // The only worker has no labels: `build` runs there, and `use` (for
    // env=prod) could run nowhere else, nor there.
    let _any = Worker::start(d, &pg.url(), "w-any", &[], &[]);
    let id = start(&server, "split", serde_json::json!({}));
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "failed", "{ended}");
    let error = task_error(&ended, "use");
    assert!(
        error.contains("its `runs_on` asks for env=prod but what it uses is held by worker w-any")
            && error.contains("give the task that made it the same `runs_on`"),
        "{error}"
    );
}

const MINTED: &str = r#"flow minted {
  task id = oidc.token { audience: "sts.amazonaws.com" }
  task pause = sleep { duration: 2s, after: [id] }
  task use = shell.run {
    script: "printf %s \"$T\" | wc -c; echo \"token: $T\""
    env: { T: id.token }
    after: [pause]
  }
  output said = use.stdout
}
"#;

#[test]
fn a_secret_a_task_produced_stays_on_its_worker_and_its_users_run_there() {
    let tokens = support::cloud::TokenServices::start();
    let token = tokens.github_id_token("sts.amazonaws.com");
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = serve(d, &pg, &[("minted.kflow", MINTED)], &[]);
    let url = format!("{}/github/token?api-version=2.0", tokens.base);
    let envs = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", tokens.github_request_token.as_str()),
    ];
    let workers = [
        Worker::start(d, &pg.url(), "w1", &["--jobs", "1"], &envs),
        Worker::start(d, &pg.url(), "w2", &["--jobs", "1"], &envs),
    ];
    let id = start(&server, "minted", serde_json::json!({}));
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    // The task that used the token saw it, on the worker that fetched it.
    assert_eq!(
        ended["outputs"]["said"],
        format!("{}\ntoken: ***", token.len()).as_str(),
        "{ended}"
    );
    let by = pg.sql(&format!(
        "SELECT string_agg(task || '=' || worker, ',' ORDER BY task) FROM attempts WHERE execution_id = '{id}' AND task IN ('id', 'use')"
    ));
    let producer = ran_on(&pg, &id, "id");
    assert_eq!(by, format!("id={producer},use={producer}"));
    // The token is nowhere in the database, nor in what the processes said.
    let dump = ["log_lines", "task_queue", "task_runs", "executions", "attempts"]
        .map(|t| pg.sql(&format!("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM {t}) t")))
        .concat();
    assert!(!dump.contains(&token), "the token is in the database");
    assert!(!server.log().contains(&token));
    assert!(workers.iter().all(|w| !w.log().contains(&token)));

    // Its worker stops before the token is used (drained: a killed worker
    // is the image test's case): the task says the token is gone with it.
    let id = start(&server, "minted", serde_json::json!({}));
    wait_for(
        &pg,
        &format!("SELECT state FROM task_runs WHERE execution_id = '{id}' AND task = 'id'"),
        "succeeded",
        Duration::from_secs(30),
    );
    let producer = ran_on(&pg, &id, "id");
    workers
        .iter()
        .find(|w| w.name == producer)
        .unwrap()
        .signal(libc::SIGTERM);
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "failed", "{ended}");
    let error = task_error(&ended, "use");
    assert!(
        error.contains(&format!("what only worker {producer} holds")) && error.contains("--from-failed"),
        "{error}"
    );
}

#[test]
fn a_stopped_worker_hands_back_what_it_cannot_finish_in_its_grace() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = serve(d, &pg, &[("slow.kflow", SLOW)], &[]);
    let first = Worker::start(d, &pg.url(), "w1", &["--jobs", "1", "--grace", "1s"], &[]);
    let id = start(&server, "slow", serde_json::json!({}));
    assert_eq!(holder(&pg, &id, "slow"), "w1");
    let second = Worker::start(d, &pg.url(), "w2", &["--jobs", "1"], &[]);
    let status = first.terminate();
    assert!(status.success(), "{status:?}");
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert_eq!(ended["outputs"]["said"], "start\nend");
    // Handed back, not lost: the same attempt, finished by the other worker.
    assert_eq!(
        pg.sql(&format!(
            "SELECT attempt || ' ' || worker FROM attempts WHERE execution_id = '{id}'"
        )),
        "1 w2"
    );
    assert_eq!(
        pg.sql("SELECT id || ' ' || (stopped_at IS NOT NULL) FROM workers ORDER BY id"),
        "w1 true\nw2 false"
    );
    // A worker with time to finish finishes before it stops.
    let id = start(&server, "slow", serde_json::json!({}));
    holder(&pg, &id, "slow");
    assert!(second.terminate().success());
    assert_eq!(
        pg.sql(&format!("SELECT state FROM task_queue WHERE execution_id = '{id}'")),
        "succeeded"
    );
}

/// Forwards TCP connections on 127.0.0.1 to the engine's unix socket,
/// counting them: a worker's `--engine tcp://…` must be the one it uses.
fn engine_over_tcp() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let Ok(engine) = std::os::unix::net::UnixStream::connect(&socket) else {
                continue;
            };
            let (mut a, mut b) = (conn.try_clone().unwrap(), engine.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
            let (mut a, mut b) = (engine, conn);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (format!("tcp://{addr}"), count)
}

#[test]
fn a_worker_drives_the_engine_it_is_given() {
    if !support::docker_or_skip("a_worker_drives_the_engine_it_is_given") {
        return;
    }
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::busybox_context(d, "");
    let (engine, connections) = engine_over_tcp();
    let server = serve(d, &pg, &[("local.kflow", LOCAL)], &[]);
    let _worker = Worker::start(d, &pg.url(), "remote", &["--engine", &engine], &[]);
    let id = start(&server, "local", serde_json::json!({}));
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert!(
        connections.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the engine over TCP was used"
    );
    let listed = support::kflow(d, &["workers", "list", "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["workers"][0]["engine"], engine.as_str(), "{listed}");
}

const ELSEWHERE: &str = r#"flow elsewhere {
  task build = docker.build { context: "img" }
  task use = container.run { image: build.image, cmd: ["/bin/busybox", "echo", "ran there"] }
  output said = use.stdout
}
"#;

#[test]
fn a_worker_drives_a_second_engine_over_tls_with_buildkit() {
    let Some(engine) = support::engine::Engine::start("a_worker_drives_a_second_engine_over_tls_with_buildkit") else {
        return;
    };
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No RUN step: the second engine has no bridge network to run one on.
    support::busybox_copy_only_context(d);
    let server = serve(d, &pg, &[("elsewhere.kflow", ELSEWHERE)], &[]);
    let certs = engine.client_certs.to_str().unwrap();
    let worker = Worker::start(
        d,
        &pg.url(),
        "remote",
        &["--engine", &engine.tcp, "--engine-certs", certs],
        &[],
    );
    let id = start(&server, "elsewhere", serde_json::json!({}));
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}\n{}", worker.log());
    assert_eq!(ended["outputs"]["said"], "ran there");
    // BuildKit's session went over the same TLS connection kind, and the
    // image is on that engine (which started with none).
    let logs = log_texts(&server, &id);
    assert!(logs.iter().any(|l| l == "build | building with BuildKit"), "{logs:#?}");
    let images = engine.docker(&["image", "ls", "--quiet"]);
    assert!(
        !support::text(&images.stdout).trim().is_empty(),
        "no image on the TLS engine"
    );

    // A client whose certificate another CA signed is refused by the
    // engine; the task says why (no panic in the handshake).
    let stranger = engine.stranger_certs.to_str().unwrap();
    let out = support::kflow(
        d,
        &["run", "elsewhere.kflow", "--state", "local-state"],
        &[
            ("KFLOW_STORE", ""),
            ("DOCKER_HOST", &engine.tcp),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", stranger),
        ],
    );
    let said = format!("{}{}", support::text(&out.stdout), support::text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!("cannot reach the Docker engine at {}", engine.tcp))
            && said.contains("invalid peer certificate")
            && said.contains("DOCKER_CERT_PATH")
            && !said.contains("panicked"),
        "{said}"
    );

    // A worker given a folder without the certificates refuses to start.
    let out = support::kflow(
        d,
        &["worker", "--engine", &engine.tcp, "--engine-certs", "nowhere"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out.stderr));
    assert!(
        support::text(&out.stderr).contains("nowhere/ca.pem cannot be read"),
        "{}",
        support::text(&out.stderr)
    );
}

#[test]
fn a_worker_drives_an_engine_over_ssh_with_buildkit() {
    let test = "a_worker_drives_an_engine_over_ssh_with_buildkit";
    let Some(engine) = support::engine::Engine::start(test) else {
        return;
    };
    let Some(ssh) = engine.over_ssh(test) else {
        return;
    };
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No RUN step: the second engine has no bridge network to run one on.
    support::busybox_copy_only_context(d);
    let server = serve(d, &pg, &[("elsewhere.kflow", ELSEWHERE)], &[]);
    let state = ssh.state.to_str().unwrap();
    let worker = Worker::start(
        d,
        &pg.url(),
        "over-ssh",
        &["--engine", &ssh.url],
        &[("PATH", &ssh.path), ("XDG_STATE_HOME", state)],
    );
    let id = start(&server, "elsewhere", serde_json::json!({}));
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}\n{}\n{}", worker.log(), ssh.log());
    assert_eq!(ended["outputs"]["said"], "ran there");
    let logs = log_texts(&server, &id);
    assert!(logs.iter().any(|l| l == "build | building with BuildKit"), "{logs:#?}");
    let images = engine.docker(&["image", "ls", "--quiet"]);
    assert!(
        !support::text(&images.stdout).trim().is_empty(),
        "no image on the engine behind SSH"
    );

    // A stopped worker leaves no ssh client behind.
    assert!(!ssh.clients().is_empty(), "the worker reached the engine through ssh");
    assert!(worker.terminate().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ssh.clients().is_empty() {
        assert!(Instant::now() < deadline, "ssh clients left running: {}", ssh.clients());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP proxy to the database that the test can pause: while paused it
/// holds every byte in both directions (a link that went quiet, as a
/// partition looks from both ends), and passes them on when it heals.
struct Link {
    port: u16,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Link {
    fn to(port: u16) -> Link {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let paused = std::sync::Arc::new(AtomicBool::new(false));
        let link = Link {
            port: listener.local_addr().unwrap().port(),
            paused: paused.clone(),
        };
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let paused = paused.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            while paused.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        link
    }

    fn cut(&self, cut: bool) {
        self.paused.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

const MARKED: &str = r#"flow marked {
  task slow = shell.run { script: "echo start; sleep 4; echo end; echo end >> ends-$WHO" }
  output said = slow.stdout
}
"#;

#[test]
fn a_partitioned_worker_stops_its_task_before_its_lease_lapses() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = serve(d, &pg, &[("marked.kflow", MARKED)], &[]);
    let link = Link::to(pg.port);
    let behind = pg.url().replace(&format!(":{}/", pg.port), &format!(":{}/", link.port));
    // The only worker at first: the one behind the link.
    let cut_off = Worker::start(d, &behind, "w1", &["--lease", "3s", "--jobs", "1"], &[("WHO", "w1")]);
    let id = start(&server, "marked", serde_json::json!({}));
    assert_eq!(holder(&pg, &id, "slow"), "w1");
    link.cut(true);
    let _other = Worker::start(d, &pg.url(), "w2", &["--lease", "3s", "--jobs", "1"], &[("WHO", "w2")]);
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    // w1 stopped its task itself, unable to renew: it never ended there.
    assert!(
        !d.join("ends-w1").exists(),
        "the cut-off worker's task ran on: {}",
        cut_off.log()
    );
    assert_eq!(std::fs::read_to_string(d.join("ends-w2")).unwrap(), "end\n");
    assert!(cut_off.log().contains("cannot renew leases"), "{}", cut_off.log());
    // The link heals: nothing w1 says changes the history.
    link.cut(false);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!d.join("ends-w1").exists());
    assert_eq!(
        pg.sql(&format!(
            "SELECT string_agg(state, ',' ORDER BY seq) FROM task_queue WHERE execution_id = '{id}'"
        )),
        "lost,succeeded"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT state || ' ' || attempts FROM task_runs WHERE execution_id = '{id}'"
        )),
        "succeeded 2"
    );
}

const TICKING: &str = r#"flow ticking {
  on schedule "* * * * * *" { inputs: { tag: "tick" } }
  input tag: string
  task say = log { message: tag }
}
"#;

#[test]
fn two_servers_on_one_history_fire_each_schedule_time_once() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = serve(d, &pg, &[("ticking.kflow", TICKING)], &[]);
    let b = serve(d, &pg, &[("ticking.kflow", TICKING)], &[]);
    let _worker = Worker::start(d, &pg.url(), "w1", &["--jobs", "8"], &[]);
    std::thread::sleep(Duration::from_secs(5));
    assert!(a.terminate().success() && b.terminate().success());
    let fired = pg.sql(
        "SELECT count(*) || ' ' || count(DISTINCT trigger::jsonb ->> 'at') FROM executions WHERE flow = 'ticking'",
    );
    let (all, distinct) = fired.split_once(' ').unwrap();
    assert_eq!(all, distinct, "a fire time started twice: {fired}");
    assert!(all.parse::<u32>().unwrap() >= 3, "{fired}");
}

const SLEEPER: &str = r#"flow sleeper {
  task build = docker.build { context: "img", builder: "classic" }
  task nap = container.run { image: build.image, cmd: ["sleep", "60"] }
}
"#;

fn containers_of(id: &str, worker: &str) -> String {
    let o = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=io.kflow.execution={id}")])
        .args(["--filter", &format!("label=io.kflow.worker={worker}")])
        .output()
        .unwrap();
    support::text(&o.stdout).trim().to_string()
}

#[test]
fn what_a_killed_worker_left_on_its_engine_is_reclaimed() {
    if !support::docker_or_skip("what_a_killed_worker_left_on_its_engine_is_reclaimed") {
        return;
    }
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::busybox_context(d, "");
    let server = serve(d, &pg, &[("sleeper.kflow", SLEEPER)], &[]);
    let mut first = Worker::start(d, &pg.url(), "w1", &["--lease", "3s"], &[]);
    let id = start(&server, "sleeper", serde_json::json!({}));
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers_of(&id, "w1").is_empty() {
        assert!(Instant::now() < deadline, "no container: {}", first.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    first.signal(libc::SIGKILL);
    first.child.wait().unwrap();
    // The execution lives on (the server runs it): only the dead worker's
    // own leftovers go, when the next worker on the engine starts.
    assert!(
        !containers_of(&id, "w1").is_empty(),
        "a killed worker's container outlives it"
    );
    let _next = Worker::start(d, &pg.url(), "w2", &[], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers_of(&id, "w1").is_empty() {
        assert!(Instant::now() < deadline, "the dead worker's container stays");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pg.sql(&format!("SELECT state FROM executions WHERE id = '{id}'")),
        "running"
    );
}

const STACKED: &str = r#"flow stacked {
  input pr: int
  task up = compose.up { file: "stack.yml", project: "kflow-workers-${pr}", env: { IMG: "kflow-test/workers-busybox:1" } }
  task pause = sleep { duration: 1s, after: [up] }
  task down = compose.down { project: "kflow-workers-${pr}", volumes: true, after: [pause] }
}
"#;

#[test]
fn a_compose_stack_is_taken_down_by_the_worker_that_started_it() {
    if !support::docker_or_skip("a_compose_stack_is_taken_down_by_the_worker_that_started_it") {
        return;
    }
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ctx = support::busybox_context(d, "");
    let o = std::process::Command::new("docker")
        .args(["build", "-q", "-t", "kflow-test/workers-busybox:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", support::text(&o.stderr));
    std::fs::write(
        d.join("stack.yml"),
        "services:\n  idle:\n    image: ${IMG}\n    command: [\"sleep\", \"60\"]\n",
    )
    .unwrap();
    let server = serve(d, &pg, &[("stacked.kflow", STACKED)], &[]);
    let _workers: Vec<Worker> = (1..=3)
        .map(|i| Worker::start(d, &pg.url(), &format!("w{i}"), &["--jobs", "1"], &[]))
        .collect();
    let id = start(&server, "stacked", serde_json::json!({ "pr": std::process::id() }));
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let up = pg.sql(&format!(
        "SELECT worker FROM task_queue WHERE execution_id = '{id}' AND task = 'up'"
    ));
    assert_eq!(
        pg.sql(&format!(
            "SELECT worker_wanted || ' ' || worker FROM task_queue WHERE execution_id = '{id}' AND task = 'down'"
        )),
        format!("{up} {up}")
    );
}
