//! `shell.run`: a command on the host, as an argument vector (`cmd`) or a
//! script run by `sh -c`. Output streams into the task log line by line
//! (redacted) and is captured for the `stdout`/`stderr` outputs, without
//! their trailing newlines (as `$(…)` in a shell).
//!
//! The command runs in its own process group. When the task is cancelled the
//! whole group is killed, and when the command exits, anything it left
//! running in its group is killed too: a task never outlives itself.

use std::os::unix::process::ExitStatusExt;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::lines::Lines;
use super::{string_list, text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::value::Value;

/// Bytes of each stream kept for the outputs (the log gets everything).
const CAPTURE_LIMIT: usize = 4 * 1024 * 1024;
/// Lines of standard error quoted in the error of a failed command.
const ERROR_TAIL_LINES: usize = 10;

pub async fn run(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let (mut cmd, shown) = match (string_list(props, "cmd"), text(props, "script")) {
        (Some(argv), _) if !argv.is_empty() => {
            let mut c = ctx.command(&argv[0]);
            c.args(&argv[1..]);
            (c, argv[0].clone())
        }
        (Some(_), _) => return Err(TaskError::Invalid("`cmd` is an empty list".into())),
        (None, Some(script)) => {
            let mut c = ctx.command("sh");
            c.arg("-c").arg(script);
            (c, "sh -c".to_string())
        }
        (None, None) => return Err(TaskError::Invalid("`shell.run` needs `cmd` or `script`".into())),
    };
    let cwd = match text(props, "cwd") {
        Some(dir) => ctx.base_dir.join(dir),
        None => ctx.base_dir.clone(),
    };
    cmd.current_dir(&cwd);
    if let Some(Value::Map(env)) = props.get("env") {
        for (k, v) in env {
            match v {
                Value::Secret(s) => cmd.env(k, s.expose()),
                other => cmd.env(k, other.to_text().unwrap_or_default()),
            };
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| TaskError::Failed(format!("cannot start `{shown}` in {}: {e}", cwd.display())))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let status = tokio::select! {
            status = child.wait() => Some(status),
            _ = ctx.cancel.cancelled() => None,
        };
        // Leftovers in the group would hold the pipes open (and outlive the
        // task); cancelled, the command goes too.
        child.kill_group();
        if status.is_none() {
            let _ = child.wait().await;
        }
        status
    };
    // Output is read while the command runs (a full pipe would stop it),
    // in this task: no task spawned per stream.
    let (status, stdout, stderr) = tokio::join!(
        run,
        capture(out, Stream::Stdout, ctx),
        capture(err, Stream::Stderr, ctx)
    );
    let Some(status) = status else {
        return Err(TaskError::Cancelled);
    };
    let status = status.map_err(|e| TaskError::Failed(format!("waiting for `{shown}` failed: {e}")))?;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(ERROR_TAIL_LINES).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let reason = match status.signal() {
            Some(sig) => format!("`{shown}` was killed by signal {sig}"),
            None => format!("`{shown}` exited with status {code}"),
        };
        let msg = if tail.is_empty() {
            reason
        } else {
            format!("{reason}:\n{}", tail.join("\n"))
        };
        return Err(TaskError::Failed(ctx.redactor.redact(&msg).into_owned()));
    }
    // Like `$(…)` in a shell, trailing newlines are not part of the value.
    Ok(Outputs::from([
        ("exit_code".to_string(), Value::Int(code.into())),
        (
            "stdout".to_string(),
            Value::Str(stdout.trim_end_matches('\n').to_string()),
        ),
        (
            "stderr".to_string(),
            Value::Str(stderr.trim_end_matches('\n').to_string()),
        ),
    ]))
}

