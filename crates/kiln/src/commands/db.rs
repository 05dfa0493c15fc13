//! `kiln db upgrade|status`.

use std::process::ExitCode;

use anyhow::Context;

use super::locations;
use crate::cli::DbCommand;
use crate::printer::Printer;

pub(super) fn run(cmd: DbCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        DbCommand::Upgrade { store } => {
            let loc = locations(&store.store_args())?;
            let options = kiln_store_sql::OpenOptions {
                migrate: true,
                ..Default::default()
            };
            let store =
                kiln_store_sql::SqlStore::open(&loc.backend, &options).with_context(|| {
                    format!(
                        "Failed to upgrade `{}`",
                        crate::tracking::redact(&loc.backend)
                    )
                })?;
            let status = store.schema_status()?;
            printer.status(&format!(
                "Schema at version {} (latest {}).",
                status.current, status.latest
            ));
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Status { store, json } => {
            let loc = locations(&store.store_args())?;
            // Opening refuses out-of-date PostgreSQL schemas; report them instead.
            let store =
                kiln_store_sql::SqlStore::open_unchecked(&loc.backend).with_context(|| {
                    format!("Failed to open `{}`", crate::tracking::redact(&loc.backend))
                })?;
            let status = store.schema_status()?;
            if json {
                printer.json(
                    &serde_json::json!({ "current": status.current, "latest": status.latest }),
                )?;
            } else {
                printer.line(&format!(
                    "current: {}\nlatest:  {}",
                    status.current, status.latest
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
