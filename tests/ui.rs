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
        std::fs::write(
            browser::shots().join("execution.png"),
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
        std::fs::write(browser::shots().join("login.png"), client.screenshot().await.unwrap()).unwrap();
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
