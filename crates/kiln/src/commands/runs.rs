//! `kiln runs list|show|compare`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use kiln_types::{Metric, Run};

use super::format_ms;
use crate::cli::RunsCommand;
use crate::printer::Printer;
use crate::tracking::Tracking;

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn duration(run: &Run) -> String {
    match run.info.end_time {
        Some(end) if end >= run.info.start_time => {
            #[allow(clippy::cast_precision_loss)]
            let secs = (end - run.info.start_time) as f64 / 1000.0;
            format!("{secs:.1}s")
        }
        _ => "-".into(),
    }
}

fn summary(items: impl Iterator<Item = String>, max: usize) -> String {
    let all: Vec<String> = items.collect();
    let mut s = all.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if all.len() > max {
        s.push_str(&format!(", … (+{})", all.len() - max));
    }
    s
}

pub(super) fn run(cmd: RunsCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        RunsCommand::List {
            tracking,
            experiment,
            filter,
            order_by,
            max_results,
            json,
        } => {
            let t = Tracking::open(tracking.tracking_uri.as_deref())?;
            let exp = t.experiment(
                experiment
                    .as_deref()
                    .unwrap_or(kiln_types::DEFAULT_EXPERIMENT_ID),
            )?;
            let page = t.search_runs(
                &exp.experiment_id,
                filter.as_deref().unwrap_or(""),
                &order_by,
                max_results,
            )?;
            if json {
                printer.json(&page.items)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = page
                .items
                .iter()
                .map(|r| {
                    vec![
                        r.info.run_id.clone(),
                        r.info.run_name.clone(),
                        r.info.status.as_str().to_string(),
                        format_ms(r.info.start_time),
                        duration(r),
                        summary(
                            r.data
                                .metrics
                                .iter()
                                .map(|m| format!("{}={}", m.key, fmt_value(m.value))),
                            3,
                        ),
                        summary(
                            r.data
                                .params
                                .iter()
                                .map(|p| format!("{}={}", p.key, p.value)),
                            3,
                        ),
                    ]
                })
                .collect();
            printer.status(&format!(
                "Experiment '{}' (id {})",
                exp.name, exp.experiment_id
            ));
            printer.table(
                &[
                    "RUN ID",
                    "NAME",
                    "STATUS",
                    "STARTED (UTC)",
                    "DURATION",
                    "METRICS",
                    "PARAMS",
                ],
                &rows,
            );
            if page.next_page_token.is_some() {
                printer.status(&format!("(showing the first {max_results}; raise --max-results or narrow --filter for more)"));
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show {
            run_id,
            tracking,
            json,
        } => {
            let t = Tracking::open(tracking.tracking_uri.as_deref())?;
            let run = t.run(&run_id)?;
            if json {
                printer.json(&run)?;
                return Ok(ExitCode::SUCCESS);
            }
            show(printer, &run);
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Compare {
            run_ids,
            tracking,
            json,
        } => {
            let t = Tracking::open(tracking.tracking_uri.as_deref())?;
            let runs = run_ids
                .iter()
                .map(|id| t.run(id))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if json {
                printer.json(&runs)?;
                return Ok(ExitCode::SUCCESS);
            }
            compare(printer, &runs);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(printer: &Printer, run: &Run) {
    let i = &run.info;
    printer.line(&format!("Run {} ({})", i.run_id, i.run_name));
    printer.line(&format!("  experiment:  {}", i.experiment_id));
    printer.line(&format!(
        "  status:      {} ({})",
        i.status.as_str(),
        i.lifecycle_stage.as_str()
    ));
    printer.line(&format!(
        "  user:        {}",
        if i.user_id.is_empty() {
            "-"
        } else {
            &i.user_id
        }
    ));
    printer.line(&format!("  started:     {} UTC", format_ms(i.start_time)));
    printer.line(&format!("  duration:    {}", duration(run)));
    printer.line(&format!("  artifacts:   {}", i.artifact_uri));
    let section = |title: &str, rows: Vec<Vec<String>>, headers: &[&str]| {
        printer.line("");
        printer.line(&format!("{title}:"));
        if rows.is_empty() {
            printer.line("  (none)");
        } else {
            printer.table(headers, &rows);
        }
    };
    section(
        "Params",
        run.data
            .params
            .iter()
            .map(|p| vec![p.key.clone(), p.value.clone()])
            .collect(),
        &["KEY", "VALUE"],
    );
    section(
        "Metrics (latest)",
        run.data
            .metrics
            .iter()
            .map(|m: &Metric| vec![m.key.clone(), fmt_value(m.value), m.step.to_string()])
            .collect(),
        &["KEY", "VALUE", "STEP"],
    );
    section(
        "Tags",
        run.data
            .tags
            .iter()
            .map(|t| vec![t.key.clone(), t.value.chars().take(80).collect::<String>()])
            .collect(),
        &["KEY", "VALUE"],
    );
    if !run.inputs.dataset_inputs.is_empty() {
        section(
            "Datasets",
            run.inputs
                .dataset_inputs
                .iter()
                .map(|d| {
                    vec![
                        d.dataset.name.clone(),
                        d.dataset.digest.clone(),
                        d.dataset.source_type.clone(),
                    ]
                })
                .collect(),
            &["NAME", "DIGEST", "SOURCE TYPE"],
        );
    }
    if !run.outputs.model_outputs.is_empty() {
        section(
            "Logged models",
            run.outputs
                .model_outputs
                .iter()
                .map(|m| vec![m.model_id.clone(), m.step.to_string()])
                .collect(),
            &["MODEL ID", "STEP"],
        );
    }
}

fn compare(printer: &Printer, runs: &[Run]) {
    let mut headers: Vec<String> = vec!["".into()];
    headers.extend(runs.iter().map(|r| {
        format!(
            "{} ({})",
            r.info.run_name,
            &r.info.run_id[..r.info.run_id.len().min(8)]
        )
    }));
    let mut rows = Vec::new();
    let params: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.data.params.iter().map(|p| p.key.as_str()))
        .collect();
    for key in params {
        let mut row = vec![format!("param {key}")];
        let values: Vec<String> = runs
            .iter()
            .map(|r| {
                r.data
                    .params
                    .iter()
                    .find(|p| p.key == key)
                    .map_or("-".into(), |p| p.value.clone())
            })
            .collect();
        row.extend(values);
        rows.push(row);
    }
    let metrics: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.data.metrics.iter().map(|m| m.key.as_str()))
        .collect();
    for key in metrics {
        let mut row = vec![format!("metric {key}")];
        row.extend(runs.iter().map(|r| {
            r.data
                .metrics
                .iter()
                .find(|m| m.key == key)
                .map_or("-".into(), |m| fmt_value(m.value))
        }));
        rows.push(row);
    }
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    printer.table(&header_refs, &rows);
}
