//! The web UI in a real browser: headless Chromium over WebDriver against
//! the real `kflow serve` binary.

mod support;

use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use support::browser::{self, screenshot_on_failure, sign_in, wait_for};
use support::server::*;

const PASSWORD: &str = "correct horse";

const GATED: &str = r#"flow gated {
  input version: string = "1.0"
  task build = shell.run { script: "echo building $V", env: { V: version } }
  task ok = approval { summary: "Ship ${version}?", reviewers: ["ann"], after: [build] }
  task ship = shell.run { script: "echo shipped-it", after: [ok] }
}
"#;

fn start_gated(dir: &Path) -> (Server, String) {
    std::fs::write(dir.join("gated.kflow"), GATED).unwrap();
    let server = Server::start(dir, &["gated.kflow"]);
    user_with_token(dir, "ann", "approver", true);
    user_with_token(dir, "vic", "viewer", true);
    let r = server.request(
        "POST",
        "/api/v1/flows/gated/executions",
        &[("Authorization", &format!("Bearer {}", server.admin))],
        b"{}",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["execution"].as_str().unwrap().to_string();
    (server, id)
}

/// A viewer sees the gate but no Approve button, and the server refuses
/// their POST with the page's CSRF token (role) and without it (CSRF); the
/// reviewer finds the gate in their inbox, approves with a comment, and the
/// page shows the decision while the graph and the logs fill in live.
#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_approves_in_the_browser_and_a_viewer_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_gated(dir.path());
    let base = format!("http://{}", server.addr);
    let driver = browser::driver();
    let client = browser::browser(&driver).await;
    screenshot_on_failure(&client, "approve", async {
        sign_in(&client, &base, "vic", PASSWORD).await;
        client.goto(&format!("{base}/executions/{id}")).await.unwrap();
        wait_for(&client, "section.gate").await;
        assert!(client
            .find_all(Locator::Css("button[value=approve]"))
            .await
            .unwrap()
            .is_empty());
        // Forged: the viewer's session with the page's token, then without one.
        let cookie = client.get_named_cookie("kflow_session").await.unwrap();
        let session = format!("kflow_session={}", cookie.value());
        let csrf = client
            .find(Locator::Css("form[action='/logout'] input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        let path = format!("/executions/{id}/approvals/ok");
        let form = [
            ("Cookie", session.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let r = server.request("POST", &path, &form, format!("csrf={csrf}&decision=approve").as_bytes());
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("needs the role"), "{}", r.text());
        let r = server.request("POST", &path, &form, b"decision=approve");
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("CSRF"), "{}", r.text());
        let e = server.get(&format!("/api/v1/executions/{id}"));
        assert_eq!(e["state"], "paused");

        client
            .find(Locator::Css("form[action='/logout'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&client, "form.login").await;
        sign_in(&client, &base, "ann", PASSWORD).await;
        client.goto(&format!("{base}/approvals")).await.unwrap();
        wait_for(&client, "section.gate").await;
        client
            .find(Locator::Css(&format!("a[href^='/executions/{id}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&client, "textarea[name=comment]")
            .await
            .send_keys("looks good")
            .await
            .unwrap();
        client
            .find(Locator::Css("button[value=approve]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // Back on the execution: the decision, then the run going on live.
        let gate = wait_for(&client, "section.gate .badge.s-succeeded").await;
        assert_eq!(gate.text().await.unwrap(), "approved");
        let text = client
            .find(Locator::Css("section.gate"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("by ann") && text.contains("looks good"), "{text}");
        wait_for(&client, "svg g.node.s-succeeded[data-task=ship]").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let logs = client.find(Locator::Id("logs")).await.unwrap().text().await.unwrap();
            if logs.contains("shipped-it") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log did not stream in: {logs}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_for(&client, "[data-execution-state].s-succeeded").await;
        let audit = server.get("/api/v1/audit");
        assert!(audit["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "approve" && a["actor"] == "ann" && a["detail"]["comment"] == "looks good"));
        client.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        std::fs::write(
            browser::shots().join("ui-execution.png"),
            client.screenshot().await.unwrap(),
        )
        .unwrap();
    })
    .await;
    client.close().await.unwrap();
}

/// Every page needs a session: the sign-in form comes first and leads back;
/// a wrong password is refused on the form.
#[tokio::test(flavor = "multi_thread")]
async fn pages_need_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_gated(dir.path());
    let base = format!("http://{}", server.addr);
    for page in [
        "/executions",
        "/approvals",
        "/flows",
        "/audit",
        &format!("/executions/{id}"),
    ] {
        let r = server.request("GET", page, &[], b"");
        assert_eq!(r.status, 303, "{page}");
    }
    let driver = browser::driver();
    let client = browser::browser(&driver).await;
    screenshot_on_failure(&client, "sign-in", async {
        client.goto(&format!("{base}/executions/{id}")).await.unwrap();
        wait_for(&client, "form.login").await;
        client
            .find(Locator::Css("input[name=username]"))
            .await
            .unwrap()
            .send_keys("ann")
            .await
            .unwrap();
        client
            .find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys("wrong")
            .await
            .unwrap();
        client
            .find(Locator::Css("form.login button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let alert = wait_for(&client, "form.login [role=alert]").await;
        assert!(alert.text().await.unwrap().contains("wrong user name or password"));
        std::fs::write(
            browser::shots().join("ui-login.png"),
            client.screenshot().await.unwrap(),
        )
        .unwrap();
        client
            .find(Locator::Css("input[name=username]"))
            .await
            .unwrap()
            .send_keys("ann")
            .await
            .unwrap();
        client
            .find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys(PASSWORD)
            .await
            .unwrap();
        client
            .find(Locator::Css("form.login button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&client, "section.gate").await;
        assert!(client.current_url().await.unwrap().path().ends_with(&id));
    })
    .await;
    client.close().await.unwrap();
}

/// A session cookie for `user`, signed in through the form (no browser).
fn session(server: &Server, user: &str) -> String {
    let r = server.request("GET", "/login", &[], b"");
    let text = r.text();
    let csrf = text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let nonce = r.set_cookie("kflow_login").expect("the sign-in form sets its cookie");
    let body = format!("csrf={csrf}&username={user}&password=correct+horse&next=%2Fexecutions");
    let r = server.request(
        "POST",
        "/login",
        &[
            ("Cookie", &format!("kflow_login={nonce}")),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    format!("kflow_session={}", r.set_cookie("kflow_session").unwrap())
}

/// The main pages as rendered (ids, times, tokens and folders replaced by
/// placeholders): what a change to a page changes is reviewed.
#[test]
fn pages_render_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_gated(dir.path());
    let cookie = session(&server, "ann");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.get(&format!("/api/v1/executions/{id}"))["state"] != "paused" {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir_text = std::fs::canonicalize(dir.path()).unwrap().display().to_string();
    let filters = vec![
        (r"\d{8}-\d{9}-[0-9a-f]{16}", "[id]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "[time]"),
        (r#"value="[0-9a-f]{32}""#, r#"value="[csrf]""#),
        (r"127\.0\.0\.1:\d+", "[addr]"),
        (r"after=\d+", "after=[offset]"),
        // The timeline's bars and scale follow the clock.
        (
            r#"(<rect class="bar[^"]*") x="[\d.]+" (y="[\d.]+") width="[\d.]+""#,
            r#"$1 x="[x]" $2 width="[w]""#,
        ),
        (r">\d+\.\d s<", ">[span] s<"),
        (dir_text.as_str(), "[dir]"),
    ];
    for (name, path) in [
        ("executions", "/executions".to_string()),
        ("execution", format!("/executions/{id}")),
        ("approvals", "/approvals".to_string()),
        ("flows", "/flows".to_string()),
        ("flow", "/flows/gated".to_string()),
    ] {
        let r = server.request("GET", &path, &[("Cookie", &cookie)], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        insta::with_settings!({ filters => filters.clone(), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("ui-{name}"), pretty(&r.text()));
        });
    }
}

/// One tag a line: a diff of a snapshot shows what changed.
fn pretty(html: &str) -> String {
    html.replace("><", ">\n<")
}

/// A page of a 1,000-task flow loads in Chromium in under a second (the
/// best of five loads).
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_task_page_renders_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut flow = String::from("flow big {\n");
    for i in 0..1000 {
        let after = if i >= 10 {
            format!(", after: [t{}]", i - 10)
        } else {
            String::new()
        };
        flow.push_str(&format!(
            "  task t{i} = shell.run {{ script: \"true\", when: false{after} }}\n"
        ));
    }
    flow.push_str("}\n");
    std::fs::write(dir.path().join("big.kflow"), flow).unwrap();
    let server = Server::start(dir.path(), &["big.kflow"]);
    user_with_token(dir.path(), "ann", "approver", true);
    let r = server.request(
        "POST",
        "/api/v1/flows/big/executions",
        &[("Authorization", &format!("Bearer {}", server.admin))],
        b"{}",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["execution"].as_str().unwrap().to_string();
    server.ended(&id);
    let base = format!("http://{}", server.addr);
    let driver = browser::driver();
    let client = browser::browser(&driver).await;
    screenshot_on_failure(&client, "thousand", async {
        sign_in(&client, &base, "ann", PASSWORD).await;
        // The best of five loads: the suite runs tests side by side on
        // few cores, and what is asked is what the page costs, not the
        // neighbours.
        let mut times = Vec::new();
        for _ in 0..5 {
            client.goto(&format!("{base}/executions/{id}")).await.unwrap();
            wait_for(&client, "svg g.node[data-task=t999]").await;
            let nodes = client.find_all(Locator::Css("svg g.node")).await.unwrap().len();
            assert_eq!(nodes, 1000);
            let ms = client
                .execute(
                    "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;",
                    vec![],
                )
                .await
                .unwrap()
                .as_f64()
                .unwrap();
            times.push(ms);
        }
        let best = times.iter().copied().fold(f64::MAX, f64::min);
        eprintln!("a 1,000-task execution page loaded in {times:?} ms");
        assert!(best > 0.0 && best < 1000.0, "the page took {times:?} ms");
    })
    .await;
    client.close().await.unwrap();
}

const SCANNED: &str = r#"flow scanned {
  secret key = env("PREVIEW_HOOK_SECRET")
  on webhook "push" { provider: token, secret: key, inputs: { img: trigger.body.image } }
  input img: pinned
  task settle = shell.run { script: "sleep 1.5" }
  task scan = trivy.scan { image: img, sbom: cyclonedx, after: [settle] }
}
"#;

const IMG: &str = "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A delivery shows up in the open executions list by itself; its page's
/// graph fills in as the tasks run; the SBOM downloads with the browser's
/// session; the digest page lists the scan.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_appears_live_and_its_sbom_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = support::fake_trivy(dir.path(), "debian-buster.json");
    std::fs::write(dir.path().join("scanned.kflow"), SCANNED).unwrap();
    let server = Server::start_with(dir.path(), &["scanned.kflow"], &[("PATH", &path)]);
    user_with_token(dir.path(), "vic", "viewer", true);
    let base = format!("http://{}", server.addr);
    let driver = browser::driver();
    let client = browser::browser(&driver).await;
    screenshot_on_failure(&client, "delivery", async {
        sign_in(&client, &base, "vic", PASSWORD).await;
        client.goto(&format!("{base}/executions")).await.unwrap();
        wait_for(&client, "#no-executions").await;
        let body = serde_json::json!({ "image": IMG }).to_string();
        let r = server.request(
            "POST",
            "/hooks/scanned/push",
            &[("Authorization", "Bearer preview-token")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["execution"].as_str().unwrap().to_string();
        let row = wait_for(&client, &format!("tbody tr[data-id='{id}']")).await;
        assert!(row.text().await.unwrap().contains("webhook push"));
        row.find(Locator::Css("a")).await.unwrap().click().await.unwrap();
        wait_for(&client, "svg g.node.s-succeeded[data-task=settle]").await;
        wait_for(&client, "svg g.node.s-succeeded[data-task=scan]").await;
        wait_for(&client, "[data-execution-state].s-succeeded").await;

        client.refresh().await.unwrap();
        let link = wait_for(&client, "a[download][href$='sbom.cdx.json']").await;
        let href = link.attr("href").await.unwrap().unwrap();
        let got = client
            .execute(
                "return fetch(arguments[0]).then(async r => [r.status, r.headers.get('content-disposition'), await r.text()]);",
                vec![serde_json::json!(href)],
            )
            .await
            .unwrap();
        assert_eq!(got[0], 200, "{got}");
        assert_eq!(got[1], "attachment; filename=\"sbom.cdx.json\"");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/tests/fixtures/trivy/centos-7-cyclonedx.json");
        assert_eq!(got[2].as_str().unwrap(), std::fs::read_to_string(fixture).unwrap());

        let digest = IMG.split_once('@').unwrap().1;
        client.goto(&format!("{base}/digests/{digest}")).await.unwrap();
        let main = wait_for(&client, "main table").await.text().await.unwrap();
        assert!(main.contains("scanned") && main.contains(&id), "{main}");
    })
    .await;
    client.close().await.unwrap();
}

/// Built, pushed to a team repository and promoted by digest to a
/// production one: the digest's page shows both moves and both tags.
#[tokio::test(flavor = "multi_thread")]
async fn the_digest_page_lists_the_promotion() {
    if !support::docker_or_skip("the_digest_page_lists_the_promotion") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    support::own_context(dir.path(), "");
    let reg = support::Registry::anonymous();
    std::fs::write(
        dir.path().join("promote.kflow"),
        format!(
            "flow promote {{\n  task image = docker.build {{ context: \"img\" }}\n  task push = docker.push {{ image: image.image, to: \"{r}/team/app:1\" }}\n  task promote = registry.copy {{ from: push.pinned, to: \"{r}/prod/app:1\" }}\n}}\n",
            r = reg.host
        ),
    )
    .unwrap();
    let server = Server::start(dir.path(), &["promote.kflow"]);
    user_with_token(dir.path(), "vic", "viewer", true);
    let r = server.request(
        "POST",
        "/api/v1/flows/promote/executions",
        &[("Authorization", &format!("Bearer {}", server.admin))],
        b"{}",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["execution"].as_str().unwrap().to_string();
    let e = server.ended(&id);
    let output = |task: &str, name: &str| {
        e["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == task)
            .and_then(|t| t["outputs"][name].as_str())
            .map(str::to_string)
    };
    // The image this test built, and only it, is removed.
    let built = output("image", "image");
    let _cleanup = support::server::OnDrop(move || {
        if let Some(image) = &built {
            let _ = std::process::Command::new("docker").args(["rmi", "-f", image]).output();
        }
    });
    assert_eq!(e["state"], "succeeded", "{e}\n{}", server.log());
    let digest = output("push", "digest").unwrap();
    assert_eq!(output("promote", "digest").as_deref(), Some(digest.as_str()));
    let base = format!("http://{}", server.addr);
    let driver = browser::driver();
    let client = browser::browser(&driver).await;
    screenshot_on_failure(&client, "digest", async {
        sign_in(&client, &base, "vic", PASSWORD).await;
        client.goto(&format!("{base}/digests/{digest}")).await.unwrap();
        let main = wait_for(&client, "main table").await;
        let rows = main.text().await.unwrap();
        assert!(rows.contains("pushed") && rows.contains("copied"), "{rows}");
        let page = client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
        for tag in [format!("{}/team/app:1", reg.host), format!("{}/prod/app:1", reg.host)] {
            assert!(page.contains(&tag), "{tag} not in {page}");
        }
        client.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        std::fs::write(
            browser::shots().join("ui-digest.png"),
            client.screenshot().await.unwrap(),
        )
        .unwrap();
    })
    .await;
    client.close().await.unwrap();
}

/// Ten megabytes of log stream into an open page without freezing it: a
/// timer in the page is never held up for long, and the page keeps the
/// newest lines (the rest page through the API).
#[tokio::test(flavor = "multi_thread")]
async fn a_ten_megabyte_log_streams_without_freezing_the_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("loud.kflow"),
        "flow loud {\n  task wait = shell.run { script: \"sleep 2\" }\n  task talk = shell.run { script: \"i=0; while [ $i -lt 55 ]; do yes 'a line of the log, long enough to count' | head -n 2500; i=$((i+1)); done; echo last-line\", after: [wait] }\n}\n",
    )
    .unwrap();
    let server = Server::start(dir.path(), &["loud.kflow"]);
    user_with_token(dir.path(), "vic", "viewer", true);
    let r = server.request(
        "POST",
        "/api/v1/flows/loud/executions",
        &[("Authorization", &format!("Bearer {}", server.admin))],
        b"{}",
    );
    let id = r.json()["execution"].as_str().unwrap().to_string();
    let base = format!("http://{}", server.addr);
    let driver = browser::driver();
    let client = browser::browser(&driver).await;
    screenshot_on_failure(&client, "loud", async {
        sign_in(&client, &base, "vic", PASSWORD).await;
        client.goto(&format!("{base}/executions/{id}")).await.unwrap();
        wait_for(&client, "#logs").await;
        client
            .execute(
                "window.kflowGap = 0; let last = performance.now(); setInterval(() => { const n = performance.now(); window.kflowGap = Math.max(window.kflowGap, n - last); last = n; }, 50);",
                vec![],
            )
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let text = client
                .execute(
                    "return [...document.getElementById('logs').children].slice(-10).map(l => l.textContent).join('')",
                    vec![],
                )
                .await
                .unwrap();
            if text.as_str().unwrap_or("").contains("last-line") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the last line did not arrive");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let lines = client
            .execute("return document.getElementById('logs').childElementCount", vec![])
            .await
            .unwrap();
        assert!(lines.as_u64().unwrap() <= 5000, "{lines}");
        let gap = client.execute("return window.kflowGap", vec![]).await.unwrap().as_f64().unwrap();
        eprintln!("the longest the page's timer waited while 10 MB streamed: {gap:.0} ms");
        // About 0.4 s alone here; the bound leaves room for the suite's
        // neighbours and still catches a page that draws 10 MB at once
        // (seconds).
        assert!(gap < 2000.0, "the page froze for {gap:.0} ms");
    })
    .await;
    client.close().await.unwrap();
}

/// A gate in the inbox shows the subject, the evidence as links (the
/// report among the execution's artifacts) and the scan counts; a user the
/// gate does not name finds an empty inbox.
#[test]
fn the_inbox_shows_the_evidence_and_scan_beside_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let path = support::fake_trivy(dir.path(), "debian-buster.json");
    std::fs::write(
        dir.path().join("gate.kflow"),
        format!(
            "flow gate {{\n  let img: pinned = pinned(\"{IMG}\")\n  task scan = trivy.scan {{ image: img }}\n  task ok = approval {{ summary: \"ship it?\", reviewers: [\"ann\"], subject: img, evidence: {{ report: scan.report }}, timeout: 1h }}\n}}\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(dir.path(), &["gate.kflow"], &[("PATH", &path)]);
    user_with_token(dir.path(), "ann", "approver", true);
    user_with_token(dir.path(), "bob", "approver", true);
    let r = server.request(
        "POST",
        "/api/v1/flows/gate/executions",
        &[("Authorization", &format!("Bearer {}", server.admin))],
        b"{}",
    );
    assert_eq!(r.status, 201, "{}\n{}", r.text(), server.log());
    let id = r.json()["execution"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.get(&format!("/api/v1/executions/{id}"))["state"] != "paused" {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let ann = session(&server, "ann");
    let page = server.request("GET", "/approvals", &[("Cookie", &ann)], b"").text();
    assert!(page.contains("ship it?"), "{page}");
    assert!(page.contains(IMG), "the subject: {page}");
    assert!(
        page.contains("1 critical, 0 high, 0 medium, 1 low"),
        "the scan counts: {page}"
    );
    assert!(
        page.contains(&format!("/api/v1/executions/{id}/artifacts/scan%2Ftrivy-report.json")),
        "the report linked: {page}"
    );
    assert!(page.contains("value=\"approve\""));
    let bob = session(&server, "bob");
    let page = server.request("GET", "/approvals", &[("Cookie", &bob)], b"").text();
    assert!(page.contains("No gate is waiting for your decision."), "{page}");
    assert!(!page.contains("value=\"approve\""));
}
