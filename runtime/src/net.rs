//! What HTTP clients share.

/// A reqwest error with its chain of causes, which alone says only "error
/// sending request" (`…: tcp connect error: Connection refused`).
pub fn explain(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        source = s.source();
    }
    msg
}
