//! `kflow serve` end to end: the real binary on a free loopback port, real
//! HTTP requests carrying GitHub's payload shapes and signatures computed
//! as GitHub (and Standard Webhooks) compute them.

mod support;

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use support::server::*;

/// A tag push starts the release once; a repeat of the delivery answers
/// the same execution; a branch push is filtered; a bad signature, an
/// unknown flow and an unknown webhook get the same 404, the reason
/// recorded in the deliveries log.
#[test]
fn github_deliveries_start_executions_once() {
    let dir = tempfile::tempdir().unwrap();
    served_flow(dir.path());
    let server = Server::start(dir.path(), &["triggers.kflow"]);
    let tag = fixture("github-push-tag.json");
    let r = github(
        &server,
        "/hooks/release/release",
        "push",
        "delivery-1",
        &tag,
        HOOK_SECRET,
    );
    assert_eq!(r.status, 202, "{}\n{}", r.text(), server.log());
    let accepted = r.json();
    let id = accepted["execution"].as_str().unwrap().to_string();
    assert_eq!(
        accepted["url"],
        format!("http://{}/api/v1/executions/{id}", server.addr)
    );
    let e = server.ended(&id);
    assert_eq!(e["state"], "succeeded", "{e}");
    assert_eq!(e["inputs"]["version"], "v1.4.0");
    assert_eq!(e["outputs"]["said"], "releasing v1.4.0 from none.tar");
    assert_eq!(e["trigger"]["name"], "release");
    assert_eq!(e["trigger"]["delivery"], "delivery-1");
    assert_eq!(e["tasks"][0]["state"], "succeeded");

    // GitHub redelivers: the same execution, nothing new.
    let again = github(
        &server,
        "/hooks/release/release",
        "push",
        "delivery-1",
        &tag,
        HOOK_SECRET,
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["execution"], id.as_str());

    let branch = github(
        &server,
        "/hooks/release/release",
        "push",
        "delivery-2",
        &fixture("github-push-branch.json"),
        HOOK_SECRET,
    );
    assert_eq!(branch.status, 204, "{}", branch.text());

    let forged = github(&server, "/hooks/release/release", "push", "delivery-3", &tag, "a guess");
    let no_flow = github(&server, "/hooks/nope/release", "push", "delivery-4", &tag, HOOK_SECRET);
    let no_hook = github(&server, "/hooks/release/nope", "push", "delivery-5", &tag, HOOK_SECRET);
    let schedule = github(
        &server,
        "/hooks/release/schedule",
        "push",
        "delivery-6",
        &tag,
        HOOK_SECRET,
    );
    for r in [&forged, &no_flow, &no_hook, &schedule] {
        assert_eq!((r.status, r.text()), (forged.status, forged.text()));
    }
    assert_eq!(forged.status, 404);
    // The forged delivery did not take its id: the real one still starts.
    let real = github(
        &server,
        "/hooks/release/release",
        "push",
        "delivery-3",
        &tag,
        HOOK_SECRET,
    );
    assert_eq!(real.status, 202, "{}", real.text());

    let log = deliveries(&server);
    let verdicts: Vec<(&str, &str)> = log
        .iter()
        .map(|d| (d["verdict"].as_str().unwrap(), d["reason"].as_str().unwrap_or("")))
        .collect();
    assert!(
        verdicts.contains(&("unverified", "X-Hub-Signature-256 does not match the body")),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("unverified", "no flow `nope` is served")),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("unverified", "flow `release` has no webhook `schedule`")),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("filtered", "`when` is false for this delivery")),
        "{verdicts:?}"
    );
    let dup = log.iter().find(|d| d["verdict"] == "duplicate").unwrap();
    assert_eq!(dup["execution"], id.as_str());
    assert_eq!(dup["status"], 200);
    assert_eq!(
        server.get("/api/v1/executions?trigger=release")["executions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The server's executions are the history's: the CLI sees them.
    let o = support::kflow(dir.path(), &["executions", "list", "--state", "st"], &[]);
    assert_eq!(
        support::text(&o.stdout).lines().count(),
        2,
        "{}",
        support::text(&o.stdout)
    );
    assert!(server.terminate().success());
}

/// Copies of one delivery arriving at once start one execution.
#[test]
fn concurrent_copies_of_a_delivery_start_one_execution() {
    let dir = tempfile::tempdir().unwrap();
    served_flow(dir.path());
    let server = Server::start(dir.path(), &["triggers.kflow"]);
    let tag = fixture("github-push-tag.json");
    let sig = github_signature(HOOK_SECRET, &tag);
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let r = request(
                        &server.addr,
                        "POST",
                        "/hooks/release/release",
                        &[
                            ("X-GitHub-Event", "push"),
                            ("X-GitHub-Delivery", "same-delivery"),
                            ("X-Hub-Signature-256", &sig),
                        ],
                        &tag,
                    );
                    (r.status, r.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<_> = answers.iter().filter(|(s, _)| *s == 202).collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    let id = &accepted[0].1["execution"];
    for (status, body) in &answers {
        assert!(*status == 202 || *status == 200, "{answers:?}");
        // A copy that arrived while the first was being decided may not
        // know the execution yet; one that knows names the same one.
        assert!(body["execution"] == *id || body["execution"].is_null(), "{answers:?}");
    }
    let runs = server.get("/api/v1/executions")["executions"].as_array().unwrap().len();
    assert_eq!(runs, 1);
}

const PREVIEW: &str = r##"flow preview {
  secret hook_key = env("PREVIEW_HOOK_SECRET")

  on webhook "pr" {
    provider: token
    secret: hook_key
    inputs: { pr: trigger.body.number, head: trigger.body.head }
  }
  on webhook "lab" { provider: gitlab, secret: hook_key, inputs: { pr: trigger.pr ?? 0, head: trigger.sha ?? "none" } }
  on webhook "std" { provider: standard, secret: hook_key, inputs: { pr: 1, head: trigger.event } }

  input pr: int
  input head: string

  task show = shell.run {
    script: "echo \"#$PR at $HEAD\""
    env: { PR: "${pr}", HEAD: head }
  }

  output said = show.stdout
}
"##;

/// Bad input, each answered as the brief says and recorded: values that do
/// not convert and malformed JSON (422), a body over 25 MiB (413), a stale
/// Standard Webhooks timestamp and a wrong GitLab token (404), an unknown
/// route (404, JSON).
#[test]
fn bad_deliveries_are_refused_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("preview.kflow"), PREVIEW).unwrap();
    let server = Server::start(dir.path(), &["preview.kflow"]);
    let bearer = [("Authorization", "Bearer preview-token")];
    let ok = server.request(
        "POST",
        "/hooks/preview/pr",
        &bearer,
        br#"{"number": 42, "head": "abc"}"#,
    );
    assert_eq!(ok.status, 202, "{}\n{}", ok.text(), server.log());
    assert_eq!(
        server.ended(ok.json()["execution"].as_str().unwrap())["outputs"]["said"],
        "#42 at abc"
    );

    let bad = server.request("POST", "/hooks/preview/pr", &bearer, br#"{"number": "forty-two"}"#);
    assert_eq!(bad.status, 422, "{}", bad.text());
    let msg = bad.json();
    assert_eq!(msg["error"], "refused");
    assert!(
        msg["message"]
            .as_str()
            .unwrap()
            .contains("`forty-two` is not an integer"),
        "{msg}"
    );
    assert!(
        msg["message"]
            .as_str()
            .unwrap()
            .contains("input `head` (type `string`): absent"),
        "{msg}"
    );

    let malformed = server.request("POST", "/hooks/preview/pr", &bearer, b"{\"number\": 4");
    assert_eq!(malformed.status, 422, "{}", malformed.text());
    assert!(malformed.text().contains("not JSON"), "{}", malformed.text());

    let huge = vec![b' '; 25 * 1024 * 1024 + 10];
    let r = server.request("POST", "/hooks/preview/pr", &bearer, &huge);
    assert_eq!(r.status, 413, "{}", r.text());

    let wrong = server.request(
        "POST",
        "/hooks/preview/pr",
        &[("Authorization", "Bearer preview")],
        b"{}",
    );
    assert_eq!(wrong.status, 404);
    let lab = server.request(
        "POST",
        "/hooks/preview/lab",
        &[("X-Gitlab-Token", "preview-token"), ("X-Gitlab-Event-UUID", "u-1")],
        br#"{"object_kind": "merge_request", "object_attributes": {"iid": 7, "last_commit": {"id": "abc"}}}"#,
    );
    assert_eq!(lab.status, 202, "{}", lab.text());
    let lab_wrong = server.request("POST", "/hooks/preview/lab", &[("X-Gitlab-Token", "nope")], b"{}");
    assert_eq!(lab_wrong.status, 404);

    // Standard Webhooks: signed now it starts; signed 10 minutes ago it is a replay.
    let body = br#"{"type": "build.finished"}"#;
    let sign = |at: i64| {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"preview-token").unwrap();
        mac.update(format!("msg_1.{at}.").as_bytes());
        mac.update(body);
        use base64::Engine as _;
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let fresh = server.request(
        "POST",
        "/hooks/preview/std",
        &[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &sign(now)),
        ],
        body,
    );
    assert_eq!(fresh.status, 202, "{}", fresh.text());
    let stale_at = now - 600;
    let stale = server.request(
        "POST",
        "/hooks/preview/std",
        &[
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", &stale_at.to_string()),
            ("webhook-signature", &sign(stale_at)),
        ],
        body,
    );
    assert_eq!(stale.status, 404, "{}", stale.text());

    let route = server.request("GET", "/no/such/route", &[], b"");
    assert_eq!((route.status, route.json()["error"].as_str()), (404, Some("not_found")));
    let auth = format!("Bearer {}", server.admin);
    let state = server.request(
        "GET",
        "/api/v1/executions?state=sideways",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(state.status, 400, "{}", state.text());

    let log = deliveries(&server);
    let reasons: Vec<&str> = log.iter().filter_map(|d| d["reason"].as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("stale or replayed")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("X-Gitlab-Token does not match")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("Authorization: Bearer does not match")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("larger than 25 MiB")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("not an integer")), "{reasons:?}");
    // No secret in the log, the API or the answers.
    let everything = format!("{log:?}{}", server.get("/api/v1/executions"));
    assert!(!everything.contains("preview-token"), "{everything}");
}

