//! The harness every cluster test runs on: a fresh database on each backend, SQLite on a
//! real file and the real PostgreSQL server from `DATABASE_URL` (each test in its own
//! schema, dropped after; skipped, saying so, when `DATABASE_URL` is not set).

use tradefloor_persistence::{Database, JournalConfig};

/// A fresh database, and how to clean it up.
pub(crate) struct Backend {
    pub(crate) database: Database,
    /// The PostgreSQL URL and schema to drop after the test.
    postgres: Option<(String, String)>,
    _directory: Option<tempfile::TempDir>,
}

impl Backend {
    pub(crate) async fn sqlite() -> Backend {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", directory.path().join("journal.db").display());
        let database = Database::connect(&url, &JournalConfig::default())
            .await
            .unwrap();
        Backend {
            database,
            postgres: None,
            _directory: Some(directory),
        }
    }

    pub(crate) async fn postgres(test: &str) -> Option<Backend> {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("skipped: DATABASE_URL is not set, so {test} did not run on PostgreSQL");
            return None;
        };
        // PostgreSQL names are at most 63 bytes: a prefix of the test's name is enough.
        let schema = format!("cluster_{:.40}_{}", test, std::process::id());
        let database = Database::connect_postgres(&url, Some(&schema), &JournalConfig::default())
            .await
            .unwrap();
        Some(Backend {
            database,
            postgres: Some((url, schema)),
            _directory: None,
        })
    }

    /// Another connection pool on the same database, as another node has.
    pub(crate) async fn another_node(&self) -> Database {
        let config = JournalConfig::default();
        match (&self.postgres, &self.database) {
            (Some((url, schema)), _) => Database::connect_postgres(url, Some(schema), &config)
                .await
                .unwrap(),
            (None, Database::Sqlite(pool)) => {
                let path = pool.connect_options().get_filename().display().to_string();
                Database::connect(&format!("sqlite:{path}"), &config)
                    .await
                    .unwrap()
            }
            (None, Database::Postgres(_)) => unreachable!("postgres backends have a schema"),
        }
    }

    pub(crate) async fn finish(self) {
        self.database.close().await;
        if let Some((url, schema)) = self.postgres {
            let database = Database::connect(&url, &JournalConfig::default())
                .await
                .unwrap();
            if let Database::Postgres(pool) = &database {
                sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .execute(pool)
                    .await
                    .unwrap();
            }
            database.close().await;
        }
    }
}

/// Runs each named `async fn(&Backend)` of the enclosing file as two tests, `sqlite::name`
/// and `postgres::name`.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let backend = crate::common::Backend::sqlite().await;
                    super::$test(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(backend) = crate::common::Backend::postgres(stringify!($test)).await
                    else {
                        return;
                    };
                    super::$test(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

/// A small deterministic random source (xorshift64*), so a failing interleaving can be
/// replayed from its printed seed.
pub(crate) struct Random(u64);

impl Random {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A number in `0..bound`.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// The seed for randomized tests: `SEED` from the environment, else the clock.
pub(crate) fn seed() -> u64 {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (set SEED to replay)");
    seed
}
