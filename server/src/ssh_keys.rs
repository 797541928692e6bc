//! Users' SSH public keys: checked and fingerprinted with the `ssh-key` crate, stored in the
//! database, and written for the workspace to `<storage_root>/keys/<user>/authorized_keys`,
//! which the workspace mounts read-only (sshd's AuthorizedKeysCommand reads it). The home's
//! own `~/.ssh/authorized_keys` is the user's and is never touched.
//!
//! The same directory holds `ssh-password-off` when the user turned SSH password login off
//! (the workspace's PAM refuses SSH passwords while it exists).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::Row as _;

use crate::db::{now, Db};

/// The smallest RSA key accepted (NIST's floor for keys used past 2030).
pub const MIN_RSA_BITS: u32 = 3072;
pub const AUTHORIZED_KEYS: &str = "authorized_keys";
pub const PASSWORD_OFF: &str = "ssh-password-off";
/// Keys one account may hold: enough for every laptop, small enough to read at each login.
const MAX_KEYS: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("That key is already on your account.")]
    Duplicate,
    #[error("No such key.")]
    NotFound,
    #[error("SSH password login can only be turned off once the account has a key.")]
    NoKeyYet,
    #[error("the workspace's key file at {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A key as its owner sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: i64,
    pub name: String,
    pub algorithm: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A pasted public key, checked: what Berth stores of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub algorithm: String,
    pub fingerprint: String,
    /// The key re-encoded by Berth (type and base64, the user's comment dropped): only what
    /// was parsed reaches the workspace, so no option or second line can ride along.
    pub openssh: String,
    pub comment: String,
}

/// Checks one pasted public key: ed25519, ECDSA, or RSA of at least 3072 bits.
pub fn parse_key(text: &str) -> Result<ParsedKey, KeyError> {
    use ssh_key::public::KeyData;
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyError::Invalid("Paste a public key (the contents of a .pub file).".into()));
    }
    if text.lines().count() > 1 {
        return Err(KeyError::Invalid("Paste one key at a time (one line).".into()));
    }
    if text.contains("PRIVATE KEY") {
        return Err(KeyError::Invalid("That is a private key: never paste it anywhere. Paste the .pub file instead.".into()));
    }
    let key = ssh_key::PublicKey::from_openssh(text)
        .map_err(|_| KeyError::Invalid("That is not an OpenSSH public key (expected e.g. \"ssh-ed25519 AAAA… you@laptop\").".into()))?;
    let algorithm = match key.key_data() {
        KeyData::Ed25519(_) => "ssh-ed25519".to_string(),
        KeyData::Ecdsa(_) => key.algorithm().as_str().to_string(),
        KeyData::Rsa(rsa) => {
            let bits = rsa_bits(rsa.n.as_positive_bytes().unwrap_or_default());
            if bits < MIN_RSA_BITS {
                return Err(KeyError::Invalid(format!("This RSA key has {bits} bits; Berth accepts RSA keys of {MIN_RSA_BITS} bits or more (or use ed25519).")));
            }
            "ssh-rsa".to_string()
        }
        _ => {
            return Err(KeyError::Invalid(format!(
                "{} keys are not accepted; use ed25519, ECDSA or RSA (3072 bits or more).",
                key.algorithm().as_str()
            )))
        }
    };
    let mut bare = key.clone();
    bare.set_comment("");
    let openssh = bare.to_openssh().map_err(|_| KeyError::Invalid("That key cannot be re-encoded.".into()))?;
    Ok(ParsedKey {
        algorithm,
        fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
        openssh: openssh.trim().to_string(),
        comment: crate::sharing::clean_note(key.comment()),
    })
}

/// Bits of a big-endian unsigned integer without leading zero bytes.
fn rsa_bits(bytes: &[u8]) -> u32 {
    match bytes.iter().position(|b| *b != 0) {
        Some(first) => (bytes.len() - first) as u32 * 8 - bytes[first].leading_zeros(),
        None => 0,
    }
}

