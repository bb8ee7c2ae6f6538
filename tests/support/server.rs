//! A `kflow serve` started by a test: the real binary on a free loopback
//! port, and plain HTTP/1.1 requests to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HOOK_SECRET: &str = "It's a Secret to Everybody";

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stderr: PathBuf,
    /// An admin's token, for reading the API.
    pub admin: String,
}

/// Adds a user (password `correct horse`, or none) and returns a new token of theirs.
pub fn user_with_token(dir: &Path, name: &str, role: &str, password: bool) -> String {
    let mut args = vec!["user", "add", name, "--role", role, "--state", "st"];
    if !password {
        args.push("--no-password");
    }
    let o = super::kflow(dir, &args, &[("KFLOW_PASSWORD", "correct horse")]);
    assert!(
        o.status.success() || super::text(&o.stderr).contains("exists already"),
        "{}",
        super::text(&o.stderr)
    );
    let o = super::kflow(dir, &["token", "create", name, "--state", "st"], &[]);
    assert!(o.status.success(), "{}", super::text(&o.stderr));
    super::text(&o.stdout).lines().last().unwrap().to_string()
}

impl Server {
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Server::start_with(dir, args, &[])
    }

    /// Started with these environment variables besides the usual ones.
    pub fn start_with(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let admin = user_with_token(dir, "admin", "admin", false);
        let stderr = dir.join(format!("serve-{}.err", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_kflow"))
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--state", "st"])
            .current_dir(dir)
            .env("RELEASE_HOOK_SECRET", HOOK_SECRET)
            .env("PREVIEW_HOOK_SECRET", "preview-token")
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("kflow serve starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("kflow serve: listening on ")
            .and_then(|url| url.split_once("://"))
            .map(|(_, addr)| addr)
            .unwrap_or_else(|| panic!("no address in {first:?}: {}", std::fs::read_to_string(&stderr).unwrap()))
            .to_string();
        Server {
            child,
            addr,
            stderr,
            admin,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(&self.addr, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let auth = format!("Bearer {}", self.admin);
        let r = self.request("GET", path, &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// Polls an execution until it has ended.
    pub fn ended(&self, id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let e = self.get(&format!("/api/v1/executions/{id}"));
            if !matches!(e["state"].as_str(), Some("running" | "queued" | "paused")) {
                return e;
            }
            assert!(Instant::now() < deadline, "execution {id} did not end: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Response {
    pub status: u16,
    /// The response head: status line and headers.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The value a `Set-Cookie` header gives the cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            let (cookie, value) = v.trim().split(';').next()?.split_once('=')?;
            (k.eq_ignore_ascii_case("set-cookie") && cookie == name).then(|| value.to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// One HTTP/1.1 request on its own connection.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text_end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&raw[..text_end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let mut body = raw[text_end..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    Response { status, head, body }
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}

/// `X-Hub-Signature-256` as GitHub computes it.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/webhooks")
            .join(name),
    )
    .unwrap()
}

/// A GitHub delivery of `event` with this id and body, signed with `secret`.
pub fn github(server: &Server, hook: &str, event: &str, delivery: &str, body: &[u8], secret: &str) -> Response {
    let sig = github_signature(secret, body);
    server.request(
        "POST",
        hook,
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
            ("User-Agent", "GitHub-Hookshot/044aadd"),
        ],
        body,
    )
}

pub fn served_flow(dir: &Path) {
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/flows/triggers.kflow"),
        dir.join("triggers.kflow"),
    )
    .unwrap();
}

pub fn deliveries(server: &Server) -> Vec<serde_json::Value> {
    server.get("/api/v1/deliveries?limit=100")["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Runs a closure when dropped (clean-up that must happen when a test
/// fails too).
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
