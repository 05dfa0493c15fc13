//! Versioned, forward-only schema migrations. The applied versions live in the database's own
//! `kiln_migrations` table; a database newer than this binary is refused with both versions named.
//!
//! DDL is written once with `{ID}` (auto-increment primary key), `{REAL}` (double) and `{BLOB}`
//! (bytes) and expanded per dialect.

use kiln_store::{StoreError, StoreResult};

use crate::db::{Dialect, Tx, Val};

/// One schema step.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, in order. Never edit a released one; append a new one.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial tracking and registry schema",
        sql: r"
CREATE TABLE experiments (
    experiment_id {ID},
    name TEXT NOT NULL UNIQUE,
    artifact_location TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL,
    deleted_time BIGINT
);
CREATE TABLE experiment_tags (
    experiment_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (experiment_id, key)
);
CREATE TABLE runs (
    run_uuid TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT,
    artifact_uri TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    deleted_time BIGINT
);
CREATE INDEX runs_experiment_start ON runs (experiment_id, start_time DESC, run_uuid);
CREATE INDEX runs_lifecycle ON runs (lifecycle_stage, deleted_time);
CREATE TABLE params (
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE INDEX params_key_value ON params (key, value);
CREATE TABLE tags (
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE INDEX tags_key_value ON tags (key, value);
CREATE TABLE metrics (
    id {ID},
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value {REAL},
    is_nan BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    step BIGINT NOT NULL,
    model_id TEXT,
    dataset_name TEXT,
    dataset_digest TEXT
);
CREATE INDEX metrics_run_key_step ON metrics (run_uuid, key, step);
CREATE INDEX metrics_model ON metrics (model_id) WHERE model_id IS NOT NULL;
CREATE TABLE latest_metrics (
    run_uuid TEXT NOT NULL,
    experiment_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    value {REAL},
    is_nan BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    step BIGINT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE INDEX latest_metrics_exp_key_value ON latest_metrics (experiment_id, key, value);
CREATE TABLE datasets (
    dataset_uuid TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_type TEXT NOT NULL,
    source TEXT NOT NULL,
    dataset_schema TEXT,
    profile TEXT,
    UNIQUE (experiment_id, name, digest)
);
CREATE TABLE inputs (
    run_uuid TEXT NOT NULL,
    dataset_uuid TEXT NOT NULL,
    PRIMARY KEY (run_uuid, dataset_uuid)
);
CREATE TABLE input_tags (
    run_uuid TEXT NOT NULL,
    dataset_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, dataset_uuid, key)
);
CREATE TABLE run_outputs (
    run_uuid TEXT NOT NULL,
    model_id TEXT NOT NULL,
    step BIGINT NOT NULL,
    PRIMARY KEY (run_uuid, model_id)
);
CREATE TABLE logged_models (
    model_id TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    artifact_uri TEXT NOT NULL,
    status TEXT NOT NULL,
    source_run_id TEXT,
    creation_timestamp_ms BIGINT NOT NULL,
    last_updated_timestamp_ms BIGINT NOT NULL,
    model_type TEXT,
    lifecycle_stage TEXT NOT NULL
);
CREATE INDEX logged_models_exp_name ON logged_models (experiment_id, name);
CREATE INDEX logged_models_run ON logged_models (source_run_id);
CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE registered_models (
    name TEXT PRIMARY KEY,
    creation_timestamp BIGINT NOT NULL,
    last_updated_timestamp BIGINT NOT NULL,
    description TEXT
);
CREATE TABLE registered_model_tags (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE TABLE model_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    creation_timestamp BIGINT NOT NULL,
    last_updated_timestamp BIGINT NOT NULL,
    description TEXT NOT NULL,
    user_id TEXT,
    current_stage TEXT NOT NULL,
    source TEXT NOT NULL,
    run_id TEXT,
    run_link TEXT NOT NULL,
    status TEXT NOT NULL,
    model_id TEXT,
    PRIMARY KEY (name, version)
);
CREATE INDEX model_versions_run ON model_versions (run_id);
CREATE TABLE model_version_tags (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key)
);
CREATE TABLE registered_model_aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE alias_history (
    id {ID},
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT,
    previous_version BIGINT,
    timestamp BIGINT NOT NULL,
    user_id TEXT,
    reason TEXT
);
CREATE INDEX alias_history_name_alias ON alias_history (name, alias, id);
",
    },
    Migration {
        version: 2,
        description: "registered models remember their highest version number",
        // Versions are hard-deleted; without this, deleting the newest version would hand its
        // number to the next one (MLflow never reuses a version number).
        sql: r"
ALTER TABLE registered_models ADD COLUMN max_version BIGINT NOT NULL DEFAULT 0;
UPDATE registered_models SET max_version = COALESCE(
    (SELECT MAX(mv.version) FROM model_versions mv WHERE mv.name = registered_models.name), 0)
",
    },
    Migration {
        version: 3,
        description:
            "runs whose latest metric values are still being folded in (SQLite write-behind)",
        // SQLite applies latest-value upserts shortly after the history commit (see latest.rs);
        // a run listed here has history rows newer than its latest_metrics rows until then, and
        // opening the store recomputes those from history (crash recovery).
        sql: r"
CREATE TABLE latest_pending (run_uuid TEXT PRIMARY KEY)
",
    },
    Migration {
        version: 4,
        description: "unindexed staging of logged metric history (SQLite write-behind)",
        // SQLite's log-batch appends history here (no index: a batch of 1000 keys costs a few
        // pages instead of one page of the (run, key, step) index per key); the background fold
        // moves rows into `metrics` in index order, every page touched once per fold. Every
        // other store call folds first, so nothing reads `metrics` with rows still staged.
        // Unused on PostgreSQL.
        sql: r"
CREATE TABLE metrics_staged (
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value {REAL},
    is_nan BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    step BIGINT NOT NULL,
    model_id TEXT,
    dataset_name TEXT,
    dataset_digest TEXT
)
",
    },
    Migration {
        version: 5,
        description: "metric history packed into per-(run, key) chunks (SQLite)",
        // A training loop logs the same keys step after step; one row and one index entry per
        // point made the fold's index inserts most of the cost of a deep log-batch. The fold now
        // packs the plain points staged for each (run, key) into one row here (see chunks.rs);
        // points linked to a logged model or dataset stay rows in `metrics`, as does history
        // written before this version. Readers merge both. A log-batch stages its plain points
        // as one packed row of `metrics_staged_batches` instead of a row each in
        // `metrics_staged` (which keeps the linked ones); ordered by rowid, without AUTOINCREMENT's
        // extra page write per insert. Unused on PostgreSQL.
        sql: r"
CREATE TABLE metric_chunks (
    id {ID},
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    n BIGINT NOT NULL,
    points {BLOB} NOT NULL
);
CREATE INDEX metric_chunks_run_key ON metric_chunks (run_uuid, key, id);
CREATE TABLE metrics_staged_batches (
    run_uuid TEXT NOT NULL,
    n BIGINT NOT NULL,
    points {BLOB} NOT NULL
)
",
    },
    Migration {
        version: 6,
        description: "the highest metric-journal record folded in (SQLite)",
        // The server acknowledges small metric writes with an append to a journal file beside
        // the database (see journal.rs); the fold that stages them records the highest record
        // it took in the same transaction, so reopening after a crash replays only the rest.
        // Unused on PostgreSQL.
        sql: r"
CREATE TABLE journal_applied (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL);
INSERT INTO journal_applied (id, seq) VALUES (1, 0)
",
    },
    Migration {
        version: 7,
        description: "logged models a run read (runs/log-inputs `models`)",
        sql: r"
CREATE TABLE run_model_inputs (
    run_uuid TEXT NOT NULL,
    model_id TEXT NOT NULL,
    PRIMARY KEY (run_uuid, model_id)
)
",
    },
];

