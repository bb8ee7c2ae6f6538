//! Host processes: the commands tasks run on this machine (`shell.run`,
//! Compose, Trivy).
//!
//! They are started as `posix_spawn` starts them — a `vfork`: the child
//! borrows kflow's memory until it `exec`s, and nothing is copied — with
//! one step `posix_spawn` cannot take: the parent-death signal, set in the
//! child before `exec`, so that no command outlives a `kill -9` of kflow.
//! Rust's `Command` forks the whole process as soon as anything must run in
//! the child (`pre_exec`), which costs page-table copies, copy-on-write
//! faults and cross-thread TLB flushes on every command (a millisecond each
//! on a busy executor; docs/performance.md).
//!
//! Every command runs in a process group of its own (cancelling it kills
//! what it started too), reads standard input from /dev/null, and has both
//! output streams piped back. Its exit is awaited on a pidfd.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::net::unix::pipe;

/// The child's stack until it `exec`s: it calls a few system calls only.
const CHILD_STACK: usize = 64 * 1024;
/// Where a program is looked for when the environment has no PATH.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A host command to start: a program, its arguments, changes to kflow's
/// environment, and the folder it starts in.
#[derive(Debug, Clone)]
pub struct HostCommand {
    program: OsString,
    args: Vec<OsString>,
    /// Variables set (`Some`) or removed (`None`), the last change winning.
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
}

impl HostCommand {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        HostCommand {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((name.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    pub fn env_remove(&mut self, name: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((name.as_ref().to_owned(), None));
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// kflow's environment with this command's changes.
    fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        for (name, value) in &self.env {
            vars.retain(|(k, _)| k != name);
            if let Some(v) = value {
                vars.push((name.clone(), v.clone()));
            }
        }
        vars
    }

    /// Starts the command. Must be called within a Tokio runtime.
    pub fn spawn(&self) -> io::Result<HostChild> {
        let env = self.environment();
        let search = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
        let path = resolve(&self.program, search, self.cwd.as_deref())?;
        let path = c_string(path.as_os_str(), || "the program's path".into())?;
        let argv: Vec<CString> = std::iter::once(&self.program)
            .chain(&self.args)
            .enumerate()
            .map(|(i, a)| c_string(a, || format!("argument {i}")))
            .collect::<io::Result<_>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| {
                let mut pair = k.as_bytes().to_vec();
                pair.push(b'=');
                pair.extend_from_slice(v.as_bytes());
                c_string(OsStr::from_bytes(&pair), || {
                    format!("the environment variable {}", k.to_string_lossy())
                })
            })
            .collect::<io::Result<_>>()?;
        let cwd = self
            .cwd
            .as_deref()
            .map(|d| c_string(d.as_os_str(), || "the folder".into()))
            .transpose()?;
        let argv_ptrs = null_terminated(&argv);
        let envp_ptrs = null_terminated(&envp);

        let stdin = above_stdio(std::fs::File::open("/dev/null")?.into())?;
        let (out_read, out_write) = pipe_pair()?;
        let (err_read, err_write) = pipe_pair()?;
        let spec = ChildSpec {
            path: path.as_ptr(),
            argv: argv_ptrs.as_ptr(),
            envp: envp_ptrs.as_ptr(),
            cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            fds: [stdin.as_raw_fd(), out_write.as_raw_fd(), err_write.as_raw_fd()],
            parent: std::process::id() as libc::pid_t,
            failed_step: AtomicI32::new(0),
            errno: AtomicI32::new(0),
        };
        let (pid, pidfd) = clone_vfork(&spec)?;
        drop((stdin, out_write, err_write));
        if let Some(step) = Step::from_code(spec.failed_step.load(Ordering::Relaxed)) {
            let cause = io::Error::from_raw_os_error(spec.errno.load(Ordering::Relaxed));
            reap_blocking(pid);
            return Err(match (step, &self.cwd) {
                (Step::Chdir, Some(dir)) => {
                    io::Error::new(cause.kind(), format!("cannot enter {}: {cause}", dir.display()))
                }
                _ => cause,
            });
        }
        Ok(HostChild {
            pid,
            // SAFETY: the AsyncFd owns the pidfd, open until it is dropped.
            pidfd: Some(
                unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }.map_err(|e| e.into_parts().1)?,
            ),
            stdout: Some(pipe::Receiver::from_owned_fd(out_read)?),
            stderr: Some(pipe::Receiver::from_owned_fd(err_read)?),
            status: None,
        })
    }

