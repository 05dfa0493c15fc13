//! What the handlers share: the served model behind a [`ModelSlot`] (an `Arc` swapped under a
//! briefly held lock, so a request keeps the model it started with), the [`Routes`] that pick a
//! slot, the [`Metrics`] and the limits. [`watch`] re-resolves a registry alias and swaps in
//! a new version once it is fully loaded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use kiln_train::frame::Task;

use crate::batch::BatchQueue;
use crate::encode::Encoder;
use crate::error::ServeError;
use crate::metrics::{Metrics, VersionMetrics};
use crate::predlog::{LogConfig, PredictionLog};
use crate::release::Arm;
use crate::release::ShadowQueue;
use crate::scorer::Scorer;

/// A model as a loader returns it.
pub struct Loaded {
    pub scorer: Arc<dyn Scorer>,
    /// Registered model name, when it came from the registry.
    pub name: Option<String>,
    /// Registry version.
    pub version: Option<String>,
    pub run_id: Option<String>,
    /// What was loaded (a path or a URI).
    pub source: String,
}

/// A model ready to serve: the scorer plus what the request path needs precomputed.
pub struct LoadedModel {
    pub scorer: Arc<dyn Scorer>,
    pub encoder: Encoder,
    /// Name the endpoints use (`/v2/models/{name}`).
    pub name: String,
    /// Registry version, or `""` for a model file.
    pub version: String,
    pub run_id: Option<String>,
    pub source: String,
    /// Each class label as JSON (`1`, `"yes"`), classification only.
    pub labels: Vec<Box<str>>,
    /// Each class label as text, for OIP `BYTES` outputs.
    pub label_text: Vec<String>,
    pub metrics: Arc<VersionMetrics>,
    pub loaded_at_ms: i64,
    /// Which arm the model answers on.
    pub arm: Arm,
    /// `version` as a response header value (`X-Kiln-Model-Version`), when it is one.
    pub version_header: Option<HeaderValue>,
    /// The micro-batch queue, when batching is on.
    pub(crate) batch: Option<BatchQueue>,
}

impl LoadedModel {
    pub fn classification(&self) -> bool {
        self.scorer.signature().target.task == Task::Classification
    }
}

/// A class label as JSON: a number when the label reads as one, else a string.
fn label_json(label: &str) -> Box<str> {
    if serde_json::from_str::<serde_json::Number>(label).is_ok() {
        label.into()
    } else {
        serde_json::Value::String(label.to_string())
            .to_string()
            .into_boxed_str()
    }
}

/// The current model of one route; swapping never blocks a request for longer than an `Arc`
/// clone.
pub struct ModelSlot {
    current: RwLock<Arc<LoadedModel>>,
}

impl ModelSlot {
    pub fn new(model: Arc<LoadedModel>) -> Self {
        Self {
            current: RwLock::new(model),
        }
    }

    /// The model now; a request holds this `Arc` until it has answered.
    pub fn get(&self) -> Arc<LoadedModel> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Put `model` in place and return the previous one.
    pub fn swap(&self, model: Arc<LoadedModel>) -> Arc<LoadedModel> {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        std::mem::replace(&mut *g, model)
    }
}

/// The canary arm: its slot and the share of traffic it gets, in basis points (1/100 %).
struct Canary {
    slot: Arc<ModelSlot>,
    basis_points: u64,
    /// Its alias was removed from the registry (an aborted canary): it gets no traffic until
    /// the alias is set again.
    withdrawn: std::sync::atomic::AtomicBool,
}

impl Canary {
    /// Its share, in basis points: none while withdrawn.
    fn share(&self) -> u64 {
        if self.withdrawn.load(std::sync::atomic::Ordering::Relaxed) {
            0
        } else {
            self.basis_points
        }
    }
}

/// Which slot answers a request: the main arm, or the canary arm for its share of requests
/// (by a hash of the sticky header when the request has it, else at random). The shadow arm
/// never answers; requests are mirrored to it off the response path (see [`ServeState`]).
pub struct Routes {
    main: Arc<ModelSlot>,
    canary: Option<Canary>,
    shadow: Option<Arc<ModelSlot>>,
    sticky: Option<HeaderName>,
}

