//! `kiln serve`: load the model of each arm (main, `--canary`, `--shadow`; through the store
//! for `models:/` and `runs:/` references), serve them with `kiln_serve`, watch each alias,
//! log predictions, drain on SIGTERM and flush the prediction log.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kiln_serve::{Arm, Arms, Limits, LogConfig, ModelLoader, ModelRef, ServeState, TrackerLoader};
use kiln_train::tracking::Tracker;

use super::{client_locations, open_tracking, server_runtime, InputError};
use crate::cli::ServeArgs;
use crate::printer::Printer;

pub(super) fn run(args: ServeArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        model,
        host,
        port,
        runtime: runtime_args,
        max_body,
        body_timeout,
        poll_interval,
        drain_timeout,
        drain_delay,
        name,
        canary,
        sticky_header,
        shadow,
        log_predictions,
        log_sample,
        log_rotate_rows,
        log_queue,
        log_rotate_secs,
        batch_max_rows,
        batch_wait_us,
        store,
    } = args;
    if poll_interval.is_zero() {
        return Err(InputError(
            "--poll-interval must be more than 0: it is how long the server waits between registry lookups".into(),
        )
        .into());
    }
    let reference = ModelRef::parse(&model)?;
    let canary = canary
        .as_deref()
        .map(|spec| parse_canary(spec, &reference))
        .transpose()?;
    let shadow = shadow
        .as_deref()
        .map(|spec| arm_reference(spec, &reference, "--shadow"))
        .transpose()?;
    if sticky_header.is_some() && canary.is_none() {
        anyhow::bail!(kiln_serve::ServeError::Config(
            "--sticky-header needs --canary".into()
        ));
    }
    let rt = server_runtime(&runtime_args)?;
    let needs_store = reference.needs_store()
        || canary.as_ref().is_some_and(|(r, _)| r.needs_store())
        || shadow.as_ref().is_some_and(ModelRef::needs_store);
    let tracker = if needs_store {
        let loc = client_locations(&store)?;
        let (store, blobs) = open_tracking(&loc, &rt)?;
        Some(Arc::new(Tracker {
            store,
            blobs,
            runtime: rt.handle().clone(),
        }))
    } else {
        None
    };
    // One loader (and, for an alias, one watcher) per arm.
    let loader = |r: ModelRef| -> anyhow::Result<Arc<TrackerLoader>> {
        Ok(Arc::new(TrackerLoader::new(r, tracker.clone())?))
    };
    let main_loader = loader(reference)?;
    let canary_loader = canary
        .map(|(r, percent)| Ok::<_, anyhow::Error>((loader(r)?, percent)))
        .transpose()?;
    let shadow_loader = shadow.map(loader).transpose()?;
    // Outside the runtime: the tracker blocks on it to read artifacts.
    let arms = Arms {
        main: main_loader.load(None)?,
        canary: canary_loader
            .as_ref()
            .map(|(l, percent)| Ok::<_, anyhow::Error>((l.load(None)?, *percent)))
            .transpose()?,
        shadow: shadow_loader.as_ref().map(|l| l.load(None)).transpose()?,
        sticky_header,
    };
    let limits = Limits {
        max_body,
        body_timeout,
        batch_max_rows,
        batch_wait: Duration::from_micros(batch_wait_us),
        ..Limits::default()
    };
    let log = log_predictions.map(|destination| LogConfig {
        sample: log_sample,
        rotate_rows: log_rotate_rows,
        queue: usize::try_from(log_queue).unwrap_or(usize::MAX),
        rotate_interval: Duration::from_secs(log_rotate_secs.max(1)),
        ..LogConfig::new(destination)
    });
    let state = ServeState::with_arms(arms, name, limits, log)?;
    let watched: Vec<(Arm, Arc<TrackerLoader>)> = [
        Some((Arm::Main, main_loader)),
        canary_loader.map(|(l, _)| (Arm::Canary, l)),
        shadow_loader.map(|l| (Arm::Shadow, l)),
    ]
    .into_iter()
    .flatten()
    .filter(|(_, l)| l.reference().is_watched())
    .collect();
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("Failed to listen on {host}:{port}"))?;
        let addr = listener
            .local_addr()
            .context("Failed to read the bound address")?;
        let current = state.routes.pick();
        let version = if current.version.is_empty() {
            String::new()
        } else {
            format!(" version {}", current.version)
        };
        let mut signals = super::Shutdown::listen();
        printer.status(&format!(
            "kiln serve listening on http://{addr} (model {}{version}, {}, from {})",
            current.name,
            current.scorer.flavor(),
            current.source
        ));
        for m in state.routes.arms().iter().filter(|m| m.arm != Arm::Main) {
            printer.status(&format!(
                "  {} arm: version {} ({}, from {})",
                m.arm.as_str(),
                m.version,
                m.scorer.flavor(),
                m.source
            ));
        }
        let watchers: Vec<_> = watched
            .into_iter()
            .map(|(arm, l)| {
                tokio::spawn(kiln_serve::watch_arm(
                    Arc::clone(&state),
                    arm,
                    l as Arc<dyn ModelLoader>,
                    poll_interval,
                ))
            })
            .collect();
        let app = kiln_serve::create_app(Arc::clone(&state));
        let draining = Arc::clone(&state);
        // When the drain began: the prediction log's last file gets what is left of
        // --drain-timeout after the requests, and at least LOG_FLUSH_FLOOR.
        let drain_started: Arc<std::sync::OnceLock<std::time::Instant>> = Arc::default();
        let started = Arc::clone(&drain_started);
        let shutdown = async move {
            signals.recv().await;
            draining.set_draining();
            if !drain_delay.is_zero() {
                tracing::info!(
                    delay = ?drain_delay,
                    "Draining: health checks answer 503; still serving until the delay ends."
                );
                tokio::select! {
                    () = tokio::time::sleep(drain_delay) => {},
                    () = signals.recv() => {},
                }
            }
            tracing::info!("Shutting down: finishing in-flight requests.");
            let _ = started.set(std::time::Instant::now());
        };
        let served = kiln_serve::serve(listener, app, shutdown, drain_timeout).await;
        for w in watchers {
            w.abort();
        }
        // Mirrored requests and the prediction log's last file.
        let finishing = Arc::clone(&state);
        let spent = drain_started
            .get()
            .map_or(std::time::Duration::ZERO, std::time::Instant::elapsed);
        let log_within = drain_timeout.saturating_sub(spent).max(LOG_FLUSH_FLOOR);
        let _ = tokio::task::spawn_blocking(move || finishing.finish(log_within)).await;
        served.context("Server failed")
    });
    served?;
    printer.status("kiln serve stopped");
    Ok(ExitCode::SUCCESS)
}