/// Streams lines into the log and keeps the (redacted) text, up to a limit.
async fn capture(stream: Option<impl AsyncRead + Unpin>, which: Stream, ctx: &TaskContext) -> String {
    let Some(mut stream) = stream else { return String::new() };
    let mut lines = Lines::new(CAPTURE_LIMIT);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in lines.push(&buf[..n], &ctx.redactor) {
            ctx.log_output(which, piece.text).await;
        }
    }
    if let Some(piece) = lines.finish(&ctx.redactor) {
        ctx.log_output(which, piece.text).await;
    }
    let (kept, truncated) = lines.kept();
    if truncated {
        ctx.log(
            Stream::Info,
            "output beyond 4 MiB is logged but not kept in the task's outputs",
        );
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::secret::{Redactor, Secret};
    use crate::tasks::LogLine;

    fn ctx(secret: Option<&str>) -> (TaskContext, mpsc::UnboundedReceiver<LogLine>) {
        let secrets: Vec<Secret> = secret.into_iter().map(Secret::new).collect();
        let redactor = Redactor::new(&secrets);
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = TaskContext {
            dispatch: None,
            execution: "test".into(),
            history: "test".into(),
            task: "t".into(),
            artifacts: std::env::temp_dir(),
            state_dir: std::env::temp_dir(),
            store: Arc::new(crate::store::SqliteStore::open(&std::env::temp_dir().join("kflow-test-state")).unwrap()),
            state_hint: "".into(),
            detach: false,
            docker: Default::default(),
            base_dir: std::env::temp_dir(),
            cancel: CancellationToken::new(),
            redactor: Arc::new(redactor),
            hidden_env: Arc::new([]),
            log: crate::tasks::channel_sink(tx),
            log_budget: Arc::new(tokio::sync::Semaphore::new(crate::tasks::LOG_BUDGET)),
        };
        (ctx, rx)
    }

    fn strs(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::Str(s.to_string())).collect())
    }

    #[tokio::test]
    async fn argv_output_is_captured_and_logged() {
        let (ctx, mut rx) = ctx(None);
        let props = BTreeMap::from([("cmd".to_string(), strs(&["echo", "hello", "world"]))]);
        let out = run(&props, &ctx).await.unwrap();
        assert_eq!(out["stdout"], Value::Str("hello world".into()));
        assert_eq!(out["exit_code"], Value::Int(0));
        assert_eq!(
            rx.recv().await.unwrap(),
            LogLine {
                stream: Stream::Stdout,
                text: "hello world".into(),
                budget: None,
            }
        );
    }

    #[tokio::test]
    async fn a_failing_script_reports_its_stderr() {
        let (ctx, _rx) = ctx(None);
        let props = BTreeMap::from([("script".to_string(), Value::Str("echo boom >&2; exit 3".into()))]);
        let e = run(&props, &ctx).await.unwrap_err();
        assert_eq!(e, TaskError::Failed("`sh -c` exited with status 3:\nboom".into()));
    }

    #[tokio::test]
    async fn secrets_in_env_are_passed_and_redacted() {
        let (ctx, mut rx) = ctx(Some("s3cr3t-value"));
        let props = BTreeMap::from([
            (
                "script".to_string(),
                Value::Str("echo token=$TOKEN; echo $TOKEN >&2; exit 1".into()),
            ),
            (
                "env".to_string(),
                Value::Map(BTreeMap::from([(
                    "TOKEN".to_string(),
                    Value::Secret(Secret::new("s3cr3t-value")),
                )])),
            ),
        ]);
        let e = run(&props, &ctx).await.unwrap_err();
        assert_eq!(e, TaskError::Failed("`sh -c` exited with status 1:\n***".into()));
        drop(ctx);
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push(l.text);
        }
        assert!(lines.contains(&"token=***".to_string()), "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains("s3cr3t")));
    }

    #[tokio::test]
    async fn cancelling_kills_the_whole_process_group() {
        let (ctx, _rx) = ctx(None);
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // A background child that would outlive a naive kill of `sh`.
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let props = BTreeMap::from([("script".to_string(), Value::Str(script))]);
        let cancel = ctx.cancel.clone();
        let task = tokio::spawn(async move { run(&props, &ctx).await });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the script did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        cancel.cancel();
        assert_eq!(task.await.unwrap(), Err(TaskError::Cancelled));
        // The background `sleep` is gone (reaped by init, so poll briefly).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} survived cancellation"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let (ctx, _rx) = ctx(None);
        let props = BTreeMap::from([("cmd".to_string(), strs(&["no-such-program-kflow"]))]);
        let TaskError::Failed(msg) = run(&props, &ctx).await.unwrap_err() else {
            panic!()
        };
        assert!(msg.starts_with("cannot start `no-such-program-kflow`"), "{msg}");
    }
}