    /// Runs the command to its end, collecting both output streams.
    pub async fn output(&self) -> io::Result<Output> {
        let mut child = self.spawn()?;
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (o, e) = tokio::join!(read_all(&mut out, &mut stdout), read_all(&mut err, &mut stderr));
        o?;
        e?;
        let status = child.wait().await?;
        Ok(Output { status, stdout, stderr })
    }
}

async fn read_all(stream: &mut Option<pipe::Receiver>, into: &mut Vec<u8>) -> io::Result<()> {
    match stream {
        Some(s) => s.read_to_end(into).await.map(|_| ()),
        None => Ok(()),
    }
}

/// A started host command. Dropped before it was awaited, it is killed with
/// its process group (and reaped in the background).
#[derive(Debug)]
pub struct HostChild {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    status: Option<ExitStatus>,
}

impl HostChild {
    /// The process id, which is also its process group's.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Kills the command's process group: the command, if it still runs,
    /// and whatever it left running.
    pub fn kill_group(&self) {
        // SAFETY: kill(2) with a negative pid signals that process group; it
        // touches no memory. ESRCH (the group is gone) is the expected case.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
    }

    /// Waits for the command to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let Some(pidfd) = &self.pidfd else {
                return Err(io::Error::other("the process is no longer watched"));
            };
            // A pidfd is readable once its process has exited; the loop
            // reaps it (or waits again after a spurious wake-up).
            pidfd.readable().await?.clear_ready();
        }
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        reap(self.pid, &mut self.status)
    }
}

/// The exit status of our child `pid`, if it has exited (kept in `status`).
fn reap(pid: libc::pid_t, status: &mut Option<ExitStatus>) -> io::Result<Option<ExitStatus>> {
    if status.is_some() {
        return Ok(*status);
    }
    let mut raw = 0;
    // SAFETY: waitpid(2) on our own child writes only `raw`.
    match unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) } {
        0 => Ok(None),
        reaped if reaped == pid => {
            *status = Some(ExitStatus::from_raw(raw));
            Ok(*status)
        }
        _ => Err(io::Error::last_os_error()),
    }
}

impl Drop for HostChild {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        self.kill_group();
        if let Ok(Some(_)) = self.try_wait() {
            return;
        }
        // SIGKILL is asynchronous: reap the child once it is gone, so that
        // no zombie is left behind.
        let pid = self.pid;
        let pidfd = self.pidfd.take();
        match (tokio::runtime::Handle::try_current(), pidfd) {
            (Ok(runtime), Some(pidfd)) => {
                runtime.spawn(async move {
                    let _ = pidfd.readable().await;
                    reap_blocking(pid);
                });
            }
            _ => {
                std::thread::spawn(move || reap_blocking(pid));
            }
        }
    }
}

/// What the child was doing when it failed (it reports through memory it
/// shares with the parent until `exec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Stdio = 1,
    Chdir = 2,
    Exec = 3,
}

impl Step {
    fn from_code(code: i32) -> Option<Step> {
        [Step::Stdio, Step::Chdir, Step::Exec]
            .into_iter()
            .find(|s| *s as i32 == code)
    }
}

/// Everything the child needs, prepared by the parent: the child must not
/// allocate, take locks or touch anything the parent's other threads use.
struct ChildSpec {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// Standard input, output and error, all above 2.
    fds: [RawFd; 3],
    parent: libc::pid_t,
    failed_step: AtomicI32,
    errno: AtomicI32,
}

