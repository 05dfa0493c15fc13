//! A blocking HTTP client for a kiln or MLflow tracking server ([`Client`]), used by the CLI when
//! the tracking URI is `http(s)://…`. Errors carry the server's MLflow error code.
//!
//! ```no_run
//! let client = kiln_client::Client::new("http://127.0.0.1:5000").unwrap();
//! let exp = client.get_experiment_by_name("Default").unwrap();
//! assert_eq!(exp.experiment_id, "0");
//! ```

mod blob;
mod store;

pub use blob::HttpBlobStore;
pub use store::RestStore;

use kiln_api::{ApiError, ErrorBody, API_PREFIX};
use kiln_store::Page;
use kiln_types::{ErrorCode, Experiment, Metric, Run};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an MLflow error.
    #[error("{}: {}", .0.code.as_str(), .0.message)]
    Api(ApiError),
    #[error("Request to `{url}` failed")]
    Http {
        url: String,
        #[source]
        err: reqwest::Error,
    },
    #[error("Unexpected response from `{url}`: {message}")]
    Protocol { url: String, message: String },
}

impl ClientError {
    /// The MLflow error code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api(e) => Some(e.code),
            _ => None,
        }
    }
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
        _ => ErrorCode::InternalError,
    }
}

impl Client {
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let http = reqwest::blocking::Client::builder()
            .tcp_nodelay(true)
            .timeout(std::time::Duration::from_secs(120))
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

    pub fn get_experiment(&self, id: &str) -> Result<Experiment, ClientError> {
        let v: Value = self.get("experiments/get", &[("experiment_id", id)])?;
        self.field(v, "experiment")
    }

    pub fn get_experiment_by_name(&self, name: &str) -> Result<Experiment, ClientError> {
        let v: Value = self.get("experiments/get-by-name", &[("experiment_name", name)])?;
        self.field(v, "experiment")
    }

    pub fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
    ) -> Result<String, ClientError> {
        let mut body = json!({ "name": name });
        if let Some(loc) = artifact_location {
            body["artifact_location"] = json!(loc);
        }
        let v: Value = self.post("experiments/create", &body)?;
        self.field(v, "experiment_id")
    }

    /// Every experiment in `view_type` (`ACTIVE_ONLY`, `DELETED_ONLY`, `ALL`), following pages.
    pub fn search_experiments(&self, view_type: &str) -> Result<Vec<Experiment>, ClientError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({ "max_results": 1000, "view_type": view_type });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v: Value = self.post("experiments/search", &body)?;
            let next = v
                .get("next_page_token")
                .and_then(Value::as_str)
                .map(str::to_string);
            let items: Vec<Experiment> = if v.get("experiments").is_some() {
                self.field(v, "experiments")?
            } else {
                Vec::new()
            };
            out.extend(items);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run, ClientError> {
        let v: Value = self.get("runs/get", &[("run_id", run_id)])?;
        self.field(v, "run")
    }

    pub fn search_runs(
        &self,
        experiment_ids: &[String],
        filter: &str,
        order_by: &[String],
        max_results: u64,
        page_token: Option<&str>,
    ) -> Result<Page<Run>, ClientError> {
        let mut body = json!({
            "experiment_ids": experiment_ids,
            "filter": filter,
            "order_by": order_by,
            "max_results": max_results,
            "run_view_type": "ACTIVE_ONLY",
        });
        if let Some(t) = page_token {
            body["page_token"] = json!(t);
        }
        let v: Value = self.post("runs/search", &body)?;
        let next_page_token = v
            .get("next_page_token")
            .and_then(Value::as_str)
            .map(str::to_string);
        let items: Vec<Run> = if v.get("runs").is_some() {
            self.field(v, "runs")?
        } else {
            Vec::new()
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    pub fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, ClientError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let v: Value = self.get(
                "metrics/get-history",
                &[
                    ("run_id", run_id),
                    ("metric_key", key),
                    ("max_results", "25000"),
                    ("page_token", &token),
                ],
            )?;
            let next = v
                .get("next_page_token")
                .and_then(Value::as_str)
                .map(str::to_string);
            let items: Vec<Metric> = if v.get("metrics").is_some() {
                self.field(v, "metrics")?
            } else {
                Vec::new()
            };
            out.extend(items);
            match next {
                Some(t) if !t.is_empty() => token = t,
                _ => return Ok(out),
            }
        }
    }
}
