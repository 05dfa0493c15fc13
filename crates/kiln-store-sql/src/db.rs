//! A thin layer over the two SQL drivers so the store logic is written once: values ([`Val`]),
//! rows, a transaction handle ([`Tx`]) and the per-dialect differences ([`Dialect`]).
//!
//! SQL is written with `?` placeholders; the PostgreSQL side rewrites them to `$n`.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use kiln_store::{StoreError, StoreResult};

/// A SQL value crossing the driver boundary.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(s)
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Text(s.clone())
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Real(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(i64::from(v))
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(crate) Vec<Val>);

impl Row {
    pub(crate) fn text(&self, i: usize) -> String {
        match self.0.get(i) {
            Some(Val::Text(s)) => s.clone(),
            Some(Val::Int(v)) => v.to_string(),
            Some(Val::Real(v)) => v.to_string(),
            Some(Val::Blob(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        }
    }
    pub(crate) fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Val::Null) | None => None,
            _ => Some(self.text(i)),
        }
    }
    pub(crate) fn int(&self, i: usize) -> i64 {
        self.opt_int(i).unwrap_or(0)
    }
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn opt_int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Val::Int(v)) => Some(*v),
            Some(Val::Real(v)) => Some(*v as i64),
            Some(Val::Text(s)) => s.parse().ok(),
            _ => None,
        }
    }
    pub(crate) fn blob(&self, i: usize) -> &[u8] {
        match self.0.get(i) {
            Some(Val::Blob(b)) => b,
            Some(Val::Text(s)) => s.as_bytes(),
            _ => &[],
        }
    }
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn opt_real(&self, i: usize) -> Option<f64> {
        match self.0.get(i) {
            Some(Val::Real(v)) => Some(*v),
            Some(Val::Int(v)) => Some(*v as f64),
            Some(Val::Text(s)) => s.parse().ok(),
            _ => None,
        }
    }
}

/// The SQL differences between the backends that the store logic needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A case-insensitive LIKE of `col` against the next placeholder.
    pub(crate) fn ilike(self, col: &str) -> String {
        match self {
            Dialect::Sqlite => format!("LOWER({col}) LIKE LOWER(?)"),
            Dialect::Postgres => format!("{col} ILIKE ?"),
        }
    }
    /// `NULLS LAST` where the dialect would otherwise put NULLs first.
    pub(crate) fn nulls_last(self, ascending: bool) -> &'static str {
        match (self, ascending) {
            (Dialect::Sqlite, true) | (Dialect::Postgres, false) => " NULLS LAST",
            _ => "",
        }
    }
}

/// A transaction on either backend.
pub(crate) trait Tx {
    fn exec(&mut self, sql: &str, params: &[Val]) -> StoreResult<u64>;
    fn query(&mut self, sql: &str, params: &[Val]) -> StoreResult<Vec<Row>>;
    fn dialect(&self) -> Dialect;

    fn query_opt(&mut self, sql: &str, params: &[Val]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

fn db_err(context: &str, err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend(format!("Database error while {context}"), err)
}

// ---------------------------------------------------------------- SQLite

pub(crate) struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
}

fn to_sqlite(v: &Val) -> rusqlite::types::Value {
    match v {
        Val::Null => rusqlite::types::Value::Null,
        Val::Int(i) => rusqlite::types::Value::Integer(*i),
        Val::Real(f) => rusqlite::types::Value::Real(*f),
        Val::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Val::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(f) => Val::Real(f),
        ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Val::Blob(b.to_vec()),
    }
}

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Val]) -> StoreResult<u64> {
        let mut stmt = self
            .tx
            .prepare_cached(sql)
            .map_err(|e| map_prepare_err("preparing a statement", e))?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))
            .map_err(map_sqlite_err)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> StoreResult<Vec<Row>> {
        let mut stmt = self
            .tx
            .prepare_cached(sql)
            .map_err(|e| map_prepare_err("preparing a query", e))?;
        let cols = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter().map(to_sqlite)))
            .map_err(map_sqlite_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_sqlite_err)? {
            let mut vals = Vec::with_capacity(cols);
            for i in 0..cols {
                vals.push(row.get_ref(i).map(from_sqlite).unwrap_or(Val::Null));
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

fn map_sqlite_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::ConstraintViolation {
            return StoreError::already_exists(format!("Constraint violated: {e}"));
        }
    }
    db_err("running a statement", e)
}

