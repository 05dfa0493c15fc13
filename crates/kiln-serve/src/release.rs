//! Release practices on the request path: the [`Arm`] a model answers on, the routing keys
//! behind canary splits ([`sticky_hash`] for a sticky header, [`random_u64`] otherwise),
//! request ids, and the [`ShadowQueue`] that mirrors requests to a shadow model on its own
//! thread, off the response path.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;

use crate::decode::{decode_csv, decode_mlflow_json, decode_v2};
use crate::encode::Batch;
use crate::error::ServeError;
use crate::metrics::{Endpoint, Metrics};
use crate::predlog::{ByteBudget, LogRecord, PredictionLog};
use crate::state::{LoadedModel, ModelSlot};

/// Which role a model plays on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arm {
    /// The served reference: answers every request the canary does not take.
    Main,
    /// Answers its share of requests (`--canary <alias>=<percent>`).
    Canary,
    /// Sees a copy of every answered request; its outputs are logged, never returned.
    Shadow,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Canary => "canary",
            Self::Shadow => "shadow",
        }
    }
}

/// A stable 64-bit hash of a sticky-header value (FNV-1a, then a 64-bit finalizer so the low
/// digits that pick the arm are well mixed). The same value lands on the same arm in every
/// process and after every restart.
pub fn sticky_hash(value: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

static SEEDS: AtomicU64 = AtomicU64::new(0);

fn seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    #[allow(clippy::cast_possible_truncation)]
    let now = now as u64;
    mix(now ^ u64::from(std::process::id()).rotate_left(32))
        ^ mix(SEEDS.fetch_add(1, Ordering::Relaxed))
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A uniformly distributed `u64` from a per-thread SplitMix64 stream (not cryptographic).
pub fn random_u64() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        mix(x)
    })
}

/// The request id: the caller's `X-Request-Id` when it sent a usable one (at most 128
/// visible ASCII characters), else 32 random hex digits.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("x-request-id") {
        if !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic) {
            return v.clone();
        }
    }
    let mut out = [0u8; 32];
    let (a, b) = (random_u64(), random_u64());
    for (i, slot) in out.iter_mut().enumerate() {
        let word = if i < 16 { a } else { b };
        #[allow(clippy::cast_possible_truncation)]
        let nibble = ((word >> ((i % 16) * 4)) & 0xf) as u8;
        *slot = b"0123456789abcdef"[usize::from(nibble)];
    }
    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&out))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    /// MLflow JSON (`dataframe_split`, `dataframe_records`, `instances`, `inputs`).
    Json,
    Csv,
    /// An Open Inference Protocol v2 request.
    V2,
}

impl BodyFormat {
    pub(crate) fn endpoint(self) -> Endpoint {
        match self {
            Self::Json | Self::Csv => Endpoint::Invocations,
            Self::V2 => Endpoint::V2Infer,
        }
    }
}

/// Decode `body` against a model's encoder.
pub(crate) fn decode(
    format: BodyFormat,
    body: &[u8],
    model: &LoadedModel,
) -> Result<Batch, ServeError> {
    Ok(match format {
        BodyFormat::Json => decode_mlflow_json(body, &model.encoder)?,
        BodyFormat::Csv => decode_csv(body, &model.encoder)?,
        BodyFormat::V2 => decode_v2(body, &model.encoder)?.0,
    })
}

/// A request mirrored to the shadow model.
pub(crate) struct ShadowJob {
    pub(crate) body: Bytes,
    pub(crate) format: BodyFormat,
    pub(crate) request_id: HeaderValue,
    /// Whether the request was sampled for the prediction log (the shadow's answer is then
    /// logged too, under the same request id).
    pub(crate) logged: bool,
}

enum ShadowMsg {
    Job(ShadowJob),
    Stop,
}

/// Mirrors answered requests to the shadow model: a bounded queue (a full queue drops the
/// copy, counted in `kiln_shadow_dropped_total`) drained by one thread that decodes against
/// the shadow model, predicts, counts its metrics and logs its answers. A request never waits
/// for the shadow.
pub(crate) struct ShadowQueue {
    tx: SyncSender<ShadowMsg>,
    metrics: Arc<Metrics>,
    /// Disconnected when the thread has ended (it holds the sender).
    ended: Mutex<Option<mpsc::Receiver<()>>>,
    /// Set at shutdown: copies still queued are dropped (and counted), not scored, so a slow
    /// shadow cannot hold the exit (and the prediction log's last file) past the drain deadline.
    stopping: Arc<AtomicBool>,
    budget: Arc<ByteBudget>,
}

