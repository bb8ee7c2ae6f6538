//! A hostile registry on 127.0.0.1: it lies about sizes and digests, serves
//! huge manifests and endless signature lists, trickles, and sends uploads to
//! another port. kflow's registry client refuses each with a clear error, in
//! bounded memory and time, and sends credentials to no one else.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kflow_runtime::registry::client::{sha256_digest, Registry, MAX_MANIFEST};
use kflow_runtime::registry::credentials::{Login, Source};
use kflow_runtime::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the registry answers one request (its head as read).
type Handler = Arc<dyn Fn(&str, TcpStream) -> tokio::task::JoinHandle<()> + Send + Sync>;

/// Serves each connection with `handler`; returns `host:port` and every
/// request head received.
async fn registry(handler: Handler) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head = loop {
                let Ok(n) = sock.read(&mut chunk).await else { break None };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(String::from_utf8_lossy(&buf[..i]).into_owned());
                }
            };
            let Some(head) = head else { continue };
            seen.lock().unwrap().push(head.clone());
            handler(&head, sock);
        }
    });
    (addr.to_string(), heads)
}

fn reply(mut sock: TcpStream, status: &str, headers: &str, body: Vec<u8>) -> tokio::task::JoinHandle<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    );
    tokio::spawn(async move {
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(&body).await;
    })
}

fn basic() -> Source {
    Source::given(Login::Basic {
        username: "ci".into(),
        password: Secret::new("registry-pa55word"),
    })
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

#[tokio::test]
async fn a_huge_manifest_is_refused_without_reading_it() {
    // Announces 3 GB and starts sending them.
    let (host, _) = registry(Arc::new(|_, mut sock: TcpStream| {
        tokio::spawn(async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 3000000000\r\n\r\n";
            let _ = sock.write_all(head.as_bytes()).await;
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..3000 {
                if sock.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        })
    }))
    .await;
    let reg = Registry::new(&host, Source::docker_config()).unwrap();
    let e = reg.manifest("app", "latest").await.unwrap_err();
    assert!(e.0.contains("more than the 4194304 allowed"), "{e}");
    assert!(peak_rss_mib() < 200, "peak RSS {} MiB", peak_rss_mib());
}

#[tokio::test]
async fn a_huge_manifest_without_a_length_is_cut_at_the_cap() {
    let (host, _) = registry(Arc::new(|_, mut sock: TcpStream| {
        tokio::spawn(async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ntransfer-encoding: chunked\r\n\r\n";
            let _ = sock.write_all(head.as_bytes()).await;
            let data = vec![b' '; 1 << 20];
            for _ in 0..3000 {
                let chunk = format!("{:x}\r\n", data.len());
                if sock.write_all(chunk.as_bytes()).await.is_err()
                    || sock.write_all(&data).await.is_err()
                    || sock.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
            }
        })
    }))
    .await;
    let reg = Registry::new(&host, Source::docker_config()).unwrap();
    let e = reg.manifest("app", "latest").await.unwrap_err();
    assert!(
        e.0.contains(&format!("more than the {MAX_MANIFEST} bytes allowed")),
        "{e}"
    );
    assert!(peak_rss_mib() < 200, "peak RSS {} MiB", peak_rss_mib());
}

#[tokio::test]
async fn a_blob_longer_or_shorter_than_its_descriptor_is_refused() {
    // The blob's bytes are "foo" (DIGEST); the registry serves more.
    let (host, _) = registry(Arc::new(|_, sock| {
        reply(sock, "200 OK", "", b"foo and much more".to_vec())
    }))
    .await;
    let reg = Registry::new(&host, Source::docker_config()).unwrap();
    let e = reg.blob("app", DIGEST, Some(3)).await.unwrap_err();
    assert!(e.0.contains("is 17 bytes, more than the 3 allowed"), "{e}");
    let e = match reg.blob_stream("app", DIGEST, 3).await {
        Err(e) => e,
        Ok(_) => panic!("a stream of the wrong length was accepted"),
    };
    assert!(e.0.contains("is 17 bytes, its descriptor says 3"), "{e}");
    let (host, _) = registry(Arc::new(|_, sock| reply(sock, "200 OK", "", b"fo".to_vec()))).await;
    let reg = Registry::new(&host, Source::docker_config()).unwrap();
    let e = reg.blob("app", DIGEST, Some(3)).await.unwrap_err();
    assert!(e.0.contains("is 2 bytes, its descriptor says 3"), "{e}");
}

