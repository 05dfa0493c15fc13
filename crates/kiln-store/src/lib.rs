//! Store traits for kiln's metadata: [`ExperimentStore`], [`RunStore`], [`LoggedModelStore`],
//! [`RegistryStore`] and [`GcStore`], bundled as [`TrackingStore`]. Every backend (SQLite,
//! PostgreSQL, the HTTP client) implements them, and [`contract`] is the one test suite they
//! all must pass.
//!
//! Traits are synchronous: SQL backends do blocking I/O, and async callers move calls onto a
//! blocking thread.
//!
//! ```
//! use kiln_store::StoreError;
//! use kiln_types::ErrorCode;
//! let err = StoreError::not_found("Run with id=abc not found");
//! assert_eq!(err.code(), ErrorCode::ResourceDoesNotExist);
//! ```

pub mod contract;
mod error;
mod query;

pub use error::{StoreError, StoreResult};
pub use query::*;

use kiln_types::{
    AliasEvent, DatasetInput, Experiment, LoggedModel, LoggedModelStatus, Metric, ModelInput,
    ModelOutput, ModelVersion, Param, RegisteredModel, Run, RunInfo, RunStatus, Tag,
};

/// Experiments: named groups of runs.
pub trait ExperimentStore: Send + Sync {
    /// Create an experiment; `artifact_location` defaults to `mlflow-artifacts:/<id>`.
    fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> StoreResult<String>;
    fn get_experiment(&self, experiment_id: &str) -> StoreResult<Experiment>;
    fn get_experiment_by_name(&self, name: &str) -> StoreResult<Experiment>;
    fn search_experiments(&self, query: &ExperimentQuery) -> StoreResult<Page<Experiment>>;
    fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> StoreResult<()>;
    fn delete_experiment(&self, experiment_id: &str) -> StoreResult<()>;
    fn restore_experiment(&self, experiment_id: &str) -> StoreResult<()>;
    fn set_experiment_tag(&self, experiment_id: &str, tag: &Tag) -> StoreResult<()>;
    fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> StoreResult<()>;
}

/// Runs: params, metrics (history and latest), tags, inputs and outputs.
pub trait RunStore: Send + Sync {
    fn create_run(&self, new: &NewRun) -> StoreResult<Run>;
    fn get_run(&self, run_id: &str) -> StoreResult<Run>;
    fn update_run(&self, run_id: &str, update: &RunUpdate) -> StoreResult<RunInfo>;
    fn delete_run(&self, run_id: &str) -> StoreResult<()>;
    fn restore_run(&self, run_id: &str) -> StoreResult<()>;
    /// Apply metrics, params and tags atomically. A param re-logged with a different value fails
    /// the whole batch.
    fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> StoreResult<()>;
    /// [`log_batch`](Self::log_batch) done right away when that needs no waiting (the embedded
    /// store's writer is free), else `None`: an async caller then moves the call to a blocking
    /// thread, and an idle server saves that hand-off on every small write.
    fn try_log_batch_now(
        &self,
        _run_id: &str,
        _metrics: &[Metric],
        _params: &[Param],
        _tags: &[Tag],
    ) -> Option<StoreResult<()>> {
        None
    }
    fn delete_tag(&self, run_id: &str, key: &str) -> StoreResult<()>;
    fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> StoreResult<()>;
    fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> StoreResult<()>;
    /// Logged models a run read (MLflow 3's `models` of `runs/log-inputs`); shown in the run's
    /// `inputs.model_inputs`.
    fn log_model_inputs(&self, run_id: &str, models: &[ModelInput]) -> StoreResult<()>;
    fn get_metric_history(
        &self,
        run_id: &str,
        key: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<Metric>>;
    fn search_runs(&self, query: &RunQuery) -> StoreResult<Page<Run>>;
}

/// MLflow 3 logged models.
pub trait LoggedModelStore: Send + Sync {
    fn create_logged_model(&self, new: &NewLoggedModel) -> StoreResult<LoggedModel>;
    fn get_logged_model(&self, model_id: &str) -> StoreResult<LoggedModel>;
    fn set_logged_model_status(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> StoreResult<LoggedModel>;
    fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> StoreResult<()>;
    /// Add params after creation (`mlflow.log_model_params`); a key logged again takes the new
    /// value, as at creation.
    fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> StoreResult<()>;
    fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> StoreResult<()>;
    fn delete_logged_model(&self, model_id: &str) -> StoreResult<()>;
    fn search_logged_models(&self, query: &LoggedModelQuery) -> StoreResult<Page<LoggedModel>>;
}

/// The model registry: registered models, versions, tags and aliases.
pub trait RegistryStore: Send + Sync {
    fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[Tag],
    ) -> StoreResult<RegisteredModel>;
    fn get_registered_model(&self, name: &str) -> StoreResult<RegisteredModel>;
    fn update_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> StoreResult<RegisteredModel>;
    fn rename_registered_model(&self, name: &str, new_name: &str) -> StoreResult<RegisteredModel>;
    fn delete_registered_model(&self, name: &str) -> StoreResult<()>;
    fn search_registered_models(&self, query: &NameQuery) -> StoreResult<Page<RegisteredModel>>;
    fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> StoreResult<()>;
    fn delete_registered_model_tag(&self, name: &str, key: &str) -> StoreResult<()>;

