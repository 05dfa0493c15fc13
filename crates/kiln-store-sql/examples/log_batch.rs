//! Store-level log-batch throughput (no HTTP): `cargo run --release -p kiln-store-sql --example
//! log_batch -- [sqlite:///tmp/x.db] [batches] [keys]`. Mirrors bench/tracking's log-batch phase:
//! 1000 metrics per batch, `keys` distinct keys, 20 batches per run.

use std::time::Instant;

use kiln_store::{ExperimentStore, NewRun, RunStore};
use kiln_store_sql::{OpenOptions, SqlStore};
use kiln_types::Metric;

#[allow(clippy::print_stdout)] // a benchmark prints its figures
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir()?;
    let default_uri = format!("sqlite:///{}", dir.path().join("kiln.db").display());
    let uri = args.get(1).cloned().unwrap_or(default_uri);
    let batches: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let keys: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let store = SqlStore::open(&uri, &OpenOptions::default())?;
    let exp = store.create_experiment("bench", None, &[])?;
    let steps = 1000 / keys;
    // Runs made up front, like bench/tracking (creating one folds pending values first).
    let mut runs = Vec::new();
    for _ in 0..batches.div_ceil(20) {
        let run = store.create_run(&NewRun {
            experiment_id: exp.clone(),
            user_id: "bench".into(),
            run_name: None,
            start_time: 0,
            tags: vec![],
        })?;
        runs.push(run.info.run_id);
    }
    let t = Instant::now();
    for b in 0..batches {
        let run_id = &runs[b / 20];
        let mut metrics = Vec::with_capacity(1000);
        for s in 0..steps {
            for k in 0..keys {
                let step = (b * steps + s) as i64;
                metrics.push(Metric::new(
                    format!("m{k}"),
                    k as f64 / keys as f64,
                    1_700_000_000_000,
                    step,
                ));
            }
        }
        store.log_batch(run_id, &metrics, &[], &[])?;
    }
    let secs = t.elapsed().as_secs_f64();
    let n = (batches * 1000) as f64;
    println!(
        "{batches} batches x 1000 metrics ({keys} keys): {:.2} s, {:.0} metrics/s, {:.2} us/metric",
        secs,
        n / secs,
        secs * 1e6 / n
    );
    Ok(())
}
