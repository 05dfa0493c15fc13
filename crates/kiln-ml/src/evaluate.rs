//! Model evaluation for `kiln evaluate`: metrics, CI gates and reports.
//!
//! - [`classification_metrics`] turns labels and class probabilities into a
//!   [`ClassificationReport`]: accuracy, per-class ([`ClassMetrics`]), macro and weighted
//!   precision / recall / F1, ROC-AUC, PR-AUC (average precision), log loss, the confusion
//!   matrix and, for binary tasks, a [`Calibration`] table ([`CalibrationBin`]) with the Brier
//!   score.
//! - [`regression_metrics`] gives a [`RegressionReport`]: RMSE, MSE, MAE, R², explained
//!   variance, MAPE and max error.
//! - Both reports flatten to stable `(name, value)` pairs with `metrics()` (names listed in
//!   [`METRIC_NAMES`]) and serialise with serde for `--json`.
//! - [`Gate`] (`"roc_auc>=0.85"`, parsed with [`Gate::parse`], comparison [`GateOp`]) and
//!   [`check_gates`] give one [`GateResult`] per gate; an unknown or undefined metric fails its
//!   gate with a message saying why.
//! - [`render_markdown`] (CI job summary / PR comment), [`render_junit`] (JUnit XML, one test
//!   case per gate) and [`render_text`] (terminal table) render the results.
//! - [`EvalError`]: every input problem (empty or mismatched inputs, class index out of range,
//!   non-finite values, malformed gates) is an error; nothing here panics on input.
//!
//! Definitions follow scikit-learn (1.9) so numbers can be cross-checked: zero divisions in
//! precision / recall / F1 give 0, ROC-AUC is the tie-aware trapezoid area, PR-AUC is
//! `average_precision_score`'s step sum, log loss clips probabilities to
//! `[ε, 1 − ε]` with ε = `f64::EPSILON`, R² uses `force_finite=True`. Metrics that are
//! undefined for the data (AUC with a single class present) are `None` and left out of
//! `metrics()` rather than reported as NaN. All sums run in a fixed order, so results are
//! deterministic.
//!
//! ```
//! use kiln_ml::evaluate::{check_gates, classification_metrics, render_junit, Gate};
//!
//! let y = [0, 1, 1, 0];
//! let proba = vec![vec![0.8, 0.2], vec![0.3, 0.7], vec![0.4, 0.6], vec![0.6, 0.4]];
//! let classes = vec!["no".to_string(), "yes".to_string()];
//! let report = classification_metrics(&y, &proba, &classes, None).unwrap();
//! assert_eq!(report.roc_auc, Some(1.0));
//!
//! let gates = [Gate::parse("roc_auc >= 0.85").unwrap(), Gate::parse("log_loss<0.1").unwrap()];
//! let results = check_gates(&report.metrics(), &gates);
//! assert!(results[0].passed && !results[1].passed);
//! assert!(render_junit("kiln evaluate", &results).contains(r#"failures="1""#));
//! ```

mod classification;
mod gates;
mod regression;
mod render;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use classification::{
    classification_metrics, Calibration, CalibrationBin, ClassMetrics, ClassificationReport,
};
pub use gates::{all_passed, check_gates, unknown_metric, Gate, GateOp, GateResult, METRIC_NAMES};
pub use regression::{regression_metrics, RegressionReport};
pub use render::{render_junit, render_markdown, render_text};

/// The kind of prediction task a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Two classes; class 1 is the positive class.
    Binary,
    /// Three or more classes.
    Multiclass,
    /// Real-valued targets.
    Regression,
}

/// Everything that can go wrong while evaluating predictions or parsing gates.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// An input has no rows.
    #[error("{what} is empty: need at least one row")]
    Empty {
        /// Which input (`"labels"`, `"targets"`).
        what: &'static str,
    },
    /// Two inputs that must have one entry per row (or per class) have different lengths.
    #[error("{what} has {got} entries but {expected} were expected")]
    LengthMismatch {
        /// The input with the wrong length.
        what: &'static str,
        /// The length it should have.
        expected: usize,
        /// Its length.
        got: usize,
    },
    /// Classification needs at least two classes.
    #[error("need at least two classes, got {got}")]
    TooFewClasses {
        /// The number of class names given.
        got: usize,
    },
    /// A label is not a valid class index.
    #[error("label at row {row} is class {class}, but valid classes are 0..{n_classes}")]
    ClassOutOfRange {
        /// Row index.
        row: usize,
        /// The offending label.
        class: usize,
        /// The number of classes.
        n_classes: usize,
    },
    /// A prediction, probability, target or weight is NaN or infinite.
    #[error("{what} at row {row} is {value}: must be a finite number")]
    NonFinite {
        /// Which input (`"probability"`, `"prediction"`, `"target"`, `"sample weight"`).
        what: &'static str,
        /// Row index.
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// A probability lies outside `[0, 1]`.
    #[error("probability of class {class} at row {row} is {value}: must lie in [0, 1]")]
    ProbabilityOutOfRange {
        /// Row index.
        row: usize,
        /// Class (column) index.
        class: usize,
        /// The offending value.
        value: f64,
    },
    /// A row of class probabilities does not sum to 1 (tolerance 1e-6).
    #[error("probabilities at row {row} sum to {sum}, expected 1")]
    ProbabilitiesDoNotSumToOne {
        /// Row index.
        row: usize,
        /// The row's sum.
        sum: f64,
    },
    /// A sample weight is negative.
    #[error("sample weight at row {row} is {value}: weights must be non-negative")]
    NegativeWeight {
        /// Row index.
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// All sample weights are zero.
    #[error("sample weights sum to zero: at least one row needs a positive weight")]
    ZeroTotalWeight,
    /// A gate expression could not be parsed.
    #[error("invalid gate `{gate}`: {reason}")]
    InvalidGate {
        /// The gate text as given.
        gate: String,
        /// What is wrong and what was expected.
        reason: String,
    },
}