#[tokio::test]
async fn a_streamed_blob_is_checked_as_it_flows() {
    // Chunked (no length to refuse up front): too long, then the wrong bytes.
    for (body, want) in [
        ("foo and more", "longer than the 3 bytes"),
        ("bar", "does not match its digest"),
        ("fo", "ended after 2 of 3 bytes"),
    ] {
        let body = body.to_string();
        let (host, _) = registry(Arc::new(move |_, mut sock: TcpStream| {
            let body = body.clone();
            tokio::spawn(async move {
                let msg = format!(
                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(msg.as_bytes()).await;
            })
        }))
        .await;
        let reg = Registry::new(&host, Source::docker_config()).unwrap();
        let mut stream = Box::pin(reg.blob_stream("app", DIGEST, 3).await.unwrap());
        let mut error = None;
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                error = Some(e.to_string());
            }
        }
        let error = error.unwrap_or_else(|| panic!("{want}: accepted"));
        assert!(error.contains(want), "{error}");
    }
    assert_eq!(sha256_digest(b"foo"), DIGEST);
}

#[tokio::test]
async fn a_blob_with_the_wrong_digest_is_refused() {
    let (host, _) = registry(Arc::new(|_, sock| reply(sock, "200 OK", "", b"bar".to_vec()))).await;
    let reg = Registry::new(&host, Source::docker_config()).unwrap();
    let e = reg.blob("app", DIGEST, Some(3)).await.unwrap_err();
    assert!(e.0.contains("does not match its digest"), "{e}");
}

#[tokio::test]
async fn credentials_never_follow_an_upload_to_another_port() {
    // The thief records what it is sent and asks for credentials.
    let (thief, stolen) = registry(Arc::new(|_, sock| {
        reply(
            sock,
            "401 Unauthorized",
            "www-authenticate: Basic realm=\"x\"\r\n",
            Vec::new(),
        )
    }))
    .await;
    let location = format!("http://{thief}/upload/1");
    let (host, heads) = registry(Arc::new(move |head: &str, sock| {
        if !head.to_ascii_lowercase().contains("\nauthorization:") {
            return reply(
                sock,
                "401 Unauthorized",
                "www-authenticate: Basic realm=\"r\"\r\n",
                Vec::new(),
            );
        }
        reply(sock, "202 Accepted", &format!("location: {location}\r\n"), Vec::new())
    }))
    .await;
    let reg = Registry::new(&host, basic()).unwrap();
    let e = reg.upload_blob("app", DIGEST, "foo".into()).await.unwrap_err();
    assert!(
        e.0.contains(&format!("sent kflow to http://{thief}, which asks for credentials")),
        "{e}"
    );
    // The registry got them (Basic of ci:registry-pa55word); the thief never did.
    assert!(heads.lock().unwrap().iter().any(|h| h.contains("Basic Y2k6")));
    let stolen = stolen.lock().unwrap();
    assert!(!stolen.is_empty(), "the upload went to the Location");
    assert!(
        stolen.iter().all(|h| !h.to_ascii_lowercase().contains("authorization")),
        "{stolen:?}"
    );
}

#[tokio::test]
async fn a_registry_that_trickles_times_out() {
    std::env::set_var("KFLOW_IDLE_TIMEOUT", "1s");
    let (host, _) = registry(Arc::new(|_, mut sock: TcpStream| {
        tokio::spawn(async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 100\r\n\r\n";
            let _ = sock.write_all(head.as_bytes()).await;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if sock.write_all(b" ").await.is_err() {
                    return;
                }
            }
        })
    }))
    .await;
    let reg = Registry::new(&host, Source::docker_config()).unwrap();
    let started = Instant::now();
    let e = reg.manifest("app", "latest").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(e.0.to_lowercase().contains("timed out"), "{e}");
}

#[tokio::test]
async fn endless_signature_lists_are_refused() {
    use kflow_runtime::registry::name::ImageName;
    let layers: Vec<serde_json::Value> = (0..1001)
        .map(|_| {
            serde_json::json!({
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": 3, "digest": DIGEST,
                "annotations": { "dev.cosignproject.cosign/signature": "AAAA" }
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "size": 3, "digest": DIGEST },
        "layers": layers,
    }))
    .unwrap();
    let (host, heads) = registry(Arc::new(move |_, sock| {
        reply(
            sock,
            "200 OK",
            "content-type: application/vnd.oci.image.manifest.v1+json\r\n",
            manifest.clone(),
        )
    }))
    .await;
    let target = ImageName::parse(&format!("{host}/app@{DIGEST}")).unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let e = kflow_runtime::sign::cosign::verify(&target, key.verifying_key(), &Source::docker_config())
        .await
        .unwrap_err();
    assert!(e.contains("1001 signature layers, more than the 1000"), "{e}");
    // No blob was fetched: a HEAD and a GET of the signature manifest.
    assert!(heads.lock().unwrap().len() <= 3, "{:?}", heads.lock().unwrap().len());
}
