//! Prediction logging for monitoring: a sampled log of inputs, outputs, model version, arm,
//! latency and request id, written as rotating Parquet files to a local directory or an
//! artifact store.
//!
//! The request path only decides whether a request is sampled (`PredictionLog::sampled`)
//! and hands its decoded rows and predictions to a bounded queue (`PredictionLog::submit`,
//! `try_send`: a full queue, of [`LogConfig::queue`] records or [`QUEUE_BYTES`] of rows, drops
//! the record and counts it in `kiln_prediction_log_dropped_total`). One writer thread turns records into Arrow columns,
//! writes row groups to a temporary file and, when a file reaches [`LogConfig::rotate_rows`]
//! rows or [`LogConfig::rotate_interval`] of age, closes it and moves it into place: a rename
//! for a local directory, an upload through [`kiln_blob::BlobStore`] for `s3://…`.
//!
//! One Parquet row per predicted row: `timestamp` (µs, UTC), `request_id`, `row` (index in
//! the request), `model`, `version`, `arm`, `latency_us`, `inputs` (a JSON object of the
//! decoded inputs), `prediction` (the label, or the value as text), `probabilities` (JSON
//! list in class order, null for a regression).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use axum::http::HeaderValue;
use kiln_train::artifact::Predictions;
use kiln_train::frame::FieldKind;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::encode::Batch;
use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::state::LoadedModel;

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A local directory (`dir`, `file:///dir`) or an artifact store URI (`s3://bucket/prefix`).
    pub destination: String,
    /// Fraction of requests logged, 0–1.
    pub sample: f64,
    /// Start a new file after this many rows.
    pub rotate_rows: usize,
    /// Start a new file when the current one is this old.
    pub rotate_interval: Duration,
    /// Requests that may wait for the writer; more are dropped and counted.
    pub queue: usize,
}

impl LogConfig {
    pub fn new(destination: impl Into<String>) -> Self {
        Self {
            destination: destination.into(),
            sample: 0.1,
            rotate_rows: 100_000,
            rotate_interval: Duration::from_secs(60),
            queue: 4096,
        }
    }
}

/// One logged request (or its shadow answer).
pub(crate) struct LogRecord {
    model: Arc<LoadedModel>,
    request_id: Box<str>,
    timestamp_us: i64,
    latency_us: i64,
    batch: Batch,
    predictions: Predictions,
}

impl LogRecord {
    pub(crate) fn new(
        model: Arc<LoadedModel>,
        request_id: &HeaderValue,
        latency: Duration,
        batch: Batch,
        predictions: Predictions,
    ) -> Self {
        let timestamp_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Self {
            model,
            request_id: request_id.to_str().unwrap_or_default().into(),
            timestamp_us,
            latency_us: i64::try_from(latency.as_micros()).unwrap_or(i64::MAX),
            batch,
            predictions,
        }
    }
}

impl LogRecord {
    /// Roughly the memory the record holds while queued.
    fn cost(&self) -> usize {
        let texts: usize = self.batch.texts.iter().map(|t| t.len() + 16).sum();
        let predictions = match &self.predictions {
            Predictions::Proba(rows) => rows.iter().map(|r| r.len() * 8 + 24).sum(),
            Predictions::Values(v) => v.len() * 8,
        };
        self.batch.values.len() * 8 + texts + predictions + 256
    }
}

/// Bytes of queued records, at most (besides one record of any size when none is queued): the
/// queue's record count alone would let 4,096 large requests hold gigabytes.
pub(crate) const QUEUE_BYTES: usize = 64 << 20;

/// A byte budget shared by a queue's producers and its consumer.
#[derive(Default)]
pub(crate) struct ByteBudget {
    used: AtomicUsize,
}

impl ByteBudget {
    /// Take `n` bytes if they fit under `limit` (or nothing is taken): `false` means drop.
    pub(crate) fn try_take(&self, n: usize, limit: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used.saturating_add(n) <= limit).then(|| used.saturating_add(n))
            })
            .is_ok()
    }

    pub(crate) fn give(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }
}

