//! The app hosts of each workspace, from configurable templates, and the reverse question
//! "which owner and app does this host belong to?" (for forwardAuth and safe redirects).

use serde::{Deserialize, Serialize};

/// Host templates; `{user}` and `{domain}` are replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostTemplates {
    pub code: String,
    pub jupyter: String,
    pub tensorboard: String,
    pub desktop: String,
}

impl Default for HostTemplates {
    fn default() -> Self {
        HostTemplates {
            code: "{user}-code.{domain}".into(),
            jupyter: "jupyter-{user}.{domain}".into(),
            tensorboard: "tensorboard-{user}.{domain}".into(),
            desktop: "desktop-{user}.{domain}".into(),
        }
    }
}

/// The web apps a workspace serves through Traefik.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum App {
    Code,
    Jupyter,
    TensorBoard,
    Desktop,
}

impl App {
    pub const ALL: [App; 4] = [App::Code, App::Jupyter, App::TensorBoard, App::Desktop];

    pub fn key(self) -> &'static str {
        match self {
            App::Code => "code",
            App::Jupyter => "jupyter",
            App::TensorBoard => "tensorboard",
            App::Desktop => "desktop",
        }
    }

    /// Whether the image's app gate fronts this app: code-server and TensorBoard have no auth of
    /// their own, so the gate lets through only requests carrying the user's app secret.
    pub fn gated(self) -> bool {
        matches!(self, App::Code | App::TensorBoard)
    }

    /// The port inside the workspace container.
    pub fn port(self) -> u16 {
        use crate::workspace::names::container_port;
        match self {
            App::Code => container_port::CODE,
            App::Jupyter => container_port::JUPYTER,
            App::TensorBoard => container_port::TENSORBOARD,
            App::Desktop => container_port::NOVNC,
        }
    }
}

impl HostTemplates {
    fn template(&self, app: App) -> &str {
        match app {
            App::Code => &self.code,
            App::Jupyter => &self.jupyter,
            App::TensorBoard => &self.tensorboard,
            App::Desktop => &self.desktop,
        }
    }

    /// Every template must name the user and end in the domain, or hosts could collide.
    pub fn validate(&self) -> Result<(), String> {
        for app in App::ALL {
            let t = self.template(app);
            if t.matches("{user}").count() != 1 || !t.ends_with(".{domain}") {
                return Err(format!("{} template {t:?} must contain {{user}} once and end with .{{domain}}", app.key()));
            }
            let probe = t.replace("{user}", "a").replace("{domain}", "b");
            if !probe.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
                return Err(format!("{} template {t:?} makes hosts with characters DNS does not allow", app.key()));
            }
        }
        Ok(())
    }

    pub fn host(&self, app: App, user: &str, domain: &str) -> String {
        self.template(app).replace("{user}", user).replace("{domain}", domain)
    }

    pub fn hosts(&self, user: &str, domain: &str) -> Vec<(App, String)> {
        App::ALL.iter().map(|app| (*app, self.host(*app, user, domain))).collect()
    }

    /// The (owner, app) a host was generated for, if any. Matching is exact: a host only
    /// counts when rendering the template for the extracted user gives it back.
    pub fn owner_of(&self, host: &str, domain: &str) -> Option<(String, App)> {
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        for app in App::ALL {
            let t = self.template(app).replace("{domain}", domain);
            let (prefix, suffix) = t.split_once("{user}")?;
            if let Some(user) = host.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(suffix)) {
                if crate::username::Username::parse(user).is_ok() && self.host(app, user, domain) == host {
                    return Some((user.to_string(), app));
                }
            }
        }
        None
    }
}

/// Which hosts a username would own, and the hosts no user may own (the portal's, Guacamole's).
/// Two users must never share a host: forwardAuth would let either of them into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRules {
    pub templates: HostTemplates,
    pub domain: String,
    pub reserved: Vec<String>,
}

impl HostRules {
    pub fn from_config(config: &crate::config::Config) -> HostRules {
        let guacamole = config.guacamole.public_url.as_deref().and_then(|u| url::Url::parse(u).ok());
        let reserved = [Some(config.public_url()), guacamole]
            .into_iter()
            .flatten()
            .filter_map(|u| u.host_str().map(str::to_ascii_lowercase))
            .collect();
        HostRules { templates: config.hosts.clone(), domain: config.domain.clone(), reserved }
    }

