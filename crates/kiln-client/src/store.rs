//! [`RestStore`]: kiln's store traits over a tracking server's REST API, so everything written
//! against [`TrackingStore`] (the registry workflow, training's run logging) works with
//! `--backend-store-uri http://server:5000` as it does on a database.
//!
//! Every call is one MLflow REST request (`kiln gc` excepted: it must run where the database
//! is). Filters travel as filter strings, page positions as the server's page tokens, and the
//! server's MLflow error codes come back as the matching [`StoreError`]s.

use kiln_store::{
    AliasActor, ExperimentQuery, ExperimentStore, GcPlan, GcStore, LoggedModelQuery,
    LoggedModelStore, NameQuery, NewLoggedModel, NewModelVersion, NewRun, Page, PageRequest,
    RegistryStore, RunQuery, RunStore, RunUpdate, StoreError, StoreResult, TrackingStore,
};
use kiln_types::filter::OrderBy;
use kiln_types::{
    AliasEvent, DatasetInput, ErrorCode, Experiment, LoggedModel, LoggedModelStatus, Metric,
    ModelInput, ModelOutput, ModelVersion, PageToken, Param, RegisteredModel, Run, RunInfo, Tag,
    ViewType,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::{encode_segment, Client, ClientError};

/// The store traits over a tracking server (kiln's, or MLflow's for what it implements).
#[derive(Debug, Clone)]
pub struct RestStore {
    client: Client,
}

impl RestStore {
    /// A store for the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> StoreResult<Self> {
        Ok(Self {
            client: Client::new(base).map_err(to_store)?,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.client.base
    }
}

fn to_store(e: ClientError) -> StoreError {
    match &e {
        ClientError::Api(api) => match api.code {
            ErrorCode::ResourceDoesNotExist | ErrorCode::EndpointNotFound => {
                StoreError::NotFound(api.message.clone())
            }
            ErrorCode::ResourceAlreadyExists => StoreError::AlreadyExists(api.message.clone()),
            ErrorCode::InvalidParameterValue | ErrorCode::BadRequest => {
                StoreError::InvalidParameter(api.message.clone())
            }
            ErrorCode::InternalError => StoreError::Backend {
                message: format!("The tracking server failed: {}", api.message),
                source: Box::new(e),
            },
        },
        ClientError::Http { .. } => StoreError::Backend {
            message: "The tracking server did not answer".into(),
            source: Box::new(e),
        },
        ClientError::Protocol { .. } => StoreError::Backend {
            message: "The tracking server's answer was not what kiln expects (is it a kiln or MLflow server?)".into(),
            source: Box::new(e),
        },
    }
}

fn view(v: ViewType) -> &'static str {
    match v {
        ViewType::ActiveOnly => "ACTIVE_ONLY",
        ViewType::DeletedOnly => "DELETED_ONLY",
        ViewType::All => "ALL",
    }
}

fn token(page: &PageRequest) -> Option<String> {
    (page.offset > 0).then(|| PageToken::from_offset(page.offset).encode())
}

fn order_strings(order_by: &[OrderBy]) -> Vec<String> {
    order_by.iter().map(ToString::to_string).collect()
}

/// `{"<items>": [...], "next_page_token": "..."}` as a page (a missing list is empty).
fn page_of<T: DeserializeOwned>(mut v: Value, items: &str) -> StoreResult<Page<T>> {
    let next_page_token = v
        .get("next_page_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let list = v.get_mut(items).map(Value::take).unwrap_or(json!([]));
    let items = serde_json::from_value(list).map_err(|e| StoreError::Backend {
        message: format!("Unexpected `{items}` in the tracking server's answer: {e}"),
        source: Box::new(e),
    })?;
    Ok(Page {
        items,
        next_page_token,
    })
}

impl RestStore {
    fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> StoreResult<T> {
        self.client.get(path, query).map_err(to_store)
    }

    fn post(&self, path: &str, body: &Value) -> StoreResult<Value> {
        self.client.post(path, body).map_err(to_store)
    }

    fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> StoreResult<Value> {
        self.client.send(method, path, body).map_err(to_store)
    }

    fn field<T: DeserializeOwned>(&self, v: Value, key: &str) -> StoreResult<T> {
        self.client.field(v, key).map_err(to_store)
    }
}

impl ExperimentStore for RestStore {
    fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> StoreResult<String> {
        let mut body = json!({ "name": name, "tags": tags });
        if let Some(loc) = artifact_location {
            body["artifact_location"] = json!(loc);
        }
        let v = self.post("experiments/create", &body)?;
        self.field(v, "experiment_id")
    }

    fn get_experiment(&self, experiment_id: &str) -> StoreResult<Experiment> {
        let v: Value = self.get("experiments/get", &[("experiment_id", experiment_id)])?;
        self.field(v, "experiment")
    }

    fn get_experiment_by_name(&self, name: &str) -> StoreResult<Experiment> {
        let v: Value = self.get("experiments/get-by-name", &[("experiment_name", name)])?;
        self.field(v, "experiment")
    }

    fn search_experiments(&self, query: &ExperimentQuery) -> StoreResult<Page<Experiment>> {
        let mut body = json!({
            "max_results": query.page.max_results,
            "filter": query.filter.to_string(),
            "order_by": order_strings(&query.order_by),
            "view_type": view(query.view),
        });
        if let Some(t) = token(&query.page) {
            body["page_token"] = json!(t);
        }
        page_of(self.post("experiments/search", &body)?, "experiments")
    }

    fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> StoreResult<()> {
        self.post(
            "experiments/update",
            &json!({ "experiment_id": experiment_id, "new_name": new_name }),
        )?;
        Ok(())
    }

    fn delete_experiment(&self, experiment_id: &str) -> StoreResult<()> {
        self.post(
            "experiments/delete",
            &json!({ "experiment_id": experiment_id }),
        )?;
        Ok(())
    }

    fn restore_experiment(&self, experiment_id: &str) -> StoreResult<()> {
        self.post(
            "experiments/restore",
            &json!({ "experiment_id": experiment_id }),
        )?;
        Ok(())
    }

    fn set_experiment_tag(&self, experiment_id: &str, tag: &Tag) -> StoreResult<()> {
        self.post(
            "experiments/set-experiment-tag",
            &json!({ "experiment_id": experiment_id, "key": tag.key, "value": tag.value }),
        )?;
        Ok(())
    }

    fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> StoreResult<()> {
        self.post(
            "experiments/delete-experiment-tag",
            &json!({ "experiment_id": experiment_id, "key": key }),
        )?;
        Ok(())
    }
}

impl RunStore for RestStore {
    fn create_run(&self, new: &NewRun) -> StoreResult<Run> {
        let mut body = json!({
            "experiment_id": new.experiment_id,
            "user_id": new.user_id,
            "start_time": new.start_time,
            "tags": new.tags,
        });
        if let Some(name) = &new.run_name {
            body["run_name"] = json!(name);
        }
        let v = self.post("runs/create", &body)?;
        self.field(v, "run")
    }

    fn get_run(&self, run_id: &str) -> StoreResult<Run> {
        let v: Value = self.get("runs/get", &[("run_id", run_id)])?;
        self.field(v, "run")
    }

    fn update_run(&self, run_id: &str, update: &RunUpdate) -> StoreResult<RunInfo> {
        let mut body = json!({ "run_id": run_id });
        if let Some(s) = update.status {
            body["status"] = json!(s.as_str());
        }
        if let Some(t) = update.end_time {
            body["end_time"] = json!(t);
        }
        if let Some(n) = &update.run_name {
            body["run_name"] = json!(n);
        }
        let v = self.post("runs/update", &body)?;
        self.field(v, "run_info")
    }

    fn delete_run(&self, run_id: &str) -> StoreResult<()> {
        self.post("runs/delete", &json!({ "run_id": run_id }))?;
        Ok(())
    }

    fn restore_run(&self, run_id: &str) -> StoreResult<()> {
        self.post("runs/restore", &json!({ "run_id": run_id }))?;
        Ok(())
    }

    fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> StoreResult<()> {
        self.post(
            "runs/log-batch",
            &json!({ "run_id": run_id, "metrics": metrics, "params": params, "tags": tags }),
        )?;
        Ok(())
    }

    fn delete_tag(&self, run_id: &str, key: &str) -> StoreResult<()> {
        self.post("runs/delete-tag", &json!({ "run_id": run_id, "key": key }))?;
        Ok(())
    }

    fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> StoreResult<()> {
        self.post(
            "runs/log-inputs",
            &json!({ "run_id": run_id, "datasets": datasets }),
        )?;
        Ok(())
    }

    fn log_model_inputs(&self, run_id: &str, models: &[ModelInput]) -> StoreResult<()> {
        self.post(
            "runs/log-inputs",
            &json!({ "run_id": run_id, "models": models }),
        )?;
        Ok(())
    }

    fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> StoreResult<()> {
        self.post(
            "runs/outputs",
            &json!({ "run_id": run_id, "models": models }),
        )?;
        Ok(())
    }

    fn get_metric_history(
        &self,
        run_id: &str,
        key: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<Metric>> {
        let max = page.max_results.to_string();
        let tok = token(page).unwrap_or_default();
        let v: Value = self.get(
            "metrics/get-history",
            &[
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", &max),
                ("page_token", &tok),
            ],
        )?;
        page_of(v, "metrics")
    }

    fn search_runs(&self, query: &RunQuery) -> StoreResult<Page<Run>> {
        let mut body = json!({
            "experiment_ids": query.experiment_ids,
            "filter": query.filter.to_string(),
            "order_by": order_strings(&query.order_by),
            "max_results": query.page.max_results,
            "run_view_type": view(query.view),
        });
        if let Some(t) = token(&query.page) {
            body["page_token"] = json!(t);
        }
        page_of(self.post("runs/search", &body)?, "runs")
    }
}

impl LoggedModelStore for RestStore {
    fn create_logged_model(&self, new: &NewLoggedModel) -> StoreResult<LoggedModel> {
        let mut body = json!({
            "experiment_id": new.experiment_id,
            "params": new.params,
            "tags": new.tags,
        });
        for (k, v) in [
            ("name", &new.name),
            ("source_run_id", &new.source_run_id),
            ("model_type", &new.model_type),
        ] {
            if let Some(v) = v {
                body[k] = json!(v);
            }
        }
        let v = self.post("logged-models", &body)?;
        self.field(v, "model")
    }

    fn get_logged_model(&self, model_id: &str) -> StoreResult<LoggedModel> {
        // The store trait returns deleted models too (with their lifecycle stage), as the SQL
        // stores do; the REST endpoint hides them unless asked.
        let v: Value = self.get(
            &format!("logged-models/{}", encode_segment(model_id)),
            &[("allow_deleted", "true")],
        )?;
        self.field(v, "model")
    }

    fn set_logged_model_status(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> StoreResult<LoggedModel> {
        let v = self.send(
            reqwest::Method::PATCH,
            &format!("logged-models/{}", encode_segment(model_id)),
            &json!({ "model_id": model_id, "status": status.as_str() }),
        )?;
        self.field(v, "model")
    }

    fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> StoreResult<()> {
        self.post(
            &format!("logged-models/{}/params", encode_segment(model_id)),
            &json!({ "model_id": model_id, "params": params }),
        )?;
        Ok(())
    }

    fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> StoreResult<()> {
        self.send(
            reqwest::Method::PATCH,
            &format!("logged-models/{}/tags", encode_segment(model_id)),
            &json!({ "model_id": model_id, "tags": tags }),
        )?;
        Ok(())
    }

    fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> StoreResult<()> {
        self.send(
            reqwest::Method::DELETE,
            &format!(
                "logged-models/{}/tags/{}",
                encode_segment(model_id),
                encode_segment(key)
            ),
            &json!({}),
        )?;
        Ok(())
    }

    fn delete_logged_model(&self, model_id: &str) -> StoreResult<()> {
        self.send(
            reqwest::Method::DELETE,
            &format!("logged-models/{}", encode_segment(model_id)),
            &json!({}),
        )?;
        Ok(())
    }

    fn search_logged_models(&self, query: &LoggedModelQuery) -> StoreResult<Page<LoggedModel>> {
        let mut body = json!({
            "experiment_ids": query.experiment_ids,
            "filter": query.filter.to_string(),
            "order_by": order_strings(&query.order_by),
            "max_results": query.page.max_results,
        });
        if let Some(t) = token(&query.page) {
            body["page_token"] = json!(t);
        }
        page_of(self.post("logged-models/search", &body)?, "models")
    }
}

impl RestStore {
    /// The registry searches are GETs with the query in the URL.
    fn name_search(&self, path: &str, query: &NameQuery) -> StoreResult<Value> {
        let max = query.page.max_results.to_string();
        let filter = query.filter.to_string();
        let tok = token(&query.page).unwrap_or_default();
        let order = order_strings(&query.order_by);
        let mut q: Vec<(&str, &str)> = vec![("max_results", &max), ("filter", &filter)];
        if !tok.is_empty() {
            q.push(("page_token", &tok));
        }
        for o in &order {
            q.push(("order_by", o));
        }
        self.get(path, &q)
    }
}

impl RegistryStore for RestStore {
    fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[Tag],
    ) -> StoreResult<RegisteredModel> {
        let mut body = json!({ "name": name, "tags": tags });
        if let Some(d) = description {
            body["description"] = json!(d);
        }
        let v = self.post("registered-models/create", &body)?;
        self.field(v, "registered_model")
    }

    fn get_registered_model(&self, name: &str) -> StoreResult<RegisteredModel> {
        let v: Value = self.get("registered-models/get", &[("name", name)])?;
        self.field(v, "registered_model")
    }

    fn update_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> StoreResult<RegisteredModel> {
        let v = self.send(
            reqwest::Method::PATCH,
            "registered-models/update",
            &json!({ "name": name, "description": description }),
        )?;
        self.field(v, "registered_model")
    }

    fn rename_registered_model(&self, name: &str, new_name: &str) -> StoreResult<RegisteredModel> {
        let v = self.post(
            "registered-models/rename",
            &json!({ "name": name, "new_name": new_name }),
        )?;
        self.field(v, "registered_model")
    }

    fn delete_registered_model(&self, name: &str) -> StoreResult<()> {
        self.send(
            reqwest::Method::DELETE,
            "registered-models/delete",
            &json!({ "name": name }),
        )?;
        Ok(())
    }

    fn search_registered_models(&self, query: &NameQuery) -> StoreResult<Page<RegisteredModel>> {
        let v = self.name_search("registered-models/search", query)?;
        page_of(v, "registered_models")
    }

    fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> StoreResult<()> {
        self.post(
            "registered-models/set-tag",
            &json!({ "name": name, "key": tag.key, "value": tag.value }),
        )?;
        Ok(())
    }

    fn delete_registered_model_tag(&self, name: &str, key: &str) -> StoreResult<()> {
        self.send(
            reqwest::Method::DELETE,
            "registered-models/delete-tag",
            &json!({ "name": name, "key": key }),
        )?;
        Ok(())
    }

    fn create_model_version(&self, new: &NewModelVersion) -> StoreResult<ModelVersion> {
        let mut body = json!({ "name": new.name, "source": new.source, "tags": new.tags });
        for (k, v) in [
            ("run_id", &new.run_id),
            ("model_id", &new.model_id),
            ("run_link", &new.run_link),
            ("description", &new.description),
            ("user_id", &new.user_id),
        ] {
            if let Some(v) = v {
                body[k] = json!(v);
            }
        }
        let v = self.post("model-versions/create", &body)?;
        self.field(v, "model_version")
    }

    fn get_model_version(&self, name: &str, version: &str) -> StoreResult<ModelVersion> {
        let v: Value = self.get(
            "model-versions/get",
            &[("name", name), ("version", version)],
        )?;
        self.field(v, "model_version")
    }

    fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: &str,
    ) -> StoreResult<ModelVersion> {
        let v = self.send(
            reqwest::Method::PATCH,
            "model-versions/update",
            &json!({ "name": name, "version": version, "description": description }),
        )?;
        self.field(v, "model_version")
    }

    fn delete_model_version(&self, name: &str, version: &str) -> StoreResult<()> {
        self.send(
            reqwest::Method::DELETE,
            "model-versions/delete",
            &json!({ "name": name, "version": version }),
        )?;
        Ok(())
    }

    fn transition_model_version_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> StoreResult<ModelVersion> {
        let v = self.post(
            "model-versions/transition-stage",
            &json!({ "name": name, "version": version, "stage": stage,
                     "archive_existing_versions": archive_existing }),
        )?;
        self.field(v, "model_version")
    }

    fn get_latest_versions(&self, name: &str, stages: &[String]) -> StoreResult<Vec<ModelVersion>> {
        let v = self.post(
            "registered-models/get-latest-versions",
            &json!({ "name": name, "stages": stages }),
        )?;
        Ok(page_of(v, "model_versions")?.items)
    }

    fn search_model_versions(&self, query: &NameQuery) -> StoreResult<Page<ModelVersion>> {
        let v = self.name_search("model-versions/search", query)?;
        page_of(v, "model_versions")
    }

    fn set_model_version_tag(&self, name: &str, version: &str, tag: &Tag) -> StoreResult<()> {
        self.post(
            "model-versions/set-tag",
            &json!({ "name": name, "version": version, "key": tag.key, "value": tag.value }),
        )?;
        Ok(())
    }

    fn delete_model_version_tag(&self, name: &str, version: &str, key: &str) -> StoreResult<()> {
        self.send(
            reqwest::Method::DELETE,
            "model-versions/delete-tag",
            &json!({ "name": name, "version": version, "key": key }),
        )?;
        Ok(())
    }

    fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        actor: &AliasActor,
    ) -> StoreResult<()> {
        let mut body = json!({ "name": name, "alias": alias, "version": version });
        actor_fields(&mut body, actor);
        self.post("registered-models/alias", &body)?;
        Ok(())
    }

    /// Against a kiln server, one conditional request (`expected_version`, checked and set in
    /// one transaction there). MLflow's server ignores that field and moves the alias anyway:
    /// the check made just before is then all there is, as in the trait's default.
    fn set_alias_if(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        expected: Option<&str>,
        actor: &AliasActor,
    ) -> StoreResult<bool> {
        if self.alias_version(name, alias)?.as_deref() != expected {
            return Ok(false);
        }
        let mut body = json!({
            "name": name,
            "alias": alias,
            "version": version,
            "expected_version": expected.unwrap_or(""),
        });
        actor_fields(&mut body, actor);
        let answer: Value = self.post("registered-models/alias", &body)?;
        Ok(answer.get("moved").and_then(Value::as_bool).unwrap_or(true))
    }

    fn delete_alias(&self, name: &str, alias: &str, actor: &AliasActor) -> StoreResult<()> {
        let mut body = json!({ "name": name, "alias": alias });
        actor_fields(&mut body, actor);
        self.send(reqwest::Method::DELETE, "registered-models/alias", &body)?;
        Ok(())
    }

    fn get_model_version_by_alias(&self, name: &str, alias: &str) -> StoreResult<ModelVersion> {
        let v: Value = self.get(
            "registered-models/alias",
            &[("name", name), ("alias", alias)],
        )?;
        self.field(v, "model_version")
    }

    fn alias_history(&self, name: &str, alias: &str) -> StoreResult<Vec<AliasEvent>> {
        let v: Value = self.get(
            "registered-models/alias/history",
            &[("name", name), ("alias", alias)],
        )?;
        Ok(page_of(v, "events")?.items)
    }
}

/// Who moved an alias and why (kiln's server keeps them in the alias history; MLflow ignores
/// fields it does not know).
fn actor_fields(body: &mut Value, actor: &AliasActor) {
    if let Some(u) = &actor.user_id {
        body["user_id"] = json!(u);
    }
    if let Some(r) = &actor.reason {
        body["reason"] = json!(r);
    }
}

fn gc_refused() -> StoreError {
    StoreError::InvalidParameter(
        "`kiln gc` removes rows and artifacts for good, so it runs against the store itself, not a \
         tracking server URL: pass --backend-store-uri sqlite:///… or postgresql://… and the \
         server's --artifacts-destination"
            .into(),
    )
}

impl GcStore for RestStore {
    fn collectable(&self, _older_than_ms: Option<i64>) -> StoreResult<GcPlan> {
        Err(gc_refused())
    }

    fn purge(&self, _plan: &GcPlan) -> StoreResult<()> {
        Err(gc_refused())
    }
}

impl TrackingStore for RestStore {
    fn kind(&self) -> &'static str {
        "http"
    }
}
