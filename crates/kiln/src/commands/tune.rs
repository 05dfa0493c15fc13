//! `kiln tune`: grid or random search, each trial a child run of one parent run.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_train::frame::Task;
use kiln_train::plots::write_plots;
use kiln_train::split::SplitSpec;
use kiln_train::tracking::{git_info, save_local};
use kiln_train::train::{prepare, ModelKind, TrainRequest};
use kiln_train::tune::{
    check_metric, default_metric, parse_grid, parse_random, plan, tune, ChildRuns, Direction,
    Search, TrialResult, TuneRequest,
};
use kiln_types::{RunStatus, Tag};

use super::data::read_options;
use super::train::{end_run, held_out_plots, parse_kv, start_run, tracker};
use super::{check_no_track, InputError};
use crate::cli::TuneArgs;
use crate::printer::Printer;

/// Random-search trials when `--trials` is not given.
const DEFAULT_TRIALS: usize = 20;

fn params_text(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_score(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.6}"))
}

#[allow(clippy::too_many_lines)]
pub(super) fn run(args: TuneArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let TuneArgs {
        data,
        target,
        task,
        model,
        grid,
        random,
        trials,
        metric,
        direction,
        parallel,
        params,
        split,
        test_data,
        seed,
        stratify,
        exclude,
        output,
        plots,
        experiment,
        run_name,
        register,
        no_track,
        json,
        store,
        read,
    } = args;
    check_no_track(
        no_track,
        output.as_deref(),
        register.as_deref(),
        "the best model",
    )?;
    let search = match (grid.is_empty(), random.is_empty()) {
        (false, false) => {
            return Err(InputError(
                "Give --grid or --random, not both: a grid lists every combination, a random search draws --trials of them".into(),
            )
            .into())
        }
        (true, true) => {
            return Err(InputError(
                "Nothing to search: give --grid name=v1,v2,… (repeatable) or --random name=loguniform(a,b)|uniform(a,b)|int(a,b)|choice(x,y,…)".into(),
            )
            .into())
        }
        (false, true) => {
            if trials.is_some() {
                return Err(InputError(
                    "--trials applies to --random; a --grid runs every combination".into(),
                )
                .into());
            }
            Search::Grid(grid.iter().map(|g| parse_grid(g)).collect::<Result<_, _>>()?)
        }
        (true, false) => Search::Random {
            space: random
                .iter()
                .map(|r| parse_random(r))
                .collect::<Result<_, _>>()?,
            trials: trials.unwrap_or(DEFAULT_TRIALS),
        },
    };
    search.validate()?;
    let task_kind =
        Task::parse(&task).ok_or_else(|| InputError(format!("Invalid --task `{task}`")))?;
    let model_kind =
        ModelKind::parse(&model).ok_or_else(|| InputError(format!("Invalid --model `{model}`")))?;
    let metric = metric.unwrap_or_else(|| default_metric(task_kind).to_string());
    check_metric(task_kind, &metric)?;
    let direction = match &direction {
        Some(d) => Direction::parse(d)
            .ok_or_else(|| InputError(format!("Invalid --direction `{d}`: expected max or min")))?,
        None => Direction::for_metric(&metric),
    };
    let parallel = match parallel {
        Some(0) => return Err(InputError("--parallel must be at least 1".into()).into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    };
    let fixed = parse_kv(&params)?;
    let split_spec = SplitSpec::parse(&split)?;
    if split_spec.valid <= 0.0 {
        return Err(InputError(format!(
            "kiln tune compares trials on a validation part, and --split `{split}` has none: give train/validation/test, e.g. 0.7/0.15/0.15"
        ))
        .into());
    }
    let req = TrainRequest {
        data: data.clone(),
        test_data: test_data.clone(),
        target,
        task: task_kind,
        model: model_kind,
        params: fixed.clone(),
        split: split_spec,
        seed,
        stratify,
        exclude,
        read: read_options(read)?,
    };
    let tune_req = TuneRequest {
        model: model_kind,
        fixed,
        search,
        metric: metric.clone(),
        direction,
        seed,
        parallel,
    };
    plan(&tune_req, task_kind)?;
    let n_trials = tune_req.search.len();
    if !json {
        printer.status(&format!(
            "Reading {data}; {} search: {n_trials} trial(s) of {model}, {parallel} at a time, on valid_{metric} ({})",
            tune_req.search.kind(),
            direction.as_str()
        ));
    }
    let prep = prepare(&req)?;

    let tracking = if no_track {
        None
    } else {
        Some(tracker(&store)?)
    };
    let parent = match &tracking {
        Some((t, _)) => Some(start_run(
            t,
            experiment.as_deref(),
            run_name,
            "kiln tune",
            vec![
                Tag::new("kiln.model", &model),
                Tag::new("kiln.tune.search", tune_req.search.kind()),
                Tag::new("kiln.tune.space", tune_req.search.describe()),
                Tag::new("kiln.tune.metric", format!("valid_{metric}")),
            ],
        )?),
        None => None,
    };
    let user = kiln_train::tracking::current_user().unwrap_or_default();
    let mut child_tags = vec![
        Tag::new("mlflow.source.name", "kiln tune"),
        Tag::new("mlflow.source.type", "LOCAL"),
        Tag::new("mlflow.user", user),
        Tag::new("kiln.command", "kiln tune"),
        Tag::new("kiln.model", &model),
        Tag::new("kiln.data.hash", &prep.data_hash),
    ];
    if let Some((commit, dirty)) = git_info() {
        child_tags.push(Tag::new("mlflow.source.git.commit", commit.clone()));
        child_tags.push(Tag::new("kiln.git.commit", commit));
        child_tags.push(Tag::new("kiln.git.dirty", dirty.to_string()));
    }
    let child_runs = match (&tracking, &parent) {
        (Some((t, _)), Some(p)) => Some(ChildRuns {
            tracker: t,
            parent: p,
            tags: child_tags,
        }),
        _ => None,
    };

    let done = AtomicUsize::new(0);
    let metric_key = format!("valid_{metric}");
    let progress = |r: &TrialResult| {
        let k = done.fetch_add(1, Ordering::Relaxed) + 1;
        if json {
            return;
        }
        let outcome = match (&r.error, r.score) {
            (Some(e), _) => format!("failed: {e}"),
            (None, Some(s)) => format!("{metric_key} {s:.6}"),
            (None, None) => format!("{metric_key} undefined"),
        };
        printer.status(&format!(
            "[{k}/{n_trials}] trial {} {} → {outcome} ({:.2}s)",
            r.index,
            params_text(&r.params),
            r.fit_seconds
        ));
    };
    // Everything from here on ends the parent run: FINISHED, or FAILED with the error.
    let work = || -> anyhow::Result<_> {
        let outcome = tune(&prep, &tune_req, child_runs.as_ref(), &progress)?;
        let best = &outcome.trials[outcome.best];
        let charts = held_out_plots(&outcome.model, outcome.held_out.as_ref())?;
        let written = match &plots {
            Some(dir) => write_plots(&charts, dir)?,
            None => Vec::new(),
        };
        let saved = match &output {
            Some(path) => Some(save_local(&outcome.model, path)?),
            None => None,
        };
        let failed = outcome.trials.iter().filter(|t| t.error.is_some()).count();
        let mut registered = None;
        if let (Some((t, _)), Some(p)) = (&tracking, &parent) {
            let mut logged = vec![
                ("model".to_string(), model.clone()),
                ("task".to_string(), task.clone()),
                ("target".to_string(), req.target.clone()),
                ("seed".to_string(), seed.to_string()),
                ("split".to_string(), prep.split.clone()),
                ("search".to_string(), tune_req.search.kind().to_string()),
                ("trials".to_string(), n_trials.to_string()),
                ("metric".to_string(), metric_key.clone()),
                ("direction".to_string(), direction.as_str().to_string()),
            ];
            logged.extend(outcome.best_params.iter().cloned());
            let mut metrics = outcome.metrics.clone();
            #[allow(clippy::cast_precision_loss)]
            {
                metrics.push(("best_trial".into(), best.index as f64));
                metrics.push(("failed_trials".into(), failed as f64));
                metrics.push(("train_rows".into(), prep.rows().train as f64));
            }
            let mut tags = vec![Tag::new("kiln.data.hash", &prep.data_hash)];
            if let Some(id) = &best.run_id {
                tags.push(Tag::new("kiln.tune.best_run_id", id));
            }
            t.log(p, &logged, &metrics, &tags)?;
            super::train::log_datasets(t, p, &data, test_data.as_deref(), &prep.data_hash)?;
            t.put_artifact(
                p,
                &format!("model/{}", kiln_train::artifact::MODEL_FILE),
                outcome.model.to_bytes()?,
            )?;
            t.put_artifact(
                p,
                "model/signature.json",
                serde_json::to_vec_pretty(&outcome.model.signature)?,
            )?;
            t.put_artifact(
                p,
                "tune/trials.json",
                serde_json::to_vec_pretty(&outcome.trials)?,
            )?;
            for chart in &charts {
                t.put_artifact(
                    p,
                    &format!("plots/{}", chart.name),
                    chart.svg.clone().into_bytes(),
                )?;
            }
            if let Some(name) = &register {
                let version =
                    t.register(p, name, vec![Tag::new("kiln.data.hash", &prep.data_hash)])?;
                registered = Some((name.clone(), version));
            }
        }
        Ok((outcome, saved, written, registered, failed))
    };
    let (outcome, saved, written, registered, failed) = match (&tracking, &parent) {
        (Some((t, _)), Some(p)) => end_run(t, p, work(), |_| RunStatus::Finished)?,
        _ => work()?,
    };
    let best = &outcome.trials[outcome.best];

    let metrics_json = |m: &[(String, f64)]| {
        m.iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>()
    };
    if json {
        printer.json(&serde_json::json!({
            "run_id": parent.as_ref().map(|r| r.run_id.clone()),
            "experiment_id": parent.as_ref().map(|r| r.experiment_id.clone()),
            "model": model,
            "search": tune_req.search.kind(),
            "metric": metric_key,
            "direction": direction,
            "best": {
                "trial": best.index,
                "run_id": best.run_id,
                "params": best.params.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                "score": best.score,
                "metrics": metrics_json(&outcome.metrics),
            },
            "trials": outcome.trials.iter().map(|t| serde_json::json!({
                "trial": t.index,
                "run_id": t.run_id,
                "params": t.params.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                "score": t.score,
                "metrics": metrics_json(&t.metrics),
                "fit_seconds": t.fit_seconds,
                "error": t.error,
            })).collect::<Vec<_>>(),
            "rows": prep.rows(),
            "data_hash": prep.data_hash,
            "output": saved.as_ref().map(|p| p.display().to_string()),
            "plots": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "registered": registered.as_ref().map(|(n, v)| serde_json::json!({"name": n, "version": v})),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }

    for s in &prep.skipped {
        printer.status(&format!(
            "note: column `{}` left out: {}",
            s.column, s.reason
        ));
    }
    let names = tune_req.search.names();
    let mut headers: Vec<&str> = vec!["TRIAL"];
    headers.extend(names.iter().copied());
    let score_header = metric_key.to_uppercase();
    headers.extend([score_header.as_str(), "SECONDS", "STATUS"]);
    let rows: Vec<Vec<String>> = outcome
        .trials
        .iter()
        .map(|t| {
            let mut row = vec![if t.index == best.index {
                format!("{}*", t.index)
            } else {
                t.index.to_string()
            }];
            row.extend(t.params.iter().map(|(_, v)| v.clone()));
            row.push(fmt_score(t.score));
            row.push(format!("{:.2}", t.fit_seconds));
            row.push(if t.error.is_some() {
                "failed".into()
            } else {
                "ok".into()
            });
            row
        })
        .collect();
    printer.table(&headers, &rows);
    printer.line(&format!(
        "Best trial {} ({}): {metric_key} {}",
        best.index,
        params_text(&best.params),
        fmt_score(best.score)
    ));
    if failed > 0 {
        printer.line(&format!("{failed} trial(s) failed; see the STATUS column"));
    }
    let rows: Vec<Vec<String>> = outcome
        .metrics
        .iter()
        .map(|(k, v)| vec![k.clone(), format!("{v:.6}")])
        .collect();
    printer.table(&["METRIC", "VALUE"], &rows);
    if let Some(p) = &saved {
        printer.line(&format!("Model written to {}", p.display()));
    }
    if let Some(dir) = &plots {
        printer.line(&format!("Plots written to {dir} ({})", written.len()));
    }
    if let Some(r) = &parent {
        printer.line(&format!(
            "Parent run {} (experiment {}), best child run {}",
            r.run_id,
            r.experiment_id,
            best.run_id.as_deref().unwrap_or("-")
        ));
    }
    if let Some((n, v)) = &registered {
        printer.line(&format!("Registered {n} version {v}"));
    }
    Ok(ExitCode::SUCCESS)
}
