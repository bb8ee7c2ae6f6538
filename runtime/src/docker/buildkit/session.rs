//! A build's session: the engine's BuildKit calls back into the client for
//! what only the client holds. kflow offers two services over it, served
//! with `h2` on the upgraded `/session` connection (the engine is the gRPC
//! client there):
//!
//! - `grpc.health.v1.Health/Check`, which BuildKit polls to keep the
//!   session alive;
//! - `moby.buildkit.secrets.v1.Secrets/GetSecret`, which hands a
//!   `RUN --mount=type=secret` its value from memory. The value goes to
//!   BuildKit alone, which mounts it on a tmpfs for that step: it is never
//!   in the context, a build argument or a layer.
//!
//! Everything else (file sync, SSH agents, registry credentials) answers
//! `UNIMPLEMENTED`, which BuildKit reads as "the client offers none".

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper_util::rt::TokioIo;

use super::engine::{self, Address};
use super::proto;
use crate::secret::Secret;

const HEALTH: &str = "/grpc.health.v1.Health/Check";
const GET_SECRET: &str = "/moby.buildkit.secrets.v1.Secrets/GetSecret";

/// The largest request a session accepts: secret ids and health checks are
/// a few bytes.
const MAX_REQUEST: usize = 64 * 1024;

/// Requests answered at once on one session.
const MAX_STREAMS: u32 = 32;

/// gRPC status codes used here.
const NOT_FOUND: u32 = 5;
const INVALID_ARGUMENT: u32 = 3;
const UNIMPLEMENTED: u32 = 12;

/// An open session; it ends when dropped.
pub struct Session {
    pub id: String,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// A random id, as BuildKit's are (25 lowercase letters and digits).
pub fn new_id() -> String {
    use rand_core::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 25];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Opens a session on the engine that serves `secrets` by id.
pub async fn open(address: &Address, secrets: HashMap<String, Secret>) -> Result<Session, String> {
    let id = new_id();
    let request = engine::request(http::Method::POST, "/session")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "h2c")
        .header("X-Docker-Expose-Session-Uuid", &id)
        .header("X-Docker-Expose-Session-Name", "kflow")
        .header("X-Docker-Expose-Session-Sharedkey", &id)
        .header("X-Docker-Expose-Session-Grpc-Method", HEALTH)
        .header("X-Docker-Expose-Session-Grpc-Method", GET_SECRET)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| format!("cannot form the session request: {e}"))?;
    let response = engine::send(address, request).await?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let why = engine::error_message(response).await;
        return Err(format!("the engine refused a BuildKit session: {why}"));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| format!("the engine did not open the BuildKit session: {e}"))?;
    // BuildKit asks one thing at a time; a peer opening streams without
    // end, or sending huge headers, is cut short.
    let mut connection = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_REQUEST as u32)
        .handshake(TokioIo::new(upgraded))
        .await
        .map_err(|e| format!("the BuildKit session did not start: {e}"))?;
    let secrets = Arc::new(secrets);
    let serving = tokio::spawn(async move {
        // Ends when the engine closes the session or the build is over.
        while let Some(Ok((request, respond))) = connection.accept().await {
            tokio::spawn(answer(request, respond, Arc::clone(&secrets)));
        }
    });
    Ok(Session { id, serving })
}

type Reply = Result<Vec<u8>, (u32, String)>;

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    secrets: Arc<HashMap<String, Secret>>,
) {
    let path = request.uri().path().to_string();
    let reply = match read_message(request.into_body()).await {
        Err(why) => Err((INVALID_ARGUMENT, why)),
        Ok(message) => match path.as_str() {
            HEALTH => {
                // HealthCheckResponse { status: SERVING }
                let mut out = Vec::new();
                proto::put_varint_field(&mut out, 1, 1);
                Ok(out)
            }
            GET_SECRET => secret(&message, &secrets),
            _ => Err((UNIMPLEMENTED, format!("{path} is not offered"))),
        },
    };
    // The engine may have gone; nothing to tell it then.
    let _ = send_reply(&mut respond, reply);
}

