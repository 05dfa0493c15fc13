//! `kiln gc`.

use std::process::ExitCode;

use super::{is_server_uri, locations, open_blobs, open_store, runtime, InputError};
use crate::cli::GcArgs;
use crate::printer::Printer;

pub(super) fn run(args: GcArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let GcArgs {
        store,
        older_than,
        dry_run,
        json,
    } = args;
    let cutoff = match older_than.as_deref() {
        None => None,
        Some(text) => {
            let age = kiln_server::gc::parse_age(text)
                .ok_or_else(|| InputError(format!("Invalid --older-than `{text}`: expected a number and a unit, e.g. 30d, 12h, 90m, 2w")))?;
            Some(kiln_types::now_ms() - age)
        }
    };
    let loc = locations(&store)?;
    if is_server_uri(&loc.backend) {
        return Err(InputError(format!(
            "`kiln gc` removes rows and artifacts for good, so it runs where they are, not through a tracking server (`{}`): pass the server's --backend-store-uri (sqlite:///… or postgresql://…) and --artifacts-destination",
            crate::tracking::redact(&loc.backend)
        ))
        .into());
    }
    let store = open_store(&loc.backend, false, false)?;
    let rt = runtime(Some(2))?;
    let report = rt.block_on(async {
        let blobs = open_blobs(&loc.artifacts)?;
        Ok::<_, anyhow::Error>(kiln_server::gc::collect(store, blobs, cutoff, dry_run).await?)
    })?;
    if json {
        printer.json(&report)?;
    } else {
        let verb = if dry_run { "Would remove" } else { "Removed" };
        printer.line(&format!(
            "{verb} {} run(s), {} logged model(s), {} experiment(s) and {} artifact location(s).",
            report.runs.len(),
            report.logged_models.len(),
            report.experiments.len(),
            report.artifact_paths.len()
        ));
        for path in &report.artifact_paths {
            printer.line(&format!("  {path}"));
        }
        if !report.abandoned_uploads.is_empty() {
            printer.line(&format!(
                "{verb} {} abandoned upload file(s) (unfinished uploads untouched for an hour):",
                report.abandoned_uploads.len()
            ));
            for path in &report.abandoned_uploads {
                printer.line(&format!("  {path}"));
            }
        }
        for k in &report.kept {
            printer.status(&format!("kept deleted {} {}: {}", k.kind, k.id, k.reason));
        }
        for s in &report.shared_locations {
            printer.status(&format!(
                "warning: left `{}` in place: `{}` still lives inside it (only the collected runs' and models' own directories were removed)",
                s.path, s.in_use_by
            ));
        }
        for loc in &report.skipped_locations {
            printer.status(&format!(
                "warning: left `{loc}` alone: it is outside the artifact store"
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
