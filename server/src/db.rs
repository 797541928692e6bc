//! The database: SQLite (embedded default) or PostgreSQL, chosen by the URL, through
//! sqlx's `Any` driver so every query is written once (`$1` placeholders work on both).

use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: cannot connect to {target}: {source}")]
    Connect { target: String, source: sqlx::Error },
    #[error("database: the disk holding {path} is full, so Berth cannot open the database; free some space there")]
    DiskFull { path: String, source: sqlx::Error },
    #[error("database: cannot create directory {path}: {source}")]
    Directory { path: String, source: std::io::Error },
    #[error("database: cannot create file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("database: migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub kind: DbKind,
}

pub type Row = AnyRow;

impl Db {
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (kind, url) = if url.starts_with("sqlite:") {
            (DbKind::Sqlite, prepare_sqlite_url(url)?)
        } else {
            (DbKind::Postgres, url.to_string())
        };
        if kind == DbKind::Sqlite {
            probe_sqlite(&url).await?;
        }
        let options = AnyPoolOptions::new().max_connections(if kind == DbKind::Sqlite { 4 } else { 10 });
        let options = if kind == DbKind::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await.map_err(|source| DbError::Connect {
            target: redacted_target(&url),
            source,
        })?;
        Ok(Db { pool, kind })
    }

    pub async fn migrate(&self) -> Result<(), DbError> {
        match self.kind {
            DbKind::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            DbKind::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// WAL lets readers proceed during a write; the busy timeout makes concurrent writers (server
/// and CLI on one file) wait instead of failing.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

/// Opens one SQLite connection directly before the pool does. The pool retries a failing
/// connection until its acquire timeout and then says only "pool timed out"; this says at once
/// what is wrong, above all a full disk (SQLite then fails creating its shared-memory file).
async fn probe_sqlite(url: &str) -> Result<(), DbError> {
    use sqlx::Connection;
    let opened = async {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        conn.execute(SQLITE_PRAGMAS).await?;
        conn.close().await
    }
    .await;
    let Err(source) = opened else { return Ok(()) };
    let path = sqlite_path(url);
    let dir = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let disk_full = is_storage_full(&source) || crate::disk::free_bytes(dir).is_ok_and(|free| free < 64 * 1024);
    if disk_full {
        return Err(DbError::DiskFull { path: path.to_string(), source });
    }
    Err(DbError::Connect { target: redacted_target(url), source })
}

fn sqlite_path(url: &str) -> &str {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.split('?').next().unwrap_or_default()
}

/// Makes `sqlite://path` create the file (and its directory) when missing, private to Berth's
/// user: the database holds password hashes and sessions.
fn prepare_sqlite_url(url: &str) -> Result<String, DbError> {
    let path = sqlite_path(url);
    if path != ":memory:" && !path.is_empty() {
        if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::disk::create_private_dir(parent).map_err(|source| DbError::Directory {
                path: parent.display().to_string(),
                source,
            })?;
        }
        // Only where SQLite itself would create it (no `mode=`, or `mode=rwc`).
        if !url.contains("mode=") || url.contains("mode=rwc") {
            crate::disk::create_private_file(Path::new(path))
                .map_err(|source| DbError::File { path: path.to_string(), source })?;
        }
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

fn redacted_target(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("redacted"));
            }
            parsed.to_string()
        }
        Err(_) => "the configured database".into(),
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Whether a database error means the disk (or the database's quota) is full: SQLite's
/// SQLITE_FULL, PostgreSQL's disk_full class, or ENOSPC on the way.
pub fn is_storage_full(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => {
            let code = e.code().unwrap_or_default();
            // SQLite reports extended codes too (13 = SQLITE_FULL in the low byte).
            code.parse::<i32>().is_ok_and(|c| c & 0xff == 13) || code == "53100" || e.message().contains("disk is full")
        }
        sqlx::Error::Io(e) => e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    }
}

/// What a user is told when the database refuses a write because storage is full.
pub const STORAGE_FULL_MESSAGE: &str = "Berth's storage is full, so nothing was saved. Please tell an administrator.";
