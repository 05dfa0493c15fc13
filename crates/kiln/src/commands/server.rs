//! `kiln server`.

use std::process::ExitCode;

use anyhow::Context;

use super::{locations, open_blobs, open_store, server_runtime};
use crate::cli::ServerArgs;
use crate::printer::Printer;

pub(super) fn run(args: ServerArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ServerArgs {
        store,
        host,
        port,
        migrate,
        runtime: runtime_args,
    } = args;
    let loc = locations(&store)?;
    let store = open_store(&loc.backend, migrate, true)?;
    let rt = server_runtime(&runtime_args)?;
    rt.block_on(async move {
        let blobs = open_blobs(&loc.artifacts)?;
        let state = kiln_server::AppState::new(store, blobs);
        let app = kiln_server::create_app(state);
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("Failed to listen on {host}:{port}"))?;
        let addr = listener
            .local_addr()
            .context("Failed to read the bound address")?;
        let mut shutdown = super::Shutdown::listen();
        printer.status(&format!(
            "kiln server listening on http://{addr} (store: {}, artifacts: {})",
            crate::tracking::redact(&loc.backend),
            loc.artifacts
        ));
        kiln_server::serve(listener, app, async move { shutdown.recv().await })
            .await
            .context("Server failed")?;
        printer.status("kiln server stopped");
        Ok(ExitCode::SUCCESS)
    })
}
