//! One module per command group; [`run`] dispatches.

mod data;
mod db;
mod deploy;
mod evaluate;
mod experiments;
mod gc;
mod models;
mod predict;
mod runs;
mod serve;
mod server;
mod train;
mod tune;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::{Command, StoreArgs};
use crate::printer::Printer;

/// A usage or input problem (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InputError(pub(crate) String);

/// A report file (`--junit`, `--markdown`) checked before a command does its work, so that an
/// unwritable path is a usage error naming its flag rather than a failure after the work was
/// recorded; written only at the end, so a command that fails or is interrupted leaves no
/// empty report for a CI publisher to choke on (and nothing of the user's is touched).
pub(crate) struct ReportFile {
    path: std::path::PathBuf,
}

impl ReportFile {
    /// Check that the file named by `flag` can be written, when one is named: an existing
    /// file is opened for writing without truncating it; a new one is created and removed
    /// again (it was made just now, by this check).
    pub(crate) fn check(
        flag: &str,
        path: Option<&std::path::Path>,
    ) -> Result<Option<Self>, InputError> {
        let Some(path) = path else {
            return Ok(None);
        };
        if path.as_os_str().is_empty() {
            return Err(InputError(format!(
                "{flag} is empty: expected a file path (is the variable it came from set?)"
            )));
        }
        let cannot = |e: std::io::Error| {
            InputError(format!(
                "Cannot write the {flag} report to `{}`: {e}",
                path.display()
            ))
        };
        let existing = std::fs::OpenOptions::new().write(true).open(path);
        match existing {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(cannot)?;
                let _ = std::fs::remove_file(path);
            }
            Err(e) => return Err(cannot(e)),
        }
        Ok(Some(Self {
            path: path.to_path_buf(),
        }))
    }

    /// Write the report.
    pub(crate) fn write(self, text: &str) -> anyhow::Result<()> {
        std::fs::write(&self.path, text).map_err(|e| {
            anyhow::anyhow!(
                "Failed to write the report to `{}`: {e}",
                self.path.display()
            )
        })
    }
}

/// `--no-track` needs `--output` (or `what` would be thrown away) and rules out `--register`,
/// which records a run: the shared rule of `kiln train` and `kiln tune`.
pub(crate) fn check_no_track(
    no_track: bool,
    output: Option<&str>,
    register: Option<&str>,
    what: &str,
) -> Result<(), InputError> {
    if no_track && output.is_none() {
        return Err(InputError(format!(
            "--no-track needs --output, or {what} would be thrown away"
        )));
    }
    if no_track && register.is_some() {
        return Err(InputError(
            "--register records a run; drop --no-track".into(),
        ));
    }
    // Before any training: a name the registry refuses would fail only at the very end.
    if let Some(problem) = register.and_then(kiln_types::model_name_problem) {
        return Err(InputError(format!(
            "Invalid --register `{}`: {problem} (a models:/ URI must be able to name the model)",
            register.unwrap_or_default()
        )));
    }
    Ok(())
}

pub(crate) fn run(command: Command, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        Command::Server(args) => server::run(args, printer),
        Command::Db(cmd) => db::run(cmd, printer),
        Command::Gc(args) => gc::run(args, printer),
        Command::Experiments(cmd) => experiments::run(cmd, printer),
        Command::Runs(cmd) => runs::run(cmd, printer),
        Command::Models(cmd) => models::run(cmd, printer),
        Command::Data(cmd) => data::run(cmd, printer),
        Command::Train(args) => train::run(*args, printer),
        Command::Evaluate(args) => evaluate::run(*args, printer),
        Command::Tune(args) => tune::run(*args, printer),
        Command::Predict(args) => predict::run(*args, printer),
        Command::Serve(args) => serve::run(*args, printer),
        Command::Deploy(cmd) => deploy::run(cmd, printer),
    }
}

/// `.kiln/` under the current directory.
fn kiln_dir() -> anyhow::Result<std::path::PathBuf> {
    Ok(std::env::current_dir()
        .context("Failed to read the current directory")?
        .join(".kiln"))
}

/// The embedded default metadata store, `sqlite:////<cwd>/.kiln/kiln.db` (four slashes: an
/// absolute path).
pub(crate) fn default_backend_uri() -> anyhow::Result<String> {
    Ok(format!(
        "sqlite:///{}",
        kiln_dir()?.join("kiln.db").display()
    ))
}

/// Resolved store locations.
pub(crate) struct Locations {
    pub(crate) backend: String,
    pub(crate) artifacts: String,
}

pub(crate) fn locations(args: &StoreArgs) -> anyhow::Result<Locations> {
    locations_with(args, None)
}

/// [`locations`] for the commands that are a tracking client (`train`, `tune`, `evaluate`,
/// `predict`, `models`, `serve`): without --backend-store-uri / KILN_BACKEND_STORE_URI they
/// follow KILN_TRACKING_URI, as `kiln runs` and `kiln experiments` do, so one variable points
/// the client side of the CLI at one store. The server side (`server`, `db`, `gc`) does not: a
/// shell that exports KILN_TRACKING_URI=http://… for its clients can still run the server.
pub(crate) fn client_locations(args: &StoreArgs) -> anyhow::Result<Locations> {
    let from_tracking_env = std::env::var(crate::cli::EnvVars::TRACKING_URI)
        .ok()
        .filter(|u| !u.is_empty());
    locations_with(args, from_tracking_env)
}

