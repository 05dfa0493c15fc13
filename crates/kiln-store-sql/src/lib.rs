//! SQL implementations of kiln's store traits: [`SqlStore`] over SQLite (the embedded default,
//! WAL mode) or PostgreSQL, opened from a store URI by [`SqlStore::open`]. Schema versions live in
//! the database ([`SchemaStatus`]); SQLite upgrades itself on open, PostgreSQL only through
//! [`SqlStore::upgrade`] (`kiln db upgrade` / `kiln server --migrate`) under an advisory lock.
//!
//! ```
//! use kiln_store::ExperimentStore;
//! let dir = std::env::temp_dir().join(format!("kiln-doc-{}", std::process::id()));
//! let uri = format!("sqlite:///{}/kiln.db", dir.display());
//! let store = kiln_store_sql::SqlStore::open(&uri, &Default::default()).unwrap();
//! assert_eq!(store.get_experiment("0").unwrap().name, "Default");
//! ```

mod chunks;
mod db;
mod gc;
mod latest;
mod models;
mod registry;
mod schema;
mod search;
mod tracking;

use kiln_store::{StoreError, StoreResult, TrackingStore};

pub use db::redact;
use db::{Dialect, PgDb, SqliteDb, Tx};

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Apply pending migrations on open (PostgreSQL; SQLite always upgrades itself).
    pub migrate: bool,
    /// PostgreSQL connections / SQLite reader connections; 0 picks a default.
    pub pool_size: usize,
}

/// Schema version applied in the database vs. the one this binary writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    pub current: i64,
    pub latest: i64,
}

enum Backend {
    Sqlite(std::sync::Arc<SqliteDb>),
    Postgres(PgDb),
}

/// A tracking store on SQLite or PostgreSQL.
pub struct SqlStore {
    backend: Backend,
    uri: String,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("uri", &db::redact(&self.uri))
            .finish()
    }
}

/// Advisory-lock key that serialises migrations across replicas.
const MIGRATION_LOCK_KEY: i64 = 0x006b_696c_6e6d_6967; // "kilnmig"

