//! The history's contract, the `Store` trait, run against both backends:
//! SQLite in a temporary folder and PostgreSQL started by the test
//! (`support::postgres`). Each scenario is written once against
//! `Arc<dyn Store>`; `both!` makes a test of it for each backend.

mod support;

use std::sync::Arc;

use kflow_runtime::state::{ExecutionState, TaskState};
use kflow_runtime::store::{
    Change, Claim, Decision, ExecutionFilter, GateRequest, LogAppend, NewDelivery, NewExecution, NewToken, Origin,
    PgStore, Role, SqliteStore, Store, Verdict, VoteOutcome, LOG_CAP,
};
use serde_json::json;
use support::postgres::{Postgres, PASSWORD};

/// A history of each kind, kept alive as long as the test needs it.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(Postgres),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Backend {
        Backend::Postgres(Postgres::start())
    }

    /// A store on this history, as one more process would open it.
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(dir) => Arc::new(SqliteStore::open(dir.path()).unwrap()),
            Backend::Postgres(pg) => Arc::new(PgStore::connect(&pg.url()).await.unwrap()),
        }
    }
}

macro_rules! both {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Backend::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::Backend::postgres()).await;
            }
        }
    };
}

fn execution(tasks: &[(&str, &str)], origin: Origin) -> NewExecution<'static> {
    static INPUTS: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    NewExecution {
        flow: "release",
        file: "release.kflow",
        inputs: INPUTS.get_or_init(|| json!({"version": "1.2.3"})),
        tasks: tasks.iter().map(|(t, k)| (t.to_string(), k.to_string())).collect(),
        plan: json!({"tasks": []}),
        base_dir: "/srv/flows".into(),
        rerun_of: None,
        trigger: Some(json!({"name": "nightly", "kind": "schedule", "by": "ana"})),
        origin,
    }
}

