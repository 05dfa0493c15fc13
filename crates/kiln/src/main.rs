//! The `kiln` binary: the composition root. It parses the command line, picks store
//! implementations from URIs, runs one command and maps failures to documented exit codes.

mod cli;
mod commands;
mod printer;
mod tracking;

use std::process::ExitCode;

use clap::Parser as _;

/// Exit code for a usage or input error.
const EXIT_INPUT: u8 = 2;
/// Exit code for an internal failure.
const EXIT_INTERNAL: u8 = 3;

fn main() -> ExitCode {
    // An error a library creates and then handles captures a backtrace whenever RUST_BACKTRACE
    // is set; tract builds one per ONNX prediction (resolving the batch dimension), which cost
    // `kiln serve` a quarter of its throughput. Panics keep their backtraces; set
    // RUST_LIB_BACKTRACE=1 to get library ones too. Set before any thread starts.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // Whether stdout is for a script: then every failure, a usage error included, is also
    // JSON there.
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let usage_error = err.use_stderr();
            if json && usage_error {
                let rendered = err.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                printer::Printer.json_error(&anyhow::anyhow!("{message}"), EXIT_INPUT);
            }
            err.exit();
        }
    };
    let default_level = if matches!(
        cli.command,
        cli::Command::Server(_) | cli::Command::Serve(_)
    ) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs redirected to a file or a collector stay text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let printer = printer::Printer;
    match commands::run(cli.command, &printer) {
        Ok(code) => code,
        Err(err) => {
            printer.error(&err);
            let code = exit_code(&err);
            if json {
                printer.json_error(&err, code);
            }
            ExitCode::from(code)
        }
    }
}

/// Input errors (unknown ids, bad filters, bad URIs) exit 2; infrastructure failures exit 3.
fn exit_code(err: &anyhow::Error) -> u8 {
    // An InputError given as context (`.context(InputError(…))` over an I/O error) is only seen
    // through anyhow's own downcast: the chain below yields the context wrapper.
    if err.downcast_ref::<commands::InputError>().is_some() {
        return EXIT_INPUT;
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<kiln_store::StoreError>() {
            // A schema older or newer than this binary is the operator's to fix (`kiln db
            // upgrade`, or a newer kiln): exit 2, as for any setup mistake.
            return match e {
                kiln_store::StoreError::Backend { .. } => EXIT_INTERNAL,
                _ => EXIT_INPUT,
            };
        }
        if let Some(e) = cause.downcast_ref::<kiln_blob::BlobError>() {
            return match e {
                kiln_blob::BlobError::InvalidPath { .. }
                | kiln_blob::BlobError::InvalidUri { .. }
                | kiln_blob::BlobError::Conflict { .. } => EXIT_INPUT,
                _ => EXIT_INTERNAL,
            };
        }
        if let Some(e) = cause.downcast_ref::<kiln_table::TableError>() {
            return if e.is_input() {
                EXIT_INPUT
            } else {
                EXIT_INTERNAL
            };
        }
        if let Some(e) = cause.downcast_ref::<kiln_train::TrainError>() {
            return if e.is_input() {
                EXIT_INPUT
            } else {
                EXIT_INTERNAL
            };
        }
        if let Some(e) = cause.downcast_ref::<kiln_serve::ServeError>() {
            return if e.is_input() {
                EXIT_INPUT
            } else {
                EXIT_INTERNAL
            };
        }
        if cause.downcast_ref::<commands::InputError>().is_some() {
            return EXIT_INPUT;
        }
    }
    EXIT_INTERNAL
}