impl Routes {
    pub fn single(slot: Arc<ModelSlot>) -> Self {
        Self {
            main: slot,
            canary: None,
            shadow: None,
            sticky: None,
        }
    }

    /// The main model (metadata, health and the OIP name checks use it).
    pub fn pick(&self) -> Arc<LoadedModel> {
        self.main.get()
    }

    /// The model that answers a prediction request with these headers.
    pub fn route(&self, headers: &HeaderMap) -> Arc<LoadedModel> {
        let Some(canary) = &self.canary else {
            return self.main.get();
        };
        // An empty value is no key: every such caller would land on one arm.
        let key = match self
            .sticky
            .as_ref()
            .and_then(|h| headers.get(h))
            .filter(|v| !v.as_bytes().trim_ascii().is_empty())
        {
            Some(v) => crate::release::sticky_hash(v.as_bytes()),
            None => crate::release::random_u64(),
        };
        if key % 10_000 < canary.share() {
            canary.slot.get()
        } else {
            self.main.get()
        }
    }

    /// The answering arm (main first, then canary) whose model is `version`, for
    /// `/v2/models/{name}/versions/{version}/infer`.
    pub fn by_version(&self, version: &str) -> Option<Arc<LoadedModel>> {
        let main = self.main.get();
        if main.version == version {
            return Some(main);
        }
        let canary = self.canary.as_ref()?.slot.get();
        (canary.version == version).then_some(canary)
    }

    /// The versions that answer requests: the main arm's, then the canary's.
    pub fn versions(&self) -> Vec<String> {
        let mut out = vec![self.main.get().version.clone()];
        if let Some(c) = &self.canary {
            let v = c.slot.get().version.clone();
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }

    /// The arm a routing key (see [`crate::release::sticky_hash`]) lands on.
    pub fn arm_for_key(&self, key: u64) -> Arm {
        match &self.canary {
            Some(c) if key % 10_000 < c.share() => Arm::Canary,
            _ => Arm::Main,
        }
    }

    pub fn primary(&self) -> &Arc<ModelSlot> {
        &self.main
    }

    /// Take the canary out of (`true`) or back into rotation; whether that changed anything.
    pub fn withdraw_canary(&self, withdrawn: bool) -> bool {
        self.canary.as_ref().is_some_and(|c| {
            c.withdrawn
                .swap(withdrawn, std::sync::atomic::Ordering::Relaxed)
                != withdrawn
        })
    }

    /// Whether the canary is out of rotation (its alias was removed).
    pub fn canary_withdrawn(&self) -> bool {
        self.canary
            .as_ref()
            .is_some_and(|c| c.withdrawn.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The slot of `arm`, when the server has that arm.
    pub fn slot(&self, arm: Arm) -> Option<&Arc<ModelSlot>> {
        match arm {
            Arm::Main => Some(&self.main),
            Arm::Canary => self.canary.as_ref().map(|c| &c.slot),
            Arm::Shadow => self.shadow.as_ref(),
        }
    }

    /// The current model of every arm the server has.
    pub fn arms(&self) -> Vec<Arc<LoadedModel>> {
        [Arm::Main, Arm::Canary, Arm::Shadow]
            .into_iter()
            .filter_map(|a| self.slot(a).map(|s| s.get()))
            .collect()
    }
}

/// Limits and tuning of the request path.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body, bytes (larger: 413).
    pub max_body: usize,
    /// How long a client may take to send a request's body once its headers arrived (slower:
    /// 408), so a client trickling a body cannot hold a connection and its buffer forever.
    pub body_timeout: Duration,
    /// Bodies above this size are decoded and predicted on the blocking pool instead of a
    /// runtime worker.
    pub offload_bytes: usize,
    /// Micro-batching: coalesce up to this many rows of concurrent requests into one model
    /// call (`0` or `1`: off); `None`: [`DEFAULT_BATCH_ROWS`] for models that
    /// [prefer batches](Scorer::prefers_batches) (ONNX), off for the others.
    pub batch_max_rows: Option<usize>,
    /// Micro-batching: how long a batch may wait for more requests when others are in
    /// flight (an idle server never waits).
    pub batch_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 10 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            offload_bytes: 64 * 1024,
            batch_max_rows: None,
            batch_wait: Duration::from_micros(200),
        }
    }
}