/// SQLite refuses a statement with more parameters than it can bind when preparing it.
fn map_prepare_err(what: &'static str, e: rusqlite::Error) -> StoreError {
    if e.to_string().contains("too many SQL variables") {
        return too_many_values();
    }
    db_err(what, e)
}

/// The most parameters one PostgreSQL statement can bind (the protocol counts them in an i16).
const PG_MAX_PARAMS: usize = 65_535;

/// A request naming more values (experiment ids, `IN (…)` items) than one SQL statement can
/// bind: the client's to split, not a server fault.
fn too_many_values() -> StoreError {
    StoreError::invalid(
        "The request names too many values (experiment ids, IN (...) items) for one query: split it into smaller requests",
    )
}

/// How many WAL frames (pages; 4 KiB each by default) may pile up before a checkpoint makes sure
/// the next write starts the WAL over (see [`SqliteDb::checkpoint`]): about 32 MiB.
const WAL_RESTART_FRAMES: i64 = 8192;

/// `PRAGMA wal_checkpoint(PASSIVE)` on `conn`: the frames in the WAL and how many of them are
/// now in the database file.
fn passive_checkpoint(conn: &rusqlite::Connection) -> StoreResult<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    })
    .map_err(|e| db_err("checkpointing the WAL", e))
}

/// One writer connection and a small pool of readers over a WAL database.
pub(crate) struct SqliteDb {
    writer: Mutex<rusqlite::Connection>,
    readers: Pool<rusqlite::Connection>,
    /// Latest metric values committed to history but not yet folded in (see `latest.rs`).
    pub(crate) latest: crate::latest::LatestBuffer,
    /// The metric journal, when this process owns one (see `journal.rs`); set at open, or
    /// later when the process that held it stops (see [`SqliteDb::journal_wanted`]).
    pub(crate) journal: std::sync::OnceLock<crate::journal::Journal>,
    /// The database path, when this process wants the journal and another process held it at
    /// open: the background thread keeps trying to take it over (`latest::take_over_journal`).
    pub(crate) journal_wanted: Option<std::path::PathBuf>,
    /// Runs known to be active, for the journal's check without a read transaction.
    pub(crate) active_runs: ActiveRuns,
}

/// Runs seen active (run id → experiment id). Cleared whenever a run's or an experiment's
/// lifecycle changes in this process, and every second for changes made by other processes;
/// an answer read before a clear is not cached after it.
#[derive(Default)]
pub(crate) struct ActiveRuns {
    inner: Mutex<(u64, std::collections::HashMap<String, i64>)>,
}

/// Enough for every run a server logs to at once; past it the cache starts over.
const ACTIVE_RUNS_MAX: usize = 100_000;

impl ActiveRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, std::collections::HashMap<String, i64>)> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The experiment of `run_id` if it is known active, and the generation to pass to
    /// [`insert`](Self::insert) after looking it up.
    pub(crate) fn get(&self, run_id: &str) -> (Option<i64>, u64) {
        let g = self.lock();
        (g.1.get(run_id).copied(), g.0)
    }

    pub(crate) fn insert(&self, run_id: &str, experiment_id: i64, generation: u64) {
        let mut g = self.lock();
        if g.0 != generation {
            return;
        }
        if g.1.len() >= ACTIVE_RUNS_MAX {
            g.1.clear();
        }
        g.1.insert(run_id.to_string(), experiment_id);
    }

    pub(crate) fn forget_all(&self) {
        let mut g = self.lock();
        g.0 += 1;
        g.1.clear();
    }
}