/// A flow edited into an error keeps its last good version serving (its
/// webhook still starts executions) and shows the diagnostics; fixed, it
/// serves the new version.
#[test]
fn a_broken_edit_keeps_the_last_good_version_serving() {
    let dir = tempfile::tempdir().unwrap();
    served_flow(dir.path());
    let file = dir.path().join("triggers.kflow");
    let server = Server::start(dir.path(), &["."]);
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        good.replace("task announce = shell.run {", "task announce = shell.rnu {"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let flows = loop {
        let f = server.get("/api/v1/flows");
        if !f["broken"].as_array().unwrap().is_empty() {
            break f;
        }
        assert!(Instant::now() < deadline, "the edit was not noticed: {}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let broken = &flows["broken"][0];
    assert!(
        broken["diagnostics"]
            .as_str()
            .unwrap()
            .contains("kflow::name::unknown-kind"),
        "{broken}"
    );
    assert_eq!(broken["serving"], serde_json::json!(["release"]));
    assert_eq!(flows["flows"][0]["name"], "release");
    let tag = fixture("github-push-tag.json");
    let r = github(&server, "/hooks/release/release", "push", "d-1", &tag, HOOK_SECRET);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        server.ended(r.json()["execution"].as_str().unwrap())["state"],
        "succeeded"
    );

    std::fs::write(&file, good.replace("releasing", "shipping")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.get("/api/v1/flows")["broken"].as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the fix was not noticed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = github(&server, "/hooks/release/release", "push", "d-2", &tag, HOOK_SECRET);
    let e = server.ended(r.json()["execution"].as_str().unwrap());
    assert_eq!(e["outputs"]["said"], "shipping v1.4.0 from none.tar");
}

/// Schedules fire; after downtime their catch-up rule decides what runs:
/// `all` runs every missed hour, `last` the newest, `none` nothing.
#[test]
fn schedules_fire_and_catch_up_after_downtime() {
    let dir = tempfile::tempdir().unwrap();
    // Hourly at a minute half an hour from now: the newest missed time is
    // ~30 minutes old whenever the test runs (never "on time" for `none`),
    // and a window of 3 hours holds exactly three of them.
    let minute = (jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .minute()
        + 30)
        % 60;
    std::fs::write(
        dir.path().join("nightly.kflow"),
        format!(
            r#"flow ticks {{
  on schedule "* * * * * *" {{ inputs: {{ tag: "tick" }} }}
  on schedule "0 {minute} * * * *" {{ catchup: all, inputs: {{ tag: "all" }} }}
  on schedule "0 {minute} * * * *" {{ catchup: last, inputs: {{ tag: "last" }} }}
  on schedule "0 {minute} * * * *" {{ catchup: none, inputs: {{ tag: "none" }} }}
  input tag: string
  task say = log {{ message: tag }}
}}
"#
        ),
    )
    .unwrap();
    // Three hours of downtime: each hourly schedule last fired before it.
    let st = dir.path().join("st");
    {
        let store = kflow_runtime::store::SqliteStore::open(&st).unwrap();
        let hours_ago = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(3 * 3600 - 60))
            .unwrap()
            .to_string();
        for name in ["schedule-2", "schedule-3", "schedule-4"] {
            store.set_last_fire("ticks", name, &hours_ago).unwrap();
        }
    }
    let server = Server::start(dir.path(), &["nightly.kflow"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let runs = loop {
        let runs = server.get("/api/v1/executions?limit=1000")["executions"]
            .as_array()
            .unwrap()
            .clone();
        if runs.iter().filter(|e| e["inputs"]["tag"] == "tick").count() >= 2 {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "the per-second schedule did not fire: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let count = |tag: &str| runs.iter().filter(|e| e["inputs"]["tag"] == tag).count();
    assert_eq!(
        (count("all"), count("last"), count("none")),
        (3, 1, 0),
        "{}",
        server.log()
    );
    let tick = runs.iter().find(|e| e["inputs"]["tag"] == "tick").unwrap();
    assert_eq!(tick["trigger"]["kind"], "schedule");
    assert!(tick["trigger"]["at"].as_str().unwrap().ends_with('Z'));
    // What fired is remembered: a restart does not run it again.
    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &["nightly.kflow"]);
    std::thread::sleep(Duration::from_millis(1500));
    let runs = server.get("/api/v1/executions?limit=1000")["executions"]
        .as_array()
        .unwrap()
        .clone();
    let count = |tag: &str| runs.iter().filter(|e| e["inputs"]["tag"] == tag).count();
    assert_eq!((count("all"), count("last"), count("none")), (3, 1, 0));
}

/// SIGTERM stops accepting, lets a running execution use the grace period,
/// then cancels it: its `finally` runs and it is recorded `interrupted`.
#[test]
fn sigterm_cancels_what_outlives_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slow.kflow"),
        r#"flow slow {
  secret hook_key = env("PREVIEW_HOOK_SECRET")
  on webhook "go" { provider: token, secret: hook_key }
  try {
    task wait = shell.run { script: "sleep 60" }
  } finally {
    task tidy = shell.run { script: "echo tidied > tidied.txt" }
  }
}
"#,
    )
    .unwrap();
    let server = Server::start(dir.path(), &["slow.kflow", "--grace", "1s"]);
    let r = server.request(
        "POST",
        "/hooks/slow/go",
        &[("Authorization", "Bearer preview-token")],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["execution"].as_str().unwrap().to_string();
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(dir.path().join("tidied.txt").exists(), "finally ran");
    let o = support::kflow(dir.path(), &["executions", "show", &id, "--json", "--state", "st"], &[]);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["state"], "interrupted", "{e}");
}

