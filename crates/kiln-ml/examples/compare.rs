//! Accuracy and speed comparison of kiln's GBDT with scikit-learn / LightGBM.
//!
//! ```text
//! # scikit-learn's datasets (written by tests/data/make_datasets.py)
//! cargo run -p kiln-ml --release --example compare -- sklearn /tmp/kiln-ml-data
//! # the 1M-row churn table: first 80% train, last 20% test
//! cargo run -p kiln-ml --release --example compare -- churn /tmp/churn1m.csv [key=value ...]
//! ```
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Instant;

use kiln_ml::{metrics, Dataset, Feature, ForestParams, GbdtParams, Objective, MISSING_CODE};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A parsed CSV column: numbers, or strings as codes into sorted category names.
enum Column {
    Num(Vec<f64>),
    Str(Vec<u32>, Vec<String>),
}

/// A parsed CSV with typed columns (a column is numeric when its first value parses).
struct Table {
    names: Vec<String>,
    cols: Vec<Column>,
    n_rows: usize,
}

fn parse_num(v: &str) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.parse().unwrap_or(f64::NAN)
    }
}

fn read_csv(path: &str) -> AnyResult<Table> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let names: Vec<String> = lines
        .next()
        .ok_or("empty csv")?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let mut cols: Vec<Column> = Vec::new();
    let mut dicts: Vec<BTreeMap<String, u32>> = vec![BTreeMap::new(); names.len()];
    let mut n_rows = 0;
    for (ln, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != names.len() {
            return Err(format!(
                "{path}: line {} has {} fields, expected {}",
                ln + 2,
                fields.len(),
                names.len()
            )
            .into());
        }
        if cols.is_empty() {
            cols = fields
                .iter()
                .map(|v| {
                    if v.parse::<f64>().is_ok() {
                        Column::Num(Vec::new())
                    } else {
                        Column::Str(Vec::new(), Vec::new())
                    }
                })
                .collect();
        }
        for (c, v) in fields.iter().enumerate() {
            match &mut cols[c] {
                Column::Num(x) => x.push(parse_num(v)),
                Column::Str(codes, _) => {
                    let d = &mut dicts[c];
                    let next = d.len() as u32;
                    codes.push(if v.is_empty() {
                        MISSING_CODE
                    } else {
                        *d.entry(v.to_string()).or_insert(next)
                    });
                }
            }
        }
        n_rows += 1;
    }
    // Recode strings to sorted category order.
    for (c, col) in cols.iter_mut().enumerate() {
        if let Column::Str(codes, cats) = col {
            let mut order: Vec<(&String, &u32)> = dicts[c].iter().collect();
            order.sort();
            let mut remap = vec![0u32; order.len()];
            for (new, (_, &old)) in order.iter().enumerate() {
                remap[old as usize] = new as u32;
            }
            for code in codes.iter_mut() {
                if *code != MISSING_CODE {
                    *code = remap[*code as usize];
                }
            }
            *cats = order.iter().map(|(s, _)| (*s).clone()).collect();
        }
    }
    Ok(Table {
        names,
        cols,
        n_rows,
    })
}

/// Features (all but the last column) and the label (last column) of `rows`.
fn to_dataset(t: &Table, rows: std::ops::Range<usize>) -> AnyResult<(Dataset, Vec<f64>)> {
    let last = t.names.len() - 1;
    let mut feats = Vec::new();
    for c in 0..last {
        feats.push(match &t.cols[c] {
            Column::Num(x) => Feature::numeric(t.names[c].clone(), x[rows.clone()].to_vec()),
            Column::Str(codes, cats) => Feature::categorical(
                t.names[c].clone(),
                codes[rows.clone()].to_vec(),
                cats.clone(),
            ),
        });
    }
    let y = match &t.cols[last] {
        Column::Num(x) => x[rows].to_vec(),
        Column::Str(..) => return Err("the label column must be numeric".into()),
    };
    Ok((Dataset::new(feats)?, y))
}

