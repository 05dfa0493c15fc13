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
mod journal;
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
    /// SQLite: acknowledge plain metric writes with one append to a journal file beside the
    /// database (`<db>-kiln-journal.0`, `.1`) instead of a commit each, folded in within 100 ms and
    /// before any other store call. For the one long-lived process that owns the database (the
    /// tracking server); another process that opens it writes through SQLite.
    pub journal: bool,
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
            // The journal is found by name beside the database, and its records are folded
            // against one `journal_applied` mark: two processes that reached the same file
            // through different names (a symlink, `..`) must find the same journal.
            let path = match path.canonicalize() {
                Ok(p) => p,
                Err(_) => match (path.parent(), path.file_name()) {
                    (Some(dir), Some(name)) => {
                        let dir = if dir.as_os_str().is_empty() {
                            std::path::Path::new(".")
                        } else {
                            dir
                        };
                        dir.canonicalize()
                            .map_or_else(|_| path.clone(), |d| d.join(name))
                    }
                    _ => path,
                },
            };
            let readers = if options.pool_size == 0 {
                4
            } else {
                options.pool_size
            };
            // The journal, if this process is to own one; else a journal a stopped server left
            // behind is replayed (when no live process holds it) and let go.
            let mut no_locks = false;
            let (owned, busy) = if options.journal {
                match journal::Journal::try_open(&path)? {
                    journal::Opened::Held(j) => (Some(j), false),
                    journal::Opened::Busy => {
                        tracing::warn!(
                            "Another process holds this database's metric journal; writing metrics through SQLite until it stops."
                        );
                        (None, true)
                    }
                    journal::Opened::NoLocks => {
                        no_locks = true;
                        (None, false)
                    }
                }
            } else {
                (None, false)
            };
            let orphan = if owned.is_none()
                && !no_locks
                && journal::paths_for(&path).iter().any(|p| p.exists())
            {
                journal::Journal::open(&path)?
            } else {
                None
            };
            let wanted = busy.then(|| path.clone());
            let db = std::sync::Arc::new(SqliteDb::open(&path, readers, owned, wanted)?);
            // The embedded store upgrades itself: one process owns the file. Then journaled
            // metrics a crash left unfolded are staged, and latest metric values a crash left
            // unfolded are recomputed from history.
            let replay_from = db.journal.get().or(orphan.as_ref());
            db.write(|tx| {
                schema::upgrade(tx)?;
                if let Some(j) = replay_from {
                    let replayed = latest::replay_journal_tx(tx, j)?;
                    if replayed > 0 {
                        tracing::info!(batches = replayed, "replayed the metric journal");
                    }
                }
                let recovered = latest::recover_tx(tx)?;
                if recovered > 0 {
                    tracing::info!(
                        runs = recovered,
                        "recomputed latest metric values from history"
                    );
                }
                Ok(())
            })?;
            if let Some(j) = replay_from {
                j.truncate()?;
            }
            drop(orphan);
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
            "Unsupported backend store URI `{}`: expected sqlite:///relative/kiln.db, sqlite:////abs/path/kiln.db or postgresql://user@host:port/db",
            db::redact(uri)
        )))
    }

    /// The schema status of an SQLite database, read without opening it as a store: no
    /// upgrade, no journal replay, nothing written (`kiln db status` must not migrate the file
    /// it reports on). `None` when `uri` is not an SQLite URI; an error when the file does not
    /// exist.
    pub fn sqlite_schema_status(uri: &str) -> StoreResult<Option<SchemaStatus>> {
        let Some(path) = sqlite_path(uri) else {
            return Ok(None);
        };
        if !path.is_file() {
            return Err(StoreError::not_found(format!(
                "No SQLite database at `{}`",
                path.display()
            )));
        }
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::backend("Failed to open the database read-only", e))?;
        let read = || -> rusqlite::Result<i64> {
            let exists: i64 = conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'kiln_migrations'",
                [],
                |r| r.get(0),
            )?;
            if exists == 0 {
                return Ok(0);
            }
            conn.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM kiln_migrations",
                [],
                |r| r.get(0),
            )
        };
        let current =
            read().map_err(|e| StoreError::backend("Failed to read the schema version", e))?;
        Ok(Some(SchemaStatus {
            current,
            latest: schema::latest_version(),
        }))
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

    /// After a run's or an experiment's lifecycle changed: the journal's active-run check
    /// must read again.
    pub(crate) fn forget_active_runs(&self) {
        if let Some(db) = self.sqlite() {
            db.active_runs.forget_all();
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

/// Fold buffered latest metric values in before any other store call sees the database (after
/// a fold slice in flight, if any, has committed).
fn fold_latest(db: &SqliteDb) -> StoreResult<()> {
    if latest::settled_fold_due(db) {
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

/// The file of a `sqlite:` URI, read as SQLAlchemy (and so MLflow) reads it:
/// `sqlite:////abs/path/kiln.db` is absolute and `sqlite:///mlflow.db` is relative to the working
/// directory, so `--backend-store-uri sqlite:///mlflow.db` means what it means to `mlflow server`.
/// (`sqlite://rel/path` and `sqlite:path` are relative too.)
///
/// Earlier kiln releases read `sqlite:///x` as `/x`. When only that reading finds an existing
/// database, or the directory it would go in, it is kept, with a warning, so a store written
/// under the old reading is never silently replaced by a new empty one.
/// The file a `sqlite:` URI names, read as [`SqlStore::open`] reads it; `None` for any other
/// URI.
pub fn sqlite_file(uri: &str) -> Option<std::path::PathBuf> {
    sqlite_path(uri)
}

pub(crate) fn sqlite_path(uri: &str) -> Option<std::path::PathBuf> {
    use std::path::{Path, PathBuf};
    let rest = uri.strip_prefix("sqlite:")?;
    let Some(p) = rest.strip_prefix("///") else {
        return Some(PathBuf::from(rest.strip_prefix("//").unwrap_or(rest)));
    };
    if p.starts_with('/') {
        return Some(PathBuf::from(p));
    }
    let relative = PathBuf::from(p);
    let absolute = PathBuf::from(format!("/{p}"));
    let dir_exists = |f: &Path| {
        f.parent()
            .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir())
    };
    let legacy = !relative.exists()
        && (absolute.exists() || (!dir_exists(&relative) && dir_exists(&absolute)));
    if legacy {
        tracing::warn!(
            uri,
            path = %absolute.display(),
            "Reading sqlite:/// + path as the absolute path it names (it exists, the relative one does not); SQLAlchemy and MLflow read it as relative: write sqlite://// + the absolute path to be explicit."
        );
        return Some(absolute);
    }
    Some(relative)
}

impl TrackingStore for SqlStore {
    fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }
}

#[cfg(test)]
mod sqlite_uri_tests {
    use std::path::PathBuf;

    use super::sqlite_path;

    #[test]
    fn sqlite_uris_read_as_sqlalchemy_reads_them() {
        let p = |u: &str| sqlite_path(u).expect("a sqlite uri");
        assert_eq!(p("sqlite:///mlflow.db"), PathBuf::from("mlflow.db"));
        assert_eq!(
            p("sqlite:///no-such-dir/k.db"),
            PathBuf::from("no-such-dir/k.db")
        );
        assert_eq!(
            p("sqlite:////srv/kiln/kiln.db"),
            PathBuf::from("/srv/kiln/kiln.db")
        );
        assert_eq!(p("sqlite://rel/k.db"), PathBuf::from("rel/k.db"));
        assert_eq!(p("sqlite:k.db"), PathBuf::from("k.db"));
        assert!(sqlite_path("postgresql://x/y").is_none());
        // The old reading (`sqlite:///` + an absolute path without its slash) still finds a
        // store whose directory exists only there.
        let dir = tempfile::tempdir().expect("tempdir");
        let abs = dir.path().join("kiln.db");
        let old = format!("sqlite://{}", abs.display());
        assert_eq!(p(&old), abs);
    }
}

/// Helpers shared by the embedded store's crash and fold tests.
#[cfg(test)]
mod test_support {
    use super::*;
    use kiln_store::{ExperimentStore, NewRun, RunStore};

    /// `<dir>/kiln.db`, with or without this process owning the metric journal.
    pub(crate) fn open(dir: &std::path::Path, journal: bool) -> SqlStore {
        let uri = format!("sqlite:///{}", dir.join("kiln.db").display());
        let options = OpenOptions {
            journal,
            ..Default::default()
        };
        SqlStore::open(&uri, &options).expect("open")
    }

    /// `n` new runs in a new experiment.
    pub(crate) fn new_runs(store: &SqlStore, n: usize) -> Vec<String> {
        let experiment_id = store.create_experiment("e", None, &[]).expect("exp");
        (0..n)
            .map(|_| {
                store
                    .create_run(&NewRun {
                        experiment_id: experiment_id.clone(),
                        user_id: "u".into(),
                        run_name: None,
                        start_time: 1,
                        tags: Vec::new(),
                    })
                    .expect("run")
                    .info
                    .run_id
            })
            .collect()
    }

    /// What `open` leaves on disk: the database, its WAL and the journal's two files.
    pub(crate) const CRASH_FILES: [&str; 4] = [
        "kiln.db",
        "kiln.db-wal",
        "kiln.db-kiln-journal.0",
        "kiln.db-kiln-journal.1",
    ];

    /// The files a SIGKILL would leave, copied while nothing commits (those that exist).
    pub(crate) fn copy_files(from: &std::path::Path, to: &std::path::Path, names: &[&str]) {
        for name in names {
            let src = from.join(name);
            if src.exists() {
                std::fs::copy(&src, to.join(name)).expect("copy");
            }
        }
    }
}

#[cfg(test)]
mod journal_tests {
    use super::test_support::{copy_files, new_runs, open, CRASH_FILES};
    use super::*;
    use kiln_store::{PageRequest, RunStore};
    use kiln_types::Metric;

    fn new_run(store: &SqlStore) -> String {
        new_runs(store, 1).remove(0)
    }

    fn log_loss(store: &SqlStore, run_id: &str, steps: std::ops::RangeInclusive<i64>) {
        for step in steps {
            let m = Metric::new("loss", 1.0 / step as f64, 1000 + step, step);
            store.log_batch(run_id, &[m], &[], &[]).expect("log");
        }
    }

    fn steps_and_latest(store: &SqlStore, run_id: &str) -> (Vec<i64>, i64) {
        let history = store
            .get_metric_history(run_id, "loss", &PageRequest::default())
            .expect("history");
        let run = store.get_run(run_id).expect("run");
        let latest = run
            .data
            .metrics
            .iter()
            .find(|m| m.key == "loss")
            .expect("latest loss")
            .step;
        (history.items.iter().map(|m| m.step).collect(), latest)
    }

    #[test]
    fn journaled_metrics_survive_a_crash_before_their_fold() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let run_id = new_run(&store);
        let db = store.sqlite().expect("sqlite");
        // No fold can run while the writer is held: the acknowledged points live only in the
        // journal, as they would right before a SIGKILL.
        let held = db.hold_writer();
        log_loss(&store, &run_id, 1..=50);
        let crash = tempfile::tempdir().expect("dir");
        copy_files(dir.path(), crash.path(), &CRASH_FILES);
        drop(held);
        // A process without a journal of its own (a CLI command) replays the one left behind.
        let reopened = open(crash.path(), false);
        let (steps, latest) = steps_and_latest(&reopened, &run_id);
        assert_eq!(steps, (1..=50).collect::<Vec<_>>());
        assert_eq!(latest, 50);
        drop(reopened);
        assert_eq!(
            ["0", "1"].map(|i| std::fs::metadata(
                crash.path().join(format!("kiln.db-kiln-journal.{i}"))
            )
            .expect("journal")
            .len()),
            [0, 0],
            "the replayed journal is emptied"
        );
        // The original goes on, and sees the same.
        assert_eq!(steps_and_latest(&store, &run_id).0.len(), 50);
    }

    #[test]
    fn a_second_server_takes_the_journal_over_once_its_owner_is_gone() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let run_id = new_run(&store);
        let db = store.sqlite().expect("sqlite");
        let held = db.hold_writer();
        log_loss(&store, &run_id, 1..=20);
        let crash = tempfile::tempdir().expect("dir");
        copy_files(dir.path(), crash.path(), &CRASH_FILES);
        drop(held);
        // The owner's lock, still held: a second server starts beside it without the journal.
        let owner = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(crash.path().join("kiln.db-kiln-journal.0"))
            .expect("journal");
        owner.try_lock().expect("lock");
        let second = open(crash.path(), true);
        let sdb = second.sqlite().expect("sqlite");
        assert!(sdb.journal.get().is_none());
        let history = |s: &SqlStore| {
            s.get_metric_history(&run_id, "loss", &PageRequest::default())
                .expect("history")
                .items
                .len()
        };
        assert_eq!(
            history(&second),
            0,
            "the owner's journaled points are not folded yet"
        );
        // The owner dies (its lock goes): the second server takes over and replays them.
        drop(owner);
        let start = std::time::Instant::now();
        while history(&second) < 20 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "no takeover"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            sdb.journal.get().is_some(),
            "it journals its own writes now"
        );
        // Its own records are numbered past the replayed ones, so a crash keeps them too.
        let held = sdb.hold_writer();
        log_loss(&second, &run_id, 21..=22);
        let again = tempfile::tempdir().expect("dir");
        copy_files(crash.path(), again.path(), &CRASH_FILES);
        drop(held);
        let reopened = open(again.path(), false);
        let (steps, latest) = steps_and_latest(&reopened, &run_id);
        assert_eq!(steps, (1..=22).collect::<Vec<_>>());
        assert_eq!(latest, 22);
    }

    #[test]
    fn a_crash_after_the_fold_but_before_the_truncate_replays_nothing_twice() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let run_id = new_run(&store);
        let db = store.sqlite().expect("sqlite");
        let held = db.hold_writer();
        log_loss(&store, &run_id, 1..=10);
        let journal_before_fold = tempfile::tempdir().expect("dir");
        copy_files(
            dir.path(),
            journal_before_fold.path(),
            &["kiln.db-kiln-journal.0", "kiln.db-kiln-journal.1"],
        );
        drop(held);
        // Any read folds first: the ten points are committed and the journal emptied.
        assert_eq!(steps_and_latest(&store, &run_id).0.len(), 10);
        let crash = tempfile::tempdir().expect("dir");
        copy_files(dir.path(), crash.path(), &["kiln.db", "kiln.db-wal"]);
        copy_files(
            journal_before_fold.path(),
            crash.path(),
            &["kiln.db-kiln-journal.0", "kiln.db-kiln-journal.1"],
        );
        let reopened = open(crash.path(), true);
        let (steps, latest) = steps_and_latest(&reopened, &run_id);
        assert_eq!(steps, (1..=10).collect::<Vec<_>>(), "no point folded twice");
        assert_eq!(latest, 10);
        // Numbering goes on past the folded records: new points are journaled and kept.
        log_loss(&reopened, &run_id, 11..=12);
        drop(reopened);
        let again = open(crash.path(), true);
        assert_eq!(steps_and_latest(&again, &run_id).0.len(), 12);
    }

    #[test]
    fn history_keeps_logging_order_across_the_journal_and_sqlite() {
        use kiln_types::Param;
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let run_id = new_run(&store);
        // Same key, step and timestamp: only logging order tells the points apart.
        let point = |v: f64| Metric::new("loss", v, 5, 1);
        store
            .log_batch(&run_id, &[point(0.1)], &[], &[])
            .expect("journaled");
        let param = Param {
            key: "lr".into(),
            value: "0.1".into(),
        };
        store
            .log_batch(&run_id, &[point(0.2)], &[param], &[])
            .expect("through SQLite");
        store
            .log_batch(&run_id, &[point(0.3)], &[], &[])
            .expect("journaled");
        let history = store
            .get_metric_history(&run_id, "loss", &PageRequest::default())
            .expect("history");
        let values: Vec<f64> = history.items.iter().map(|m| m.value).collect();
        assert_eq!(values, [0.1, 0.2, 0.3]);
    }

    #[test]
    fn a_deleted_run_refuses_journaled_metrics() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let run_id = new_run(&store);
        log_loss(&store, &run_id, 1..=1);
        store.delete_run(&run_id).expect("delete");
        let err = store
            .log_batch(&run_id, &[Metric::new("loss", 0.1, 1, 2)], &[], &[])
            .expect_err("a deleted run takes no metrics");
        assert!(
            err.to_string().contains("must be in the 'active' state"),
            "{err}"
        );
        store.restore_run(&run_id).expect("restore");
        log_loss(&store, &run_id, 2..=2);
        assert_eq!(steps_and_latest(&store, &run_id).0, [1, 2]);
    }
}

