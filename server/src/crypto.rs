//! Sealing per-user secrets (SSH/VNC passwords, Jupyter token) at rest with Berth's key, and
//! deriving the per-user app secret from it.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a stored secret could not be opened (was the secret key changed?)")]
pub struct OpenError;

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox { cipher: Aes256Gcm::new(key.into()) }
    }

    /// base64(nonce ‖ ciphertext+tag), a fresh random nonce each time.
    pub fn seal(&self, plaintext: &str) -> String {
        STANDARD.encode(self.seal_bytes(plaintext))
    }

    pub fn open(&self, sealed: &str) -> Result<String, OpenError> {
        self.open_bytes(&STANDARD.decode(sealed).map_err(|_| OpenError)?)
    }

    /// Like `seal`, in URL- and cookie-safe base64 (no `+`, `/` or `=`).
    pub fn seal_token(&self, plaintext: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.seal_bytes(plaintext))
    }

    pub fn open_token(&self, token: &str) -> Result<String, OpenError> {
        self.open_bytes(&URL_SAFE_NO_PAD.decode(token).map_err(|_| OpenError)?)
    }

    fn seal_bytes(&self, plaintext: &str) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption does not fail for short inputs");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    fn open_bytes(&self, bytes: &[u8]) -> Result<String, OpenError> {
        if bytes.len() < 12 + 16 {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), ciphertext).map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }
}

/// The label that separates app secrets from anything else ever derived from Berth's key.
const APP_SECRET_CONTEXT: &[u8] = b"berth-app-secret\0";

/// Derives per-user app secrets: HMAC-SHA256(key, "berth-app-secret\0" + username), as hex.
/// Derived rather than stored, so there is nothing to migrate or leak from the database, and
/// Berth and the workspace agree on it for as long as the key stays the same.
#[derive(Clone)]
pub struct AppSecrets {
    mac: Hmac<Sha256>,
}

impl AppSecrets {
    pub fn new(key: &[u8; 32]) -> AppSecrets {
        AppSecrets { mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length") }
    }

    /// The secret the workspace's app gate (code-server, TensorBoard) requires from Traefik.
    pub fn for_user(&self, username: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(APP_SECRET_CONTEXT);
        mac.update(username.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for AppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecrets(<key>)")
    }
}

/// Compares secrets without telling by its timing where they differ (only whether the
/// lengths do).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random password of `len` characters from an alphabet without look-alikes.
pub fn random_password(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_with_fresh_nonces() {
        let b = SecretBox::new(&[7; 32]);
        let a = b.seal("hunter2-password");
        let c = b.seal("hunter2-password");
        assert_ne!(a, c);
        assert!(!a.contains("hunter2"));
        assert_eq!(b.open(&a).unwrap(), "hunter2-password");
        assert_eq!(SecretBox::new(&[8; 32]).open(&a), Err(OpenError), "another key cannot open it");
        let mut tampered = STANDARD.decode(&a).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(b.open(&STANDARD.encode(tampered)), Err(OpenError));
    }

    #[test]
    fn tokens_are_url_and_cookie_safe() {
        let b = SecretBox::new(&[7; 32]);
        for _ in 0..50 {
            let t = b.seal_token("{\"s\":\"session\",\"o\":\"alice\"}");
            assert!(t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{t}");
            assert_eq!(b.open_token(&t).unwrap(), "{\"s\":\"session\",\"o\":\"alice\"}");
        }
        assert_eq!(b.open_token("not-a-token"), Err(OpenError));
        assert_eq!(SecretBox::new(&[8; 32]).open_token(&b.seal_token("x")), Err(OpenError));
    }

    #[test]
    fn app_secret_known_answer() {
        // The expected values come from an independent implementation:
        //   printf 'berth-app-secret\0alice' | openssl dgst -sha256 -mac HMAC -macopt hexkey:000102…1f
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let secrets = AppSecrets::new(&key);
        assert_eq!(secrets.for_user("alice"), "d182779b3dce5f8ff0bbcce5ec24c12d3783d0c850a8fd4d7c8b8db7eaa0c6b6");
        assert_eq!(secrets.for_user("bob"), "d1c97d93104965876a51ec82c1b4489f3c9957886ef4565ce51c33c738cabcc0");
        // The same user under another key gets another secret.
        assert_eq!(
            AppSecrets::new(&[42; 32]).for_user("alice"),
            "12269e3f53b132ac185333abe5cfc397a0590753aa36b49f4ff61aface639e81"
        );
        assert_eq!(secrets.for_user("alice"), secrets.for_user("alice"), "the keyed state is reused, not consumed");
        assert_eq!(format!("{secrets:?}"), "AppSecrets(<key>)", "Debug shows no key material");
    }

    #[test]
    fn random_passwords() {
        let p = random_password(20);
        assert_eq!(p.len(), 20);
        assert_ne!(p, random_password(20));
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c)));
    }
}
