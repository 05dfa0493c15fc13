//! The artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`): streamed upload and download,
//! listing and deletion, every path confined by [`kiln_blob::BlobPath`].

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use kiln_blob::BlobPath;
use serde_json::{json, Value};

use super::{empty, Params};
use crate::{ApiResult, AppState};

pub(crate) fn routes() -> Router<AppState> {
    let p = kiln_api::ARTIFACTS_PREFIX;
    Router::new()
        .route(p, get(list))
        .route(&format!("{p}/"), get(list))
        .route(
            &format!("{p}/{{*path}}"),
            get(download).put(upload).delete(remove),
        )
        // The UI's ajax variant.
        .route("/ajax-api/2.0/mlflow-artifacts/artifacts", get(list))
        .route(
            "/ajax-api/2.0/mlflow-artifacts/artifacts/{*path}",
            get(download).put(upload).delete(remove),
        )
}

fn parse_path(path: &str) -> ApiResult<BlobPath> {
    Ok(BlobPath::parse(path)?)
}

/// The artifact path of a request: everything after `/artifacts/`, percent-decoded once. A path
/// that does not decode to UTF-8 (e.g. overlong `%c0%ae` dots) is rejected like any other
/// invalid path, with MLflow's JSON error rather than a plain-text one.
fn request_path(uri: &Uri) -> ApiResult<BlobPath> {
    let raw = uri.path();
    let rest = raw.split_once("/artifacts/").map_or("", |(_, r)| r);
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| {
            kiln_api::ApiError::invalid(format!(
                "Invalid artifact path `{rest}`: not valid UTF-8 after percent-decoding"
            ))
        })?;
    parse_path(&decoded)
}

async fn upload(State(s): State<AppState>, req: Request) -> ApiResult<Json<Value>> {
    let path = request_path(req.uri())?;
    if path.is_root() {
        return Err(kiln_api::ApiError::invalid("An artifact upload needs a file path").into());
    }
    let stream = req
        .into_body()
        .into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed();
    s.blobs.put(&path, stream).await?;
    Ok(empty())
}

/// The object, or with a single-range `Range: bytes=…` header only that part (206), so an
/// interrupted multi-GiB download can resume (`curl -C -`, `wget -c`). A range past the end is
/// a 416 naming the size; a header that is not one byte range gets the whole object.
async fn download(
    State(s): State<AppState>,
    uri: Uri,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let path = request_path(&uri)?;
    let mime = HeaderValue::from_static(guess_mime(path.as_str()));
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(kiln_blob::ByteRange::parse);
    if let Some(range) = range {
        return Ok(match s.blobs.get_range(&path, range).await? {
            Ok(part) => {
                let mut resp = Body::from_stream(part.stream).into_response();
                *resp.status_mut() = axum::http::StatusCode::PARTIAL_CONTENT;
                let h = resp.headers_mut();
                h.insert(header::CONTENT_TYPE, mime);
                h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                let content_range = format!(
                    "bytes {}-{}/{}",
                    part.range.start,
                    part.range.end - 1,
                    part.total
                );
                if let Ok(v) = HeaderValue::from_str(&content_range) {
                    h.insert(header::CONTENT_RANGE, v);
                }
                if let Ok(v) =
                    HeaderValue::from_str(&(part.range.end - part.range.start).to_string())
                {
                    h.insert(header::CONTENT_LENGTH, v);
                }
                resp
            }
            Err(total) => {
                let mut resp = Json(json!({
                    "error_code": "INVALID_PARAMETER_VALUE",
                    "message": format!("Range not satisfiable: the artifact has {total} bytes"),
                }))
                .into_response();
                *resp.status_mut() = axum::http::StatusCode::RANGE_NOT_SATISFIABLE;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                resp
            }
        });
    }
    let object = s.blobs.get(&path).await?;
    let mut resp = Body::from_stream(object.stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, mime);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(len) = HeaderValue::from_str(&object.size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, len);
    }
    Ok(resp)
}

async fn remove(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let path = request_path(&uri)?;
    if path.is_root() {
        return Err(kiln_api::ApiError::invalid("Refusing to delete the artifact root").into());
    }
    s.blobs.delete(&path).await?;
    Ok(empty())
}

async fn list(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let dir = parse_path(&p.opt_str("path")?.unwrap_or_default())?;
    let entries = s.blobs.list(&dir).await?;
    if entries.is_empty() {
        return Ok(Json(json!({})));
    }
    let files: Vec<Value> = entries
        .iter()
        .map(|e| {
            let name = e.path.file_name().unwrap_or_default();
            match e.size {
                Some(size) if !e.is_dir => {
                    json!({ "path": name, "is_dir": false, "file_size": size })
                }
                _ => json!({ "path": name, "is_dir": true }),
            }
        })
        .collect();
    Ok(Json(json!({ "files": files })))
}

fn guess_mime(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "log" | "md" | "py" | "yaml" | "yml" | "cfg" | "mlmodel" => "text/plain",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "csv" => "text/csv",
        _ => "application/octet-stream",
    }
}