#[cfg(test)]
mod fold_tests {
    //! The fold in slices (latest.rs): every slice's commit is a state that reopening
    //! recovers from, and runs a spill staged after their candidates were folded still get
    //! their history moved.
    use super::test_support::{copy_files, new_runs, open, CRASH_FILES};
    use super::*;
    use kiln_store::{PageRequest, RunStore};
    use kiln_types::Metric;
    use std::sync::atomic::Ordering;

    /// `keys` metrics `k0..` at `step`, value `step * 100 + key`.
    fn wide(keys: usize, step: i64) -> Vec<Metric> {
        (0..keys)
            .map(|k| {
                Metric::new(
                    format!("k{k}"),
                    (step * 100 + k as i64) as f64,
                    1000 + step,
                    step,
                )
            })
            .collect()
    }

    fn marked(store: &SqlStore) -> i64 {
        store
            .sqlite()
            .expect("sqlite")
            .read(|tx| Ok(tx.query("SELECT COUNT(*) FROM latest_pending", &[])?[0].int(0)))
            .expect("count")
    }

    /// Every run has `keys` latest values from step `steps`, and `k0`..`k{keys-1}` each have
    /// history steps 1..=steps.
    fn assert_whole(store: &SqlStore, runs: &[String], keys: usize, steps: i64) {
        for run_id in runs {
            let run = store.get_run(run_id).expect("run");
            assert_eq!(run.data.metrics.len(), keys, "latest values of {run_id}");
            for m in &run.data.metrics {
                assert_eq!(m.step, steps, "{run_id} {}", m.key);
            }
            for k in [0, keys - 1] {
                let history = store
                    .get_metric_history(run_id, &format!("k{k}"), &PageRequest::default())
                    .expect("history");
                let steps_seen: Vec<i64> = history.items.iter().map(|m| m.step).collect();
                assert_eq!(steps_seen, (1..=steps).collect::<Vec<_>>(), "{run_id} k{k}");
            }
        }
    }