/// The models a server starts with, one per arm, and how requests are split between them.
pub struct Arms {
    pub main: Loaded,
    /// The canary model and the percentage of requests it answers (0–100).
    pub canary: Option<(Loaded, f64)>,
    /// The shadow model: requests are mirrored to it, its answers logged and counted, never
    /// returned.
    pub shadow: Option<Loaded>,
    /// Header whose value keeps a caller on one arm (e.g. `X-User-Id`).
    pub sticky_header: Option<String>,
}

impl Arms {
    pub fn single(main: Loaded) -> Self {
        Self {
            main,
            canary: None,
            shadow: None,
            sticky_header: None,
        }
    }
}

/// Everything the handlers need, built once.
pub struct ServeState {
    pub routes: Routes,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Name of the served model in the endpoints (fixed for the server's life).
    pub name: String,
    pub(crate) log: Option<Arc<PredictionLog>>,
    pub(crate) shadow: Option<ShadowQueue>,
    ready: AtomicBool,
    started: Instant,
}

impl ServeState {
    /// State serving `first` under `name` (default: the registered name, else `model`).
    pub fn new(first: Loaded, name: Option<String>, limits: Limits) -> Arc<Self> {
        let name = name
            .or_else(|| first.name.clone())
            .unwrap_or_else(|| "model".to_string());
        let metrics = Arc::new(Metrics::default());
        let model = prepare(&name, &metrics, &limits, Arm::Main, first);
        Arc::new(Self {
            routes: Routes::single(Arc::new(ModelSlot::new(Arc::new(model)))),
            metrics,
            limits,
            name,
            log: None,
            shadow: None,
            ready: AtomicBool::new(true),
            started: Instant::now(),
        })
    }