fn locations_with(args: &StoreArgs, fallback: Option<String>) -> anyhow::Result<Locations> {
    let StoreArgs {
        backend_store_uri,
        artifacts_destination,
    } = args;
    let backend = match backend_store_uri.clone().or(fallback) {
        Some(u) => u,
        None => default_backend_uri()?,
    };
    let artifacts = match artifacts_destination {
        Some(u) => u.clone(),
        None => kiln_dir()?.join("artifacts").display().to_string(),
    };
    Ok(Locations { backend, artifacts })
}

/// Open a database store. `journal`: this process is the long-lived owner of an embedded
/// database (the tracking server), so plain metric writes may be acknowledged by the journal.
pub(crate) fn open_store(
    uri: &str,
    migrate: bool,
    journal: bool,
) -> anyhow::Result<Arc<kiln_store_sql::SqlStore>> {
    let options = kiln_store_sql::OpenOptions {
        migrate,
        journal,
        ..Default::default()
    };
    let store = kiln_store_sql::SqlStore::open(uri, &options).with_context(|| {
        format!(
            "Failed to open the backend store `{}`",
            crate::tracking::redact(uri)
        )
    })?;
    Ok(Arc::new(store))
}

/// Whether `uri` names a tracking server rather than a database.
pub(crate) fn is_server_uri(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// The metadata store at `uri`: a database, or a tracking server's REST API (a blocking
/// client: open it outside any async context).
/// A SQLite file named for reading must exist: opening would create it (and its
/// directories), and a typo would then read as an empty store.
pub(crate) fn require_existing_store(uri: &str) -> anyhow::Result<()> {
    if let Some(path) = kiln_store_sql::sqlite_file(uri).filter(|p| !p.exists()) {
        return Err(InputError(format!(
            "No kiln store at `{}` (from `{uri}`): check the path, or run `kiln server` or `kiln train` with it first",
            path.display()
        ))
        .into());
    }
    Ok(())
}

pub(crate) fn open_metadata(uri: &str) -> anyhow::Result<Arc<dyn kiln_store::TrackingStore>> {
    if is_server_uri(uri) {
        if let Ok(v) = std::env::var("KILN_HTTP_TIMEOUT") {
            if v.trim().parse::<u64>().ok().filter(|s| *s > 0).is_none() {
                return Err(InputError(format!(
                    "KILN_HTTP_TIMEOUT must be a whole number of seconds above 0, got `{v}`"
                ))
                .into());
            }
        }
        let store = kiln_client::RestStore::new(uri).with_context(|| {
            format!(
                "Failed to reach the tracking server `{}`",
                crate::tracking::redact(uri)
            )
        })?;
        return Ok(Arc::new(store));
    }
    Ok(open_store(uri, false, false)?)
}

/// The metadata and artifact stores at `loc`: a database and an artifact store, or a tracking
/// server (`http(s)://…`), whose REST API and artifact proxy then stand in for both (the
/// artifact destination is the server's own). Call it outside `rt`'s async context: the REST
/// store is a blocking client.
pub(crate) fn open_tracking(
    loc: &Locations,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<(
    Arc<dyn kiln_store::TrackingStore>,
    Arc<dyn kiln_blob::BlobStore>,
)> {
    let store = open_metadata(&loc.backend)?;
    let blobs: Arc<dyn kiln_blob::BlobStore> = if is_server_uri(&loc.backend) {
        Arc::new(kiln_client::HttpBlobStore::new(&loc.backend)?)
    } else {
        rt.block_on(async { open_blobs(&loc.artifacts) })?
    };
    Ok((store, blobs))
}

pub(crate) fn open_blobs(uri: &str) -> anyhow::Result<Arc<dyn kiln_blob::BlobStore>> {
    kiln_blob::open(uri).with_context(|| format!("Failed to open the artifact store `{uri}`"))
}

/// A multi-threaded runtime for async work.
pub(crate) fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_builder(workers)
        .build()
        .context("Failed to start the async runtime")
}

/// The runtime of `kiln server` and `kiln serve`: [`runtime`] whose workers busy-poll the
/// server's sockets for up to `--busy-poll` before they sleep (see `kiln_http::busy_poll`).
pub(crate) fn server_runtime(
    args: &crate::cli::ServerRuntimeArgs,
) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = runtime_builder(args.workers);
    kiln_http::set_header_read_timeout(args.header_timeout);
    if let Some(limit) = kiln_http::raise_open_file_limit() {
        tracing::debug!(limit, "Open-file limit.");
    }
    kiln_http::busy_poll::install(&mut builder, args.busy_poll)
        .context("Failed to set up busy polling (try --busy-poll 0)")?;
    builder.build().context("Failed to start the async runtime")
}

fn runtime_builder(workers: Option<usize>) -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = workers {
        builder.worker_threads(n.max(1));
    }
    builder
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
/// Ctrl-C and SIGTERM, listened for from [`Shutdown::listen`] on: a server stops accepting, lets
/// in-flight requests finish, then exits (`kiln server` and `kiln serve`).
///
/// The handlers are installed when this is made, not when it is first awaited: a SIGTERM sent
/// as soon as a server announces its address (a test harness, an orchestrator) used to arrive
/// before anything listened for it, and was lost.
pub(crate) struct Shutdown {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    /// Start listening (inside the runtime).
    pub(crate) fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next Ctrl-C or SIGTERM.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut self.term) => {},
                () = next(&mut self.interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub(crate) fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_timestamps() {
        assert_eq!(super::format_ms(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_ms(1_700_000_000_000), "2023-11-14 22:13:20");
    }
}
