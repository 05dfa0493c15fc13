//! The route table ([`create_app`]) and its handlers. A prediction handler picks the model
//! (an `Arc` it keeps until it answers), decodes, predicts, writes the JSON by hand and counts
//! the request; bodies above [`Limits::offload_bytes`] are handled on the blocking pool.
//!
//! [`Limits::offload_bytes`]: crate::state::Limits::offload_bytes

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use kiln_train::artifact::Predictions;
use kiln_train::frame::FieldKind;

use crate::decode::{decode_v2, V2Request};
use crate::encode::Batch;
use crate::error::{DecodeError, ServeError};
use crate::metrics::Endpoint;
use crate::predlog::LogRecord;
use crate::release::{decode, request_id, Arm, BodyFormat, ShadowJob};
use crate::state::{LoadedModel, ServeState};

type AppState = State<Arc<ServeState>>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The prediction server's routes over `state`.
pub fn create_app(state: Arc<ServeState>) -> Router {
    let max_body = state.limits.max_body;
    Router::new()
        .route("/invocations", post(invocations))
        .route("/ping", get(ping))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v2", get(v2_server))
        .route("/v2/health/live", get(v2_live))
        .route("/v2/health/ready", get(v2_ready))
        .route("/v2/models/{name}", get(v2_metadata))
        .route("/v2/models/{name}/ready", get(v2_model_ready))
        .route("/v2/models/{name}/infer", post(v2_infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2_version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2_version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2_version_infer),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, JSON)], body).into_response();
    if status == StatusCode::REQUEST_TIMEOUT {
        // The rest of a body that timed out may still be on its way: not a request boundary.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// `{"error_code": …, "message": …}`, MLflow's error body.
fn mlflow_error(err: &ServeError) -> Response {
    let body = serde_json::json!({ "error_code": err.error_code(), "message": err.to_string() });
    json_response(err.status(), body.to_string().into_bytes())
}

/// `{"error": …}`, the Open Inference Protocol's error body.
fn v2_error(err: &ServeError) -> Response {
    let body = serde_json::json!({ "error": err.to_string() });
    json_response(err.status(), body.to_string().into_bytes())
}

/// Whether `uri` is under the Open Inference Protocol's `/v2`, whose errors are `{"error"}`.
fn is_v2(uri: &Uri) -> bool {
    let path = uri.path();
    path == "/v2" || path.starts_with("/v2/")
}

async fn not_found(uri: Uri) -> Response {
    let err = ServeError::NotFound("No such endpoint; see GET /openapi.json".into());
    if is_v2(&uri) {
        v2_error(&err)
    } else {
        mlflow_error(&err)
    }
}

async fn method_not_allowed(uri: Uri) -> Response {
    const MESSAGE: &str = "Method not allowed for this endpoint; see GET /openapi.json";
    let body = if is_v2(&uri) {
        serde_json::json!({ "error": MESSAGE })
    } else {
        serde_json::json!({ "error_code": "BAD_REQUEST", "message": MESSAGE })
    };
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        body.to_string().into_bytes(),
    )
}

fn body_error(rejection: &BytesRejection, limit: usize) -> ServeError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ServeError::TooLarge { limit }
    } else {
        ServeError::Body(rejection.body_text())
    }
}

/// A prediction request's body, or why it cannot be had. A `Content-Length` over
/// `--max-body` is refused before any of the body is read (a client announcing 1 GB is told
/// at once, not after it sent 10 MiB).
pub(crate) struct RequestBody(Result<Bytes, ServeError>);

impl FromRequest<Arc<ServeState>> for RequestBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(
        req: axum::extract::Request,
        state: &Arc<ServeState>,
    ) -> Result<Self, Self::Rejection> {
        let limit = state.limits.max_body;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Ok(Self(Err(ServeError::TooLarge { limit })));
        }
        let read = Bytes::from_request(req, state);
        let mut read = std::pin::pin!(read);
        // A small body is usually whole already: read it without arming a timer.
        let read = match futures::poll!(read.as_mut()) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => {
                let within = state.limits.body_timeout;
                match tokio::time::timeout(within, read).await {
                    Ok(r) => r,
                    Err(_) => return Ok(Self(Err(ServeError::BodyTimeout { limit: within }))),
                }
            }
        };
        Ok(Self(read.map_err(|r| body_error(&r, limit))))
    }
}

fn content_format(headers: &HeaderMap) -> Result<BodyFormat, DecodeError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let Ok(text) = value.to_str() else {
        return Err(DecodeError::UnsupportedMediaType(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    };
    let mime = text.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/json") || mime.is_empty() {
        Ok(BodyFormat::Json)
    } else if mime.eq_ignore_ascii_case("text/csv") {
        Ok(BodyFormat::Csv)
    } else {
        Err(DecodeError::UnsupportedMediaType(text.to_string()))
    }
}