impl SqlStore {
    /// Open `sqlite:///path/kiln.db`, `sqlite::memory:`-less file paths, or
    /// `postgresql://user[:pass]@host[:port]/db`.
    pub fn open(uri: &str, options: &OpenOptions) -> StoreResult<Self> {
        if let Some(path) = sqlite_path(uri) {
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() {
                    fs_err::create_dir_all(parent).map_err(|e| {
                        StoreError::backend("Failed to create the store directory", e)
                    })?;
                }
            }
            let readers = if options.pool_size == 0 {
                4
            } else {
                options.pool_size
            };
            let db = std::sync::Arc::new(SqliteDb::open(&path, readers)?);
            // The embedded store upgrades itself: one process owns the file. Then latest
            // metric values a crash left unfolded are recomputed from history.
            db.write(|tx| {
                schema::upgrade(tx)?;
                let recovered = latest::recover_tx(tx)?;
                if recovered > 0 {
                    tracing::info!(
                        runs = recovered,
                        "recomputed latest metric values from history"
                    );
                }
                Ok(())
            })?;
            latest::spawn_flusher(&db);
            let store = Self {
                backend: Backend::Sqlite(db),
                uri: uri.to_string(),
            };
            return Ok(store);
        }
        if uri.starts_with("postgresql://") || uri.starts_with("postgres://") {
            let size = if options.pool_size == 0 {
                8
            } else {
                options.pool_size
            };
            let db = PgDb::connect(uri, size)?;
            let store = Self {
                backend: Backend::Postgres(db),
                uri: uri.to_string(),
            };
            if options.migrate {
                store.upgrade()?;
            }
            let status = store.schema_status()?;
            schema::check_not_newer(status.current)?;
            if status.current < status.latest {
                return Err(StoreError::Schema(format!(
                    "The PostgreSQL schema is at version {} but this kiln binary needs version {}. \
                     Run `kiln db upgrade --backend-store-uri <uri>` (or start the server with --migrate).",
                    status.current, status.latest
                )));
            }
            return Ok(store);
        }
        Err(StoreError::invalid(format!(
            "Unsupported backend store URI `{}`: expected sqlite:///path/to/kiln.db or postgresql://user@host:port/db",
            db::redact(uri)
        )))
    }

    /// Open without refusing an out-of-date PostgreSQL schema (for `kiln db status`).
    pub fn open_unchecked(uri: &str) -> StoreResult<Self> {
        if uri.starts_with("postgresql://") || uri.starts_with("postgres://") {
            let db = PgDb::connect(uri, 1)?;
            return Ok(Self {
                backend: Backend::Postgres(db),
                uri: uri.to_string(),
            });
        }
        Self::open(uri, &OpenOptions::default())
    }

    /// Apply pending migrations (under an advisory lock on PostgreSQL). Returns the versions applied.
    pub fn upgrade(&self) -> StoreResult<Vec<i64>> {
        match &self.backend {
            Backend::Sqlite(_) => self.write(schema::upgrade),
            Backend::Postgres(pg) => pg.with_client(|client| {
                let lock = |c: &mut postgres::Client, sql: &str| {
                    c.execute(sql, &[&MIGRATION_LOCK_KEY])
                        .map_err(|e| StoreError::backend("Failed to take the migration lock", e))
                };
                lock(client, "SELECT pg_advisory_lock($1)")?;
                let result = (|| -> StoreResult<Vec<i64>> {
                    let tx = client
                        .transaction()
                        .map_err(|e| StoreError::backend("Failed to start the migration", e))?;
                    let mut cache = std::collections::HashMap::new();
                    let mut ptx = db::PgTx::new(tx, &mut cache);
                    let applied = schema::upgrade(&mut ptx)?;
                    ptx.commit()?;
                    Ok(applied)
                })();
                let unlock = lock(client, "SELECT pg_advisory_unlock($1)");
                let applied = result?;
                unlock?;
                Ok(applied)
            }),
        }
    }

    /// The applied and the latest schema version.
    pub fn schema_status(&self) -> StoreResult<SchemaStatus> {
        let current = self.read(schema::current_version)?;
        Ok(SchemaStatus {
            current,
            latest: schema::latest_version(),
        })
    }

    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        match &self.backend {
            Backend::Sqlite(db) => {
                fold_latest(db)?;
                db.write(f)
            }
            Backend::Postgres(db) => db.write(f),
        }
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        match &self.backend {
            Backend::Sqlite(db) => {
                fold_latest(db)?;
                db.read(f)
            }
            Backend::Postgres(db) => db.read(f),
        }
    }

    /// The SQLite database, for the paths that treat it specially (latest-value write-behind).
    pub(crate) fn sqlite(&self) -> Option<&SqliteDb> {
        match &self.backend {
            Backend::Sqlite(db) => Some(db),
            Backend::Postgres(_) => None,
        }
    }

    #[allow(dead_code)]
    pub(crate) fn dialect(&self) -> Dialect {
        match &self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// Fold buffered latest metric values in before any other store call sees the database.
fn fold_latest(db: &SqliteDb) -> StoreResult<()> {
    if db.latest.has_pending() {
        latest::flush(db)?;
    }
    Ok(())
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Backend::Sqlite(db) = &self.backend {
            if let Err(e) = fold_latest(db) {
                tracing::warn!(error = %e, "folding latest metric values on close failed");
            }
        }
    }
}

/// The file path of a `sqlite:` URI: `sqlite:///abs/path`, `sqlite://rel/path`, `sqlite:path`.
fn sqlite_path(uri: &str) -> Option<std::path::PathBuf> {
    let rest = uri.strip_prefix("sqlite:")?;
    let path = if let Some(p) = rest.strip_prefix("///") {
        format!("/{p}")
    } else if let Some(p) = rest.strip_prefix("//") {
        p.to_string()
    } else {
        rest.to_string()
    };
    Some(std::path::PathBuf::from(path))
}

impl TrackingStore for SqlStore {
    fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }
}
