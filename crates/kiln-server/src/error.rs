//! Errors rendered as MLflow's `{"error_code", "message"}` bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_api::ApiError;
use kiln_blob::BlobError;
use kiln_store::StoreError;
use kiln_types::ErrorCode;

/// A handler failure, carrying the MLflow error code that picks the HTTP status.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ServerError(#[from] pub ApiError);

pub type ApiResult<T> = Result<T, ServerError>;

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        if matches!(e, StoreError::Backend { .. } | StoreError::Schema(_)) {
            let chain = error_chain(&e);
            tracing::error!(error = %chain, "Store operation failed.");
            return Self(ApiError::new(ErrorCode::InternalError, chain));
        }
        Self(ApiError::new(e.code(), e.to_string()))
    }
}

impl From<BlobError> for ServerError {
    fn from(e: BlobError) -> Self {
        let code = match &e {
            BlobError::InvalidPath { .. }
            | BlobError::InvalidUri { .. }
            | BlobError::Conflict { .. } => ErrorCode::InvalidParameterValue,
            BlobError::Upload { .. } => ErrorCode::BadRequest,
            BlobError::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            _ => ErrorCode::InternalError,
        };
        let message = error_chain(&e);
        if code == ErrorCode::InternalError {
            tracing::error!(error = %message, "Artifact operation failed.");
        }
        Self(ApiError::new(code, message))
    }
}

impl From<kiln_types::filter::FilterError> for ServerError {
    fn from(e: kiln_types::filter::FilterError) -> Self {
        Self(ApiError::invalid(e.0))
    }
}

impl From<kiln_types::PageTokenError> for ServerError {
    fn from(e: kiln_types::PageTokenError) -> Self {
        Self(ApiError::invalid(e.to_string()))
    }
}

/// `err: cause: cause…`
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0.body())).into_response()
    }
}
