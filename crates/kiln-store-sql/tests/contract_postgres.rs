//! The store contract suite on a real PostgreSQL, plus the PostgreSQL schema checks.
//!
//! Needs `KILN_TEST_PG_URL` (a superuser URL such as
//! `postgresql://postgres@127.0.0.1:54329/postgres`, e.g. from `eval "$(scripts/services.sh start)"`).
//! Every test creates its own database `kiln_t_<random>` there and drops it afterwards. Without
//! the variable the tests are skipped with a notice on stderr, or fail when
//! `KILN_REQUIRE_SERVICES=1`.

use std::ops::Deref;
use std::sync::{Arc, Barrier};

use kiln_store::{ExperimentStore, StoreError, TrackingStore};
use kiln_store_sql::{OpenOptions, SqlStore};

/// The admin URL, or `None` (after a notice) when PostgreSQL tests are skipped.
fn pg_url() -> Option<String> {
    match std::env::var("KILN_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("KILN_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "KILN_TEST_PG_URL is not set but KILN_REQUIRE_SERVICES=1: PostgreSQL tests must run. \
                 Start one with `eval \"$(scripts/services.sh start)\"` or set \
                 KILN_TEST_PG_URL=postgresql://user@host:port/db"
            );
            eprintln!("skipping PostgreSQL store test: KILN_TEST_PG_URL is not set");
            None
        }
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgresql", url));
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to KILN_TEST_PG_URL ({url}): {e}"))
}

/// A fresh, empty database on the test server; dropped (best effort) with the value.
struct TempDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TempDb {
    fn create(admin_url: &str) -> Self {
        let name = format!("kiln_t_{}", kiln_types::new_run_id());
        admin(admin_url)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Self {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
        }
    }

    fn client(&self) -> postgres::Client {
        admin(&self.url)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let name = &self.name;
            if client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .is_err()
            {
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
            }
        }
    }
}

/// A migrated store on its own database. The store closes before the database is dropped.
struct PgFixture {
    store: Option<SqlStore>,
    _db: TempDb,
}

impl Deref for PgFixture {
    type Target = SqlStore;
    fn deref(&self) -> &SqlStore {
        self.store.as_ref().expect("store is open until drop")
    }
}

impl Drop for PgFixture {
    fn drop(&mut self) {
        drop(self.store.take());
    }
}

fn migrate() -> OpenOptions {
    OpenOptions {
        migrate: true,
        pool_size: 2,
        journal: false,
    }
}

fn no_migrate() -> OpenOptions {
    OpenOptions {
        migrate: false,
        pool_size: 1,
        journal: false,
    }
}

fn pg_store() -> Option<PgFixture> {
    let url = pg_url()?;
    let db = TempDb::create(&url);
    let store = SqlStore::open(&db.url, &migrate()).expect("open migrated PostgreSQL store");
    assert_eq!(store.kind(), "postgresql");
    Some(PgFixture {
        store: Some(store),
        _db: db,
    })
}

kiln_store::contract_tests!(pg_store());

fn latest_version() -> i64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let uri = format!("sqlite:///{}", dir.path().join("v.db").display());
    let store = SqlStore::open(&uri, &OpenOptions::default()).expect("sqlite");
    store.schema_status().expect("status").latest
}

#[test]
fn pg_open_without_migrating_is_refused() {
    let Some(url) = pg_url() else { return };
    let db = TempDb::create(&url);
    let latest = latest_version();
    let err = SqlStore::open(&db.url, &no_migrate()).expect_err("an unmigrated database");
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("version 0") && msg.contains(&format!("version {latest}")),
        "the message names both versions: {msg}"
    );
    assert!(
        msg.contains("kiln db upgrade"),
        "the message says what to run: {msg}"
    );

    let unchecked = SqlStore::open_unchecked(&db.url).expect("open_unchecked");
    let status = unchecked.schema_status().expect("status");
    assert_eq!((status.current, status.latest), (0, latest));
    drop(unchecked);

    let store = SqlStore::open(&db.url, &migrate()).expect("migrate on open");
    assert_eq!(store.get_experiment("0").expect("default").name, "Default");
    drop(store);
    let store = SqlStore::open(&db.url, &no_migrate()).expect("an up-to-date database opens");
    let status = store.schema_status().expect("status");
    assert_eq!(status.current, status.latest);
    assert!(store.upgrade().expect("upgrade").is_empty());
}