/// CPU seconds (user + system, all threads) used by this process so far.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) start at field 3.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn sklearn(dir: &str) -> AnyResult<()> {
    let reference: serde_json::Value =
        std::fs::read_to_string(format!("{dir}/sklearn_results.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null);
    println!(
        "{:<14} {:<11} {:>11} {:>10} {:>9}  {:>10} {:>9} {:>9}  {:>7}",
        "dataset",
        "metric",
        "sklearn HGB",
        "kiln GBDT",
        "diff",
        "sklearn RF",
        "kiln RF",
        "diff",
        "fit ms"
    );
    for (name, objective) in [
        ("breast_cancer", Objective::Binary),
        ("wine", Objective::Multiclass),
        ("digits", Objective::Multiclass),
        ("diabetes", Objective::Regression),
    ] {
        let tr = read_csv(&format!("{dir}/{name}_train.csv"))?;
        let te = read_csv(&format!("{dir}/{name}_test.csv"))?;
        let (xtr, ytr) = to_dataset(&tr, 0..tr.n_rows)?;
        let (xte, yte) = to_dataset(&te, 0..te.n_rows)?;
        // scikit-learn HistGradientBoosting defaults.
        let params = GbdtParams {
            objective,
            n_trees: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            min_data_in_leaf: 20,
            lambda_l2: 0.0,
            max_bins: 255,
            ..GbdtParams::default()
        };
        let t0 = Instant::now();
        let model = kiln_ml::gbdt::fit(&params, &xtr, &ytr)?;
        let fit_ms = t0.elapsed().as_secs_f64() * 1e3;
        let forest = kiln_ml::fit_forest(
            &ForestParams {
                objective,
                ..ForestParams::default()
            },
            &xtr,
            &ytr,
            None,
        )?;
        let (metric, kiln, rf) = match objective {
            Objective::Binary => (
                "roc_auc",
                metrics::roc_auc(&yte, &model.predict(&xte)?)?,
                metrics::roc_auc(&yte, &forest.predict(&xte)?)?,
            ),
            Objective::Multiclass => (
                "roc_auc_ovr",
                metrics::roc_auc_ovr(&yte, &model.predict_proba(&xte)?)?,
                metrics::roc_auc_ovr(&yte, &forest.predict_proba(&xte)?)?,
            ),
            Objective::Regression => (
                "r2",
                metrics::r2(&yte, &model.predict(&xte)?)?,
                metrics::r2(&yte, &forest.predict(&xte)?)?,
            ),
        };
        let sk = reference[name]["sklearn"].as_f64().unwrap_or(f64::NAN);
        let sk_rf = reference[name]["sklearn_rf"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{name:<14} {metric:<11} {sk:>11.6} {kiln:>10.6} {:>+9.6}  {sk_rf:>10.6} {rf:>9.6} {:>+9.6}  {fit_ms:>7.1}",
            kiln - sk,
            rf - sk_rf
        );
    }
    Ok(())
}

fn churn(path: &str, overrides: &[String]) -> AnyResult<()> {
    let t0 = Instant::now();
    let table = read_csv(path)?;
    let n = table.n_rows;
    let n_train = n * 8 / 10;
    let (xtr, ytr) = to_dataset(&table, 0..n_train)?;
    let (xte, yte) = to_dataset(&table, n_train..n)?;
    drop(table);
    println!(
        "loaded {n} rows in {:.2}s (train {n_train}, test {}), rss {:.0} MB",
        t0.elapsed().as_secs_f64(),
        n - n_train,
        peak_rss_mb()
    );
    let params = GbdtParams {
        objective: Objective::Binary,
        n_trees: 100,
        num_leaves: 31,
        max_bins: 255,
        learning_rate: 0.1,
        ..GbdtParams::default()
    };
    let mut params = params;
    for kv in overrides {
        let (k, v) = kv
            .split_once('=')
            .ok_or("extra arguments are key=value parameters")?;
        params.set(k, v)?;
    }
    let (t1, c1) = (Instant::now(), cpu_seconds());
    let model = kiln_ml::gbdt::fit(&params, &xtr, &ytr)?;
    let (fit_s, fit_cpu) = (t1.elapsed().as_secs_f64(), cpu_seconds() - c1);
    let (t2, c2) = (Instant::now(), cpu_seconds());
    let p = model.predict(&xte)?;
    let (pred_s, pred_cpu) = (t2.elapsed().as_secs_f64(), cpu_seconds() - c2);
    let auc = metrics::roc_auc(&yte, &p)?;
    // Single-row latency over the first 10k test rows.
    let nf = xte.features().len();
    let rows: Vec<Vec<f64>> = (0..10_000.min(xte.n_rows()))
        .map(|r| {
            (0..nf)
                .map(|f| match &xte.features()[f].kind {
                    kiln_ml::FeatureKind::Numeric(v) => v[r],
                    kiln_ml::FeatureKind::Categorical { codes, .. } => {
                        if codes[r] == MISSING_CODE {
                            f64::NAN
                        } else {
                            codes[r] as f64
                        }
                    }
                })
                .collect()
        })
        .collect();
    let t3 = Instant::now();
    let mut acc = 0.0;
    for _ in 0..5 {
        for r in &rows {
            acc += model.predict_row(r)?;
        }
    }
    let single_us = t3.elapsed().as_secs_f64() * 1e6 / (5 * rows.len()) as f64;
    let json = model.to_json()?;
    std::fs::write("/tmp/kiln-churn-model.json", &json)?;
    println!(
        "kiln GBDT: fit {fit_s:.2}s (cpu {fit_cpu:.2}s)  test AUC {auc:.4}  predict {} rows {pred_s:.3}s (cpu {pred_cpu:.2}s)  \
         single-row {single_us:.2}us  model {} KB  peak rss {:.0} MB  (checksum {acc:.3})",
        xte.n_rows(),
        json.len() / 1024,
        peak_rss_mb()
    );
    let imp = model.feature_importance();
    let total: f64 = imp.iter().map(|i| i.gain).sum();
    let mut imp_sorted = imp.clone();
    imp_sorted.sort_by(|a, b| b.gain.total_cmp(&a.gain));
    let line: Vec<String> = imp_sorted
        .iter()
        .map(|i| {
            format!(
                "{} {:.1}% ({} splits)",
                i.name,
                100.0 * i.gain / total,
                i.splits
            )
        })
        .collect();
    println!("gain importance: {}", line.join(", "));
    Ok(())
}

/// Prediction timing only: a saved model on the last 20% of the churn rows (best of 5).
fn predict_bench(model_path: &str, csv: &str) -> AnyResult<()> {
    let model = kiln_ml::GbdtModel::from_json(&std::fs::read_to_string(model_path)?)?;
    let table = read_csv(csv)?;
    let n = table.n_rows;
    let (xte, _) = to_dataset(&table, n * 8 / 10..n)?;
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    for _ in 0..5 {
        let (t, c) = (Instant::now(), cpu_seconds());
        let p = model.predict(&xte)?;
        best = best.min(t.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(cpu_seconds() - c);
        std::hint::black_box(p);
    }
    let nf = xte.features().len();
    let rows: Vec<Vec<f64>> = (0..10_000)
        .map(|r| {
            (0..nf)
                .map(|f| match &xte.features()[f].kind {
                    kiln_ml::FeatureKind::Numeric(v) => v[r],
                    kiln_ml::FeatureKind::Categorical { codes, .. } => codes[r] as f64,
                })
                .collect()
        })
        .collect();
    let mut single = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for r in &rows {
            std::hint::black_box(model.predict_row(r)?);
        }
        single = single.min(t.elapsed().as_secs_f64() * 1e6 / rows.len() as f64);
    }
    println!(
        "predict {} rows: best {best:.3}s (cpu {best_cpu:.2}s); single-row {single:.2}us",
        xte.n_rows()
    );
    Ok(())
}

fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("sklearn"), dir) => sklearn(dir.map_or("/tmp/kiln-ml-data", String::as_str)),
        (Some("churn"), Some(path)) => churn(path, &args[2..]),
        (Some("predict"), Some(model)) => predict_bench(
            model,
            args.get(2).map_or("/tmp/churn1m.csv", String::as_str),
        ),
        _ => Err("usage: compare sklearn [DIR] | compare churn CSV".into()),
    }
}