    /// Fold slices limited by candidates only.
    fn keys(n: usize) -> latest::SliceSize {
        latest::SliceSize {
            keys: n,
            points: usize::MAX,
        }
    }

    #[test]
    fn a_fold_keeps_the_latest_of_points_another_process_staged_and_never_folded() {
        let dir = tempfile::tempdir().expect("dir");
        let server = open(dir.path(), true);
        let run_id = new_runs(&server, 1).remove(0);
        // A second process logs step 9 through SQLite (staged, marked) and dies before its
        // fold: its candidate was only in its memory.
        let other = open(dir.path(), false);
        let other_db = other.sqlite().expect("sqlite");
        other_db.latest.paused.store(true, Ordering::Release);
        let late = Metric::new("b", 9.0, 1000, 9);
        // ... and one linked to a logged model (MLflow 3 links metrics to the active model).
        let mut linked = Metric::new("c", 0.9, 1000, 9);
        linked.model_id = Some("m-0123456789abcdef0123456789abcdef".into());
        other
            .log_batch(&run_id, &[late, linked], &[], &[])
            .expect("log");
        std::mem::forget(other);
        // The server logs an older step of the same keys, then folds both together.
        let early = [Metric::new("b", 1.0, 900, 1), Metric::new("c", 0.1, 900, 1)];
        server.log_batch(&run_id, &early, &[], &[]).expect("log");
        latest::flush(server.sqlite().expect("sqlite")).expect("fold");
        let run = server.get_run(&run_id).expect("run");
        let b = run.data.metrics.iter().find(|m| m.key == "b").expect("b");
        assert_eq!((b.step, b.value), (9, 9.0), "latest of b");
        let c = run.data.metrics.iter().find(|m| m.key == "c").expect("c");
        assert_eq!((c.step, c.value), (9, 0.9), "latest of the linked c");
        let history = server
            .get_metric_history(&run_id, "b", &PageRequest::default())
            .expect("history");
        assert_eq!(history.items.len(), 2);
    }

