//! `kiln evaluate`: metrics and CI gates for a model on labelled data.

use std::process::ExitCode;

use kiln_ml::evaluate::{
    all_passed, check_gates, render_junit, render_markdown, render_text, unknown_metric, Gate,
};
use kiln_train::model::Model;
use kiln_train::plots::{evaluation_plots, feature_importance, write_plots};
use kiln_train::train::evaluate;
use kiln_types::{RunStatus, Tag};

use super::data::read_options;
use super::train::{end_run, start_run, tracker};
use super::{InputError, ReportFile};
use crate::cli::EvaluateArgs;
use crate::printer::Printer;

/// Exit code when a gate fails.
const EXIT_GATE_FAILED: u8 = 1;

pub(super) fn run(args: EvaluateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let EvaluateArgs {
        model,
        data,
        target,
        require,
        junit,
        markdown,
        plots,
        experiment,
        no_track,
        json,
        store,
        read,
    } = args;
    let gates = require
        .iter()
        .map(|g| Gate::parse(g).map_err(|e| InputError(format!("Invalid --require `{g}`: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    // A gate here only reads the evaluation report: a name no report has is a typo (exit 2),
    // which CI must not mistake for a model that failed its gate.
    if let Some((g, message)) = require
        .iter()
        .zip(&gates)
        .find_map(|(g, gate)| Some((g, unknown_metric(&gate.metric)?)))
    {
        return Err(InputError(format!("Invalid --require `{g}`: {message}")).into());
    }
    // Report files are created before any work: an unwritable path is a usage error naming
    // its flag, not a failure after the run was recorded.
    let junit = ReportFile::check("--junit", junit.as_deref().map(std::path::Path::new))?;
    let markdown = ReportFile::check("--markdown", markdown.as_deref().map(std::path::Path::new))?;
    let needs_store = !no_track || model.starts_with("models:/") || model.starts_with("runs:/");
    let tracking = if needs_store {
        Some(tracker(&store)?)
    } else {
        None
    };
    let (loaded, source) = match &tracking {
        Some((t, _)) => t.load_any_model(&model)?,
        None => (
            Model::load(&model)?,
            kiln_train::tracking::ModelSource::default(),
        ),
    };
    let loaded = match &target {
        Some(column) => loaded.with_target(column)?,
        None => loaded,
    };
    let table = kiln_table::read_table(&data, &read_options(read)?)?;
    let labels = loaded.labels(&table)?;
    let scored = loaded.score(&table)?;
    let (predictions, unseen) = (scored.predictions, scored.unseen);
    let report = evaluate(loaded.task(), loaded.classes(), &predictions, &labels)?;
    let metrics = report.metrics();
    let results = check_gates(&metrics, &gates);
    let passed = all_passed(&results);
    let title = format!("kiln evaluate: {model} on {data}");
    let importance = match &loaded {
        Model::Kiln(m) => Some(feature_importance(m)),
        Model::Onnx(_) => None,
    };
    let charts = evaluation_plots(
        loaded.task(),
        loaded.classes(),
        &predictions,
        &labels,
        importance.as_ref(),
    )?;
    let written = match &plots {
        Some(dir) => write_plots(&charts, dir)?,
        None => Vec::new(),
    };

    // The reports first: recording the run may fail (an unreachable store), and the gate
    // results are known now.
    if let Some(f) = junit {
        f.write(&render_junit("kiln.evaluate", &results))?;
    }
    if let Some(f) = markdown {
        f.write(&render_markdown(
            &title,
            &metrics,
            &results,
            report.confusion(),
        ))?;
    }
    let mut run_id = None;
    if let (false, Some((t, _))) = (no_track, &tracking) {
        let mut tags = vec![
            Tag::new("kiln.evaluate.model", &model),
            Tag::new("kiln.gates.passed", passed.to_string()),
        ];
        if let (Some(n), Some(v)) = (&source.name, &source.version) {
            tags.push(Tag::new("kiln.model.name", n));
            tags.push(Tag::new("kiln.model.version", v));
        }
        let run = start_run(t, experiment.as_deref(), None, "kiln evaluate", tags)?;
        let work = || -> anyhow::Result<()> {
            let digest = kiln_train::train::hash_file(&data)?;
            let params: Vec<(String, String)> =
                std::iter::once(("model".to_string(), model.clone()))
                    .chain(
                        gates
                            .iter()
                            .enumerate()
                            .map(|(i, g)| (format!("gate_{i}"), g.to_string())),
                    )
                    .collect();
            t.log(
                &run,
                &params,
                &metrics,
                &[Tag::new("kiln.data.hash", &digest)],
            )?;
            t.log_dataset(&run, &data, &digest, "evaluation")?;
            t.put_artifact(
                &run,
                "evaluation/report.json",
                serde_json::to_vec_pretty(&report)?,
            )?;
            t.put_artifact(
                &run,
                "evaluation/summary.md",
                render_markdown(&title, &metrics, &results, report.confusion()).into_bytes(),
            )?;
            for chart in &charts {
                t.put_artifact(
                    &run,
                    &format!("plots/{}", chart.name),
                    chart.svg.clone().into_bytes(),
                )?;
            }
            if !gates.is_empty() {
                t.put_artifact(
                    &run,
                    "evaluation/junit.xml",
                    render_junit("kiln.evaluate", &results).into_bytes(),
                )?;
            }
            Ok(())
        };
        end_run(t, &run, work(), |()| {
            if passed {
                RunStatus::Finished
            } else {
                RunStatus::Failed
            }
        })?;
        run_id = Some(run.run_id);
    }
    if json {
        printer.json(&serde_json::json!({
            "model": model,
            "data": data,
            "passed": passed,
            "metrics": metrics.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "gates": results,
            "report": report,
            "unseen_categories": unseen,
            "run_id": run_id,
            "plots": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }))?;
    } else {
        for (column, n) in &unseen {
            printer.status(&format!("warning: column `{column}` has {n} value(s) not seen in training; treated as missing"));
        }
        printer.line(&render_text(&title, &metrics, &results, report.confusion()));
        if let Some(dir) = &plots {
            printer.line(&format!("Plots written to {dir} ({})", written.len()));
        }
        if let Some(id) = &run_id {
            printer.line(&format!("Run {id}"));
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_GATE_FAILED)
    })
}
