//! `kiln train`.

use std::process::ExitCode;

use kiln_train::artifact::KilnModel;
use kiln_train::frame::Task;
use kiln_train::plots::{evaluation_plots, feature_importance, write_plots, Plot};
use kiln_train::split::SplitSpec;
use kiln_train::tracking::{save_local, with_open_runs, Tracker};
use kiln_train::train::{train, HeldOut, ModelKind, TrainRequest};
use kiln_types::{RunStatus, Tag};

use super::data::read_options;
use super::{check_no_track, client_locations, open_tracking, runtime, InputError};
use crate::cli::TrainArgs;
use crate::printer::Printer;

/// Parse `key=value` pairs.
pub(crate) fn parse_kv(items: &[String]) -> Result<Vec<(String, String)>, InputError> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    InputError(format!(
                        "Invalid --param `{item}`: expected key=value, e.g. n_trees=200"
                    ))
                })
        })
        .collect()
}

/// Plots of a model on its held-out part (none without one).
pub(crate) fn held_out_plots(
    model: &KilnModel,
    held_out: Option<&HeldOut>,
) -> anyhow::Result<Vec<Plot>> {
    let Some(h) = held_out else {
        return Ok(Vec::new());
    };
    Ok(evaluation_plots(
        model.signature.target.task,
        &model.signature.target.classes,
        &h.predictions,
        &h.labels,
        Some(&feature_importance(model)),
    )?)
}

/// A tracker on the local store (or the given store URIs) and a runtime for artifact I/O.
pub(crate) fn tracker(
    store: &crate::cli::StoreArgs,
) -> anyhow::Result<(Tracker, tokio::runtime::Runtime)> {
    let loc = client_locations(store)?;
    let rt = runtime(Some(2))?;
    let (store, blobs) = open_tracking(&loc, &rt)?;
    let handle = rt.handle().clone();
    Ok((
        Tracker {
            store,
            blobs,
            runtime: handle,
        },
        rt,
    ))
}

/// Record the training file, and the `--test-data` file the metrics came from, as the run's
/// inputs (`data_hash` is `<train>` or `<train>+<test>`).
pub(crate) fn log_datasets(
    t: &Tracker,
    run: &kiln_train::tracking::RunHandle,
    data: &str,
    test_data: Option<&str>,
    data_hash: &str,
) -> anyhow::Result<()> {
    let (train_hash, test_hash) = data_hash.split_once('+').unwrap_or((data_hash, ""));
    t.log_dataset(run, data, train_hash, "training")?;
    if let Some(test) = test_data.filter(|_| !test_hash.is_empty()) {
        t.log_dataset(run, test, test_hash, "testing")?;
    }
    Ok(())
}

/// Start a run that is ended for sure: by [`end_run`], or KILLED on SIGTERM/Ctrl-C. A
/// cancelled CI job must not leave runs RUNNING forever. The first run started installs the
/// signal handler, on the tracker's runtime (which the command keeps until it returns).
pub(crate) fn start_run(
    t: &Tracker,
    experiment: Option<&str>,
    run_name: Option<String>,
    command: &str,
    tags: Vec<kiln_types::Tag>,
) -> anyhow::Result<kiln_train::tracking::RunHandle> {
    static HANDLER: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if HANDLER.get().is_none() {
        kill_runs_on_signal(&t.runtime, std::sync::Arc::clone(&t.store))?;
        let _ = HANDLER.set(());
    }
    // `start` puts the run on kiln-train's open list under its run gate.
    Ok(t.start(experiment, run_name, command, tags)?)
}

/// End a run started by [`start_run`] after its work: with `status` when the work succeeded,
/// else FAILED with the error as its `kiln.error` tag (best effort: the error itself is what
/// the user must see). Returns the work's result. The run stays in the open list until it is
/// ended, so a signal meanwhile waits for the end instead of overwriting it with KILLED.
pub(crate) fn end_run<T>(
    t: &Tracker,
    run: &kiln_train::tracking::RunHandle,
    work: anyhow::Result<T>,
    status: impl FnOnce(&T) -> RunStatus,
) -> anyhow::Result<T> {
    if kiln_train::tracking::run_gate_closed() {
        // A signal is ending the process (the work likely failed because of it: trials refused
        // to start): the handler ends this run KILLED and exits; do not race it.
        loop {
            std::thread::park();
        }
    }
    let ended = with_open_runs(|open| {
        let ended = match &work {
            Ok(value) => t.finish(run, status(value)).map_err(anyhow::Error::from),
            Err(e) => {
                let _ = t.log(run, &[], &[], &[Tag::new("kiln.error", format!("{e:#}"))]);
                let _ = t.finish(run, RunStatus::Failed);
                Ok(())
            }
        };
        open.retain(|id| *id != run.run_id);
        ended
    });
    ended?;
    work
}

