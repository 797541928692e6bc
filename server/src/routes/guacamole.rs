//! Guacamole (guacamole-auth-json) tokens for "Desktop in browser": the user's own VNC or RDP
//! connection, short-lived and single-use, exchanged server-side for a Guacamole session.

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

#[derive(Debug, Clone, PartialEq)]
pub struct GuacamoleSettings {
    /// Where Berth reaches Guacamole for the token exchange, e.g. `http://guacamole:8080/guacamole`.
    pub internal_url: Option<String>,
    /// Where browsers open Guacamole, e.g. `https://guac.lab.org/guacamole`.
    pub public_url: String,
    /// guacamole-auth-json's `json-secret-key` (128 bits).
    pub secret: [u8; 16],
    /// `vnc` or `rdp`.
    pub protocol: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GuacamoleError {
    #[error("Guacamole token exchange failed: {0}")]
    Exchange(String),
}

/// `base64(AES-128-CBC(key, iv = 0, HMAC-SHA256(key, json) ‖ json))`, as guacamole-auth-json expects.
pub fn seal(key: &[u8; 16], json: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(json);
    let mut plain = mac.finalize().into_bytes().to_vec();
    plain.extend_from_slice(json);
    let sealed = Aes128CbcEnc::new(key.into(), &[0u8; 16].into()).encrypt_padded_vec_mut::<Pkcs7>(&plain);
    STANDARD.encode(sealed)
}

/// Guacamole's client identifier of a connection in the `json` data source.
pub fn connection_id(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{name}\0c\0json"))
}

/// The JSON for one user's own desktop connection, valid for 60 seconds and once. `host` is
/// where guacd reaches the workspace (the runtime's proxy host); it also names the connection.
pub fn desktop_json(username: &str, host: &str, protocol: &str, password: &str, now_ms: i64) -> (String, Vec<u8>) {
    let connection = host.to_string();
    let port = if protocol == "rdp" { "3389" } else { "5901" };
    let mut parameters = serde_json::json!({ "hostname": connection, "port": port, "password": password });
    if protocol == "rdp" {
        parameters["username"] = serde_json::json!(username);
        parameters["ignore-cert"] = serde_json::json!("true");
    }
    let value = serde_json::json!({
        "username": username,
        "expires": now_ms + 60_000,
        "singleUse": true,
        "connections": { connection.clone(): { "protocol": protocol, "parameters": parameters } },
    });
    (connection, serde_json::to_vec(&value).expect("JSON serializes"))
}

/// Where to send the browser: after a server-side exchange when Guacamole is reachable,
/// otherwise (or when the exchange fails) the `?data=` link form.
pub async fn launch_url(
    settings: &GuacamoleSettings,
    http: &reqwest::Client,
    username: &str,
    host: &str,
    password: &str,
    now_ms: i64,
) -> Result<String, GuacamoleError> {
    let (connection, json) = desktop_json(username, host, &settings.protocol, password, now_ms);
    let token = seal(&settings.secret, &json);
    let client = format!("{}/#/client/{}", settings.public_url.trim_end_matches('/'), connection_id(&connection));
    let Some(internal) = &settings.internal_url else {
        return Ok(format!("{client}?data={}", urlencoding::encode(&token)));
    };
    let response = http
        .post(format!("{}/api/tokens", internal.trim_end_matches('/')))
        .form(&[("data", token.as_str())])
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => {
            let body: serde_json::Value = r.json().await.map_err(|e| GuacamoleError::Exchange(e.to_string()))?;
            let auth = body["authToken"].as_str().ok_or_else(|| GuacamoleError::Exchange("no authToken".into()))?;
            Ok(format!("{client}?token={}", urlencoding::encode(auth)))
        }
        Ok(r) => {
            tracing::warn!(status = %r.status(), "Guacamole refused the token; falling back to the link form");
            Ok(format!("{client}?data={}", urlencoding::encode(&token)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "Guacamole not reachable for the exchange; falling back to the link form");
            Ok(format!("{client}?data={}", urlencoding::encode(&token)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> std::path::PathBuf {
        std::env::var("BERTH_SHARED_DIR")
            .map(Into::into)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
    }

    const KEY_HEX: &str = "4C0B569E4C96DF157EEE1B65DD0E4D41";

    #[test]
    fn reproduces_the_known_answer_vector_byte_for_byte() {
        let dir = shared().join("testdata/guacamole-auth-json");
        let json = std::fs::read(dir.join("auth.json")).expect("shared/testdata present");
        let expected = std::fs::read_to_string(dir.join("expected.b64")).unwrap();
        let key: [u8; 16] = hex::decode(KEY_HEX).unwrap().try_into().unwrap();
        assert_eq!(seal(&key, &json), expected.trim());
    }

    #[test]
    fn berth_tokens_decrypt_and_verify_with_openssl() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let key: [u8; 16] = rand::random();
        let key_hex = hex::encode(key);
        let (_, json) = desktop_json("alice", "workspace-alice", "vnc", "vnc-pw", 1_700_000_000_000);
        let token = seal(&key, &json);
        let mut dec = Command::new("openssl")
            .args(["enc", "-d", "-aes-128-cbc", "-K", &key_hex, "-iv", &"0".repeat(32), "-nosalt", "-a", "-A"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl");
        dec.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        let plain = dec.wait_with_output().unwrap();
        assert!(plain.status.success());
        let (sig, body) = plain.stdout.split_at(32);
        assert_eq!(body, json.as_slice());
        let mut mac = Command::new("openssl")
            .args(["dgst", "-sha256", "-mac", "HMAC", "-macopt", &format!("hexkey:{key_hex}"), "-binary"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        mac.stdin.take().unwrap().write_all(body).unwrap();
        assert_eq!(mac.wait_with_output().unwrap().stdout, sig);
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(value["singleUse"], true);
        assert_eq!(value["expires"], 1_700_000_060_000i64);
        assert_eq!(value["connections"]["workspace-alice"]["parameters"]["port"], "5901");
    }

    #[test]
    fn connection_identifier_format() {
        // base64url of "workspace-alice\0c\0json", without the "==" padding.
        assert_eq!(connection_id("workspace-alice"), "d29ya3NwYWNlLWFsaWNlAGMAanNvbg");
        assert_eq!(connection_id("workspace-bob"), "d29ya3NwYWNlLWJvYgBjAGpzb24");
    }
}