    #[test]
    fn a_fold_drops_what_it_took_for_a_run_purged_meanwhile() {
        let dir = tempfile::tempdir().expect("dir");
        let server = open(dir.path(), true);
        let run_id = new_runs(&server, 1).remove(0);
        let db = server.sqlite().expect("sqlite");
        db.latest.paused.store(true, Ordering::Release);
        server
            .log_batch(&run_id, &wide(3, 1), &[], &[])
            .expect("log");
        // Another process deletes and purges the run before this one folds.
        let conn = rusqlite::Connection::open(dir.path().join("kiln.db")).expect("sqlite");
        conn.execute("DELETE FROM runs WHERE run_uuid = ?1", [&run_id])
            .expect("purge");
        drop(conn);
        latest::flush(db).expect("fold");
        for table in [
            "metric_chunks",
            "metrics",
            "latest_metrics",
            "latest_pending",
        ] {
            let n = db
                .read(|tx| {
                    Ok(tx.query(
                        &format!("SELECT COUNT(*) FROM {table} WHERE run_uuid = ?"),
                        &[db::Val::from(run_id.as_str())],
                    )?[0]
                        .int(0))
                })
                .expect("count");
            assert_eq!(n, 0, "{table} rows of the purged run");
        }
    }

    #[test]
    fn replay_skips_journaled_points_of_runs_purged_since() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let runs = new_runs(&store, 2);
        let db = store.sqlite().expect("sqlite");
        db.latest.paused.store(true, Ordering::Release);
        for run_id in &runs {
            store.log_batch(run_id, &wide(1, 1), &[], &[]).expect("log");
        }
        // The image a SIGKILL leaves: both points only in the journal ...
        let crash = tempfile::tempdir().expect("dir");
        copy_files(dir.path(), crash.path(), &CRASH_FILES);
        // ... and, before the restart, `kiln gc` purged the first run.
        let conn = rusqlite::Connection::open(crash.path().join("kiln.db")).expect("sqlite");
        conn.execute("DELETE FROM runs WHERE run_uuid = ?1", [&runs[0]])
            .expect("purge");
        drop(conn);
        let reopened = open(crash.path(), true);
        let left = |table: &str| {
            reopened
                .sqlite()
                .expect("sqlite")
                .read(|tx| {
                    Ok(tx.query(
                        &format!("SELECT COUNT(*) FROM {table} WHERE run_uuid = ?"),
                        &[db::Val::from(runs[0].as_str())],
                    )?[0]
                        .int(0))
                })
                .expect("count")
        };
        for table in [
            "metric_chunks",
            "metrics_staged_batches",
            "metrics",
            "latest_metrics",
            "latest_pending",
        ] {
            assert_eq!(left(table), 0, "{table} rows of the purged run");
        }
        // The other run's point is replayed as usual.
        assert_whole(&reopened, &runs[1..], 1, 1);
    }

    #[test]
    fn a_run_deleted_by_another_process_stops_taking_journaled_metrics() {
        let dir = tempfile::tempdir().expect("dir");
        let server = open(dir.path(), true);
        let run_id = new_runs(&server, 1).remove(0);
        // Journaled, so the server now knows the run as active.
        server
            .log_batch(&run_id, &wide(1, 1), &[], &[])
            .expect("log");
        // Another process (a second store on the same file) deletes it.
        let other = open(dir.path(), false);
        other.delete_run(&run_id).expect("delete");
        // Within about a second the server refuses metrics for it, as MLflow does.
        let start = std::time::Instant::now();
        let mut step = 2;
        loop {
            match server.log_batch(&run_id, &wide(1, step), &[], &[]) {
                Err(e) => {
                    assert!(e.to_string().contains("active"), "{e}");
                    break;
                }
                Ok(()) if start.elapsed() < std::time::Duration::from_secs(5) => {
                    step += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(()) => panic!("still logging to a run deleted elsewhere after 5 s"),
            }
        }
    }

    #[test]
    fn a_read_waits_for_a_fold_slice_in_flight() {
        let dir = tempfile::tempdir().expect("dir");
        let store = std::sync::Arc::new(open(dir.path(), true));
        let run_id = new_runs(&store, 1).remove(0);
        let db = store.sqlite().expect("sqlite");
        db.latest.paused.store(true, Ordering::Release);
        // Acknowledged by the journal, not yet in the database.
        store
            .log_batch(&run_id, &wide(1, 1), &[], &[])
            .expect("log");
        // A fold that stops between taking the journal and committing, until told to go on.
        let (taken_tx, taken_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        *db.latest.slice_hook.lock().expect("hook") = Some(Box::new(move || {
            let _ = taken_tx.send(());
            let _ = go_rx.recv();
        }));
        let folding = std::sync::Arc::clone(&store);
        let folder = std::thread::spawn(move || {
            latest::flush(folding.sqlite().expect("sqlite")).expect("fold");
        });
        taken_rx.recv().expect("the slice took the journal");
        // A read now must wait for that slice, or it misses the acknowledged point.
        let reading = std::sync::Arc::clone(&store);
        let reader_run = run_id.clone();
        let reader = std::thread::spawn(move || {
            reading
                .get_metric_history(&reader_run, "k0", &PageRequest::default())
                .expect("history")
                .items
                .len()
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        go_tx.send(()).expect("go");
        folder.join().expect("folder");
        assert_eq!(reader.join().expect("reader"), 1, "the read saw the point");
    }

    #[test]
    fn deep_runs_fold_in_slices_by_points() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), false);
        let runs = new_runs(&store, 4);
        let db = store.sqlite().expect("sqlite");
        db.latest.paused.store(true, Ordering::Release);
        // A training loop's shape: few keys, many steps (1,000 points and 10 candidates a run).
        for run_id in &runs {
            for step in 1..=100 {
                store
                    .log_batch(run_id, &wide(10, step), &[], &[])
                    .expect("log");
            }
        }
        // 40 candidates in all would be one slice by keys; by points it is one run per slice.
        let size = latest::SliceSize {
            keys: 1_000,
            points: 1_000,
        };
        latest::fold_slices(db, size, 1).expect("one slice");
        assert_eq!(marked(&store), 3, "one run folded, three to go");
        latest::fold_slices(db, size, usize::MAX).expect("fold");
        assert_eq!(marked(&store), 0);
        assert_whole(&store, &runs, 10, 100);
    }

    /// What a later slice of a fold does to `run_id`'s candidates, and nothing else: they go
    /// into `latest_metrics` while its journaled points stay where they are. Returns how many.
    fn fold_candidates_only(db: &db::SqliteDb, run_id: &str) -> usize {
        let mut queue: std::collections::VecDeque<String> = [run_id.to_string()].into();
        let (_, taken) = db.latest.take_slice(&mut queue, Vec::new(), keys(1));
        db.write(|tx| {
            for (run_id, run) in &taken.runs {
                let candidates: Vec<&Metric> = run.latest.values().collect();
                tracking::upsert_latest_tx(tx, run_id, run.experiment_id, &candidates)?;
            }
            Ok(())
        })
        .expect("fold the candidates");
        taken.keys
    }

    #[test]
    fn a_fold_stopped_between_slices_leaves_a_store_that_reopens_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), false);
        let runs = new_runs(&store, 4);
        let db = store.sqlite().expect("sqlite");
        db.latest.paused.store(true, Ordering::Release);
        for step in 1..=3 {
            for run_id in &runs {
                store
                    .log_batch(run_id, &wide(50, step), &[], &[])
                    .expect("log");
            }
        }
        assert_eq!(marked(&store), 4);
        // Slices of 50 candidates: one run each. Stop after the first, as a crash would.
        latest::fold_slices(db, keys(50), 1).expect("one slice");
        assert_eq!(marked(&store), 3, "one run folded, three to go");
        let crash = tempfile::tempdir().expect("dir");
        copy_files(dir.path(), crash.path(), &CRASH_FILES);
        // This process finishes the fold in slices ...
        latest::fold_slices(db, keys(50), usize::MAX).expect("fold");
        assert_eq!(marked(&store), 0);
        assert_whole(&store, &runs, 50, 3);
        // ... and the image taken half-way recovers to the same.
        let reopened = open(crash.path(), false);
        assert_eq!(marked(&reopened), 0);
        assert_whole(&reopened, &runs, 50, 3);
    }

    #[test]
    fn journaled_runs_and_wide_runs_fold_in_slices() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let runs = new_runs(&store, 4);
        let db = store.sqlite().expect("sqlite");
        db.latest.paused.store(true, Ordering::Release);
        for step in 1..=3 {
            // Two runs log one metric at a time (the journal), two log wide batches (SQLite,
            // which spills the journal first).
            for run_id in &runs[..2] {
                for m in wide(5, step) {
                    store.log_batch(run_id, &[m], &[], &[]).expect("log");
                }
            }
            for run_id in &runs[2..] {
                store
                    .log_batch(run_id, &wide(300, step), &[], &[])
                    .expect("log");
            }
        }
        for run_id in &runs[..2] {
            store.log_batch(run_id, &wide(5, 4), &[], &[]).expect("log");
        }
        latest::fold_slices(db, keys(1), 1).expect("first slice");
        // The first slice took the journal, so its runs are whole already.
        for run_id in &runs[..2] {
            let run = store.sqlite().expect("sqlite").read(|tx| {
                Ok(tx.query(
                    "SELECT COUNT(*) FROM latest_metrics WHERE run_uuid = ? AND step = 4",
                    &[db::Val::from(run_id.as_str())],
                )?[0]
                    .int(0))
            });
            assert_eq!(run.expect("count"), 5);
        }
        db.latest.paused.store(false, Ordering::Release);
        assert_whole(&store, &runs[..2], 5, 4);
        assert_whole(&store, &runs[2..], 300, 3);
    }

    #[test]
    fn a_run_spilled_after_its_candidates_were_folded_still_has_its_history_moved() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let runs = new_runs(&store, 2);
        let db = store.sqlite().expect("sqlite");
        db.latest.paused.store(true, Ordering::Release);
        // Run 0 logs through the journal; its candidates are folded (as a later slice of a
        // fold would) while its journaled points stay in the journal.
        for step in 1..=3 {
            store
                .log_batch(&runs[0], &wide(1, step), &[], &[])
                .expect("log");
        }
        assert_eq!(fold_candidates_only(db, &runs[0]), 1);
        // A wide batch of run 1 goes through SQLite, spilling run 0's journal first.
        store
            .log_batch(&runs[1], &wide(300, 1), &[], &[])
            .expect("log");
        assert_eq!(marked(&store), 2);
        // The next fold moves run 0's spilled history too, though it has no candidates.
        latest::fold_slices(db, keys(2_000), usize::MAX).expect("fold");
        assert_eq!(marked(&store), 0);
        assert_whole(&store, &runs[..1], 1, 3);
        assert_whole(&store, &runs[1..], 300, 1);
    }

    #[test]
    fn points_left_in_the_journal_after_their_candidates_were_folded_are_still_read() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), true);
        let runs = new_runs(&store, 1);
        let db = store.sqlite().expect("sqlite");
        db.latest.paused.store(true, Ordering::Release);
        for step in 1..=3 {
            store
                .log_batch(&runs[0], &wide(2, step), &[], &[])
                .expect("log");
        }
        // A later slice of a fold takes the run's candidates; its points stay journaled and
        // nothing is buffered any more.
        fold_candidates_only(db, &runs[0]);
        assert!(!db.latest.has_pending());
        // A read folds the journal first all the same.
        assert_whole(&store, &runs, 2, 3);
    }
}
