//! `kiln train`.

use std::process::ExitCode;

use kiln_train::artifact::KilnModel;
use kiln_train::frame::Task;
use kiln_train::plots::{evaluation_plots, feature_importance, write_plots, Plot};
use kiln_train::split::SplitSpec;
use kiln_train::tracking::{save_local, Tracker};
use kiln_train::train::{train, HeldOut, ModelKind, TrainRequest};
use kiln_types::{RunStatus, Tag};

use super::data::read_options;
use super::{check_no_track, locations, open_tracking, runtime, InputError};
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
    let loc = locations(store)?;
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
        test_data,
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
        Some((t, _)) => Some(t.start(
            &experiment,
            run_name,
            "kiln train",
            vec![Tag::new("kiln.model", &model)],
        )?),
        None => None,
    };
    if !json {
        printer.status(&format!("Training {model} on {data}…"));
    }
    let outcome = match train(&req) {
        Ok(o) => o,
        Err(e) => {
            if let (Some((t, _)), Some(r)) = (&tracking, &run) {
                let _ = t.log(r, &[], &[], &[Tag::new("kiln.error", e.to_string())]);
                let _ = t.finish(r, RunStatus::Failed);
            }
            return Err(e.into());
        }
    };
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
    let mut registered = None;
    if let (Some((t, _)), Some(r)) = (&tracking, &run) {
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
        t.log_dataset(r, &data, &outcome.data_hash, "training")?;
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
        t.finish(r, RunStatus::Finished)?;
    }
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
