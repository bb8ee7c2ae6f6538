//! A second Docker engine on this machine, of the test's own: Debian's
//! `dockerd` with its data, exec root, containerd and configuration in a
//! temporary folder. It adds no bridge and no iptables rules, so it leaves
//! the host's network (and the shared engine) alone; its containers run with
//! no network. It listens on a unix socket for the test and on 127.0.0.1
//! with TLS that requires a client certificate (`--tlsverify`), as a remote
//! engine is exposed. Stopped (SIGTERM, which stops its containers) when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Engine {
    child: Child,
    /// The unix socket the test inspects the engine through.
    pub socket: PathBuf,
    /// `tcp://127.0.0.1:PORT`, TLS.
    pub tcp: String,
    /// ca.pem, cert.pem, key.pem of a client the engine accepts.
    pub client_certs: PathBuf,
    /// The same files of a client from another CA.
    pub stranger_certs: PathBuf,
    log: PathBuf,
    // Last: removed once the engine has stopped.
    _dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA in `dir` (ca.pem, ca-key.pem), and a certificate it signed for
/// `name` with `usage` (serverAuth, clientAuth): `{name}-cert.pem`,
/// `{name}-key.pem`.
fn issue(dir: &Path, name: &str, usage: &str, san: &str) {
    if !dir.join("ca.pem").exists() {
        let subject = format!("/CN=kflow test CA {}", dir.file_name().unwrap().to_string_lossy());
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
            ],
        );
    }
    let (key, csr, cert) = (
        format!("{name}-key.pem"),
        format!("{name}.csr"),
        format!("{name}-cert.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    let ext = dir.join(format!("{name}.ext"));
    let mut lines = format!("extendedKeyUsage={usage}\nkeyUsage=critical,digitalSignature\n");
    if !san.is_empty() {
        lines.push_str(&format!("subjectAltName={san}\n"));
    }
    std::fs::write(&ext, lines).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            &cert,
        ],
    );
}

/// A folder as a client's DOCKER_CERT_PATH: ca.pem, cert.pem, key.pem.
fn client_folder(pki: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (from, name) in [
        ("ca.pem", "ca.pem"),
        ("client-cert.pem", "cert.pem"),
        ("client-key.pem", "key.pem"),
    ] {
        std::fs::copy(pki.join(from), to.join(name)).unwrap();
    }
}

impl Engine {
    /// Starts one, or None (the test skips) where `dockerd` is missing or
    /// this process is not root; KFLOW_REQUIRE_DOCKER=1 makes that a failure.
    pub fn start(test: &str) -> Option<Engine> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let dockerd = Command::new("sh").args(["-c", "command -v dockerd"]).output().unwrap();
        let dockerd = String::from_utf8_lossy(&dockerd.stdout).trim().to_string();
        if !root || dockerd.is_empty() {
            let why = if root {
                "dockerd is not installed"
            } else {
                "a second engine needs root"
            };
            assert!(
                std::env::var("KFLOW_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "{test}: {why}, and KFLOW_REQUIRE_DOCKER=1 requires it"
            );
            eprintln!("skipping {test}: {why}");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("kflow-engine").tempdir().unwrap();
        let d = dir.path();
        let pki = d.join("pki");
        let stranger = d.join("stranger-pki");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::create_dir_all(&stranger).unwrap();
        issue(&pki, "server", "serverAuth", "IP:127.0.0.1");
        issue(&pki, "client", "clientAuth", "");
        issue(&stranger, "client", "clientAuth", "");
        client_folder(&pki, &d.join("client"));
        client_folder(&stranger, &d.join("stranger"));
        // Its own configuration: the machine's daemon.json names the shared
        // engine's data root.
        std::fs::write(d.join("daemon.json"), "{}").unwrap();
        let port = super::free_port();
        let socket = d.join("docker.sock");
        let log = d.join("dockerd.log");
        let path = |p: &str| d.join(p).to_str().unwrap().to_string();
        let args: Vec<String> = [
            "--config-file",
            &*path("daemon.json"),
            "--data-root",
            &*path("data"),
            "--exec-root",
            &*path("exec"),
            "--pidfile",
            &*path("dockerd.pid"),
            "-H",
            &*format!("unix://{}", socket.display()),
            "-H",
            &*format!("tcp://127.0.0.1:{port}"),
            "--tlsverify",
            "--tlscacert",
            &*path("pki/ca.pem"),
            "--tlscert",
            &*path("pki/server-cert.pem"),
            "--tlskey",
            &*path("pki/server-key.pem"),
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ]
        .map(str::to_string)
        .into();
        let child = Command::new(dockerd)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("dockerd starts");
        let engine = Engine {
            child,
            socket,
            tcp: format!("tcp://127.0.0.1:{port}"),
            client_certs: d.join("client"),
            stranger_certs: d.join("stranger"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the second engine did not start: {}",
                engine.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(engine)
    }

    /// The `docker` CLI against this engine (its unix socket).
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
