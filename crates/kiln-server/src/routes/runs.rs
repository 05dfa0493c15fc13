//! `runs/*` and `metrics/*` endpoints.

use axum::extract::State;
use axum::Json;
use kiln_api::ApiError;
use kiln_store::{NewRun, RunQuery, RunUpdate};
use kiln_types::{
    filter::Target, DatasetInput, ErrorCode, Metric, ModelInput, ModelOutput, Param, RunStatus,
    Tag, ViewType,
};
use serde_json::{json, Value};

use super::{blocking, empty, filter, order_by, page_request, read_body, with_token, Params};
use crate::{ApiResult, AppState};

fn run_id(p: &kiln_api::JsonBody) -> ApiResult<String> {
    Ok(p.str_any(&["run_id", "run_uuid"])?)
}

pub(crate) async fn create(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let new = NewRun {
        experiment_id: p
            .opt_str("experiment_id")?
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "0".into()),
        user_id: p.opt_str("user_id")?.unwrap_or_default(),
        run_name: p.opt_str("run_name")?,
        start_time: p.opt_i64("start_time")?.unwrap_or_else(kiln_types::now_ms),
        tags: p.list("tags")?,
    };
    let run = blocking(move || s.store.create_run(&new)).await?;
    Ok(Json(json!({ "run": run })))
}

pub(crate) async fn get(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let run = blocking(move || s.store.get_run(&id)).await?;
    Ok(Json(json!({ "run": run })))
}

pub(crate) async fn update(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let status = match p.opt_str("status")? {
        None => None,
        Some(st) => Some(
            RunStatus::parse(&st)
                .ok_or_else(|| ApiError::invalid(format!("Invalid run status '{st}'")))?,
        ),
    };
    let update = RunUpdate {
        status,
        end_time: p.opt_i64("end_time")?,
        run_name: p.opt_str("run_name")?,
    };
    let info = blocking(move || s.store.update_run(&id, &update)).await?;
    Ok(Json(json!({ "run_info": info })))
}

pub(crate) async fn delete(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    blocking(move || s.store.delete_run(&id)).await?;
    Ok(empty())
}

pub(crate) async fn restore(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    blocking(move || s.store.restore_run(&id)).await?;
    Ok(empty())
}

/// A log-batch: done on this thread when the store can do it without waiting (the embedded
/// store's writer is free: one short commit), else on a blocking thread. At concurrency 1 that
/// saves two thread hand-offs per request.
async fn log_batch_now_or_blocking(
    s: &AppState,
    id: String,
    metrics: Vec<Metric>,
    params: Vec<Param>,
    tags: Vec<Tag>,
) -> ApiResult<()> {
    if let Some(done) = s.store.try_log_batch_now(&id, &metrics, &params, &tags) {
        return done.map_err(Into::into);
    }
    let store = s.store.clone();
    blocking(move || store.log_batch(&id, &metrics, &params, &tags)).await
}

pub(crate) async fn log_metric(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let value = p
        .opt_f64("value")?
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'value'."))?;
    let mut metric = Metric::new(
        p.str("key")?,
        value,
        p.opt_i64("timestamp")?.unwrap_or_else(kiln_types::now_ms),
        p.opt_i64("step")?.unwrap_or(0),
    );
    metric.model_id = p.opt_str("model_id")?;
    metric.dataset_name = p.opt_str("dataset_name")?;
    metric.dataset_digest = p.opt_str("dataset_digest")?;
    log_batch_now_or_blocking(&s, id, vec![metric], Vec::new(), Vec::new()).await?;
    Ok(empty())
}

pub(crate) async fn log_param(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let param = Param {
        key: p.str("key")?,
        value: p.opt_str("value")?.unwrap_or_default(),
    };
    log_batch_now_or_blocking(&s, id, Vec::new(), vec![param], Vec::new()).await?;
    Ok(empty())
}

pub(crate) async fn set_tag(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let tag = Tag::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    log_batch_now_or_blocking(&s, id, Vec::new(), Vec::new(), vec![tag]).await?;
    Ok(empty())
}

