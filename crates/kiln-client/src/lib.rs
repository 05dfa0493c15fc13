//! kiln's store traits over a kiln (or MLflow) tracking server: [`RestStore`] for metadata over
//! the REST API and [`HttpBlobStore`] for artifacts over the artifact proxy, used by the CLI when
//! the store URI is `http(s)://…`. [`Client`] is the blocking transport underneath; its errors
//! carry the server's MLflow error code.
//!
//! ```no_run
//! use kiln_store::ExperimentStore;
//! let store = kiln_client::RestStore::new("http://127.0.0.1:5000").unwrap();
//! let exp = store.get_experiment_by_name("Default").unwrap();
//! assert_eq!(exp.experiment_id, "0");
//! ```

mod blob;
mod store;

pub use blob::HttpBlobStore;
pub use store::RestStore;

use kiln_api::{ApiError, ErrorBody, API_PREFIX};
use kiln_types::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Everything but RFC 3986's unreserved characters is escaped in one URL path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One URL path segment (a logged model id, a tag key, an artifact path component), escaped.
pub(crate) fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an MLflow error.
    #[error("{}: {}", .0.code.as_str(), .0.message)]
    Api(ApiError),
    #[error("Request to `{url}` failed{}", if err.is_timeout() { format!(" after {}s without an answer (set KILN_HTTP_TIMEOUT to wait longer)", request_timeout().as_secs()) } else { String::new() })]
    Http {
        url: String,
        #[source]
        err: reqwest::Error,
    },
    #[error("Unexpected response from `{url}`: {message}")]
    Protocol { url: String, message: String },
}

/// A tracking server client.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) base: String,
    http: reqwest::blocking::Client,
}

fn code_from_str(s: &str) -> ErrorCode {
    match s {
        "RESOURCE_DOES_NOT_EXIST" => ErrorCode::ResourceDoesNotExist,
        "INVALID_PARAMETER_VALUE" => ErrorCode::InvalidParameterValue,
        "RESOURCE_ALREADY_EXISTS" => ErrorCode::ResourceAlreadyExists,
        "BAD_REQUEST" => ErrorCode::BadRequest,
        "ENDPOINT_NOT_FOUND" => ErrorCode::EndpointNotFound,
        _ => ErrorCode::InternalError,
    }
}

/// How long one tracking API call may take: `KILN_HTTP_TIMEOUT` seconds, default 120. (Artifact
/// transfers stream through their own client, without a total deadline.)
pub fn request_timeout() -> std::time::Duration {
    const DEFAULT_SECS: u64 = 120;
    let secs = std::env::var("KILN_HTTP_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_SECS);
    std::time::Duration::from_secs(secs)
}

impl Client {
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let http = reqwest::blocking::Client::builder()
            .tcp_nodelay(true)
            .timeout(request_timeout())
            .build()
            .map_err(|err| ClientError::Http {
                url: base.to_string(),
                err,
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    fn handle<T: DeserializeOwned>(
        url: &str,
        resp: Result<reqwest::blocking::Response, reqwest::Error>,
    ) -> Result<T, ClientError> {
        let resp = resp.map_err(|err| ClientError::Http {
            url: url.to_string(),
            err,
        })?;
        let status = resp.status();
        let text = resp.text().map_err(|err| ClientError::Http {
            url: url.to_string(),
            err,
        })?;
        if !status.is_success() {
            if let Ok(body) = serde_json::from_str::<ErrorBody>(&text) {
                return Err(ClientError::Api(ApiError::new(
                    code_from_str(&body.error_code),
                    body.message,
                )));
            }
            return Err(ClientError::Protocol {
                url: url.to_string(),
                message: format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                ),
            });
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Protocol {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let url = format!("{}{API_PREFIX}/{path}", self.base);
        Self::handle(&url, self.http.get(&url).query(query).send())
    }

    pub(crate) fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.send(reqwest::Method::POST, path, body)
    }

    /// A request with a JSON body (MLflow's PATCH and DELETE endpoints take one too).
    pub(crate) fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        let url = format!("{}{API_PREFIX}/{path}", self.base);
        Self::handle(&url, self.http.request(method, &url).json(body).send())
    }

    pub(crate) fn field<T: DeserializeOwned>(
        &self,
        mut v: Value,
        key: &str,
    ) -> Result<T, ClientError> {
        let inner = v.get_mut(key).map(Value::take).unwrap_or(Value::Null);
        serde_json::from_value(inner).map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            message: format!("field `{key}`: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_escape_all_but_unreserved_bytes() {
        assert_eq!(
            super::encode_segment("Az09-_.~ /?#%ñ"),
            "Az09-_.~%20%2F%3F%23%25%C3%B1"
        );
    }
}