/// Mirrored requests waiting for the shadow model.
const SHADOW_QUEUE: usize = 1024;
/// Bytes of mirrored bodies waiting, at most (besides one of any size when none waits).
const SHADOW_QUEUE_BYTES: usize = 64 << 20;

impl ShadowQueue {
    pub(crate) fn start(
        slot: Arc<ModelSlot>,
        log: Option<Arc<PredictionLog>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServeError> {
        let (tx, rx) = mpsc::sync_channel::<ShadowMsg>(SHADOW_QUEUE);
        let stopping = Arc::new(AtomicBool::new(false));
        let (stop, counts) = (stopping.clone(), metrics.clone());
        let budget = Arc::new(ByteBudget::default());
        let taken = Arc::clone(&budget);
        let (alive, ended) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("kiln-shadow".into())
            .spawn(move || {
                let _alive = alive;
                while let Ok(ShadowMsg::Job(job)) = rx.recv() {
                    if stop.load(Ordering::Relaxed) {
                        // Shutting down: this copy and those still queued are dropped.
                        let queued = rx
                            .try_iter()
                            .filter(|m| matches!(m, ShadowMsg::Job(_)))
                            .count();
                        counts
                            .shadow_dropped
                            .fetch_add(1 + queued as u64, Ordering::Relaxed);
                        break;
                    }
                    taken.give(job.body.len());
                    run_shadow(&slot, log.as_deref(), job);
                }
            })
            .map_err(|e| ServeError::Internal(format!("Failed to start the shadow thread: {e}")))?;
        Ok(Self {
            tx,
            metrics,
            ended: Mutex::new(Some(ended)),
            stopping,
            budget,
        })
    }

    /// Queue a copy of a request; drops it (counted) when the shadow is behind: a full queue,
    /// or [`SHADOW_QUEUE_BYTES`] of bodies waiting.
    pub(crate) fn mirror(&self, job: ShadowJob) {
        let cost = job.body.len();
        if !self.budget.try_take(cost, SHADOW_QUEUE_BYTES) {
            self.metrics.shadow_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(ShadowMsg::Job(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.budget.give(cost);
                self.metrics.shadow_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stop the thread once the copy in progress is scored (queued copies are dropped),
    /// waiting for that copy at most `within`: a slow shadow must not hold the exit past the
    /// pod's grace period. `false` when it was still scoring then.
    pub(crate) fn finish(&self, within: Duration) -> bool {
        self.stopping.store(true, Ordering::Relaxed);
        // Never blocks: the queue may be full, and the stop flag alone ends the copies queued.
        let _ = self.tx.try_send(ShadowMsg::Stop);
        let ended = match self.ended.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(ended) = ended else {
            return true;
        };
        match ended.recv_timeout(within) {
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    ?within,
                    "The shadow model was still scoring a mirrored request at the drain deadline; \
                     leaving it."
                );
                false
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        }
    }
}

fn run_shadow(slot: &ModelSlot, log: Option<&PredictionLog>, job: ShadowJob) {
    let start = Instant::now();
    let model = slot.get();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let batch = decode(job.format, &job.body, &model)?;
        let predictions = model.scorer.predict(&batch)?;
        crate::routes::check_finite(&predictions)?;
        Ok::<_, ServeError>((batch, predictions))
    }))
    .unwrap_or_else(|_| Err(ServeError::Internal("shadow prediction panicked".into())));
    let status = match &outcome {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    };
    model
        .metrics
        .request(job.format.endpoint(), status, start.elapsed());
    match outcome {
        Ok((batch, predictions)) => {
            crate::routes::record(&model, &predictions);
            if job.logged {
                if let Some(log) = log {
                    log.submit(LogRecord::new(
                        Arc::clone(&model),
                        &job.request_id,
                        start.elapsed(),
                        batch,
                        predictions,
                    ));
                }
            }
        }
        Err(err) => {
            tracing::debug!(model = %model.name, version = %model.version, %err, "Shadow prediction failed.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{random_u64, sticky_hash};

    #[test]
    fn sticky_hash_is_stable_and_spread() {
        // Fixed values: the arm of a user must not change between releases of kiln.
        assert_eq!(sticky_hash(b"user-1"), sticky_hash(b"user-1"));
        assert_ne!(sticky_hash(b"user-1"), sticky_hash(b"user-2"));
        let canary = (0..10_000)
            .filter(|i| sticky_hash(format!("user-{i}").as_bytes()) % 10_000 < 2_500)
            .count();
        assert!((2_300..2_700).contains(&canary), "{canary}");
        let random = (0..10_000)
            .filter(|_| random_u64() % 10_000 < 5_000)
            .count();
        assert!((4_700..5_300).contains(&random), "{random}");
    }
}