pub(crate) async fn delete_tag(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let key = p.str("key")?;
    blocking(move || s.store.delete_tag(&id, &key)).await?;
    Ok(empty())
}

/// A well-formed log-batch body, decoded straight into typed lists (the hot ingest path: no
/// intermediate JSON tree). Anything else goes through [`Params`] for its precise errors.
#[derive(serde::Deserialize)]
struct LogBatchBody {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(default)]
    metrics: Vec<Metric>,
    #[serde(default)]
    params: Vec<Param>,
    #[serde(default)]
    tags: Vec<Tag>,
}

pub(crate) async fn log_batch(
    State(s): State<AppState>,
    req: axum::extract::Request,
) -> ApiResult<Json<Value>> {
    let (query, bytes) = read_body(req).await?;
    // The fast path skips `Params`, so it makes the same NUL check `Params` makes.
    let fast = if query.is_empty() && !super::has_escaped_nul(&bytes) {
        serde_json::from_slice::<LogBatchBody>(&bytes)
            .ok()
            .and_then(|b| {
                let id = [b.run_id, b.run_uuid]
                    .into_iter()
                    .flatten()
                    .find(|id| !id.is_empty())?;
                Some((id, b.metrics, b.params, b.tags))
            })
    } else {
        None
    };
    let (id, metrics, params, tags) = match fast {
        Some(parts) => parts,
        None => {
            let Params(p) = Params::from_parts(&query, &bytes)?;
            let id = run_id(&p)?;
            let metrics: Vec<Metric> = p.list("metrics")?;
            let params: Vec<Param> = p.list("params")?;
            let tags: Vec<Tag> = p.list("tags")?;
            (id, metrics, params, tags)
        }
    };
    log_batch_now_or_blocking(&s, id, metrics, params, tags).await?;
    Ok(empty())
}

pub(crate) async fn log_inputs(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let datasets: Vec<DatasetInput> = p.list("datasets")?;
    let models: Vec<ModelInput> = p.list("models")?;
    blocking(move || {
        s.store.log_inputs(&id, &datasets)?;
        if models.is_empty() {
            Ok(())
        } else {
            s.store.log_model_inputs(&id, &models)
        }
    })
    .await?;
    Ok(empty())
}

pub(crate) async fn log_outputs(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let models: Vec<ModelOutput> = p.list("models")?;
    blocking(move || s.store.log_outputs(&id, &models)).await?;
    Ok(empty())
}

/// MLflow 2's `log-model` only recorded a JSON blob in a tag; accept and ignore it.
pub(crate) async fn log_model_legacy(Params(p): Params) -> ApiResult<Json<Value>> {
    run_id(&p)?;
    Ok(empty())
}

pub(crate) async fn search(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let view = match p.opt_str("run_view_type")? {
        None => ViewType::ActiveOnly,
        Some(v) => ViewType::parse(&v)
            .ok_or_else(|| ApiError::invalid(format!("Invalid run_view_type '{v}'")))?,
    };
    let query = RunQuery {
        experiment_ids: p.str_list("experiment_ids")?,
        filter: filter(&p, "filter", Target::Runs)?,
        order_by: order_by(&p, Target::Runs)?,
        view,
        page: page_request(&p, 1000)?,
    };
    let page = blocking(move || s.store.search_runs(&query)).await?;
    let body = if page.items.is_empty() {
        json!({})
    } else {
        json!({ "runs": page.items })
    };
    Ok(with_token(body, page.next_page_token))
}

pub(crate) async fn get_history(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = run_id(&p)?;
    let key = p.str("metric_key")?;
    let page = page_request(&p, 25_000)?;
    // MLflow's server answers a run it does not know with an empty history (its client's
    // get_metric_history then returns []), not RESOURCE_DOES_NOT_EXIST.
    let result = match blocking(move || s.store.get_metric_history(&id, &key, &page)).await {
        Err(e) if e.0.code == ErrorCode::ResourceDoesNotExist => return Ok(Json(json!({}))),
        other => other?,
    };
    let body = if result.items.is_empty() {
        json!({})
    } else {
        json!({ "metrics": result.items })
    };
    Ok(with_token(body, result.next_page_token))
}
