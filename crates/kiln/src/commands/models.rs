//! `kiln models list|versions|show|promote|rollback|history`: the registry workflow. The logic
//! lives in [`kiln_train::registry`]; this module parses, opens the stores and prints.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use kiln_ml::evaluate::{Gate, GateResult};
use kiln_train::registry::{self, PromoteOutcome, PromoteRequest, VersionSelector};
use kiln_types::{ModelVersion, RegisteredModel};
use serde_json::json;

use super::data::read_options;
use super::train::tracker;
use super::{client_locations, format_ms, open_metadata, require_existing_store, InputError};
use crate::cli::{ModelsCommand, ModelsPromoteArgs, StoreArgs};
use crate::printer::Printer;

/// Exit code when a promotion gate fails.
const EXIT_REFUSED: u8 = 1;

/// The metadata store: a database, or a tracking server's REST API. A registry is never
/// created by `kiln models`: a SQLite file named by the flags or the environment must exist.
fn store(args: &StoreArgs) -> anyhow::Result<Arc<dyn kiln_store::TrackingStore>> {
    let backend = existing(args)?;
    open_metadata(&backend)
}

/// The backend URI of `args`, checked as [`store`] checks it (the default `.kiln/kiln.db`
/// included: in a directory with no store, `kiln models` says so instead of making one).
fn existing(args: &StoreArgs) -> anyhow::Result<String> {
    let backend = client_locations(args)?.backend;
    require_existing_store(&backend)?;
    Ok(backend)
}

fn user(arg: Option<String>) -> Option<String> {
    arg.or_else(kiln_train::tracking::current_user)
        .filter(|u| !u.trim().is_empty())
}

fn fmt_metric(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() >= 1.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.is_finite() {
        format!("{v:.4}")
    } else {
        format!("{v}")
    }
}

fn short(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

fn aliases_of(m: &RegisteredModel) -> String {
    let mut all: Vec<String> = m
        .aliases
        .iter()
        .map(|a| format!("{}=v{}", a.alias, a.version))
        .collect();
    all.sort();
    if all.is_empty() {
        "-".into()
    } else {
        all.join(", ")
    }
}

fn latest_of(m: &RegisteredModel) -> Option<String> {
    m.latest_versions
        .iter()
        .max_by_key(|v| v.version.parse::<u64>().unwrap_or(0))
        .map(|v| v.version.clone())
}

fn tag<'a>(mv: &'a ModelVersion, key: &str) -> Option<&'a str> {
    mv.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

