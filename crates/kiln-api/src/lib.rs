//! MLflow wire conventions shared by kiln's server and client: the error body ([`ErrorBody`],
//! [`ApiError`]), lenient JSON request access ([`JsonBody`]) that accepts int64s as numbers or
//! strings and ignores unknown fields, and the route prefixes.
//!
//! ```
//! use kiln_api::JsonBody;
//! let body = JsonBody::parse(br#"{"run_id":"abc","step":"3"}"#).unwrap();
//! assert_eq!(body.str("run_id").unwrap(), "abc");
//! assert_eq!(body.opt_i64("step").unwrap(), Some(3));
//! assert!(body.str("missing").is_err());
//! ```

use kiln_types::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// REST API prefix for the tracking and registry endpoints.
pub const API_PREFIX: &str = "/api/2.0/mlflow";
/// The same handlers as the web UI reaches them.
pub const AJAX_PREFIX: &str = "/ajax-api/2.0/mlflow";
/// Artifact proxy prefix.
pub const ARTIFACTS_PREFIX: &str = "/api/2.0/mlflow-artifacts/artifacts";
/// Version reported by `/version` and server-info: the MLflow wire version kiln speaks.
pub const MLFLOW_COMPAT_VERSION: &str = "3.17.2";

/// MLflow's error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error_code: String,
    pub message: String,
}

/// An API failure: an MLflow error code and a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceDoesNotExist, message)
    }
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error_code: self.code.as_str().to_string(),
            message: self.message.clone(),
        }
    }
}

/// A JSON request body (or query string) read leniently.
#[derive(Debug, Clone, Default)]
pub struct JsonBody(pub serde_json::Map<String, Value>);

fn missing(key: &str) -> ApiError {
    ApiError::invalid(format!("Missing value for required parameter '{key}'."))
}

impl JsonBody {
    /// Parse a body; an empty body is `{}`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::new(
                ErrorCode::BadRequest,
                "The request body must be a JSON object.",
            )),
            Err(e) => Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("Malformed JSON request body: {e}"),
            )),
        }
    }

    /// From query parameters (`?a=1&b=2`); repeated keys become arrays.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut map = serde_json::Map::new();
        for (k, v) in pairs {
            match map.get_mut(&k) {
                Some(Value::Array(items)) => items.push(Value::String(v)),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(v)]);
                }
                None => {
                    map.insert(k, Value::String(v));
                }
            }
        }
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(Value::Array(items)) if items.len() == 1 => match &items[0] {
                Value::String(s) => Ok(Some(s.clone())),
                other => Ok(Some(other.to_string())),
            },
            Some(_) => Err(ApiError::invalid(format!(
                "Invalid value for parameter '{key}': expected a string."
            ))),
        }
    }

    /// A required, non-empty string.
    pub fn str(&self, key: &str) -> Result<String, ApiError> {
        self.opt_str(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing(key))
    }

    /// The first non-empty of several keys (e.g. `run_id` / `run_uuid`).
    pub fn str_any(&self, keys: &[&str]) -> Result<String, ApiError> {
        for k in keys {
            if let Some(v) = self.opt_str(k)?.filter(|s| !s.is_empty()) {
                return Ok(v);
            }
        }
        Err(missing(keys.first().copied().unwrap_or("id")))
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let bad = || {
            ApiError::invalid(format!(
                "Invalid value for parameter '{key}': expected an integer within int64's range."
            ))
        };
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().and_then(kiln_types::f64_json::whole_f64_to_i64))
                .map(Some)
                .ok_or_else(bad),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(Value::Array(items)) if items.len() == 1 => match &items[0] {
                Value::String(s) => s.trim().parse().map(Some).map_err(|_| bad()),
                Value::Number(n) => n.as_i64().map(Some).ok_or_else(bad),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, ApiError> {
        let bad = || {
            ApiError::invalid(format!(
                "Invalid value for parameter '{key}': expected a number."
            ))
        };
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => kiln_types::f64_json::parse_str(s).map(Some).ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" | "" => Ok(Some(false)),
                _ => Err(ApiError::invalid(format!(
                    "Invalid value for parameter '{key}': expected true or false."
                ))),
            },
            Some(_) => Err(ApiError::invalid(format!(
                "Invalid value for parameter '{key}': expected a boolean."
            ))),
        }
    }

    /// A list of strings; a single string counts as a one-item list.
    pub fn str_list(&self, key: &str) -> Result<Vec<String>, ApiError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(ApiError::invalid(format!(
                        "Invalid value for parameter '{key}': expected a list of strings."
                    ))),
                })
                .collect(),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(_) => Err(ApiError::invalid(format!(
                "Invalid value for parameter '{key}': expected a list of strings."
            ))),
        }
    }

    /// A typed list (tags, metrics, …); absent is empty.
    pub fn list<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Vec<T>, ApiError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                ApiError::invalid(format!("Invalid value for parameter '{key}': {e}"))
            }),
        }
    }
}
