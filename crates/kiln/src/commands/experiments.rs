//! `kiln experiments list|create`.

use std::process::ExitCode;

use super::format_ms;
use crate::cli::ExperimentsCommand;
use crate::printer::Printer;
use crate::tracking::Tracking;

pub(super) fn run(cmd: ExperimentsCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        ExperimentsCommand::List {
            tracking,
            all,
            json,
        } => {
            let t = Tracking::open(tracking.tracking_uri.as_deref())?;
            let exps = t.experiments(all)?;
            if json {
                printer.json(&exps)?;
            } else {
                let rows: Vec<Vec<String>> = exps
                    .iter()
                    .map(|e| {
                        vec![
                            e.experiment_id.clone(),
                            e.name.clone(),
                            e.lifecycle_stage.as_str().to_string(),
                            format_ms(e.creation_time),
                            e.artifact_location.clone(),
                        ]
                    })
                    .collect();
                printer.table(
                    &["ID", "NAME", "STAGE", "CREATED (UTC)", "ARTIFACTS"],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ExperimentsCommand::Create {
            name,
            tracking,
            json,
        } => {
            let t = Tracking::open_or_create(tracking.tracking_uri.as_deref())?;
            let id = t.create_experiment(&name)?;
            if json {
                printer.json(&serde_json::json!({ "experiment_id": id, "name": name }))?;
            } else {
                printer.line(&format!("Created experiment '{name}' with id {id}"));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