/// A request's answer, with the rows and predictions the prediction log may keep.
struct Scored {
    body: Vec<u8>,
    batch: Batch,
    predictions: Predictions,
}

/// Decode, predict (in a micro-batch when enabled), count and write the response body.
fn decode_any(
    format: BodyFormat,
    body: &[u8],
    model: &LoadedModel,
) -> Result<(Batch, V2Request), ServeError> {
    match format {
        BodyFormat::V2 => {
            let (batch, req) = decode_v2(body, &model.encoder)?;
            if let Some(asked) = &req.outputs {
                let known = output_names(model);
                if let Some(bad) = asked.iter().find(|o| !known.contains(&o.as_str())) {
                    return Err(DecodeError::Malformed(format!(
                        "unknown output `{bad}`; this model's outputs are {}",
                        known.join(", ")
                    ))
                    .into());
                }
            }
            Ok((batch, req))
        }
        _ => Ok((decode(format, body, model)?, V2Request::default())),
    }
}

/// The outputs of an inference response, in order.
fn output_names(model: &LoadedModel) -> &'static [&'static str] {
    if model.classification() {
        &["predictions", "probabilities"]
    } else {
        &["predictions"]
    }
}

fn write_body(
    model: &LoadedModel,
    format: BodyFormat,
    predictions: &Predictions,
    req: &V2Request,
) -> Vec<u8> {
    match format {
        BodyFormat::V2 => write_v2(model, predictions, req),
        BodyFormat::Json | BodyFormat::Csv => write_mlflow(model, predictions),
    }
}

fn score_inline(
    model: &LoadedModel,
    format: BodyFormat,
    body: &[u8],
) -> Result<Scored, ServeError> {
    let (batch, req) = decode_any(format, body, model)?;
    let predictions = model.scorer.predict(&batch)?;
    check_finite(&predictions)?;
    record(model, &predictions);
    let body = write_body(model, format, &predictions, &req);
    Ok(Scored {
        body,
        batch,
        predictions,
    })
}

/// Score a request: on the blocking pool for large bodies, through the model's micro-batch
/// queue when batching is on, else inline. A panic becomes a 500.
async fn score(
    state: &ServeState,
    model: &Arc<LoadedModel>,
    format: BodyFormat,
    body: Bytes,
) -> Result<Scored, ServeError> {
    if body.len() > state.limits.offload_bytes {
        let m = Arc::clone(model);
        return match tokio::task::spawn_blocking(move || score_inline(&m, format, &body)).await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Internal(format!("prediction task failed: {e}"))),
        };
    }
    let catch = |f: &mut dyn FnMut() -> Result<Scored, ServeError>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(ServeError::Internal("prediction panicked".into())))
    };
    let Some(queue) = &model.batch else {
        return catch(&mut || score_inline(model, format, &body));
    };
    let arrival = queue.arrive();
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_any(format, &body, model)
    }))
    .unwrap_or_else(|_| Err(ServeError::Internal("decoding panicked".into())));
    let (batch, req) = decoded?;
    let (batch, predictions) = queue.predict(&*model.scorer, batch, arrival).await;
    let predictions = predictions?;
    check_finite(&predictions)?;
    record(model, &predictions);
    let body = write_body(model, format, &predictions, &req);
    Ok(Scored {
        body,
        batch,
        predictions,
    })
}

