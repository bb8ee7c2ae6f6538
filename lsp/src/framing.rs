//! The LSP base protocol checked before the server sees it: a malformed
//! message (no `Content-Length`, invalid UTF-8, not JSON, nested too deep,
//! too large) is answered with a JSON-RPC error and dropped, and the server
//! goes on — a client bug or a fuzzer cannot end the session.
//!
//! `tower-lsp-server` stops reading at the first message it cannot decode, so
//! the real stdin is read here and only well-formed frames are written into
//! the pipe the server reads; answers to malformed ones are put between the
//! server's own frames on stdout.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The largest message accepted (a whole document in `didOpen` fits).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// The largest header block.
const MAX_HEADERS: usize = 8 * 1024;
/// JSON nesting accepted (serde_json's own limit is 128).
const MAX_DEPTH: usize = 64;

/// A JSON-RPC error for a message that could not be read (`id` null).
fn error_frame(code: i64, message: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    })
    .to_string();
    frame(body.as_bytes())
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Why a message is refused: a JSON-RPC error code and what to say.
fn check_body(body: &[u8]) -> Result<(), (i64, String)> {
    let text =
        std::str::from_utf8(body).map_err(|e| (-32700, format!("Parse error: the message is not UTF-8 ({e})")))?;
    if depth(text) > MAX_DEPTH {
        return Err((-32700, format!("Parse error: nested deeper than {MAX_DEPTH} levels")));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| (-32700, format!("Parse error: not JSON ({e})")))?;
    if !value.is_object() || value.get("jsonrpc").and_then(|v| v.as_str()) != Some("2.0") {
        return Err((-32600, "Invalid Request: not a JSON-RPC 2.0 object".into()));
    }
    Ok(())
}

/// The deepest bracket nesting outside strings.
fn depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Copies well-formed frames from `input` to `server`; sends an error frame
/// to `errors` for each malformed one. Ends when `input` ends.
pub async fn filter_input(
    input: impl AsyncRead + Unpin,
    mut server: impl AsyncWrite + Unpin,
    errors: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let mut input = BufReader::new(input);
    loop {
        // The header block, up to its blank line.
        let mut length: Option<usize> = None;
        let mut bad_header = false;
        let mut header_bytes = 0;
        let mut saw_any = false;
        loop {
            let mut line = Vec::new();
            let n = (&mut input)
                .take(MAX_HEADERS as u64 + 1)
                .read_until(b'\n', &mut line)
                .await?;
            if n == 0 {
                return server.shutdown().await;
            }
            header_bytes += n;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                if saw_any {
                    break;
                }
                continue; // stray blank lines between messages
            }
            saw_any = true;
            if header_bytes > MAX_HEADERS {
                bad_header = true;
                break;
            }
            if let Some((name, value)) = text.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    match value.trim().parse::<usize>() {
                        Ok(l) => length = Some(l),
                        Err(_) => bad_header = true,
                    }
                }
            }
        }
        let Some(length) = length.filter(|_| !bad_header) else {
            let _ = errors
                .send(error_frame(
                    -32700,
                    "Parse error: a message without a valid Content-Length",
                ))
                .await;
            continue;
        };
        if length > MAX_BODY {
            // Read and drop it, in bounded memory.
            tokio::io::copy(&mut (&mut input).take(length as u64), &mut tokio::io::sink()).await?;
            let _ = errors
                .send(error_frame(
                    -32600,
                    &format!("Invalid Request: larger than {MAX_BODY} bytes"),
                ))
                .await;
            continue;
        }
        let mut body = vec![0u8; length];
        if input.read_exact(&mut body).await.is_err() {
            return server.shutdown().await;
        }
        match check_body(&body) {
            Ok(()) => {
                server.write_all(&frame(&body)).await?;
                server.flush().await?;
            }
            Err((code, message)) => {
                let _ = errors.send(error_frame(code, &message)).await;
            }
        }
    }
}

/// Copies the server's frames from `server` to `output`, putting the error
/// frames from `errors` between them (never inside one).
pub async fn merge_output(
    server: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
    mut errors: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut server = BufReader::new(server);
    loop {
        tokio::select! {
            frame = read_frame(&mut server) => match frame? {
                Some(f) => output.write_all(&f).await?,
                None => return Ok(()),
            },
            Some(e) = errors.recv() => output.write_all(&e).await?,
        }
        output.flush().await?;
    }
}

/// One whole frame (headers and body) of the server's output.
async fn read_frame(r: &mut (impl AsyncBufReadExt + Unpin)) -> std::io::Result<Option<Vec<u8>>> {
    let mut raw = Vec::new();
    let mut length = 0usize;
    loop {
        let start = raw.len();
        if r.read_until(b'\n', &mut raw).await? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&raw[start..]).trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let start = raw.len();
    raw.resize(start + length, 0);
    r.read_exact(&mut raw[start..]).await?;
    Ok(Some(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked() {
        assert!(check_body(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#).is_ok());
        assert_eq!(check_body(b"{not json").unwrap_err().0, -32700);
        assert_eq!(check_body(b"\xff\xfe").unwrap_err().0, -32700);
        assert_eq!(check_body(b"[1]").unwrap_err().0, -32600);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(check_body(deep.as_bytes()).unwrap_err().1.contains("nested deeper"));
        assert_eq!(
            depth(r#"{"a": "[[[[[[", "b": [1]}"#),
            2,
            "brackets in strings do not count"
        );
    }
}