/// Starts the child and returns once it has `exec`ed or failed: the
/// calling thread is suspended until then (`CLONE_VFORK`).
fn clone_vfork(spec: &ChildSpec) -> io::Result<(libc::pid_t, OwnedFd)> {
    // A 16-byte aligned stack, from the heap (an mmap'ed one would cost an
    // munmap and its TLB flush on every command), left uninitialised.
    let mut stack: Vec<std::mem::MaybeUninit<u128>> = Vec::with_capacity(CHILD_STACK / 16);
    // SAFETY: the stack outlives the child's use of it (the parent waits
    // until the child has exec'ed or exited), `spec` is valid for as long,
    // and the child only makes async-signal-safe system calls. All signals
    // are blocked around clone so that no handler of kflow's runs in the
    // child before it has reset them.
    unsafe {
        let top = stack.as_mut_ptr().add(stack.capacity()) as *mut libc::c_void;
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut saved: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
        let mut pidfd: libc::c_int = -1;
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            spec as *const ChildSpec as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        );
        let error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
        if pid < 0 {
            return Err(error);
        }
        Ok((pid, OwnedFd::from_raw_fd(pidfd)))
    }
}

/// The child, between clone and exec, on its own stack in kflow's memory.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's ChildSpec, alive while the parent is
    // suspended; only system calls follow, and the child ends in execve or
    // _exit.
    unsafe {
        let spec = &*(arg as *const ChildSpec);
        let fail = |step: Step| -> ! {
            spec.errno.store(*libc::__errno_location(), Ordering::Relaxed);
            spec.failed_step.store(step as i32, Ordering::Relaxed);
            libc::_exit(127)
        };
        // Handlers are kflow's code: back to the defaults before any signal
        // is let through. SIGPIPE too, which Rust programs ignore.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && old.sa_sigaction != libc::SIG_DFL
            {
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
        }
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != spec.parent {
            // kflow died before the signal was armed.
            libc::_exit(127);
        }
        for (target, fd) in spec.fds.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(Step::Stdio);
            }
        }
        if !spec.cwd.is_null() && libc::chdir(spec.cwd) < 0 {
            fail(Step::Chdir);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(spec.path, spec.argv, spec.envp);
        fail(Step::Exec)
    }
}

/// `program` on kflow's own PATH, without running it.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let search = std::env::var_os("PATH");
    resolve(OsStr::new(program), search.as_deref(), None).ok()
}

/// Where `program` is, as `execvp` would find it on the PATH `search`
/// (relative entries from `cwd`).
fn resolve(program: &OsStr, search: Option<&OsStr>, cwd: Option<&Path>) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(program.into());
    }
    let search = search.unwrap_or(OsStr::new(DEFAULT_PATH));
    for dir in std::env::split_paths(search) {
        let candidate = match (dir.is_relative(), cwd) {
            (true, Some(cwd)) => std::path::absolute(cwd.join(&dir).join(program))?,
            (true, None) => std::path::absolute(dir.join(program))?,
            (false, _) => dir.join(program),
        };
        let executable = std::fs::metadata(&candidate)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if executable {
            return Ok(candidate);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

/// `s` for a system call; `what` names it in the error, which never quotes
/// the value (an argument or a variable may hold a secret).
fn c_string(s: &OsStr, what: impl FnOnce() -> String) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{} contains a NUL byte", what())))
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A close-on-exec pipe (read end, write end), both above 2.
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
        let (read, write) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        Ok((above_stdio(read)?, above_stdio(write)?))
    }
}

/// `fd`, moved above 2 if it is not: when kflow itself was started with a
/// standard stream closed, a new descriptor could be 0, 1 or 2, and the
/// child's `dup2`s would overwrite one another.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that we own.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `moved` is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