enum Msg {
    Record(LogRecord, usize),
    Stop,
}

/// The prediction log: a bounded queue in front of a Parquet writer thread.
pub struct PredictionLog {
    tx: SyncSender<Msg>,
    /// `random_u64() < threshold` samples a request; `None`: every request.
    threshold: Option<u64>,
    metrics: Arc<Metrics>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    budget: Arc<ByteBudget>,
}

/// Where finished files go.
enum Sink {
    /// Files are written as `.<name>.tmp` in the directory, then renamed.
    Local(PathBuf),
    /// Files are written to a local temporary file, then uploaded.
    Store(Arc<dyn kiln_blob::BlobStore>),
}

impl PredictionLog {
    /// Check the destination and start the writer thread.
    pub fn start(config: LogConfig, metrics: Arc<Metrics>) -> Result<Self, ServeError> {
        if !(0.0..=1.0).contains(&config.sample) || config.sample.is_nan() {
            return Err(ServeError::Config(format!(
                "--log-sample must be between 0 and 1, got {}",
                config.sample
            )));
        }
        if config.rotate_rows == 0 {
            return Err(ServeError::Config(
                "--log-rotate-rows must be at least 1".into(),
            ));
        }
        let sink = open_sink(&config.destination)?;
        let tag = format!("{:08x}", crate::release::random_u64() >> 32);
        sweep_abandoned(
            &sink,
            ABANDONED_AFTER.max(config.rotate_interval.saturating_mul(2)),
            &tag,
        );
        let threshold = if config.sample >= 1.0 {
            None
        } else {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            Some((config.sample * u64::MAX as f64) as u64)
        };
        let (tx, rx) = mpsc::sync_channel::<Msg>(config.queue.max(1));
        let writer_metrics = Arc::clone(&metrics);
        let budget = Arc::new(ByteBudget::default());
        let writer_budget = Arc::clone(&budget);
        let thread = std::thread::Builder::new()
            .name("kiln-prediction-log".into())
            .spawn(move || Writer::new(config, sink, writer_metrics, tag).run(&rx, &writer_budget))
            .map_err(|e| {
                ServeError::Internal(format!("Failed to start the prediction-log thread: {e}"))
            })?;
        Ok(Self {
            tx,
            threshold,
            metrics,
            thread: Mutex::new(Some(thread)),
            budget,
        })
    }

    /// Whether to log the next request.
    pub(crate) fn sampled(&self) -> bool {
        self.threshold
            .is_none_or(|t| crate::release::random_u64() < t)
    }

