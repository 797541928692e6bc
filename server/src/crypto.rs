//! Sealing per-user secrets (SSH/VNC passwords, Jupyter token) at rest with Berth's key.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

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
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption does not fail for short inputs");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<String, OpenError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| OpenError)?;
        if bytes.len() < 12 + 16 {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), ciphertext).map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }
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
    fn random_passwords() {
        let p = random_password(20);
        assert_eq!(p.len(), 20);
        assert_ne!(p, random_password(20));
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c)));
    }
}
