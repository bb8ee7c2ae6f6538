//! What the Docker and registry tests start: local registries from Debian's
//! `docker-registry` on free 127.0.0.1 ports (anonymous or htpasswd), busybox
//! build contexts, and `kflow` runs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod cloud;
pub mod engine;
pub mod postgres;
pub mod server;

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file under `dir`, recursively (a history folder, to search it).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn kflow(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kflow"));
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("kflow runs")
}

/// `kflow` run as [`kflow`] does, with its peak resident memory (KiB) as the
/// kernel measured it (`wait4`), for tests of bounded memory.
// The child is reaped by `wait4`, which `Child` cannot see.
#[allow(clippy::zombie_processes)]
pub fn kflow_peak(dir: &Path, args: &[&str]) -> (Output, u64) {
    let out = tempfile::tempdir().unwrap();
    let (o, e) = (out.path().join("stdout"), out.path().join("stderr"));
    let child = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .expect("kflow runs");
    let mut status = 0;
    // SAFETY: plain out-parameters for one child of this process, waited once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    use std::os::unix::process::ExitStatusExt;
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: std::fs::read(&o).unwrap(),
        stderr: std::fs::read(&e).unwrap(),
    };
    (output, usage.ru_maxrss as u64)
}

/// Whether the Docker engine answers. Without one, tests skip with the
/// reason printed — unless `KFLOW_REQUIRE_DOCKER=1` (set by `.ci/run`), where
/// a missing engine fails the test.
pub fn docker_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("KFLOW_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "{test}: the Docker engine is not reachable, and KFLOW_REQUIRE_DOCKER=1 requires it"
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

/// A self-signed P-256 certificate for `common_name` and its key, written
/// as `cert.pem` and `key.pem` in `dir`, valid two days; `extra` goes to
/// `openssl req` (e.g. `-addext subjectAltName=…`).
pub fn self_signed(dir: &Path, common_name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    need("openssl");
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", &format!("/CN={common_name}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl: {}", text(&o.stderr));
    (key, cert)
}

pub fn free_port() -> u16 {
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
    dir: tempfile::TempDir,
}

impl Registry {
    /// Where the registry keeps a blob's bytes (to corrupt them).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn anonymous() -> Registry {
        Registry::start(None)
    }

    /// With htpasswd basic auth for one user (bcrypt, as the registry requires).
    pub fn with_user(user: &str, password: &str) -> Registry {
        Registry::start(Some((user, password)))
    }

    /// With bearer-token auth: a token service (`TokenService`) that grants
    /// `user`/`password` pull and push, signing ES256 tokens the registry
    /// trusts through a self-signed certificate.
    pub fn with_tokens(user: &str, password: &str) -> (Registry, TokenService) {
        need("openssl");
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = self_signed(dir.path(), "kflow-test-token-issuer", &[]);
        let service = TokenService::start(&key, &cert, user, password);
        let auth = format!(
            "auth:\n  token:\n    realm: {}\n    service: kflow-test-registry\n    issuer: kflow-test-issuer\n    rootcertbundle: {}\n",
            service.realm,
            cert.display()
        );
        (Registry::start_with(dir, auth), service)
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
        Registry::start_with(dir, auth)
    }

    /// A registry whose storage cannot be written: every upload fails with
    /// a 500 from the registry itself.
    pub fn broken_storage() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-folder");
        std::fs::write(&blocker, "a file where the storage folder should be").unwrap();
        Registry::start_in(dir, "", "", Some(blocker.join("data")))
    }

    /// A registry in read-only maintenance mode: pushes are refused.
    pub fn read_only() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        Registry::start_in(dir, "", "  maintenance:\n    readonly:\n      enabled: true\n", None)
    }

    fn start_with(dir: tempfile::TempDir, auth: String) -> Registry {
        Registry::start_in(dir, &auth, "", None)
    }

    /// `top` adds top-level configuration (auth), `storage_extra` lines
    /// under `storage:`.
    fn start_in(dir: tempfile::TempDir, top: &str, storage_extra: &str, storage: Option<PathBuf>) -> Registry {
        need("docker-registry");
        let storage = storage.unwrap_or_else(|| dir.path().join("data"));
        // A port can be taken between choosing and binding: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{storage_extra}{top}http:\n  addr: 127.0.0.1:{port}\n  secret: kflow-test\n",
                storage.display()
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
                    // The port may be another test's registry: ours, unable
                    // to bind it, exits at once. Still running: it is ours.
                    std::thread::sleep(Duration::from_millis(150));
                    if child.try_wait().is_ok_and(|s| s.is_some()) {
                        break;
                    }
                    return Registry {
                        host: format!("127.0.0.1:{port}"),
                        child,
                        dir,
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
    busybox_context_with(
        dir,
        &format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{extra}"
        ),
    )
}

