//! The command line against a remote Berth: `berth --url https://berth.lab.example
//! --token-file F workspace start`. The same commands, through `/api/v1` with a personal API
//! token (so a user scripts their own workspace from a laptop, with the token's scopes).

use std::path::Path;

use crate::api::{ErrorBody, Workspace, WorkspaceSummary};

/// Long enough for a first start that creates the workspace.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

struct Remote {
    http: reqwest::Client,
    base: url::Url,
    token: String,
}

impl Remote {
    fn new(base: &url::Url, token_file: Option<&Path>) -> anyhow::Result<Remote> {
        let Some(token_file) = token_file else {
            anyhow::bail!("--url needs --token-file (a file holding an API token from your account page)");
        };
        let token = std::fs::read_to_string(token_file).map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", token_file.display()))?;
        let token = token.trim().to_string();
        anyhow::ensure!(!token.is_empty(), "the token file {} is empty", token_file.display());
        if base.scheme() == "http" && !base.host_str().is_some_and(is_loopback) {
            eprintln!("warning: {base} is plain http: the token crosses the network readable by anyone on the way");
        }
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).redirect(reqwest::redirect::Policy::none()).build()?;
        // Berth under a path (https://host/berth) stays under it when `api/v1/…` is joined on.
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Remote { http, base, token })
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, method: reqwest::Method, path: &str) -> anyhow::Result<T> {
        let url = self.base.join(&format!("api/v1/{}", path.trim_start_matches('/')))?;
        let response = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.json().await.map_err(|e| anyhow::anyhow!("{url}: unexpected answer: {e}"))?);
        }
        match response.json::<ErrorBody>().await {
            Ok(error) => anyhow::bail!("{} ({}, {})", error.message, error.code, status.as_u16()),
            Err(_) => anyhow::bail!("{url} answered {status}: is this a Berth?"),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn print(view: &Workspace, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(view)?);
        return Ok(());
    }
    println!("{}: {}", view.username, view.state);
    if let Some(ssh) = &view.ssh_command {
        println!("  {ssh}");
    }
    for app in &view.apps {
        println!("  {}: {}", app.label, app.url);
    }
    if let Some(error) = &view.error {
        println!("  last error: {error}");
    }
    Ok(())
}

/// The workspace commands a remote Berth answers.
pub enum RemoteCommand {
    /// Your own workspace, or (administrators) USER's.
    Start(Option<String>),
    Stop(Option<String>),
    Restart,
    Status { json: bool },
    List { json: bool },
}

pub async fn workspace_command(base: &url::Url, token_file: Option<&Path>, command: RemoteCommand) -> anyhow::Result<()> {
    let remote = Remote::new(base, token_file)?;
    let post = reqwest::Method::POST;
    let (view, json): (Workspace, bool) = match command {
        RemoteCommand::Start(None) => (remote.call(post, "workspace/start").await?, false),
        RemoteCommand::Stop(None) => (remote.call(post, "workspace/stop").await?, false),
        RemoteCommand::Restart => (remote.call(post, "workspace/restart").await?, false),
        RemoteCommand::Status { json } => (remote.call(reqwest::Method::GET, "workspace").await?, json),
        RemoteCommand::Start(Some(u)) => (remote.call(post, &format!("workspaces/{}/start", urlencoding::encode(&u))).await?, false),
        RemoteCommand::Stop(Some(u)) => (remote.call(post, &format!("workspaces/{}/stop", urlencoding::encode(&u))).await?, false),
        RemoteCommand::List { json } => {
            let rows: Vec<WorkspaceSummary> = remote.call(reqwest::Method::GET, "workspaces").await?;
            for row in rows {
                if json {
                    println!("{}", serde_json::to_string(&row)?);
                } else {
                    println!("{:<32} {:<9} ssh:{}", row.username, row.state, row.ssh_port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()));
                }
            }
            return Ok(());
        }
    };
    print(&view, json)
}
