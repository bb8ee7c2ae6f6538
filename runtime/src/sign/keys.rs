//! Cosign-compatible key pairs: the private key is PEM `ENCRYPTED SIGSTORE
//! PRIVATE KEY` (`ENCRYPTED COSIGN PRIVATE KEY` from older cosign), a JSON
//! envelope holding a PKCS#8 ECDSA P-256 key sealed with nacl/secretbox under a
//! key derived by scrypt from the password; the public key is PEM `PUBLIC KEY`
//! (SubjectPublicKeyInfo).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

const PEM_TYPE: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const LEGACY_PEM_TYPE: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// cosign's scrypt parameters: N = 2^16, r = 8, p = 1.
const LOG_N: u8 = 16;
const R: u32 = 8;
const P: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[allow(non_snake_case)]
struct KdfParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Why a key could not be used; never holds the password or key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn key_err<T>(msg: impl Into<String>) -> Result<T, KeyError> {
    Err(KeyError(msg.into()))
}

fn derive(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> Result<[u8; 32], KeyError> {
    let params =
        scrypt::Params::new(log_n, r, p, 32).map_err(|e| KeyError(format!("unusable scrypt parameters: {e}")))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key).map_err(|e| KeyError(format!("scrypt failed: {e}")))?;
    Ok(key)
}

/// A new key pair: (private PEM encrypted with `password`, public PEM).
pub fn generate(password: &Secret) -> Result<(String, String), KeyError> {
    let signing = SigningKey::random(&mut OsRng);
    let der = signing
        .to_pkcs8_der()
        .map_err(|e| KeyError(format!("cannot encode the key: {e}")))?;
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let key = derive(password.expose().as_bytes(), &salt, LOG_N, R, P)?;
    let sealed = XSalsa20Poly1305::new(&key.into())
        .encrypt(&nonce.into(), der.as_bytes())
        .map_err(|_| KeyError("cannot seal the key".into()))?;
    let envelope = Envelope {
        kdf: Kdf {
            name: "scrypt".into(),
            params: KdfParams {
                N: 1 << LOG_N,
                r: R,
                p: P,
            },
            salt: B64.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: B64.encode(nonce),
        },
        ciphertext: B64.encode(sealed),
    };
    let json = serde_json::to_vec(&envelope).map_err(|e| KeyError(e.to_string()))?;
    let private = pem_encode(PEM_TYPE, &json);
    let public = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError(format!("cannot encode the public key: {e}")))?;
    Ok((private, public))
}

