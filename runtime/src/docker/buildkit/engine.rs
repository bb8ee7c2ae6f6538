//! Plain HTTP/1.1 to the engine, for the two requests bollard cannot make
//! without its gRPC stack: `/session` (upgraded to the build's session) and
//! `/build?version=2` (whose progress bollard's types cannot decode).

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where the engine listens, when it is a socket kflow can open itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl Address {
    /// The engine of `DOCKER_HOST` (or the default socket), or why BuildKit
    /// cannot be reached there: a TLS engine needs a client certificate
    /// kflow does not load, SSH and named pipes are not spoken.
    pub fn from_env() -> Result<Address, String> {
        let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
        Address::parse(&super::super::engine_address(), tls)
    }

    fn parse(host: &str, tls: bool) -> Result<Address, String> {
        if tls {
            return Err(format!("{host} is a TLS engine (DOCKER_TLS_VERIFY)"));
        }
        if let Some(path) = host.strip_prefix("unix://") {
            Ok(Address::Unix(path.into()))
        } else if let Some(addr) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
            Ok(Address::Tcp(addr.trim_end_matches('/').to_string()))
        } else {
            Err(format!("{host} is not a unix socket or a plain TCP address"))
        }
    }
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
    };
    Ok(io)
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

#[cfg(test)]
mod tests {
    use super::Address;

    #[test]
    fn engines_kflow_can_open_a_session_with() {
        assert_eq!(
            Address::parse("unix:///var/run/docker.sock", false),
            Ok(Address::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            Address::parse("tcp://127.0.0.1:2375", false),
            Ok(Address::Tcp("127.0.0.1:2375".into()))
        );
        assert!(Address::parse("tcp://10.0.0.1:2376", true).unwrap_err().contains("TLS"));
        assert!(Address::parse("ssh://builder@host", false)
            .unwrap_err()
            .contains("not a unix socket"));
        assert!(Address::parse("npipe:////./pipe/docker_engine", false).is_err());
    }
}
