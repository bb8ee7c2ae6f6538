//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by .ci/run): one chromedriver per test on a
//! free port, killed when the test ends. A failed test leaves a screenshot
//! of the page in target/ui-screenshots/.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver, or fails saying what to install.
pub fn driver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("`chromedriver` is needed by the UI tests (Debian: chromium chromium-driver; see .ci/run)");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver { child, url }
}

/// A headless browser session, 1280×900.
pub async fn browser(driver: &Driver) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"],
        }),
    );
    ClientBuilder::rustls()
        .expect("a TLS provider for the WebDriver client")
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Runs a test's body; on failure saves a screenshot of the page as
/// target/ui-screenshots/NAME.png before failing.
pub async fn screenshot_on_failure<F: Future<Output = ()>>(client: &Client, name: &str, body: F) {
    use futures_util::FutureExt;
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    if let Err(panic) = outcome {
        if let Ok(png) = client.screenshot().await {
            let _ = std::fs::write(shots().join(format!("{name}.png")), png);
        }
        std::panic::resume_unwind(panic);
    }
}

/// Where screenshots go (created): target/ui-screenshots, or
/// `KFLOW_SCREENSHOTS` (`KFLOW_SCREENSHOTS=docs/images` renews the ones
/// the docs show).
pub fn shots() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("KFLOW_SCREENSHOTS") {
        Some(d) => root.join(d),
        None => root.join("target/ui-screenshots"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits up to 20 s for an element.
pub async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` within 20 s: {e}"))
}

/// Signs in through the form.
pub async fn sign_in(client: &Client, base: &str, user: &str, password: &str) {
    client.goto(&format!("{base}/login")).await.unwrap();
    client
        .find(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    client
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    client
        .find(Locator::Css("form.login button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "header.top").await;
}
