//! Packed metric history (schema v5, SQLite).
//!
//! A training loop logs the same few keys step after step. Stored one row per point, every point
//! costs a table row and an entry in the `(run, key, step)` index, and those index inserts were
//! most of the work of a deep log-batch. So the background fold (see latest.rs) packs the plain
//! points staged for each `(run, key)` since the last fold into one `metric_chunks` row: a
//! little-endian array of `(step, timestamp, value)`. A fold of thousands of points over ten
//! keys writes ten rows.
//!
//! Points linked to a logged model or a dataset stay rows in `metrics` (logged-model search
//! reads them by `model_id`), as does history written before v5 and all PostgreSQL history.
//! [`history_tx`] merges both sources.
//!
//! Staging is packed too: a log-batch commits its plain points as one `metrics_staged_batches`
//! row (`(key, step, timestamp, value)` records), one insert instead of a row per point, and the
//! fold decodes those in memory.

use std::collections::{BTreeMap, HashMap};

use kiln_store::{StoreError, StoreResult};
use kiln_types::Metric;

use crate::db::{Tx, Val};
use crate::tracking::{insert_history_into_tx, metric_value, newer, newer_point, upsert_latest_tx};

/// The first byte of every chunk: its layout, so a later one can change it.
const FORMAT: u8 = 1;
/// step i64, timestamp i64, value f64 (NaN and infinities as themselves).
const POINT_BYTES: usize = 24;

fn encode_point(out: &mut Vec<u8>, step: i64, timestamp: i64, value: f64) {
    out.extend_from_slice(&step.to_le_bytes());
    out.extend_from_slice(&timestamp.to_le_bytes());
    out.extend_from_slice(&value.to_bits().to_le_bytes());
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// The first byte of a staged batch.
const STAGED_FORMAT: u8 = 1;

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!(
            "Packed metric history is corrupt ({what}); was the database modified outside kiln?"
        ),
        source: Box::new(std::io::Error::from(std::io::ErrorKind::InvalidData)),
    }
}

/// A staged batch: per point, key length (u16), key, then step, timestamp, value.
pub(crate) fn encode_staged(metrics: &[&Metric]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        1 + metrics
            .iter()
            .map(|m| 2 + m.key.len() + POINT_BYTES)
            .sum::<usize>(),
    );
    out.push(STAGED_FORMAT);
    for m in metrics {
        // Keys are validated to at most 250 bytes before they get here.
        let len = u16::try_from(m.key.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&m.key.as_bytes()[..usize::from(len)]);
        encode_point(&mut out, m.step, m.timestamp, m.value);
    }
    out
}

/// Calls `f(key, step, timestamp, value)` for each point of a staged batch, in logging order.
fn decode_staged(blob: &[u8], mut f: impl FnMut(&str, i64, i64, f64)) -> StoreResult<()> {
    let Some((&format, mut rest)) = blob.split_first() else {
        return Err(corrupt("empty staged batch"));
    };
    if format != STAGED_FORMAT {
        return Err(corrupt(&format!("unknown staged layout {format}")));
    }
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(corrupt("truncated staged batch"));
        }
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let end = 2 + len + POINT_BYTES;
        if rest.len() < end {
            return Err(corrupt("truncated staged batch"));
        }
        let key =
            std::str::from_utf8(&rest[2..2 + len]).map_err(|_| corrupt("key is not UTF-8"))?;
        let p = &rest[2 + len..end];
        f(
            key,
            i64::from_le_bytes(le8(&p[0..8])),
            i64::from_le_bytes(le8(&p[8..16])),
            f64::from_bits(u64::from_le_bytes(le8(&p[16..24]))),
        );
        rest = &rest[end..];
    }
    Ok(())
}

/// A point linked to a logged model or a dataset: it stays a `metrics` row (logged-model search
/// reads those by `model_id`) instead of being packed.
pub(crate) fn is_linked(m: &Metric) -> bool {
    m.model_id.is_some() || m.dataset_name.is_some() || m.dataset_digest.is_some()
}

/// Stage a log-batch's history (same transaction as the run's pending marker): plain points as
/// one packed row, points linked to a model or dataset as rows of `metrics_staged`.
pub(crate) fn stage_tx(tx: &mut dyn Tx, run_id: &str, metrics: &[Metric]) -> StoreResult<()> {
    let plain: Vec<&Metric> = metrics.iter().filter(|m| !is_linked(m)).collect();
    if plain.len() < metrics.len() {
        let rows: Vec<Metric> = metrics.iter().filter(|m| is_linked(m)).cloned().collect();
        insert_history_into_tx(tx, "metrics_staged", run_id, &rows)?;
    }
    if !plain.is_empty() {
        let n = i64::try_from(plain.len()).unwrap_or(i64::MAX);
        insert_staged_batch_tx(tx, run_id, n, encode_staged(&plain))?;
    }
    Ok(())
}