pub(super) fn run(cmd: ModelsCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelsCommand::List { store: s, json } => {
            let store = store(&s)?;
            let models = registry::list_models(store.as_ref())?;
            if json {
                let out: Vec<serde_json::Value> = models
                    .iter()
                    .map(|m| {
                        json!({
                            "name": m.name,
                            "description": m.description,
                            "latest_version": latest_of(m),
                            "aliases": m.aliases.iter().map(|a| (a.alias.clone(), json!(a.version))).collect::<serde_json::Map<_, _>>(),
                            "creation_timestamp": m.creation_timestamp,
                            "last_updated_timestamp": m.last_updated_timestamp,
                        })
                    })
                    .collect();
                printer.json(&out)?;
                return Ok(ExitCode::SUCCESS);
            }
            if models.is_empty() {
                printer.status(
                    "No registered models yet: `kiln train … --register <name>` creates one.",
                );
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = models
                .iter()
                .map(|m| {
                    vec![
                        m.name.clone(),
                        latest_of(m).map_or_else(|| "-".into(), |v| format!("v{v}")),
                        aliases_of(m),
                        format_ms(m.last_updated_timestamp),
                        dash(m.description.as_deref()),
                    ]
                })
                .collect();
            printer.table(
                &["NAME", "LATEST", "ALIASES", "UPDATED (UTC)", "DESCRIPTION"],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Versions {
            name,
            store: s,
            json,
        } => {
            let store = store(&s)?;
            let versions = registry::versions(store.as_ref(), &name)?;
            if json {
                printer.json(&versions)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    let mut aliases = v.aliases.clone();
                    aliases.sort();
                    vec![
                        format!("v{}", v.version),
                        if aliases.is_empty() {
                            "-".into()
                        } else {
                            aliases.join(", ")
                        },
                        dash(v.run_id.as_deref()),
                        format_ms(v.creation_timestamp),
                        dash(v.user_id.as_deref()),
                        tag(v, "kiln.data.hash").map_or_else(|| "-".into(), |h| short(h, 12)),
                    ]
                })
                .collect();
            printer.table(
                &[
                    "VERSION",
                    "ALIASES",
                    "RUN ID",
                    "CREATED (UTC)",
                    "USER",
                    "DATA HASH",
                ],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Show {
            name,
            model_version,
            alias,
            store: s,
            json,
        } => {
            let store = store(&s)?;
            let selector = match (model_version, alias) {
                (Some(v), _) => VersionSelector::Version(v),
                (None, Some(a)) => VersionSelector::Alias(a),
                (None, None) => VersionSelector::Latest,
            };
            let details = registry::show(store.as_ref(), &name, &selector)?;
            if json {
                printer.json(&details)?;
                return Ok(ExitCode::SUCCESS);
            }
            show(printer, &details);
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Promote(args) => promote(*args, printer),
        ModelsCommand::Rollback {
            name,
            alias,
            user: who,
            reason,
            store: s,
            json,
        } => {
            existing(&s)?;
            let (tracker, _rt) = tracker(&s)?;
            let outcome = registry::rollback(&tracker, &name, &alias, user(who), reason)?;
            if json {
                printer.json(&outcome)?;
                return Ok(ExitCode::SUCCESS);
            }
            for v in &outcome.skipped_deleted {
                printer.status(&format!(
                    "note: skipped v{v}: deleted since it held `{alias}`"
                ));
            }
            for why in &outcome.skipped_unloadable {
                printer.status(&format!("note: skipped {why}"));
            }
            for note in &outcome.notes {
                printer.status(&format!("note: {note}"));
            }
            printer.line(&format!(
                "Rolled back `{}` of {} from {} to v{} ({})",
                outcome.alias,
                outcome.name,
                outcome
                    .from
                    .as_deref()
                    .map_or_else(|| "no holder".to_string(), |v| format!("v{v}")),
                outcome.to,
                outcome.reason
            ));
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::History {
            name,
            alias,
            store: s,
            json,
        } => {
            let store = store(&s)?;
            let events = registry::history(store.as_ref(), &name, &alias)?;
            if json {
                printer.json(&events)?;
                return Ok(ExitCode::SUCCESS);
            }
            printer.status(&format!("Alias `{alias}` of {name}, oldest first"));
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        format_ms(e.timestamp),
                        dash(e.user_id.as_deref()),
                        e.version
                            .as_deref()
                            .map_or_else(|| "(removed)".into(), |v| format!("v{v}")),
                        e.previous_version
                            .as_deref()
                            .map_or_else(|| "-".into(), |v| format!("v{v}")),
                        dash(e.reason.as_deref()),
                    ]
                })
                .collect();
            printer.table(&["WHEN (UTC)", "USER", "VERSION", "PREVIOUS", "WHY"], &rows);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(printer: &Printer, d: &registry::VersionDetails) {
    let v = &d.version;
    let mut aliases = v.aliases.clone();
    aliases.sort();
    printer.line(&format!("Model {} version {}", v.name, v.version));
    printer.line(&format!(
        "  aliases:     {}",
        if aliases.is_empty() {
            "-".to_string()
        } else {
            aliases.join(", ")
        }
    ));
    printer.line(&format!("  source:      {}", v.source));
    printer.line(&format!(
        "  created:     {} UTC",
        format_ms(v.creation_timestamp)
    ));
    printer.line(&format!("  user:        {}", dash(v.user_id.as_deref())));
    if !v.description.is_empty() {
        printer.line(&format!("  description: {}", v.description));
    }
    let Some(l) = &d.lineage else {
        printer.line(&format!(
            "  lineage:     {}",
            d.lineage_note.as_deref().unwrap_or("unknown")
        ));
        return;
    };
    printer.line("");
    printer.line("Lineage:");
    printer.line(&format!("  run:         {} ({})", l.run_id, l.run_name));
    printer.line(&format!("  experiment:  {}", l.experiment_id));
    printer.line(&format!(
        "  status:      {}{}",
        l.status,
        if l.run_deleted {
            " (run deleted; kept while a version uses it)"
        } else {
            ""
        }
    ));
    printer.line(&format!("  trained by:  {}", dash(Some(&l.user))));
    printer.line(&format!("  started:     {} UTC", format_ms(l.start_time)));
    printer.line(&format!(
        "  git commit:  {}{}",
        dash(l.git_commit.as_deref()),
        if l.git_dirty == Some(true) {
            " (uncommitted changes)"
        } else {
            ""
        }
    ));
    printer.line(&format!("  data hash:   {}", dash(l.data_hash.as_deref())));
    let section = |title: &str, headers: &[&str], rows: Vec<Vec<String>>| {
        printer.line("");
        printer.line(&format!("{title}:"));
        if rows.is_empty() {
            printer.line("  (none)");
        } else {
            printer.table(headers, &rows);
        }
    };
    section(
        "Datasets",
        &["NAME", "CONTEXT", "DIGEST (BLAKE3)"],
        l.datasets
            .iter()
            .map(|d| vec![d.name.clone(), dash(d.context.as_deref()), d.digest.clone()])
            .collect(),
    );
    section(
        "Params",
        &["KEY", "VALUE"],
        l.params
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect(),
    );
    section(
        "Metrics",
        &["KEY", "VALUE"],
        l.metrics
            .iter()
            .map(|(k, v)| vec![k.clone(), fmt_metric(*v)])
            .collect(),
    );
}

fn promote(args: ModelsPromoteArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ModelsPromoteArgs {
        name,
        model_version,
        alias,
        require,
        must_beat,
        on,
        metric,
        user: who,
        reason,
        markdown,
        json,
        store: store_args,
        read,
    } = args;
    let gates = require
        .iter()
        .map(|g| Gate::parse(g).map_err(|e| InputError(format!("Invalid --require `{g}`: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if must_beat.is_some() && on.is_none() {
        return Err(InputError(
            "--must-beat evaluates the candidate and the current holder on the same data: add --on <FILE>"
                .into(),
        )
        .into());
    }
    if let Some(m) = &metric {
        if must_beat.is_none() {
            return Err(InputError(format!(
                "--metric `{m}` picks what --must-beat compares: add --must-beat <ALIAS> --on <FILE>"
            ))
            .into());
        }
        if let Some(problem) = kiln_ml::evaluate::unknown_metric(m) {
            return Err(InputError(format!("Invalid --metric: {problem}")).into());
        }
    }
    // With --on kiln computes the metrics, so a gate naming none of them is a typo (without
    // --on, gates read the run's logged metrics, which may have any name).
    if on.is_some() {
        if let Some((g, problem)) = require
            .iter()
            .zip(&gates)
            .find_map(|(g, gate)| Some((g, kiln_ml::evaluate::unknown_metric(&gate.metric)?)))
        {
            return Err(InputError(format!("Invalid --require `{g}`: {problem}")).into());
        }
    }
    for (flag, a) in [
        ("--alias", Some(&alias)),
        ("--must-beat", must_beat.as_ref()),
    ] {
        if let Some(problem) = a.and_then(|a| kiln_types::alias_problem(a)) {
            return Err(InputError(format!(
                "Invalid {flag} `{}`: {problem}",
                a.map_or("", String::as_str)
            ))
            .into());
        }
    }
    // The report file is opened before the alias can move: a promotion that goes through must
    // not then fail on an unwritable path, leaving CI to believe nothing changed.
    let mut report_file = match &markdown {
        Some(path) => Some((
            path,
            std::fs::File::create(path).map_err(|e| {
                InputError(format!(
                    "Cannot write the --markdown report to `{path}`: {e}"
                ))
            })?,
        )),
        None => None,
    };
    existing(&store_args)?;
    let (tracker, _rt) = tracker(&store_args)?;
    let outcome = registry::promote(
        &tracker,
        &PromoteRequest {
            name,
            version: model_version,
            alias,
            require: gates,
            must_beat,
            on,
            read: read_options(read)?,
            metric,
            user: user(who),
            reason,
        },
    );
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            if let Some((path, file)) = report_file.take() {
                drop(file);
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    let report = render_report(&outcome);
    if let Some((path, mut file)) = report_file {
        use std::io::Write as _;
        file.write_all(report.as_bytes()).map_err(|e| {
            anyhow::anyhow!("Failed to write the --markdown report to `{path}`: {e}")
        })?;
    }
    if json {
        printer.json(&outcome)?;
    } else {
        for note in &outcome.notes {
            printer.status(&format!("note: {note}"));
        }
        printer.line(&report);
        printer.line(&summary_line(&outcome));
    }
    Ok(if outcome.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

fn summary_line(o: &PromoteOutcome) -> String {
    let was = o
        .previous_version
        .as_deref()
        .map_or_else(|| "no holder".to_string(), |v| format!("v{v}"));
    if !o.passed {
        format!(
            "Promotion refused: `{}` of {} still points at {was}",
            o.alias, o.name
        )
    } else if o.moved {
        format!(
            "Promoted {} v{} to `{}` (was {was})",
            o.name, o.version, o.alias
        )
    } else {
        format!(
            "{} v{} already holds `{}`: nothing moved",
            o.name, o.version, o.alias
        )
    }
}

/// A Markdown report (readable as text too): the verdict, candidate vs holder metrics, the
/// comparison and the gates.
fn render_report(o: &PromoteOutcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## kiln models promote: {} v{} → {}\n",
        o.name, o.version, o.alias
    );
    let verdict = if o.passed {
        "✅ **Promotion allowed**"
    } else {
        "❌ **Promotion refused**"
    };
    let why = o
        .comparison
        .as_ref()
        .filter(|c| !c.passed)
        .map(|c| c.message.clone())
        .or_else(|| {
            let failed: Vec<&GateResult> = o.gates.iter().filter(|g| !g.passed).collect();
            (!failed.is_empty()).then(|| {
                failed
                    .iter()
                    .map(|g| g.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
    match why {
        Some(w) => {
            let _ = writeln!(out, "{verdict}: {w}\n");
        }
        None => {
            let _ = writeln!(out, "{verdict}\n");
        }
    }
    if let Some(d) = &o.data {
        let _ = writeln!(out, "Evaluated on `{d}`.\n");
    } else if !o.gates.is_empty() {
        let _ = writeln!(
            out,
            "Gates checked on the source run's logged test metrics of v{} (no --on data).\n",
            o.version
        );
    }
    // On --on data: every metric. From the run: only what the gates looked at.
    let metric_rows: Vec<&(String, f64)> = o
        .candidate
        .metrics
        .iter()
        .filter(|(k, _)| o.data.is_some() || o.gates.iter().any(|g| g.gate.metric == *k))
        .collect();
    if !metric_rows.is_empty() {
        match &o.holder {
            Some(h) => {
                let alias = o.comparison.as_ref().map_or("holder", |c| c.alias.as_str());
                let _ = writeln!(
                    out,
                    "| Metric | Candidate v{} | {alias} v{} |\n| --- | ---: | ---: |",
                    o.version, h.version
                );
                for (k, v) in metric_rows {
                    let mark = o
                        .comparison
                        .as_ref()
                        .filter(|c| c.metric == *k)
                        .map_or("", |_| " ◀");
                    let _ = writeln!(
                        out,
                        "| `{k}`{mark} | {} | {} |",
                        fmt_metric(*v),
                        h.metric(k).map_or_else(|| "n/a".into(), fmt_metric)
                    );
                }
            }
            None => {
                let _ = writeln!(out, "| Metric | Candidate v{} |\n| --- | ---: |", o.version);
                for (k, v) in metric_rows {
                    let _ = writeln!(out, "| `{k}` | {} |", fmt_metric(*v));
                }
            }
        }
        out.push('\n');
    }
    if let Some(c) = &o.comparison {
        let _ = writeln!(
            out,
            "### Must beat `{}` on `{}` ({} is better)\n\n{} {}\n",
            c.alias,
            c.metric,
            if c.lower_is_better { "lower" } else { "higher" },
            if c.passed { "✅" } else { "❌" },
            c.message
        );
    }
    if !o.gates.is_empty() {
        out.push_str("### Gates\n\n| | Gate | Actual | Details |\n| :---: | --- | ---: | --- |\n");
        for g in &o.gates {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} |",
                if g.passed { "✅" } else { "❌" },
                g.gate,
                g.actual.map_or_else(|| "n/a".into(), fmt_metric),
                g.message.replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    let _ = write!(out, "Reason: {}", o.reason);
    out
}
