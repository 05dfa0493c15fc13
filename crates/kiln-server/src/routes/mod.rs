//! The route table: one module per resource, mounted under MLflow's API and AJAX prefixes.

mod artifacts;
mod experiments;
mod logged_models;
mod registry;
mod runs;

use axum::extract::{FromRequest, Request};
use axum::http::Method;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use kiln_api::{ApiError, JsonBody};
use kiln_store::{PageRequest, MAX_RESULTS_LIMIT};
use kiln_types::ErrorCode;
use serde_json::{json, Value};

use crate::{ApiResult, AppState, ServerError};

/// Largest JSON request body accepted (artifact uploads stream and are not limited by this).
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// Build the HTTP application.
pub fn create_app(state: AppState) -> Router {
    let api = api_routes();
    Router::new()
        .nest(kiln_api::API_PREFIX, api.clone())
        .nest(kiln_api::AJAX_PREFIX, api)
        .merge(artifacts::routes())
        .route("/health", get(|| async { "OK" }))
        .route(
            "/version",
            get(|| async { kiln_api::MLFLOW_COMPAT_VERSION }),
        )
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/ajax-api/3.0/mlflow/server-info", get(server_info))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/experiments/create", post(experiments::create))
        .route("/experiments/get", get(experiments::get))
        .route("/experiments/get-by-name", get(experiments::get_by_name))
        .route(
            "/experiments/search",
            post(experiments::search).get(experiments::search),
        )
        .route("/experiments/list", get(experiments::search))
        .route("/experiments/update", post(experiments::update))
        .route("/experiments/delete", post(experiments::delete))
        .route("/experiments/restore", post(experiments::restore))
        .route(
            "/experiments/set-experiment-tag",
            post(experiments::set_tag),
        )
        .route(
            "/experiments/delete-experiment-tag",
            post(experiments::delete_tag),
        )
        .route("/runs/create", post(runs::create))
        .route("/runs/get", get(runs::get))
        .route("/runs/update", post(runs::update))
        .route("/runs/delete", post(runs::delete))
        .route("/runs/restore", post(runs::restore))
        .route("/runs/log-metric", post(runs::log_metric))
        .route("/runs/log-parameter", post(runs::log_param))
        .route("/runs/set-tag", post(runs::set_tag))
        .route("/runs/delete-tag", post(runs::delete_tag))
        .route("/runs/log-batch", post(runs::log_batch))
        .route("/runs/log-inputs", post(runs::log_inputs))
        .route("/runs/outputs", post(runs::log_outputs))
        .route("/runs/log-model", post(runs::log_model_legacy))
        .route("/runs/search", post(runs::search).get(runs::search))
        .route("/metrics/get-history", get(runs::get_history))
        .route("/logged-models", post(logged_models::create))
        .route("/logged-models/search", post(logged_models::search))
        .route(
            "/logged-models/{model_id}",
            get(logged_models::get)
                .patch(logged_models::finalize)
                .delete(logged_models::delete),
        )
        .route(
            "/logged-models/{model_id}/tags",
            patch(logged_models::set_tags),
        )
        .route(
            "/logged-models/{model_id}/params",
            post(logged_models::log_params),
        )
        .route(
            "/logged-models/{model_id}/tags/{key}",
            delete(logged_models::delete_tag),
        )
        .route("/registered-models/create", post(registry::create_model))
        .route("/registered-models/get", get(registry::get_model))
        .route("/registered-models/update", patch(registry::update_model))
        .route("/registered-models/rename", post(registry::rename_model))
        .route("/registered-models/delete", delete(registry::delete_model))
        .route("/registered-models/search", get(registry::search_models))
        .route("/registered-models/set-tag", post(registry::set_model_tag))
        .route(
            "/registered-models/delete-tag",
            delete(registry::delete_model_tag),
        )
        .route(
            "/registered-models/get-latest-versions",
            post(registry::latest_versions).get(registry::latest_versions),
        )
        .route(
            "/registered-models/alias",
            post(registry::set_alias)
                .delete(registry::delete_alias)
                .get(registry::get_by_alias),
        )
        // kiln's own: the append-only alias history behind `kiln models history|rollback`.
        .route(
            "/registered-models/alias/history",
            get(registry::alias_history),
        )
        .route("/model-versions/create", post(registry::create_version))
        .route("/model-versions/get", get(registry::get_version))
        .route("/model-versions/update", patch(registry::update_version))
        .route("/model-versions/delete", delete(registry::delete_version))
        .route("/model-versions/search", get(registry::search_versions))
        .route("/model-versions/set-tag", post(registry::set_version_tag))
        .route(
            "/model-versions/delete-tag",
            delete(registry::delete_version_tag),
        )
        .route(
            "/model-versions/transition-stage",
            post(registry::transition_stage),
        )
        .route(
            "/model-versions/get-download-uri",
            get(registry::download_uri),
        )
        .method_not_allowed_fallback(method_not_allowed)
}