/// How long an interrupted command spends ending its runs before it exits anyway (a store that
/// does not answer must not keep a cancelled job alive).
const KILL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// On SIGTERM or SIGINT: start no new run, end the open ones (and their RUNNING child runs, such
/// as `kiln tune`'s trials) KILLED, then exit as the signal would have (143 or 130). A second
/// signal, or [`KILL_DEADLINE`], exits at once.
fn kill_runs_on_signal(
    rt: &tokio::runtime::Handle,
    store: std::sync::Arc<dyn kiln_store::TrackingStore>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let _guard = rt.enter();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    rt.spawn(async move {
        let code = tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        };
        let killing = tokio::task::spawn_blocking(move || {
            kiln_train::tracking::close_run_gate();
            // Waits for a run being ended (end_run holds the list).
            let runs = with_open_runs(std::mem::take);
            let n = runs.len();
            for id in runs {
                kill_run(&*store, &id);
            }
            n
        });
        let outcome = tokio::select! {
            done = tokio::time::timeout(KILL_DEADLINE, killing) => match done {
                Ok(Ok(0)) => String::new(),
                Ok(Ok(n)) => format!("; {n} open run(s) ended KILLED"),
                Ok(Err(_)) | Err(_) => "; the open runs could not be ended (the store did not answer)".into(),
            },
            _ = term.recv() => "; stopped without ending the open runs".into(),
            _ = int.recv() => "; stopped without ending the open runs".into(),
        };
        eprintln!("kiln: interrupted{outcome}");
        std::process::exit(code);
    });
    Ok(())
}

fn kill_run(store: &dyn kiln_store::TrackingStore, run_id: &str) {
    let killed = kiln_store::RunUpdate {
        status: Some(RunStatus::Killed),
        end_time: Some(kiln_types::now_ms()),
        run_name: None,
    };
    let Ok(run) = store.get_run(run_id) else {
        return;
    };
    let children = kiln_types::filter::parse_filter(
        &format!("tags.mlflow.parentRunId = '{run_id}' AND attributes.status = 'RUNNING'"),
        kiln_types::filter::Target::Runs,
    )
    .ok()
    .and_then(|filter| {
        store
            .search_runs(&kiln_store::RunQuery {
                experiment_ids: vec![run.info.experiment_id.clone()],
                filter,
                order_by: Vec::new(),
                view: kiln_types::ViewType::ActiveOnly,
                page: kiln_store::PageRequest {
                    max_results: 10_000,
                    offset: 0,
                },
            })
            .ok()
    });
    for child in children.map(|p| p.items).unwrap_or_default() {
        let _ = store.update_run(&child.info.run_id, &killed);
    }
    let _ = store.update_run(run_id, &killed);
}