/// SIGKILL of the server while one execution runs and one waits at its
/// gate: after a restart the running one goes on from what succeeded (its
/// first task is not run again), the paused one is still paused and can be
/// approved, and no delivery or execution is lost or doubled.
#[test]
fn a_killed_server_resumes_its_executions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crash.kflow"),
        r#"flow crash {
  secret hook_key = env("PREVIEW_HOOK_SECRET")
  on webhook "go" { provider: token, secret: hook_key }
  task first = shell.run { script: "echo ran >> first.txt" }
  task slow = shell.run {
    script: "while [ ! -f go ]; do sleep 0.05; done; echo done"
    after: [first]
  }
  output said = slow.stdout
}

flow gated {
  secret hook_key = env("PREVIEW_HOOK_SECRET")
  on webhook "go" { provider: token, secret: hook_key }
  task gate = approval { summary: "Ship it?", timeout: 1h }
  task after = log { message: "approved by ${gate.by}" }
}
"#,
    )
    .unwrap();
    let auth = [("Authorization", "Bearer preview-token")];
    let server = Server::start(dir.path(), &["crash.kflow"]);
    let running = server.request("POST", "/hooks/crash/go", &auth, b"").json()["execution"]
        .as_str()
        .unwrap()
        .to_string();
    let paused = server.request("POST", "/hooks/gated/go", &auth, b"").json()["execution"]
        .as_str()
        .unwrap()
        .to_string();
    let wait_for = |server: &Server, id: &str, what: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let e = server.get(&format!("/api/v1/executions/{id}"));
            if what(&e) {
                return e;
            }
            assert!(Instant::now() < deadline, "{e}\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&server, &running, &|e| e["tasks"][1]["state"] == "running");
    wait_for(&server, &paused, &|e| e["state"] == "paused");
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    let server = Server::start(dir.path(), &["crash.kflow"]);
    assert!(
        server.log().contains(&format!("resumed execution {running}")),
        "{}",
        server.log()
    );
    std::fs::write(dir.path().join("go"), "").unwrap();
    let e = server.ended(&running);
    assert_eq!(e["state"], "succeeded", "{e}\n{}", server.log());
    assert_eq!(e["outputs"]["said"], "done");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("first.txt")).unwrap(),
        "ran\n",
        "the task that succeeded before the kill is restored, not run again"
    );
    let g = wait_for(&server, &paused, &|e| {
        e["state"] == "paused" && e["tasks"][0]["state"] == "running"
    });
    assert_eq!(g["state"], "paused");
    let o = support::kflow(dir.path(), &["approve", &paused, "--as", "alice", "--state", "st"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", support::text(&o.stderr));
    wait_for(&server, &paused, &|e| e["state"] == "succeeded");
    let all = server.get("/api/v1/executions")["executions"].as_array().unwrap().len();
    assert_eq!(all, 2, "nothing started twice");
    let accepted = deliveries(&server)
        .iter()
        .filter(|d| d["verdict"] == "accepted")
        .count();
    assert_eq!(accepted, 2);
}

/// `concurrency`: a newer push to a pull request cancels its older run
/// (recorded `cancelled`, its `finally` run) while another pull request's
/// run goes on; `queue` waits its turn; `skip` starts nothing.
#[test]
fn concurrency_keys_cancel_queue_or_skip() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pr.kflow"),
        r#"flow preview {
  secret hook_key = env("PREVIEW_HOOK_SECRET")
  on webhook "pr" { provider: token, secret: hook_key, inputs: { pr: trigger.body.pr, push: trigger.body.push } }
  concurrency { key: "pr-${pr}", on_conflict: cancel_running }
  input pr: int
  input push: int
  try {
    task deploy = shell.run {
      script: "while [ ! -f \"go-$PR-$PUSH\" ]; do sleep 0.05; done"
      env: { PR: "${pr}", PUSH: "${push}" }
    }
  } finally {
    task teardown = shell.run { script: "echo \"$PUSH\" >> \"down-$PR\"", env: { PR: "${pr}", PUSH: "${push}" } }
  }
}

