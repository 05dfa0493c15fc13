//! Prediction timing for `bench/train`: load a saved kiln model and a labelled table, then time
//! batch prediction over the whole table and single-row prediction, each after a warm-up.
//!
//! ```text
//! cargo build --release -p kiln-train --example predict_latency
//! predict_latency MODEL.json TEST.parquet [--reps 5] [--single 20000] [--warmup 2000]
//! ```
//!
//! Prints one JSON object on stdout:
//!
//! * `load_seconds`, `encode_seconds`: reading the table, and turning it into the model's inputs
//!   with the model's [`Signature`](kiln_train::frame::Signature) (not part of prediction);
//! * `batch_seconds`: median of `--reps` calls of [`KilnModel::predict`] over every row (an
//!   in-memory dataset, like a DataFrame handed to a Python model), after one untimed call;
//! * `single_row_us`: median (and p90/p99) latency of one row through
//!   [`GbdtModel::predict_proba_row`](kiln_ml::GbdtModel::predict_proba_row) on an encoded row
//!   (numeric values, categorical codes as `f64`): the model's own single-row path;
//! * `single_row_dataset_us`: one row as a 1-row dataset through [`KilnModel::predict`], the batch
//!   API used for one row (it includes building the dataset);
//! * `roc_auc` (binary) of the batch predictions against the table's labels, as a sanity check.
//!
//! Single-row calls cycle through the first `--single` rows; each call is timed on its own.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use kiln_ml::{FeatureKind, MISSING_CODE};
use kiln_train::artifact::{KilnModel, Learner, Predictions};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

fn peak_rss_mib() -> f64 {
    fs_err::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> AnyResult<T> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number").into()),
        None => Ok(default),
    }
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(model_path), Some(data_path)) = (args.first(), args.get(1)) else {
        return Err(
            "usage: predict_latency MODEL.json TABLE [--reps N] [--single N] [--warmup N]".into(),
        );
    };
    let reps: usize = arg(&args, "--reps", 5)?;
    let n_single: usize = arg(&args, "--single", 20_000)?;
    let warmup: usize = arg(&args, "--warmup", 2_000)?;

    let bytes = fs_err::read(model_path)?;
    let model = KilnModel::from_bytes(&bytes, model_path)?;
    let Learner::Gbdt(gbdt) = &model.learner else {
        return Err(format!("{model_path}: not a gbdt model").into());
    };

    let t = Instant::now();
    let table = kiln_table::read_table(data_path, &kiln_table::ReadOptions::default())?;
    let load_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (data, _) = model.signature.encode(&table)?;
    let labels = model.signature.labels(&table).ok();
    let encode_seconds = t.elapsed().as_secs_f64();
    drop(table);
    let n = data.n_rows();

    // Batch: one untimed call, then `reps` timed ones.
    let first = model.predict(&data)?;
    let mut batch = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        let p = model.predict(&data)?;
        batch.push(t.elapsed().as_secs_f64());
        std::hint::black_box(p);
    }
    let roc_auc = match (&first, &labels) {
        (Predictions::Proba(p), Some(y)) if p.first().is_some_and(|r| r.len() == 2) => {
            let score: Vec<f64> = p.iter().map(|r| r[1]).collect();
            Some(kiln_ml::metrics::roc_auc(y, &score)?)
        }
        _ => None,
    };

    // Single rows, encoded as the model's row API takes them.
    let m = n_single.min(n).max(1);
    let rows: Vec<Vec<f64>> = (0..m)
        .map(|r| {
            data.features()
                .iter()
                .map(|f| match &f.kind {
                    FeatureKind::Numeric(v) => v[r],
                    FeatureKind::Categorical { codes, .. } => {
                        if codes[r] == MISSING_CODE {
                            f64::NAN
                        } else {
                            f64::from(codes[r])
                        }
                    }
                })
                .collect()
        })
        .collect();
    let mut checksum = 0.0;
    for r in rows.iter().cycle().take(warmup) {
        checksum += gbdt.predict_proba_row(r)?[1.min(gbdt.n_outputs())];
    }
    let mut single = Vec::with_capacity(rows.len());
    for r in &rows {
        let t = Instant::now();
        let p = gbdt.predict_proba_row(r)?;
        single.push(t.elapsed().as_secs_f64() * 1e6);
        checksum += std::hint::black_box(p)[0];
    }
    let single_mean = single.iter().sum::<f64>() / single.len() as f64;
    single.sort_by(f64::total_cmp);

    // One row as a 1-row dataset through the batch API (fewer calls: it allocates per call).
    let m_ds = m.min(5_000);
    let idx: Vec<usize> = (0..m_ds).collect();
    for i in idx.iter().cycle().take(warmup.min(1_000)) {
        std::hint::black_box(model.predict(&data.take(&[*i]))?);
    }
    let mut single_ds = Vec::with_capacity(m_ds);
    for &i in &idx {
        let t = Instant::now();
        let one = data.take(&[i]);
        let p = model.predict(&one)?;
        single_ds.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p);
    }
    single_ds.sort_by(f64::total_cmp);

    let out = serde_json::json!({
        "rows": n,
        "trees": gbdt.trees().len(),
        "load_seconds": load_seconds,
        "encode_seconds": encode_seconds,
        "batch_seconds": median(&mut batch.clone()),
        "batch_seconds_all": batch,
        "single_row_us": quantile_sorted(&single, 0.5),
        "single_row_us_p90": quantile_sorted(&single, 0.9),
        "single_row_us_p99": quantile_sorted(&single, 0.99),
        "single_row_us_mean": single_mean,
        "single_row_calls": single.len(),
        "single_row_dataset_us": quantile_sorted(&single_ds, 0.5),
        "single_row_dataset_us_p99": quantile_sorted(&single_ds, 0.99),
        "single_row_dataset_calls": single_ds.len(),
        "roc_auc": roc_auc,
        "peak_rss_mib": peak_rss_mib(),
        "checksum": checksum,
    });
    println!("{out}");
    Ok(())
}