/// One packed staged batch (`encode_staged`'s `points`, `n` of them) as a row.
pub(crate) fn insert_staged_batch_tx(
    tx: &mut dyn Tx,
    run_id: &str,
    n: i64,
    points: Vec<u8>,
) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO metrics_staged_batches (run_uuid, n, points) VALUES (?, ?, ?)",
        &[Val::from(run_id), Val::Int(n), Val::Blob(points)],
    )?;
    Ok(())
}

/// The newest staged point of every (run, key) for runs still marked pending, folded into
/// `latest_metrics` (crash recovery; the upsert only moves values forward).
pub(crate) fn recover_staged_latest_tx(tx: &mut dyn Tx) -> StoreResult<()> {
    let rows = tx.query(
        "SELECT b.run_uuid, r.experiment_id, b.points FROM metrics_staged_batches b \
         JOIN runs r ON r.run_uuid = b.run_uuid \
         WHERE b.run_uuid IN (SELECT run_uuid FROM latest_pending) ORDER BY b.rowid",
        &[],
    )?;
    let mut runs: HashMap<String, (i64, HashMap<String, Metric>)> = HashMap::new();
    for r in &rows {
        let run = runs
            .entry(r.text(0))
            .or_insert_with(|| (r.int(1), HashMap::new()));
        decode_staged(r.blob(2), |key, step, timestamp, value| {
            let m = Metric::new(key, value, timestamp, step);
            match run.1.get_mut(key) {
                Some(cur) if !newer(&m, cur) => {}
                Some(cur) => *cur = m,
                None => {
                    run.1.insert(key.to_string(), m);
                }
            }
        })?;
    }
    for (run_id, (experiment_id, latest)) in &runs {
        let candidates: Vec<&Metric> = latest.values().collect();
        upsert_latest_tx(tx, run_id, *experiment_id, &candidates)?;
    }
    Ok(())
}

/// The points of one chunk, in logging order.
fn decode(blob: &[u8]) -> StoreResult<Vec<(i64, i64, f64)>> {
    let Some((&format, body)) = blob.split_first() else {
        return Err(corrupt("empty"));
    };
    if format != FORMAT {
        return Err(corrupt(&format!("unknown layout {format}")));
    }
    if body.len() % POINT_BYTES != 0 {
        return Err(corrupt(&format!("{} bytes", blob.len())));
    }
    Ok(body
        .chunks_exact(POINT_BYTES)
        .map(|p| {
            (
                i64::from_le_bytes(le8(&p[0..8])),
                i64::from_le_bytes(le8(&p[8..16])),
                f64::from_bits(u64::from_le_bytes(le8(&p[16..24]))),
            )
        })
        .collect())
}

/// Move everything staged into permanent history: linked points as `metrics` rows, plain ones
/// packed into one chunk per `(run, key)`. Returns the number of points moved.
pub(crate) fn move_staged_tx(tx: &mut dyn Tx) -> StoreResult<u64> {
    move_staged_and_journaled_tx(tx, None, &[]).map(|(moved, _)| moved)
}

/// Per run, the newest point of each key among the points (plain or linked) a move took from
/// the database's staging (not from the journal): a fold compares them with its own candidates,
/// since another process may have staged some of them and died before its own fold.
pub(crate) type StagedLatest = BTreeMap<String, Vec<Metric>>;

/// `run_uuid IN` the runs of [`runs_param`] (a JSON array: no limit on how many).
pub(crate) const RUNS_IN: &str = "(SELECT value FROM json_each(?))";

/// The parameter of [`RUNS_IN`].
pub(crate) fn runs_param(runs: &[String]) -> Val {
    Val::Text(serde_json::Value::from(runs.to_vec()).to_string())
}