    /// Queue a record without waiting; a full queue drops it (counted).
    pub(crate) fn submit(&self, record: LogRecord) {
        let rows = record.batch.n_rows as u64;
        let cost = record.cost();
        if !self.budget.try_take(cost, QUEUE_BYTES) {
            self.metrics.log_dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .log_dropped_rows
                .fetch_add(rows, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(Msg::Record(record, cost)) {
            Ok(()) => {
                self.metrics.log_records.fetch_add(rows, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.budget.give(cost);
                self.metrics.log_dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .log_dropped_rows
                    .fetch_add(rows, Ordering::Relaxed);
            }
        }
    }

    /// Write what is queued, close the current file and stop the writer, waiting at most
    /// `within` (a stalled artifact store must not hold the exit past the pod's grace period):
    /// `false` when the writer was still busy then, and its last rows are lost.
    pub fn finish(&self, within: Duration) -> bool {
        let handle = match self.thread.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(handle) = handle else {
            return true;
        };
        let tx = self.tx.clone();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        // The send itself may wait for room in a full queue: all of it off this thread.
        let spawned = std::thread::Builder::new()
            .name("kiln-prediction-log-stop".into())
            .spawn(move || {
                let _ = tx.send(Msg::Stop);
                let _ = handle.join();
                let _ = done_tx.send(());
            });
        if spawned.is_err() {
            let _ = self.tx.try_send(Msg::Stop);
            return false;
        }
        if done_rx.recv_timeout(within).is_ok() {
            return true;
        }
        tracing::warn!(
            ?within,
            "The prediction log did not finish writing in time; its last rows are lost."
        );
        false
    }
}

/// How old a temporary log file in the log directory must be to count as abandoned (or twice
/// the rotation interval, if longer): a live writer (another replica sharing the directory
/// included) closes its file within one rotation interval.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Remove the temporary files a killed server left: `.predictions-….parquet.tmp` in a log
/// directory untouched for `abandoned_after`, and this machine's `kiln-predictions-<pid>-….tmp`
/// upload staging files of processes that are gone, or of an earlier process with this one's
/// pid (a restarted container's kiln is pid 1 again) untouched for `abandoned_after`. They lack
/// Parquet's footer: nothing can read them. `tag` is this writer's, in its file names.
fn sweep_abandoned(sink: &Sink, abandoned_after: Duration, tag: &str) {
    let is_old = |entry: &std::fs::DirEntry| {
        entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= abandoned_after)
    };
    let remove = |path: &Path| {
        if let Err(e) = fs_err::remove_file(path) {
            tracing::debug!(error = %e, "could not remove an abandoned prediction-log file");
        } else {
            tracing::info!(file = %path.display(), "Removed a prediction-log file a stopped server left unfinished.");
        }
    };
    match sink {
        Sink::Local(dir) => {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !(name.starts_with(".predictions-") && name.ends_with(".parquet.tmp")) {
                    continue;
                }
                if is_old(&entry) {
                    remove(&entry.path());
                }
            }
        }
        Sink::Store(_) => {
            let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Some(rest) = name.strip_prefix("kiln-predictions-") else {
                    continue;
                };
                let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                    continue;
                };
                if !name.ends_with(".tmp") {
                    continue;
                }
                let abandoned = if pid == std::process::id() {
                    !name.contains(&format!("-{tag}-")) && is_old(&entry)
                } else {
                    cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists()
                };
                if abandoned {
                    remove(&entry.path());
                }
            }
        }
    }
}

fn open_sink(destination: &str) -> Result<Sink, ServeError> {
    let local = if let Some(rest) = destination.strip_prefix("file://") {
        Some(rest.strip_prefix("localhost").unwrap_or(rest))
    } else if destination.contains("://") {
        None
    } else {
        Some(destination.strip_prefix("file:").unwrap_or(destination))
    };
    match local {
        Some(dir) => {
            if dir.is_empty() {
                return Err(ServeError::Config(
                    "--log-predictions needs a directory".into(),
                ));
            }
            fs_err::create_dir_all(dir).map_err(|e| {
                ServeError::Config(format!(
                    "Failed to create the prediction-log directory: {e}"
                ))
            })?;
            Ok(Sink::Local(PathBuf::from(dir)))
        }
        None => {
            let store = kiln_blob::open(destination).map_err(|e| {
                ServeError::Config(format!(
                    "Failed to open the prediction-log destination: {}",
                    crate::state::error_chain(&e)
                ))
            })?;
            probe_store(&store).map_err(|e| {
                ServeError::Config(format!(
                    "Cannot write the prediction log to `{destination}` (does the bucket exist, and may these credentials write to it?): {e}"
                ))
            })?;
            Ok(Sink::Store(store))
        }
    }
}

/// The marker object written at start to a prediction-log store: a missing bucket or missing
/// write permission fails the start instead of losing every log file later.
const PROBE_OBJECT: &str = ".kiln-prediction-log";

fn probe_store(store: &Arc<dyn kiln_blob::BlobStore>) -> Result<(), String> {
    let store = Arc::clone(store);
    // On a thread of its own: the caller may be inside the server's runtime.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let path = kiln_blob::BlobPath::parse(PROBE_OBJECT).map_err(|e| e.to_string())?;
        let text = bytes::Bytes::from_static(b"kiln serve writes prediction logs here\n");
        let body: kiln_blob::ByteStream = Box::pin(futures::stream::once(async move { Ok(text) }));
        rt.block_on(store.put(&path, body))
            .map(|_| ())
            .map_err(|e| crate::state::error_chain(&e))
    })
    .join()
    .map_err(|_| "the probe thread panicked".to_string())?
}

