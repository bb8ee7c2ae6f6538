//! `http.request` against a real HTTP/1.1 server on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::Arc;

use kflow_compiler::analysis::{analyze, Options};
use kflow_runtime::executor::{execute, Report, RunEnv, TaskState};
use kflow_runtime::secret::Secret;
use kflow_runtime::value::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the server saw of one request.
#[derive(Debug, Clone, Default)]
struct Seen {
    head: String,
    body: String,
}

/// Serves every connection with what `reply` makes of the request (a whole
/// HTTP response); returns the address and what it received.
async fn serve(reply: impl Fn(&Seen) -> String + Send + Sync + 'static) -> (String, Arc<std::sync::Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
                let seen = Seen { head, body };
                let resp = reply(&seen);
                log.lock().unwrap().push(seen);
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn response(status: u16, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

/// Answers `status` with a body echoing the request's head.
async fn server(status: u16) -> (String, Arc<std::sync::Mutex<Vec<Seen>>>) {
    serve(move |seen| response(status, "", &format!("you sent:\n{}", seen.head))).await
}

async fn run(src: &str, inputs: &[(&str, &str)]) -> Report {
    let a = analyze(src, &Options::default());
    assert!(!a.has_errors(), "{:#?}", a.diagnostics);
    let plan = a.flows.into_iter().next().unwrap().plan;
    let given: Vec<(String, String)> = inputs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (tx, _rx) = mpsc::unbounded_channel();
    let env = RunEnv {
        execution: "test".into(),
        dispatch: None,
        artifacts: std::env::temp_dir().join("kflow-test-artifacts"),
        state_dir: std::env::temp_dir().join("kflow-test-state"),
        // One history for every run of the tests (a fixed folder, reused).
        store: Arc::new(
            kflow_runtime::store::SqliteStore::open(&std::env::temp_dir().join("kflow-test-state")).unwrap(),
        ),
        state_hint: String::new(),
        detach: false,
        restored: Default::default(),
        inputs: kflow_runtime::inputs::resolve(&plan, &given).unwrap(),
        secrets: BTreeMap::from([("token".to_string(), Secret::new("s3cr3t-t0ken"))]),
        base_dir: std::env::temp_dir(),
        jobs: 4,
        cancel: CancellationToken::new(),
    };
    execute(Arc::new(plan), env, tx).await
}

const FLOW: &str = r#"flow f {
  input url: string
  input expect: list<int> = [201]
  secret token = env("TOKEN")
  task call = http.request {
    url: url
    method: "POST"
    headers: { "Authorization": token, "X-Kind": "deploy" }
    body: "{\"version\": \"1.2\"}"
    expect_status: expect
  }
  output status = call.status
  output body = call.body
}"#;

#[tokio::test]
async fn a_request_sends_method_headers_and_body() {
    let (url, seen) = server(201).await;
    let r = run(FLOW, &[("url", &format!("{url}/hooks/deploy"))]).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    assert_eq!(r.outputs["status"], Value::Int(201));
    let req = seen.lock().unwrap()[0].clone();
    assert!(req.head.starts_with("POST /hooks/deploy HTTP/1.1\r\n"), "{}", req.head);
    let head = req.head.to_ascii_lowercase();
    assert!(head.contains("authorization: s3cr3t-t0ken") && head.contains("x-kind: deploy"));
    assert_eq!(req.body, r#"{"version": "1.2"}"#);
    // The server echoed the secret header back: the output has it redacted.
    let Value::Str(body) = &r.outputs["body"] else { panic!() };
    assert!(
        body.contains("authorization: ***") || body.contains("Authorization: ***"),
        "{body}"
    );
    assert!(!body.contains("s3cr3t-t0ken"));
}

#[tokio::test]
async fn an_unexpected_status_fails_with_the_status_and_a_redacted_excerpt() {
    let (url, _) = server(503).await;
    let r = run(FLOW, &[("url", &url)]).await;
    let call = r.task("call").unwrap();
    assert_eq!(call.state, TaskState::Failed);
    let err = call.error.as_deref().unwrap();
    assert!(
        err.starts_with(&format!("POST {url} answered 503, expected 201\nyou sent:")),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-t0ken"), "{err}");
}

#[tokio::test]
async fn without_expect_status_any_2xx_passes() {
    let (url, _) = server(204).await;
    let flow = "flow f {\n  input url: string\n  task ping = http.request { url: url }\n  output s = ping.status\n}";
    let r = run(flow, &[("url", &url)]).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    assert_eq!(r.outputs["s"], Value::Int(204));
    let (url, _) = server(302).await;
    let r = run(flow, &[("url", &url)]).await;
    assert!(r.failures[0].contains("answered 302, expected 2xx"), "{:?}", r.failures);
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let flow = "flow f {\n  input url: string\n  task ping = http.request { url: url }\n}";
    let r = run(flow, &[("url", &format!("http://127.0.0.1:{port}/health"))]).await;
    let err = &r.failures[0];
    assert!(
        err.starts_with(&format!(
            "ping: GET http://127.0.0.1:{port}/health: error sending request"
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn an_excerpt_never_ends_in_part_of_a_secret() {
    // The secret straddles the 500th character of the body.
    let body = format!("{}s3cr3t-t0ken and more", "x".repeat(494));
    let (url, _) = serve(move |_| response(500, "", &body)).await;
    let r = run(FLOW, &[("url", &url)]).await;
    let err = r.task("call").unwrap().error.clone().unwrap();
    assert!(err.contains("answered 500"), "{err}");
    assert!(!err.contains("s3cr3t"), "half the secret is quoted: {err}");
    assert!(
        err.ends_with("x*** an"),
        "the excerpt is 500 characters of redacted text: {err}"
    );
}

/// A flow sending a secret header and a plain one to `url`.
const HEADERS: &str = r#"flow f {
  input url: string
  secret token = env("TOKEN")
  task call = http.request {
    url: url
    headers: { "X-Token": token, "Authorization": token, "X-Kind": "deploy" }
  }
  output status = call.status
}"#;

#[tokio::test]
async fn secret_headers_are_dropped_on_a_redirect_to_another_origin() {
    let (target, seen) = server(200).await;
    // Another port on the same host is another origin.
    let (url, _) = serve(move |_| response(302, &format!("location: {target}/landed\r\n"), "")).await;
    let r = run(HEADERS, &[("url", &url)]).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    let req = seen.lock().unwrap()[0].clone();
    assert!(req.head.starts_with("GET /landed "), "{}", req.head);
    let head = req.head.to_ascii_lowercase();
    assert!(head.contains("x-kind: deploy"), "{head}");
    assert!(
        !head.contains("s3cr3t-t0ken"),
        "a secret header crossed origins: {head}"
    );
}

#[tokio::test]
async fn secret_headers_follow_a_redirect_on_the_same_origin() {
    let seen_first = Arc::new(std::sync::Mutex::new(false));
    let (url, seen) = serve(move |req| {
        if req.head.starts_with("GET /start ") {
            *seen_first.lock().unwrap() = true;
            response(307, "location: /next\r\n", "")
        } else {
            response(200, "", "ok")
        }
    })
    .await;
    let r = run(HEADERS, &[("url", &format!("{url}/start"))]).await;
    assert!(r.succeeded(), "{:?}", r.failures);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].head.starts_with("GET /next "), "{}", seen[1].head);
    assert!(seen[1].head.to_ascii_lowercase().contains("x-token: s3cr3t-t0ken"));
}

#[tokio::test]
async fn a_redirect_loop_ends_with_an_error() {
    let (url, _) = serve(|_| response(302, "location: /again\r\n", "")).await;
    let r = run(HEADERS, &[("url", &url)]).await;
    assert!(r.failures[0].contains("more than 10 redirects"), "{:?}", r.failures);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts, reads, and says nothing; the idle timeout ends the wait.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    std::env::set_var("KFLOW_IDLE_TIMEOUT", "1s");
    let flow = "flow f {\n  input url: string\n  task ping = http.request { url: url }\n}";
    let started = std::time::Instant::now();
    let r = run(flow, &[("url", &format!("http://{addr}/"))]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(r.failures[0].to_lowercase().contains("timed out"), "{:?}", r.failures);
}
