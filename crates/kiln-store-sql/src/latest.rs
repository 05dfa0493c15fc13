//! Write-behind of metric history and latest values on SQLite (and the background WAL
//! checkpoints).
//!
//! `latest_metrics` (one row per run and key, indexed by value for search) is derived from the
//! metric history, and writing history point by point costs an index entry per point. So on the
//! SQLite store a log-batch commits its points staged (one packed row, see chunks.rs) plus a
//! `latest_pending` marker for the run, then hands its per-key candidates to a [`LatestBuffer`];
//! a background thread folds them in shortly after (every [`FLUSH_INTERVAL`], or sooner when many
//! keys wait): staged points are packed into one `metric_chunks` row per (run, key) and the
//! candidates go into `latest_metrics`. Training loops log the same keys step after step, so one
//! fold covers many batches, and the request path does almost none of the index work.
//!
//! Consistency: every other store call (reads included) folds pending values in first, so a
//! client that logs and then searches or reads a run sees its values and history. Durability: the
//! staged points are in the same commit as the marker, and each fold slice (whole runs, about a
//! thousand candidates or 50,000 points, so that a big fold never holds the writer for long nor
//! unpacks millions of points at once) is one transaction;
//! opening the store moves latest values forward from the staged points of any run still marked
//! (after a crash) and then packs them, so nothing acknowledged is lost. PostgreSQL writes rows and
//! latest values in the logging transaction instead: replicas share its database, not this
//! process's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use kiln_store::StoreResult;
use kiln_types::Metric;

use crate::db::{SqliteDb, Tx, Val};
use crate::journal::{Entry, Journal};
use crate::tracking::{newer, upsert_latest_tx, LATEST_IS_NEWER};

/// How long candidates may wait before the background fold.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Fold right away once this many (run, key) candidates wait.
const FLUSH_KEYS: usize = 50_000;
/// How long the journal's active-run cache is trusted (see [`spawn_flusher`]).
const ACTIVE_RUNS_TTL: Duration = Duration::from_secs(1);
/// How much one fold transaction takes: whole runs, until about this many candidates or this
/// many staged points. In one transaction, a fold of many runs' wide batches (20 runs x 1,000 keys
/// in bench/tracking) held the writer for ~250 ms, and the log-batch p99 was 220-350 ms; in slices
/// of whole runs up to 1,000 candidates, 30-60 ms. Deep batches (10 keys x 100 steps) bring few
/// candidates and many points: 1,000 candidates there is 100 runs and millions of points, all
/// decoded and re-packed in memory at once, so points count too.
const SLICE: SliceSize = SliceSize {
    keys: 1_000,
    points: 50_000,
};

/// The limits of one fold slice (see [`SLICE`]); a slice always takes at least one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SliceSize {
    pub(crate) keys: usize,
    pub(crate) points: usize,
}

#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) runs: HashMap<String, RunPending>,
    pub(crate) keys: usize,
}

pub(crate) struct RunPending {
    pub(crate) experiment_id: i64,
    pub(crate) latest: HashMap<String, Metric>,
    /// Points committed since the run's last fold (the staged history the fold packs).
    pub(crate) points: usize,
}

/// Latest-value candidates committed to history but not yet folded into `latest_metrics`.
#[derive(Default)]
pub(crate) struct LatestBuffer {
    pending: Mutex<Pending>,
    has_pending: AtomicBool,
    wake: Condvar,
    /// Held by a fold slice or a journal spill from before it takes batches (from the journal
    /// and this buffer) until they are committed or put back: in between, they are in neither
    /// place a reader looks. See [`settled_fold_due`].
    slice: Mutex<()>,
    /// Tests: the background thread leaves the fold to the test.
    #[cfg(test)]
    pub(crate) paused: AtomicBool,
    /// Tests: runs once inside the next fold slice, between its take and its commit.
    #[cfg(test)]
    #[allow(clippy::type_complexity)]
    pub(crate) slice_hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl LatestBuffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether anything waits to be folded in (cheap: no lock).
    pub(crate) fn has_pending(&self) -> bool {
        self.has_pending.load(Ordering::Acquire)
    }