    fn create_model_version(&self, new: &NewModelVersion) -> StoreResult<ModelVersion>;
    fn get_model_version(&self, name: &str, version: &str) -> StoreResult<ModelVersion>;
    fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: &str,
    ) -> StoreResult<ModelVersion>;
    fn delete_model_version(&self, name: &str, version: &str) -> StoreResult<()>;
    fn transition_model_version_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> StoreResult<ModelVersion>;
    fn get_latest_versions(&self, name: &str, stages: &[String]) -> StoreResult<Vec<ModelVersion>>;
    fn search_model_versions(&self, query: &NameQuery) -> StoreResult<Page<ModelVersion>>;
    fn set_model_version_tag(&self, name: &str, version: &str, tag: &Tag) -> StoreResult<()>;
    fn delete_model_version_tag(&self, name: &str, version: &str, key: &str) -> StoreResult<()>;

    /// Point `alias` at `version`, recording who/why in the append-only alias history.
    fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        actor: &AliasActor,
    ) -> StoreResult<()>;
    /// The version `alias` of `name` points at, `None` when it points at nothing. (From the
    /// model's alias list: a missing alias is an error of its own over MLflow's REST API,
    /// INVALID_PARAMETER_VALUE.)
    fn alias_version(&self, name: &str, alias: &str) -> StoreResult<Option<String>> {
        Ok(self
            .get_registered_model(name)?
            .aliases
            .into_iter()
            .find(|a| a.alias == alias)
            .map(|a| a.version))
    }
    /// [`set_alias`](Self::set_alias) only while `alias` still points at version `expected`
    /// (`None`: at nothing): `Ok(false)`, and nothing changed, when it has moved. A store that
    /// can checks and sets in one transaction; this default checks, then sets.
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
        self.set_alias(name, alias, version, actor)?;
        Ok(true)
    }
    fn delete_alias(&self, name: &str, alias: &str, actor: &AliasActor) -> StoreResult<()>;
    fn get_model_version_by_alias(&self, name: &str, alias: &str) -> StoreResult<ModelVersion>;
    /// Alias history, oldest first.
    fn alias_history(&self, name: &str, alias: &str) -> StoreResult<Vec<AliasEvent>>;
}

/// Permanent removal of soft-deleted runs and experiments.
pub trait GcStore: Send + Sync {
    /// Soft-deleted runs (including runs of deleted experiments) last updated before
    /// `older_than_ms` (all when `None`), with their logged models and artifact locations.
    fn collectable(&self, older_than_ms: Option<i64>) -> StoreResult<GcPlan>;
    /// Permanently delete what `plan` names. Called after the artifacts are gone.
    fn purge(&self, plan: &GcPlan) -> StoreResult<()>;
}

/// Everything a tracking server needs.
pub trait TrackingStore:
    ExperimentStore + RunStore + LoggedModelStore + RegistryStore + GcStore
{
    /// Human-readable backend kind, e.g. `sqlite` or `postgresql`.
    fn kind(&self) -> &'static str;
}

/// Fields a new run starts with.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub experiment_id: String,
    pub user_id: String,
    pub run_name: Option<String>,
    pub start_time: i64,
    pub tags: Vec<Tag>,
}

/// A partial run update; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewLoggedModel {
    pub experiment_id: String,
    pub name: Option<String>,
    pub source_run_id: Option<String>,
    pub model_type: Option<String>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Default)]
pub struct NewModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub model_id: Option<String>,
    pub run_link: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<Tag>,
    pub user_id: Option<String>,
}

/// Who moved an alias, and why; kept in the alias history.
#[derive(Debug, Clone, Default)]
pub struct AliasActor {
    pub user_id: Option<String>,
    pub reason: Option<String>,
}

/// What `kiln gc` will remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    pub runs: Vec<GcRun>,
    pub logged_models: Vec<GcLoggedModel>,
    /// Deleted experiments that have no live run left after the purge.
    pub experiments: Vec<GcExperiment>,
    /// Deleted runs and logged models left in place because a registered model version still
    /// uses them, with the reason.
    pub kept: Vec<GcKept>,
    /// Artifact URIs that stay in use: the locations of the experiments that are not collected
    /// and every model version's source. No directory holding one of them may be removed.
    pub live_locations: Vec<String>,
}

/// A soft-deleted object that `kiln gc` leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcKept {
    /// `run` or `logged model`.
    pub kind: &'static str,
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcRun {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcLoggedModel {
    pub model_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcExperiment {
    pub experiment_id: String,
    pub artifact_location: String,
}
