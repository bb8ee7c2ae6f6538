//! What the Docker and registry tests start: local registries from Debian's
//! `docker-registry` on free 127.0.0.1 ports (anonymous or htpasswd), busybox
//! build contexts, and `kflow` runs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn kflow(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kflow"));
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("kflow runs")
}

/// Whether the Docker engine answers. Without one, tests skip with the
/// reason printed — except under CI (`CI` set), where a missing engine fails.
pub fn docker_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: the Docker engine is not reachable, and CI requires it"
        );
        eprintln!("skipping {test}: the Docker engine is not reachable");
    }
    ok
}

fn need(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{program}` is needed by this test (see .ci/run for the packages)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` on 127.0.0.1, stopped when dropped.
pub struct Registry {
    pub host: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn anonymous() -> Registry {
        Registry::start(None)
    }

    /// With htpasswd basic auth for one user (bcrypt, as the registry requires).
    pub fn with_user(user: &str, password: &str) -> Registry {
        Registry::start(Some((user, password)))
    }

    fn start(user: Option<(&str, &str)>) -> Registry {
        need("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((u, p)) = user {
            need("htpasswd");
            let o = Command::new("htpasswd").args(["-Bbn", u, p]).output().unwrap();
            assert!(o.status.success(), "htpasswd: {}", text(&o.stderr));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &o.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: kflow-test\n    path: {}\n",
                file.display()
            );
        }
        // A port can be taken between choosing and binding: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: kflow-test\n{auth}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let mut child = Command::new("docker-registry")
                .args(["serve"])
                .arg(&config_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Registry {
                        host: format!("127.0.0.1:{port}"),
                        child,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A build context: `FROM scratch`, Debian's static busybox, its applets
/// installed, and whatever `extra` Dockerfile lines say.
pub fn busybox_context(dir: &Path, extra: &str) -> PathBuf {
    need("busybox");
    let ctx = dir.join("img");
    std::fs::create_dir_all(&ctx).unwrap();
    let busybox = Command::new("sh").args(["-c", "command -v busybox"]).output().unwrap();
    let busybox = text(&busybox.stdout).trim().to_string();
    std::fs::copy(&busybox, ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{extra}"
        ),
    )
    .unwrap();
    ctx
}

/// `skopeo inspect` of a reference on a plain-HTTP registry: its digest.
pub fn skopeo_digest(reference: &str) -> String {
    need("skopeo");
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo inspect {reference}: {}", text(&o.stderr));
    let o2 = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap();
    // An index has no single image to inspect: hash its raw bytes instead.
    if o2.status.success() {
        text(&o2.stdout).trim().to_string()
    } else {
        use std::io::Write;
        let mut sha = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        sha.stdin.take().unwrap().write_all(&o.stdout).unwrap();
        let out = sha.wait_with_output().unwrap();
        format!("sha256:{}", text(&out.stdout).split_whitespace().next().unwrap())
    }
}

/// The raw manifest bytes skopeo reads.
pub fn skopeo_raw(reference: &str) -> String {
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo inspect --raw {reference}: {}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The last execution's id in a state folder.
pub fn last_execution(dir: &Path, state: &str) -> serde_json::Value {
    let o = kflow(dir, &["executions", "list", "--json", "--state", state], &[]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    list[0].clone()
}

/// Containers, networks or volumes carrying an execution's label.
pub fn labelled(kind: &str, execution: &str) -> Vec<String> {
    let args: Vec<String> = match kind {
        "container" => vec!["ps".into(), "-aq".into()],
        "image" => vec!["images".into(), "-q".into()],
        other => vec![other.into(), "ls".into(), "-q".into()],
    };
    let o = Command::new("docker")
        .args(&args)
        .args(["--filter", &format!("label=io.kflow.execution={execution}")])
        .output()
        .unwrap();
    text(&o.stdout).lines().map(str::to_string).collect()
}