    /// Hold off fold slices and journal spills (and wait for one in flight).
    fn slice_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.slice
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record a committed batch's candidates. Called with the writer lock held, right after
    /// the commit, so a fold never sees a marker without its candidates.
    pub(crate) fn add(&self, run_id: &str, experiment_id: i64, metrics: &[Metric]) {
        if metrics.is_empty() {
            return;
        }
        let mut p = self.lock();
        let mut added = 0;
        let run = p
            .runs
            .entry(run_id.to_string())
            .or_insert_with(|| RunPending {
                experiment_id,
                latest: HashMap::new(),
                points: 0,
            });
        run.experiment_id = experiment_id;
        run.points = run.points.saturating_add(metrics.len());
        for m in metrics {
            match run.latest.get_mut(m.key.as_str()) {
                Some(cur) => {
                    if newer(m, cur) {
                        // In place (same key; clone_from reuses buffers): no allocation per
                        // metric on a training loop's steady state.
                        cur.value = m.value;
                        cur.timestamp = m.timestamp;
                        cur.step = m.step;
                        cur.model_id.clone_from(&m.model_id);
                        cur.dataset_name.clone_from(&m.dataset_name);
                        cur.dataset_digest.clone_from(&m.dataset_digest);
                    }
                }
                None => {
                    run.latest.insert(m.key.clone(), m.clone());
                    added += 1;
                }
            }
        }
        p.keys += added;
        let wake_now = p.keys >= FLUSH_KEYS;
        self.has_pending.store(true, Ordering::Release);
        drop(p);
        if wake_now {
            self.wake.notify_one();
        }
    }

    /// The runs waiting now (a fold works through these; runs that arrive meanwhile wait for
    /// the next one).
    fn run_ids(&self) -> VecDeque<String> {
        let mut runs: Vec<String> = self.lock().runs.keys().cloned().collect();
        runs.sort_unstable();
        runs.into()
    }

    /// Make sure `runs` take part in the next fold even without candidates: a spill staged
    /// their journaled history (and marked them), but an earlier fold slice may already have
    /// folded the candidates that came with it.
    fn include(&self, runs: &[String]) {
        if runs.is_empty() {
            return;
        }
        let mut p = self.lock();
        for run_id in runs {
            if !p.runs.contains_key(run_id) {
                // The experiment id is set by the run's next `add`; without candidates it is
                // never used.
                p.runs.insert(
                    run_id.clone(),
                    RunPending {
                        experiment_id: 0,
                        latest: HashMap::new(),
                        points: 0,
                    },
                );
            }
        }
        self.has_pending.store(true, Ordering::Release);
    }

    /// Take one slice of a fold: every run in `must`, then runs from the front of `queue`
    /// (those still waiting) until about `size` is taken (at least one run). Returns the
    /// slice's runs, with or without candidates, and their candidates.
    pub(crate) fn take_slice(
        &self,
        queue: &mut VecDeque<String>,
        must: Vec<String>,
        size: SliceSize,
    ) -> (Vec<String>, Pending) {
        let mut p = self.lock();
        let mut taken = Pending::default();
        let mut points = 0usize;
        let mut runs: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = must.into_iter();
        loop {
            let run_id = match next.next() {
                Some(run_id) => run_id,
                None if runs.is_empty() || (taken.keys < size.keys && points < size.points) => {
                    match queue.pop_front() {
                        // Still waiting (not taken by an earlier slice's `must`).
                        Some(run_id) if p.runs.contains_key(&run_id) => run_id,
                        Some(_) => continue,
                        None => break,
                    }
                }
                None => break,
            };
            if !seen.insert(run_id.clone()) {
                continue;
            }
            if let Some(run) = p.runs.remove(&run_id) {
                p.keys = p.keys.saturating_sub(run.latest.len());
                taken.keys += run.latest.len();
                points = points.saturating_add(run.points);
                taken.runs.insert(run_id.clone(), run);
            }
            runs.push(run_id);
        }
        self.has_pending
            .store(!p.runs.is_empty(), Ordering::Release);
        (runs, taken)
    }

    /// Put back candidates whose fold failed (newer ones already buffered win).
    fn restore(&self, failed: Pending) {
        let mut p = self.lock();
        for (run_id, run) in failed.runs {
            let slot = p.runs.entry(run_id).or_insert_with(|| RunPending {
                experiment_id: run.experiment_id,
                latest: HashMap::new(),
                points: 0,
            });
            slot.points = slot.points.saturating_add(run.points);
            for (key, m) in run.latest {
                match slot.latest.get(&key) {
                    Some(cur) if !newer(&m, cur) => {}
                    _ => {
                        slot.latest.insert(key, m);
                    }
                }
            }
        }
        p.keys = p.runs.values().map(|r| r.latest.len()).sum();
        // Runs without candidates count too (see `include`).
        self.has_pending
            .store(!p.runs.is_empty(), Ordering::Release);
    }
}