async fn server_info() -> Json<Value> {
    Json(json!({
        "store_type": "SqlStore",
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "server": "kiln",
        "kiln_version": env!("CARGO_PKG_VERSION"),
    }))
}

/// A known endpoint called with the wrong method: 405 in MLflow's error shape (axum's default
/// has an empty body, which the client reports as an unparseable response).
async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let body = ApiError::new(
        ErrorCode::BadRequest,
        format!("{method} is not supported on {}", uri.path()),
    )
    .body();
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ServerError {
    ServerError(ApiError::new(
        ErrorCode::EndpointNotFound,
        format!("No endpoint for {method} {}", uri.path()),
    ))
}

/// A request's parameters: the query string, overlaid by a JSON body when there is one.
pub(crate) struct Params(pub(crate) JsonBody);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ServerError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (query, bytes) = read_body(req).await?;
        Params::from_parts(&query, &bytes)
    }
}

impl Params {
    /// The query string's pairs overlaid by the JSON body's fields.
    pub(crate) fn from_parts(query: &str, body: &[u8]) -> Result<Self, ServerError> {
        let pairs = form_urlencoded_pairs(query);
        if pairs
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
            || has_escaped_nul(body)
        {
            return Err(nul_rejected());
        }
        let mut params = JsonBody::from_pairs(pairs);
        let body = JsonBody::parse(body)?;
        params.0.extend(body.0);
        Ok(Params(params))
    }
}

/// Whether a JSON body holds a NUL character (`\u0000`, not an escaped backslash before
/// `u0000`). A raw NUL byte is not valid JSON, so the escape is the only way in.
pub(crate) fn has_escaped_nul(body: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"\\u0000";
    body.windows(ESCAPE.len()).enumerate().any(|(i, w)| {
        w == ESCAPE && {
            let backslashes = body[..i].iter().rev().take_while(|b| **b == b'\\').count();
            backslashes.is_multiple_of(2)
        }
    })
}

/// PostgreSQL cannot keep a NUL in text (SQLite can): refused everywhere, so both stores agree.
fn nul_rejected() -> ServerError {
    ServerError(ApiError::invalid(
        "Invalid value: text may not contain a NUL character (\\u0000)",
    ))
}

/// A request's query string and its whole body (at most `MAX_JSON_BODY` bytes).
pub(crate) async fn read_body(req: Request) -> Result<(String, bytes::Bytes), ServerError> {
    let query = req.uri().query().unwrap_or("").to_string();
    let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
        .await
        .map_err(|e| {
            ServerError(ApiError::new(
                ErrorCode::BadRequest,
                format!("Failed to read the request body (limit {MAX_JSON_BODY} bytes): {e}"),
            ))
        })?;
    Ok((query, bytes))
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Run a store call on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, kiln_store::StoreError> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ServerError::from),
        Err(e) => Err(ServerError(ApiError::new(
            ErrorCode::InternalError,
            format!("Store task failed: {e}"),
        ))),
    }
}

/// `max_results` + `page_token` from a request.
pub(crate) fn page_request(p: &JsonBody, default_max: u64) -> ApiResult<PageRequest> {
    let max_results = match p.opt_i64("max_results")? {
        None => default_max,
        Some(n) if n <= 0 => {
            return Err(ApiError::invalid(format!(
                "Invalid value {n} for parameter 'max_results': must be positive."
            ))
            .into())
        }
        Some(n) => u64::try_from(n).unwrap_or(u64::MAX),
    };
    if max_results > MAX_RESULTS_LIMIT {
        return Err(ApiError::invalid(format!(
            "Invalid value {max_results} for parameter 'max_results' supplied. It must be at most {MAX_RESULTS_LIMIT}."
        ))
        .into());
    }
    let token = p.opt_str("page_token")?.unwrap_or_default();
    let offset = kiln_types::PageToken::decode(&token)?.offset;
    Ok(PageRequest {
        max_results,
        offset,
    })
}

/// Add `next_page_token` to a response object when present.
pub(crate) fn with_token(mut v: Value, token: Option<String>) -> Json<Value> {
    if let (Some(t), Some(obj)) = (token, v.as_object_mut()) {
        obj.insert("next_page_token".into(), Value::String(t));
    }
    Json(v)
}

pub(crate) fn empty() -> Json<Value> {
    Json(json!({}))
}

/// Parse a list of `order_by` strings.
pub(crate) fn order_by(
    p: &JsonBody,
    target: kiln_types::filter::Target,
) -> ApiResult<Vec<kiln_types::filter::OrderBy>> {
    p.str_list("order_by")?
        .iter()
        .map(|o| kiln_types::filter::parse_order_by(o, target).map_err(ServerError::from))
        .collect()
}

pub(crate) fn filter(
    p: &JsonBody,
    key: &str,
    target: kiln_types::filter::Target,
) -> ApiResult<kiln_types::filter::Filter> {
    let text = p.opt_str(key)?.unwrap_or_default();
    Ok(kiln_types::filter::parse_filter(&text, target)?)
}
