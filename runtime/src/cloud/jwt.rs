//! The little of JWTs token exchanges need: reading a token's expiry (the
//! token is the service's, kflow does not verify it) and signing an RS256
//! assertion with a service account's key (ring: constant-time RSA).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jiff::Timestamp;

/// The `exp` claim of a JWT, when it has a readable one.
pub fn expiry(token: &str) -> Option<Timestamp> {
    let payload = token.split('.').nth(1)?;
    // Some issuers pad; URL-safe without padding is the standard.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    Timestamp::from_second(exp as i64).ok()
}

/// An RSA private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as
/// Google's service-account key files hold it.
pub struct RsaKey(ring::signature::RsaKeyPair);

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaKey(***)")
    }
}

impl RsaKey {
    pub fn from_pem(pem: &str) -> Result<RsaKey, String> {
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PRIVATE KEY-----")
            .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
            .ok_or("the private key is not a PKCS#8 PEM block (`-----BEGIN PRIVATE KEY-----`)")?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|_| "the private key's PEM block is not base64")?;
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("the private key is not an RSA key ring accepts: {e}"))?;
        Ok(RsaKey(pair))
    }

    /// `header.claims.signature`, RS256.
    pub fn sign(&self, claims: &serde_json::Value, key_id: Option<&str>) -> Result<String, String> {
        let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = key_id {
            header["kid"] = kid.into();
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "RSA signing failed".to_string())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_the_claims() {
        let claims = URL_SAFE_NO_PAD.encode(r#"{"exp":1780000000,"aud":"x"}"#);
        let token = format!("e30.{claims}.sig");
        assert_eq!(expiry(&token), Timestamp::from_second(1_780_000_000).ok());
        assert_eq!(expiry("not-a-jwt"), None);
        let no_exp = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(r#"{"aud":"x"}"#));
        assert_eq!(expiry(&no_exp), None);
    }

    #[test]
    fn keys_that_are_not_pkcs8_rsa_are_refused_plainly() {
        assert!(RsaKey::from_pem("garbage").unwrap_err().contains("PKCS#8"));
        let bad = "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----";
        assert!(RsaKey::from_pem(bad).unwrap_err().contains("base64"));
        let not_rsa = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----";
        assert!(RsaKey::from_pem(not_rsa).unwrap_err().contains("RSA"));
    }
}
