//! What operators and admins do to a running `kflow serve`: rerun an
//! execution (whole, or from its failed tasks), replay a delivery, download
//! an execution's artifacts, follow a digest, list deliveries from the CLI.

mod support;

use std::path::Path;

use support::server::*;

/// The first task counts its runs in a file; the second fails until `ok`
/// exists.
const FLAKY: &str = r#"flow flaky {
  task first = shell.run { script: "echo run >> runs.txt; echo first" }
  task second = shell.run { script: "test -f ok && echo fixed", after: [first] }
  output said = second.stdout
}
"#;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs.txt"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// A failed execution rerun from its failed tasks keeps what succeeded (the
/// first task does not run again) and is linked to it; a whole rerun runs
/// everything; a running execution is not rerun; a viewer may not rerun;
/// each rerun is in the audit trail.
#[test]
fn reruns_keep_what_succeeded_or_run_everything() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flaky.kflow"), FLAKY).unwrap();
    let server = Server::start(dir.path(), &["flaky.kflow"]);
    let admin = bearer(&server.admin);
    let viewer = bearer(&user_with_token(dir.path(), "vic", "viewer", false));

    let r = server.request(
        "POST",
        "/api/v1/flows/flaky/executions",
        &[("Authorization", &admin)],
        b"{}",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let first = r.json()["execution"].as_str().unwrap().to_string();
    assert_eq!(server.ended(&first)["state"], "failed");
    assert_eq!(runs(dir.path()), 1);

    let refused = server.request(
        "POST",
        &format!("/api/v1/executions/{first}/rerun"),
        &[("Authorization", &viewer)],
        b"",
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    let unknown = server.request(
        "POST",
        &format!("/api/v1/executions/{first}/rerun"),
        &[("Authorization", &admin)],
        br#"{"from": "failed"}"#,
    );
    assert_eq!(unknown.status, 400, "{}", unknown.text());

    std::fs::write(dir.path().join("ok"), "").unwrap();
    let r = server.request(
        "POST",
        &format!("/api/v1/executions/{first}/rerun"),
        &[("Authorization", &admin)],
        br#"{"from_failed": true}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["rerun_of"], first.as_str());
    let second = r.json()["execution"].as_str().unwrap().to_string();
    let e = server.ended(&second);
    assert_eq!(e["state"], "succeeded", "{e}");
    assert_eq!(e["rerun_of"], first.as_str());
    assert_eq!(e["outputs"]["said"], "fixed");
    assert_eq!(runs(dir.path()), 1, "the first task was kept, not run again");
    let kept = e["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "first")
        .unwrap()
        .clone();
    assert_eq!(kept["state"], "succeeded", "{kept}");
    assert_eq!(kept["outputs"]["stdout"], "first");

    // A succeeded execution is not rerun from its failed tasks; whole, it is.
    let none = server.request(
        "POST",
        &format!("/api/v1/executions/{second}/rerun"),
        &[("Authorization", &admin)],
        br#"{"from_failed": true}"#,
    );
    assert_eq!(none.status, 422, "{}", none.text());
    assert!(none.text().contains("failed or interrupted"), "{}", none.text());
    let whole = server.request(
        "POST",
        &format!("/api/v1/executions/{second}/rerun"),
        &[("Authorization", &admin)],
        b"",
    );
    assert_eq!(whole.status, 201, "{}", whole.text());
    assert_eq!(
        server.ended(whole.json()["execution"].as_str().unwrap())["state"],
        "succeeded"
    );
    assert_eq!(runs(dir.path()), 2);

    let audit = server.get("/api/v1/audit")["audit"].as_array().unwrap().clone();
    let reruns: Vec<_> = audit.iter().filter(|a| a["action"] == "rerun").collect();
    assert_eq!(reruns.len(), 2, "{audit:?}");
    assert!(reruns
        .iter()
        .any(|a| a["detail"]["rerun_of"] == first.as_str() && a["detail"]["from_failed"] == true));
}

/// A recorded delivery replayed by an admin starts a new execution, is
/// recorded as a replay of the original (not refused as a repeat), and is
/// listed by `kflow deliveries list`; an operator may not replay; a
/// delivery that failed its check has no body to replay.
#[test]
fn admins_replay_recorded_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hook.kflow"),
        r#"flow hook {
  secret key = env("PREVIEW_HOOK_SECRET")
  on webhook "pr" { provider: token, secret: key, inputs: { pr: trigger.body.number } }
  input pr: int
  task show = shell.run { script: "echo pr $PR", env: { PR: "${pr}" } }
  output said = show.stdout
}
"#,
    )
    .unwrap();
    let server = Server::start(dir.path(), &["hook.kflow"]);
    let admin = bearer(&server.admin);
    let operator = bearer(&user_with_token(dir.path(), "opal", "operator", false));
    let r = server.request(
        "POST",
        "/hooks/hook/pr",
        &[("Authorization", "Bearer preview-token"), ("Idempotency-Key", "k-1")],
        br#"{"number": 7}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let original = r.json()["delivery"].as_str().unwrap().to_string();
    let first = r.json()["execution"].as_str().unwrap().to_string();
    server.ended(&first);
    let bad = server.request("POST", "/hooks/hook/pr", &[("Authorization", "Bearer wrong")], b"{}");
    assert_eq!(bad.status, 404);

    let path = format!("/api/v1/deliveries/{original}/replay");
    let denied = server.request("POST", &path, &[("Authorization", &operator)], b"");
    assert_eq!(denied.status, 403, "{}", denied.text());
    let replay = server.request("POST", &path, &[("Authorization", &admin)], b"");
    assert_eq!(replay.status, 202, "{}", replay.text());
    let again = replay.json()["execution"].as_str().unwrap().to_string();
    assert_ne!(again, first);
    assert_eq!(server.ended(&again)["outputs"]["said"], "pr 7");

    let listed = server.get("/api/v1/deliveries?limit=10")["deliveries"]
        .as_array()
        .unwrap()
        .clone();
    let unverified = listed.iter().find(|d| d["verdict"] == "unverified").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let replayed = listed
        .iter()
        .find(|d| d["replay_of"] == original.as_str())
        .expect("the replay is recorded");
    assert_eq!(replayed["execution"], again.as_str());
    assert_eq!(replayed["verdict"], "accepted");
    let nothing = server.request(
        "POST",
        &format!("/api/v1/deliveries/{unverified}/replay"),
        &[("Authorization", &admin)],
        b"",
    );
    assert_eq!(nothing.status, 409, "{}", nothing.text());
    let missing = server.request(
        "POST",
        "/api/v1/deliveries/d-nope/replay",
        &[("Authorization", &admin)],
        b"",
    );
    assert_eq!(missing.status, 404);
    assert!(server.get("/api/v1/audit")["audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "replay" && a["target"] == original.as_str()));

    let o = support::kflow(dir.path(), &["deliveries", "list", "--state", "st"], &[]);
    assert!(o.status.success(), "{}", support::text(&o.stderr));
    let out = support::text(&o.stdout);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines().next().unwrap().contains(&format!("replay of {original}")),
        "{out}"
    );
    assert!(out.contains("404 unverified"), "{out}");
    assert!(!out.contains("preview-token"), "{out}");
    let o = support::kflow(
        dir.path(),
        &["deliveries", "list", "--json", "--limit", "1", "--state", "st"],
        &[],
    );
    let line: serde_json::Value = serde_json::from_str(support::text(&o.stdout).trim()).unwrap();
    assert_eq!(line["replay_of"], original.as_str());
}

const IMG: &str = "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A scan's report and SBOM are listed with the execution and download as
/// they were written (streamed, with a file name); names that leave the
/// artifact folder are not served; the scanned digest leads to the
/// execution, and the list filters by it.
#[test]
fn artifacts_download_and_digests_lead_to_their_executions() {
    let dir = tempfile::tempdir().unwrap();
    let path = support::fake_trivy(dir.path(), "debian-buster.json");
    std::fs::write(
        dir.path().join("scan.kflow"),
        "flow scan {\n  input img: pinned\n  task scan = trivy.scan { image: img, sbom: cyclonedx }\n  output critical = scan.critical\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("other.kflow"),
        "flow other {\n  task t = shell.run { script: \"true\" }\n}\n",
    )
    .unwrap();
    let server = Server::start_with(dir.path(), &["."], &[("PATH", &path)]);
    let admin = bearer(&server.admin);
    let body = serde_json::json!({ "inputs": { "img": IMG } }).to_string();
    let r = server.request(
        "POST",
        "/api/v1/flows/scan/executions",
        &[("Authorization", &admin)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["execution"].as_str().unwrap().to_string();
    let e = server.ended(&id);
    assert_eq!(e["state"], "succeeded", "{e}\n{}", server.log());
    let r = server.request(
        "POST",
        "/api/v1/flows/other/executions",
        &[("Authorization", &admin)],
        b"{}",
    );
    server.ended(r.json()["execution"].as_str().unwrap());

    let artifacts = e["artifacts"].as_array().unwrap();
    let names: Vec<&str> = artifacts.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["scan/sbom.cdx.json", "scan/trivy-report.json"], "{e}");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/tests/fixtures/trivy");
    let url = artifacts[1]["url"].as_str().unwrap();
    let path = &url[url.find("/api/").unwrap()..];
    assert!(path.ends_with("/artifacts/scan%2Ftrivy-report.json"), "{path}");
    let report = server.request("GET", path, &[("Authorization", &admin)], b"");
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(report.body, std::fs::read(fixtures.join("debian-buster.json")).unwrap());
    assert_eq!(artifacts[1]["size"], report.body.len());
    let anonymous = server.request("GET", path, &[], b"");
    assert_eq!(anonymous.status, 401);
    std::fs::write(dir.path().join("st/secret.txt"), "not an artifact").unwrap();
    for bad in [
        "..%2F..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        "scan",
        "scan%2Fnone.json",
        "..",
        "%00",
    ] {
        let r = server.request(
            "GET",
            &format!("/api/v1/executions/{id}/artifacts/{bad}"),
            &[("Authorization", &admin)],
            b"",
        );
        assert_eq!(r.status, 404, "{bad}: {}", r.text());
        assert!(!r.text().contains("not an artifact"));
    }

    let d = server.get(&format!("/api/v1/digests/{DIGEST}"));
    let uses = d["uses"].as_array().unwrap();
    assert_eq!(uses.len(), 1, "{d}");
    assert_eq!(uses[0]["execution"], id.as_str());
    assert_eq!(uses[0]["role"], "scanned");
    assert_eq!(uses[0]["task"], "scan");
    let listed = server.get(&format!("/api/v1/executions?digest={DIGEST}"))["executions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    let r = server.request(
        "GET",
        "/api/v1/digests/sha256:nothex",
        &[("Authorization", &admin)],
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let unknown = server.get(&format!("/api/v1/digests/sha256:{}", "f".repeat(64)));
    assert!(unknown["uses"].as_array().unwrap().is_empty());
}

const DROP: &str = r#"flow drop {
  on file "drop/*.tar" { debounce: 1s, inputs: { archive: trigger.path, change: trigger.change } }
  input archive: path
  input change: string
  task show = shell.run { script: "echo $A $C", env: { A: "${archive}", C: change } }
  output said = show.stdout
}
"#;

/// Executions of `flow`, oldest first, once there are `n` of them.
fn wait_for_executions(server: &Server, flow: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut list = server.get(&format!("/api/v1/executions?flow={flow}"))["executions"]
            .as_array()
            .unwrap()
            .clone();
        if list.len() >= n {
            list.reverse();
            return list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} executions: {}",
            list.len(),
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A file dropped into a watched folder starts one execution once it has
/// been quiet for the debounce, however often it was written meanwhile,
/// with its path and change; files there when the server started and files
/// the glob does not match start nothing; a removal is a change too.
#[test]
fn dropped_files_start_one_execution_once_settled() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("drop.kflow"), DROP).unwrap();
    std::fs::create_dir(dir.path().join("drop")).unwrap();
    std::fs::write(dir.path().join("drop/old.tar"), "there before").unwrap();
    let server = Server::start(dir.path(), &["drop.kflow"]);
    // The baseline scan.
    std::thread::sleep(std::time::Duration::from_millis(800));
    std::fs::write(dir.path().join("drop/notes.txt"), "not a tar").unwrap();
    let mut f = std::fs::File::create(dir.path().join("drop/new.tar")).unwrap();
    for _ in 0..5 {
        use std::io::Write;
        f.write_all(&[0; 512]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    drop(f);
    let first = wait_for_executions(&server, "drop", 1);
    let e = server.ended(first[0]["id"].as_str().unwrap());
    assert_eq!(e["outputs"]["said"], "drop/new.tar created", "{e}");
    assert_eq!(e["trigger"]["kind"], "file");
    assert_eq!(e["trigger"]["path"], "drop/new.tar");
    // Written five times, settled once: one execution.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(wait_for_executions(&server, "drop", 1).len(), 1);

    std::fs::remove_file(dir.path().join("drop/old.tar")).unwrap();
    let both = wait_for_executions(&server, "drop", 2);
    let e = server.ended(both[1]["id"].as_str().unwrap());
    assert_eq!(e["outputs"]["said"], "drop/old.tar removed", "{e}");
}

/// With a certificate the server speaks HTTPS only (checked by curl against
/// the certificate); a client that connects and stalls its handshake holds
/// up nobody; a proxy's user header means nothing unless trusted.
#[test]
fn https_with_a_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flaky.kflow"), FLAKY).unwrap();
    support::self_signed(dir.path(), "kflow-test", &["-addext", "subjectAltName=IP:127.0.0.1"]);
    let server = Server::start(
        dir.path(),
        &["flaky.kflow", "--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    );
    // Connected, silent: the handshake waits, the others do not.
    let _stalled = std::net::TcpStream::connect(&server.addr).unwrap();
    let curl = |path: &str, headers: &[&str]| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(dir.path().join("cert.pem"));
        for h in headers {
            cmd.args(["-H", h]);
        }
        let o = cmd.arg(format!("https://{}{path}", server.addr)).output().unwrap();
        assert!(o.status.success(), "curl {path}: {}", support::text(&o.stderr));
        support::text(&o.stdout)
    };
    let health: serde_json::Value = serde_json::from_str(&curl("/healthz", &[])).unwrap();
    assert_eq!(health["status"], "ok");
    let auth = format!("Authorization: Bearer {}", server.admin);
    let flows: serde_json::Value = serde_json::from_str(&curl("/api/v1/flows", &[&auth])).unwrap();
    assert_eq!(flows["flows"][0]["name"], "flaky");
    let ignored = curl("/api/v1/flows", &["X-Forwarded-User: admin"]);
    assert!(ignored.contains("unauthorized"), "{ignored}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let o = std::process::Command::new("curl")
        .args(["--silent", "--max-time", "5"])
        .arg(format!("http://{}/healthz", server.addr))
        .output()
        .unwrap();
    assert!(!support::text(&o.stdout).contains("\"ok\""));
    // A certificate and key that do not go together stop the start.
    let o = support::kflow(
        dir.path(),
        &[
            "serve",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "flaky.kflow",
            "--listen",
            "127.0.0.1:0",
            "--state",
            "st",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        support::text(&o.stderr).contains("TLS: cannot read a private key from"),
        "{}",
        support::text(&o.stderr)
    );
}

/// With `--max-executions 1` starts beyond the first wait `queued` and run
/// one after another, none lost.
#[test]
fn max_executions_queues_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slow.kflow"),
        "flow slow {\n  task nap = shell.run { script: \"sleep 0.5\" }\n}\n",
    )
    .unwrap();
    let server = Server::start(dir.path(), &["slow.kflow", "--max-executions", "1"]);
    let admin = bearer(&server.admin);
    let states: Vec<(String, String)> = (0..3)
        .map(|_| {
            let r = server.request(
                "POST",
                "/api/v1/flows/slow/executions",
                &[("Authorization", &admin)],
                b"{}",
            );
            assert_eq!(r.status, 201, "{}", r.text());
            let j = r.json();
            (
                j["execution"].as_str().unwrap().to_string(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let words: Vec<&str> = states.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(words, ["running", "queued", "queued"]);
    let mut spans = Vec::new();
    for (id, _) in &states {
        let e = server.ended(id);
        assert_eq!(e["state"], "succeeded", "{e}");
        let t = &e["tasks"][0];
        spans.push((
            t["started_at"].as_str().unwrap().to_string(),
            t["ended_at"].as_str().unwrap().to_string(),
        ));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "ran at once: {spans:?}");
    }
}

/// Behind an authenticating proxy the user its header names acts with that
/// user's role; a name that is no user is refused; a token still works.
#[test]
fn a_trusted_proxy_names_the_user() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flaky.kflow"), FLAKY).unwrap();
    let server = Server::start(dir.path(), &["flaky.kflow", "--trust-proxy-header", "X-Forwarded-User"]);
    user_with_token(dir.path(), "vic", "viewer", false);
    let r = server.request("GET", "/api/v1/flows", &[("X-Forwarded-User", "vic")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.request(
        "POST",
        "/api/v1/flows/flaky/executions",
        &[("X-Forwarded-User", "vic")],
        b"{}",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = server.request("GET", "/api/v1/flows", &[("X-Forwarded-User", "mallory")], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("not a user of this server"));
    let r = server.request(
        "GET",
        "/api/v1/audit",
        &[("Authorization", &bearer(&server.admin))],
        b"",
    );
    assert_eq!(r.status, 200);
}