#[derive(Clone)]
pub struct SshKeys {
    db: Db,
    storage_root: PathBuf,
    /// Held from reading the keys to renaming the file: two changes at once (the portal and the
    /// API) cannot leave an older list on disk after a newer one. Writes are rare; one lock.
    writing: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SshKeys {
    pub fn new(db: Db, storage_root: PathBuf) -> SshKeys {
        SshKeys { db, storage_root, writing: Default::default() }
    }

    /// Writes every account's key file from the database (`serve` does at start): a write
    /// that failed before, or a file changed by hand, is set right.
    pub async fn write_all(&self) -> Result<usize, KeyError> {
        let users: Vec<(i64, String)> = sqlx::query("SELECT id, username FROM users")
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("username")?)))
            .collect::<Result<_, _>>()?;
        for (id, name) in &users {
            self.write(*id, name).await?;
        }
        Ok(users.len())
    }

    pub async fn list(&self, user_id: i64) -> Result<Vec<KeyInfo>, KeyError> {
        let rows = sqlx::query("SELECT id, name, algorithm, fingerprint, created_at, last_used_at FROM ssh_keys WHERE user_id = $1 ORDER BY id")
            .bind(user_id)
            .fetch_all(&self.db.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>(KeyInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    algorithm: r.try_get("algorithm")?,
                    fingerprint: r.try_get("fingerprint")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect::<Result<_, _>>()?)
    }

    /// Adds a key and rewrites the workspace's file. `name` defaults to the key's comment.
    pub async fn add(&self, user: &app::model::CurrentUser, name: &str, text: &str) -> Result<KeyInfo, KeyError> {
        let parsed = parse_key(text)?;
        let name = match crate::sharing::clean_note(name) {
            n if n.is_empty() && parsed.comment.is_empty() => "key".to_string(),
            n if n.is_empty() => parsed.comment.clone(),
            n => n,
        };
        let name: String = name.chars().take(64).collect();
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM ssh_keys WHERE user_id = $1").bind(user.id).fetch_one(&self.db.pool).await?.try_get("n")?;
        if count >= MAX_KEYS {
            return Err(KeyError::Invalid(format!("An account holds at most {MAX_KEYS} keys; delete one first.")));
        }
        let inserted = sqlx::query(
            "INSERT INTO ssh_keys (user_id, name, algorithm, fingerprint, public_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, fingerprint) DO NOTHING RETURNING id",
        )
        .bind(user.id)
        .bind(&name)
        .bind(&parsed.algorithm)
        .bind(&parsed.fingerprint)
        .bind(&parsed.openssh)
        .bind(now())
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = inserted else { return Err(KeyError::Duplicate) };
        let id: i64 = row.try_get("id")?;
        self.write(user.id, &user.username).await?;
        self.list(user.id).await?.into_iter().find(|k| k.id == id).ok_or(KeyError::NotFound)
    }

    /// Deletes one of `user`'s keys (another user's key id is "no such key").
    pub async fn delete(&self, user: &app::model::CurrentUser, id: i64) -> Result<KeyInfo, KeyError> {
        let key = self.list(user.id).await?.into_iter().find(|k| k.id == id).ok_or(KeyError::NotFound)?;
        sqlx::query("DELETE FROM ssh_keys WHERE id = $1 AND user_id = $2").bind(id).bind(user.id).execute(&self.db.pool).await?;
        // The last key gone: passwords work again rather than lock the user out of SSH.
        if self.list(user.id).await?.is_empty() {
            sqlx::query("UPDATE users SET ssh_password_login = 1 WHERE id = $1").bind(user.id).execute(&self.db.pool).await?;
        }
        self.write(user.id, &user.username).await?;
        Ok(key)
    }

    pub async fn password_login(&self, user_id: i64) -> Result<bool, KeyError> {
        let row = sqlx::query("SELECT ssh_password_login FROM users WHERE id = $1").bind(user_id).fetch_optional(&self.db.pool).await?;
        Ok(row.map(|r| r.try_get::<i64, _>("ssh_password_login")).transpose()?.unwrap_or(1) != 0)
    }

    /// Turns SSH password login on or off for `user`'s workspace (off needs a key first).
    pub async fn set_password_login(&self, user: &app::model::CurrentUser, allowed: bool) -> Result<(), KeyError> {
        if !allowed && self.list(user.id).await?.is_empty() {
            return Err(KeyError::NoKeyYet);
        }
        sqlx::query("UPDATE users SET ssh_password_login = $1 WHERE id = $2").bind(allowed as i64).bind(user.id).execute(&self.db.pool).await?;
        self.write(user.id, &user.username).await
    }

    /// Writes `username`'s key file and password flag from the database, atomically.
    pub async fn write(&self, user_id: i64, username: &str) -> Result<(), KeyError> {
        let _one_writer = self.writing.lock().await;
        let keys: Vec<String> = sqlx::query("SELECT public_key FROM ssh_keys WHERE user_id = $1 ORDER BY id")
            .bind(user_id)
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(|r| r.try_get("public_key"))
            .collect::<Result<_, _>>()?;
        let password = self.password_login(user_id).await?;
        let dir = crate::workspace::spec::keys_dir(&self.storage_root, username);
        tokio::task::spawn_blocking(move || write_files(&dir, &keys, password))
            .await
            .map_err(|e| KeyError::File { path: "?".into(), source: std::io::Error::other(e) })?
    }
}