/// Busybox copied in, nothing run: for an engine with no network to run a
/// build step on (run it as `/bin/busybox APPLET`).
pub fn busybox_copy_only_context(dir: &Path) -> PathBuf {
    busybox_context_with(dir, "FROM scratch\nCOPY busybox /bin/busybox\n")
}

fn busybox_context_with(dir: &Path, dockerfile: &str) -> PathBuf {
    need("busybox");
    let ctx = dir.join("img");
    std::fs::create_dir_all(&ctx).unwrap();
    let busybox = Command::new("sh").args(["-c", "command -v busybox"]).output().unwrap();
    let busybox = text(&busybox.stdout).trim().to_string();
    std::fs::copy(&busybox, ctx.join("busybox")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// Debian's static busybox built for `arch` (Debian's name: `amd64`,
/// `arm64`): the machine's own, or the `busybox-static:ARCH` package
/// fetched once with `apt-get download` (`.ci/run` adds the architecture)
/// and unpacked with `dpkg-deb -x`. Real foreign binaries, no emulation.
pub fn busybox_for(arch: &str) -> PathBuf {
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("busybox-{arch}"));
    if dest.is_file() {
        return dest;
    }
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let download = Command::new("apt-get")
        .args(["download", &format!("busybox-static:{arch}")])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(
        download.status.success(),
        "busybox-static:{arch} cannot be downloaded (`dpkg --add-architecture {arch} && apt-get update` first, as .ci/run does): {}",
        text(&download.stderr)
    );
    let deb = files_under(work.path())
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "deb"))
        .unwrap();
    let unpacked = work.path().join("root");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", text(&x.stderr));
    // Renamed into place: tests that race here each write their own copy.
    let tmp = work.path().join("busybox");
    std::fs::copy(unpacked.join("bin/busybox"), &tmp).unwrap();
    std::fs::rename(&tmp, &dest).unwrap();
    dest
}

/// A context that builds for amd64 and arm64 without running anything:
/// each platform's own busybox (chosen by BuildKit's `TARGETARCH`) and a
/// file of this test's own.
pub fn two_platform_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("img");
    std::fs::create_dir_all(&ctx).unwrap();
    for arch in ["amd64", "arm64"] {
        std::fs::copy(busybox_for(arch), ctx.join(format!("busybox-{arch}"))).unwrap();
    }
    std::fs::write(ctx.join("hello"), unique_word(dir)).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\nCOPY hello /hello\n",
    )
    .unwrap();
    ctx
}

/// A context of this test's own that builds for any platform without
/// running anything: `FROM scratch` and one file. (The classic builder
/// labels such a build with the platform asked for; its cache does not
/// tell platforms apart, so build each with `no_cache: true`.)
pub fn copy_only_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("img");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello"), unique_word(dir)).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY hello /hello\n").unwrap();
    ctx
}

/// A word no other test uses, from the test's own folder.
pub fn unique_word(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_string_lossy().to_lowercase();
    format!("t{}", name.trim_start_matches('.'))
}

/// A context no other test builds: its image is this test's alone, so the
/// test may remove it. (The same context builds the same image, shared by
/// every test that builds it.)
pub fn own_context(dir: &Path, extra: &str) -> PathBuf {
    busybox_context(dir, &format!("RUN echo {} > /id\n{extra}", unique_word(dir)))
}

