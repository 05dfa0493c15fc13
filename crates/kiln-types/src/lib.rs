//! Domain types shared by every kiln crate: tracking and registry entities ([`Experiment`],
//! [`Run`], [`LoggedModel`], [`RegisteredModel`], [`ModelVersion`]), the MLflow-compatible
//! [`ErrorCode`]s, opaque [`PageToken`]s and the search filter language in [`filter`].
//!
//! No I/O and no async here.
//!
//! ```
//! use kiln_types::{ErrorCode, PageToken};
//! assert_eq!(ErrorCode::ResourceDoesNotExist.http_status(), 404);
//! let token = PageToken::from_offset(40).encode();
//! assert_eq!(PageToken::decode(&token).unwrap().offset, 40);
//! ```

mod entities;
pub mod f64_json;
pub mod filter;
mod ids;
mod page;

pub use entities::*;
pub use ids::*;
pub use page::{PageToken, PageTokenError};

/// MLflow's error codes, which the client maps to its exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ResourceDoesNotExist,
    InvalidParameterValue,
    ResourceAlreadyExists,
    BadRequest,
    InternalError,
    /// No such endpoint (MLflow's client falls back to older APIs on this code).
    EndpointNotFound,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            Self::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            Self::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            Self::BadRequest => "BAD_REQUEST",
            Self::InternalError => "INTERNAL_ERROR",
            Self::EndpointNotFound => "ENDPOINT_NOT_FOUND",
        }
    }

    /// HTTP status as MLflow's server sends it (an existing resource is 400, not 409).
    pub fn http_status(self) -> u16 {
        match self {
            Self::ResourceDoesNotExist | Self::EndpointNotFound => 404,
            Self::InternalError => 500,
            _ => 400,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