/// Finished files whose upload failed, kept on local disk and retried (oldest first) after
/// each later file; beyond this many, the oldest is given up.
const MAX_PENDING_UPLOADS: usize = 32;

/// Where finished prediction-log files wait for an artifact store that failed: one directory
/// per destination under the system temp dir, e.g. `kiln-predictions-unsent/s3_logs_serve`.
fn unsent_dir(destination: &str) -> PathBuf {
    let safe: String = destination
        .trim_end_matches('/')
        .split("://")
        .flat_map(|part| part.split('/'))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::env::temp_dir()
        .join("kiln-predictions-unsent")
        .join(safe)
}

/// Files an earlier server left in [`unsent_dir`] for this destination, oldest first.
fn left_unsent(destination: &str) -> std::collections::VecDeque<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(unsent_dir(destination)) else {
        return std::collections::VecDeque::new();
    };
    let mut files: Vec<(PathBuf, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("predictions-") && name.ends_with(".parquet"))
                .then(|| (e.path(), name))
        })
        .collect();
    files.sort_by(|a, b| a.1.cmp(&b.1));
    files.into_iter().collect()
}

/// Rows per Parquet row group (and the most rows buffered before a write).
const ROW_GROUP: usize = 8192;
/// Text bytes in one column of a row group, at most (well under Arrow's 2 GiB offsets).
const GROUP_BYTES: usize = 256 << 20;

/// Columns being filled.
struct Columns {
    timestamp: Vec<i64>,
    request_id: StringBuilder,
    row: Vec<u32>,
    model: StringBuilder,
    version: StringBuilder,
    arm: StringBuilder,
    latency_us: Vec<i64>,
    inputs: StringBuilder,
    prediction: StringBuilder,
    probabilities: StringBuilder,
}

impl Columns {
    fn new() -> Self {
        Self {
            timestamp: Vec::new(),
            request_id: StringBuilder::new(),
            row: Vec::new(),
            model: StringBuilder::new(),
            version: StringBuilder::new(),
            arm: StringBuilder::new(),
            latency_us: Vec::new(),
            inputs: StringBuilder::new(),
            prediction: StringBuilder::new(),
            probabilities: StringBuilder::new(),
        }
    }

    fn len(&self) -> usize {
        self.timestamp.len()
    }

    /// Whether the buffered rows make a row group: [`ROW_GROUP`] rows, or [`GROUP_BYTES`] of
    /// text in a column (Arrow's string offsets are 32-bit: one big request's inputs could
    /// overflow them).
    fn full(&self) -> bool {
        self.len() >= ROW_GROUP
            || self.inputs.values_slice().len() >= GROUP_BYTES
            || self.probabilities.values_slice().len() >= GROUP_BYTES
            || self.prediction.values_slice().len() >= GROUP_BYTES
    }