impl SqliteDb {
    pub(crate) fn open(
        path: &std::path::Path,
        readers: usize,
        journal: Option<crate::journal::Journal>,
        journal_wanted: Option<std::path::PathBuf>,
    ) -> StoreResult<Self> {
        let open = || -> StoreResult<rusqlite::Connection> {
            let conn = rusqlite::Connection::open(path)
                .map_err(|e| db_err(&format!("opening SQLite database `{}`", path.display()), e))?;
            conn.busy_timeout(std::time::Duration::from_secs(30))
                .map_err(|e| db_err("setting busy_timeout", e))?;
            // WAL + synchronous=NORMAL: a commit is durable once it returns as far as a process
            // crash (SIGKILL) is concerned; only an OS crash can lose the last commits.
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF; \
                 PRAGMA case_sensitive_like=ON; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY;",
            )
            .map_err(|e| db_err("configuring SQLite", e))?;
            conn.set_prepared_statement_cache_capacity(256);
            Ok(conn)
        };
        let writer = open()?;
        // Checkpoints run on the background thread (see `checkpoint`), off the request path;
        // the writer only checkpoints itself as a safety net if that thread falls far behind.
        writer
            .execute_batch("PRAGMA wal_autocheckpoint=32768;")
            .map_err(|e| db_err("configuring SQLite", e))?;
        let mut pool = Vec::new();
        for _ in 0..readers.max(1) {
            pool.push(open()?);
        }
        Ok(Self {
            writer: Mutex::new(writer),
            readers: Pool::new(pool),
            latest: crate::latest::LatestBuffer::default(),
            journal: journal.map_or_else(std::sync::OnceLock::new, std::sync::OnceLock::from),
            journal_wanted,
            active_runs: ActiveRuns::default(),
        })
    }

    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        self.write_then(f, |_| ())
    }

    /// Run `f` in a write transaction, then `after` with its result once committed, still
    /// holding the writer lock (nothing else writes in between).
    pub(crate) fn write_then<T>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>,
        after: impl FnOnce(&T),
    ) -> StoreResult<T> {
        let mut conn = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::transact(&mut conn, f, after)
    }

    /// Whether metric batches wait in the journal (appended, not yet staged or folded).
    pub(crate) fn has_journaled(&self) -> bool {
        self.journal.get().is_some_and(|j| j.has_entries())
    }

    /// Hold the writer (tests: no fold or commit can run meanwhile).
    #[cfg(test)]
    pub(crate) fn hold_writer(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`write_then`](Self::write_then) if no other write holds the writer right now, else
    /// `None` (nothing done).
    pub(crate) fn try_write_then<T>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>,
        after: impl FnOnce(&T),
    ) -> Option<StoreResult<T>> {
        let mut conn = match self.writer.try_lock() {
            Ok(conn) => conn,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Self::transact(&mut conn, f, after))
    }

    fn transact<T>(
        conn: &mut rusqlite::Connection,
        f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>,
        after: impl FnOnce(&T),
    ) -> StoreResult<T> {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_err("starting a transaction", e))?;
        let mut stx = SqliteTx { tx };
        let out = f(&mut stx)?;
        stx.tx.commit().map_err(|e| db_err("committing", e))?;
        after(&out);
        Ok(out)
    }

    /// Copy committed WAL frames into the database file (on the caller's thread: the
    /// background one), and keep the WAL from growing without bound.
    ///
    /// The copy runs on a reader connection, so writes go on meanwhile: a checkpoint syncs the
    /// WAL and then the database file, and on this kind of disk one sync can take anything from
    /// 1 to 60 ms, which a request waiting for the writer would otherwise sit through, ten times
    /// a second under steady logging. Writes that land during the copy leave frames behind it,
    /// and SQLite only starts the WAL over from its beginning when every frame has been copied;
    /// so once the WAL holds more than [`WAL_RESTART_FRAMES`], a second checkpoint runs under the
    /// writer lock (nothing else writes, so it completes and copies only what the first one
    /// missed) and the next write restarts the WAL.
    pub(crate) fn checkpoint(&self) -> StoreResult<()> {
        self.checkpoint_with(WAL_RESTART_FRAMES).map(|_| ())
    }

    /// The checkpoint, given the restart threshold; returns the frames in the WAL it found.
    fn checkpoint_with(&self, restart_frames: i64) -> StoreResult<i64> {
        // `log` counts the frames as of this checkpoint's start; writes during it add more, so
        // only a checkpoint that no write overlaps tells whether the WAL can start over.
        let (log, _) = passive_checkpoint(&self.readers.get())?;
        if log > restart_frames {
            let conn = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            passive_checkpoint(&conn)?;
        }
        Ok(log)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        let mut guard = self.readers.get();
        let tx = guard
            .transaction()
            .map_err(|e| db_err("starting a read transaction", e))?;
        let mut stx = SqliteTx { tx };
        let out = f(&mut stx)?;
        drop(stx);
        Ok(out)
    }
}