fn at() -> String {
    jiff::Timestamp::now().to_string()
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

async fn executions_are_recorded_and_read_back(b: Backend) {
    let s = b.open().await;
    let id = s
        .begin(&execution(
            &[("build", "docker.build"), ("push", "docker.push")],
            Origin::Cli,
        ))
        .await
        .unwrap();
    let started = |task: &str, kind: &str, attempt| Change::Started {
        task: task.into(),
        kind: kind.into(),
        attempt,
        at: at(),
    };
    s.apply(
        &id,
        &[
            started("build", "docker.build", 1),
            Change::AttemptFailed {
                task: "build".into(),
                attempt: 1,
                error: "engine busy\0with a NUL".into(),
                at: at(),
            },
            started("build", "docker.build", 2),
            Change::Finished {
                task: "build".into(),
                kind: "docker.build".into(),
                state: TaskState::Succeeded,
                error: None,
                outputs: json!({"image": "sha256:feed", "id": DIGEST}),
                at: at(),
            },
            started("push", "docker.push", 1),
            Change::Finished {
                task: "push".into(),
                kind: "docker.push".into(),
                state: TaskState::Succeeded,
                error: None,
                outputs: json!({"digest": DIGEST, "pinned": format!("127.0.0.1:5000/app@{DIGEST}"), "ref": "127.0.0.1:5000/app:1.2.3"}),
                at: at(),
            },
            // A loop's iteration, known only once it ran.
            Change::Finished {
                task: "each[linux/arm64]".into(),
                kind: "log".into(),
                state: TaskState::Skipped,
                error: None,
                outputs: serde_json::Value::Null,
                at: at(),
            },
        ],
    )
    .await
    .unwrap();
    s.finish(&id, ExecutionState::Succeeded, &json!([]), &json!({"digest": DIGEST}))
        .await
        .unwrap();

    let (exec, runs) = s.show(&id[..14]).await.unwrap().expect("found by a prefix");
    assert_eq!(exec.id, id);
    assert_eq!(exec.state, ExecutionState::Succeeded);
    assert_eq!(exec.inputs["version"], "1.2.3");
    assert_eq!(exec.outputs["digest"], DIGEST);
    assert_eq!(exec.trigger["name"], "nightly");
    assert!(exec.ended_at.is_some());
    let names: Vec<&str> = runs.iter().map(|r| r.task.as_str()).collect();
    assert_eq!(
        names,
        ["build", "push", "each[linux/arm64]"],
        "declared order, then as run"
    );
    assert_eq!((runs[0].attempts, runs[0].state), (2, TaskState::Succeeded));
    assert_eq!(runs[1].outputs["ref"], "127.0.0.1:5000/app:1.2.3");
    assert_eq!(runs[2].state, TaskState::Skipped);

    let attempts = s.attempts(&id).await.unwrap();
    let build: Vec<_> = attempts.iter().filter(|a| a.task == "build").collect();
    assert_eq!(build.len(), 2);
    let failed = build.iter().find(|a| a.attempt == 1).unwrap();
    assert!(
        failed.error.as_deref().unwrap().starts_with("engine busy"),
        "{failed:?}"
    );
    assert!(failed.ended_at.is_some());

    assert_eq!(s.show("latest").await.unwrap().unwrap().0.id, id);
    assert!(s.show("no-such").await.unwrap().is_none());
    // `_` and `%` are not wildcards in a prefix.
    assert!(s.show("%").await.unwrap().is_none());
    assert!(s.show("_").await.unwrap().is_none());

    let resumable = s.resumable(&id).await.unwrap().unwrap();
    assert_eq!(resumable.base_dir, std::path::PathBuf::from("/srv/flows"));
    assert_eq!(resumable.plan, json!({"tasks": []}));
    assert_eq!(resumable.done.len(), 2);

    let uses = s.digest_uses(DIGEST, 10).await.unwrap();
    let mut roles: Vec<(&str, &str)> = uses.iter().map(|u| (u.task.as_str(), u.output.as_str())).collect();
    roles.sort();
    assert_eq!(roles, [("build", "id"), ("push", "digest"), ("push", "pinned")]);
    let pinned = uses.iter().find(|u| u.output == "pinned").unwrap();
    assert_eq!(pinned.repository.as_deref(), Some("127.0.0.1:5000/app"));
    assert_eq!(pinned.tag.as_deref(), Some("127.0.0.1:5000/app:1.2.3"));
    assert_eq!(pinned.flow, "release");
}
both!(executions_are_recorded_and_read_back);

async fn executions_are_paged_newest_first_and_filtered(b: Backend) {
    let s = b.open().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut e = execution(&[], Origin::Cli);
        if i % 2 == 1 {
            e.flow = "nightly-scan";
            e.trigger = None;
        }
        let id = s.begin(&e).await.unwrap();
        let state = if i == 6 {
            ExecutionState::Failed
        } else {
            ExecutionState::Succeeded
        };
        s.finish(&id, state, &json!([]), &json!({})).await.unwrap();
        ids.push(id);
        // Start times to the millisecond: each its own.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let all = ExecutionFilter::default();
    let (first, more) = s.page(&all, 3, None).await.unwrap();
    assert!(more);
    let got: Vec<&str> = first.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, [&ids[6], &ids[5], &ids[4]].map(String::as_str));
    let (second, _) = s.page(&all, 3, Some(&ids[4])).await.unwrap();
    assert_eq!(second[0].id, ids[3]);
    let (last, more) = s.page(&all, 3, Some(&ids[1])).await.unwrap();
    assert_eq!((last.len(), more), (1, false));
    assert!(s.page(&all, 3, Some("unknown")).await.unwrap().0.is_empty());

    let by_flow = ExecutionFilter {
        flow: Some("nightly-scan".into()),
        ..Default::default()
    };
    assert_eq!(s.page(&by_flow, 100, None).await.unwrap().0.len(), 3);
    let by_trigger = ExecutionFilter {
        trigger: Some("nightly".into()),
        ..Default::default()
    };
    assert_eq!(s.page(&by_trigger, 100, None).await.unwrap().0.len(), 4);
    let failed = ExecutionFilter {
        state: Some(ExecutionState::Failed),
        ..Default::default()
    };
    let (rows, _) = s.page(&failed, 100, None).await.unwrap();
    assert_eq!(
        rows.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [ids[6].as_str()]
    );
}
both!(executions_are_paged_newest_first_and_filtered);