/// Route, score, mirror to the shadow, answer with the request id and the version that
/// answered, count, and log when sampled.
async fn predict(
    state: &ServeState,
    headers: &HeaderMap,
    endpoint: Endpoint,
    v2_model: Option<(&str, Option<&str>)>,
    body: Result<Bytes, ServeError>,
) -> Response {
    let start = Instant::now();
    let model = match v2_model {
        Some((_, Some(version))) => state
            .routes
            .by_version(version)
            .unwrap_or_else(|| state.routes.route(headers)),
        _ => state.routes.route(headers),
    };
    let request_id = request_id(headers);
    let logged = state.log.as_ref().is_some_and(|l| l.sampled());
    let format = match v2_model {
        Some(_) => Ok(BodyFormat::V2),
        None => content_format(headers).map_err(ServeError::from),
    };
    let checked = match v2_model {
        Some((name, version)) => check_model(state, &model, name, version),
        None => Ok(()),
    };
    let result = match (checked, body, format) {
        (Err(e), _, _) | (_, _, Err(e)) => Err(e),
        (_, Err(e), _) => Err(e),
        (Ok(()), Ok(bytes), Ok(format)) => {
            let mirror = state.shadow.as_ref().map(|_| bytes.clone());
            let scored = score(state, &model, format, bytes).await;
            if let (Some(shadow), Some(body), Ok(_)) = (&state.shadow, mirror, &scored) {
                shadow.mirror(ShadowJob {
                    body,
                    format,
                    request_id: request_id.clone(),
                    logged,
                });
            }
            scored
        }
    };
    let render_error = if v2_model.is_some() {
        v2_error
    } else {
        mlflow_error
    };
    let (mut response, kept) = match result {
        Ok(Scored {
            body,
            batch,
            predictions,
        }) => (
            json_response(StatusCode::OK, body),
            Some((batch, predictions)),
        ),
        Err(err) => {
            if err.status().is_server_error() {
                tracing::error!(model = %model.name, version = %model.version, arm = model.arm.as_str(), %err, "Prediction failed.");
            }
            (render_error(&err), None)
        }
    };
    let elapsed = start.elapsed();
    model
        .metrics
        .request(endpoint, response.status().as_u16(), elapsed);
    if let (true, Some(log), Some((batch, predictions))) = (logged, &state.log, kept) {
        log.submit(LogRecord::new(
            Arc::clone(&model),
            &request_id,
            elapsed,
            batch,
            predictions,
        ));
    }
    let h = response.headers_mut();
    h.insert(X_REQUEST_ID, request_id);
    if let Some(v) = &model.version_header {
        h.insert(X_MODEL_VERSION, v.clone());
    }
    h.insert(X_ARM, HeaderValue::from_static(model.arm.as_str()));
    response
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_MODEL_VERSION: HeaderName = HeaderName::from_static("x-kiln-model-version");
const X_ARM: HeaderName = HeaderName::from_static("x-kiln-arm");

async fn invocations(
    State(state): AppState,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> Response {
    predict(&state, &headers, Endpoint::Invocations, None, body).await
}

async fn v2_infer(
    State(state): AppState,
    Path(name): Path<String>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> Response {
    predict(
        &state,
        &headers,
        Endpoint::V2Infer,
        Some((&name, None)),
        body,
    )
    .await
}

async fn v2_version_infer(
    State(state): AppState,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> Response {
    predict(
        &state,
        &headers,
        Endpoint::V2Infer,
        Some((&name, Some(&version))),
        body,
    )
    .await
}

fn check_model(
    state: &ServeState,
    model: &LoadedModel,
    name: &str,
    version: Option<&str>,
) -> Result<(), ServeError> {
    if name != state.name {
        return Err(ServeError::NotFound(format!(
            "Model `{name}` is not served here; this server serves `{}`",
            state.name
        )));
    }
    if let Some(v) = version {
        if v != model.version {
            let loaded: Vec<String> = state
                .routes
                .versions()
                .iter()
                .map(|v| format!("`{v}`"))
                .collect();
            return Err(ServeError::NotFound(format!(
                "Version `{v}` of model `{name}` is not loaded; the loaded version{} {}",
                if loaded.len() == 1 { " is" } else { "s are" },
                loaded.join(" and ")
            )));
        }
    }
    Ok(())
}

/// The index of the largest value (first on ties).
pub(crate) fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

/// Refuse an answer with a NaN or infinite output (JSON has no spelling for them, and the
/// label of a NaN row is meaningless): a 400 naming the first such row.
pub(crate) fn check_finite(predictions: &Predictions) -> Result<(), DecodeError> {
    let bad = match predictions {
        Predictions::Proba(rows) => rows
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.iter().find(|v| !v.is_finite()).map(|v| (i, *v))),
        Predictions::Values(values) => values
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map(|(i, v)| (i, *v)),
    };
    match bad {
        None => Ok(()),
        Some((i, v)) => Err(DecodeError::NonFiniteOutput {
            row: i + 1,
            value: if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "+Inf"
            } else {
                "-Inf"
            }
            .into(),
        }),
    }
}

pub(crate) fn record(model: &LoadedModel, predictions: &Predictions) {
    let m = &model.metrics;
    match predictions {
        Predictions::Proba(rows) => {
            m.rows(rows.len());
            for p in rows {
                let k = argmax(p);
                let value = if p.len() == 2 {
                    p[1]
                } else {
                    p.get(k).copied().unwrap_or(f64::NAN)
                };
                m.prediction(value, Some(k));
            }
        }
        Predictions::Values(values) => {
            m.rows(values.len());
            for v in values {
                m.prediction(*v, None);
            }
        }
    }
}

fn push_f64(out: &mut Vec<u8>, v: f64) {
    // serde_json writes the shortest round-trip form, and `null` for NaN and infinities.
    if serde_json::to_writer(&mut *out, &v).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn push_list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

/// `{"predictions": [labels…], "probabilities": [[…]…]}` (classification) or
/// `{"predictions": [values…]}` (regression).
fn write_mlflow(model: &LoadedModel, predictions: &Predictions) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"predictions\":");
    match predictions {
        Predictions::Proba(rows) => {
            push_list(&mut out, rows, |o, p| {
                let label = model.labels.get(argmax(p)).map_or("null", |l| &**l);
                o.extend_from_slice(label.as_bytes());
            });
            out.extend_from_slice(b",\"probabilities\":");
            push_list(&mut out, rows, |o, p| {
                push_list(o, p, |o, v| push_f64(o, *v));
            });
        }
        Predictions::Values(values) => push_list(&mut out, values, |o, v| push_f64(o, *v)),
    }
    out.push(b'}');
    out
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// An inference response: `predictions` (labels as `BYTES`, or `FP64` values) and, for
/// classifiers, `probabilities` (`FP64`, `[rows, classes]`).
/// Only the outputs `req` asks for, in its order, when it names any.
fn write_v2(model: &LoadedModel, predictions: &Predictions, req: &V2Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"model_name\":");
    push_json_str(&mut out, &model.name);
    out.extend_from_slice(b",\"model_version\":");
    push_json_str(&mut out, &model.version);
    if let Some(id) = &req.id {
        out.extend_from_slice(b",\"id\":");
        push_json_str(&mut out, id);
    }
    out.extend_from_slice(b",\"outputs\":[");
    match predictions {
        Predictions::Proba(rows) => {
            let all = ["predictions", "probabilities"].map(String::from);
            let wanted = req.outputs.as_deref().unwrap_or(&all);
            for (i, name) in wanted.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if name == "predictions" {
                    write_labels(&mut out, model, rows);
                } else {
                    write_probabilities(&mut out, model, rows);
                }
            }
        }
        Predictions::Values(values) => {
            let _ = write!(
                Adapter(&mut out),
                "{{\"name\":\"predictions\",\"shape\":[{}],\"datatype\":\"FP64\",\"data\":",
                values.len()
            );
            push_list(&mut out, values, |o, v| push_f64(o, *v));
            out.push(b'}');
        }
    }
    out.extend_from_slice(b"]}");
    out
}

