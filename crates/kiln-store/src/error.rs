use kiln_types::ErrorCode;

pub type StoreResult<T> = Result<T, StoreError>;

/// A store operation that failed. The variant decides the API error code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    /// The database schema is newer than this binary, or not yet upgraded.
    #[error("{0}")]
    Schema(String),
    #[error("{message}")]
    Backend {
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn already_exists(msg: impl Into<String>) -> Self {
        Self::AlreadyExists(msg.into())
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameter(msg.into())
    }
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            message: message.into(),
            source: Box::new(source),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            Self::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            Self::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            Self::Schema(_) | Self::Backend { .. } => ErrorCode::InternalError,
        }
    }
}

impl From<kiln_types::filter::FilterError> for StoreError {
    fn from(e: kiln_types::filter::FilterError) -> Self {
        Self::InvalidParameter(e.0)
    }
}

impl From<kiln_types::PageTokenError> for StoreError {
    fn from(e: kiln_types::PageTokenError) -> Self {
        Self::InvalidParameter(e.to_string())
    }
}