async fn logs_are_read_in_order_from_any_offset_and_capped(b: Backend) {
    let s = b.open().await;
    let id = s
        .begin(&execution(&[("a", "shell.run"), ("b", "shell.run")], Origin::Cli))
        .await
        .unwrap();
    for i in 0..50 {
        let text_a = format!("a line {i}");
        let text_b = format!("b line {i}");
        s.append_logs(
            &id,
            &[
                LogAppend {
                    task: "a",
                    text: &text_a,
                },
                LogAppend {
                    task: "b",
                    text: &text_b,
                },
            ],
        )
        .await
        .unwrap();
    }
    s.append_logs(
        &id,
        &[LogAppend {
            task: "a",
            text: "odd\0byte",
        }],
    )
    .await
    .unwrap();

    // Read in small pieces: every line once, in the order written.
    let mut offset = 0;
    let mut read = Vec::new();
    loop {
        let (lines, next) = s.read_log(&id, offset, 200).await.unwrap();
        if lines.is_empty() {
            assert_eq!(next, offset, "an empty read stays where it was");
            break;
        }
        assert!(next > offset);
        offset = next;
        read.extend(lines);
    }
    assert_eq!(read.len(), 101);
    assert_eq!((read[0].task.as_str(), read[0].text.as_str()), ("a", "a line 0"));
    assert_eq!((read[1].task.as_str(), read[1].text.as_str()), ("b", "b line 0"));
    assert_eq!(read[99].text, "b line 49");
    assert!(read[100].text.starts_with("odd"), "{:?}", read[100]);
    assert!(read.iter().all(|l| l.stamp.as_ref().is_some_and(|s| s.ends_with('Z'))));

    // A reader that resumes at an offset sees what came after it.
    let (before, mark) = s.read_log(&id, 0, u64::MAX).await.unwrap();
    assert_eq!(before.len(), 101);
    s.append_logs(
        &id,
        &[LogAppend {
            task: "b",
            text: "later",
        }],
    )
    .await
    .unwrap();
    let (after, _) = s.read_log(&id, mark, u64::MAX).await.unwrap();
    assert_eq!(after.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["later"]);

    // A task run keeps at most LOG_CAP bytes, then one note.
    let big = "x".repeat(64 * 1024);
    let lines: Vec<LogAppend> = (0..((LOG_CAP as usize) / big.len() + 10))
        .map(|_| LogAppend { task: "a", text: &big })
        .collect();
    for chunk in lines.chunks(16) {
        s.append_logs(&id, chunk).await.unwrap();
    }
    let mut kept = 0u64;
    let mut notes = 0;
    let mut offset = mark;
    loop {
        let (lines, next) = s.read_log(&id, offset, 4 * 1024 * 1024).await.unwrap();
        if lines.is_empty() {
            break;
        }
        offset = next;
        for l in lines.iter().filter(|l| l.task == "a") {
            kept += l.text.len() as u64;
            notes += usize::from(l.text.contains("log truncated"));
        }
    }
    assert_eq!(notes, 1, "one note that the log was cut");
    assert!(kept <= LOG_CAP && kept > LOG_CAP - 2 * big.len() as u64, "{kept}");
    // The other task's log is not cut.
    s.append_logs(
        &id,
        &[LogAppend {
            task: "b",
            text: "still here",
        }],
    )
    .await
    .unwrap();
    let (tail, _) = s.read_log(&id, offset, u64::MAX).await.unwrap();
    assert_eq!(tail.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["still here"]);
}
both!(logs_are_read_in_order_from_any_offset_and_capped);

fn gate(required: u32) -> GateRequest {
    GateRequest {
        summary: "promote 1.2.3".into(),
        reviewers: vec!["ana".into(), "bo".into(), "cy".into()],
        deadline: None,
        required,
        prevent_self: true,
        subject: Some(DIGEST.into()),
        evidence: json!({"scan": "clean"}),
    }
}

fn decision(by: &str, approved: bool) -> Decision {
    Decision {
        approved,
        by: by.into(),
        at: at(),
        comment: format!("{by} looked"),
        os_user: "ci".into(),
    }
}

