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
            let failed = || format!("Failed to open `{}`", crate::tracking::redact(&loc.backend));
            // SQLite is read without opening it as a store, which would upgrade it (and then
            // older binaries refuse it); PostgreSQL opening refuses an out-of-date schema, so
            // it is opened unchecked and reported on instead.
            let status = match kiln_store_sql::SqlStore::sqlite_schema_status(&loc.backend)
                .with_context(failed)?
            {
                Some(status) => status,
                None => kiln_store_sql::SqlStore::open_unchecked(&loc.backend)
                    .with_context(failed)?
                    .schema_status()?,
            };
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