    /// A host `candidate` would own that is reserved or owned by one of `existing`, if any.
    pub fn clash<'a>(&self, candidate: &str, existing: impl IntoIterator<Item = &'a str>) -> Option<String> {
        let wanted: Vec<String> = self.templates.hosts(candidate, &self.domain).into_iter().map(|(_, h)| h).collect();
        if let Some(host) = wanted.iter().find(|h| self.reserved.contains(h)) {
            return Some(host.clone());
        }
        existing.into_iter().filter(|other| *other != candidate).find_map(|other| {
            let theirs = self.templates.hosts(other, &self.domain);
            theirs.into_iter().map(|(_, h)| h).find(|h| wanted.contains(h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> HostRules {
        HostRules {
            templates: HostTemplates::default(),
            domain: "lab.org".into(),
            reserved: vec!["berth.lab.org".into(), "guacamole.lab.org".into()],
        }
    }

    #[test]
    fn names_whose_hosts_collide_clash() {
        let r = rules();
        assert_eq!(r.clash("ml-code", ["jupyter-ml"]), Some("jupyter-ml-code.lab.org".into()));
        assert_eq!(r.clash("jupyter-ml", ["ml-code"]), Some("jupyter-ml-code.lab.org".into()));
        assert_eq!(r.clash("desktop-x", ["x-code"]), Some("desktop-x-code.lab.org".into()));
        assert_eq!(r.clash("alice", ["bob", "alice-code", "jupyter-alice"]), None, "no shared host");
        assert_eq!(r.clash("alice", ["alice"]), None, "the same name is the database's to refuse");
        assert_eq!(r.clash("ml-code", []), None);
    }

    #[test]
    fn reserved_hosts_are_nobodys() {
        let mut r = rules();
        r.templates.code = "{user}.{domain}".into();
        assert_eq!(r.clash("berth", []), Some("berth.lab.org".into()));
        assert_eq!(r.clash("guacamole", []), Some("guacamole.lab.org".into()));
        assert_eq!(r.clash("alice", []), None);
    }

    #[test]
    fn reserved_hosts_come_from_the_public_urls() {
        let config = crate::config::Config {
            public_url: Some("https://Berth.lab.org:8443/portal".parse().unwrap()),
            domain: "lab.org".into(),
            guacamole: crate::config::GuacamoleConfig {
                public_url: Some("https://guac.lab.org/guacamole".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(HostRules::from_config(&config).reserved, ["berth.lab.org", "guac.lab.org"]);
    }

    #[test]
    fn default_hosts_follow_the_design() {
        let t = HostTemplates::default();
        assert_eq!(t.host(App::Code, "alice", "lab.org"), "alice-code.lab.org");
        assert_eq!(t.host(App::Jupyter, "alice", "lab.org"), "jupyter-alice.lab.org");
        assert_eq!(t.host(App::TensorBoard, "alice", "lab.org"), "tensorboard-alice.lab.org");
        assert_eq!(t.host(App::Desktop, "alice", "lab.org"), "desktop-alice.lab.org");
        assert!(t.validate().is_ok());
    }

    #[test]
    fn owner_of_inverts_exactly() {
        let t = HostTemplates::default();
        assert_eq!(t.owner_of("alice-code.lab.org", "lab.org"), Some(("alice".into(), App::Code)));
        assert_eq!(t.owner_of("JUPYTER-bob.lab.org:443", "lab.org"), Some(("bob".into(), App::Jupyter)));
        assert_eq!(t.owner_of("alice-code.evil.org", "lab.org"), None);
        assert_eq!(t.owner_of("alice-code.lab.org.evil.org", "lab.org"), None);
        assert_eq!(t.owner_of("x.alice-code.lab.org", "lab.org"), None, "no nested subdomains");
        assert_eq!(t.owner_of("jupyter-.lab.org", "lab.org"), None);
        assert_eq!(t.owner_of("jupyter-Root.lab.org", "lab.org"), None, "reserved names are never owners");
        // A user named "bob-code" owns bob-code-code, not bob-code.
        assert_eq!(t.owner_of("bob-code-code.lab.org", "lab.org"), Some(("bob-code".into(), App::Code)));
    }

    #[test]
    fn bad_templates_are_refused() {
        let mut t = HostTemplates::default();
        t.code = "code.{domain}".into();
        assert!(t.validate().is_err());
        t.code = "{user}-code.example.org".into();
        assert!(t.validate().is_err());
        t.code = "{user}_code.{domain}".into();
        assert!(t.validate().is_err());
    }
}
