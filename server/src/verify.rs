//! Verifying a webhook delivery on its raw body, before anything reads it,
//! as each provider documents it. Comparisons of secrets and signatures
//! take the same time whatever they hold (HMAC's `verify_slice`,
//! `subtle`), so timing tells an attacker nothing.
//!
//! The reason a delivery was refused is for the deliveries log and the
//! server's log, never for the sender (who gets the same 404 as for an
//! unknown webhook).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use kflow_runtime::webhook::Headers;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far a Standard Webhooks timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Checks a delivery of `provider` against `secret`; `Err` says why not.
pub fn verify(provider: &str, secret: &str, headers: &Headers, body: &[u8], now: i64) -> Result<(), String> {
    match provider {
        "github" => github(secret, headers, body),
        "gitlab" => equal_token(headers.get("x-gitlab-token"), secret, "X-Gitlab-Token"),
        "standard" => standard(secret, headers, body, now),
        "token" => {
            let given = headers
                .get("authorization")
                .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")));
            equal_token(
                given.map(str::trim).map(str::to_string).as_ref(),
                secret,
                "Authorization: Bearer",
            )
        }
        other => Err(format!("unknown provider `{other}`")),
    }
}

/// GitHub: `X-Hub-Signature-256: sha256=HEX`, the HMAC-SHA256 of the body.
fn github(secret: &str, headers: &Headers, body: &[u8]) -> Result<(), String> {
    let header = headers
        .get("x-hub-signature-256")
        .ok_or("no X-Hub-Signature-256 header")?;
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or("X-Hub-Signature-256 does not start with `sha256=`")?;
    let sig = hex::decode(hex_sig.trim()).map_err(|_| "X-Hub-Signature-256 is not hexadecimal")?;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| "the key is unusable")?;
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| "X-Hub-Signature-256 does not match the body".to_string())
}

fn equal_token(given: Option<&String>, secret: &str, what: &str) -> Result<(), String> {
    let given = given.ok_or_else(|| format!("no {what}"))?;
    if bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(format!("{what} does not match"))
    }
}

/// Standard Webhooks: `webhook-id`, `webhook-timestamp` (Unix seconds,
/// within [`TOLERANCE_SECONDS`]), `webhook-signature` (`v1,BASE64` entries,
/// space-separated), each the HMAC-SHA256 of `ID.TIMESTAMP.BODY` with the
/// key the secret encodes (`whsec_BASE64`; other secrets are used as they
/// are).
fn standard(secret: &str, headers: &Headers, body: &[u8], now: i64) -> Result<(), String> {
    let id = headers.get("webhook-id").ok_or("no webhook-id header")?;
    let ts = headers.get("webhook-timestamp").ok_or("no webhook-timestamp header")?;
    let sigs = headers.get("webhook-signature").ok_or("no webhook-signature header")?;
    let at: i64 = ts.trim().parse().map_err(|_| "webhook-timestamp is not a number")?;
    if (now - at).abs() > TOLERANCE_SECONDS {
        return Err(format!(
            "webhook-timestamp is {}s from now (at most {TOLERANCE_SECONDS}s allowed): a stale or replayed delivery",
            (now - at).abs()
        ));
    }
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => STANDARD
            .decode(b64)
            .map_err(|_| "the secret's whsec_ part is not base64")?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = HmacSha256::new_from_slice(&key).map_err(|_| "the key is unusable")?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matched = sigs
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|sig| bool::from(sig.as_slice().ct_eq(expected.as_slice())));
    if matched {
        Ok(())
    } else {
        Err("no webhook-signature matches the body".into())
    }
}

/// The `X-Hub-Signature-256` value GitHub would send (for tests and docs).
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflow_runtime::webhook::headers;

    /// GitHub's documented test vector ("Validating webhook deliveries").
    #[test]
    fn githubs_test_vector() {
        let secret = "It's a Secret to Everybody";
        let body = b"Hello, World!";
        let want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(github_signature(secret, body), want);
        let h = headers([("X-Hub-Signature-256", want)]);
        assert_eq!(verify("github", secret, &h, body, 0), Ok(()));
        assert!(verify("github", secret, &h, b"Hello, World?", 0).is_err());
        assert!(verify("github", "another secret", &h, body, 0).is_err());
        let bad = headers([("X-Hub-Signature-256", "sha256=zz")]);
        assert!(verify("github", secret, &bad, body, 0)
            .unwrap_err()
            .contains("hexadecimal"));
        assert!(verify("github", secret, &headers([]), body, 0)
            .unwrap_err()
            .contains("no X-Hub"));
    }

    #[test]
    fn standard_webhooks_sign_id_time_and_body() {
        // The key of `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, as the spec's examples write it.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let (id, ts) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330);
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut mac = HmacSha256::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        let sig = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        // The signature the Standard Webhooks specification gives for this message.
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let h = headers([
            ("webhook-id", id),
            ("webhook-timestamp", &ts.to_string()),
            ("webhook-signature", &format!("v1,bm90IGl0 {sig}")),
        ]);
        assert_eq!(verify("standard", secret, &h, body, ts + 10), Ok(()));
        let stale = verify("standard", secret, &h, body, ts + TOLERANCE_SECONDS + 1).unwrap_err();
        assert!(stale.contains("stale"), "{stale}");
        assert!(verify("standard", secret, &h, b"{}", ts).is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        let h = headers([("X-Gitlab-Token", "s3cret")]);
        assert_eq!(verify("gitlab", "s3cret", &h, b"", 0), Ok(()));
        assert!(verify("gitlab", "s3cre", &h, b"", 0).is_err());
        assert!(verify("gitlab", "s3crets", &h, b"", 0).is_err());
        let h = headers([("Authorization", "Bearer s3cret")]);
        assert_eq!(verify("token", "s3cret", &h, b"", 0), Ok(()));
        assert!(verify("token", "other", &h, b"", 0).is_err());
        assert!(verify("token", "s3cret", &headers([]), b"", 0).is_err());
    }
}