#[test]
fn pg_refuses_newer_schema() {
    let Some(url) = pg_url() else { return };
    let db = TempDb::create(&url);
    let latest = {
        let store = SqlStore::open(&db.url, &migrate()).expect("migrate");
        store.schema_status().expect("status").latest
    };
    let newer = latest + 1;
    db.client()
        .execute(
            "INSERT INTO kiln_migrations (version, description, applied_at) VALUES ($1, 'from the future', 0)",
            &[&newer],
        )
        .expect("insert a future version");
    for options in [no_migrate(), migrate()] {
        let err = SqlStore::open(&db.url, &options).expect_err("a newer schema must be refused");
        assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("version {newer}")) && msg.contains(&format!("version {latest}")),
            "the message names both versions: {msg}"
        );
    }
}

#[test]
fn pg_concurrent_upgrades_apply_the_schema_once() {
    let Some(url) = pg_url() else { return };
    let db = TempDb::create(&url);
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let db_url = db.url.clone();
            std::thread::spawn(move || {
                let store = SqlStore::open_unchecked(&db_url).expect("open_unchecked");
                barrier.wait();
                store.upgrade()
            })
        })
        .collect();
    let mut applied: Vec<Vec<i64>> = Vec::new();
    for h in handles {
        applied.push(h.join().expect("thread").expect("every upgrade succeeds"));
    }
    let latest = latest_version();
    let all: Vec<i64> = (1..=latest).collect();
    let non_empty: Vec<&Vec<i64>> = applied.iter().filter(|a| !a.is_empty()).collect();
    assert_eq!(
        non_empty,
        vec![&all],
        "exactly one upgrade applied the migrations: {applied:?}"
    );

    let mut client = db.client();
    let rows = client
        .query("SELECT version FROM kiln_migrations ORDER BY version", &[])
        .expect("kiln_migrations");
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, all);
    let defaults: i64 = client
        .query_one("SELECT COUNT(*) FROM experiments", &[])
        .expect("count")
        .get(0);
    assert_eq!(defaults, 1, "the default experiment is seeded once");

    // Opening with --migrate from several threads at once also works.
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let db_url = db.url.clone();
            std::thread::spawn(move || SqlStore::open(&db_url, &migrate()).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("open with migrate");
    }
}

#[test]
fn pg_concurrent_open_with_migrate_on_empty_database() {
    let Some(url) = pg_url() else { return };
    let db = TempDb::create(&url);
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let db_url = db.url.clone();
            std::thread::spawn(move || {
                barrier.wait();
                SqlStore::open(&db_url, &migrate()).map(|s| s.schema_status())
            })
        })
        .collect();
    for h in handles {
        let status = h
            .join()
            .expect("thread")
            .expect("open with migrate")
            .expect("status");
        assert_eq!(status.current, status.latest);
    }
    let count: i64 = db
        .client()
        .query_one("SELECT COUNT(*) FROM kiln_migrations", &[])
        .expect("count")
        .get(0);
    assert_eq!(count, latest_version());
}

/// A database at schema version 1 is refused until upgraded; the upgrade backfills the registered
/// models' version counter so deleted version numbers are not reused.
#[test]
fn pg_upgrade_from_v1_backfills_version_counter() {
    use kiln_store::{NewModelVersion, RegistryStore};
    let Some(url) = pg_url() else { return };
    let db = TempDb::create(&url);
    let new_version = |store: &SqlStore| {
        store
            .create_model_version(&NewModelVersion {
                name: "m".into(),
                source: "s3://b/m".into(),
                ..NewModelVersion::default()
            })
            .expect("version")
    };
    {
        let store = SqlStore::open(&db.url, &migrate()).expect("migrate");
        store
            .create_registered_model("m", None, &[])
            .expect("model");
        for _ in 0..3 {
            new_version(&store);
        }
    }
    db.client()
        .batch_execute(
            "ALTER TABLE registered_models DROP COLUMN max_version; \
             DROP TABLE latest_pending; DROP TABLE metrics_staged; DROP TABLE metric_chunks; DROP TABLE metrics_staged_batches; DROP TABLE journal_applied; DROP TABLE run_model_inputs; DELETE FROM kiln_migrations WHERE version >= 2;",
        )
        .expect("downgrade to version 1");
    let latest = latest_version();
    let err = SqlStore::open(&db.url, &no_migrate()).expect_err("an out-of-date schema");
    let msg = err.to_string();
    assert!(
        msg.contains("version 1") && msg.contains(&format!("version {latest}")),
        "{msg}"
    );
    let store = SqlStore::open(&db.url, &migrate()).expect("upgrade");
    store.delete_model_version("m", "3").expect("delete v3");
    assert_eq!(new_version(&store).version, "4");
}
