//! The `berth` command line: serve, migrate, config, user administration.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use app::model::{AccountStatus, AdminAction};
use clap::{Parser, Subcommand};

use crate::accounts::NewUser;
use crate::config::Config;
use crate::db::Db;
use crate::backend::Backend;
use crate::workspace::{Actor, Owner};

#[derive(Parser)]
#[command(name = "berth", version, about = "Berth: one VM-like workspace per user on a shared GPU server")]
struct Cli {
    /// Configuration file (TOML); `BERTH_*` environment variables override it.
    #[arg(long, env = "BERTH_CONFIG", default_value = "berth.toml", global = true)]
    config: PathBuf,
    /// A remote Berth to talk to through its API (`workspace` commands), e.g.
    /// `https://berth.lab.example`; needs `--token-file`.
    #[arg(long, env = "BERTH_URL", global = true)]
    url: Option<url::Url>,
    /// A file holding a personal API token (made on the account page).
    #[arg(long, env = "BERTH_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the portal (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage workspaces (the same service the portal uses).
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// The machines of a cluster runtime (`runtime = "swarm"`).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Share the GPUs: claims, leases and the queue.
    #[command(subcommand)]
    Gpu(GpuCommand),
    /// Idle workspaces: what keeps each alive, and when it stops.
    #[command(subcommand)]
    Idle(IdleCommand),
    /// The audit log: who did what, newest first.
    Audit {
        /// Entries from this long ago (`7d`, `12h`) or this day (`2026-12-01`) on.
        #[arg(long)]
        since: Option<String>,
        /// Entries by or about this user.
        #[arg(long)]
        user: Option<String>,
        /// An action or family of them (`login`, `workspace`).
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Print the REST API's OpenAPI document.
    Openapi,
}

#[derive(clap::Args)]
struct GpuAsk {
    user: String,
    /// A particular GPU (its index); otherwise any `--count` free ones.
    #[arg(long)]
    gpu: Option<u32>,
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// How long, e.g. `4h`, `30m`.
    #[arg(long = "for", default_value = "4h", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    #[arg(long, default_value = "")]
    note: String,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum GpuCommand {
    /// Every GPU: who holds it, until when, whose processes are on it.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Claim GPUs for USER (`gpu.mode = open`: shown to everyone, not enforced).
    Claim(GpuAsk),
    /// Lease GPUs for USER (`gpu.mode = leased`): granted now or queued; a running workspace
    /// restarts to attach them.
    Lease(GpuAsk),
    /// Give a holding back: by its id, or every one of `--user`.
    Release {
        id: Option<i64>,
        #[arg(long)]
        user: Option<String>,
    },
    /// The requests waiting, in the order they are served.
    Queue {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Every node: its state, size, GPUs, and the homes it holds.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum IdleCommand {
    /// Each workspace: the signal that last kept it alive, and when it is stopped.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Every workspace: owner, state, SSH port, drift.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create (if needed) and start USER's workspace (remotely: your own without USER).
    Start { user: Option<String> },
    /// Stop USER's workspace (graceful, then killed after the stop timeout).
    Stop { user: Option<String> },
    /// Stop and start again, applying a changed spec.
    Restart { user: Option<String> },
    /// Remove and recreate the container; the home directory is kept.
    Reset { user: String },
    /// Run USER's stopped workspace on NODE from its next start (a cluster runtime; the
    /// storage not shared). Copies nothing: prints what to copy from where.
    Move { user: String, node: String },
    /// State and published ports of USER's workspace.
    Status {
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Adopt, report and repair: what `serve` does at start-up.
    Reconcile,
    /// Per-user resources (admins); unset flags return to the defaults. Applied at the next start.
    Limits {
        user: String,
        #[arg(long)]
        memory_gib: Option<u64>,
        #[arg(long)]
        memory_reservation_gib: Option<u64>,
        #[arg(long)]
        swap_gib: Option<u64>,
        #[arg(long)]
        shm_gib: Option<u64>,
        #[arg(long)]
        cpus: Option<f64>,
        /// `all`, `none` or a list like `0,1`.
        #[arg(long)]
        gpus: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an approved account (the first admin comes from here).
    Add {
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of standard input; otherwise one is generated and printed.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Approve a pending (or rejected) account.
    Approve { name: String },
    /// Disable an account and end its sessions.
    Disable { name: String },
    /// Re-enable a disabled account.
    Enable { name: String },
    /// List accounts.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (from standard input, or generated and printed); ends their sessions.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make a user an administrator.
    Promote { name: String },
    /// Take administrator rights away (never from the last administrator).
    Demote { name: String },
    /// Delete an account and its workspace; its files stay unless `--purge`.
    Delete {
        name: String,
        #[arg(long)]
        purge: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log_format);
    for deprecation in &config.deprecations {
        tracing::warn!("{deprecation}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let command = cli.command.unwrap_or(Command::Serve);
    let done = match (&cli.url, command) {
        (Some(url), Command::Workspace(command)) => match remote_command(command) {
            Some(command) => runtime.block_on(crate::remote::workspace_command(url, cli.token_file.as_deref(), command)),
            None => Err(anyhow::anyhow!("with --url: workspace start|stop|restart|status for your own workspace; start|stop USER and list for administrators")),
        },
        (Some(_), _) => Err(anyhow::anyhow!("--url works with the workspace commands only")),
        (None, command) => runtime.block_on(run(command, config)),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The workspace commands a remote Berth's API offers, from the local ones.
fn remote_command(command: WorkspaceCommand) -> Option<crate::remote::RemoteCommand> {
    use crate::remote::RemoteCommand;
    Some(match command {
        WorkspaceCommand::Start { user } => RemoteCommand::Start(user),
        WorkspaceCommand::Stop { user } => RemoteCommand::Stop(user),
        WorkspaceCommand::Restart { user: None } => RemoteCommand::Restart,
        WorkspaceCommand::Status { user: None, json } => RemoteCommand::Status { json },
        WorkspaceCommand::List { json } => RemoteCommand::List { json },
        _ => return None,
    })
}

/// The error and each cause it does not already spell out (many of Berth's errors name their
/// cause in their own message; `{:#}` would say it twice).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Closes the pool, waiting a little for connections still in use (a background task's query);
/// exiting must not hang on one that never comes back.
async fn close(db: Db) {
    if tokio::time::timeout(std::time::Duration::from_secs(5), db.pool.close()).await.is_err() {
        tracing::warn!("database connections still busy at exit; closing anyway");
    }
}

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url.0).await?;
    db.migrate().await?;
    Ok(db)
}

/// The services a command works with (`close` its database when done).
async fn open_backend(config: &Config) -> anyhow::Result<Backend> {
    let key = config.load_or_create_secret_key()?;
    let db = open_db(config).await?;
    Ok(Backend::new(config, db, &key))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Config => {
            print!("{}", config.redacted_toml());
            Ok(())
        }
        Command::Migrate => {
            close(open_db(&config).await?).await;
            println!("migrations applied");
            Ok(())
        }
        // Each command closes the pool before the process ends, so SQLite's connections end
        // cleanly (the last one checkpoints the log) rather than being dropped mid-exit.
        Command::Serve => {
            let key = config.load_or_create_secret_key()?;
            let db = open_db(&config).await?;
            let backend = Backend::new(&config, db.clone(), &key);
            let served = crate::serve::serve(Arc::new(config), backend).await;
            close(db).await;
            served
        }
        Command::User(command) => {
            let backend = open_backend(&config).await?;
            let done = user_command(&backend, command).await;
            close(backend.db).await;
            done
        }
        Command::Workspace(command) => {
            let backend = open_backend(&config).await?;
            let done = workspace_command(&backend, command).await;
            close(backend.db).await;
            done
        }
        Command::Node(NodeCommand::List { json }) => {
            let backend = open_backend(&config).await?;
            let done = node_list(&backend, json).await;
            close(backend.db).await;
            done
        }
        Command::Gpu(command) => {
            let backend = open_backend(&config).await?;
            let done = gpu_command(&backend, command).await;
            close(backend.db).await;
            done
        }
        Command::Audit { since, user, action, limit, json } => {
            let db = open_db(&config).await?;
            let done = audit_command(&db, since, user, action, limit, json).await;
            close(db).await;
            done
        }
        Command::Openapi => {
            println!("{}", crate::api::openapi_json());
            Ok(())
        }
        Command::Idle(IdleCommand::Status { json }) => {
            let backend = open_backend(&config).await?;
            let done = idle_status(&backend, json).await;
            close(backend.db).await;
            done
        }
    }
}

async fn gpu_command(backend: &Backend, command: GpuCommand) -> anyhow::Result<()> {
    use crate::config::GpuMode;
    let sharing = &backend.sharing;
    // The command line runs as Berth itself: it sees the board as nobody in particular.
    let nobody = Owner { id: 0, username: String::new(), approved: true };
    match command {
        GpuCommand::List { json } => {
            let board = sharing.board(&nobody).await?;
            if json {
                println!("{}", serde_json::json!({ "mode": board.mode, "note": board.note, "gpus": board.gpus }));
                return Ok(());
            }
            if let Some(note) = &board.note {
                println!("{note}");
            }
            for g in &board.gpus {
                let holder = match &g.holder {
                    Some(h) => format!("{} by {} until {} (#{}){}", h.kind, h.username, app::figures::clock_text(h.ends_at), h.id,
                        if h.note.is_empty() { String::new() } else { format!(": {}", h.note) }),
                    None => "free".into(),
                };
                println!("GPU {} {:<24} {:>3} %  {}", g.index, g.name, g.utilization_percent, holder);
            }
            Ok(())
        }
        GpuCommand::Claim(ask) => gpu_ask(backend, ask, GpuMode::Open).await,
        GpuCommand::Lease(ask) => gpu_ask(backend, ask, GpuMode::Leased).await,
        GpuCommand::Release { id, user } => {
            let ids: Vec<i64> = match (id, user) {
                (Some(id), None) => vec![id],
                (None, Some(user)) => {
                    let board = sharing.board(&nobody).await?;
                    board.gpus.iter().filter_map(|g| g.holder.as_ref()).filter(|h| h.username == user).map(|h| h.id).collect()
                }
                _ => anyhow::bail!("name a holding id or --user, not both"),
            };
            for id in &ids {
                sharing.release(&Actor::System, *id).await?;
                println!("released #{id}");
            }
            Ok(())
        }
        GpuCommand::Queue { json } => {
            let board = sharing.board(&nobody).await?;
            if json {
                println!("{}", serde_json::to_string(&board.queue)?);
                return Ok(());
            }
            for r in &board.queue {
                let what = r.gpu_index.map_or_else(|| format!("{} GPU(s)", r.count), |i| format!("GPU {i}"));
                println!("{}. {} wants {} for {} (#{})", r.position, r.username, what, app::figures::duration_text(r.duration_seconds), r.id);
            }
            Ok(())
        }
    }
}

async fn gpu_ask(backend: &Backend, ask: GpuAsk, mode: crate::config::GpuMode) -> anyhow::Result<()> {
    use crate::sharing::RequestOutcome;
    let configured = backend.sharing.settings().mode;
    if configured != mode {
        anyhow::bail!("gpu.mode is {configured:?} here: use `berth gpu {}`", if mode == crate::config::GpuMode::Open { "lease" } else { "claim" });
    }
    let user = backend.accounts.find_by_name(&ask.user).await?;
    let owner = Owner::from(&user);
    let outcome = backend.sharing.request(&Actor::System, &owner, ask.count, ask.gpu, ask.duration.as_secs() as i64, &ask.note).await?;
    match (outcome, ask.json) {
        (RequestOutcome::Granted { gpus, ends_at }, true) => println!("{}", serde_json::json!({ "granted": gpus, "ends_at": ends_at })),
        (RequestOutcome::Queued { position }, true) => println!("{}", serde_json::json!({ "queued": position })),
        (RequestOutcome::Granted { gpus, ends_at }, false) => {
            println!("granted GPU {:?} to {} until {}", gpus, owner.username, app::figures::clock_text(ends_at))
        }
        (RequestOutcome::Queued { position }, false) => println!("queued for {}: position {position}", owner.username),
    }
    Ok(())
}

async fn idle_status(backend: &Backend, json: bool) -> anyhow::Result<()> {
    let now = crate::db::now();
    for v in backend.sharing.idle_status().await? {
        if json {
            println!("{}", serde_json::to_string(&v)?);
            continue;
        }
        let last = match (&v.last_signal, v.last_at) {
            (Some(s), Some(at)) => format!("active: {s}, {} ago", app::figures::duration_text(now - at)),
            _ => "no activity seen".into(),
        };
        let fate = match (v.running, v.exempt, v.stops_at) {
            (false, _, _) => "stopped".to_string(),
            (true, true, _) => "exempt".to_string(),
            (true, false, Some(at)) => format!("stops in {}{}", app::figures::duration_text(at - now), if v.warned_at.is_some() { " (warned)" } else { "" }),
            (true, false, None) => "never stopped for idleness".to_string(),
        };
        println!("{:<24} {:<40} {}", v.username, last, fate);
    }
    Ok(())
}

/// Records what the command line did (or failed to do) in the audit log, and passes it on.
async fn audited<T>(backend: &Backend, action: &str, target: &str, result: anyhow::Result<T>) -> anyhow::Result<T> {
    use crate::audit::{AuditActor, Event, Outcome};
    let outcome = if result.is_ok() { Outcome::Ok } else { Outcome::Failed };
    let detail = result.as_ref().err().map(describe).unwrap_or_default();
    backend.audit.record(Event::new(AuditActor::Cli, action, target).outcome(outcome).detail(detail)).await;
    result
}

async fn user_command(backend: &Backend, command: UserCommand) -> anyhow::Result<()> {
    let accounts = &backend.accounts;
    let by_name = |name: String, action: AdminAction| async move {
        let result = async {
            let user = accounts.find_by_name(&name).await?;
            anyhow::Ok(accounts.apply(None, user.id, action).await?)
        }
        .await;
        let user = audited(backend, &format!("user.{}", action.as_str()), &name, result).await?;
        match action {
            AdminAction::GrantAdmin | AdminAction::RevokeAdmin => println!("{}: {}", user.username, if user.is_admin { "admin" } else { "not admin" }),
            _ => println!("{}: {}", user.username, user.status.as_str()),
        }
        anyhow::Ok(())
    };
    match command {
        UserCommand::Passwd { name, password_stdin } => {
            let typed = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let result = async {
                let user = accounts.find_by_name(&name).await?;
                anyhow::Ok(accounts.reset_password(user.id, typed.as_deref()).await?)
            }
            .await;
            let generated = audited(backend, "password.reset", &name, result).await?;
            println!("{name}: password set; sessions ended");
            if let Some(password) = generated {
                println!("password: {password}");
            }
            Ok(())
        }
        UserCommand::Promote { name } => by_name(name, AdminAction::GrantAdmin).await,
        UserCommand::Demote { name } => by_name(name, AdminAction::RevokeAdmin).await,
        UserCommand::Delete { name, purge } => {
            let result = backend.delete_user(None, &name, purge).await;
            audited(backend, if purge { "user.delete-purge" } else { "user.delete" }, &name, result).await?;
            println!("{name}: deleted{}", if purge { ", files purged" } else { "; files kept" });
            Ok(())
        }
        UserCommand::Add { name, admin, email, password_stdin } => {
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (hex::encode(rand::random::<[u8; 12]>()), true)
            };
            let created = accounts
                .create(NewUser {
                    username: &name,
                    email: email.as_deref(),
                    password: Some(&password),
                    status: AccountStatus::Approved,
                    is_admin: admin,
                })
                .await;
            let user = audited(backend, "user.add", &name, created.map_err(anyhow::Error::from)).await?;
            println!("created {}{}", user.username, if user.is_admin { " (admin)" } else { "" });
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        UserCommand::Approve { name } => by_name(name, AdminAction::Approve).await,
        UserCommand::Disable { name } => {
            let result = backend.disable_user(&name).await;
            audited(backend, "user.disable", &name, result).await?;
            println!("{name}: disabled");
            Ok(())
        }
        UserCommand::Enable { name } => by_name(name, AdminAction::Enable).await,
        UserCommand::List { json } => {
            for user in accounts.list().await? {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"id": user.id, "username": user.username, "email": user.email,
                            "status": user.status.as_str(), "admin": user.is_admin})
                    );
                } else {
                    println!(
                        "{:<32} {:<9} {:<5} {}",
                        user.username,
                        user.status.as_str(),
                        if user.is_admin { "admin" } else { "" },
                        user.email.unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
    }
}

async fn workspace_command(backend: &Backend, command: WorkspaceCommand) -> anyhow::Result<()> {
    let workspaces = &backend.workspaces;
    // Whoever runs the command line holds the server: it acts as Berth itself.
    let system = &Actor::System;
    let owner = |name: Option<String>| async move {
        let name = name.ok_or_else(|| anyhow::anyhow!("name the user (only with --url does this mean your own workspace)"))?;
        anyhow::Ok(Owner::from(&backend.accounts.find_by_name(&name).await?))
    };
    match command {
        WorkspaceCommand::List { json } => {
            let overview = workspaces.overview(system).await?;
            if let Some(problem) = &overview.engine_problem {
                anyhow::bail!("{problem}");
            }
            // On stderr, so `--json` output stays one object per line.
            match workspaces.isolation().await {
                Ok(mode) => match mode.host_root_warning() {
                    Some(warning) => eprintln!("WARNING: {warning}"),
                    None => eprintln!("isolation: {}", mode.as_str()),
                },
                Err(e) => eprintln!("isolation: unknown ({e})"),
            }
            for row in &overview.rows {
                if json {
                    println!("{}", serde_json::to_string(row)?);
                } else {
                    println!(
                        "{:<32} {:<9} ssh:{:<6} {}{}",
                        row.username,
                        row.state.as_str(),
                        row.ports.map(|p| p.ssh.to_string()).unwrap_or_else(|| "-".into()),
                        if row.drift { "drift " } else { "" },
                        if row.orphan { "orphan" } else { "" }
                    );
                }
            }
            for name in &overview.foreign {
                eprintln!("foreign container (not Berth's): {name}");
            }
            Ok(())
        }
        WorkspaceCommand::Start { user } => {
            let owner = owner(user).await?;
            let result = workspaces.start(system, &owner).await.map_err(anyhow::Error::from);
            audited(backend, "workspace.start", &owner.username, result).await?;
            println!("{}: running", owner.username);
            Ok(())
        }
        WorkspaceCommand::Stop { user } => {
            let owner = owner(user).await?;
            let result = workspaces.stop(system, &owner).await.map_err(anyhow::Error::from);
            audited(backend, "workspace.stop", &owner.username, result).await?;
            println!("{}: stopped", owner.username);
            Ok(())
        }
        WorkspaceCommand::Restart { user } => {
            let owner = owner(user).await?;
            let result = workspaces.restart(system, &owner).await.map_err(anyhow::Error::from);
            audited(backend, "workspace.restart", &owner.username, result).await?;
            println!("{}: running", owner.username);
            Ok(())
        }
        WorkspaceCommand::Reset { user } => {
            let owner = owner(Some(user)).await?;
            let result = workspaces.reset(system, &owner).await.map_err(anyhow::Error::from);
            audited(backend, "workspace.reset", &owner.username, result).await?;
            println!("{}: reset and running", owner.username);
            Ok(())
        }
        WorkspaceCommand::Status { user, json } => {
            let view = workspaces.view(system, &owner(user).await?).await?;
            if let Some(problem) = &view.engine_problem {
                anyhow::bail!("{problem}");
            }
            if json {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                println!("{}: {}", view.username, view.state.as_str());
                if let Some(p) = view.ports {
                    println!("  ssh -p {} {}@{}", p.ssh, view.username, view.ssh_host);
                    println!("  vnc {}:{}  rdp {}:{}", view.ssh_host, p.vnc, view.ssh_host, p.rdp);
                }
                if view.drift {
                    println!("  differs from its current spec (applied at the next restart)");
                }
            }
            Ok(())
        }
        WorkspaceCommand::Limits { user, memory_gib, memory_reservation_gib, swap_gib, shm_gib, cpus, gpus } => {
            if let Some(g) = &gpus {
                anyhow::ensure!(crate::config::is_gpu_setting(g), "--gpus must be auto, all, none or a comma-separated list of GPU ids");
            }
            let overrides = crate::workspace::spec::ResourceOverrides {
                memory_reservation_gib,
                memory_limit_gib: memory_gib,
                swap_gib,
                cpus,
                shm_gib,
                gpus,
            };
            let result = workspaces.set_overrides(system, &owner(Some(user.clone())).await?, &overrides).await.map_err(anyhow::Error::from);
            audited(backend, "user.limits", &user, result).await?;
            println!("{user}: limits stored; applied when the workspace next starts from stopped");
            if overrides.gpus.as_deref().is_some_and(|g| g != "none" && g != "all" && g != "auto") {
                if let Ok(mode) = workspaces.isolation().await {
                    if mode.allows_host_root() {
                        eprintln!("note: workspace.isolation = {} cannot hold a GPU list: every GPU can be reached in this mode", mode.as_str());
                    }
                }
            }
            Ok(())
        }
        WorkspaceCommand::Move { user, node } => {
            let owner = owner(Some(user)).await?;
            let result = workspaces.move_to_node(system, &owner, &node).await.map_err(anyhow::Error::from);
            let message = audited(backend, "workspace.move", &owner.username, result).await?;
            println!("{message}");
            Ok(())
        }
        WorkspaceCommand::Reconcile => {
            let report = workspaces.reconcile(system).await?;
            crate::audit::record_reconcile(&backend.audit, &report).await;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

async fn node_list(backend: &Backend, json: bool) -> anyhow::Result<()> {
    let nodes = backend.workspaces.nodes(&Actor::System).await?;
    anyhow::ensure!(!nodes.is_empty(), "this Berth runs workspaces on one machine (runtime = \"docker\"): there are no nodes to list");
    for node in &nodes {
        if json {
            println!("{}", serde_json::to_string(node)?);
        } else {
            println!(
                "{:<24} {:<16} {:<6} {:<8} {:>3} cpus {:>5} GiB {:>2} GPUs  homes: {}",
                node.hostname,
                node.address,
                if node.ready { "ready" } else { "down" },
                if node.active { "active" } else { "drained" },
                node.cpus,
                node.memory_bytes >> 30,
                node.gpus,
                if node.homes.is_empty() { "-".to_string() } else { node.homes.join(", ") }
            );
        }
    }
    Ok(())
}

async fn audit_command(db: &Db, since: Option<String>, user: Option<String>, action: Option<String>, limit: u32, json: bool) -> anyhow::Result<()> {
    let since = match since.as_deref() {
        None => None,
        Some(text) => Some(match humantime::parse_duration(text) {
            Ok(ago) => crate::db::now() - ago.as_secs() as i64,
            Err(_) => crate::self_service::parse_day(text).ok_or_else(|| anyhow::anyhow!("--since: a length of time (7d, 12h) or a day (2026-12-01), not {text:?}"))?,
        }),
    };
    let filter = crate::audit::Filter { user, action, since, until: None, before_id: None, limit };
    for e in crate::audit::Audit::new(db.clone()).list(&filter).await? {
        if json {
            println!("{}", serde_json::to_string(&e)?);
        } else {
            println!(
                "{}  {:<9} {:<28} {:<22} {:<24} {}{}",
                crate::self_service::when(e.at),
                e.actor_kind,
                e.actor,
                e.action,
                e.target,
                e.outcome,
                if e.detail.is_empty() { String::new() } else { format!(": {}", e.detail) }
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn each_cause_is_said_once() {
        let named = crate::db::DbError::Directory { path: "/srv/db".into(), source: std::io::Error::other("disk on fire") };
        assert_eq!(describe(&anyhow::Error::new(named)), "database: cannot create directory /srv/db: disk on fire");
        let unnamed = anyhow::Error::new(std::io::Error::other("disk on fire")).context("reading berth.toml");
        assert_eq!(describe(&unnamed), "reading berth.toml: disk on fire");
    }
}
