//! Plain HTTP/1.1 to the engine (over its socket, TCP, TLS or an ssh
//! client's pipes), for the two requests bollard cannot make
//! without its gRPC stack: `/session` (upgraded to the build's session) and
//! `/build?version=2` (whose progress bollard's types cannot decode).

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

pub use super::super::endpoint::Endpoint as Address;

/// The engine of `DOCKER_HOST`, whose connections kflow opens itself.
pub fn address() -> Result<Address, String> {
    Address::from_env()
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn dial(address: &Address) -> Result<Box<dyn Io>, String> {
    let io: Box<dyn Io> = match address {
        Address::Unix(path) => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("cannot reach the engine at {}: {e}", path.display()))?,
        ),
        Address::Tcp(addr) => Box::new(
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot reach the engine at {addr}: {e}"))?,
        ),
        Address::Tls { addr, certs } => {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot reach the engine at {addr}: {e}"))?;
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| format!("{host} is not a host name TLS can verify: {e}"))?;
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(certs.client_config()?));
            Box::new(
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("no TLS with the engine at {addr}: {e}"))?,
            )
        }
        Address::Ssh(url) => {
            let mut ssh = address
                .dial_stdio()
                .ok_or_else(|| format!("{url} is not an SSH engine"))?;
            let mut child = ssh
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start ssh for the engine at {url}: {e}"))?;
            let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
                return Err("ssh started without its pipes".into());
            };
            Box::new(Piped {
                io: tokio::io::join(stdout, stdin),
                _ssh: child,
            })
        }
    };
    Ok(io)
}

/// An SSH engine's connection: the ssh client's pipes as one stream, the
/// client killed when the stream is dropped.
struct Piped {
    io: tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
    _ssh: tokio::process::Child,
}

impl AsyncRead for Piped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Piped {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Sends one request on a connection of its own (upgrades allowed) and
/// returns the response once its head has arrived.
pub async fn send<B>(address: &Address, request: http::Request<B>) -> Result<http::Response<Incoming>, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = dial(address).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("cannot talk to the engine: {e}"))?;
    // The connection lives as long as the response (or the upgraded
    // stream) is read; an error there surfaces through them.
    tokio::spawn(conn.with_upgrades());
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("the engine did not answer: {e}"))
}

/// A request to the engine's API (`path` with its query).
pub fn request(method: http::Method, path: &str) -> http::request::Builder {
    http::Request::builder()
        .method(method)
        .uri(path)
        // HTTP/1.1 wants one; the engine does not read it.
        .header(http::header::HOST, "docker")
}

/// The body of an error answer, at most 64 KiB of it, as the engine's
/// `message` when it is JSON.
pub async fn error_message(response: http::Response<Incoming>) -> String {
    let status = response.status();
    let limited = http_body_util::Limited::new(response.into_body(), 64 * 1024);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    if message.is_empty() {
        format!("the engine answered {status}")
    } else {
        message
    }
}
