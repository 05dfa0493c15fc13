//! Metric gates: [`Gate`] (`"roc_auc>=0.85"`), [`check_gates`] and [`GateResult`].

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::render::{fmt_precise, fmt_value};
use super::EvalError;

/// Every metric name the reports can produce (classification, then regression). A report
/// leaves out the ones that are undefined for its task or data.
pub const METRIC_NAMES: &[&str] = &[
    "accuracy",
    "precision",
    "recall",
    "f1",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "rmse",
    "mse",
    "mae",
    "r2",
    "explained_variance",
    "mape",
    "max_error",
];

const EXAMPLE: &str = "e.g. `roc_auc>=0.85`";

/// A gate's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum GateOp {
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `==`, true when `|actual − threshold| <= 1e-9 · max(1, |threshold|)`.
    #[serde(rename = "==")]
    Eq,
}

impl GateOp {
    /// The operator as written in a gate (`">="`, ...).
    pub fn symbol(self) -> &'static str {
        match self {
            GateOp::Ge => ">=",
            GateOp::Gt => ">",
            GateOp::Le => "<=",
            GateOp::Lt => "<",
            GateOp::Eq => "==",
        }
    }

    /// Whether `actual <op> threshold` holds; never for a NaN `actual`.
    pub fn holds(self, actual: f64, threshold: f64) -> bool {
        match self {
            GateOp::Ge => actual >= threshold,
            GateOp::Gt => actual > threshold,
            GateOp::Le => actual <= threshold,
            GateOp::Lt => actual < threshold,
            GateOp::Eq => (actual - threshold).abs() <= 1e-9 * threshold.abs().max(1.0),
        }
    }
}

impl fmt::Display for GateOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A requirement on one metric, such as `roc_auc >= 0.85`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    /// Metric name (see [`METRIC_NAMES`]).
    pub metric: String,
    /// Comparison.
    pub op: GateOp,
    /// Finite threshold.
    pub threshold: f64,
}

impl Gate {
    /// Parses `<metric> <op> <threshold>` with `op` one of `>=`, `>`, `<=`, `<`, `==`;
    /// whitespace around the parts is optional (`"roc_auc>=0.85"`, `" r2 > -0.5 "`).
    /// The metric name is not checked here: [`check_gates`] reports unknown names.
    ///
    /// # Errors
    /// [`EvalError::InvalidGate`] saying what was expected, for an empty gate, a missing
    /// metric, operator or threshold, an unknown operator (`=`, `=>`, `!=`, ...), or a
    /// threshold that is not a finite number.
    pub fn parse(text: &str) -> Result<Gate, EvalError> {
        let invalid = |reason: String| EvalError::InvalidGate {
            gate: text.to_string(),
            reason,
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(invalid(format!(
                "the gate is empty: expected `<metric><op><threshold>`, {EXAMPLE}"
            )));
        }
        let is_op_char = |c: char| matches!(c, '<' | '>' | '=' | '!');
        let Some(op_start) = s.find(is_op_char) else {
            return Err(invalid(format!(
                "no comparison operator: expected one of >=, >, <=, <, == between the metric \
                 and the threshold, {EXAMPLE}"
            )));
        };
        let metric = s[..op_start].trim();
        if metric.is_empty() {
            return Err(invalid(format!(
                "no metric name before the operator: expected `<metric><op><threshold>`, \
                 {EXAMPLE}"
            )));
        }
        if !metric
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(invalid(format!(
                "metric name `{metric}` may only contain letters, digits, `_`, `.` and `-`, \
                 {EXAMPLE}"
            )));
        }
        let rest = &s[op_start..];
        let op_len = rest.find(|c: char| !is_op_char(c)).unwrap_or(rest.len());
        let op_text = &rest[..op_len];
        let op = match op_text {
            ">=" => GateOp::Ge,
            ">" => GateOp::Gt,
            "<=" => GateOp::Le,
            "<" => GateOp::Lt,
            "==" => GateOp::Eq,
            other => {
                let hint = match other {
                    "=" => " (did you mean `==`?)",
                    "=>" => " (did you mean `>=`?)",
                    "=<" => " (did you mean `<=`?)",
                    _ => "",
                };
                return Err(invalid(format!(
                    "unknown operator `{other}`{hint}: expected one of >=, >, <=, <, ==, \
                     {EXAMPLE}"
                )));
            }
        };
        let threshold_text = rest[op_len..].trim();
        if threshold_text.is_empty() {
            return Err(invalid(format!(
                "no threshold after `{op_text}`: expected a number, {EXAMPLE}"
            )));
        }
        let threshold: f64 = threshold_text.parse().map_err(|_| {
            invalid(format!(
                "threshold `{threshold_text}` is not a number: expected a decimal number such \
                 as 0.85 or 1e-3, {EXAMPLE}"
            ))
        })?;
        if !threshold.is_finite() {
            return Err(invalid(format!(
                "threshold `{threshold_text}` is not finite: expected a finite number, \
                 {EXAMPLE}"
            )));
        }
        Ok(Gate {
            metric: metric.to_string(),
            op,
            threshold,
        })
    }
}

