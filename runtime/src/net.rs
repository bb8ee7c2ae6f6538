//! What HTTP clients share.

use std::time::Duration;

/// How long a connection may stay silent (no byte read) before the request
/// fails: a registry or server that stalls must not hang a task forever.
/// `KFLOW_IDLE_TIMEOUT` (`90`, `90s`, `5m`) overrides the default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn idle_timeout() -> Duration {
    std::env::var("KFLOW_IDLE_TIMEOUT")
        .ok()
        .and_then(|v| parse_seconds(&v))
        .unwrap_or(DEFAULT_IDLE_TIMEOUT)
}

fn parse_seconds(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (n, unit) = match v.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (v.strip_suffix('s').unwrap_or(v), 1),
    };
    let n: u64 = n.parse().ok().filter(|&n| n > 0)?;
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn idle_timeouts_parse() {
        use std::time::Duration;
        assert_eq!(super::parse_seconds("90"), Some(Duration::from_secs(90)));
        assert_eq!(super::parse_seconds("5s"), Some(Duration::from_secs(5)));
        assert_eq!(super::parse_seconds("2m"), Some(Duration::from_secs(120)));
        assert_eq!(super::parse_seconds("0"), None);
        assert_eq!(super::parse_seconds("soon"), None);
    }
}