async fn a_gate_counts_votes_and_is_decided_once(b: Backend) {
    let s = b.open().await;
    let id = s
        .begin(&execution(&[("promote", "approval")], Origin::Server))
        .await
        .unwrap();
    let asked = s.request_approval(&id, "promote", &gate(2)).await.unwrap();
    assert_eq!(asked.required, 2);
    assert_eq!(asked.started_by.as_deref(), Some("ana"), "from the trigger's `by`");
    assert_eq!(asked.evidence["scan"], "clean");
    assert_eq!(s.show(&id).await.unwrap().unwrap().0.state, ExecutionState::Paused);
    // Asked again (a resume): the stored request is kept.
    let again = s
        .request_approval(
            &id,
            "promote",
            &GateRequest {
                summary: "changed".into(),
                ..gate(1)
            },
        )
        .await
        .unwrap();
    assert_eq!((again.summary.as_str(), again.required), ("promote 1.2.3", 2));
    assert_eq!(s.open_approvals(10).await.unwrap().len(), 1);

    assert_eq!(
        s.vote(&id, "promote", &decision("bo", true)).await.unwrap(),
        VoteOutcome::Counted { have: 1, need: 2 }
    );
    let twice = s.vote(&id, "promote", &decision("bo", true)).await.unwrap_err();
    assert!(twice.0.contains("bo has decided"), "{twice}");
    assert_eq!(
        s.vote(&id, "promote", &decision("cy", true)).await.unwrap(),
        VoteOutcome::Decided
    );
    let late = s.vote(&id, "promote", &decision("ana", false)).await.unwrap_err();
    assert!(late.0.contains("decided already"), "{late}");
    let decided = s.approval(&id, "promote").await.unwrap().unwrap();
    let d = decided.decision.as_ref().unwrap();
    assert!(d.approved);
    assert_eq!(d.by, "cy");
    assert_eq!(
        decided.votes.iter().map(|v| v.user.as_str()).collect::<Vec<_>>().len(),
        2
    );
    assert!(s.open_approvals(10).await.unwrap().is_empty());
    assert_eq!(s.approvals(&id).await.unwrap().len(), 1);
    s.unpause(&id).await.unwrap();
    assert_eq!(s.show(&id).await.unwrap().unwrap().0.state, ExecutionState::Running);
    assert!(s.vote(&id, "other", &decision("bo", true)).await.is_err());
}
both!(a_gate_counts_votes_and_is_decided_once);

/// Reviewers voting at the same moment through different processes: the
/// gate is decided once, by one of them.
async fn simultaneous_votes_decide_a_gate_once(b: Backend) {
    let first = b.open().await;
    let id = first
        .begin(&execution(&[("promote", "approval")], Origin::Server))
        .await
        .unwrap();
    first.request_approval(&id, "promote", &gate(1)).await.unwrap();
    let mut voters = Vec::new();
    for name in ["ana", "bo", "cy"] {
        let s = b.open().await;
        let id = id.clone();
        voters.push(tokio::spawn(async move {
            s.vote(&id, "promote", &decision(name, name != "cy")).await
        }));
    }
    let mut decided = 0;
    for v in voters {
        if v.await.unwrap().is_ok_and(|o| o == VoteOutcome::Decided) {
            decided += 1;
        }
    }
    assert_eq!(decided, 1);
    let gate = first.approval(&id, "promote").await.unwrap().unwrap();
    assert!(gate.decision.is_some());
}
both!(simultaneous_votes_decide_a_gate_once);

fn delivery(id: Option<&str>) -> NewDelivery<'_> {
    NewDelivery {
        flow: "release",
        trigger: "push",
        delivery: id,
        status: 0,
        verdict: Verdict::Pending,
        reason: None,
        headers: None,
        body: Some(b"{\"ref\":\"main\"}"),
        replay_of: None,
        execution: None,
    }
}

