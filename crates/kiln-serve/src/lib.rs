//! kiln's prediction server. [`create_app`] builds the routes over a [`ServeState`]: MLflow's
//! scoring protocol (`POST /invocations`: `dataframe_split`, `dataframe_records`, `instances`,
//! `inputs`, JSON or CSV), the Open Inference Protocol v2 (`/v2/models/{name}/infer`, health
//! and metadata), `/health`, Prometheus `/metrics` and `/openapi.json`.
//!
//! - [`Scorer`]: the served-model boundary ([`KilnScorer`], [`OnnxScorer`]; [`scorer_for`]); a request is
//!   decoded ([`decode`]) against the model's signature into an [`encode::Batch`] of rows.
//! - [`ModelSlot`]: the current model as an `Arc` swapped atomically; a request keeps the
//!   model it started with. [`watch_arm`] polls a [`ModelLoader`] and swaps when a registry
//!   alias moves, one watcher per [`Arm`].
//! - [`Routes`]: the main arm, a weighted canary arm (sticky by a header's [`sticky_hash`])
//!   and a shadow arm that sees mirrored requests off the response path ([`Arms`]).
//! - [`PredictionLog`]: sampled inputs and outputs to rotating Parquet files through a
//!   bounded queue ([`LogConfig`]); micro-batching of concurrent requests ([`Limits`]).
//! - [`Metrics`]: lock-free counters and histograms per model version and arm.
//! - [`serve`]: TCP_NODELAY, graceful shutdown with a drain deadline.
//!
//! ```
//! assert_eq!(kiln_serve::parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
//! assert_eq!(kiln_serve::parse_duration("200ms").unwrap().as_millis(), 200);
//! ```

mod batch;
pub mod decode;
pub mod encode;
mod error;
mod loader;
mod metrics;
mod openapi;
pub mod predlog;
mod release;
mod routes;
mod scorer;
mod state;

use std::future::Future;
use std::time::Duration;

pub use error::{DecodeError, ServeError};
pub use loader::{ModelRef, TrackerLoader};
pub use metrics::{Endpoint, Metrics, Serving, VersionMetrics};
pub use predlog::{LogConfig, PredictionLog};
pub use release::{random_u64, sticky_hash, Arm};
pub use routes::create_app;
pub use scorer::{scorer_for, KilnScorer, OnnxScorer, Scorer};
pub use state::{
    watch, watch_arm, Arms, Limits, Loaded, LoadedModel, ModelLoader, ModelSlot, Routes,
    ServeState, DEFAULT_BATCH_ROWS,
};

/// Serve `app` on `listener` with TCP_NODELAY until `shutdown` resolves; then stop accepting,
/// let in-flight requests finish, and give up on the rest after `drain`. The accept loop is
/// [`kiln_http::serve`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    kiln_http::serve(listener, app, shutdown, Some(drain)).await
}

/// A byte size: `1048576`, `512KiB`, `10MiB`, `1GiB`, `10MB`, `64kb`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size `{text}`: expected e.g. 10MiB, 512KiB or 1048576"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "invalid size unit `{other}` in `{text}`: use B, KB, KiB, MB, MiB, GB or GiB"
            ))
        }
    };
    let bytes = (value * factor).round();
    if !(1.0..=1e15).contains(&bytes) {
        return Err(format!("size `{text}` is out of range"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as usize)
}

/// A duration: `200ms`, `5s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: expected e.g. 200ms, 5s or 2m"))?;
    let seconds = match unit.trim() {
        "us" | "µs" => value / 1_000_000.0,
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit `{other}` in `{text}`: use us, ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration `{text}` is out of range"))
}

#[cfg(test)]
mod tests;
