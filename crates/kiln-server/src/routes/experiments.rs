//! `experiments/*` endpoints.

use axum::extract::State;
use axum::Json;
use kiln_store::ExperimentQuery;
use kiln_types::{filter::Target, Tag, ViewType};
use serde_json::{json, Value};

use super::{blocking, empty, filter, order_by, page_request, with_token, Params};
use crate::{uris, ApiResult, AppState};

pub(crate) async fn create(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let location = match p.opt_str("artifact_location")?.filter(|l| !l.is_empty()) {
        Some(l) => Some(uris::validate_artifact_location(&l, &s.blobs.uri())?),
        None => None,
    };
    let tags: Vec<Tag> = p.list("tags")?;
    let id = blocking(move || s.store.create_experiment(&name, location.as_deref(), &tags)).await?;
    Ok(Json(json!({ "experiment_id": id })))
}

pub(crate) async fn get(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let id = p.str("experiment_id")?;
    let exp = blocking(move || s.store.get_experiment(&id)).await?;
    Ok(Json(json!({ "experiment": exp })))
}

pub(crate) async fn get_by_name(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("experiment_name")?;
    let exp = blocking(move || s.store.get_experiment_by_name(&name)).await?;
    Ok(Json(json!({ "experiment": exp })))
}

pub(crate) async fn search(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let view = match p.opt_str("view_type")? {
        None => ViewType::ActiveOnly,
        Some(v) => ViewType::parse(&v)
            .ok_or_else(|| kiln_api::ApiError::invalid(format!("Invalid view_type '{v}'")))?,
    };
    let query = ExperimentQuery {
        filter: filter(&p, "filter", Target::Experiments)?,
        order_by: order_by(&p, Target::Experiments)?,
        view,
        page: page_request(&p, 1000)?,
    };
    let page = blocking(move || s.store.search_experiments(&query)).await?;
    let body = if page.items.is_empty() {
        json!({})
    } else {
        json!({ "experiments": page.items })
    };
    Ok(with_token(body, page.next_page_token))
}

pub(crate) async fn update(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let id = p.str("experiment_id")?;
    let name = p.str("new_name")?;
    blocking(move || s.store.rename_experiment(&id, &name)).await?;
    Ok(empty())
}

pub(crate) async fn delete(State(s): State<AppState>, Params(p): Params) -> ApiResult<Json<Value>> {
    let id = p.str("experiment_id")?;
    blocking(move || s.store.delete_experiment(&id)).await?;
    Ok(empty())
}

pub(crate) async fn restore(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = p.str("experiment_id")?;
    blocking(move || s.store.restore_experiment(&id)).await?;
    Ok(empty())
}

pub(crate) async fn set_tag(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = p.str("experiment_id")?;
    let tag = Tag::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    blocking(move || s.store.set_experiment_tag(&id, &tag)).await?;
    Ok(empty())
}

pub(crate) async fn delete_tag(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let id = p.str("experiment_id")?;
    let key = p.str("key")?;
    blocking(move || s.store.delete_experiment_tag(&id, &key)).await?;
    Ok(empty())
}
