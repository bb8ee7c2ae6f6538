//! A PostgreSQL server of the test's own: Debian's `postgresql` binaries,
//! a data folder made by `initdb` in a temporary folder, run as the
//! `postgres` user (PostgreSQL refuses to run as root) on a free 127.0.0.1
//! port, with password authentication so the URL carries a secret. Stopped
//! (fast shutdown) when dropped; `restart` stops and starts it on the same
//! folder and port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of the test database's user: tests check it is never
/// printed or stored.
pub const PASSWORD: &str = "pg-Secret-7Xq2";

pub struct Postgres {
    /// Kept for its lifetime: the data folder lives in it.
    _dir: tempfile::TempDir,
    data: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

/// The folder of Debian's PostgreSQL programs (not on PATH): the newest
/// version installed, or `KFLOW_TEST_PG_BIN`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KFLOW_TEST_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("PostgreSQL is installed (apt-get install postgresql; .ci/run does)")
}

/// `program` run as the `postgres` user when this process is root (set by
/// uid and gid, not through `runuser`, so signals reach postgres itself).
fn as_postgres(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // SAFETY: a NUL-terminated name; the result is read at once.
        let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
        assert!(
            !pw.is_null(),
            "a `postgres` user exists (Debian's postgresql package adds it)"
        );
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        c.uid(uid).gid(gid);
    }
    c
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new().prefix("kflow-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(&data).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&data)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let out = as_postgres(&bin_dir().join("initdb"))
            .args([
                "-U",
                "kflow",
                "-A",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = Postgres {
            _dir: dir,
            data,
            port: super::free_port(),
            child: None,
        };
        pg.run();
        pg
    }

    /// `postgres://kflow:…@127.0.0.1:PORT/kflow`.
    pub fn url(&self) -> String {
        format!("postgres://kflow:{PASSWORD}@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.data.parent().unwrap().join("server.log")).unwrap();
        let child = as_postgres(&bin_dir().join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            // No socket file: the temporary folder is the server's only
            // footprint. fsync off: a test's data need not survive a crash of
            // the machine.
            .args([
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin_dir().join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "postgres did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's own log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.parent().unwrap().join("server.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: a fast shutdown.
            // SAFETY: signals the child this value started.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    /// Stops and starts the server on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Runs SQL as the database's owner (psql), for what a test does behind
    /// kflow's back; the output, unaligned, one row a line.
    pub fn sql(&self, statement: &str) -> String {
        let out = Command::new(bin_dir().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "kflow",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", statement])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `kflow worker` of the test's own: killed when dropped.
pub struct Worker {
    pub child: Child,
    pub name: String,
    pub stderr: PathBuf,
}

impl Worker {
    /// Starts `kflow worker NAME` on the store at `url`, with `args` more
    /// (`--labels`, `--lease`) and these environment variables.
    pub fn start(dir: &Path, url: &str, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Worker {
        let stderr = dir.join(format!("worker-{name}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_kflow"))
            .args(["worker", "--name", name, "--state", &format!("state-{name}")])
            .args(args)
            .current_dir(dir)
            .env("KFLOW_STORE", url)
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("kflow worker starts");
        Worker {
            child,
            name: name.to_string(),
            stderr,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, then the exit status (the worker drains first).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the worker did not stop: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
