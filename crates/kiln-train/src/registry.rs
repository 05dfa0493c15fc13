//! The model-registry workflow on top of the tracking store: list models ([`list_models`]) and
//! their versions ([`versions`]), show a version with its lineage ([`show`] → [`VersionDetails`],
//! [`Lineage`]), promote a version to an alias behind gates ([`promote`] → [`PromoteOutcome`]),
//! move an alias back to its previous holder ([`rollback`] → [`RollbackOutcome`]) and read the
//! append-only alias history ([`history`]).
//!
//! A promotion evaluates the candidate on labelled data (`--on`) with the same code as
//! `kiln evaluate`, checks `--require` gates on its metrics and, with `--must-beat <alias>`,
//! evaluates the alias's current holder on the same data and refuses the candidate when it is
//! worse on the comparison metric ([`default_metric`], [`lower_is_better`]). Nothing moves when a
//! gate fails: the outcome says why, and the caller decides how to report it.
//!
//! Rollback reads the alias history: promotions push a holder, rollbacks (events whose reason
//! starts with [`ROLLBACK_PREFIX`]) pop one, so repeated rollbacks walk further back rather than
//! toggling between two versions. Versions deleted since are skipped.
//!
//! ```
//! use kiln_train::registry::{default_metric, lower_is_better};
//! use kiln_train::frame::Task;
//! assert_eq!(default_metric(Task::Classification, 2), "roc_auc");
//! assert_eq!(default_metric(Task::Regression, 0), "rmse");
//! assert!(lower_is_better("rmse") && !lower_is_better("roc_auc"));
//! ```

use kiln_ml::evaluate::{all_passed, check_gates, Gate, GateResult};
use kiln_store::{AliasActor, NameQuery, PageRequest, StoreError, TrackingStore};
use kiln_table::ReadOptions;
use kiln_types::filter::{Clause, Comparator, Entity, Filter, Value};
use kiln_types::{AliasEvent, ModelVersion, RegisteredModel, Run};
use serde::Serialize;

use crate::frame::Task;
use crate::model::Model;
use crate::tracking::Tracker;
use crate::train::evaluate;
use crate::TrainError;

/// Reasons of rollback events start with this; rollback uses it to walk the history back.
pub const ROLLBACK_PREFIX: &str = "rollback from ";

/// Metrics where a smaller value is better.
const LOWER_IS_BETTER: &[&str] = &[
    "log_loss",
    "brier",
    "ece",
    "rmse",
    "mse",
    "mae",
    "mape",
    "max_error",
];

/// Whether a smaller value of `metric` is better (errors and losses).
pub fn lower_is_better(metric: &str) -> bool {
    LOWER_IS_BETTER.contains(&metric)
}

/// The metric `--must-beat` compares when none is given: `roc_auc` for binary classification,
/// `f1_macro` for multiclass, `rmse` for regression.
pub fn default_metric(task: Task, n_classes: usize) -> &'static str {
    match task {
        Task::Regression => "rmse",
        Task::Classification if n_classes > 2 => "f1_macro",
        Task::Classification => "roc_auc",
    }
}

/// Which version of a model to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    /// The newest version.
    Latest,
    Version(String),
    Alias(String),
}

