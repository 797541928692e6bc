//! Password policy and hashing: argon2id at (at least) OWASP's parameters.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Refused before hashing so nobody can make the server hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// OWASP: m=19 MiB, t=2, p=1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("Passwords have at least {MIN_PASSWORD_CHARS} characters.")]
    TooShort,
    #[error("Passwords have at most {MAX_PASSWORD_BYTES} bytes.")]
    TooLong,
    #[error("password hashing failed")]
    Hashing,
    /// Every hashing slot is taken; the caller should come back in [`BUSY_RETRY_SECONDS`].
    #[error("The server is busy checking other passwords; try again in a moment.")]
    Busy,
}

/// What a caller turned away by a full [`HashingGate`] is told to wait.
pub const BUSY_RETRY_SECONDS: u64 = 1;

/// Bounds how many argon2 computations run at once. Each one holds 19 MiB and a core for tens of
/// milliseconds; a burst beyond the cores would only queue (and hold memory for) work that
/// finishes no sooner, so a caller who finds every slot taken is refused at once instead.
#[derive(Debug, Clone)]
pub struct HashingGate {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl HashingGate {
    pub fn new(concurrency: usize) -> HashingGate {
        HashingGate { permits: std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))) }
    }

    /// [`hash`] on a blocking thread, if a slot is free.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        check_policy(password)?;
        let password = password.to_string();
        self.run(move || hash(&password)).await?
    }

    /// [`verify`] on a blocking thread, if a slot is free.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, PasswordError> {
        let (password, phc) = (password.to_string(), phc.to_string());
        self.run(move || verify(&password, &phc)).await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| PasswordError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _held_while_hashing = permit;
            work()
        })
        .await
        .map_err(|_| PasswordError::Hashing)
    }
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

/// Hashes a password that passed [`check_policy`] into a PHC string.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_policy(password)?;
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// True when `password` matches `phc`. Over-long input is refused without hashing.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    // Verify with the parameters stored in the hash, so raising them later keeps old hashes valid.
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterx", &phc));
        assert_ne!(phc, hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn policy_limits() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(check_policy("ééééééééééé"), Err(PasswordError::TooShort), "11 chars, 22 bytes");
        assert!(check_policy("éééééééééééé").is_ok());
        assert_eq!(check_policy(&"a".repeat(1025)), Err(PasswordError::TooLong));
        assert!(check_policy(&"a".repeat(1024)).is_ok());
        assert!(!verify(&"a".repeat(5000), "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"));
    }

    #[tokio::test]
    async fn a_full_gate_refuses_instead_of_queueing() {
        let gate = HashingGate::new(1);
        let phc = hash("correct horse battery").unwrap();
        let (a, b) = tokio::join!(gate.verify("correct horse battery", &phc), gate.verify("correct horse battery", &phc));
        let mut outcomes = [a, b];
        outcomes.sort_by_key(|o| o.is_ok());
        assert_eq!(outcomes, [Err(PasswordError::Busy), Ok(true)]);
        assert_eq!(gate.verify("correct horse battery", &phc).await, Ok(true), "the slot is free again");
    }

    #[test]
    fn garbage_hash_never_verifies() {
        assert!(!verify("whatever-password", "not a phc string"));
        assert!(!verify("whatever-password", ""));
    }
}