fn write_files(dir: &Path, keys: &[String], password: bool) -> Result<(), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let fail = |path: &Path, source: std::io::Error| KeyError::File { path: path.display().to_string(), source };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| fail(dir, e))?;
    }
    let mut text = String::from("# Managed by Berth: edit your keys on the account page, not here.\n");
    for key in keys {
        text.push_str(key);
        text.push('\n');
    }
    // A fresh file (never following a link someone left there), then renamed over the old one:
    // sshd reads the old list or the new, never half of one.
    let tmp = dir.join(format!(".{AUTHORIZED_KEYS}.{}.new", hex::encode(rand::random::<[u8; 8]>())));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp).map_err(|e| fail(&tmp, e))?;
    // Readable by sshd's key command (it runs as nobody) whatever the process's umask.
    file.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(|e| fail(&tmp, e))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| fail(&tmp, e))?;
    std::fs::rename(&tmp, dir.join(AUTHORIZED_KEYS)).map_err(|e| fail(dir, e))?;
    let flag = dir.join(PASSWORD_OFF);
    if password {
        match std::fs::remove_file(&flag) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(&flag, e)),
            _ => {}
        }
    } else if std::fs::symlink_metadata(&flag).is_err() {
        let made = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&flag).map_err(|e| fail(&flag, e))?;
        made.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(|e| fail(&flag, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with ssh-keygen; each fingerprint is what `ssh-keygen -l` printed for it.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1NptI2F8y2U26QqmlHtNCxiEQufOj5GX5pGFk5xTxU alice@laptop";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPhnZpOyq5vGUn+sZg5Tr9EfT2+L4Jh3ShoGnF7l1LuyY06wOHtjwgQC8583K7SyUrwdRInPWRa+6l2LDDwFcn8= e";
    const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCaqb/zpTuM/sBuzxbIpICMgwAC6z/WdW2O5cS2TZEO/LPaoFqtNGPr2SY6EFzchLgs3fa0MFdejIXf/SMUcihtXfBT/5AmSyDDUF6ElOfFP++LLCPuCAPEViY46IOpYSDlUP4tDlHpV/XiIwmEOhjBjEykRKa72QerbqwXfZ6tINR8RKnEogChRwJkNf/mb5+inGuhxJK/46LXYVt6KyeIAA0ovV+RXJ+y65uYTP92hA3BkBuEC4Bv3QjIa1TFqIho6VnJFlN8DdcamjGehKzGHqWGHPECTANM0aUg8IBmv6G6morQKusbAeSLNj7woc3Cf+JwTPpJrOlCuQ3C6VQ/ small";
    const RSA_3072: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQDFLjmIYPrSKJ78QzXWJg9ebM6nIncD0kJ5JAIOJRaAq8VOxvZ3ooVGZCOGoMzESTeZBlWHd1Qqb+vvaheiRtra5MwuvFhEFI6KgDiDox0gC+o4paD+cSpbpgPmKSKZfrzhZoW0oU7hcCrPU3VbWwiE1je6raDnUtF8VYcnyl2ULHUupO0sWchrpC2zJLFnLXFLx/9sB8NSWXNP7sbjazclUG0NNsaFg4KMl1Si4749T0rclTNpHP3dB+c5crTIHbrCodeMNUk1cGIHn2mQ5qzXLy9CMiX7nRhw/CMwJVc/aSAzXWyhrSnB6/6ZRoe7DM5kUyJwu4EJT4Yl7YU+T1+RQCigmclbvUTaovI+bcSm3mvaFU8EzqPT6HOZ2KL5t95//m8FnXGDXd/E8/KBkAlAMd3T3vK+1rbL1wgrako9fjruzgNsCfNzy//3N0C6iTCR+Iwl2uYISlUE0B94Z3Ci9neG9LJiqElVVRf+kjShyMVjkvUpqtXxlszp/g6tfj8= big";

    #[test]
    fn keys_are_fingerprinted_as_ssh_keygen_does() {
        let key = parse_key(ED25519).unwrap();
        assert_eq!(key.algorithm, "ssh-ed25519");
        assert_eq!(key.comment, "alice@laptop");
        assert_eq!(key.fingerprint, "SHA256:baVALgNCMrD5NAucvzGsxVmS7sHLZazAMDq+wbnOxds");
        assert_eq!(key.openssh, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1NptI2F8y2U26QqmlHtNCxiEQufOj5GX5pGFk5xTxU");
        let key = parse_key(ECDSA).unwrap();
        assert_eq!(key.algorithm, "ecdsa-sha2-nistp256");
        assert_eq!(key.fingerprint, "SHA256:VYwwZdLu5GRI6V/JrSafKJUE5Sa1pyDqOMQbFJUxeTY");
        let key = parse_key(&format!("  {RSA_3072}\n")).unwrap();
        assert_eq!(key.algorithm, "ssh-rsa");
        assert_eq!(key.fingerprint, "SHA256:wLKqH0AJHVYzFN5yHVi8fGPN0dFXRjjQsDjXbwDoOUQ");
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let said = |text: &str| parse_key(text).unwrap_err().to_string();
        assert!(said(RSA_2048).contains("This RSA key has 2048 bits"), "{}", said(RSA_2048));
        assert!(said("").contains("Paste a public key"));
        assert!(said("-----BEGIN OPENSSH PRIVATE KEY-----").contains("private key"));
        assert!(said("ssh-ed25519 not-base64").contains("not an OpenSSH public key"));
        assert!(said(&format!("{ED25519}\n{ECDSA}")).contains("one key at a time"));
        assert!(said(&format!("command=\"rm -rf ~\" {ED25519}")).contains("not an OpenSSH public key"));
    }

    #[test]
    fn rsa_bits_count_from_the_first_set_bit() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(rsa_bits(&[0x01, 0x00]), 9);
        assert_eq!(rsa_bits(&[]), 0);
    }

    #[test]
    fn the_key_file_and_the_password_flag_follow_the_account() {
        let dir = std::env::temp_dir().join(format!("berth-keys-test-{}", std::process::id()));
        write_files(&dir, &["ssh-ed25519 AAAA1".into(), "ssh-ed25519 AAAA2".into()], false).unwrap();
        let text = std::fs::read_to_string(dir.join(AUTHORIZED_KEYS)).unwrap();
        assert_eq!(text, "# Managed by Berth: edit your keys on the account page, not here.\nssh-ed25519 AAAA1\nssh-ed25519 AAAA2\n");
        assert!(dir.join(PASSWORD_OFF).exists());
        // A link left where the file goes is replaced, never followed.
        let elsewhere = dir.with_extension("elsewhere");
        std::fs::write(&elsewhere, "untouched").unwrap();
        std::fs::remove_file(dir.join(AUTHORIZED_KEYS)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join(AUTHORIZED_KEYS)).unwrap();
        write_files(&dir, &[], true).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
        assert!(!std::fs::symlink_metadata(dir.join(AUTHORIZED_KEYS)).unwrap().file_type().is_symlink());
        assert!(!dir.join(PASSWORD_OFF).exists());
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_file(&elsewhere).unwrap();
    }
}