    /// Add the record's rows from `start` until the columns are [`full`](Self::full); the
    /// next row to add (`n_rows` when all are in).
    fn push(&mut self, record: &LogRecord, start: usize) -> usize {
        let m = &record.model;
        let signature = m.scorer.signature();
        let mut json = Vec::with_capacity(128);
        for r in start..record.batch.n_rows {
            if r > start && self.full() {
                return r;
            }
            self.timestamp.push(record.timestamp_us);
            self.request_id.append_value(&*record.request_id);
            self.row.push(u32::try_from(r).unwrap_or(u32::MAX));
            self.model.append_value(&m.name);
            self.version.append_value(&m.version);
            self.arm.append_value(m.arm.as_str());
            self.latency_us.push(record.latency_us);
            json.clear();
            json.push(b'{');
            for (j, (field, v)) in signature.inputs.iter().zip(record.batch.row(r)).enumerate() {
                if j > 0 {
                    json.push(b',');
                }
                push_str(&mut json, &field.name);
                json.push(b':');
                if v.is_nan() {
                    json.extend_from_slice(b"null");
                    continue;
                }
                match field.kind {
                    FieldKind::Numeric | FieldKind::Datetime => push_f64(&mut json, *v),
                    FieldKind::Boolean => {
                        json.extend_from_slice(if *v == 0.0 { b"false" } else { b"true" });
                    }
                    FieldKind::Categorical => {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let i = *v as usize;
                        let text = if field.categories.is_empty() {
                            record.batch.texts.get(i).map(|t| &**t)
                        } else {
                            field.categories.get(i).map(String::as_str)
                        };
                        match text {
                            Some(t) => push_str(&mut json, t),
                            None => json.extend_from_slice(b"null"),
                        }
                    }
                }
            }
            json.push(b'}');
            self.inputs
                .append_value(std::str::from_utf8(&json).unwrap_or_default());
            match &record.predictions {
                Predictions::Proba(rows) => {
                    let p = rows.get(r).map_or(&[][..], Vec::as_slice);
                    let k = crate::routes::argmax(p);
                    self.prediction
                        .append_value(m.label_text.get(k).map_or("", String::as_str));
                    json.clear();
                    json.push(b'[');
                    for (i, v) in p.iter().enumerate() {
                        if i > 0 {
                            json.push(b',');
                        }
                        push_f64(&mut json, *v);
                    }
                    json.push(b']');
                    self.probabilities
                        .append_value(std::str::from_utf8(&json).unwrap_or_default());
                }
                Predictions::Values(values) => {
                    match values.get(r) {
                        Some(v) => self.prediction.append_value(v.to_string()),
                        None => self.prediction.append_null(),
                    }
                    self.probabilities.append_null();
                }
            }
        }
        record.batch.n_rows
    }

    /// The buffered rows as a batch; the columns start over.
    fn take(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMicrosecondArray::from(std::mem::take(&mut self.timestamp))
                    .with_timezone("UTC"),
            ),
            Arc::new(self.request_id.finish()),
            Arc::new(UInt32Array::from(std::mem::take(&mut self.row))),
            Arc::new(self.model.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.arm.finish()),
            Arc::new(Int64Array::from(std::mem::take(&mut self.latency_us))),
            Arc::new(self.inputs.finish()),
            Arc::new(self.prediction.finish()),
            Arc::new(self.probabilities.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

fn push_f64(out: &mut Vec<u8>, v: f64) {
    if serde_json::to_writer(&mut *out, &v).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The prediction log's Arrow schema.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("request_id", DataType::Utf8, false),
        Field::new("row", DataType::UInt32, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("latency_us", DataType::Int64, false),
        Field::new("inputs", DataType::Utf8, false),
        Field::new("prediction", DataType::Utf8, true),
        Field::new("probabilities", DataType::Utf8, true),
    ]))
}

/// The file being written.
struct OpenFile {
    writer: ArrowWriter<fs_err::File>,
    tmp: PathBuf,
    name: String,
    rows: usize,
    opened: Instant,
}

struct Writer {
    config: LogConfig,
    sink: Sink,
    metrics: Arc<Metrics>,
    schema: SchemaRef,
    columns: Columns,
    file: Option<OpenFile>,
    seq: u64,
    /// This writer's random tag in file names: replicas logging to one bucket prefix never
    /// pick the same name.
    tag: String,
    /// For uploads to an artifact store.
    runtime: Option<tokio::runtime::Runtime>,
    /// Finished files not uploaded yet (`(local file, name)`), oldest first.
    pending: std::collections::VecDeque<(PathBuf, String)>,
}