/// Mark `run_id` as having history newer than its latest values (same transaction as the
/// history rows).
pub(crate) fn mark_pending_tx(tx: &mut dyn Tx, run_id: &str) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO latest_pending (run_uuid) VALUES (?) ON CONFLICT (run_uuid) DO NOTHING",
        &[Val::from(run_id)],
    )?;
    Ok(())
}

/// Stage journaled batches (see journal.rs) the way a write through SQLite leaves them: staged
/// rows, their runs marked, and the journal recorded as applied up to the last. Returns the
/// runs marked.
fn stage_journaled_tx(tx: &mut dyn Tx, entries: &[Entry]) -> StoreResult<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut marked: Vec<String> = Vec::new();
    for e in entries {
        crate::chunks::insert_staged_batch_tx(tx, &e.run_id, i64::from(e.n), e.points.clone())?;
        if seen.insert(e.run_id.as_str()) {
            mark_pending_tx(tx, &e.run_id)?;
            marked.push(e.run_id.clone());
        }
    }
    if let Some(last) = entries.last() {
        set_journal_applied_tx(tx, last.seq)?;
    }
    Ok(marked)
}

/// After the transaction that took `taken` from the journal: once it committed, files holding
/// only folded records are emptied; if it failed, the batches wait for the next try.
fn settle_journaled(journal: &Journal, committed: bool, taken: Vec<Entry>) {
    if committed {
        if let Some(last) = taken.last() {
            journal.applied(last.seq);
        }
    } else if !taken.is_empty() {
        journal.restore(taken);
    }
}

fn set_journal_applied_tx(tx: &mut dyn Tx, seq: u64) -> StoreResult<()> {
    tx.exec(
        "UPDATE journal_applied SET seq = ? WHERE id = 1",
        &[Val::Int(i64::try_from(seq).unwrap_or(i64::MAX))],
    )?;
    Ok(())
}