impl FromStr for Gate {
    type Err = EvalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Gate::parse(s)
    }
}

/// `roc_auc >= 0.85`.
impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op, self.threshold)
    }
}

/// The outcome of one gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    /// The gate checked.
    pub gate: Gate,
    /// The metric's value; `None` when the metric is unknown or undefined.
    pub actual: Option<f64>,
    /// Whether the gate holds (never when `actual` is `None`).
    pub passed: bool,
    /// One line for people: the value and the requirement, or why there is no value.
    pub message: String,
}

/// Checks each gate against `metrics` (the first entry of a name counts). A gate whose
/// metric is missing fails, with a message naming the available metrics.
pub fn check_gates(metrics: &[(String, f64)], gates: &[Gate]) -> Vec<GateResult> {
    gates
        .iter()
        .map(|gate| {
            let actual = metrics
                .iter()
                .find(|(name, _)| *name == gate.metric)
                .map(|&(_, v)| v);
            let (passed, message) = match actual {
                Some(v) => (
                    gate.op.holds(v, gate.threshold),
                    format!(
                        "{} = {}, required {} {}",
                        gate.metric,
                        fmt_actual(gate.op, v, gate.threshold),
                        gate.op,
                        gate.threshold
                    ),
                ),
                None => (false, missing_message(&gate.metric, metrics)),
            };
            GateResult {
                gate: gate.clone(),
                actual,
                passed,
                message,
            }
        })
        .collect()
}

/// Whether every gate passed (true for no gates).
pub fn all_passed(results: &[GateResult]) -> bool {
    results.iter().all(|r| r.passed)
}

/// The actual value, short unless rounding would hide why the gate passed or failed
/// (0.84999 shown as "0.8500" against `>= 0.85`).
pub(super) fn fmt_actual(op: GateOp, actual: f64, threshold: f64) -> String {
    let short = fmt_value(actual);
    let shown: f64 = short.parse().unwrap_or(f64::NAN);
    if shown == actual
        || (op.holds(shown, threshold) == op.holds(actual, threshold) && shown != threshold)
    {
        short
    } else {
        fmt_precise(actual)
    }
}

/// When `metric` is not a name any evaluation report produces ([`METRIC_NAMES`]): the error
/// for a gate on it, with the closest name. For commands whose gates only read a report (`kiln
/// evaluate`), such a gate is a typo to refuse up front, not a failed gate.
pub fn unknown_metric(metric: &str) -> Option<String> {
    if METRIC_NAMES.contains(&metric) {
        return None;
    }
    let suggestion = METRIC_NAMES
        .iter()
        .map(|&name| (edit_distance(&metric.to_ascii_lowercase(), name), name))
        .filter(|&(d, name)| d <= 2.max(name.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default();
    Some(format!(
        "unknown metric `{metric}`{suggestion}; the metrics are {}",
        METRIC_NAMES.join(", ")
    ))
}

fn missing_message(metric: &str, metrics: &[(String, f64)]) -> String {
    let available: Vec<&str> = metrics.iter().map(|(n, _)| n.as_str()).collect();
    let listing = if available.is_empty() {
        "no metrics were computed".to_string()
    } else {
        format!("available metrics: {}", available.join(", "))
    };
    if METRIC_NAMES.contains(&metric) {
        return format!(
            "metric `{metric}` is not available for this evaluation (it is undefined for this \
             task or data, e.g. ROC-AUC when only one class is present); {listing}"
        );
    }
    let suggestion = available
        .iter()
        .chain(METRIC_NAMES)
        .map(|&name| (edit_distance(metric, name), name))
        .filter(|&(d, name)| d <= 2.max(name.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default();
    format!("unknown metric `{metric}`{suggestion}; {listing}")
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