/// [`move_staged_tx`] for `runs` only (all runs: `None`), plus journaled batches (newer than
/// anything staged in the database: a write through SQLite spills the journal first) packed
/// straight from memory.
pub(crate) fn move_staged_and_journaled_tx(
    tx: &mut dyn Tx,
    runs: Option<&[String]>,
    journaled: &[crate::journal::Entry],
) -> StoreResult<(u64, StagedLatest)> {
    let (only, params) = match runs {
        Some(runs) => (format!("AND run_uuid IN {RUNS_IN}"), vec![runs_param(runs)]),
        None => (String::new(), Vec::new()),
    };
    // The newest linked point per (run, key), before they move (see [`StagedLatest`]).
    let newest_linked = tx.query(
        &format!(
            "SELECT run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest FROM ( \
                 SELECT run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest, \
                     ROW_NUMBER() OVER (PARTITION BY run_uuid, key \
                         ORDER BY step DESC, timestamp DESC, value IS NULL, value DESC) AS rn \
                 FROM metrics_staged \
                 WHERE (model_id IS NOT NULL OR dataset_name IS NOT NULL OR dataset_digest IS NOT NULL) {only}) s \
             WHERE rn = 1"
        ),
        &params,
    )?;
    let linked = tx.exec(
        &format!(
            "INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest) \
             SELECT run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest \
             FROM metrics_staged \
             WHERE (model_id IS NOT NULL OR dataset_name IS NOT NULL OR dataset_digest IS NOT NULL) {only} \
             ORDER BY run_uuid, key, step, timestamp, rowid"
        ),
        &params,
    )?;
    // Sorted by (run, key), so the chunk index is written in order.
    // Nested so that the lookups borrow: a fold sees the same few keys thousands of times.
    // Per (run, key): points, their encoding, and the newest point staged in the database.
    type Slot = (i64, Vec<u8>, Option<(i64, i64, f64)>);
    let mut chunks: BTreeMap<String, BTreeMap<String, Slot>> = BTreeMap::new();
    let mut add = |run_id: &str, key: &str, step: i64, timestamp: i64, value: f64, staged: bool| {
        let run = match chunks.get_mut(run_id) {
            Some(run) => run,
            None => chunks.entry(run_id.to_string()).or_default(),
        };
        let slot = match run.get_mut(key) {
            Some(slot) => slot,
            None => run
                .entry(key.to_string())
                .or_insert_with(|| (0, vec![FORMAT], None)),
        };
        slot.0 += 1;
        encode_point(&mut slot.1, step, timestamp, value);
        if staged
            && slot
                .2
                .is_none_or(|best| newer_point((step, timestamp, value), best))
        {
            slot.2 = Some((step, timestamp, value));
        }
    };
    // Plain rows staged by v4 (before packed staging), then packed batches, in logging order.
    let rows = tx.query(
        &format!(
            "SELECT run_uuid, key, value, is_nan, timestamp, step FROM metrics_staged \
             WHERE model_id IS NULL AND dataset_name IS NULL AND dataset_digest IS NULL {only} ORDER BY rowid"
        ),
        &params,
    )?;
    let mut moved = linked + rows.len() as u64;
    for r in &rows {
        add(
            &r.text(0),
            &r.text(1),
            r.int(5),
            r.int(4),
            metric_value(r, 2, 3),
            true,
        );
    }
    let batches = tx.query(
        &format!(
            "SELECT run_uuid, points FROM metrics_staged_batches WHERE 1 = 1 {only} ORDER BY rowid"
        ),
        &params,
    )?;
    for b in &batches {
        let run_id = b.text(0);
        decode_staged(b.blob(1), |key, step, timestamp, value| {
            moved += 1;
            add(&run_id, key, step, timestamp, value, true);
        })?;
    }
    for e in journaled {
        decode_staged(&e.points, |key, step, timestamp, value| {
            moved += 1;
            add(&e.run_id, key, step, timestamp, value, false);
        })?;
    }
    let mut latest = StagedLatest::new();
    if moved == 0 {
        return Ok((0, latest));
    }
    for (run_id, keys) in chunks {
        let mut best = Vec::new();
        for (key, (n, points, newest)) in keys {
            if let Some((step, timestamp, value)) = newest {
                best.push(Metric::new(key.clone(), value, timestamp, step));
            }
            tx.exec(
                "INSERT INTO metric_chunks (run_uuid, key, n, points) VALUES (?, ?, ?, ?)",
                &[
                    Val::Text(run_id.clone()),
                    Val::Text(key),
                    Val::Int(n),
                    Val::Blob(points),
                ],
            )?;
        }
        if !best.is_empty() {
            latest.insert(run_id, best);
        }
    }
    for r in &newest_linked {
        let mut m = Metric::new(r.text(1), metric_value(r, 2, 3), r.int(4), r.int(5));
        m.model_id = r.opt_text(6);
        m.dataset_name = r.opt_text(7);
        m.dataset_digest = r.opt_text(8);
        let best = latest.entry(r.text(0)).or_default();
        match best.iter_mut().find(|b| b.key == m.key) {
            Some(b) if newer(&m, b) => *b = m,
            Some(_) => {}
            None => best.push(m),
        }
    }
    tx.exec(
        &format!("DELETE FROM metrics_staged WHERE 1 = 1 {only}"),
        &params,
    )?;
    tx.exec(
        &format!("DELETE FROM metrics_staged_batches WHERE 1 = 1 {only}"),
        &params,
    )?;
    Ok((moved, latest))
}