/// On open: stage the journaled batches a stopped process did not fold (above the recorded
/// mark) and mark their runs, so [`recover_tx`] brings their latest values up to date. Batches
/// of runs that no longer exist (`kiln gc` purged them while the server was down) are dropped,
/// or they would be packed into history that nothing owns or collects. The caller truncates the
/// journal once this commits.
pub(crate) fn replay_journal_tx(tx: &mut dyn Tx, journal: &Journal) -> StoreResult<usize> {
    let applied = tx
        .query("SELECT seq FROM journal_applied WHERE id = 1", &[])?
        .first()
        .map_or(0, |r| r.int(0));
    let entries = journal.unapplied(u64::try_from(applied).unwrap_or(0))?;
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(0);
    };
    let mut ids: Vec<String> = entries.iter().map(|e| e.run_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let existing: std::collections::HashSet<String> = tx
        .query(
            &format!(
                "SELECT run_uuid FROM runs WHERE run_uuid IN {}",
                crate::chunks::RUNS_IN
            ),
            &[crate::chunks::runs_param(&ids)],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect();
    let dropped = ids.len().saturating_sub(existing.len());
    if dropped > 0 {
        tracing::warn!(
            runs = dropped,
            "dropped journaled metrics of runs that no longer exist (purged while stopped)"
        );
    }
    let kept: Vec<Entry> = entries
        .into_iter()
        .filter(|e| existing.contains(&e.run_id))
        .collect();
    stage_journaled_tx(tx, &kept)?;
    // Past the dropped batches too.
    set_journal_applied_tx(tx, last)?;
    Ok(kept.len())
}

/// Move the journaled batches into SQLite's staging table (with their runs' markers) without
/// folding them: the form a write through SQLite leaves, in one transaction. Their latest-value
/// candidates stay buffered, and their runs are in the next fold. A write that finds the journal full does this
/// (back-pressure that costs a short commit, not a fold), and so does a write through SQLite, so
/// history keeps logging order.
pub(crate) fn spill_journal(db: &SqliteDb) -> StoreResult<()> {
    let Some(journal) = db.journal.get() else {
        return Ok(());
    };
    let _slice = db.latest.slice_lock();
    let mut taken: Vec<Entry> = Vec::new();
    let result = db.write_then(
        |tx| {
            taken = journal.lock().take_entries();
            stage_journaled_tx(tx, &taken)
        },
        |marked| db.latest.include(marked),
    );
    settle_journaled(journal, result.is_ok(), taken);
    result.map(|_| ())
}

/// Whether a fold has anything to do: candidates wait, or journaled points do (a fold slice
/// may have taken a run's candidates while points appended meanwhile stayed in the journal).
pub(crate) fn fold_due(db: &SqliteDb) -> bool {
    db.latest.has_pending() || db.has_journaled()
}

/// Whether a fold is due, once no fold slice or spill is in flight: one in flight has taken
/// batches that are neither in the journal and buffer any more nor committed yet, so a store call
/// that went ahead then would miss writes acknowledged before it (the bench's row count once came
/// up 4,327 points short of what 8 connections had been acknowledged). `false` means everything
/// acknowledged so far is committed.
pub(crate) fn settled_fold_due(db: &SqliteDb) -> bool {
    let _slice = db.latest.slice_lock();
    fold_due(db)
}

/// Fold every buffered candidate into `latest_metrics` and clear the runs' markers; staged and
/// journaled history is packed in the same transactions. See [`fold_slices`].
pub(crate) fn flush(db: &SqliteDb) -> StoreResult<()> {
    fold_slices(db, SLICE, usize::MAX)
}

/// The fold, in transactions of about `size` each (at most `max_slices` of them: tests stop a
/// fold half-way, as a crash would).
///
/// Each slice is whole runs: their candidates go into `latest_metrics`, their staged history
/// into chunks, and their markers go, in one transaction, so every commit leaves what recovery
/// expects (a run is marked exactly while it has staged history that its latest values may not
/// reflect). The first slice also takes the whole journal (one mark records how far it is
/// folded) with every run it touched. The runs waiting when the fold starts are the ones it
/// folds, so a steady stream of new runs cannot keep it going.
pub(crate) fn fold_slices(db: &SqliteDb, size: SliceSize, max_slices: usize) -> StoreResult<()> {
    let buffer = &db.latest;
    if !fold_due(db) {
        return Ok(());
    }
    let mut queue = buffer.run_ids();
    for slice in 0..max_slices {
        let first = slice == 0;
        if !first && queue.is_empty() {
            break;
        }
        let mut taken: Option<Pending> = None;
        let mut journaled: Vec<Entry> = Vec::new();
        let _slice = buffer.slice_lock();
        // Taken under the writer lock, so no batch commits between the take and the fold.
        let result = db.write(|tx| {
            let (runs, pending) = match (db.journal.get(), first) {
                // Appends buffer their candidates under the journal lock: take both or neither.
                (Some(journal), true) => {
                    let mut st = journal.lock();
                    journaled = st.take_entries();
                    let must = journaled.iter().map(|e| e.run_id.clone()).collect();
                    buffer.take_slice(&mut queue, must, size)
                }
                _ => buffer.take_slice(&mut queue, Vec::new(), size),
            };
            let pending = taken.insert(pending);
            #[cfg(test)]
            {
                let hook = buffer
                    .slice_hook
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                if let Some(hook) = hook {
                    hook();
                }
            }
            if runs.is_empty() {
                return Ok(());
            }
            if let Some(last) = journaled.last() {
                set_journal_applied_tx(tx, last.seq)?;
            }
            let (_, mut staged) =
                crate::chunks::move_staged_and_journaled_tx(tx, Some(&runs), &journaled)?;
            for (run_id, run) in &pending.runs {
                let foreign = foreign_candidates(staged.remove(run_id), &run.latest);
                if foreign.is_empty() {
                    let candidates: Vec<&Metric> = run.latest.values().collect();
                    upsert_latest_tx(tx, run_id, run.experiment_id, &candidates)?;
                    continue;
                }
                let replaced: std::collections::HashSet<&str> =
                    foreign.iter().map(|m| m.key.as_str()).collect();
                let candidates: Vec<&Metric> = run
                    .latest
                    .values()
                    .filter(|c| !replaced.contains(c.key.as_str()))
                    .chain(&foreign)
                    .collect();
                let experiment_id = if run.latest.is_empty() {
                    match experiment_of(tx, run_id)? {
                        Some(e) => e,
                        None => continue,
                    }
                } else {
                    run.experiment_id
                };
                upsert_latest_tx(tx, run_id, experiment_id, &candidates)?;
            }
            for (run_id, foreign) in staged {
                if let Some(experiment_id) = experiment_of(tx, &run_id)? {
                    let candidates: Vec<&Metric> = foreign.iter().collect();
                    upsert_latest_tx(tx, &run_id, experiment_id, &candidates)?;
                }
            }
            tx.exec(
                &format!(
                    "DELETE FROM latest_pending WHERE run_uuid IN {}",
                    crate::chunks::RUNS_IN
                ),
                &[crate::chunks::runs_param(&runs)],
            )?;
            drop_purged_runs_tx(tx, &runs)?;
            Ok(())
        });
        if result.is_err() {
            if let Some(pending) = taken {
                buffer.restore(pending);
            }
        }
        if let Some(journal) = db.journal.get() {
            settle_journaled(journal, result.is_ok(), journaled);
        }
        result?;
    }
    Ok(())
}

/// The staged points (newest per key) that beat this process's candidates: ones another
/// process staged (a second server, a CLI command) and did not fold before it died. Usually
/// none: this process's own staged points are already among its candidates.
fn foreign_candidates(
    staged: Option<Vec<Metric>>,
    latest: &HashMap<String, Metric>,
) -> Vec<Metric> {
    let Some(staged) = staged else {
        return Vec::new();
    };
    staged
        .into_iter()
        .filter(|m| {
            latest.get(&m.key).is_none_or(|c| {
                let same = (m.step, m.timestamp) == (c.step, c.timestamp)
                    && m.value.to_bits() == c.value.to_bits();
                !same && newer(m, c)
            })
        })
        .collect()
}

fn experiment_of(tx: &mut dyn Tx, run_id: &str) -> StoreResult<Option<i64>> {
    Ok(tx
        .query_opt(
            "SELECT experiment_id FROM runs WHERE run_uuid = ?",
            &[Val::from(run_id)],
        )?
        .map(|r| r.int(0)))
}

/// History and latest values just folded for runs that no longer exist: another process
/// deleted and purged (`kiln gc`) a run this one still took metrics for (its active-run cache
/// is up to [`ACTIVE_RUNS_TTL`] old). Nothing could ever read or collect those rows.
fn drop_purged_runs_tx(tx: &mut dyn Tx, runs: &[String]) -> StoreResult<()> {
    let param = [crate::chunks::runs_param(runs)];
    let existing = tx
        .query(
            &format!(
                "SELECT COUNT(*) FROM runs WHERE run_uuid IN {}",
                crate::chunks::RUNS_IN
            ),
            &param,
        )?
        .first()
        .map_or(0, |r| r.int(0));
    if usize::try_from(existing).unwrap_or(0) >= runs.len() {
        return Ok(());
    }
    for table in ["metric_chunks", "metrics", "latest_metrics"] {
        tx.exec(
            &format!(
                "DELETE FROM {table} WHERE run_uuid IN {} \
                 AND run_uuid NOT IN (SELECT run_uuid FROM runs WHERE run_uuid IN {})",
                crate::chunks::RUNS_IN,
                crate::chunks::RUNS_IN
            ),
            &[param[0].clone(), param[0].clone()],
        )?;
    }
    Ok(())
}

/// Crash recovery, on open before anything else uses the store: for runs still marked (a crash
/// between a commit and its fold), bring latest values up to date from their unfolded history,
/// then move staged history into place and clear the markers.
///
/// Folded history is already reflected in `latest_metrics` (each fold slice is one transaction
/// over whole runs), so the
/// staged rows are what is missing; stores from v3, before staging, kept unfolded history in
/// `metrics` rows, so those are considered too. Both upserts only ever move a value forward.
pub(crate) fn recover_tx(tx: &mut dyn Tx) -> StoreResult<u64> {
    let marked = tx
        .query("SELECT COUNT(*) FROM latest_pending", &[])?
        .first()
        .map_or(0, |r| r.int(0));
    if marked > 0 {
        for source in ["metrics", "metrics_staged"] {
            tx.exec(
                &format!(
                    "INSERT INTO latest_metrics (run_uuid, experiment_id, key, value, is_nan, timestamp, step) \
                     SELECT h.run_uuid, r.experiment_id, h.key, h.value, h.is_nan, h.timestamp, h.step FROM ( \
                         SELECT run_uuid, key, value, is_nan, timestamp, step, ROW_NUMBER() OVER ( \
                             PARTITION BY run_uuid, key \
                             ORDER BY step DESC, timestamp DESC, value IS NULL, value DESC) AS rn \
                         FROM {source} WHERE run_uuid IN (SELECT run_uuid FROM latest_pending)) h \
                     JOIN runs r ON r.run_uuid = h.run_uuid \
                     WHERE h.rn = 1 \
                     ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, \
                         timestamp = excluded.timestamp, step = excluded.step \
                     WHERE {LATEST_IS_NEWER}"
                ),
                &[],
            )?;
        }
        crate::chunks::recover_staged_latest_tx(tx)?;
    }
    crate::chunks::move_staged_tx(tx)?;
    if marked > 0 {
        tx.exec("DELETE FROM latest_pending", &[])?;
    }
    Ok(marked as u64)
}

/// How often a process that wants the journal and does not hold it tries to take it over.
const TAKE_OVER_INTERVAL: Duration = Duration::from_secs(1);

/// For a process that wanted the metric journal and found another holding it (a second server
/// on the same file, or one started while a CLI command had it): once that process is gone, take
/// the journal over. Its records the last owner acknowledged and never folded are replayed first
/// (otherwise they would stay invisible until some process opened the store again), then this
/// process journals its own writes. `true` when it took over.
pub(crate) fn take_over_journal(db: &SqliteDb) -> StoreResult<bool> {
    let Some(path) = &db.journal_wanted else {
        return Ok(false);
    };
    if db.journal.get().is_some() {
        return Ok(false);
    }
    let Some(journal) = Journal::open(path)? else {
        return Ok(false);
    };
    let replayed = db.write(|tx| {
        let replayed = replay_journal_tx(tx, &journal)?;
        recover_tx(tx)?;
        Ok(replayed)
    })?;
    journal.truncate()?;
    if db.journal.set(journal).is_err() {
        return Ok(false);
    }
    tracing::info!(
        batches = replayed,
        "Took over the metric journal from a process that stopped; replayed what it left."
    );
    Ok(true)
}

/// Start the background fold for `db`; the thread ends once the store is dropped.
pub(crate) fn spawn_flusher(db: &Arc<SqliteDb>) {
    let weak: Weak<SqliteDb> = Arc::downgrade(db);
    let mut runs_checked = std::time::Instant::now();
    let mut take_over_tried = std::time::Instant::now();
    let spawned = std::thread::Builder::new()
        .name("kiln-latest".into())
        .spawn(move || loop {
            let Some(db) = weak.upgrade() else { break };
            // This process clears the active-run cache itself whenever a lifecycle changes;
            // another process that deletes a run (or the experiment) cannot, so the cache is
            // also dropped every ACTIVE_RUNS_TTL: a run deleted elsewhere stops taking journaled
            // metrics within about that long, for one lookup per active run each time.
            if runs_checked.elapsed() >= ACTIVE_RUNS_TTL {
                db.active_runs.forget_all();
                runs_checked = std::time::Instant::now();
            }
            if db.journal_wanted.is_some()
                && db.journal.get().is_none()
                && take_over_tried.elapsed() >= TAKE_OVER_INTERVAL
            {
                take_over_tried = std::time::Instant::now();
                if let Err(e) = take_over_journal(&db) {
                    tracing::warn!(error = %e, "Taking over the metric journal failed; will retry.");
                }
            }
            {
                let guard = db.latest.lock();
                let keys = guard.keys;
                if keys < FLUSH_KEYS {
                    // Sleep until the interval passes or a big batch wakes us.
                    let _ = db
                        .latest
                        .wake
                        .wait_timeout(guard, FLUSH_INTERVAL)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
            #[cfg(test)]
            if db.latest.paused.load(Ordering::Acquire) {
                continue;
            }
            if fold_due(&db) {
                if let Err(e) = flush(&db) {
                    tracing::warn!(error = %e, "folding latest metric values failed; will retry");
                }
            }
            if let Err(e) = db.checkpoint() {
                tracing::debug!(error = %e, "WAL checkpoint failed; will retry");
            }
        });
    if let Err(e) = spawned {
        // Without the thread, every other store call still folds pending values first.
        tracing::warn!(error = %e, "could not start the latest-metrics thread");
    }
}
