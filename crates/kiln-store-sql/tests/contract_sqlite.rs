//! The store contract suite on SQLite (a fresh database file in a temp dir per test), plus the
//! SQLite schema checks: reopening keeps data, a newer schema is refused.

use std::ops::Deref;

use kiln_store::{ExperimentStore, RunStore, StoreError, TrackingStore};
use kiln_store_sql::{OpenOptions, SqlStore};
use kiln_types::filter::Target;
use kiln_types::Metric;

/// A store on a fresh SQLite file; the directory goes away with it.
struct SqliteFixture {
    store: SqlStore,
    _dir: tempfile::TempDir,
}

impl Deref for SqliteFixture {
    type Target = SqlStore;
    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

fn uri(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("kiln.db").display())
}

fn sqlite_store() -> Option<SqliteFixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("open SQLite store");
    Some(SqliteFixture { store, _dir: dir })
}

kiln_store::contract_tests!(sqlite_store());

#[test]
fn sqlite_reopen_keeps_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (exp_id, run_id) = {
        let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("open");
        assert_eq!(store.kind(), "sqlite");
        let exp_id = store
            .create_experiment("persisted", None, &[])
            .expect("create experiment");
        let run = store
            .create_run(&kiln_store::NewRun {
                experiment_id: exp_id.clone(),
                user_id: "u".into(),
                run_name: Some("kept".into()),
                start_time: 1,
                tags: Vec::new(),
            })
            .expect("create run");
        store
            .log_batch(
                &run.info.run_id,
                &[Metric::new("m", 0.5, 1, 0)],
                &[kiln_types::Param {
                    key: "p".into(),
                    value: "v".into(),
                }],
                &[],
            )
            .expect("log");
        (exp_id, run.info.run_id)
    };
    let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("reopen");
    let status = store.schema_status().expect("schema status");
    assert_eq!(status.current, status.latest);
    assert!(
        store.upgrade().expect("upgrade").is_empty(),
        "nothing to apply"
    );
    assert_eq!(
        store.get_experiment(&exp_id).expect("exp").name,
        "persisted"
    );
    let run = store.get_run(&run_id).expect("run");
    assert_eq!(run.info.run_name, "kept");
    assert_eq!(run.data.metrics.len(), 1);
    assert_eq!(run.data.params.len(), 1);
    assert_eq!(store.get_experiment("0").expect("default").name, "Default");
}

#[test]
fn sqlite_refuses_newer_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let latest = {
        let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("open");
        store.schema_status().expect("status").latest
    };
    let newer = latest + 1;
    {
        let conn = rusqlite::Connection::open(dir.path().join("kiln.db")).expect("raw open");
        conn.execute(
            "INSERT INTO kiln_migrations (version, description, applied_at) VALUES (?1, 'from the future', 0)",
            [newer],
        )
        .expect("insert future version");
    }
    let err = SqlStore::open(&uri(&dir), &OpenOptions::default())
        .expect_err("a newer schema must be refused");
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&newer.to_string()) && msg.contains(&latest.to_string()),
        "the message names both versions: {msg}"
    );
}

/// A database at schema version 1 (before registered models kept a version counter) upgrades on
/// open, and the counter is backfilled so deleted version numbers are not reused.
#[test]
fn sqlite_upgrade_from_v1_backfills_version_counter() {
    use kiln_store::{NewModelVersion, RegistryStore};
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("open");
        store
            .create_registered_model("m", None, &[])
            .expect("model");
        for _ in 0..3 {
            store
                .create_model_version(&NewModelVersion {
                    name: "m".into(),
                    source: "s3://b/m".into(),
                    ..NewModelVersion::default()
                })
                .expect("version");
        }
    }
    {
        // Turn the file back into a version-1 database.
        let conn = rusqlite::Connection::open(dir.path().join("kiln.db")).expect("raw open");
        conn.execute_batch(
            "ALTER TABLE registered_models DROP COLUMN max_version; DROP TABLE latest_pending; DROP TABLE metrics_staged; DROP TABLE metric_chunks; DROP TABLE metrics_staged_batches; DROP TABLE journal_applied; DROP TABLE run_model_inputs; \
             DELETE FROM kiln_migrations WHERE version >= 2;",
        )
        .expect("downgrade");
    }
    let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("reopen upgrades");
    let status = store.schema_status().expect("status");
    assert_eq!(status.current, status.latest);
    store.delete_model_version("m", "3").expect("delete v3");
    let v = store
        .create_model_version(&NewModelVersion {
            name: "m".into(),
            source: "s3://b/m".into(),
            ..NewModelVersion::default()
        })
        .expect("version");
    assert_eq!(v.version, "4");
}