fn reap_blocking(pid: libc::pid_t) {
    let mut raw = 0;
    // SAFETY: waitpid(2) on our own child writes only `raw`.
    unsafe {
        libc::waitpid(pid, &mut raw, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> HostCommand {
        let mut c = HostCommand::new("sh");
        c.arg("-c").arg(script);
        c
    }

    async fn stdout_of(cmd: &HostCommand) -> String {
        let out = cmd.output().await.unwrap();
        assert!(
            out.status.success(),
            "{:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[tokio::test]
    async fn output_status_and_streams_come_back() {
        let out = sh("echo out; echo err >&2; exit 3").output().await.unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[tokio::test]
    async fn arguments_environment_and_folder_are_the_commands() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
            "set by the test runner"
        );
        let mut cmd = HostCommand::new("sh");
        cmd.args([
            "-c",
            "printf '%s|%s|%s|%s' \"$1\" \"$A\" \"${CARGO_MANIFEST_DIR-unset}\" \"$(pwd)\"",
            "sh",
            "one two",
        ])
        .env("A", "first")
        .env("A", "second")
        .env_remove("CARGO_MANIFEST_DIR")
        .current_dir(dir.path());
        let pwd = dir.path().canonicalize().unwrap();
        assert_eq!(stdout_of(&cmd).await, format!("one two|second|unset|{}", pwd.display()));
    }

    #[tokio::test]
    async fn a_missing_program_or_folder_is_an_error_not_a_child() {
        let err = HostCommand::new("kflow-no-such-program").spawn().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = HostCommand::new("./kflow-no-such-program").spawn().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = sh("true").current_dir("/kflow/no/such/folder").spawn().unwrap_err();
        assert!(err.to_string().contains("cannot enter /kflow/no/such/folder"), "{err}");
    }

    #[tokio::test]
    async fn a_nul_byte_is_an_error_that_quotes_no_value() {
        let mut cmd = sh("true");
        cmd.env("TOKEN", "hunter2\0rest");
        let err = cmd.spawn().unwrap_err().to_string();
        assert_eq!(err, "the environment variable TOKEN contains a NUL byte");
        let err = sh("true").arg("hunter2\0rest").spawn().unwrap_err().to_string();
        assert_eq!(err, "argument 3 contains a NUL byte");
    }

    #[tokio::test]
    async fn the_child_has_its_own_group_default_signals_and_only_its_stdio() {
        // SigBlk: nothing blocked; SigIgn: what kflow was started with, but
        // not SIGPIPE (which Rust ignores).
        let cmd = sh("grep -E '^Sig(Blk|Ign)' /proc/self/status; ls /proc/self/fd | tr '\\n' ' ';echo; cut -d' ' -f5 /proc/$$/stat; echo $$");
        let out = stdout_of(&cmd).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "SigBlk:\t0000000000000000", "{out}");
        let ours = std::fs::read_to_string("/proc/self/status").unwrap();
        let ignored = |status: &str| {
            let hex = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap();
            u64::from_str_radix(hex.trim(), 16).unwrap()
        };
        let sigpipe = 1 << (libc::SIGPIPE - 1);
        assert_ne!(ignored(&ours) & sigpipe, 0, "the test runs with SIGPIPE ignored");
        assert_eq!(ignored(lines[1]), ignored(&ours) & !sigpipe, "{out}");
        // Of kflow's descriptors, the child has only those kflow inherited
        // without close-on-exec itself (none of the pipes kflow opens).
        let inheritable: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            // SAFETY: F_GETFD reads a descriptor's flags only.
            .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == 0)
            .collect();
        let leaked: Vec<i32> = lines[2]
            .split_whitespace()
            .map(|fd| fd.parse().unwrap())
            .filter(|fd| *fd > 3 && !inheritable.contains(fd))
            .collect();
        assert!(leaked.is_empty(), "{out}");
        assert_eq!(lines[3], lines[4], "the shell leads its own group: {out}");
    }

    #[tokio::test]
    async fn dropping_a_child_kills_its_group() {
        let mut cmd = sh("sleep 300 & echo $!; wait");
        let mut child = cmd.current_dir("/").spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let mut byte = [0u8; 1];
            assert_eq!(out.read(&mut byte).await.unwrap(), 1);
            line.push(byte[0]);
        }
        let grandchild: i32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
        let pid = child.id() as i32;
        drop(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // Running or stopped, not a zombie (which init may reap late).
        let alive = |p: i32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        };
        while (alive(pid) || alive(grandchild)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!alive(grandchild), "the group's sleep is left running");
        assert!(!alive(pid), "the shell is left running");
        // And reaped by kflow: no zombie of ours is left.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "left a zombie");
    }

    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        // The parent-death signal fires when the starting thread ends (as
        // it does when kflow dies): the child must have it armed.
        let pid = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut child = sh("sleep 300").spawn().unwrap();
                let pid = child.pid;
                child.status = Some(ExitStatus::from_raw(0)); // keep it at drop
                pid
            })
        })
        .join()
        .unwrap();
        let mut status = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while reap(pid, &mut status).unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if status.is_none() {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap_blocking(pid);
            panic!("the child outlived the thread that started it");
        }
        assert_eq!(status.unwrap().signal(), Some(libc::SIGKILL));
    }
}