/// `(name, value)` pairs as a JSON object, in order.
fn as_map<S: serde::Serializer, V: Serialize>(
    pairs: &[(String, V)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

fn input(message: String) -> TrainError {
    TrainError::Input(message)
}

fn join_or(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

/// Every registered model, by name.
pub fn list_models(store: &dyn TrackingStore) -> Result<Vec<RegisteredModel>, TrainError> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.search_registered_models(&NameQuery {
            page: PageRequest {
                max_results: 1000,
                offset,
            },
            ..NameQuery::default()
        })?;
        offset += page.items.len() as u64;
        out.extend(page.items);
        if page.next_page_token.is_none() {
            return Ok(out);
        }
    }
}

/// The registered model `name`; an unknown name is an input error listing the models there are.
pub fn model(store: &dyn TrackingStore, name: &str) -> Result<RegisteredModel, TrainError> {
    match store.get_registered_model(name) {
        Ok(m) => Ok(m),
        Err(StoreError::NotFound(_)) => {
            let names: Vec<String> = list_models(store)?.into_iter().map(|m| m.name).collect();
            Err(input(format!(
                "No registered model `{name}`; registered models: {}",
                join_or(
                    &names,
                    "(none yet: `kiln train --register <name>` creates one)"
                )
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every version of `name`, oldest first.
pub fn versions(store: &dyn TrackingStore, name: &str) -> Result<Vec<ModelVersion>, TrainError> {
    model(store, name)?;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.search_model_versions(&NameQuery {
            filter: Filter {
                clauses: vec![Clause {
                    entity: Entity::Attribute,
                    key: "name".into(),
                    comparator: Comparator::Eq,
                    value: Value::String(name.to_string()),
                }],
            },
            page: PageRequest {
                max_results: 1000,
                offset,
            },
            ..NameQuery::default()
        })?;
        offset += page.items.len() as u64;
        out.extend(page.items);
        if page.next_page_token.is_none() {
            break;
        }
    }
    out.sort_by_key(|v| v.version.parse::<u64>().unwrap_or(u64::MAX));
    Ok(out)
}

fn version_list(store: &dyn TrackingStore, name: &str) -> Result<String, TrainError> {
    let all: Vec<String> = versions(store, name)?
        .into_iter()
        .map(|v| v.version)
        .collect();
    Ok(join_or(&all, "none"))
}

fn alias_list(m: &RegisteredModel) -> String {
    let all: Vec<String> = m
        .aliases
        .iter()
        .map(|a| format!("{} (v{})", a.alias, a.version))
        .collect();
    join_or(&all, "none")
}

/// Version `version` of `name`; unknown ones are input errors naming the versions there are.
pub fn version(
    store: &dyn TrackingStore,
    name: &str,
    version: &str,
) -> Result<ModelVersion, TrainError> {
    model(store, name)?;
    let v = version.strip_prefix('v').unwrap_or(version);
    match store.get_model_version(name, v) {
        Ok(mv) => Ok(mv),
        Err(StoreError::NotFound(_) | StoreError::InvalidParameter(_)) => Err(input(format!(
            "Model `{name}` has no version `{version}`; its versions: {}",
            version_list(store, name)?
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The current holder of `alias`, or `None` when the alias points nowhere.
/// `--must-beat <beat>` passes when `beat` has no holder, so that the first promotion (of
/// `beat` itself, or of a challenger before any champion exists) can carry the same gate as the
/// later ones. An alias the model has never had may also be a typo that waves the candidate
/// through, so the note says so and names the aliases the model has.
fn never_held_note(store: &dyn TrackingStore, name: &str, beat: &str) -> Option<String> {
    // A store without alias history (an MLflow server) cannot tell.
    if !matches!(store.alias_history(name, beat), Ok(events) if events.is_empty()) {
        return None;
    }
    let aliases: Vec<String> = model(store, name)
        .ok()?
        .aliases
        .iter()
        .map(|a| format!("`{}`", a.alias))
        .collect();
    let known = if aliases.is_empty() {
        "it has no alias yet".to_string()
    } else {
        format!("it has {}", aliases.join(", "))
    };
    Some(format!(
        "model `{name}` has never had the alias `{beat}` ({known}): check --must-beat for a typo"
    ))
}

pub fn holder(
    store: &dyn TrackingStore,
    name: &str,
    alias: &str,
) -> Result<Option<ModelVersion>, TrainError> {
    let m = model(store, name)?;
    let Some(a) = m.aliases.iter().find(|a| a.alias == alias) else {
        return Ok(None);
    };
    match store.get_model_version(name, &a.version) {
        Ok(mv) => Ok(Some(mv)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Resolve a selector to a version.
pub fn resolve(
    store: &dyn TrackingStore,
    name: &str,
    selector: &VersionSelector,
) -> Result<ModelVersion, TrainError> {
    match selector {
        VersionSelector::Version(v) => version(store, name, v),
        VersionSelector::Alias(alias) => match holder(store, name, alias)? {
            Some(mv) => Ok(mv),
            None => Err(input(format!(
                "Model `{name}` has no alias `{alias}`; its aliases: {}",
                alias_list(&model(store, name)?)
            ))),
        },
        VersionSelector::Latest => versions(store, name)?
            .pop()
            .ok_or_else(|| input(format!("Model `{name}` has no versions"))),
    }
}

/// A dataset a run read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetRef {
    pub name: String,
    /// BLAKE3 content hash.
    pub digest: String,
    /// `training`, `evaluation`, …
    pub context: Option<String>,
    pub source: String,
}

/// Where a version came from: its source run's params, metrics, data and code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lineage {
    pub run_id: String,
    pub run_name: String,
    pub experiment_id: String,
    pub status: String,
    /// Whether the source run was deleted (soft: `kiln gc` keeps runs that versions use).
    pub run_deleted: bool,
    pub user: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    /// `kiln.git.commit` (or MLflow's `mlflow.source.git.commit`).
    pub git_commit: Option<String>,
    /// Whether the working tree had uncommitted changes (`kiln.git.dirty`).
    pub git_dirty: Option<bool>,
    /// BLAKE3 of the training data (`kiln.data.hash`; `train+test` with `--test-data`).
    pub data_hash: Option<String>,
    pub datasets: Vec<DatasetRef>,
    #[serde(serialize_with = "as_map")]
    pub params: Vec<(String, String)>,
    #[serde(serialize_with = "as_map")]
    pub metrics: Vec<(String, f64)>,
    #[serde(serialize_with = "as_map")]
    pub tags: Vec<(String, String)>,
}

impl Lineage {
    fn from_run(run: &Run) -> Self {
        let tag = |key: &str| {
            run.data
                .tags
                .iter()
                .find(|t| t.key == key)
                .map(|t| t.value.clone())
        };
        Self {
            run_id: run.info.run_id.clone(),
            run_name: run.info.run_name.clone(),
            experiment_id: run.info.experiment_id.clone(),
            status: run.info.status.as_str().to_string(),
            run_deleted: run.info.lifecycle_stage == kiln_types::LifecycleStage::Deleted,
            user: run.info.user_id.clone(),
            start_time: run.info.start_time,
            end_time: run.info.end_time,
            git_commit: tag("kiln.git.commit").or_else(|| tag("mlflow.source.git.commit")),
            git_dirty: tag("kiln.git.dirty").map(|d| d == "true"),
            data_hash: tag("kiln.data.hash"),
            datasets: run
                .inputs
                .dataset_inputs
                .iter()
                .map(|d| DatasetRef {
                    name: d.dataset.name.clone(),
                    digest: d.dataset.digest.clone(),
                    context: d
                        .tags
                        .iter()
                        .find(|t| t.key == "mlflow.data.context")
                        .map(|t| t.value.clone()),
                    source: d.dataset.source.clone(),
                })
                .collect(),
            params: run
                .data
                .params
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
            metrics: run
                .data
                .metrics
                .iter()
                .map(|m| (m.key.clone(), m.value))
                .collect(),
            tags: run
                .data
                .tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
        }
    }
}

/// A version and its lineage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionDetails {
    pub version: ModelVersion,
    /// `None` when the version has no source run (or the run is gone).
    pub lineage: Option<Lineage>,
    /// Why there is no lineage, when there is none.
    pub lineage_note: Option<String>,
}

/// A version with its lineage.
pub fn show(
    store: &dyn TrackingStore,
    name: &str,
    selector: &VersionSelector,
) -> Result<VersionDetails, TrainError> {
    let mv = resolve(store, name, selector)?;
    let (lineage, lineage_note) = match &mv.run_id {
        None => (None, Some("the version has no source run".to_string())),
        Some(run_id) => match store.get_run(run_id) {
            Ok(run) => (Some(Lineage::from_run(&run)), None),
            Err(StoreError::NotFound(_)) => (
                None,
                Some(format!("the source run `{run_id}` no longer exists")),
            ),
            Err(e) => return Err(e.into()),
        },
    };
    Ok(VersionDetails {
        version: mv,
        lineage,
        lineage_note,
    })
}

/// The alias history of `name`, oldest first. An alias that never existed is an input error
/// naming the aliases the model has had.
pub fn history(
    store: &dyn TrackingStore,
    name: &str,
    alias: &str,
) -> Result<Vec<AliasEvent>, TrainError> {
    let m = model(store, name)?;
    let events = store.alias_history(name, alias)?;
    if events.is_empty() && !m.aliases.iter().any(|a| a.alias == alias) {
        return Err(input(format!(
            "Model `{name}` has never had the alias `{alias}`; its aliases: {}",
            alias_list(&m)
        )));
    }
    Ok(events)
}

/// What to promote, and the gates it must pass.
#[derive(Debug, Clone, Default)]
pub struct PromoteRequest {
    pub name: String,
    pub version: String,
    pub alias: String,
    /// Gates on the candidate's metrics (on `on` when given, else its source run's `test_*`
    /// metrics).
    pub require: Vec<Gate>,
    /// Another alias whose holder the candidate must not be worse than, on `on`.
    pub must_beat: Option<String>,
    /// Labelled data (CSV or Parquet) to evaluate on.
    pub on: Option<String>,
    pub read: ReadOptions,
    /// The comparison metric for `must_beat` (default: [`default_metric`]).
    pub metric: Option<String>,
    pub user: Option<String>,
    /// Recorded in the alias history (default: a summary of the evaluation).
    pub reason: Option<String>,
}

/// A version's metrics as the gates saw them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluated {
    pub version: String,
    pub run_id: Option<String>,
    /// `data` (evaluated on `--on`) or `run` (the source run's logged metrics).
    pub source: &'static str,
    #[serde(serialize_with = "as_map")]
    pub metrics: Vec<(String, f64)>,
}

impl Evaluated {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

/// The `--must-beat` comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The alias the candidate had to beat.
    pub alias: String,
    pub metric: String,
    pub lower_is_better: bool,
    pub candidate: Option<f64>,
    /// The holder's version, `None` when the alias has no holder.
    pub holder_version: Option<String>,
    pub holder: Option<f64>,
    pub passed: bool,
    pub message: String,
}

/// What a promotion found and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromoteOutcome {
    pub name: String,
    pub alias: String,
    pub version: String,
    /// Where `--on` data came from, when given.
    pub data: Option<String>,
    pub candidate: Evaluated,
    /// The `--must-beat` holder's evaluation, when there was one.
    pub holder: Option<Evaluated>,
    pub gates: Vec<GateResult>,
    pub comparison: Option<Comparison>,
    /// Whether every gate and the comparison passed.
    pub passed: bool,
    /// Whether the alias moved (false when refused, or when it already pointed here).
    pub moved: bool,
    /// The alias's holder before the promotion.
    pub previous_version: Option<String>,
    /// The reason recorded in the history (or that would have been).
    pub reason: String,
    pub notes: Vec<String>,
}

fn run_metrics(
    store: &dyn TrackingStore,
    mv: &ModelVersion,
) -> Result<Vec<(String, f64)>, TrainError> {
    let Some(run_id) = &mv.run_id else {
        return Ok(Vec::new());
    };
    let run = match store.get_run(run_id) {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    // `test_roc_auc` answers a gate on `roc_auc`; the raw names stay available too.
    let mut out: Vec<(String, f64)> = run
        .data
        .metrics
        .iter()
        .filter_map(|m| {
            m.key
                .strip_prefix("test_")
                .map(|k| (k.to_string(), m.value))
        })
        .collect();
    for m in &run.data.metrics {
        if !out.iter().any(|(k, _)| *k == m.key) {
            out.push((m.key.clone(), m.value));
        }
    }
    Ok(out)
}

/// Whether version `version` of `name` still has its model files, checked before an alias (and
/// every replica that follows it) points at it: `Err(why)` when they are gone; otherwise a note
/// when kiln cannot load the model itself (another flavor) or cannot reach the store
/// (credentials, network: the check is skipped, as the alias move only writes metadata).
fn files_check(tracker: &Tracker, name: &str, version: &str) -> Result<Option<String>, String> {
    match tracker.load_any_model(&format!("models:/{name}/{version}")) {
        Ok(_) => Ok(None),
        Err(TrainError::NoArtifacts(why)) => Err(why),
        Err(e) if e.is_input() => Ok(Some(format!(
            "kiln cannot load v{version} itself ({e}): `kiln serve` will not serve it"
        ))),
        Err(e) => Ok(Some(format!(
            "could not check that v{version}'s files are there: {e}"
        ))),
    }
}

/// Evaluate a version on a table, as `kiln evaluate` does.
fn evaluate_on(
    tracker: &Tracker,
    name: &str,
    mv: &ModelVersion,
    table: &kiln_table::Table,
    data: &str,
) -> Result<(Model, Evaluated), TrainError> {
    let reference = format!("models:/{name}/{}", mv.version);
    let (model, _) = tracker.load_any_model(&reference)?;
    let context = |e: TrainError| {
        if e.is_input() {
            input(format!(
                "Failed to evaluate {name} v{} on `{data}`: {e}",
                mv.version
            ))
        } else {
            e
        }
    };
    let labels = model.labels(table).map_err(context)?;
    let predictions = model.predict(table).map_err(context)?;
    let report = evaluate(model.task(), model.classes(), &predictions, &labels).map_err(context)?;
    Ok((
        model,
        Evaluated {
            version: mv.version.clone(),
            run_id: mv.run_id.clone(),
            source: "data",
            metrics: report.metrics(),
        },
    ))
}

fn fmt_metric(v: f64) -> String {
    format!("{v:.4}")
}

/// Evaluate `req.version` against its gates and, when they all pass, point `req.alias` at it.
///
/// Input errors: unknown model, version or alias to beat (when it never existed is fine: the
/// comparison passes with a note), `--must-beat` without data, data the models cannot read.
/// A failed gate is not an error: the outcome has `passed == false` and the alias is unchanged.
pub fn promote(tracker: &Tracker, req: &PromoteRequest) -> Result<PromoteOutcome, TrainError> {
    let store = tracker.store.as_ref();
    let PromoteRequest {
        name,
        version: wanted,
        alias,
        require,
        must_beat,
        on,
        read,
        metric,
        user,
        reason,
    } = req;
    if reason
        .as_deref()
        .is_some_and(|r| r.starts_with(ROLLBACK_PREFIX))
    {
        return Err(input(format!(
            "A promotion reason may not start with `{ROLLBACK_PREFIX}`: it marks rollbacks in the alias history"
        )));
    }
    let candidate_mv = version(store, name, wanted)?;
    if must_beat.is_some() && on.is_none() {
        return Err(input(
            "--must-beat evaluates the candidate and the current holder on the same data: add --on <FILE>"
                .into(),
        ));
    }
    let previous = holder(store, name, alias)?;
    // The holder to beat is read once: the comparison, the report and the check that nothing
    // moved before the alias is set all speak of this one.
    let beat_holder = match must_beat {
        Some(beat) if beat == alias => previous.clone(),
        Some(beat) => holder(store, name, beat)?,
        None => None,
    };
    let beat_before = beat_holder.as_ref().map(|h| h.version.clone());
    // A `--must-beat` alias this model never had, while it has others, is a typo in a gate: it
    // would wave the candidate through. (A model with no alias yet is being bootstrapped.)
    if let (Some(beat), None) = (must_beat, &beat_holder) {
        if beat != alias {
            if let Some(note) = never_held_note(store, name, beat) {
                let has_aliases = model(store, name).is_ok_and(|m| !m.aliases.is_empty());
                if has_aliases {
                    return Err(input(format!(
                        "Refusing to compare with `{beat}`: {note}. Nothing was evaluated."
                    )));
                }
            }
        }
    }
    let mut notes = Vec::new();

    let table = match on {
        Some(path) => Some(kiln_table::read_table(path, read)?),
        None => None,
    };
    let (candidate_model, candidate) = match (&table, on) {
        (Some(t), Some(path)) => {
            let (m, e) = evaluate_on(tracker, name, &candidate_mv, t, path)?;
            (Some(m), e)
        }
        _ => {
            // Without --on nothing reads the candidate: make sure it is there before an alias
            // (and every replica that follows it) points at it.
            match files_check(tracker, name, &candidate_mv.version) {
                Ok(note) => notes.extend(note),
                Err(why) => {
                    return Err(input(format!(
                        "Refusing to point `{alias}` at {name} v{}: {why}",
                        candidate_mv.version
                    )));
                }
            }
            if !require.is_empty() {
                notes.push(
                    "no --on data: gates checked against the source run's logged test metrics"
                        .into(),
                );
            }
            (
                None,
                Evaluated {
                    version: candidate_mv.version.clone(),
                    run_id: candidate_mv.run_id.clone(),
                    source: "run",
                    metrics: run_metrics(store, &candidate_mv)?,
                },
            )
        }
    };
    let mut gates = check_gates(&candidate.metrics, require);
    if candidate.source == "run" {
        // The run's logged metrics, not an evaluation: say so when a gate's metric is absent.
        for g in gates.iter_mut().filter(|g| g.actual.is_none()) {
            g.message = format!(
                "the source run of v{} logged no `test_{m}` or `{m}` metric; it has: {}",
                candidate.version,
                join_or(
                    &candidate
                        .metrics
                        .iter()
                        .map(|(k, _)| k.clone())
                        .collect::<Vec<_>>(),
                    "no metrics"
                ),
                m = g.gate.metric,
            );
        }
    }

    let mut holder_eval = None;
    let comparison = match (must_beat, &table, on, &candidate_model) {
        (Some(beat), Some(t), Some(path), Some(cm)) => {
            let metric = metric
                .clone()
                .unwrap_or_else(|| default_metric(cm.task(), cm.classes().len()).to_string());
            let lower = lower_is_better(&metric);
            let cand = candidate.metric(&metric);
            let comparison = match beat_holder.clone() {
                None => {
                    notes.push(format!(
                        "`{beat}` has no holder yet: nothing to beat, the comparison passes"
                    ));
                    if beat != alias {
                        notes.extend(never_held_note(store, name, beat));
                    }
                    Comparison {
                        alias: beat.clone(),
                        metric: metric.clone(),
                        lower_is_better: lower,
                        candidate: cand,
                        holder_version: None,
                        holder: None,
                        passed: cand.is_some(),
                        message: match cand {
                            Some(c) => format!("{metric} {} (no {beat} to beat)", fmt_metric(c)),
                            None => missing_metric(&metric, &candidate.metrics),
                        },
                    }
                }
                Some(h) if h.version == candidate_mv.version => {
                    notes.push(format!(
                        "v{} already holds `{beat}`: it is compared with itself",
                        h.version
                    ));
                    Comparison {
                        alias: beat.clone(),
                        metric: metric.clone(),
                        lower_is_better: lower,
                        candidate: cand,
                        holder_version: Some(h.version.clone()),
                        holder: cand,
                        passed: cand.is_some(),
                        message: match cand {
                            Some(c) => format!("{metric} {} (same version)", fmt_metric(c)),
                            None => missing_metric(&metric, &candidate.metrics),
                        },
                    }
                }
                Some(h) => {
                    // Name the holder: its files being gone is not the candidate's fault.
                    let (_, he) = evaluate_on(tracker, name, &h, t, path).map_err(|e| match e {
                        TrainError::NoArtifacts(why) => input(format!(
                            "The current holder of `{beat}`, v{}, cannot be compared with: {why}. \
                             Move `{beat}` off it first (kiln models rollback, or promote without --must-beat).",
                            h.version
                        )),
                        other => other,
                    })?;
                    let hv = he.metric(&metric);
                    let (passed, message) = match (cand, hv) {
                        (Some(c), Some(hv)) => {
                            let not_worse = if lower { c <= hv } else { c >= hv };
                            let verdict = if not_worse {
                                "not worse than"
                            } else {
                                "worse than"
                            };
                            (
                                not_worse,
                                format!(
                                    "{metric} {} vs {beat} v{} {}: candidate is {verdict} the holder ({} is better)",
                                    fmt_metric(c),
                                    h.version,
                                    fmt_metric(hv),
                                    if lower { "lower" } else { "higher" }
                                ),
                            )
                        }
                        (None, _) => (false, missing_metric(&metric, &candidate.metrics)),
                        (Some(_), None) => (
                            false,
                            format!(
                                "{beat} v{}: {}",
                                h.version,
                                missing_metric(&metric, &he.metrics)
                            ),
                        ),
                    };
                    holder_eval = Some(he);
                    Comparison {
                        alias: beat.clone(),
                        metric: metric.clone(),
                        lower_is_better: lower,
                        candidate: cand,
                        holder_version: Some(h.version.clone()),
                        holder: hv,
                        passed,
                        message,
                    }
                }
            };
            Some(comparison)
        }
        _ => None,
    };

    let passed = all_passed(&gates) && comparison.as_ref().is_none_or(|c| c.passed);
    let previous_version = previous.as_ref().map(|p| p.version.clone());
    let already = previous_version.as_deref() == Some(candidate_mv.version.as_str());
    let reason = reason.clone().unwrap_or_else(|| {
        if passed && already {
            // Nothing is recorded: say so rather than "promoted".
            format!(
                "v{} already holds `{alias}`: nothing moved",
                candidate_mv.version
            )
        } else {
            auto_reason(passed, comparison.as_ref(), &gates, on.as_deref())
        }
    });
    let mut moved = false;
    if passed && already {
        notes.push(format!(
            "`{alias}` already points at v{}: nothing moved",
            candidate_mv.version
        ));
    } else if passed {
        // The gates judged the holders read before the evaluation: if another promotion or a
        // rollback moved them meanwhile, this one would override a version it never compared
        // with. Refuse, and let the caller run it again against the new holder. The alias
        // itself moves only if it still points at the holder judged (one transaction on the
        // SQL stores); a different `--must-beat` alias is checked just before.
        let moved_away = |watched: &str,
                          before: &Option<String>|
         -> Result<TrainError, TrainError> {
            let now = holder(store, name, watched)?.map(|h| h.version);
            Ok(input(format!(
                "`{watched}` of `{name}` moved from {} to {} while v{} was being evaluated; nothing changed. \
                 Run the promotion again to judge it against the new holder.",
                before.as_deref().map_or("none".to_string(), |v| format!("v{v}")),
                now.as_deref().map_or("none".to_string(), |v| format!("v{v}")),
                candidate_mv.version
            )))
        };
        if let Some(beat) = must_beat.as_ref().filter(|b| *b != alias) {
            if holder(store, name, beat)?.map(|h| h.version) != beat_before {
                return Err(moved_away(beat, &beat_before)?);
            }
        }
        let set = store.set_alias_if(
            name,
            alias,
            &candidate_mv.version,
            previous_version.as_deref(),
            &AliasActor {
                user_id: user.clone(),
                reason: Some(reason.clone()),
            },
        )?;
        if !set {
            return Err(moved_away(alias, &previous_version)?);
        }
        moved = true;
    }
    Ok(PromoteOutcome {
        name: name.clone(),
        alias: alias.clone(),
        version: candidate_mv.version,
        data: on.clone(),
        candidate,
        holder: holder_eval,
        gates,
        comparison,
        passed,
        moved,
        previous_version,
        reason,
        notes,
    })
}

fn missing_metric(metric: &str, metrics: &[(String, f64)]) -> String {
    let names: Vec<String> = metrics.iter().map(|(k, _)| k.clone()).collect();
    format!(
        "metric `{metric}` was not computed; available: {}",
        join_or(&names, "none")
    )
}

fn auto_reason(
    passed: bool,
    comparison: Option<&Comparison>,
    gates: &[GateResult],
    data: Option<&str>,
) -> String {
    let verb = if passed { "promoted" } else { "refused" };
    let mut parts = Vec::new();
    if let Some(c) = comparison {
        match (c.candidate, &c.holder_version, c.holder) {
            (Some(cv), Some(hv), Some(h)) => parts.push(format!(
                "{} {} vs {} v{hv} {}",
                c.metric,
                fmt_metric(cv),
                c.alias,
                fmt_metric(h)
            )),
            (Some(cv), None, _) => parts.push(format!(
                "{} {} (no {} yet)",
                c.metric,
                fmt_metric(cv),
                c.alias
            )),
            _ => parts.push(c.message.clone()),
        }
    }
    if !gates.is_empty() {
        let shown: Vec<String> = gates
            .iter()
            .map(|g| {
                format!(
                    "{} {} {}",
                    g.gate.metric,
                    g.actual.map_or_else(|| "n/a".to_string(), fmt_metric),
                    if g.passed { "ok" } else { "failed" }
                )
            })
            .collect();
        parts.push(format!("gates: {}", shown.join(", ")));
    }
    if parts.is_empty() {
        if let Some(d) = data {
            parts.push(format!("evaluated on {d}"));
        }
    }
    if parts.is_empty() {
        verb.to_string()
    } else {
        format!("{verb}: {}", parts.join("; "))
    }
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackOutcome {
    pub name: String,
    pub alias: String,
    /// The holder before the rollback (`None` when the alias had been removed).
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    /// Previous holders passed over because their versions were deleted.
    pub skipped_deleted: Vec<String>,
    /// Previous holders passed over because their model files are gone (`v<N>: why`).
    pub skipped_unloadable: Vec<String>,
    pub notes: Vec<String>,
}

/// The holders of an alias as a stack: promotions push, rollbacks pop.
fn holder_stack(events: &[AliasEvent]) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    for e in events {
        let Some(v) = &e.version else {
            continue;
        };
        let is_rollback = e
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with(ROLLBACK_PREFIX));
        if is_rollback {
            stack.pop();
            while stack.last().is_some_and(|top| top != v) {
                stack.pop();
            }
            if stack.is_empty() {
                stack.push(v.clone());
            }
        } else if stack.last() != Some(v) {
            stack.push(v.clone());
        }
    }
    stack
}

/// Move `alias` back to its previous holder: the holder before the current one in the history
/// (promotions push, rollbacks pop), skipping versions deleted since and versions whose model
/// files are gone (a rollback is what runs in an incident: it must not deploy a model that
/// cannot load). Refused (input error) when there is no previous holder, or when the alias
/// moved while the rollback was deciding (another rollback or promotion): nothing changes.
pub fn rollback(
    tracker: &Tracker,
    name: &str,
    alias: &str,
    user: Option<String>,
    reason: Option<String>,
) -> Result<RollbackOutcome, TrainError> {
    let store = tracker.store.as_ref();
    let events = history(store, name, alias)?;
    let current = holder(store, name, alias)?.map(|mv| mv.version);
    let mut stack = holder_stack(&events);
    // The current holder is the top; without one (the alias was removed), the top is the last
    // holder, which may still be restored.
    if let (Some(cur), Some(top)) = (&current, stack.last()) {
        if cur == top {
            stack.pop();
        }
    }
    let mut skipped_deleted = Vec::new();
    let mut skipped_unloadable = Vec::new();
    let mut notes = Vec::new();
    let mut target = None;
    while let Some(candidate) = stack.pop() {
        if current.as_deref() == Some(candidate.as_str()) {
            continue;
        }
        match store.get_model_version(name, &candidate) {
            Ok(mv) => {
                // As `promote` without --on: missing files disqualify.
                match files_check(tracker, name, &mv.version) {
                    Ok(note) => notes.extend(note),
                    Err(why) => {
                        skipped_unloadable.push(format!("v{}: {why}", mv.version));
                        continue;
                    }
                }
                target = Some(mv.version);
                break;
            }
            Err(StoreError::NotFound(_)) => skipped_deleted.push(candidate),
            Err(e) => return Err(e.into()),
        }
    }
    let Some(to) = target else {
        let held: Vec<String> = events
            .iter()
            .filter_map(|e| e.version.as_ref().map(|v| format!("v{v}")))
            .collect();
        let mut message = format!(
            "Cannot roll back `{alias}` of `{name}`: no previous holder to return to (current: {}; held so far: {})",
            current.as_deref().map_or_else(|| "none".to_string(), |v| format!("v{v}")),
            join_or(&held, "none"),
        );
        if !skipped_deleted.is_empty() {
            message.push_str(&format!(
                "; deleted since: {}",
                skipped_deleted
                    .iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !skipped_unloadable.is_empty() {
            message.push_str(&format!(
                "; model files missing: {}",
                skipped_unloadable.join("; ")
            ));
        }
        return Err(input(message));
    };
    let from_label = current.clone().or_else(|| {
        events
            .iter()
            .rev()
            .find_map(|e| e.previous_version.clone().or_else(|| e.version.clone()))
    });
    let mut text = format!("{ROLLBACK_PREFIX}v{}", from_label.as_deref().unwrap_or("?"));
    if let Some(r) = reason.filter(|r| !r.trim().is_empty()) {
        text.push_str(": ");
        text.push_str(&r);
    }
    // Only from the holder this rollback read: two rollbacks at once must not both pop from
    // the same holder (the second would move the alias forward again).
    let set = store.set_alias_if(
        name,
        alias,
        &to,
        current.as_deref(),
        &AliasActor {
            user_id: user,
            reason: Some(text.clone()),
        },
    )?;
    if !set {
        let now = holder(store, name, alias)?.map(|h| h.version);
        return Err(input(format!(
            "`{alias}` of `{name}` moved from {} to {} while the rollback was deciding (another rollback or promotion); nothing changed. Check `kiln models history {name} --alias {alias}` and run it again if still needed.",
            current.as_deref().map_or("none".to_string(), |v| format!("v{v}")),
            now.as_deref().map_or("none".to_string(), |v| format!("v{v}")),
        )));
    }
    Ok(RollbackOutcome {
        name: name.to_string(),
        alias: alias.to_string(),
        from: current,
        to,
        reason: text,
        skipped_deleted,
        skipped_unloadable,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(version: Option<&str>, reason: &str) -> AliasEvent {
        AliasEvent {
            name: "m".into(),
            alias: "champion".into(),
            version: version.map(str::to_string),
            previous_version: None,
            timestamp: 0,
            user_id: None,
            reason: Some(reason.into()),
        }
    }

    #[test]
    fn registry_rollbacks_pop_the_holder_stack() {
        let events = vec![
            ev(Some("1"), "promoted"),
            ev(Some("2"), "promoted"),
            ev(Some("3"), "promoted"),
        ];
        assert_eq!(holder_stack(&events), ["1", "2", "3"]);
        let mut more = events.clone();
        more.push(ev(Some("2"), "rollback from v3"));
        assert_eq!(holder_stack(&more), ["1", "2"]);
        more.push(ev(Some("1"), "rollback from v2"));
        assert_eq!(holder_stack(&more), ["1"]);
        // A rollback that skipped a deleted version pops down to its target.
        let skipped = vec![
            ev(Some("1"), "promoted"),
            ev(Some("2"), "promoted"),
            ev(None, "model version 2 deleted"),
            ev(Some("3"), "promoted"),
            ev(Some("1"), "rollback from v3"),
        ];
        assert_eq!(holder_stack(&skipped), ["1"]);
        // Promoting the holder again does not push it twice.
        let again = vec![ev(Some("1"), "promoted"), ev(Some("1"), "promoted")];
        assert_eq!(holder_stack(&again), ["1"]);
    }

    #[test]
    fn registry_metric_directions() {
        assert_eq!(default_metric(Task::Classification, 3), "f1_macro");
        assert!(lower_is_better("log_loss"));
        assert!(!lower_is_better("r2"));
        assert!(!lower_is_better("accuracy"));
    }
}