flow one_at_a_time {
  secret hook_key = env("PREVIEW_HOOK_SECRET")
  on webhook "go" { provider: token, secret: hook_key, inputs: { n: trigger.body.n } }
  concurrency { limit: 1 }
  input n: int
  task wait = shell.run { script: "while [ ! -f \"q-$N\" ]; do sleep 0.05; done", env: { N: "${n}" } }
}

flow only_one {
  secret hook_key = env("PREVIEW_HOOK_SECRET")
  on webhook "go" { provider: token, secret: hook_key }
  concurrency { key: "only", on_conflict: skip }
  task wait = shell.run { script: "while [ ! -f skip-go ]; do sleep 0.05; done" }
}
"#,
    )
    .unwrap();
    let server = Server::start(dir.path(), &["pr.kflow"]);
    let auth = [("Authorization", "Bearer preview-token")];
    let post = |hook: &str, body: &str| {
        let r = server.request("POST", hook, &auth, body.as_bytes());
        assert_eq!(r.status, 202, "{}\n{}", r.text(), server.log());
        r.json()
    };
    let state = |id: &serde_json::Value| server.get(&format!("/api/v1/executions/{}", id.as_str().unwrap()));
    let wait_state = |id: &serde_json::Value, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let e = state(id);
            if e["state"] == want {
                return e;
            }
            assert!(Instant::now() < deadline, "{e}\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let first = post("/hooks/preview/pr", r#"{"pr": 7, "push": 1}"#);
    let other_pr = post("/hooks/preview/pr", r#"{"pr": 8, "push": 1}"#);
    let second = post("/hooks/preview/pr", r#"{"pr": 7, "push": 2}"#);
    assert_eq!(second["state"], "running");
    let cancelled = wait_state(&first["execution"], "cancelled");
    let why = cancelled["failures"].to_string();
    assert!(why.contains(second["execution"].as_str().unwrap()), "{why}");
    assert!(why.contains("pr-7"), "{why}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("down-7")).unwrap(),
        "1\n",
        "its finally ran"
    );
    assert_eq!(
        state(&other_pr["execution"])["state"],
        "running",
        "another key is not touched"
    );
    std::fs::write(dir.path().join("go-7-2"), "").unwrap();
    std::fs::write(dir.path().join("go-8-1"), "").unwrap();
    wait_state(&second["execution"], "succeeded");
    wait_state(&other_pr["execution"], "succeeded");

    let a = post("/hooks/one_at_a_time/go", r#"{"n": 1}"#);
    let b = post("/hooks/one_at_a_time/go", r#"{"n": 2}"#);
    assert_eq!(
        (a["state"].as_str(), b["state"].as_str()),
        (Some("running"), Some("queued"))
    );
    assert_eq!(state(&b["execution"])["state"], "queued");
    std::fs::write(dir.path().join("q-2"), "").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(&b["execution"])["state"], "queued", "it waits for the first");
    std::fs::write(dir.path().join("q-1"), "").unwrap();
    wait_state(&a["execution"], "succeeded");
    wait_state(&b["execution"], "succeeded");

    let kept = post("/hooks/only_one/go", "");
    let skipped = post("/hooks/only_one/go", "");
    assert_eq!(skipped["state"], "cancelled");
    let e = state(&skipped["execution"]);
    assert_eq!(e["state"], "cancelled");
    assert!(e["failures"].to_string().contains("skipped"), "{e}");
    std::fs::write(dir.path().join("skip-go"), "").unwrap();
    wait_state(&kept["execution"], "succeeded");
}

/// Tokens act as their users with their roles: a viewer reads but does not
/// start, an operator starts and cancels, only a reviewer of the gate
/// decides it (once), only admins read deliveries and the audit trail;
/// expired and revoked tokens and no token are refused; wrong passwords
/// are rate-limited; every action is in the audit trail.
#[test]
fn users_tokens_roles_and_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ship.kflow"),
        r#"flow ship {
  input version: string
  task gate = approval { summary: "Ship ${version}?", reviewers: ["alice"], timeout: 1h }
  task done = log { message: "shipped by ${gate.by}" }
  output approved_by = gate.by
}
"#,
    )
    .unwrap();
    let viewer = user_with_token(dir.path(), "val", "viewer", false);
    let operator = user_with_token(dir.path(), "ci", "operator", false);
    let alice = user_with_token(dir.path(), "alice", "approver", true);
    let bob = user_with_token(dir.path(), "bob", "approver", false);
    let server = Server::start(dir.path(), &["ship.kflow"]);
    let bearer = |t: &str| format!("Bearer {t}");
    let call = |method: &str, path: &str, token: &str, body: &str| {
        let auth = bearer(token);
        server.request(
            method,
            path,
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };

    assert_eq!(server.request("GET", "/api/v1/executions", &[], b"").status, 401);
    assert_eq!(call("GET", "/api/v1/executions", "kflow_tok_x_nope", "").status, 401);
    assert_eq!(call("GET", "/api/v1/executions", &viewer, "").status, 200);
    let denied = call(
        "POST",
        "/api/v1/flows/ship/executions",
        &viewer,
        r#"{"inputs": {"version": "1.0"}}"#,
    );
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(denied.text().contains("operator"), "{}", denied.text());
    assert_eq!(call("GET", "/api/v1/deliveries", &operator, "").status, 403);
    assert_eq!(call("GET", "/api/v1/audit", &alice, "").status, 403);

    let bad = call(
        "POST",
        "/api/v1/flows/ship/executions",
        &operator,
        r#"{"inputs": {"versoin": "1.0"}}"#,
    );
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.text().contains("has no input `versoin`"), "{}", bad.text());
    let started = call(
        "POST",
        "/api/v1/flows/ship/executions",
        &operator,
        r#"{"inputs": {"version": "1.0"}}"#,
    );
    assert_eq!(started.status, 201, "{}", started.text());
    let id = started.json()["execution"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get(&format!("/api/v1/executions/{id}"))["approvals"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let path = format!("/api/v1/executions/{id}/approvals/gate");
    let not_reviewer = call("POST", &path, &bob, r#"{"decision": "approve"}"#);
    assert_eq!(not_reviewer.status, 403, "{}", not_reviewer.text());
    assert_eq!(call("POST", &path, &operator, r#"{"decision": "approve"}"#).status, 403);
    assert_eq!(call("POST", &path, &alice, r#"{"decision": "maybe"}"#).status, 400);
    let ok = call(
        "POST",
        &path,
        &alice,
        r#"{"decision": "approve", "comment": "scan is clean"}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        call("POST", &path, &alice, r#"{"decision": "reject"}"#).status,
        409,
        "decided once"
    );
    let e = server.ended(&id);
    assert_eq!(e["state"], "succeeded", "{e}");
    assert_eq!(e["outputs"]["approved_by"], "alice");
    assert_eq!(e["approvals"][0]["comment"], "scan is clean");

    // Cancelling: a running execution is stopped and recorded `cancelled`.
    let second = call(
        "POST",
        "/api/v1/flows/ship/executions",
        &operator,
        r#"{"inputs": {"version": "2.0"}}"#,
    );
    let id2 = second.json()["execution"].as_str().unwrap().to_string();
    let c = call("POST", &format!("/api/v1/executions/{id2}/cancel"), &operator, "");
    assert_eq!(c.status, 202, "{}", c.text());
    let e = server.ended(&id2);
    assert_eq!(e["state"], "cancelled", "{e}");
    assert!(e["failures"].to_string().contains("cancelled by ci"), "{e}");
    assert_eq!(
        call("POST", &format!("/api/v1/executions/{id2}/cancel"), &operator, "").status,
        409
    );

    // Expired and revoked tokens.
    let o = support::kflow(
        dir.path(),
        &["token", "create", "val", "--expires", "1ms", "--state", "st"],
        &[],
    );
    let expired = support::text(&o.stdout).lines().last().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(20));
    let r = call("GET", "/api/v1/executions", &expired, "");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("expired"), "{}", r.text());
    let tok_id = viewer.split('_').nth(2).unwrap();
    let o = support::kflow(
        dir.path(),
        &["token", "revoke", &format!("tok_{tok_id}"), "--state", "st"],
        &[],
    );
    assert!(o.status.success(), "{}", support::text(&o.stderr));
    let r = call("GET", "/api/v1/executions", &viewer, "");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("revoked"), "{}", r.text());
    let list = support::text(&support::kflow(dir.path(), &["token", "list", "--state", "st"], &[]).stdout);
    assert!(list.contains("revoked"), "{list}");
    assert!(!list.contains("kflow_tok"), "secrets are never listed: {list}");

    // Passwords: a login works; five failures (from one address, or for one
    // name) lock it out for 15 minutes, the right password included.
    let login = |pw: &str| {
        server.request(
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            serde_json::json!({ "username": "alice", "password": pw })
                .to_string()
                .as_bytes(),
        )
    };
    let r = login("correct horse");
    assert_eq!(r.status, 200, "{}", r.text());
    let session = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(call("GET", "/api/v1/executions", &session, "").status, 200);
    // A machine user has no password to log in with.
    let r = server.request("POST", "/api/v1/login", &[], br#"{"username": "ci", "password": ""}"#);
    assert_eq!(r.status, 401);
    for _ in 0..4 {
        assert_eq!(login("wrong").status, 401);
    }
    let locked = login("correct horse");
    assert_eq!(locked.status, 429, "{}", locked.text());
    // Locked out by address too: another name from here is refused as well.
    let r = server.request("POST", "/api/v1/login", &[], br#"{"username": "bob", "password": "x"}"#);
    assert_eq!(r.status, 429);

    let audit = call("GET", "/api/v1/audit", &server.admin, "");
    assert_eq!(audit.status, 200);
    let actions: Vec<String> = audit.json()["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {}", a["actor"].as_str().unwrap(), a["action"].as_str().unwrap()))
        .collect();
    for want in [
        "ci start",
        "alice approve",
        "ci cancel",
        "alice login",
        "alice login_failed",
    ] {
        assert!(actions.contains(&want.to_string()), "{want}: {actions:?}");
    }
    assert!(actions.iter().any(|a| a.ends_with("token_revoked")), "{actions:?}");
    assert!(actions.iter().any(|a| a.ends_with("user_added")), "{actions:?}");
    let everything = format!("{}{}", audit.text(), server.get("/api/v1/executions"));
    for secret in [&alice, &operator, &session] {
        assert!(!everything.contains(secret.as_str()), "a token leaked");
    }
}

/// A gate that needs two distinct approvals, which whoever started the
/// execution may not give, with the digest it approves and its evidence
/// shown beside the votes.
#[test]
fn gates_need_distinct_approvals_and_refuse_self_approval() {
    let dir = tempfile::tempdir().unwrap();
    let digest = format!("sha256:{}", "a".repeat(64));
    std::fs::write(
        dir.path().join("promote.kflow"),
        format!(
            r#"flow promote {{
  task gate = approval {{
    summary: "Promote?"
    reviewers: ["alice", "bob", "carol"]
    required: 2
    prevent_self_approval: true
    subject: pinned("127.0.0.1:5000/app@{digest}")
    evidence: {{ scan: "https://scan.example/report/1" }}
    timeout: 1h
  }}
  output approvers = gate.approvers
  output subject = gate.subject ?? pinned("127.0.0.1:5000/none@{digest}")
}}
"#
        ),
    )
    .unwrap();
    let alice = user_with_token(dir.path(), "alice", "approver", false);
    let bob = user_with_token(dir.path(), "bob", "approver", false);
    let carol = user_with_token(dir.path(), "carol", "approver", false);
    let server = Server::start(dir.path(), &["promote.kflow"]);
    let call = |path: &str, token: &str, body: &str| {
        let auth = format!("Bearer {token}");
        server.request("POST", path, &[("Authorization", &auth)], body.as_bytes())
    };
    let id = call("/api/v1/flows/promote/executions", &carol, "{}").json()["execution"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get(&format!("/api/v1/executions/{id}"))["approvals"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let gate = format!("/api/v1/executions/{id}/approvals/gate");
    let own = call(&gate, &carol, r#"{"decision": "approve"}"#);
    assert_eq!(own.status, 403, "{}", own.text());
    assert!(own.text().contains("prevent_self_approval"), "{}", own.text());
    let first = call(&gate, &alice, r#"{"decision": "approve", "comment": "scan is clean"}"#);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        (first.json()["decided"].as_bool(), first.json()["approvals"].as_u64()),
        (Some(false), Some(1))
    );
    assert_eq!(
        call(&gate, &alice, r#"{"decision": "approve"}"#).status,
        409,
        "one vote each"
    );
    let e = server.get(&format!("/api/v1/executions/{id}"));
    let g = &e["approvals"][0];
    assert_eq!(g["subject"], format!("127.0.0.1:5000/app@{digest}"));
    assert_eq!(g["evidence"]["scan"], "https://scan.example/report/1");
    assert_eq!(g["required"], 2);
    assert_eq!(g["votes"][0]["user"], "alice");
    assert_eq!(e["state"], "paused");
    let second = call(&gate, &bob, r#"{"decision": "approve"}"#);
    assert_eq!(second.json()["decided"], true, "{}", second.text());
    let e = server.ended(&id);
    assert_eq!(e["state"], "succeeded", "{e}");
    assert_eq!(e["outputs"]["approvers"], serde_json::json!(["alice", "bob"]));
    assert_eq!(e["outputs"]["subject"], format!("127.0.0.1:5000/app@{digest}"));
}

/// `kflow approve`, `reject` and `cancel` through the server: the token says
/// who decides, `--as` is refused there, and the decision lands as the
/// token's user.
#[test]
fn the_cli_decides_and_cancels_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ship.kflow"),
        r#"flow ship {
  task gate = approval { summary: "Ship?", reviewers: ["alice"], timeout: 1h }
  output approved_by = gate.by
}
"#,
    )
    .unwrap();
    let alice = user_with_token(dir.path(), "alice", "approver", false);
    let server = Server::start(dir.path(), &["ship.kflow"]);
    let url = format!("http://{}", server.addr);
    let start = || {
        let auth = format!("Bearer {alice}");
        let r = server.request(
            "POST",
            "/api/v1/flows/ship/executions",
            &[("Authorization", &auth)],
            b"{}",
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["execution"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.get(&format!("/api/v1/executions/{id}"))["state"] != "paused" {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
        id
    };
    let id = start();
    let env = [("KFLOW_SERVER", url.as_str()), ("KFLOW_TOKEN", alice.as_str())];
    let o = support::kflow(dir.path(), &["approve", &id, "--as", "mallory"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        support::text(&o.stderr).contains("KFLOW_TOKEN says who"),
        "{}",
        support::text(&o.stderr)
    );
    let o = support::kflow(dir.path(), &["approve", &id, "--comment", "looks right"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", support::text(&o.stderr));
    assert!(
        support::text(&o.stdout).contains("as alice"),
        "{}",
        support::text(&o.stdout)
    );
    let e = server.ended(&id);
    assert_eq!(e["outputs"]["approved_by"], "alice");
    assert_eq!(e["approvals"][0]["comment"], "looks right");

    let id = start();
    let bad = [("KFLOW_SERVER", url.as_str()), ("KFLOW_TOKEN", "kflow_tok_0_wrong")];
    let o = support::kflow(dir.path(), &["cancel", &id], &bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        support::text(&o.stderr).contains("the server refused (401)"),
        "{}",
        support::text(&o.stderr)
    );
    let o = support::kflow(dir.path(), &["cancel", &id], &env);
    assert_eq!(o.status.code(), Some(0), "{}", support::text(&o.stderr));
    assert_eq!(server.ended(&id)["state"], "cancelled");
    let o = support::kflow(dir.path(), &["cancel", &id], &[]);
    assert_eq!(o.status.code(), Some(2), "without a server, cancel says how");
}

/// Parses a server-sent event stream into (event, id, data).
fn sse(text: &str) -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut event, mut id, mut data) = (String::new(), None, String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                event = v.to_string();
            } else if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                data.push_str(v);
            }
        }
        if !event.is_empty() {
            out.push((event, id, data));
        }
    }
    out
}

/// Logs page by byte offset; the live stream carries task states and
/// lines as they are written and ends with the execution; resumed with
/// `Last-Event-ID`, it sends only what came after.
#[test]
fn logs_and_live_events() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("talk.kflow"),
        r#"flow talk {
  secret hook_key = env("PREVIEW_HOOK_SECRET")
  on webhook "go" { provider: token, secret: hook_key }
  task speak = shell.run { script: "for i in 1 2 3 4; do echo line $i; sleep 0.2; done" }
  task after = log { message: "done talking", after: [speak] }
}
"#,
    )
    .unwrap();
    let server = Server::start(dir.path(), &["talk.kflow"]);
    let r = server.request(
        "POST",
        "/hooks/talk/go",
        &[("Authorization", "Bearer preview-token")],
        b"",
    );
    let id = r.json()["execution"].as_str().unwrap().to_string();
    let auth = format!("Bearer {}", server.admin);
    // Connected while it runs: the stream ends when the execution does.
    let live = server.request(
        "GET",
        &format!("/api/v1/executions/{id}/events"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(live.status, 200, "{}", live.text());
    let events = sse(&live.text());
    let kinds: Vec<&str> = events.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"state"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    assert!(events.last().unwrap().2.contains("succeeded"), "{events:?}");
    let lines: Vec<String> = events
        .iter()
        .filter(|(e, _, _)| e == "logs")
        .flat_map(|(_, _, d)| serde_json::from_str::<Vec<serde_json::Value>>(d).unwrap())
        .map(|l| format!("{} {}", l["task"].as_str().unwrap(), l["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            "speak line 1",
            "speak line 2",
            "speak line 3",
            "speak line 4",
            "after done talking"
        ]
    );
    assert!(
        events
            .iter()
            .any(|(e, _, d)| e == "task" && d.contains("\"after\"") && d.contains("succeeded")),
        "{events:?}"
    );

    // Resumed after the first batch of lines: only the lines after it.
    let first = events.iter().find(|(e, _, _)| e == "logs").unwrap();
    let first_id = first.1.clone().unwrap();
    let seen = serde_json::from_str::<Vec<serde_json::Value>>(&first.2).unwrap().len();
    let again = server.request(
        "GET",
        &format!("/api/v1/executions/{id}/events"),
        &[("Authorization", &auth), ("Last-Event-ID", &first_id)],
        b"",
    );
    let rest: usize = sse(&again.text())
        .iter()
        .filter(|(e, _, _)| e == "logs")
        .map(|(_, _, d)| serde_json::from_str::<Vec<serde_json::Value>>(d).unwrap().len())
        .sum();
    assert_eq!(seen + rest, 5);

    // Pages of the log, whole or by task run.
    let page = server.get(&format!("/api/v1/executions/{id}/logs"));
    assert_eq!(page["lines"].as_array().unwrap().len(), 5);
    let next = page["next"].as_u64().unwrap();
    let empty = server.get(&format!("/api/v1/executions/{id}/logs?after={next}"));
    assert!(empty["lines"].as_array().unwrap().is_empty());
    assert_eq!(empty["more"], false);
    let one = server.get(&format!("/api/v1/executions/{id}/logs/after"));
    assert_eq!(one["lines"][0]["text"], "done talking");
    assert_eq!(one["lines"].as_array().unwrap().len(), 1);
    let missing = server.request(
        "GET",
        "/api/v1/executions/nope/events",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(missing.status, 404);
}

/// The OpenAPI document the server serves names every route it serves:
/// each documented operation reaches a handler (never the fallback's
/// "no such route"), and none answers 5xx to a plain request.
#[test]
fn every_documented_route_is_served() {
    let dir = tempfile::tempdir().unwrap();
    served_flow(dir.path());
    let server = Server::start(dir.path(), &["triggers.kflow"]);
    let doc = server.request("GET", "/api/v1/openapi.json", &[], b"");
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    let auth = format!("Bearer {}", server.admin);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{flow}", "release")
                .replace("{trigger}", "nope")
                .replace("{id}", "20990101-000000000-0000000000000000")
                .replace("{task}", "announce");
            let r = server.request(
                &method.to_uppercase(),
                &concrete,
                &[("Authorization", &auth), ("Content-Type", "application/json")],
                b"{}",
            );
            assert!(r.status < 500, "{method} {path}: {} {}", r.status, r.text());
            assert!(!r.text().contains("no such route"), "{method} {path} is not served");
            checked += 1;
        }
    }
    assert!(checked >= 17, "{checked}");
}
