//! The real `kflow` binary with its history in PostgreSQL (`--store`,
//! `KFLOW_STORE`): runs, approvals, resumes, the history commands and
//! `kflow serve` against a server the test starts, and the database's
//! password kept out of everything they print or keep.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::postgres::{Postgres, Worker, PASSWORD};
use support::server::Server;
use support::*;

const HELLO: &str = r#"flow hello {
  input name: string = "world"
  task greet = shell.run { script: "echo hello ${name}; echo second line" }
  output said = greet.stdout
}
"#;

const GATE: &str = r#"flow gate {
  task before = shell.run { script: "n=$(cat runs 2>/dev/null || echo 0); echo $((n+1)) > runs; echo build-$((n+1))" }
  task gate = approval { summary: "Ship ${before.stdout}?", reviewers: ["alice"], timeout: 1h }
  task after = shell.run { cmd: ["echo", "approved by", gate.by], after: [gate] }
  output said = after.stdout
}
"#;

/// Runs kflow and fails the test if the database's password shows
/// anywhere in what it printed.
fn checked(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let o = kflow(dir, args, envs);
    for stream in [&o.stdout, &o.stderr] {
        assert!(
            !text(stream).contains(PASSWORD),
            "`kflow {}` printed the password: {}",
            args.join(" "),
            text(stream)
        );
    }
    o
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)))
}

#[test]
fn a_run_is_recorded_in_postgres_and_every_history_command_reads_it() {
    let pg = Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hello.kflow"), HELLO).unwrap();

    let o = checked(d, &["run", "hello.kflow", "--store", &url, "-i", "name=pg"], &[]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let id = text(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("execution ").and_then(|r| r.split_whitespace().next()))
        .unwrap()
        .to_string();
    // The database holds the history; the folder holds none.
    assert!(!d.join(".kflow/history.db").exists());
    assert_eq!(
        pg.sql(&format!("SELECT state FROM executions WHERE id = '{id}'")),
        "succeeded"
    );

    // KFLOW_STORE instead of the flag: the password stays off the command line.
    let env = [("KFLOW_STORE", url.as_str())];
    let listed = json(&checked(d, &["executions", "list", "--json"], &env));
    assert_eq!(listed[0]["id"], id.as_str());
    let shown = json(&checked(
        d,
        &["executions", "show", &id[..16], "--json", "--store", &url],
        &[],
    ));
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(shown["tasks"][0]["task"], "greet");
    assert_eq!(shown["outputs"]["said"], "hello pg\nsecond line");
    let o = checked(d, &["logs", "latest"], &env);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "greet | hello pg\ngreet | second line\n");
    let o = checked(d, &["logs", &id, "greet", "--follow"], &env);
    assert_eq!(text(&o.stdout), "hello pg\nsecond line\n");

    // A second run, then pruning all but the newest.
    let o = checked(d, &["run", "hello.kflow"], &env);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = checked(d, &["executions", "prune", "--keep", "1"], &env);
    assert!(
        text(&o.stdout).contains(&format!("removed {id}")),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(pg.sql("SELECT count(*) FROM executions"), "1");
    assert_eq!(
        pg.sql(&format!("SELECT count(*) FROM log_lines WHERE execution_id = '{id}'")),
        "0"
    );

    // Nothing kflow keeps holds the password.
    for f in files_under(d) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!text(&bytes).contains(PASSWORD), "{} holds the password", f.display());
    }
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) FROM executions WHERE inputs LIKE '%{PASSWORD}%' OR plan LIKE '%{PASSWORD}%'"
        )),
        "0"
    );
}

#[test]
fn a_gate_is_decided_and_resumed_through_the_shared_history() {
    let pg = Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("gate.kflow"), GATE).unwrap();
    let env = [("KFLOW_STORE", url.as_str())];
    let o = checked(d, &["run", "--detach", "gate.kflow", "--store", &url], &[]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout);
    // The printed hints find the history again, without the password.
    assert!(
        out.contains(&format!(
            "--store 'postgres://kflow:***@127.0.0.1:{}/postgres'",
            pg.port
        )),
        "{out}"
    );
    let id = json(&checked(d, &["executions", "list", "--json"], &env))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        pg.sql(&format!("SELECT state FROM executions WHERE id = '{id}'")),
        "paused"
    );

    let o = checked(d, &["approve", &id, "--as", "mallory"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let o = checked(d, &["approve", &id, "--as", "alice"], &env);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("`kflow resume"), "{}", text(&o.stdout));
    let o = checked(d, &["resume", &id], &env);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("not run again"), "{out}");
    assert_eq!(output(&out, "said"), "approved by alice");
    assert_eq!(std::fs::read_to_string(d.join("runs")).unwrap().trim(), "1");
    assert_eq!(
        pg.sql(&format!("SELECT state FROM executions WHERE id = '{id}'")),
        "succeeded"
    );
    assert_eq!(
        pg.sql(&format!("SELECT decided_by FROM approvals WHERE execution_id = '{id}'")),
        "alice"
    );
}

#[test]
fn a_store_that_is_not_postgres_or_not_reachable_is_a_clear_error() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hello.kflow"), HELLO).unwrap();
    let o = checked(d, &["run", "hello.kflow", "--store", "mysql://root:hunter2@db/x"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("give a PostgreSQL URL"), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("hunter2"), "{}", text(&o.stderr));
    let wrong = pg.url().replace(PASSWORD, "not-the-password");
    let o = checked(d, &["executions", "list", "--store", &wrong], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[test]
fn serve_keeps_its_history_users_and_deliveries_in_postgres() {
    let pg = Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hello.kflow"), HELLO).unwrap();
    let env = [("KFLOW_STORE", url.as_str())];
    // The admin user and token go to the database the server reads.
    std::env::set_var("KFLOW_STORE", &url);
    let server = Server::start_with(d, &["hello.kflow"], &env);
    // Its tasks run on a worker.
    let worker = Worker::start(d, &url, "w1", &[], &[]);
    assert_eq!(pg.sql("SELECT role FROM users WHERE name = 'admin'"), "admin");
    let auth = format!("Bearer {}", server.admin);
    let started = server.request(
        "POST",
        "/api/v1/flows/hello/executions",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        br#"{"inputs": {"name": "server"}}"#,
    );
    assert_eq!(started.status, 201, "{}", started.text());
    let id = started.json()["execution"].as_str().unwrap().to_string();
    let ended = server.ended(&id);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let logs = server.get(&format!("/api/v1/executions/{id}/logs"));
    let texts: Vec<&str> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "queued for a worker",
            "attempt 1 on worker w1",
            "hello server",
            "second line"
        ]
    );
    assert_eq!(
        pg.sql(&format!("SELECT worker FROM attempts WHERE execution_id = '{id}'")),
        "w1"
    );
    // Read back by a command on the same database.
    let shown = json(&checked(d, &["executions", "show", &id, "--json"], &env));
    assert_eq!(shown["state"], "succeeded");
    let audit = pg.sql("SELECT count(*) FROM audit");
    assert_ne!(audit, "0");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg.sql(&format!("SELECT lease_until IS NULL FROM executions WHERE id = '{id}'")) != "t" {
        assert!(Instant::now() < deadline, "a finished execution holds no lease");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!server.log().contains(PASSWORD), "{}", server.log());
    assert!(server.terminate().success());
    assert!(worker.terminate().success());
    assert_eq!(
        pg.sql("SELECT stopped_at IS NOT NULL FROM workers WHERE id = 'w1'"),
        "t"
    );
}
