//! [`ServeError`], the crate's error, and [`DecodeError`], what is wrong with a request body.
//! Each maps to an HTTP status and an MLflow error code.

use axum::http::StatusCode;

/// What is wrong with a request's input. Row numbers count from 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("Invalid JSON: {0}")]
    Json(String),
    #[error("Invalid CSV: {0}")]
    Csv(String),
    #[error("Invalid input: {0}")]
    Malformed(String),
    #[error("The request has no rows")]
    Empty,
    #[error("{}", missing_message(.0))]
    MissingColumns(Vec<(String, String)>),
    #[error("column `{column}`: expected {expected}, got {got} (row {row})")]
    WrongType {
        column: String,
        expected: String,
        got: String,
        row: usize,
    },
    #[error("column `{column}`: unknown category {value} (row {row}); expected one of {expected}")]
    UnknownCategory {
        column: String,
        value: String,
        expected: String,
        row: usize,
    },
    #[error("the request has {rows} rows for a model of {inputs} inputs, {} values; a request may carry at most {budget} (one per byte of its body): send fewer rows, or fill in the missing values", rows.saturating_mul(*inputs))]
    TooManyValues {
        rows: usize,
        inputs: usize,
        budget: usize,
    },
    #[error("the model's output for row {row} is {value}, not a number: its inputs are outside what the model handles (a missing value it cannot take, or a number too large for it)")]
    NonFiniteOutput { row: usize, value: String },
    #[error("Unsupported content type `{0}`: send application/json or text/csv")]
    UnsupportedMediaType(String),
}

fn missing_message(missing: &[(String, String)]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|(name, expected)| format!("`{name}` (expected {expected})"))
        .collect();
    if parts.len() == 1 {
        format!("missing column {}", parts.join(""))
    } else {
        format!("missing columns {}", parts.join(", "))
    }
}

/// A serving failure.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("Request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("Failed to read the request body: {0}")]
    Body(String),
    #[error("The request body did not arrive within {}s (--body-timeout)", .limit.as_secs_f64())]
    BodyTimeout { limit: std::time::Duration },
    #[error("{0}")]
    NotFound(String),
    #[error("Prediction failed: {0}")]
    Predict(String),
    #[error("Failed to load model `{reference}`")]
    Load {
        reference: String,
        #[source]
        err: Box<kiln_train::TrainError>,
    },
    #[error("Invalid model reference `{0}`: expected a model file or directory, models:/<name>@<alias>, models:/<name>/<version> or runs:/<run_id>/<path>")]
    Reference(String),
    #[error("{0}")]
    Config(String),
    #[error("Internal error: {0}")]
    Internal(String),
}

impl ServeError {
    /// The HTTP status a client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Decode(DecodeError::UnsupportedMediaType(_)) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::TooLarge { .. } | Self::Decode(DecodeError::TooManyValues { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Decode(_) | Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Predict(_)
            | Self::Load { .. }
            | Self::Reference(_)
            | Self::Config(_)
            | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// MLflow's `error_code` for the status.
    pub fn error_code(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::REQUEST_TIMEOUT => "BAD_REQUEST",
            StatusCode::PAYLOAD_TOO_LARGE => "REQUEST_LIMIT_EXCEEDED",
            StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
            _ => "INTERNAL_ERROR",
        }
    }

    /// Whether the user can fix this by changing the command line or the model (exit code 2).
    pub fn is_input(&self) -> bool {
        match self {
            Self::Load { err, .. } => err.is_input(),
            Self::Reference(_) | Self::Config(_) | Self::NotFound(_) => true,
            _ => false,
        }
    }
}