/// The `predictions` output of a classifier: the labels, as `BYTES`.
fn write_labels(out: &mut Vec<u8>, model: &LoadedModel, rows: &[Vec<f64>]) {
    let _ = write!(
        Adapter(out),
        "{{\"name\":\"predictions\",\"shape\":[{}],\"datatype\":\"BYTES\",\"data\":",
        rows.len()
    );
    push_list(out, rows, |o, p| {
        let label = model.label_text.get(argmax(p)).map_or("", String::as_str);
        push_json_str(o, label);
    });
    out.push(b'}');
}

/// The `probabilities` output: `FP64`, `[rows, classes]`, row-major.
fn write_probabilities(out: &mut Vec<u8>, model: &LoadedModel, rows: &[Vec<f64>]) {
    let k = model.label_text.len();
    let _ = write!(
        Adapter(out),
        "{{\"name\":\"probabilities\",\"shape\":[{},{k}],\"datatype\":\"FP64\",\"data\":[",
        rows.len()
    );
    let mut first = true;
    for p in rows {
        for v in p {
            if !first {
                out.push(b',');
            }
            first = false;
            push_f64(out, *v);
        }
    }
    out.extend_from_slice(b"]}");
}

/// `fmt::Write` into a byte buffer.
struct Adapter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

async fn ping() -> &'static str {
    "\n"
}

async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

async fn health(State(state): AppState) -> Response {
    let model = state.routes.pick();
    let body = serde_json::json!({
        "status": if state.is_ready() { "ok" } else { "draining" },
        "model": model.name,
        "version": model.version,
        "flavor": model.scorer.flavor(),
        "source": model.source,
        "run_id": model.run_id,
        "loaded_at_ms": model.loaded_at_ms,
        "arms": state.routes.arms().iter().map(|m| {
            let mut arm = serde_json::json!({
                "arm": m.arm.as_str(),
                "version": m.version,
                "source": m.source,
            });
            if m.arm == Arm::Canary && state.routes.canary_withdrawn() {
                arm["withdrawn"] = serde_json::Value::Bool(true);
            }
            arm
        }).collect::<Vec<_>>(),
    });
    let status = if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body.to_string().into_bytes())
}