// ---------------------------------------------------------------- PostgreSQL

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match self {
            Val::Null => Ok(postgres::types::IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_string().to_sql(ty, out),
            },
            Val::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                #[allow(clippy::cast_possible_truncation)]
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_string().to_sql(ty, out),
            },
            Val::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                Type::FLOAT8 => s.parse::<f64>()?.to_sql(ty, out),
                _ => s.to_sql(ty, out),
            },
            Val::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> postgres::types::FromSql<'a> for Val {
    fn from_sql(
        ty: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        Ok(match *ty {
            Type::INT8 => Val::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Val::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Val::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Val::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Val::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Val::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::BYTEA => Val::Blob(raw.to_vec()),
            _ => Val::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(
        _: &postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Val::Null)
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
}

/// Rewrite `?` placeholders to `$1, $2, …`.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) struct PgConn {
    client: postgres::Client,
    cache: HashMap<String, postgres::Statement>,
}

pub(crate) struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    cache: &'a mut HashMap<String, postgres::Statement>,
}

impl<'a> PgTx<'a> {
    pub(crate) fn new(
        tx: postgres::Transaction<'a>,
        cache: &'a mut HashMap<String, postgres::Statement>,
    ) -> Self {
        Self { tx, cache }
    }

    pub(crate) fn commit(self) -> StoreResult<()> {
        self.tx.commit().map_err(map_pg_err)
    }

    fn stmt(&mut self, sql: &str) -> StoreResult<postgres::Statement> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.tx.prepare(&pg_sql(sql)).map_err(map_pg_err)?;
        if self.cache.len() > 512 {
            self.cache.clear();
        }
        self.cache.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }
}

fn pg_params(params: &[Val]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl Tx for PgTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Val]) -> StoreResult<u64> {
        if params.len() > PG_MAX_PARAMS {
            return Err(too_many_values());
        }
        let stmt = self.stmt(sql)?;
        self.tx
            .execute(&stmt, &pg_params(params))
            .map_err(map_pg_err)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> StoreResult<Vec<Row>> {
        if params.len() > PG_MAX_PARAMS {
            return Err(too_many_values());
        }
        let stmt = self.stmt(sql)?;
        let rows = self
            .tx
            .query(&stmt, &pg_params(params))
            .map_err(map_pg_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut vals = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                vals.push(row.try_get::<_, Val>(i).map_err(map_pg_err)?);
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

fn map_pg_err(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if *db.code() == postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::already_exists(format!("Constraint violated: {}", db.message()));
        }
        // A NUL in a text value (the HTTP layer refuses them; this catches any other way in).
        if *db.code() == postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE {
            return StoreError::invalid(format!("Invalid value: {}", db.message()));
        }
        if *db.code() == postgres::error::SqlState::PROGRAM_LIMIT_EXCEEDED {
            return too_many_values();
        }
    }
    db_err("running a statement", e)
}

/// A pool of PostgreSQL connections.
pub(crate) struct PgDb {
    pool: Pool<PgConn>,
    url: String,
}

impl PgDb {
    pub(crate) fn connect(url: &str, size: usize) -> StoreResult<Self> {
        let mut conns = Vec::new();
        for _ in 0..size.max(1) {
            conns.push(PgConn {
                client: pg_connect(url)?,
                cache: HashMap::new(),
            });
        }
        Ok(Self {
            pool: Pool::new(conns),
            url: url.to_string(),
        })
    }

    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        let mut guard = self.pool.get();
        if guard.client.is_closed() {
            *guard = PgConn {
                client: pg_connect(&self.url)?,
                cache: HashMap::new(),
            };
        }
        let PgConn { client, cache } = &mut *guard;
        let tx = client.transaction().map_err(map_pg_err)?;
        let mut ptx = PgTx { tx, cache };
        let out = f(&mut ptx)?;
        ptx.tx.commit().map_err(map_pg_err)?;
        Ok(out)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        self.write(f)
    }

    /// Run `f` on a plain connection outside a transaction (migrations take an advisory lock).
    pub(crate) fn with_client<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut guard = self.pool.get();
        f(&mut guard.client)
    }
}

