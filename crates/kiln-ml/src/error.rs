//! The error type of the learners ([`MlError`]).

use crate::dataset::DatasetError;

/// Everything that can go wrong when fitting, predicting or (de)serialising a model.
///
/// Every input-driven failure (bad labels, empty data, mismatched lengths, bad parameters)
/// is reported through this type; the learners do not panic on user input.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The training (or validation) data has no rows.
    #[error("{what} is empty: need at least one row")]
    EmptyData {
        /// Which input was empty (`"training data"`, `"validation data"`).
        what: &'static str,
    },
    /// The data has no feature columns.
    #[error("{what} has no features")]
    NoFeatures {
        /// Which input.
        what: &'static str,
    },
    /// Two inputs that must have one entry per row have different lengths.
    #[error("{what} has {got} entries but the data has {expected} rows")]
    LengthMismatch {
        /// The input with the wrong length (`"labels"`, `"sample weights"`, ...).
        what: &'static str,
        /// Its length.
        got: usize,
        /// The number of rows.
        expected: usize,
    },
    /// A label is not valid for the objective.
    #[error("label at row {row} is {value}: {reason}")]
    BadLabel {
        /// Row index.
        row: usize,
        /// The offending value.
        value: f64,
        /// What was expected.
        reason: &'static str,
    },
    /// Classification labels contain only one class.
    #[error("the labels contain only one class ({class}); classification needs at least two")]
    SingleClass {
        /// The only class present.
        class: usize,
    },
    /// A sample weight is negative, NaN or infinite, or all weights are zero.
    #[error(
        "sample weight at row {row} is {value}: weights must be finite and >= 0, and not all 0"
    )]
    BadWeight {
        /// Row index (the first row when all weights are zero).
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// A parameter has a value of the wrong type or outside its range.
    #[error("parameter `{name}` = `{value}`: expected {expected}")]
    InvalidParam {
        /// The parameter name.
        name: String,
        /// The value given (as text).
        value: String,
        /// The expected type and range.
        expected: String,
    },
    /// A parameter name is not known.
    #[error("unknown parameter `{name}`; known parameters: {known}")]
    UnknownParam {
        /// The name given.
        name: String,
        /// Comma-separated list of the accepted names.
        known: String,
    },
    /// Prediction data does not match the features the model was trained on.
    #[error("feature mismatch: {0}")]
    FeatureMismatch(String),
    /// Training produced no usable model.
    #[error("{0}")]
    Diverged(String),
    /// The operation does not apply to this model's objective.
    #[error("{0}")]
    WrongObjective(String),
    /// The dataset itself is malformed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A model file could not be parsed or written.
    #[error("model serialization: {0}")]
    Serde(#[from] serde_json::Error),
    /// The thread pool could not be built.
    #[error("thread pool: {0}")]
    ThreadPool(String),
}

/// `Result` with [`MlError`].
pub type Result<T, E = MlError> = std::result::Result<T, E>;