/// The raw manifest bytes skopeo reads.
pub fn skopeo_raw(reference: &str) -> String {
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
    assert!(
        o.status.success(),
        "skopeo inspect --raw {reference}: {}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The digest of a reference on a plain-HTTP registry as skopeo reads it:
/// `inspect`'s own digest for an image; for an index (which has no single
/// image to inspect), the hash of the raw bytes skopeo fetched.
pub fn skopeo_digest(reference: &str) -> String {
    let raw = skopeo_raw(reference);
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap();
    if o.status.success() {
        return text(&o.stdout).trim().to_string();
    }
    use std::io::Write;
    let mut sha = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sha.stdin.take().unwrap().write_all(raw.as_bytes()).unwrap();
    let out = sha.wait_with_output().unwrap();
    format!("sha256:{}", text(&out.stdout).split_whitespace().next().unwrap())
}

/// Stores a manifest under a tag with plain HTTP, as a hand-made client would.
pub fn put_manifest(reg: &Registry, repo: &str, tag: &str, media_type: &str, body: &str) {
    let o = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", &format!("Content-Type: {media_type}")])
        .args([
            "--data-binary",
            body,
            &format!("http://{}/v2/{repo}/manifests/{tag}", reg.host),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "PUT {repo}:{tag}: {}", text(&o.stderr));
}

/// The value of `name = value` among a run's printed outputs.
pub fn output<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("no output `{name}` in:\n{stdout}"))
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

/// A bearer-token service for a registry's `auth: token`: `GET /token` with
/// Basic credentials answers `{"token": JWT}` granting the scopes asked for.
pub struct TokenService {
    pub realm: String,
    /// Tokens issued so far.
    pub issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenService {
    fn start(key: &Path, cert: &Path, user: &str, password: &str) -> TokenService {
        use base64::Engine;
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::DecodePrivateKey;
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
        let pem = std::fs::read_to_string(cert).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = issued.clone();
        let user = user.to_string();
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Write};
            let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap_or(0);
                let mut authorization = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("authorization:") {
                        let start = line.len() - v.len();
                        authorization = line[start..].trim().to_string();
                    }
                }
                let target = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                let query = target.split_once('?').map_or("", |(_, q)| q);
                let mut access = Vec::new();
                for pair in query.split('&') {
                    if let Some(scope) = pair.strip_prefix("scope=") {
                        let scope = scope.replace("%3A", ":").replace("%2C", ",").replace("%2F", "/");
                        let parts: Vec<&str> = scope.split(':').collect();
                        if parts.len() == 3 {
                            let actions: Vec<&str> = parts[2].split(',').collect();
                            access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": actions}));
                        }
                    }
                }
                let reply = if authorization != expected {
                    "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
                } else {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [b64]});
                    let claims = serde_json::json!({
                        "iss": "kflow-test-issuer", "sub": user, "aud": "kflow-test-registry",
                        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{now}"),
                        "access": access,
                    });
                    let signing_input =
                        format!("{}.{}", url.encode(header.to_string()), url.encode(claims.to_string()));
                    let sig: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
                    let token = format!("{signing_input}.{}", url.encode(sig.to_bytes()));
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = serde_json::json!({ "token": token }).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        TokenService { realm, issued }
    }
}

/// A `trivy` that checks its arguments as Trivy's CLI would, writes one of
/// Trivy's own reports (or an SBOM), records its call, and exits 0.
pub fn fake_trivy(dir: &Path, report: &str) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/tests/fixtures/trivy");
    let script = format!(
        r#"#!/bin/sh
[ "$1" = image ] || {{ echo "trivy: unknown command '$1'" >&2; exit 1; }}
shift
echo "$@" >> "{calls}"
fmt=table out=
while [ $# -gt 1 ]; do
  case "$1" in
    --format) fmt=$2; shift 2;;
    --output) out=$2; shift 2;;
    --quiet|--ignore-unfixed) shift;;
    --ignorefile) [ -f "$2" ] || {{ echo "ignore file $2 not found" >&2; exit 1; }}; shift 2;;
    *) echo "trivy: unknown flag: $1" >&2; exit 1;;
  esac
done
[ -n "$out" ] || {{ echo "no --output" >&2; exit 1; }}
case "$fmt" in
  json) cp "{fixtures}/{report}" "$out";;
  cyclonedx) cp "{fixtures}/centos-7-cyclonedx.json" "$out";;
  *) echo "trivy: unsupported format $fmt" >&2; exit 1;;
esac
echo "scanned $1" >&2
"#,
        calls = dir.join("trivy-calls").display(),
        fixtures = fixtures.display(),
    );
    let path = bin.join("trivy");
    std::fs::write(&path, script).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}