/// A log-batch acknowledged just before a crash has its history committed but its latest values
/// possibly not folded in yet (SQLite write-behind): reopening recomputes them from history.
#[test]
fn sqlite_recovers_unfolded_latest_values_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run_id = {
        let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("open");
        let exp_id = store.create_experiment("e", None, &[]).expect("exp");
        let run = store
            .create_run(&kiln_store::NewRun {
                experiment_id: exp_id,
                user_id: "u".into(),
                run_name: None,
                start_time: 1,
                tags: Vec::new(),
            })
            .expect("run");
        store
            .log_batch(
                &run.info.run_id,
                &[Metric::new("loss", 0.9, 10, 1)],
                &[],
                &[],
            )
            .expect("log");
        // f1 at step 9 is folded (packed history, latest value) before the crash.
        store
            .log_batch(&run.info.run_id, &[Metric::new("f1", 0.4, 90, 9)], &[], &[])
            .expect("log f1");
        store.get_run(&run.info.run_id).expect("fold");
        run.info.run_id
    };
    {
        // What a crash leaves: newer history rows and the run's marker, latest_metrics stale.
        // (Unfolded rows in `metrics` are what a v3 store left; v4 on stages them.) The f1 row
        // at step 3 is older than the folded step 9 and must not take its place.
        let conn = rusqlite::Connection::open(dir.path().join("kiln.db")).expect("raw open");
        conn.execute_batch(&format!(
            "INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES \
               ('{run_id}', 'loss', 0.5, 0, 20, 2), ('{run_id}', 'loss', 0.7, 0, 20, 2), \
               ('{run_id}', 'loss', 0.1, 0, 5, 1), ('{run_id}', 'acc', NULL, 1, 30, 3), \
               ('{run_id}', 'f1', 0.8, 0, 30, 3); \
             INSERT INTO metrics_staged (run_uuid, key, value, is_nan, timestamp, step) VALUES \
               ('{run_id}', 'lr', 0.3, 0, 40, 4), ('{run_id}', 'lr', 0.2, 0, 50, 5); \
             INSERT INTO latest_pending (run_uuid) VALUES ('{run_id}');"
        ))
        .expect("simulate a crash");
    }
    let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("reopen");
    let run = store.get_run(&run_id).expect("run");
    let mut got: Vec<(String, i64, i64)> = run
        .data
        .metrics
        .iter()
        .map(|m| (m.key.clone(), m.step, (m.value * 10.0).round() as i64))
        .collect();
    got.sort();
    // loss: step 2 wins over step 1, and the larger value wins the tie at step 2.
    assert_eq!(got[2], ("loss".to_string(), 2, 7));
    assert_eq!(got[0].0, "acc");
    assert_eq!(got[1], ("f1".to_string(), 9, 4));
    // Staged history (committed, not yet moved at the crash) is moved and counted.
    assert_eq!(got[3], ("lr".to_string(), 5, 2));
    let page = kiln_store::PageRequest::default();
    let history = store
        .get_metric_history(&run_id, "lr", &page)
        .expect("history");
    let steps: Vec<i64> = history.items.iter().map(|m| m.step).collect();
    assert_eq!(steps, [4, 5]);
    // Row history and packed history merge in step order.
    let f1 = store
        .get_metric_history(&run_id, "f1", &page)
        .expect("history");
    let steps: Vec<i64> = f1.items.iter().map(|m| m.step).collect();
    assert_eq!(steps, [3, 9]);
    assert!(run
        .data
        .metrics
        .iter()
        .any(|m| m.key == "acc" && m.value.is_nan()));
}

/// Values logged through the write-behind path are visible to the very next read and search.
#[test]
fn sqlite_latest_values_are_read_your_writes() {
    let Some(store) = sqlite_store() else { return };
    let exp_id = store.create_experiment("ryw", None, &[]).expect("exp");
    let mut ids = Vec::new();
    for i in 0..3 {
        let run = store
            .create_run(&kiln_store::NewRun {
                experiment_id: exp_id.clone(),
                user_id: "u".into(),
                run_name: None,
                start_time: 1,
                tags: Vec::new(),
            })
            .expect("run");
        let metrics: Vec<Metric> = (0..50)
            .map(|s| Metric::new("acc", f64::from(i * 100 + s), 1, i64::from(s)))
            .collect();
        store
            .log_batch(&run.info.run_id, &metrics, &[], &[])
            .expect("log");
        ids.push(run.info.run_id);
    }
    let page = store
        .search_runs(&kiln_store::RunQuery {
            experiment_ids: vec![exp_id],
            filter: kiln_types::filter::parse_filter("metrics.acc >= 149", Target::Runs)
                .expect("filter"),
            order_by: vec![
                kiln_types::filter::parse_order_by("metrics.acc DESC", Target::Runs)
                    .expect("order by"),
            ],
            ..Default::default()
        })
        .expect("search");
    let found: Vec<&str> = page.items.iter().map(|r| r.info.run_id.as_str()).collect();
    assert_eq!(found, vec![ids[2].as_str(), ids[1].as_str()]);
}