fn secret(message: &[u8], secrets: &HashMap<String, Secret>) -> Reply {
    let id = proto::secret_id(message).map_err(|_| (INVALID_ARGUMENT, "malformed GetSecretRequest".to_string()))?;
    match secrets.get(&id) {
        Some(value) => {
            let mut out = Vec::new();
            proto::put_bytes(&mut out, 1, value.expose().as_bytes());
            Ok(out)
        }
        // BuildKit names the missing id in the step's error.
        None => Err((
            NOT_FOUND,
            format!("secret {id} not found: give it in the task's `secrets`"),
        )),
    }
}

/// One length-prefixed gRPC message (uncompressed), at most [`MAX_REQUEST`].
async fn read_message(mut body: h2::RecvStream) -> Result<Vec<u8>, String> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > MAX_REQUEST + 5 {
            return Err("request too large".into());
        }
        buf.extend_from_slice(&chunk);
    }
    unframe(&buf).map(<[u8]>::to_vec)
}

/// The message inside one gRPC frame: a flag byte (uncompressed only), a
/// big-endian length, exactly that many bytes.
fn unframe(mut frame: &[u8]) -> Result<&[u8], String> {
    if frame.len() < 5 {
        return Err("empty request".into());
    }
    let compressed = frame.get_u8();
    let len = frame.get_u32() as usize;
    if compressed != 0 {
        return Err("compressed messages are not accepted".into());
    }
    if len != frame.len() {
        return Err("the message length does not match its frame".into());
    }
    Ok(frame)
}

fn send_reply(respond: &mut h2::server::SendResponse<Bytes>, reply: Reply) -> Result<(), h2::Error> {
    let head = http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/grpc");
    match reply {
        Ok(message) => {
            let mut stream = respond.send_response(head.body(()).expect("static header"), false)?;
            let mut frame = BytesMut::with_capacity(5 + message.len());
            frame.put_u8(0);
            frame.put_u32(message.len() as u32);
            frame.extend_from_slice(&message);
            stream.send_data(frame.freeze(), false)?;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            stream.send_trailers(trailers)
        }
        Err((code, message)) => {
            // A "trailers-only" answer: the status in the headers.
            let message = http::HeaderValue::from_str(&percent_encoded(&message))
                .unwrap_or_else(|_| http::HeaderValue::from_static("error"));
            let head = head
                .header("grpc-status", code.to_string())
                .header("grpc-message", message)
                .body(())
                .expect("valid headers");
            respond.send_response(head, true).map(|_| ())
        }
    }
}

/// `grpc-message` is percent-encoded outside printable ASCII.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_taken_exactly_as_long_as_they_say() {
        assert_eq!(unframe(&[0, 0, 0, 0, 2, 8, 1]), Ok(&[8u8, 1][..]));
        assert!(unframe(&[]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 3, 8, 1]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 1, 8, 1]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).unwrap_err().contains("compressed"));
        assert!(unframe(&[0, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_secret_is_served_by_id_and_an_unknown_one_is_not_found() {
        let secrets = HashMap::from([("npmrc".to_string(), Secret::new("token-value"))]);
        let mut request = Vec::new();
        proto::put_bytes(&mut request, 1, b"npmrc");
        let mut want = Vec::new();
        proto::put_bytes(&mut want, 1, b"token-value");
        assert_eq!(secret(&request, &secrets), Ok(want));
        let mut other = Vec::new();
        proto::put_bytes(&mut other, 1, b"aws");
        assert_eq!(secret(&other, &secrets).unwrap_err().0, NOT_FOUND);
        assert_eq!(secret(&[0x0a, 0x05], &secrets).unwrap_err().0, INVALID_ARGUMENT);
    }

    #[test]
    fn error_messages_travel_as_header_values() {
        assert_eq!(percent_encoded("secret ä 100%"), "secret %C3%A4 100%25");
        assert!(http::HeaderValue::from_str(&percent_encoded("a\r\nb")).is_ok());
    }
}