/// The schema version this binary writes.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn expand(sql: &str, dialect: Dialect) -> String {
    let (id, real, blob) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "BLOB"),
        Dialect::Postgres => (
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "DOUBLE PRECISION",
            "BYTEA",
        ),
    };
    sql.replace("{ID}", id)
        .replace("{REAL}", real)
        .replace("{BLOB}", blob)
}

pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS kiln_migrations (\
    version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// The highest applied version, or 0 for an empty database. Reads only: a replica that checks
/// while another one migrates must not race it to create the table (on PostgreSQL two
/// `CREATE TABLE IF NOT EXISTS` at once collide on the catalog's unique index).
pub(crate) fn current_version(tx: &mut dyn Tx) -> StoreResult<i64> {
    let exists = match tx.dialect() {
        Dialect::Sqlite => tx.query_opt(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kiln_migrations'",
            &[],
        )?,
        Dialect::Postgres => tx.query_opt(
            "SELECT 1 WHERE to_regclass('kiln_migrations') IS NOT NULL",
            &[],
        )?,
    };
    if exists.is_none() {
        return Ok(0);
    }
    let row = tx.query_opt("SELECT MAX(version) FROM kiln_migrations", &[])?;
    Ok(row.and_then(|r| r.opt_int(0)).unwrap_or(0))
}

/// Refuse a schema newer than this binary.
pub(crate) fn check_not_newer(current: i64) -> StoreResult<()> {
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::Schema(format!(
            "The database schema is at version {current}, newer than this kiln binary supports \
             (version {latest}). Upgrade kiln to open it."
        )));
    }
    Ok(())
}

/// Apply every pending migration inside the caller's transaction. Returns the versions applied.
pub(crate) fn upgrade(tx: &mut dyn Tx) -> StoreResult<Vec<i64>> {
    tx.exec(CREATE_MIGRATIONS_TABLE, &[])?;
    let current = current_version(tx)?;
    check_not_newer(current)?;
    let dialect = tx.dialect();
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for stmt in expand(m.sql, dialect).split(';') {
            let stmt = stmt.trim();
            if !stmt.is_empty() {
                tx.exec(stmt, &[])?;
            }
        }
        if m.version == 1 {
            seed_default_experiment(tx)?;
        }
        tx.exec(
            "INSERT INTO kiln_migrations (version, description, applied_at) VALUES (?, ?, ?)",
            &[
                Val::Int(m.version),
                Val::from(m.description),
                Val::Int(kiln_types::now_ms()),
            ],
        )?;
        applied.push(m.version);
    }
    Ok(applied)
}

fn seed_default_experiment(tx: &mut dyn Tx) -> StoreResult<()> {
    let now = kiln_types::now_ms();
    tx.exec(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
         VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', ?, ?)",
        &[Val::Int(now), Val::Int(now)],
    )?;
    Ok(())
}