async fn deliveries_are_claimed_once_and_listed(b: Backend) {
    let s = b.open().await;
    let Claim::New(first) = s.claim_delivery(&delivery(Some("gh-1"))).await.unwrap() else {
        panic!("new")
    };
    s.settle_delivery(&first, 202, Verdict::Accepted, None, Some("exec-1"))
        .await
        .unwrap();
    match s.claim_delivery(&delivery(Some("gh-1"))).await.unwrap() {
        Claim::Repeat(d) => assert_eq!(
            (d.id.as_str(), d.execution.as_deref()),
            (first.as_str(), Some("exec-1"))
        ),
        other => panic!("a repeat, got {other:?}"),
    }
    let refused = s
        .record_delivery(&NewDelivery {
            status: 401,
            verdict: Verdict::Unverified,
            reason: Some("bad signature"),
            ..delivery(Some("gh-2"))
        })
        .await
        .unwrap();
    let listed = s.deliveries(10, None).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [refused.as_str(), first.as_str()]
    );
    assert_eq!(s.deliveries(10, Some(&refused)).await.unwrap().len(), 1);
    let stored = s.delivery(&first).await.unwrap().unwrap();
    assert_eq!(stored.body.as_deref(), Some(&b"{\"ref\":\"main\"}"[..]));
    assert_eq!(stored.delivery.verdict, Verdict::Accepted);

    // The same delivery arriving at two servers at once: one claims it.
    let other = b.open().await;
    let third = delivery(Some("gh-3"));
    let (x, y) = tokio::join!(s.claim_delivery(&third), other.claim_delivery(&third));
    let fresh = [x.unwrap(), y.unwrap()]
        .iter()
        .filter(|c| matches!(c, Claim::New(_)))
        .count();
    assert_eq!(fresh, 1);

    assert_eq!(s.last_fire("release", "nightly").await.unwrap(), None);
    s.set_last_fire("release", "nightly", "2026-12-05T02:00:00Z")
        .await
        .unwrap();
    s.set_last_fire("release", "nightly", "2026-12-06T02:00:00Z")
        .await
        .unwrap();
    assert_eq!(
        s.last_fire("release", "nightly").await.unwrap().as_deref(),
        Some("2026-12-06T02:00:00Z")
    );
    // Two servers wake for the same fire: one takes it; an older time (or
    // the same instant written otherwise) is taken by none.
    let at = "2026-12-07T02:00:00Z";
    let (x, y) = tokio::join!(
        s.claim_fire("release", "nightly", at),
        other.claim_fire("release", "nightly", at)
    );
    assert_eq!(u8::from(x.unwrap()) + u8::from(y.unwrap()), 1);
    assert!(!s
        .claim_fire("release", "nightly", "2026-12-07T03:00:00+01:00")
        .await
        .unwrap());
    assert!(!s
        .claim_fire("release", "nightly", "2026-12-06T02:00:00Z")
        .await
        .unwrap());
    assert!(s
        .claim_fire("release", "nightly", "2026-12-07T02:00:00.5Z")
        .await
        .unwrap());
    assert!(s.claim_fire("release", "hourly", at).await.unwrap(), "a first fire");
}
both!(deliveries_are_claimed_once_and_listed);

async fn users_tokens_and_the_audit_trail(b: Backend) {
    let s = b.open().await;
    s.add_user("ana", Role::Admin, Some("$argon2id$hash")).await.unwrap();
    s.add_user("bo", Role::Viewer, None).await.unwrap();
    assert!(s.add_user("ana", Role::Viewer, None).await.is_err());
    assert_eq!(
        s.users()
            .await
            .unwrap()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["ana", "bo"]
    );
    for (id, user) in [("t_ab12", "ana"), ("t_ab34", "bo")] {
        s.add_token(&NewToken {
            id,
            user,
            kind: "api",
            label: "ci",
            hash: &format!("hash-{id}"),
            expires_at: None,
        })
        .await
        .unwrap();
    }
    let (token, user) = s.token_by_hash("hash-t_ab12").await.unwrap().unwrap();
    assert_eq!(
        (token.id.as_str(), user.name.as_str(), user.role),
        ("t_ab12", "ana", Role::Admin)
    );
    assert!(s.token_by_hash("nope").await.unwrap().is_none());
    s.touch_token("t_ab12").await.unwrap();
    assert!(s.tokens().await.unwrap().iter().any(|t| t.last_used_at.is_some()));
    let ambiguous = s.revoke_token("t_ab").await.unwrap_err();
    assert!(ambiguous.0.contains("give more"), "{ambiguous}");
    assert_eq!(s.revoke_token("t_ab1").await.unwrap().as_deref(), Some("t_ab12"));
    assert_eq!(s.revoke_token("t_ab1").await.unwrap(), None, "revoked already");
    assert_eq!(s.revoke_token("t%").await.unwrap(), None, "`%` is no wildcard");
    assert!(s.remove_user("bo").await.unwrap());
    assert!(!s.remove_user("bo").await.unwrap());
    let (bo_token, _) = (s.tokens().await.unwrap(), ());
    assert!(bo_token.iter().all(|t| t.revoked_at.is_some()), "{bo_token:?}");

    for i in 0..5 {
        s.audit("ana", "token.create", &format!("t{i}"), "api", &json!({"i": i}))
            .await
            .unwrap();
    }
    let newest = s.audit_log(2, None).await.unwrap();
    assert_eq!(
        newest.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        ["t4", "t3"]
    );
    let older = s.audit_log(10, Some(newest[1].seq)).await.unwrap();
    assert_eq!(older.len(), 3);
    assert_eq!(older[0].detail["i"], 2);
}
both!(users_tokens_and_the_audit_trail);