/// One page (`skip`, then up to `take` points) of the history of one `(run, key)`, ordered by
/// step, then timestamp, then logging order. `None` when the key has no packed chunks (the
/// caller pages in SQL instead). Points are sorted as plain tuples; only the page becomes
/// [`Metric`]s.
pub(crate) fn history_page_tx(
    tx: &mut dyn Tx,
    run_id: &str,
    key: &str,
    skip: usize,
    take: usize,
) -> StoreResult<Option<Vec<Metric>>> {
    let args = [Val::from(run_id), Val::from(key)];
    let chunks = tx.query(
        "SELECT points FROM metric_chunks WHERE run_uuid = ? AND key = ? ORDER BY id",
        &args,
    )?;
    if chunks.is_empty() {
        return Ok(None);
    }
    // Rows first: they are older than any chunk (or linked points, rare); the stable sort
    // keeps logging order among equal (step, timestamp).
    let rows: Vec<Metric> = tx
        .query(
            "SELECT value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest FROM metrics \
             WHERE run_uuid = ? AND key = ? ORDER BY step, timestamp, id",
            &args,
        )?
        .iter()
        .map(|r| {
            let mut m = Metric::new(key, metric_value(r, 0, 1), r.int(2), r.int(3));
            m.model_id = r.opt_text(4);
            m.dataset_name = r.opt_text(5);
            m.dataset_digest = r.opt_text(6);
            m
        })
        .collect();
    // (step, timestamp, value, index into `rows`, or None for a packed point)
    let mut points: Vec<(i64, i64, f64, Option<usize>)> = rows
        .iter()
        .enumerate()
        .map(|(i, m)| (m.step, m.timestamp, m.value, Some(i)))
        .collect();
    for c in &chunks {
        for (step, timestamp, value) in decode(c.blob(0))? {
            points.push((step, timestamp, value, None));
        }
    }
    points.sort_by_key(|p| (p.0, p.1));
    Ok(Some(
        points
            .into_iter()
            .skip(skip)
            .take(take)
            .map(|(step, timestamp, value, row)| match row {
                Some(i) => rows[i].clone(),
                None => Metric::new(key, value, timestamp, step),
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_round_trip_including_nan_and_infinities() {
        let pts = [
            (0, 1_700_000_000_000, 0.5),
            (-3, 0, f64::NAN),
            (i64::MAX, i64::MIN, f64::INFINITY),
            (7, 7, f64::NEG_INFINITY),
        ];
        let mut b = vec![FORMAT];
        for &(s, t, v) in &pts {
            encode_point(&mut b, s, t, v);
        }
        let got = decode(&b).expect("decode");
        assert_eq!(got.len(), pts.len());
        for (g, p) in got.iter().zip(pts) {
            assert_eq!((g.0, g.1), (p.0, p.1));
            assert!(g.2 == p.2 || (g.2.is_nan() && p.2.is_nan()));
        }
    }

    #[test]
    fn staged_batches_round_trip_and_reject_truncation() {
        let ms = [
            Metric::new("loss", 0.25, 10, 1),
            Metric::new("ñ/acc", f64::NAN, 11, 2),
        ];
        let refs: Vec<&Metric> = ms.iter().collect();
        let blob = encode_staged(&refs);
        let mut got = Vec::new();
        decode_staged(&blob, |k, s, t, v| got.push((k.to_string(), s, t, v))).expect("decode");
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0.as_str(), got[0].1, got[0].2, got[0].3),
            ("loss", 1, 10, 0.25)
        );
        assert_eq!((got[1].0.as_str(), got[1].1, got[1].2), ("ñ/acc", 2, 11));
        assert!(got[1].3.is_nan());
        // Every cut inside a record is refused; a cut between records is a shorter batch.
        let first_end = 1 + 2 + "loss".len() + POINT_BYTES;
        for cut in 1..blob.len() {
            let r = decode_staged(&blob[..cut], |_, _, _, _| {});
            assert_eq!(r.is_ok(), cut == 1 || cut == first_end, "cut at {cut}");
        }
        assert!(decode_staged(&[], |_, _, _, _| {}).is_err());
    }

    #[test]
    fn corrupt_chunks_are_errors_not_panics() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 0, 0]).is_err());
        assert!(decode(&[FORMAT, 1, 2, 3]).is_err());
        assert!(decode(&[FORMAT]).expect("empty body").is_empty());
    }
}
