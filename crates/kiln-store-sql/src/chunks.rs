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

use std::collections::BTreeMap;

use kiln_store::{StoreError, StoreResult};
use kiln_types::Metric;

use crate::db::{Tx, Val};
use crate::tracking::metric_value;

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

/// The points of one chunk, in logging order.
fn decode(blob: &[u8]) -> StoreResult<Vec<(i64, i64, f64)>> {
    let corrupt = |what: &str| {
        StoreError::Backend {
        message: format!(
            "A packed metric history chunk is corrupt ({what}); was the database modified outside kiln?"
        ),
        source: Box::new(std::io::Error::from(std::io::ErrorKind::InvalidData)),
    }
    };
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
    let linked = tx.exec(
        "INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest) \
         SELECT run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest \
         FROM metrics_staged \
         WHERE model_id IS NOT NULL OR dataset_name IS NOT NULL OR dataset_digest IS NOT NULL \
         ORDER BY run_uuid, key, step, timestamp, rowid",
        &[],
    )?;
    let rows = tx.query(
        "SELECT run_uuid, key, value, is_nan, timestamp, step FROM metrics_staged \
         WHERE model_id IS NULL AND dataset_name IS NULL AND dataset_digest IS NULL ORDER BY rowid",
        &[],
    )?;
    if rows.is_empty() && linked == 0 {
        return Ok(0);
    }
    // Sorted by (run, key), so the chunk index is written in order.
    let mut chunks: BTreeMap<(String, String), (i64, Vec<u8>)> = BTreeMap::new();
    for r in &rows {
        let slot = chunks.entry((r.text(0), r.text(1))).or_insert_with(|| {
            let mut b = Vec::with_capacity(1 + 16 * POINT_BYTES);
            b.push(FORMAT);
            (0, b)
        });
        slot.0 += 1;
        encode_point(&mut slot.1, r.int(5), r.int(4), metric_value(r, 2, 3));
    }
    for ((run_id, key), (n, points)) in chunks {
        tx.exec(
            "INSERT INTO metric_chunks (run_uuid, key, n, points) VALUES (?, ?, ?, ?)",
            &[
                Val::Text(run_id),
                Val::Text(key),
                Val::Int(n),
                Val::Blob(points),
            ],
        )?;
    }
    tx.exec("DELETE FROM metrics_staged", &[])?;
    Ok(linked + rows.len() as u64)
}

/// The full history of one `(run, key)`, ordered by step, then timestamp, then logging order.
/// `None` when the key has no packed chunks (the caller pages in SQL instead).
pub(crate) fn history_tx(
    tx: &mut dyn Tx,
    run_id: &str,
    key: &str,
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
    let mut out: Vec<Metric> = tx
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
    for c in &chunks {
        for (step, timestamp, value) in decode(c.blob(0))? {
            out.push(Metric::new(key, value, timestamp, step));
        }
    }
    out.sort_by_key(|m| (m.step, m.timestamp));
    Ok(Some(out))
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
    fn corrupt_chunks_are_errors_not_panics() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 0, 0]).is_err());
        assert!(decode(&[FORMAT, 1, 2, 3]).is_err());
        assert!(decode(&[FORMAT]).expect("empty body").is_empty());
    }
}