/// Whether an execution's process lives: the SQLite history asks the
/// operating system, the PostgreSQL one the execution's lease.
async fn running_paused_and_queued_executions_know_their_process(b: Backend) {
    let s = b.open().await;
    let id = s
        .begin(&execution(&[("t", "shell.run")], Origin::Server))
        .await
        .unwrap();
    assert!(s.process_alive(&id).await.unwrap());
    s.mark_queued(&id).await.unwrap();
    assert_eq!(s.show(&id).await.unwrap().unwrap().0.state, ExecutionState::Queued);
    assert!(s.server_orphans().await.unwrap().is_empty(), "its server lives");
    s.leave_paused(&id).await.unwrap();
    assert_eq!(s.show(&id).await.unwrap().unwrap().0.state, ExecutionState::Paused);
    // A detached pause has no process: the server resumes it.
    if matches!(b, Backend::Postgres(_)) {
        assert!(!s.process_alive(&id).await.unwrap());
        assert_eq!(
            s.server_orphans().await.unwrap(),
            [(id.clone(), ExecutionState::Paused)]
        );
    }
    s.reopen(&id).await.unwrap();
    assert_eq!(s.show(&id).await.unwrap().unwrap().0.state, ExecutionState::Running);
    assert!(s.process_alive(&id).await.unwrap());
    assert!(s.server_orphans().await.unwrap().is_empty());
}
both!(running_paused_and_queued_executions_know_their_process);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_execution_whose_lease_lapsed_is_interrupted() {
    let pg = Postgres::start();
    let s = PgStore::connect(&pg.url()).await.unwrap();
    let id = s
        .begin(&execution(&[("t", "shell.run")], Origin::Server))
        .await
        .unwrap();
    s.apply(
        &id,
        &[Change::Started {
            task: "t".into(),
            kind: "shell.run".into(),
            attempt: 1,
            at: at(),
        }],
    )
    .await
    .unwrap();
    // Its process on another machine stopped renewing (lost, or killed).
    pg.sql(&format!(
        "UPDATE executions SET lease_until = now() - interval '1 second' WHERE id = '{id}'"
    ));
    let (exec, runs) = s.show(&id).await.unwrap().unwrap();
    assert_eq!(exec.state, ExecutionState::Interrupted, "read as interrupted at once");
    assert_eq!(runs[0].state, TaskState::Interrupted);
    assert!(!s.process_alive(&id).await.unwrap());
    assert_eq!(
        s.server_orphans().await.unwrap(),
        [(id.clone(), ExecutionState::Interrupted)]
    );
    // The next process to open the history records it.
    drop(s);
    let next = PgStore::connect(&pg.url()).await.unwrap();
    assert_eq!(
        pg.sql(&format!("SELECT state FROM executions WHERE id = '{id}'")),
        "interrupted"
    );
    assert_eq!(
        pg.sql(&format!("SELECT state FROM task_runs WHERE execution_id = '{id}'")),
        "interrupted"
    );
    assert!(!next.process_alive(&id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_migrate_a_new_database_once_and_share_one_history() {
    let pg = Postgres::start();
    let url = pg.url();
    let (a, b) = tokio::join!(PgStore::connect(&url), PgStore::connect(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.history_id(), b.history_id());
    assert_eq!(a.history_id().len(), 32);
    assert_eq!(pg.sql("SELECT version FROM kflow_schema"), "2");
    // A newer kflow's schema is refused, not written over.
    pg.sql("UPDATE kflow_schema SET version = 999");
    let newer = PgStore::connect(&url).await.err().expect("refused");
    assert!(newer.0.contains("newer kflow"), "{newer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_errors_are_clear_and_keep_the_password() {
    let pg = Postgres::start();
    let wrong = pg.url().replace(PASSWORD, "wrong-password-91");
    let err = PgStore::connect(&wrong).await.err().expect("refused").0;
    assert!(err.contains("postgres://kflow@127.0.0.1"), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-password-91"), "{err}");
    let closed = format!(
        "postgres://kflow:{PASSWORD}@127.0.0.1:{}/postgres",
        support::free_port()
    );
    let err = PgStore::connect(&closed).await.err().expect("refused").0;
    assert!(err.contains("cannot connect") && !err.contains(PASSWORD), "{err}");
    let err = PgStore::connect("postgres://kflow@127.0.0.1:notaport/db")
        .await
        .err()
        .expect("refused")
        .0;
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_restarted_database_is_reconnected_to() {
    let mut pg = Postgres::start();
    let s = PgStore::connect(&pg.url()).await.unwrap();
    let id = s.begin(&execution(&[], Origin::Cli)).await.unwrap();
    pg.restart();
    // The pooled connections died with the server: the first call after a
    // restart may fail, and the next ones reconnect.
    let mut shown = None;
    for _ in 0..20 {
        if let Ok(Some(found)) = s.show(&id).await {
            shown = Some(found);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(shown.expect("reconnected").0.id, id);
    s.finish(&id, ExecutionState::Succeeded, &json!([]), &json!({}))
        .await
        .unwrap();
}

mod queue {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::time::Duration;

    use kflow_runtime::store::{AttemptOutcome, NewTask, Origin, PgStore, Settled, QUEUED};
    use serde_json::json;

    use super::{execution, Postgres};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    async fn queued(s: &PgStore, exec: &str, task: &str, runs_on: &BTreeMap<String, String>) -> i64 {
        s.enqueue(&NewTask {
            execution: exec,
            task,
            attempt: 1,
            kind: "shell.run",
            props: &json!({"script": "true"}),
            labels: runs_on,
            on_worker: None,
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_claim_each_attempt_once_and_only_with_their_labels() {
        let pg = Postgres::start();
        let s = Arc::new(PgStore::connect(&pg.url()).await.unwrap());
        let exec = s.begin(&execution(&[], Origin::Server)).await.unwrap();
        let none = labels(&[]);
        let prod = labels(&[("env", "prod")]);
        let mut prod_seqs = BTreeSet::new();
        for i in 0..300 {
            let runs_on = if i % 10 == 0 { &prod } else { &none };
            let seq = queued(&s, &exec, &format!("t{i}"), runs_on).await;
            if i % 10 == 0 {
                prod_seqs.insert(seq);
            }
        }
        // Four workers claim at once, each through its own connections.
        let mut claimers = Vec::new();
        for w in 0..4 {
            let store = PgStore::connect(&pg.url()).await.unwrap();
            let mine = if w == 0 {
                labels(&[("env", "prod"), ("arch", "amd64")])
            } else {
                labels(&[("arch", "amd64")])
            };
            claimers.push(tokio::spawn(async move {
                let id = format!("w{w}");
                let mut got = Vec::new();
                loop {
                    let batch = store.claim(&id, &mine, 7, Duration::from_secs(30)).await.unwrap();
                    if batch.is_empty() {
                        return (id, got);
                    }
                    got.extend(batch.into_iter().map(|c| c.seq));
                }
            }));
        }
        let mut seen = BTreeSet::new();
        for c in claimers {
            let (id, got) = c.await.unwrap();
            for seq in got {
                assert!(seen.insert(seq), "attempt {seq} claimed twice");
                if prod_seqs.contains(&seq) {
                    assert_eq!(id, "w0", "only the prod worker takes prod work");
                }
            }
        }
        assert_eq!(seen.len(), 300);
        assert_eq!(s.queue_depth().await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_result_after_the_lease_lapsed_is_refused_and_a_renewed_one_accepted() {
        let pg = Postgres::start();
        let s = PgStore::connect(&pg.url()).await.unwrap();
        let exec = s.begin(&execution(&[], Origin::Server)).await.unwrap();
        let none = labels(&[]);
        let a = queued(&s, &exec, "a", &none).await;
        let b = queued(&s, &exec, "b", &none).await;
        let lease = Duration::from_secs(1);
        let got = s.claim("w1", &none, 10, lease).await.unwrap();
        assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), [a, b]);
        // `b` is kept alive by heartbeats; `a` is not (the worker stops
        // renewing it: cut off, or paused).
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let held = s.heartbeat("w1", lease).await.unwrap();
            assert!(held.iter().any(|(seq, _)| *seq == b));
        }
        pg.sql(&format!(
            "UPDATE task_queue SET lease_until = now() - interval '1 ms' WHERE seq = {a}"
        ));
        let settled = s.settled(&[a, b]).await.unwrap();
        assert_eq!(settled, [(a, Settled::Lost { worker: "w1".into() })]);
        // The worker comes back with a result: refused.
        let late = AttemptOutcome::Succeeded {
            outputs: json!({"stdout": "late"}),
        };
        assert!(!s.settle(a, "w1", &late).await.unwrap(), "fenced");
        assert!(!s.heartbeat("w1", lease).await.unwrap().iter().any(|(seq, _)| *seq == a));
        // Another worker's result for an attempt it does not hold: refused.
        assert!(!s.settle(b, "w2", &late).await.unwrap());
        let ok = AttemptOutcome::Failed {
            error: "exit 1".into(),
            transient: true,
        };
        assert!(s.settle(b, "w1", &ok).await.unwrap());
        assert!(!s.settle(b, "w1", &ok).await.unwrap(), "settled once");
        assert_eq!(s.settled(&[b]).await.unwrap(), [(b, Settled::Done(ok))]);
        assert_eq!(pg.sql(&format!("SELECT state FROM task_queue WHERE seq = {a}")), "lost");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelling_releasing_and_waking_up() {
        let pg = Postgres::start();
        let s = PgStore::connect(&pg.url()).await.unwrap();
        let mut wake = s.listen(QUEUED).await.unwrap();
        let exec = s.begin(&execution(&[], Origin::Server)).await.unwrap();
        let none = labels(&[]);
        let a = queued(&s, &exec, "a", &none).await;
        tokio::time::timeout(Duration::from_secs(5), wake.rx.recv())
            .await
            .expect("a worker listening is woken when work is queued");
        let b = queued(&s, &exec, "b", &none).await;
        // A queued attempt is withdrawn at once.
        s.cancel_task(a).await.unwrap();
        assert_eq!(
            s.settled(&[a]).await.unwrap(),
            [(a, Settled::Done(AttemptOutcome::Cancelled))]
        );
        let got = s.claim("w1", &none, 10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), [b]);
        // A claimed one: its worker learns at its next heartbeat.
        s.cancel_task(b).await.unwrap();
        assert_eq!(s.heartbeat("w1", Duration::from_secs(30)).await.unwrap(), [(b, true)]);
        // A draining worker hands its claims back.
        let c = queued(&s, &exec, "c", &none).await;
        assert_eq!(
            s.claim("w1", &none, 10, Duration::from_secs(30)).await.unwrap()[0].seq,
            c
        );
        assert_eq!(s.release_claims("w1", &[c]).await.unwrap(), 1);
        assert_eq!(
            s.claim("w2", &none, 10, Duration::from_secs(30)).await.unwrap()[0].seq,
            c
        );
        s.register_worker(
            "w2",
            "host-b",
            &labels(&[("env", "prod")]),
            Some("unix:///var/run/docker.sock"),
            4,
        )
        .await
        .unwrap();
        let workers = s.workers().await.unwrap();
        assert_eq!(workers.len(), 1);
        assert_eq!(workers[0].running, [format!("{exec}/c")]);
        assert_eq!(workers[0].labels["env"], "prod");
        assert!(workers[0].silent_for < 5.0);
    }
}
