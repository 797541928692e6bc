//! Usernames become container names, DNS labels, Traefik router names and Go-template
//! text, so they are held to `^[a-z][a-z0-9-]{1,30}$` and a list of reserved words.

use std::fmt;

/// Names that would collide with system accounts, infrastructure hosts or Berth's own routes.
const RESERVED: &[&str] = &[
    "root", "admin", "administrator", "traefik", "guacamole", "guacd", "berth", "www", "portal", "api",
    "auth", "login", "logout", "signup", "pending", "dashboard", "static", "pkg", "mail", "smtp", "ftp",
    "ssh", "docker", "daemon", "bin", "sys", "sync", "nobody", "system", "operator", "postgres", "mysql",
    "redis", "jupyter", "tensorboard", "code", "desktop", "novnc", "vnc", "rdp", "xrdp", "ubuntu",
    "debian", "user", "users", "workspace", "workspaces", "localhost", "healthz", "support", "security",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUsername(pub &'static str);

impl fmt::Display for InvalidUsername {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A username that passed [`Username::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Username, InvalidUsername> {
        let bytes = raw.as_bytes();
        if bytes.len() < 2 {
            return Err(InvalidUsername("Usernames have at least 2 characters."));
        }
        if bytes.len() > 31 {
            return Err(InvalidUsername("Usernames have at most 31 characters."));
        }
        if !bytes[0].is_ascii_lowercase() {
            return Err(InvalidUsername("Usernames start with a lowercase letter."));
        }
        if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-') {
            return Err(InvalidUsername("Usernames use only lowercase letters a–z, digits and '-'."));
        }
        if RESERVED.contains(&raw) {
            return Err(InvalidUsername("That username is reserved."));
        }
        Ok(Username(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["alice", "bob-2", "a1", "x-y-z", &format!("a{}", "b".repeat(30))] {
            assert_eq!(Username::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn length_limits_are_2_to_31() {
        assert!(Username::parse("a").is_err());
        assert!(Username::parse("").is_err());
        assert!(Username::parse(&"a".repeat(31)).is_ok());
        assert!(Username::parse(&"a".repeat(32)).is_err());
    }

    #[test]
    fn refuses_hostile_and_odd_names() {
        for name in [
            "Alice",       // uppercase
            "1alice",      // leading digit
            "-alice",      // leading dash
            "al..ice",     // dots
            "..",
            "a{{x}}",      // Go template
            "{{.Env}}",
            "alicé",       // unicode
            "аlice",       // Cyrillic а
            "al ice",
            "al_ice",
            "alice\n",
            "al/ice",
            "al\0ice",
        ] {
            assert!(Username::parse(name).is_err(), "{name:?} should be refused");
        }
    }

    #[test]
    fn refuses_reserved_names() {
        for name in ["root", "admin", "traefik", "guacamole", "berth", "www"] {
            assert_eq!(Username::parse(name), Err(InvalidUsername("That username is reserved.")));
        }
    }
}
