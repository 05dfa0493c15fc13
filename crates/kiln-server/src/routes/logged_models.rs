//! MLflow 3 `logged-models` endpoints.

use axum::extract::{Path, State};
use axum::Json;
use kiln_api::ApiError;
use kiln_store::{LoggedModelQuery, NewLoggedModel, StoreError};
use kiln_types::{
    filter::{Entity, OrderBy, Target},
    LifecycleStage, LoggedModelStatus, Param, Tag,
};
use serde_json::{json, Value};

use super::{blocking, empty, filter, page_request, with_token, Params};
use crate::{ApiResult, AppState};

fn check_id(model_id: &str) -> ApiResult<()> {
    if kiln_types::is_valid_model_id(model_id) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid logged model ID '{model_id}': expected m-<32 hex digits>"
        ))
        .into())
    }
}

pub(crate) async fn create(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let new = NewLoggedModel {
        experiment_id: p.str("experiment_id")?,
        name: p.opt_str("name")?,
        source_run_id: p.opt_str("source_run_id")?.filter(|r| !r.is_empty()),
        model_type: p.opt_str("model_type")?,
        params: p.list::<Param>("params")?,
        tags: p.list::<Tag>("tags")?,
    };
    let model = blocking(move || s.store.create_logged_model(&new)).await?;
    Ok(Json(json!({ "model": model })))
}

/// `GET logged-models/{id}`: a deleted model is not found unless `?allow_deleted=true`, as on
/// MLflow's server (its client asks for that when it resolves a deleted model's artifacts).
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    check_id(&model_id)?;
    // Through `Params`, so a malformed or repeated value is a 400 in MLflow's error shape.
    let allow_deleted = p.opt_bool("allow_deleted")?.unwrap_or(false);
    let model = blocking(move || {
        let model = s.store.get_logged_model(&model_id)?;
        if model.info.lifecycle_stage == LifecycleStage::Deleted && !allow_deleted {
            return Err(StoreError::not_found(format!(
                "Logged model with ID '{model_id}' not found."
            )));
        }
        Ok(model)
    })
    .await?;
    Ok(Json(json!({ "model": model })))
}

pub(crate) async fn finalize(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    check_id(&model_id)?;
    // Required, as on MLflow's server (its client always sends it).
    let raw = p.str("status")?;
    let status = LoggedModelStatus::parse(&raw)
        .ok_or_else(|| ApiError::invalid(format!("Invalid logged model status '{raw}'")))?;
    let model = blocking(move || s.store.set_logged_model_status(&model_id, status)).await?;
    Ok(Json(json!({ "model": model })))
}

pub(crate) async fn delete(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_id(&model_id)?;
    blocking(move || s.store.delete_logged_model(&model_id)).await?;
    Ok(empty())
}

pub(crate) async fn set_tags(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    check_id(&model_id)?;
    let tags: Vec<Tag> = p.list("tags")?;
    blocking(move || s.store.set_logged_model_tags(&model_id, &tags)).await?;
    Ok(empty())
}

pub(crate) async fn log_params(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    check_id(&model_id)?;
    let params: Vec<kiln_types::Param> = p.list("params")?;
    blocking(move || s.store.log_logged_model_params(&model_id, &params)).await?;
    Ok(empty())
}

pub(crate) async fn delete_tag(
    State(s): State<AppState>,
    Path((model_id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    check_id(&model_id)?;
    blocking(move || s.store.delete_logged_model_tag(&model_id, &key)).await?;
    Ok(empty())
}

/// MLflow 3 sends `order_by` as objects (`{"field_name": …, "ascending": …}`); strings work too.
fn order_by(p: &kiln_api::JsonBody) -> ApiResult<Vec<OrderBy>> {
    let Some(Value::Array(items)) = p.get("order_by") else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(kiln_types::filter::parse_order_by(s, Target::LoggedModels)?),
            Value::Object(o) => {
                let field = o
                    .get("field_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let ascending = o.get("ascending").and_then(Value::as_bool).unwrap_or(true);
                let (entity, key) = match field.split_once('.') {
                    Some(("metrics", k)) => (Entity::Metric, k),
                    _ => (Entity::Attribute, field),
                };
                let key = match key {
                    "creation_time" => "creation_timestamp",
                    "last_updated_time" => "last_updated_timestamp",
                    k => k,
                };
                Ok(OrderBy {
                    entity,
                    key: key.to_string(),
                    ascending,
                })
            }
            _ => Err(ApiError::invalid("Invalid order_by entry for logged models").into()),
        })
        .collect()
}

pub(crate) async fn search(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let query = LoggedModelQuery {
        experiment_ids: p.str_list("experiment_ids")?,
        filter: filter(&p, "filter", Target::LoggedModels)?,
        order_by: order_by(&p)?,
        page: page_request(&p, 100)?,
    };
    let page = blocking(move || s.store.search_logged_models(&query)).await?;
    let body = if page.items.is_empty() {
        json!({})
    } else {
        json!({ "models": page.items })
    };
    Ok(with_token(body, page.next_page_token))
}
