//! A second Docker engine on this machine, of the test's own: Debian's
//! `dockerd` with its data, exec root, containerd and configuration in a
//! temporary folder, in a network namespace of its own (`unshare --net`).
//! The namespace matters: a dockerd without a bridge deletes the host's
//! `docker0` when it starts, which is the shared engine's. Its containers
//! run with no network. It listens on a unix socket (reachable from here:
//! the file system is shared) for the test, and on its own 127.0.0.1 with
//! TLS that requires a client certificate (`--tlsverify`), as a remote
//! engine is exposed; a relay carries this machine's 127.0.0.1 port to it
//! byte for byte. Stopped (SIGTERM, which stops its containers) when
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

/// A CA in `dir/ca` (cert.pem, key.pem: a self-signed certificate that may
/// sign others), and a certificate it signed for `name` with `usage`
/// (serverAuth, clientAuth): `{name}-cert.pem`, `{name}-key.pem`.
fn issue(dir: &Path, name: &str, usage: &str, san: &str) {
    let ca = dir.join("ca");
    if !ca.exists() {
        std::fs::create_dir_all(&ca).unwrap();
        let subject = format!("kflow test CA {}", dir.file_name().unwrap().to_string_lossy());
        super::self_signed(
            &ca,
            &subject,
            &[
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
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
            "ca/cert.pem",
            "-CAkey",
            "ca/key.pem",
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
        ("ca/cert.pem", "ca.pem"),
        ("client-cert.pem", "cert.pem"),
        ("client-key.pem", "key.pem"),
    ] {
        std::fs::copy(pki.join(from), to.join(name)).unwrap();
    }
}

/// A port on this machine's 127.0.0.1 whose connections are carried, byte
/// for byte, to `port` on the loopback of `pid`'s network namespace: a
/// thread that entered that namespace opens the far ends.
fn relay_into(pid: u32, port: u16) -> std::net::SocketAddr {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns(2) on this thread only, with an open namespace fd.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return;
        }
        for conn in listener.incoming().flatten() {
            let Ok(engine) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            for (mut from, to) in [(conn.try_clone().unwrap(), engine.try_clone().unwrap()), (engine, conn)] {
                std::thread::spawn(move || {
                    let mut to = to;
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    addr
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
        let shared_bridge = Path::new("/sys/class/net/docker0").exists();
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
        // Its own loopback's port: its namespace is empty, any is free.
        let port = 2376;
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
            &*path("pki/ca/cert.pem"),
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
        let child = Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
                &dockerd,
            ])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("dockerd starts");
        let mut engine = Engine {
            child,
            socket,
            tcp: String::new(),
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
        assert!(
            !shared_bridge || Path::new("/sys/class/net/docker0").exists(),
            "the second engine touched the shared engine's docker0"
        );
        // Its namespace exists now (unshare has run).
        engine.tcp = format!("tcp://{}", relay_into(engine.child.id(), port));
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

/// An SSH server on 127.0.0.1 whose sessions reach a second engine, as a
/// remote build host is reached: Debian's `sshd` with a host key and one
/// authorized key of the test's own, and `DOCKER_HOST` set for its sessions
/// (`SetEnv`) so `docker system dial-stdio` there dials that engine. Clients
/// run `bin/ssh`, which adds the test's client configuration (key, known
/// host) as the user's `~/.ssh/config` would. Stopped when dropped.
pub struct SshHost {
    child: Child,
    /// The engine's `DOCKER_HOST`, `ssh://root@kflow-engine`.
    pub url: String,
    /// `PATH` with `bin/ssh` first.
    pub path: String,
    /// Where the ssh client keeps its connection sockets (XDG_STATE_HOME).
    pub state: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn run(program: &str, args: &[&str]) {
    let o = Command::new(program).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Engine {
    /// Serves this engine over SSH, or None (the test skips) where `sshd` is
    /// missing; KFLOW_REQUIRE_DOCKER=1 makes that a failure.
    pub fn over_ssh(&self, test: &str) -> Option<SshHost> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            assert!(
                std::env::var("KFLOW_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "{test}: sshd is not installed (openssh-server), and KFLOW_REQUIRE_DOCKER=1 requires it"
            );
            eprintln!("skipping {test}: sshd is not installed");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("kflow-ssh").tempdir().unwrap();
        let d = dir.path();
        let p = |name: &str| d.join(name).to_str().unwrap().to_string();
        run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", &p("host_key")]);
        run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", &p("id")]);
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        let port = super::free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nSetEnv DOCKER_HOST=unix://{}\n",
                p("host_key"),
                p("authorized_keys"),
                p("sshd.pid"),
                self.socket.display()
            ),
        )
        .unwrap();
        // Where sshd separates privileges; Debian's service creates it.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_key = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {host_key}")).unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host kflow-engine\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
                p("id"),
                p("known_hosts")
            ),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        let wrapper = d.join("bin/ssh");
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n", p("ssh_config")),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = d.join("sshd.log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f", &p("sshd_config")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("sshd starts");
        let host = SshHost {
            child,
            url: "ssh://root@kflow-engine".into(),
            path: format!("{}:{}", p("bin"), std::env::var("PATH").unwrap_or_default()),
            state: d.join("state"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start: {}", host.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(host)
    }
}

impl SshHost {
    /// The ssh clients running with this host's configuration (`pgrep`).
    pub fn clients(&self) -> String {
        let config = self._dir.path().join("ssh_config");
        let o = Command::new("pgrep")
            .args(["-f", &format!("ssh -F {}", config.display())])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
