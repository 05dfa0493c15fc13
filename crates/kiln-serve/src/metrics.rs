//! Prometheus metrics, hand-rolled: per model version, lock-free counters and histograms
//! ([`VersionMetrics`]) updated with relaxed atomics on the request path; [`Metrics::render`]
//! writes the text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The prediction endpoints that are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Invocations = 0,
    V2Infer = 1,
}

impl Endpoint {
    const ALL: [Self; 2] = [Self::Invocations, Self::V2Infer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invocations => "/invocations",
            Self::V2Infer => "/v2/models/{name}/infer",
        }
    }
}

/// Status codes with their own counter; anything else counts as `other`.
const CODES: [u16; 9] = [200, 400, 404, 405, 413, 415, 422, 500, 503];
const N_CODES: usize = CODES.len() + 1;

fn code_index(code: u16) -> usize {
    CODES.iter().position(|&c| c == code).unwrap_or(CODES.len())
}

/// Request latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Probability buckets.
const PROBABILITY_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// Regression value buckets (symmetric decades).
const VALUE_BUCKETS: [f64; 15] = [
    -1e4, -1e3, -100.0, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6,
];

/// A fixed-bucket histogram of `f64` observations.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Count `v`; a NaN or an infinity is skipped (it would turn `_sum` into NaN or ±Inf for
    /// the rest of the process).
    pub(crate) fn observe(&self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let mut cur = self.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self.sum_bits.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format!("{b}"));
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = f64::from_bits(self.sum_bits.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", prom_f64(sum));
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// A sample value in the text exposition format's spelling (`+Inf`, `-Inf`, `NaN`).
fn prom_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// Counters of one loaded model version on one arm (`main`, `canary`, `shadow`).
#[derive(Debug)]
pub struct VersionMetrics {
    model: String,
    version: String,
    arm: &'static str,
    requests: [[AtomicU64; N_CODES]; 2],
    latency: [Histogram; 2],
    rows: AtomicU64,
    predictions: Histogram,
    /// Predicted class counts, in class order (classification).
    classes: Vec<(String, AtomicU64)>,
}

impl VersionMetrics {
    pub fn new(model: &str, version: &str, arm: &'static str, classes: &[String]) -> Self {
        Self {
            model: escape(model),
            version: escape(version),
            arm,
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram::new(&LATENCY_BUCKETS)),
            rows: AtomicU64::new(0),
            predictions: Histogram::new(if classes.is_empty() {
                &VALUE_BUCKETS
            } else {
                &PROBABILITY_BUCKETS
            }),
            classes: classes
                .iter()
                .map(|c| (escape(c), AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Count a finished request.
    pub fn request(&self, endpoint: Endpoint, status: u16, elapsed: Duration) {
        let e = endpoint as usize;
        if let Some(c) = self.requests.get(e).and_then(|r| r.get(code_index(status))) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = self.latency.get(e) {
            h.observe(elapsed.as_secs_f64());
        }
    }

    /// Record a predicted row: the positive-class probability (binary), the top probability
    /// (multiclass) or the value (regression), and the predicted class.
    pub fn prediction(&self, value: f64, class: Option<usize>) {
        self.predictions.observe(value);
        if let Some((_, c)) = class.and_then(|k| self.classes.get(k)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rows(&self, n: usize) {
        self.rows.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Requests answered with `status` on `endpoint` so far.
    pub fn requests(&self, endpoint: Endpoint, status: u16) -> u64 {
        self.requests
            .get(endpoint as usize)
            .and_then(|r| r.get(code_index(status)))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn labels(&self) -> String {
        format!(
            "model=\"{}\",version=\"{}\",arm=\"{}\"",
            self.model, self.version, self.arm
        )
    }
}

/// Label value escaping (backslash, quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every version's metrics plus server-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    versions: Mutex<Vec<Arc<VersionMetrics>>>,
    swaps: AtomicU64,
    load_failures: AtomicU64,
    /// Prediction-log rows queued for the writer.
    pub(crate) log_records: AtomicU64,
    /// Prediction-log requests dropped because the queue was full.
    pub(crate) log_dropped: AtomicU64,
    /// Their predicted rows (comparable with `log_records`).
    pub(crate) log_dropped_rows: AtomicU64,
    /// Prediction-log files written (renamed into place or uploaded).
    pub(crate) log_files: AtomicU64,
    /// Prediction-log write failures (a file or a group of rows lost).
    pub(crate) log_errors: AtomicU64,
    /// Shadow predictions dropped because the shadow queue was full.
    pub(crate) shadow_dropped: AtomicU64,
    /// Micro-batches predicted, and the requests they held.
    pub(crate) batches: AtomicU64,
    pub(crate) batched_requests: AtomicU64,
}

/// What `kiln_model_info` reports as answering: `(arm, model, version, flavor)`.
pub type Serving<'a> = (&'a str, &'a str, &'a str, &'a str);

impl Metrics {
    /// The metrics of `model`/`version`, created on first use (a version served again after a
    /// rollback keeps its counters).
    pub fn version(
        &self,
        model: &str,
        version: &str,
        arm: &'static str,
        classes: &[String],
    ) -> Arc<VersionMetrics> {
        let mut versions = match self.versions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (m, v) = (escape(model), escape(version));
        if let Some(found) = versions
            .iter()
            .find(|x| x.model == m && x.version == v && x.arm == arm)
        {
            return Arc::clone(found);
        }
        let created = Arc::new(VersionMetrics::new(model, version, arm, classes));
        versions.push(Arc::clone(&created));
        created
    }

    pub fn swapped(&self) {
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    pub fn load_failed(&self) {
        self.load_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Prediction-log and shadow counters so far: `(records, dropped, files, errors,
    /// shadow_dropped)`.
    pub fn log_counts(&self) -> (u64, u64, u64, u64, u64) {
        (
            self.log_records.load(Ordering::Relaxed),
            self.log_dropped.load(Ordering::Relaxed),
            self.log_files.load(Ordering::Relaxed),
            self.log_errors.load(Ordering::Relaxed),
            self.shadow_dropped.load(Ordering::Relaxed),
        )
    }

    /// The text exposition; `current` lists the model answering on each arm.
    pub fn render(&self, current: &[Serving<'_>], uptime: Duration) -> String {
        let versions: Vec<Arc<VersionMetrics>> = match self.versions.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP kiln_requests_total Prediction requests by model version, endpoint and status code.\n# TYPE kiln_requests_total counter\n",
        );
        for v in &versions {
            for e in Endpoint::ALL {
                for (i, c) in v.requests[e as usize].iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let code = CODES.get(i).map_or_else(|| "other".into(), u16::to_string);
                    let _ = writeln!(
                        out,
                        "kiln_requests_total{{{},endpoint=\"{}\",code=\"{code}\"}} {n}",
                        v.labels(),
                        e.as_str()
                    );
                }
            }
        }
        out.push_str(
            "# HELP kiln_request_errors_total Prediction requests answered with a non-2xx status.\n# TYPE kiln_request_errors_total counter\n",
        );
        for v in &versions {
            for e in Endpoint::ALL {
                let errors: u64 = v.requests[e as usize]
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| CODES.get(*i).is_none_or(|c| !(200..300).contains(c)))
                    .map(|(_, c)| c.load(Ordering::Relaxed))
                    .sum();
                let _ = writeln!(
                    out,
                    "kiln_request_errors_total{{{},endpoint=\"{}\"}} {errors}",
                    v.labels(),
                    e.as_str()
                );
            }
        }
        out.push_str(
            "# HELP kiln_request_duration_seconds Prediction request latency, from the request head to the response.\n# TYPE kiln_request_duration_seconds histogram\n",
        );
        for v in &versions {
            for e in Endpoint::ALL {
                let labels = format!("{},endpoint=\"{}\"", v.labels(), e.as_str());
                v.latency[e as usize].write(&mut out, "kiln_request_duration_seconds", &labels);
            }
        }
        out.push_str(
            "# HELP kiln_prediction_rows_total Rows predicted.\n# TYPE kiln_prediction_rows_total counter\n",
        );
        for v in &versions {
            let _ = writeln!(
                out,
                "kiln_prediction_rows_total{{{}}} {}",
                v.labels(),
                v.rows.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP kiln_predictions Predicted values: probability of the positive class (binary), of the predicted class (multiclass), or the value (regression).\n# TYPE kiln_predictions histogram\n",
        );
        for v in &versions {
            v.predictions
                .write(&mut out, "kiln_predictions", &v.labels());
        }
        out.push_str(
            "# HELP kiln_predicted_class_total Rows predicted as each class.\n# TYPE kiln_predicted_class_total counter\n",
        );
        for v in &versions {
            for (class, c) in &v.classes {
                let _ = writeln!(
                    out,
                    "kiln_predicted_class_total{{{},class=\"{class}\"}} {}",
                    v.labels(),
                    c.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str(
            "# HELP kiln_model_info The model version being served on each arm (1) and earlier ones (0).\n# TYPE kiln_model_info gauge\n",
        );
        for v in &versions {
            let flavor = current.iter().find_map(|(arm, model, version, flavor)| {
                (*arm == v.arm && escape(model) == v.model && escape(version) == v.version)
                    .then(|| escape(flavor))
            });
            let _ = writeln!(
                out,
                "kiln_model_info{{{},flavor=\"{}\"}} {}",
                v.labels(),
                flavor.as_deref().unwrap_or_default(),
                u8::from(flavor.is_some())
            );
        }
        let counters: [(&str, &str, &AtomicU64); 8] = [
            (
                "kiln_prediction_log_records_total",
                "Predicted rows queued for the prediction log.",
                &self.log_records,
            ),
            (
                "kiln_prediction_log_dropped_total",
                "Sampled requests not logged because the prediction-log queue was full.",
                &self.log_dropped,
            ),
            (
                "kiln_prediction_log_dropped_rows_total",
                "Predicted rows of those requests (the drop rate is this over this plus records).",
                &self.log_dropped_rows,
            ),
            (
                "kiln_prediction_log_files_total",
                "Prediction-log Parquet files written.",
                &self.log_files,
            ),
            (
                "kiln_prediction_log_write_errors_total",
                "Prediction-log write failures: a file or a group of rows that could not be written or stored.",
                &self.log_errors,
            ),
            (
                "kiln_shadow_dropped_total",
                "Requests not scored by the shadow model: its queue was full, or they were still queued at shutdown.",
                &self.shadow_dropped,
            ),
            (
                "kiln_batches_total",
                "Micro-batches predicted (requests coalesced into one model call).",
                &self.batches,
            ),
            (
                "kiln_batched_requests_total",
                "Requests answered through a micro-batch.",
                &self.batched_requests,
            ),
        ];
        for (name, help, value) in counters {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP kiln_model_swaps_total Model versions swapped in after an alias moved.\n# TYPE kiln_model_swaps_total counter\nkiln_model_swaps_total {}\n\
             # HELP kiln_model_load_failures_total Failed attempts to load a new model version.\n# TYPE kiln_model_load_failures_total counter\nkiln_model_load_failures_total {}\n\
             # HELP kiln_uptime_seconds Seconds since the server started.\n# TYPE kiln_uptime_seconds gauge\nkiln_uptime_seconds {}\n",
            self.swaps.load(Ordering::Relaxed),
            self.load_failures.load(Ordering::Relaxed),
            uptime.as_secs_f64()
        );
        let spins = kiln_http::busy_poll::stats();
        let _ = write!(
            out,
            "# HELP kiln_busy_poll_spins_total How the spins before a worker slept ended (--busy-poll): a request arrived (ready), other work did (work), or the budget ran out (expired).\n# TYPE kiln_busy_poll_spins_total counter\n\
             kiln_busy_poll_spins_total{{outcome=\"ready\"}} {}\nkiln_busy_poll_spins_total{{outcome=\"work\"}} {}\nkiln_busy_poll_spins_total{{outcome=\"expired\"}} {}\n",
            spins.ready, spins.work, spins.expired
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_leave_the_sum_alone() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [2.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_sum{a=\"b\"} 5\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 2\n"), "{out}");
        assert_eq!(prom_f64(f64::INFINITY), "+Inf");
        assert_eq!(prom_f64(f64::NEG_INFINITY), "-Inf");
        assert_eq!(prom_f64(f64::NAN), "NaN");
    }
}