    /// State serving several arms, with an optional prediction log (its writer thread starts
    /// here; call [`ServeState::finish`] after the last request to flush it).
    pub fn with_arms(
        arms: Arms,
        name: Option<String>,
        limits: Limits,
        log: Option<LogConfig>,
    ) -> Result<Arc<Self>, ServeError> {
        let Arms {
            main,
            canary,
            shadow,
            sticky_header,
        } = arms;
        let name = name
            .or_else(|| main.name.clone())
            .unwrap_or_else(|| "model".to_string());
        let metrics = Arc::new(Metrics::default());
        let slot = |arm: Arm, loaded: Loaded| {
            Arc::new(ModelSlot::new(Arc::new(prepare(
                &name, &metrics, &limits, arm, loaded,
            ))))
        };
        let canary = match canary {
            Some((loaded, percent)) => {
                if !(0.0..=100.0).contains(&percent) {
                    return Err(ServeError::Config(format!(
                        "the canary share must be between 0 and 100 (%), got {percent}"
                    )));
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let basis_points = (percent * 100.0).round() as u64;
                Some(Canary {
                    slot: slot(Arm::Canary, loaded),
                    basis_points,
                    withdrawn: std::sync::atomic::AtomicBool::new(false),
                })
            }
            None => None,
        };
        let sticky = match sticky_header {
            Some(h) => Some(HeaderName::try_from(h.as_str()).map_err(|_| {
                ServeError::Config(format!("`{h}` is not a valid HTTP header name"))
            })?),
            None => None,
        };
        let log = match log {
            Some(config) => Some(Arc::new(PredictionLog::start(
                config,
                Arc::clone(&metrics),
            )?)),
            None => None,
        };
        let shadow_slot = shadow.map(|loaded| slot(Arm::Shadow, loaded));
        let shadow = match &shadow_slot {
            Some(s) => Some(ShadowQueue::start(
                Arc::clone(s),
                log.clone(),
                Arc::clone(&metrics),
            )?),
            None => None,
        };
        let routes = Routes {
            main: slot(Arm::Main, main),
            canary,
            shadow: shadow_slot,
            sticky,
        };
        Ok(Arc::new(Self {
            routes,
            metrics,
            limits,
            name,
            log,
            shadow,
            ready: AtomicBool::new(true),
            started: Instant::now(),
        }))
    }

    /// Swap `loaded` in as the main model; returns the previous one.
    pub fn install(&self, loaded: Loaded) -> Arc<LoadedModel> {
        let model = prepare(&self.name, &self.metrics, &self.limits, Arm::Main, loaded);
        let old = self.routes.primary().swap(Arc::new(model));
        self.metrics.swapped();
        old
    }

    /// Swap `loaded` in on `arm`; returns the previous model, or `None` (and drops `loaded`)
    /// when the server has no such arm.
    pub fn install_arm(&self, arm: Arm, loaded: Loaded) -> Option<Arc<LoadedModel>> {
        let slot = self.routes.slot(arm)?;
        let model = prepare(&self.name, &self.metrics, &self.limits, arm, loaded);
        let old = slot.swap(Arc::new(model));
        self.metrics.swapped();
        Some(old)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Mark the server as draining: readiness probes fail, requests are still answered.
    pub fn set_draining(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// After the last request: stop the shadow worker (copies still queued are dropped and
    /// counted; the copy being scored gets at most half of `within`), then flush the
    /// prediction log (its last file is closed and moved into place) in what is left of
    /// `within`. Blocks at most `within`.
    pub fn finish(&self, within: Duration) {
        let started = Instant::now();
        if let Some(s) = &self.shadow {
            s.finish(within / 2);
        }
        if let Some(l) = &self.log {
            l.finish(within.saturating_sub(started.elapsed()));
        }
    }
}

fn prepare(
    name: &str,
    metrics: &Arc<Metrics>,
    limits: &Limits,
    arm: Arm,
    loaded: Loaded,
) -> LoadedModel {
    let Loaded {
        scorer,
        name: _,
        version,
        run_id,
        source,
    } = loaded;
    let signature = scorer.signature();
    let classes = &signature.target.classes;
    let version = version.unwrap_or_default();
    let labels = classes.iter().map(|c| label_json(c)).collect();
    LoadedModel {
        encoder: Encoder::new(signature),
        metrics: metrics.version(name, &version, arm.as_str(), classes),
        label_text: classes.clone(),
        labels,
        name: name.to_string(),
        // A model file has no version: no header, as documented, rather than an empty one.
        version_header: (!version.is_empty())
            .then(|| HeaderValue::from_str(&version).ok())
            .flatten(),
        version,
        arm,
        run_id,
        source,
        loaded_at_ms: now_ms(),
        batch: batch_rows(limits, &*scorer)
            .map(|rows| BatchQueue::new(rows, limits.batch_wait, Arc::clone(metrics))),
        scorer,
    }
}

/// Micro-batch size when `--batch-max-rows` is not given and the model prefers batches.
pub const DEFAULT_BATCH_ROWS: usize = 32;

fn batch_rows(limits: &Limits, scorer: &dyn Scorer) -> Option<usize> {
    let rows = limits
        .batch_max_rows
        .unwrap_or(if scorer.prefers_batches() {
            DEFAULT_BATCH_ROWS
        } else {
            0
        });
    (rows > 1).then_some(rows)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Loads models and tells which version a watched reference points at.
pub trait ModelLoader: Send + Sync + 'static {
    /// The version the reference points at now, or `None` when it cannot move (a file, a
    /// fixed version). Called from a blocking thread.
    fn current_version(&self) -> Result<Option<String>, ServeError>;
    /// Load the model; `version` pins the registry version [`Self::current_version`] gave.
    /// Called from a blocking thread.
    fn load(&self, version: Option<&str>) -> Result<Loaded, ServeError>;
}

/// The longest pause before loading a version that failed to load again.
const MAX_LOAD_BACKOFF: Duration = Duration::from_secs(300);

/// Poll `loader` every `interval`; when the version changes, load it fully, then swap it in.
/// A failed load keeps the current model and is retried with a growing pause (the poll interval,
/// doubling up to [`MAX_LOAD_BACKOFF`]: a broken version is not downloaded again on every poll);
/// a repeated failure is logged once. Runs until the task is dropped.
pub async fn watch(state: Arc<ServeState>, loader: Arc<dyn ModelLoader>, interval: Duration) {
    watch_arm(state, Arm::Main, loader, interval).await;
}

/// [`watch`] for the model of one arm (each arm has its own alias and watcher). Returns at
/// once when the server has no such arm.
pub async fn watch_arm(
    state: Arc<ServeState>,
    arm: Arm,
    loader: Arc<dyn ModelLoader>,
    interval: Duration,
) {
    if state.routes.slot(arm).is_none() {
        return;
    }
    // The version whose load failed, when to try it again, and the pause after that.
    let mut failed: Option<(String, Instant, Duration)> = None;
    let mut resolve_error: Option<String> = None;
    loop {
        tokio::time::sleep(interval).await;
        let version = match on_blocking(&loader, |l| l.current_version()).await {
            Ok(Some(v)) => {
                resolve_error = None;
                v
            }
            Ok(None) => continue,
            // The canary's alias was removed: an aborted canary. Its share goes back to the main
            // arm (the main arm's alias going missing keeps the current model: safer).
            Err(ServeError::NotFound(message)) if arm == Arm::Canary => {
                if state.routes.withdraw_canary(true) {
                    tracing::warn!(model = %state.name, %message, "The canary alias is gone: all traffic goes to the main arm until it is set again.");
                }
                continue;
            }
            Err(err) => {
                let message = error_chain(&err);
                if resolve_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(arm = arm.as_str(), error = %message, "Failed to resolve the served model alias; keeping the current version.");
                }
                resolve_error = Some(message);
                continue;
            }
        };
        let Some(current) = state.routes.slot(arm).map(|s| s.get()) else {
            return;
        };
        if current.version == version {
            failed = None;
            restore_canary(&state, arm, &version);
            continue;
        }
        if let Some((v, retry_at, _)) = &failed {
            if *v == version && Instant::now() < *retry_at {
                continue;
            }
        }
        let v = version.clone();
        let loaded = on_blocking(&loader, move |l| l.load(Some(&v))).await;
        // The alias may have moved on while this version loaded (a rollback right after a
        // promotion): then this load is stale, and installing it would serve, until the next
        // poll, a version the registry no longer points at.
        if loaded.is_ok() {
            if let Ok(Some(now)) = on_blocking(&loader, |l| l.current_version()).await {
                if now != version {
                    tracing::info!(
                        model = %state.name,
                        arm = arm.as_str(),
                        loaded = %version,
                        alias_now = %now,
                        "The alias moved while the new version loaded; not swapping to it."
                    );
                    continue;
                }
            }
        }
        match loaded {
            Ok(loaded) => {
                let Some(old) = state.install_arm(arm, loaded) else {
                    return;
                };
                failed = None;
                restore_canary(&state, arm, &version);
                tracing::info!(
                    model = %state.name,
                    arm = arm.as_str(),
                    from = %old.version,
                    to = %version,
                    "Swapped the served model version."
                );
            }
            Err(err) => {
                state.metrics.load_failed();
                let pause = match &failed {
                    Some((v, _, pause)) if *v == version => (*pause * 2).min(MAX_LOAD_BACKOFF),
                    _ => interval,
                };
                if failed.as_ref().map(|f| f.0.as_str()) != Some(version.as_str()) {
                    tracing::warn!(
                        model = %state.name,
                        arm = arm.as_str(),
                        %version,
                        error = %error_chain(&err),
                        "Failed to load the new model version; keeping the current one."
                    );
                }
                failed = Some((version, Instant::now() + pause, pause));
            }
        }
    }
}

/// Call the loader on a blocking thread (it reads the registry and downloads artifacts).
async fn on_blocking<T: Send + 'static>(
    loader: &Arc<dyn ModelLoader>,
    f: impl FnOnce(&dyn ModelLoader) -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    let l = Arc::clone(loader);
    tokio::task::spawn_blocking(move || f(l.as_ref()))
        .await
        .unwrap_or_else(|e| Err(ServeError::Internal(e.to_string())))
}

/// A withdrawn canary (its alias was removed) takes its share again once its slot serves the
/// version the alias points at now: not while that version loads, nor if it fails to.
fn restore_canary(state: &ServeState, arm: Arm, version: &str) {
    if arm == Arm::Canary && state.routes.withdraw_canary(false) {
        tracing::info!(model = %state.name, %version, "The canary alias is set again: the canary takes its share of traffic again.");
    }
}

/// An error with its causes, `: `-separated.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