impl Writer {
    fn new(config: LogConfig, sink: Sink, metrics: Arc<Metrics>, tag: String) -> Self {
        // Files an earlier server could not upload to this destination go first.
        let pending = match &sink {
            Sink::Store(_) => left_unsent(&config.destination),
            Sink::Local(_) => std::collections::VecDeque::new(),
        };
        Self {
            config,
            sink,
            metrics,
            schema: schema(),
            columns: Columns::new(),
            file: None,
            seq: 0,
            tag,
            runtime: None,
            pending,
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>, budget: &ByteBudget) {
        if let (Sink::Store(store), false) = (&self.sink, self.pending.is_empty()) {
            let store = Arc::clone(store);
            self.retry_pending(&store);
        }
        loop {
            let wait = self.file.as_ref().map_or(self.config.rotate_interval, |f| {
                self.config
                    .rotate_interval
                    .saturating_sub(f.opened.elapsed())
            });
            match rx.recv_timeout(wait.max(Duration::from_millis(10))) {
                Ok(Msg::Record(record, cost)) => {
                    let mut next = 0;
                    loop {
                        next = self.columns.push(&record, next);
                        let in_file = self.file.as_ref().map_or(0, |f| f.rows);
                        if self.columns.full()
                            || in_file + self.columns.len() >= self.config.rotate_rows
                        {
                            self.write_group();
                        }
                        if next >= record.batch.n_rows {
                            break;
                        }
                    }
                    drop(record);
                    budget.give(cost);
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.write_group();
                    self.close_file();
                    self.keep_unsent();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let due = self.file.as_ref().is_some_and(|f| {
                f.rows >= self.config.rotate_rows
                    || f.opened.elapsed() >= self.config.rotate_interval
            });
            let stale = self.file.is_none() && self.columns.len() > 0;
            if due {
                self.write_group();
                self.close_file();
            } else if stale {
                // Rows arrived with no file open: open one now so that its age counts.
                self.write_group();
            }
        }
    }

    fn fail(&self, what: &str, err: &dyn std::fmt::Display) {
        self.metrics.log_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%err, "Failed to {what}; prediction-log rows were lost.");
    }

    /// Write the buffered rows as one row group, opening a file when none is open.
    fn write_group(&mut self) {
        if self.columns.len() == 0 {
            return;
        }
        let batch = match self.columns.take(&self.schema) {
            Ok(b) => b,
            Err(e) => return self.fail("build a prediction-log batch", &e),
        };
        if self.file.is_none() {
            match self.open_file() {
                Ok(f) => self.file = Some(f),
                Err(e) => return self.fail("create a prediction-log file", &e),
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let written = file.writer.write(&batch).and_then(|()| file.writer.flush());
        match written {
            Ok(()) => file.rows += batch.num_rows(),
            Err(e) => {
                if let Some(f) = self.file.take() {
                    let _ = fs_err::remove_file(&f.tmp);
                }
                self.fail("write the prediction log", &e);
            }
        }
    }

    fn open_file(&mut self) -> Result<OpenFile, String> {
        let now = chrono::Utc::now();
        self.seq += 1;
        let name = format!(
            "predictions-{}-{}-{:05}.parquet",
            now.format("%Y%m%dT%H%M%S%.3fZ"),
            self.tag,
            self.seq
        );
        let tmp = match &self.sink {
            Sink::Local(dir) => dir.join(format!(".{name}.tmp")),
            Sink::Store(_) => std::env::temp_dir().join(format!(
                "kiln-predictions-{}-{name}.tmp",
                std::process::id()
            )),
        };
        let file = match fs_err::File::create(&tmp) {
            // The log directory was removed (a cleanup job, an operator): make it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Sink::Local(dir) = &self.sink {
                    fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                fs_err::File::create(&tmp)
            }
            other => other,
        }
        .map_err(|e| e.to_string())?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .build();
        let writer = ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(props))
            .map_err(|e| e.to_string())?;
        Ok(OpenFile {
            writer,
            tmp,
            name,
            rows: 0,
            opened: Instant::now(),
        })
    }

    /// Close the current file and move it into place.
    fn close_file(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        let OpenFile {
            writer, tmp, name, ..
        } = file;
        if let Err(e) = writer.close() {
            let _ = fs_err::remove_file(&tmp);
            return self.fail("finish a prediction-log file", &e);
        }
        let moved = match &self.sink {
            Sink::Local(dir) => fs_err::rename(&tmp, dir.join(&name)).map_err(|e| e.to_string()),
            Sink::Store(store) => {
                let store = Arc::clone(store);
                // Earlier files that failed go first, in order; a store still failing keeps
                // this one too, for the next attempt.
                self.retry_pending(&store);
                if self.pending.is_empty() {
                    let uploaded = self.upload(&store, &tmp, &name);
                    match &uploaded {
                        Ok(()) => {
                            let _ = fs_err::remove_file(&tmp);
                        }
                        Err(e) => {
                            self.metrics.log_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(err = %e, file = %name, "Failed to upload a prediction-log file; kept on local disk and retried before the next file.");
                            self.hold(&tmp, name.clone());
                            return;
                        }
                    }
                    uploaded
                } else {
                    self.hold(&tmp, name.clone());
                    return;
                }
            }
        };
        match moved {
            Ok(()) => {
                self.metrics.log_files.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(file = %name, "Wrote a prediction-log file.");
            }
            Err(e) => {
                let _ = fs_err::remove_file(&tmp);
                self.fail("store a prediction-log file", &e);
            }
        }
    }

    /// Keep a finished file for a later upload, giving up the oldest beyond
    /// [`MAX_PENDING_UPLOADS`]. It moves at once to [`unsent_dir`], out of reach of the start-up
    /// sweep of abandoned staging files: if this process dies before it is uploaded, the next
    /// server logging to the same destination uploads it.
    fn hold(&mut self, tmp: &Path, name: String) {
        let dir = unsent_dir(&self.config.destination);
        let kept = dir.join(&name);
        let path = match fs_err::create_dir_all(&dir).and_then(|()| fs_err::rename(tmp, &kept)) {
            Ok(()) => kept,
            Err(e) => {
                tracing::debug!(error = %e, "could not move a prediction-log file to the unsent directory");
                tmp.to_path_buf()
            }
        };
        self.pending.push_back((path, name));
        while self.pending.len() > MAX_PENDING_UPLOADS {
            if let Some((old, old_name)) = self.pending.pop_front() {
                let _ = fs_err::remove_file(&old);
                self.fail(
                    &format!("upload {old_name} (more than {MAX_PENDING_UPLOADS} files waiting)"),
                    &"the artifact store kept failing",
                );
            }
        }
    }

    /// Upload held files, oldest first, until one fails (each failure counted). A held file
    /// gone from the local disk (a temp cleaner) is given up, not retried for ever.
    fn retry_pending(&mut self, store: &Arc<dyn kiln_blob::BlobStore>) {
        while let Some((path, name)) = self.pending.front().cloned() {
            if !path.exists() {
                self.pending.pop_front();
                self.fail(&format!("upload {name}"), &"its local copy is gone");
                continue;
            }
            if let Err(e) = self.upload(store, &path, &name) {
                self.metrics.log_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(err = %e, file = %name, waiting = self.pending.len(), "Failed to upload a held prediction-log file; retrying before the next file.");
                return;
            }
            let _ = fs_err::remove_file(&path);
            self.pending.pop_front();
            self.metrics.log_files.fetch_add(1, Ordering::Relaxed);
            tracing::info!(file = %name, "Uploaded a prediction-log file that had failed before.");
        }
    }

    /// At shutdown, after the last file's attempt: say where the files still unsent are (the
    /// next server logging to this destination uploads them).
    fn keep_unsent(&mut self) {
        for (path, name) in std::mem::take(&mut self.pending) {
            tracing::error!(
                file = %path.display(),
                destination = %self.config.destination,
                "Prediction-log file {name} could not be uploaded before exit; it is kept on local disk, and the next kiln serve logging to this destination uploads it."
            );
        }
    }

    fn upload(
        &mut self,
        store: &Arc<dyn kiln_blob::BlobStore>,
        tmp: &Path,
        name: &str,
    ) -> Result<(), String> {
        if self.runtime.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            self.runtime = Some(rt);
        }
        let Some(rt) = &self.runtime else {
            return Err("no runtime".into());
        };
        let path = kiln_blob::BlobPath::parse(name).map_err(|e| e.to_string())?;
        let bytes = bytes::Bytes::from(fs_err::read(tmp).map_err(|e| e.to_string())?);
        let body: kiln_blob::ByteStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
        rt.block_on(store.put(&path, body))
            .map(|_| ())
            .map_err(|e| crate::state::error_chain(&e))
    }
}