pub(crate) fn pg_connect(url: &str) -> StoreResult<postgres::Client> {
    postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| db_err(&format!("connecting to PostgreSQL at `{}`", redact(url)), e))
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

// ---------------------------------------------------------------- pool

/// A fixed set of connections handed out one at a time.
pub(crate) struct Pool<C> {
    items: Mutex<Vec<C>>,
    ready: Condvar,
}

pub(crate) struct PoolGuard<'a, C> {
    pool: &'a Pool<C>,
    item: Option<C>,
}

impl Drop for PgDb {
    /// `postgres::Client` closes by running its own tokio runtime, which panics (and, in a
    /// destructor during unwinding, aborts) on a thread inside another runtime: the server's
    /// last reference to the store goes when its async `main` ends. So the connections are
    /// closed on a thread of their own.
    fn drop(&mut self) {
        let conns = std::mem::take(
            &mut *self
                .pool
                .items
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if conns.is_empty() {
            return;
        }
        std::thread::scope(|s| {
            s.spawn(move || drop(conns));
        });
    }
}

impl<C> Pool<C> {
    fn new(items: Vec<C>) -> Self {
        Self {
            items: Mutex::new(items),
            ready: Condvar::new(),
        }
    }

    fn get(&self) -> PoolGuard<'_, C> {
        let mut items = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(item) = items.pop() {
                return PoolGuard {
                    pool: self,
                    item: Some(item),
                };
            }
            items = self
                .ready
                .wait(items)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl<C> std::ops::Deref for PoolGuard<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.item.as_ref().expect("present until drop")
    }
}

impl<C> std::ops::DerefMut for PoolGuard<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.item.as_mut().expect("present until drop")
    }
}

impl<C> Drop for PoolGuard<'_, C> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            let mut items = self
                .pool
                .items
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            items.push(item);
            self.pool.ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Steady writes on one thread and checkpoints on another (the server's shape): the most
    /// frames any checkpoint found in the WAL.
    fn most_wal_frames_under_steady_writes(restart_frames: i64) -> i64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(SqliteDb::open(&dir.path().join("wal.db"), 2, None, None).expect("open"));
        db.write(|tx| tx.exec("CREATE TABLE t (x BLOB)", &[]))
            .expect("create");
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (db, done) = (Arc::clone(&db), Arc::clone(&done));
            std::thread::spawn(move || {
                // About one WAL frame (the table's last leaf page) per commit.
                for _ in 0..8000 {
                    db.write(|tx| tx.exec("INSERT INTO t (x) VALUES (zeroblob(100))", &[]))
                        .expect("insert");
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        let mut most = 0;
        while !done.load(Ordering::SeqCst) {
            most = most.max(db.checkpoint_with(restart_frames).expect("checkpoint"));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        writer.join().expect("writer");
        most
    }

    #[test]
    fn checkpoints_beside_steady_writes_still_restart_the_wal() {
        // Checkpoints that always overlap a write never let the WAL start over: it would end
        // near 8000 frames.
        let most = most_wal_frames_under_steady_writes(200);
        assert!(most < 4000, "the WAL reached {most} frames");
    }
}