/// The fold packs plain history into one chunk per (run, key); points linked to a logged model
/// stay rows (logged-model search reads them). History reads merge both, in step order, and
/// page through the merge.
#[test]
fn sqlite_history_is_packed_per_key_and_merged_on_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("open");
    let exp_id = store.create_experiment("packed", None, &[]).expect("exp");
    let run = store
        .create_run(&kiln_store::NewRun {
            experiment_id: exp_id,
            user_id: "u".into(),
            run_name: None,
            start_time: 1,
            tags: Vec::new(),
        })
        .expect("run");
    let id = run.info.run_id;
    // Three batches of 10 keys x 100 steps, logged newest-first so the read has to sort.
    for b in (0..3i64).rev() {
        let metrics: Vec<Metric> = (0..100i64)
            .flat_map(|s| {
                (0..10).map(move |k| {
                    #[allow(clippy::cast_precision_loss)]
                    let v = (b * 100 + s) as f64;
                    Metric::new(format!("m{k}"), v, 1_000 + b, b * 100 + s)
                })
            })
            .collect();
        store.log_batch(&id, &metrics, &[], &[]).expect("log");
        store.get_run(&id).expect("fold");
    }
    let mut linked = Metric::new("m0", -1.0, 5, 150);
    linked.model_id = Some("m-abc".into());
    store
        .log_batch(&id, &[linked], &[], &[])
        .expect("log linked");

    let all = store
        .get_metric_history(
            &id,
            "m0",
            &kiln_store::PageRequest {
                max_results: 10_000,
                offset: 0,
            },
        )
        .expect("history");
    assert_eq!(all.items.len(), 301);
    assert!(all.next_page_token.is_none());
    let steps: Vec<i64> = all.items.iter().map(|m| m.step).collect();
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    assert_eq!(steps, sorted);
    let at150: Vec<(f64, Option<&str>)> = all
        .items
        .iter()
        .filter(|m| m.step == 150)
        .map(|m| (m.value, m.model_id.as_deref()))
        .collect();
    assert_eq!(at150, [(-1.0, Some("m-abc")), (150.0, None)]);
    // Pages of the merged history.
    let p2 = store
        .get_metric_history(
            &id,
            "m0",
            &kiln_store::PageRequest {
                max_results: 100,
                offset: 100,
            },
        )
        .expect("page 2");
    assert_eq!(p2.items.len(), 100);
    assert_eq!(p2.items[0].step, steps[100]);
    assert!(p2.next_page_token.is_some());

    let conn = rusqlite::Connection::open(dir.path().join("kiln.db")).expect("raw open");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(
        count("SELECT COUNT(*) FROM metric_chunks"),
        30,
        "one chunk per key per fold"
    );
    assert_eq!(count("SELECT SUM(n) FROM metric_chunks"), 3_000);
    assert_eq!(
        count("SELECT COUNT(*) FROM metrics"),
        1,
        "only the linked point is a row"
    );
    assert_eq!(count("SELECT COUNT(*) FROM metrics_staged"), 0);
}

/// A store from before deleting a model removed its alias history still holds that history
/// under the name: a model created with the name again does not inherit it.
#[test]
fn a_model_created_over_left_over_alias_history_starts_clean() {
    use kiln_store::RegistryStore;
    let dir = tempfile::tempdir().expect("temp dir");
    drop(SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("open"));
    {
        let conn = rusqlite::Connection::open(dir.path().join("kiln.db")).expect("raw open");
        conn.execute(
            "INSERT INTO alias_history (name, alias, version, previous_version, timestamp, user_id, reason) \
             VALUES ('churn', 'champion', 3, 2, 1, 'ci', 'promoted')",
            [],
        )
        .expect("left-over history");
    }
    let store = SqlStore::open(&uri(&dir), &OpenOptions::default()).expect("open");
    store
        .create_registered_model("churn", None, &[])
        .expect("model");
    assert!(store
        .alias_history("churn", "champion")
        .expect("history")
        .is_empty());
}
