//! `registered-models/*` and `model-versions/*` endpoints.

use axum::extract::State;
use axum::Json;
use kiln_api::ApiError;
use kiln_store::{AliasActor, NameQuery, NewModelVersion, StoreError};
use kiln_types::{filter::Target, Tag};
use serde_json::{json, Value};

use super::{blocking, empty, filter, order_by, page_request, with_token, Params};
use crate::{uris, ApiResult, AppState};

pub(crate) async fn create_model(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let description = p.opt_str("description")?;
    let tags: Vec<Tag> = p.list("tags")?;
    let model = blocking(move || {
        s.store
            .create_registered_model(&name, description.as_deref(), &tags)
    })
    .await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub(crate) async fn get_model(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let model = blocking(move || s.store.get_registered_model(&name)).await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub(crate) async fn update_model(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let description = p.opt_str("description")?.unwrap_or_default();
    let model = blocking(move || s.store.update_registered_model(&name, &description)).await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub(crate) async fn rename_model(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let new_name = p.str("new_name")?;
    let model = blocking(move || s.store.rename_registered_model(&name, &new_name)).await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub(crate) async fn delete_model(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    blocking(move || s.store.delete_registered_model(&name)).await?;
    Ok(empty())
}

pub(crate) async fn search_models(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let query = NameQuery {
        filter: filter(&p, "filter", Target::RegisteredModels)?,
        order_by: order_by(&p, Target::RegisteredModels)?,
        page: page_request(&p, 100)?,
    };
    let page = blocking(move || s.store.search_registered_models(&query)).await?;
    let body = if page.items.is_empty() {
        json!({})
    } else {
        json!({ "registered_models": page.items })
    };
    Ok(with_token(body, page.next_page_token))
}

pub(crate) async fn set_model_tag(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let tag = Tag::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    blocking(move || s.store.set_registered_model_tag(&name, &tag)).await?;
    Ok(empty())
}

pub(crate) async fn delete_model_tag(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let key = p.str("key")?;
    blocking(move || s.store.delete_registered_model_tag(&name, &key)).await?;
    Ok(empty())
}

pub(crate) async fn latest_versions(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let stages = p.str_list("stages")?;
    let versions = blocking(move || s.store.get_latest_versions(&name, &stages)).await?;
    Ok(Json(if versions.is_empty() {
        json!({})
    } else {
        json!({ "model_versions": versions })
    }))
}

fn actor(p: &kiln_api::JsonBody) -> ApiResult<AliasActor> {
    Ok(AliasActor {
        user_id: p.opt_str("user_id")?,
        reason: p.opt_str("reason")?,
    })
}

pub(crate) async fn set_alias(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let alias = p.str("alias")?;
    let version = p.str("version")?;
    let actor = actor(&p)?;
    // kiln's extension for a conditional move (`kiln models promote/rollback` through a
    // server): only while the alias still points at `expected_version` ("" = at nothing),
    // checked and set in one transaction. MLflow's client never sends it.
    if let Some(expected) = p.opt_str("expected_version")? {
        let moved = blocking(move || {
            let expected = Some(expected.as_str()).filter(|e| !e.is_empty());
            s.store
                .set_alias_if(&name, &alias, &version, expected, &actor)
        })
        .await?;
        return Ok(Json(json!({ "moved": moved })));
    }
    blocking(move || s.store.set_alias(&name, &alias, &version, &actor)).await?;
    Ok(empty())
}

pub(crate) async fn delete_alias(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let alias = p.str("alias")?;
    let actor = actor(&p)?;
    blocking(move || s.store.delete_alias(&name, &alias, &actor)).await?;
    Ok(empty())
}

pub(crate) async fn get_by_alias(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let alias = p.str("alias")?;
    let version = blocking(move || s.store.get_model_version_by_alias(&name, &alias)).await?;
    Ok(Json(json!({ "model_version": version })))
}

/// Every move of `alias` on model `name`, oldest first: `{"events": [...]}`.
pub(crate) async fn alias_history(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let alias = p.str("alias")?;
    let events = blocking(move || s.store.alias_history(&name, &alias)).await?;
    Ok(Json(json!({ "events": events })))
}

/// The tag that marks a registered model or version as a prompt.
const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";
/// The sources MLflow's client and store write for a prompt version.
const PROMPT_SOURCES: [&str; 2] = ["dummy-source", "prompt-template"];

pub(crate) async fn create_version(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let source = p.str("source")?;
    let tags: Vec<kiln_types::Tag> = p.list("tags")?;
    // A prompt (MLflow's prompt registry: `mlflow.genai.register_prompt`) is a model version
    // tagged `mlflow.prompt.is_prompt=true` whose source is one of MLflow's placeholders; it
    // names nothing to load, so there is no artifact path to check.
    let is_prompt = tags
        .iter()
        .rev()
        .find(|t| t.key == PROMPT_TAG)
        .is_some_and(|t| t.value.eq_ignore_ascii_case("true"));
    if is_prompt {
        if !PROMPT_SOURCES.contains(&source.as_str()) {
            return Err(ApiError::invalid(format!(
                "Invalid prompt source: '{source}'. Prompt sources must use an MLflow placeholder."
            ))
            .into());
        }
    } else {
        uris::validate_source(&source, &s.blobs.uri())?;
    }
    let new = NewModelVersion {
        name: p.str("name")?,
        source,
        run_id: p.opt_str("run_id")?.filter(|r| !r.is_empty()),
        model_id: p.opt_str("model_id")?.filter(|m| !m.is_empty()),
        run_link: p.opt_str("run_link")?,
        description: p.opt_str("description")?,
        tags,
        user_id: None,
    };
    if let Some(run_id) = &new.run_id {
        if !kiln_types::is_valid_run_id(run_id) {
            return Err(ApiError::invalid(format!("Invalid run_id '{run_id}'")).into());
        }
    }
    let store = s.store.clone();
    let version = blocking(move || {
        let mut new = new;
        // `models:/m-<id>` is a logged model; any other `models:/<name>/<version>` is a copy.
        let mut logged = None;
        if let Some(rest) = new.source.strip_prefix("models:/") {
            let rest = rest.trim_end_matches('/');
            if kiln_types::is_valid_model_id(rest) {
                logged = Some(rest.to_string());
            } else if let Some((src_name, src_version)) = rest.rsplit_once('/') {
                // A copy must name a version that exists.
                store.get_model_version(src_name, src_version)?;
            }
        }
        // MLflow 3 clients send the logged model, not the run: record the model's source run.
        let model_id = new.model_id.clone().or(logged);
        if let Some(model_id) = model_id {
            let model = store.get_logged_model(&model_id)?;
            if new.run_id.is_none() {
                new.run_id = model.info.source_run_id;
            }
            new.model_id = Some(model_id);
        }
        store.create_model_version(&new)
    })
    .await?;
    Ok(Json(json!({ "model_version": version })))
}

pub(crate) async fn get_version(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    let mv = blocking(move || s.store.get_model_version(&name, &version)).await?;
    Ok(Json(json!({ "model_version": mv })))
}

pub(crate) async fn update_version(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    let description = p.opt_str("description")?.unwrap_or_default();
    let mv = blocking(move || s.store.update_model_version(&name, &version, &description)).await?;
    Ok(Json(json!({ "model_version": mv })))
}

pub(crate) async fn delete_version(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    blocking(move || s.store.delete_model_version(&name, &version)).await?;
    Ok(empty())
}

pub(crate) async fn search_versions(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let query = NameQuery {
        filter: filter(&p, "filter", Target::ModelVersions)?,
        order_by: order_by(&p, Target::ModelVersions)?,
        page: page_request(&p, 10_000)?,
    };
    let page = blocking(move || s.store.search_model_versions(&query)).await?;
    let body = if page.items.is_empty() {
        json!({})
    } else {
        json!({ "model_versions": page.items })
    };
    Ok(with_token(body, page.next_page_token))
}

pub(crate) async fn set_version_tag(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    let tag = Tag::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    blocking(move || s.store.set_model_version_tag(&name, &version, &tag)).await?;
    Ok(empty())
}

pub(crate) async fn delete_version_tag(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    let key = p.str("key")?;
    blocking(move || s.store.delete_model_version_tag(&name, &version, &key)).await?;
    Ok(empty())
}

pub(crate) async fn transition_stage(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    let stage = p.str("stage")?;
    let archive = p.opt_bool("archive_existing_versions")?.unwrap_or(false);
    let mv = blocking(move || {
        s.store
            .transition_model_version_stage(&name, &version, &stage, archive)
    })
    .await?;
    Ok(Json(json!({ "model_version": mv })))
}

/// How many `models:/<name>/<version>` sources a download URI follows.
const MAX_SOURCE_HOPS: usize = 8;

/// Where the version's files are: the logged model's artifact URI for `models:/m-…` sources, the
/// run's artifact path for `runs:/…`, otherwise the source itself.
pub(crate) async fn download_uri(
    State(s): State<AppState>,
    Params(p): Params,
) -> ApiResult<Json<Value>> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    let store = s.store.clone();
    let uri = blocking(move || {
        let mut mv = store.get_model_version(&name, &version)?;
        // A copied version (`copy_model_version`) names its source version: follow it.
        for _ in 0..MAX_SOURCE_HOPS {
            let Some(rest) = mv.source.strip_prefix("models:/") else {
                break;
            };
            let rest = rest.trim_end_matches('/');
            if kiln_types::is_valid_model_id(rest) {
                return Ok(store.get_logged_model(rest)?.info.artifact_uri);
            }
            let Some((src_name, src_version)) = rest.rsplit_once('/') else {
                break;
            };
            mv = store.get_model_version(src_name, src_version)?;
        }
        if mv.source.starts_with("models:/") {
            return Err(StoreError::InvalidParameter(format!(
                "Model version {name}/{version} leads through more than {MAX_SOURCE_HOPS} copies (last source `{}`)",
                mv.source
            )));
        }
        if let Some(rest) = mv.source.strip_prefix("runs:/") {
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            let run = store.get_run(run_id)?;
            return Ok(format!(
                "{}/{}",
                run.info.artifact_uri.trim_end_matches('/'),
                path
            ));
        }
        Ok(mv.source)
    })
    .await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}
