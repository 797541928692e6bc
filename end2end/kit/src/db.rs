//! A database for one test: a SQLite file in a temporary directory, or a fresh PostgreSQL
//! database on the server `BERTH_TEST_POSTGRES_URL` names (dropped with the fixture).

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test; a PostgreSQL one is dropped when this goes away. `dir` is the
/// test's private directory (the SQLite file, Berth's data directory, storage).
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb { url: format!("sqlite://{}/berth.db", dir.path().display()), dir, postgres: None },
            Backend::Postgres => {
                let admin_url = std::env::var("BERTH_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()).expect(
                    "BERTH_TEST_POSTGRES_URL must point at a PostgreSQL server (make test starts one: scripts/ensure-postgres.sh)",
                );
                let name = format!("berth_test_{}_{}", std::process::id(), crate::hex(4));
                run_sql(&admin_url, &format!("CREATE DATABASE {name}")).await;
                let mut url = url::Url::parse(&admin_url).expect("postgres url");
                url.set_path(&format!("/{name}"));
                TestDb { url: url.to_string(), dir, postgres: Some((admin_url, name)) }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Drop may run inside a runtime: do the async work on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(run_sql(&admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
            })
            .join();
        }
    }
}

async fn run_sql(url: &str, sql: &str) {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("connect to test PostgreSQL");
    pool.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}

/// The test's SQLite database, opened beside the running server (WAL lets both read).
pub async fn sqlite_pool(db: &TestDb) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&db.url).await.expect("open the test's SQLite database")
}
