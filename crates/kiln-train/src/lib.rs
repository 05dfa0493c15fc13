//! kiln's training service: turns tables into learner inputs ([`frame::Signature`]), fits the
//! built-in learners ([`train::train`]), saves the [`artifact::KilnModel`] and records everything
//! as a tracked run with its artifacts ([`tracking`]), exactly like a run logged through the
//! MLflow API. [`plots`] draws evaluation charts as SVG; [`tune`] runs hyper-parameter searches;
//! [`registry`] lists, shows, promotes (behind gates) and rolls back registered model versions.
//!
//! ```
//! use kiln_train::split::SplitSpec;
//! assert_eq!(SplitSpec::parse("0.7/0.15/0.15").unwrap().valid, 0.15);
//! ```

pub mod artifact;
pub mod frame;
pub mod model;
pub mod onnx;
pub mod plots;
pub mod registry;
pub mod split;
pub mod tracking;
pub mod train;
pub mod tune;

/// A training or evaluation failure. [`TrainError::is_input`] tells user errors from internal ones.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Input(String),
    #[error("Column `{column}` not found; the data has: {available}")]
    MissingColumn { column: String, available: String },
    #[error("No feature columns left besides the target `{target}`")]
    NoFeatures { target: String },
    #[error("Target `{target}` has a single class (`{class}`); classification needs at least two")]
    SingleClass { target: String, class: String },
    #[error("Target `{target}` has {n} distinct values: too many classes; did you mean --task regression?")]
    TooManyClasses { target: String, n: usize },
    #[error("Target `{target}` is {kind}; regression needs a numeric target")]
    NonNumericTarget { target: String, kind: &'static str },
    #[error("Target `{target}` is missing at data row {row}; drop or fill rows without a label")]
    MissingLabel { target: String, row: usize },
    #[error("Target `{target}` at data row {row} is `{value}`, a class the model does not know ({classes})")]
    UnknownClass {
        target: String,
        row: usize,
        value: String,
        classes: String,
    },
    /// A registry version, run or logged model whose model files are gone.
    #[error("{0}")]
    NoArtifacts(String),
    #[error("Invalid model file: {0}")]
    ModelFormat(String),
    #[error("ONNX model `{model}`: {message}")]
    Onnx { model: String, message: String },
    #[error(transparent)]
    Table(#[from] kiln_table::TableError),
    #[error(transparent)]
    Ml(#[from] kiln_ml::MlError),
    #[error(transparent)]
    Dataset(#[from] kiln_ml::DatasetError),
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    #[error(transparent)]
    Blob(#[from] kiln_blob::BlobError),
    #[error("Failed to read `{path}`")]
    Io {
        path: String,
        #[source]
        err: std::io::Error,
    },
}

impl TrainError {
    /// Whether the user can fix this by changing the command or the data (exit code 2).
    pub fn is_input(&self) -> bool {
        match self {
            Self::Table(e) => e.is_input(),
            Self::Ml(_) | Self::Dataset(_) => true,
            Self::Store(e) => !matches!(
                e,
                kiln_store::StoreError::Backend { .. } | kiln_store::StoreError::Schema(_)
            ),
            Self::Blob(e) => matches!(
                e,
                kiln_blob::BlobError::InvalidPath { .. }
                    | kiln_blob::BlobError::InvalidUri { .. }
                    | kiln_blob::BlobError::Conflict { .. }
                    | kiln_blob::BlobError::NotFound(_)
            ),
            Self::Io { .. } => true,
            _ => true,
        }
    }
}