async fn metrics(State(state): AppState) -> Response {
    let arms = state.routes.arms();
    let serving: Vec<_> = arms
        .iter()
        .map(|m| {
            (
                m.arm.as_str(),
                m.name.as_str(),
                m.version.as_str(),
                m.scorer.flavor(),
            )
        })
        .collect();
    let text = state.metrics.render(&serving, state.uptime());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn openapi(State(state): AppState) -> Response {
    let model = state.routes.pick();
    json_response(
        StatusCode::OK,
        crate::openapi::document(&model).to_string().into_bytes(),
    )
}

async fn v2_server() -> Response {
    let body = serde_json::json!({
        "name": "kiln",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

async fn v2_live() -> Response {
    json_response(StatusCode::OK, br#"{"live":true}"#.to_vec())
}

async fn v2_ready(State(state): AppState) -> Response {
    if state.is_ready() {
        json_response(StatusCode::OK, br#"{"ready":true}"#.to_vec())
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"ready":false}"#.to_vec(),
        )
    }
}

/// A model's readiness: `body` with `ready`, 200 when ready, else 503 (draining).
fn readiness(state: &ServeState, mut body: serde_json::Value) -> Response {
    let ready = state.is_ready();
    body["ready"] = serde_json::Value::Bool(ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body.to_string().into_bytes())
}

/// The arm serving `version`, else the main one (which [`check_model`] then refuses).
fn model_for_version(state: &ServeState, version: &str) -> Arc<LoadedModel> {
    state
        .routes
        .by_version(version)
        .unwrap_or_else(|| state.routes.pick())
}

async fn v2_model_ready(State(state): AppState, Path(name): Path<String>) -> Response {
    let model = state.routes.pick();
    if let Err(e) = check_model(&state, &model, &name, None) {
        return v2_error(&e);
    }
    readiness(&state, serde_json::json!({ "name": name }))
}

async fn v2_version_ready(
    State(state): AppState,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let model = model_for_version(&state, &version);
    if let Err(e) = check_model(&state, &model, &name, Some(&version)) {
        return v2_error(&e);
    }
    readiness(
        &state,
        serde_json::json!({ "name": name, "version": version }),
    )
}

async fn v2_metadata(State(state): AppState, Path(name): Path<String>) -> Response {
    let model = state.routes.pick();
    match check_model(&state, &model, &name, None) {
        Ok(()) => json_response(StatusCode::OK, metadata(&model).to_string().into_bytes()),
        Err(e) => v2_error(&e),
    }
}

async fn v2_version_metadata(
    State(state): AppState,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let model = model_for_version(&state, &version);
    match check_model(&state, &model, &name, Some(&version)) {
        Ok(()) => json_response(StatusCode::OK, metadata(&model).to_string().into_bytes()),
        Err(e) => v2_error(&e),
    }
}

/// The OIP datatype a model input is sent as.
pub(crate) fn datatype(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Numeric | FieldKind::Datetime => "FP64",
        FieldKind::Boolean => "BOOL",
        FieldKind::Categorical => "BYTES",
    }
}

/// Model metadata as the Open Inference Protocol describes it, plus kiln's details under
/// `parameters`.
fn metadata(model: &LoadedModel) -> serde_json::Value {
    let signature = model.scorer.signature();
    let inputs: Vec<serde_json::Value> = signature
        .inputs
        .iter()
        .map(|f| {
            let mut v = serde_json::json!({
                "name": f.name,
                "datatype": datatype(f.kind),
                "shape": [-1],
            });
            if f.kind == FieldKind::Categorical {
                v["parameters"] = serde_json::json!({ "categories": f.categories });
            }
            if f.kind == FieldKind::Datetime {
                v["parameters"] =
                    serde_json::json!({ "content": "seconds since the epoch, or ISO 8601 text as BYTES" });
            }
            v
        })
        .collect();
    let outputs = if model.classification() {
        serde_json::json!([
            { "name": "predictions", "datatype": "BYTES", "shape": [-1] },
            { "name": "probabilities", "datatype": "FP64", "shape": [-1, model.label_text.len()] },
        ])
    } else {
        serde_json::json!([{ "name": "predictions", "datatype": "FP64", "shape": [-1] }])
    };
    let versions: Vec<&str> = if model.version.is_empty() {
        Vec::new()
    } else {
        vec![model.version.as_str()]
    };
    serde_json::json!({
        "name": model.name,
        "versions": versions,
        "platform": model.scorer.flavor(),
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {
            "target": signature.target.name,
            "task": signature.target.task,
            "classes": signature.target.classes,
            "source": model.source,
            "run_id": model.run_id,
        },
    })
}