/// The least time the prediction log gets to write its last file at shutdown, even when the
/// drain used all of `--drain-timeout` (or it is 0): `kiln deploy k8s` leaves a 5 s margin in
/// the pod's grace period beyond the drain.
const LOG_FLUSH_FLOOR: std::time::Duration = std::time::Duration::from_secs(3);

/// `<alias>=<percent>` (or `<reference>=<percent>`) of `--canary`.
fn parse_canary(spec: &str, main: &ModelRef) -> anyhow::Result<(ModelRef, f64)> {
    let bad = || {
        kiln_serve::ServeError::Config(format!(
            "--canary `{spec}`: expected <alias>=<percent>, e.g. challenger=10"
        ))
    };
    let (target, percent) = spec.rsplit_once('=').ok_or_else(bad)?;
    let text = percent.trim().trim_end_matches('%');
    let percent: f64 = text.parse().map_err(|_| bad())?;
    // The split is kept in basis points: a finer share would be rounded without a word.
    if text.split_once('.').is_some_and(|(_, frac)| frac.len() > 2) {
        anyhow::bail!(kiln_serve::ServeError::Config(format!(
            "--canary `{spec}`: at most two decimals (the split is kept in hundredths of a percent)"
        )));
    }
    if !(0.0..=100.0).contains(&percent) {
        anyhow::bail!(kiln_serve::ServeError::Config(format!(
            "--canary `{spec}`: the percentage must be between 0 and 100"
        )));
    }
    Ok((arm_reference(target, main, "--canary")?, percent))
}

/// An arm's model: a bare alias of the served registered model, or a full reference.
fn arm_reference(target: &str, main: &ModelRef, flag: &str) -> anyhow::Result<ModelRef> {
    let bare = !target.is_empty()
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !bare {
        return Ok(ModelRef::parse(target)?);
    }
    match main {
        ModelRef::Alias { name, .. } | ModelRef::Version { name, .. } => Ok(ModelRef::Alias {
            name: name.clone(),
            alias: target.to_string(),
        }),
        _ => anyhow::bail!(kiln_serve::ServeError::Config(format!(
            "{flag} `{target}`: an alias needs a served `models:/<name>…` reference; \
             otherwise give a model reference or path"
        ))),
    }
}