pub(super) fn run(args: TrainArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let TrainArgs {
        data,
        target,
        task,
        model,
        params,
        split,
        test_data,
        seed,
        stratify,
        exclude,
        output,
        experiment,
        run_name,
        register,
        plots,
        no_track,
        json,
        store,
        read,
    } = args;
    check_no_track(
        no_track,
        output.as_deref(),
        register.as_deref(),
        "the model",
    )?;
    let req = TrainRequest {
        data: data.clone(),
        test_data: test_data.clone(),
        target,
        task: Task::parse(&task).ok_or_else(|| InputError(format!("Invalid --task `{task}`")))?,
        model: ModelKind::parse(&model)
            .ok_or_else(|| InputError(format!("Invalid --model `{model}`")))?,
        params: parse_kv(&params)?,
        split: SplitSpec::parse(&split)?,
        seed,
        stratify,
        exclude,
        read: read_options(read)?,
    };
    let tracking = if no_track {
        None
    } else {
        Some(tracker(&store)?)
    };
    let run = match &tracking {
        Some((t, _)) => Some(start_run(
            t,
            experiment.as_deref(),
            run_name,
            "kiln train",
            vec![Tag::new("kiln.model", &model)],
        )?),
        None => None,
    };
    if !json {
        printer.status(&format!("Training {model} on {data}…"));
    }
    // Everything from here on ends the run: FINISHED, or FAILED with the error.
    let work = || -> anyhow::Result<_> {
        let outcome = train(&req)?;
        let model_bytes = outcome.model.to_bytes()?;
        let saved = match &output {
            Some(path) => Some(save_local(&outcome.model, path)?),
            None => None,
        };
        let charts = held_out_plots(&outcome.model, outcome.held_out.as_ref())?;
        let written = match &plots {
            Some(dir) => write_plots(&charts, dir)?,
            None => Vec::new(),
        };
        let registered = match (&tracking, &run) {
            (Some((t, _)), Some(r)) => {
                let mut registered = None;
                let mut logged_params = vec![
                    ("model".to_string(), model.clone()),
                    ("task".to_string(), task.clone()),
                    ("target".to_string(), req.target.clone()),
                    ("seed".to_string(), seed.to_string()),
                    ("split".to_string(), outcome.model.training.split.clone()),
                ];
                logged_params.extend(req.params.iter().cloned());
                let mut metrics = outcome.metrics.clone();
                metrics.push(("fit_seconds".into(), outcome.fit_seconds));
                #[allow(clippy::cast_precision_loss)]
                metrics.push(("train_rows".into(), outcome.rows.train as f64));
                t.log(
                    r,
                    &logged_params,
                    &metrics,
                    &[Tag::new("kiln.data.hash", &outcome.data_hash)],
                )?;
                log_datasets(t, r, &data, test_data.as_deref(), &outcome.data_hash)?;
                t.put_artifact(
                    r,
                    &format!("model/{}", kiln_train::artifact::MODEL_FILE),
                    model_bytes.clone(),
                )?;
                t.put_artifact(
                    r,
                    "model/signature.json",
                    serde_json::to_vec_pretty(&outcome.model.signature)?,
                )?;
                for chart in &charts {
                    t.put_artifact(
                        r,
                        &format!("plots/{}", chart.name),
                        chart.svg.clone().into_bytes(),
                    )?;
                }
                if let Some(name) = &register {
                    let version = t.register(
                        r,
                        name,
                        vec![Tag::new("kiln.data.hash", &outcome.data_hash)],
                    )?;
                    registered = Some((name.clone(), version));
                }
                registered
            }
            _ => None,
        };
        Ok((outcome, saved, written, registered))
    };
    let (outcome, saved, written, registered) = match (&tracking, &run) {
        (Some((t, _)), Some(r)) => end_run(t, r, work(), |_| RunStatus::Finished)?,
        _ => work()?,
    };
    if json {
        printer.json(&serde_json::json!({
            "run_id": run.as_ref().map(|r| r.run_id.clone()),
            "experiment_id": run.as_ref().map(|r| r.experiment_id.clone()),
            "model": model,
            "metrics": outcome.metrics.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "rows": outcome.rows,
            "fit_seconds": outcome.fit_seconds,
            "data_hash": outcome.data_hash,
            "output": saved.as_ref().map(|p| p.display().to_string()),
            "plots": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "registered": registered.as_ref().map(|(n, v)| serde_json::json!({"name": n, "version": v})),
            "skipped_columns": outcome.skipped,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    for s in &outcome.skipped {
        printer.status(&format!(
            "note: column `{}` left out: {}",
            s.column, s.reason
        ));
    }
    printer.line(&format!(
        "Trained {model} on {} rows ({} validation, {} test) in {:.2}s",
        outcome.rows.train, outcome.rows.valid, outcome.rows.test, outcome.fit_seconds
    ));
    let rows: Vec<Vec<String>> = outcome
        .metrics
        .iter()
        .map(|(k, v)| vec![k.clone(), format!("{v:.6}")])
        .collect();
    if !rows.is_empty() {
        printer.table(&["METRIC", "VALUE"], &rows);
    }
    if let Some(p) = &saved {
        printer.line(&format!("Model written to {}", p.display()));
    }
    if let Some(dir) = &plots {
        printer.line(&format!("Plots written to {dir} ({})", written.len()));
    }
    if let Some(r) = &run {
        printer.line(&format!(
            "Run {} (experiment {})",
            r.run_id, r.experiment_id
        ));
    }
    if let Some((n, v)) = &registered {
        printer.line(&format!("Registered {n} version {v}"));
    }
    Ok(ExitCode::SUCCESS)
}