fn pem_encode(label: &str, data: &[u8]) -> String {
    let b64 = B64.encode(data);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The label and body of the first PEM block. Messages quote the label
/// only when it looks like one: in a broken file the "label" may be key text.
fn pem_decode(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    let start = text
        .find(BEGIN)
        .ok_or_else(|| KeyError("not a PEM file (no -----BEGIN line)".into()))?;
    let rest = &text[start + BEGIN.len()..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| KeyError("malformed PEM header (no closing -----)".into()))?;
    let label = &rest[..label_end];
    if label.is_empty() || label.len() > 64 || !label.bytes().all(|b| b.is_ascii_uppercase() || b == b' ') {
        return key_err("malformed PEM header (its label is not a PEM label)");
    }
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body
        .find(&end_marker)
        .ok_or_else(|| KeyError(format!("PEM block `{label}` is not terminated")))?;
    let b64: String = body[..body_end].split_whitespace().collect();
    let data = B64
        .decode(b64)
        .map_err(|_| KeyError(format!("PEM block `{label}` is not valid base64")))?;
    Ok((label.to_string(), data))
}

/// Loads an encrypted cosign private key.
pub fn load_private(pem: &str, password: &Secret) -> Result<SigningKey, KeyError> {
    let (label, data) = pem_decode(pem)?;
    if label != PEM_TYPE && label != LEGACY_PEM_TYPE {
        return key_err(format!(
            "this is a `{label}` PEM block, not a cosign private key (`{PEM_TYPE}`)"
        ));
    }
    let env: Envelope = serde_json::from_slice(&data)
        // serde_json quotes offending values: report only where.
        .map_err(|e| {
            KeyError(format!(
                "the encrypted key's envelope is unreadable (not cosign JSON at line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
    if env.kdf.name != "scrypt" {
        return key_err(format!(
            "unsupported key derivation `{}` (cosign uses scrypt)",
            env.kdf.name
        ));
    }
    if env.cipher.name != "nacl/secretbox" {
        return key_err(format!(
            "unsupported cipher `{}` (cosign uses nacl/secretbox)",
            env.cipher.name
        ));
    }
    let n = env.kdf.params.N;
    if !n.is_power_of_two() || !(2..=1 << 22).contains(&n) {
        return key_err(format!("unusable scrypt N = {n}"));
    }
    let salt = B64
        .decode(&env.kdf.salt)
        .map_err(|_| KeyError("the key's salt is not base64".into()))?;
    let nonce = B64
        .decode(&env.cipher.nonce)
        .map_err(|_| KeyError("the key's nonce is not base64".into()))?;
    if nonce.len() != 24 {
        return key_err("the key's nonce is not 24 bytes");
    }
    let sealed = B64
        .decode(&env.ciphertext)
        .map_err(|_| KeyError("the key's ciphertext is not base64".into()))?;
    let key = derive(
        password.expose().as_bytes(),
        &salt,
        n.trailing_zeros() as u8,
        env.kdf.params.r,
        env.kdf.params.p,
    )?;
    let nonce: [u8; 24] = nonce.try_into().expect("checked above");
    let der = XSalsa20Poly1305::new(&key.into())
        .decrypt(&nonce.into(), sealed.as_slice())
        .map_err(|_| KeyError("wrong password for the private key (decryption failed)".into()))?;
    SigningKey::from_pkcs8_der(&der).map_err(|_| KeyError("the decrypted key is not a PKCS#8 ECDSA P-256 key".into()))
}

/// Loads a public key (PEM `PUBLIC KEY`, ECDSA P-256).
pub fn load_public(pem: &str) -> Result<VerifyingKey, KeyError> {
    let (label, _) = pem_decode(pem)?;
    if label != "PUBLIC KEY" {
        return key_err(format!(
            "this is a `{label}` PEM block, not a public key (`PUBLIC KEY`)"
        ));
    }
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|_| KeyError("the public key is not an ECDSA P-256 key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};

    #[test]
    fn generated_keys_round_trip() {
        let pw = Secret::new("correct horse");
        let (private, public) = generate(&pw).unwrap();
        assert!(private.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let key = load_private(&private, &pw).unwrap();
        let pubkey = load_public(&public).unwrap();
        let sig: p256::ecdsa::Signature = key.sign(b"payload");
        pubkey.verify(b"payload", &sig).unwrap();
        let wrong = load_private(&private, &Secret::new("wrong")).unwrap_err();
        assert_eq!(wrong.0, "wrong password for the private key (decryption failed)");
    }

    #[test]
    fn keys_written_by_cosign_load() {
        let private = include_str!("../../tests/fixtures/cosign/cosign-generated-empty-password.key");
        let public = include_str!("../../tests/fixtures/cosign/cosign-generated-empty-password.pub");
        let key = load_private(private, &Secret::new("")).unwrap();
        assert_eq!(key.verifying_key(), &load_public(public).unwrap());
    }

    #[test]
    fn wrong_files_say_what_they_are() {
        let public = include_str!("../../tests/fixtures/cosign/cosign-generated-empty-password.pub");
        let e = load_private(public, &Secret::new("")).unwrap_err();
        assert!(e.0.contains("`PUBLIC KEY` PEM block, not a cosign private key"), "{e}");
        assert!(load_public("hello").unwrap_err().0.contains("not a PEM file"));
    }

    #[test]
    fn malformed_pem_is_an_error_that_quotes_no_key_text() {
        let key_text = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49";
        let cases = [
            "-----BEGIN -----END -----".to_string(),
            "-----BEGIN -----".to_string(),
            "-----BEGIN X-----".to_string(),
            "-----BEGIN X----------END X-----".to_string(),
            format!("-----BEGIN {key_text}\n{key_text}-----END -----"),
            format!("-----BEGIN PUBLIC KEY-----\n{key_text}\n-----END PUBLIC KEY-----"),
            format!("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{key_text}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"),
            format!("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----", B64.encode(format!("{{\"kdf\": \"{key_text}\"}}"))),
            "-----BEGIN é-----".to_string(),
        ];
        for pem in &cases {
            for e in [
                load_public(pem).unwrap_err(),
                load_private(pem, &Secret::new("")).unwrap_err(),
            ] {
                assert!(!e.0.contains(key_text), "{pem:?}: {e}");
            }
        }
        // Every prefix of a real key, too.
        let private = include_str!("../../tests/fixtures/cosign/cosign-generated-empty-password.key");
        for end in 0..private.len() {
            let _ = load_private(&private[..end], &Secret::new(""));
            let _ = load_public(&private[..end]);
        }
    }
}
