//! Experiments and runs.

use std::collections::HashMap;

use kiln_store::{
    ExperimentQuery, ExperimentStore, NewRun, Page, PageRequest, RunQuery, RunStore, RunUpdate,
    StoreError, StoreResult,
};
use kiln_types::{
    filter::Entity, DatasetInput, Experiment, LifecycleStage, Metric, ModelInput, ModelOutput,
    Param, Run, RunData, RunInfo, RunInputs, RunOutputs, RunStatus, Tag,
};

use crate::db::{Row, Tx, Val};
use crate::SqlStore;

pub(crate) const MAX_PARAM_VALUE: usize = 6000;
pub(crate) const MAX_TAG_VALUE: usize = 8000;
const MAX_KEY: usize = 250;

/// `?, ?, ?` for `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Cut `s` to at most `max` characters.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

pub(crate) fn parse_experiment_id(id: &str) -> StoreResult<i64> {
    if !kiln_types::is_valid_experiment_id(id) {
        return Err(StoreError::invalid(format!(
            "Invalid experiment ID '{id}': expected a decimal number"
        )));
    }
    id.parse()
        .map_err(|_| StoreError::invalid(format!("Invalid experiment ID '{id}'")))
}

pub(crate) fn validate_key(kind: &str, key: &str) -> StoreResult<()> {
    if key.is_empty() {
        return Err(StoreError::invalid(format!(
            "Invalid {kind} name: the key must not be empty"
        )));
    }
    if key.len() > MAX_KEY {
        return Err(StoreError::invalid(format!(
            "Invalid {kind} name '{}…': keys are limited to {MAX_KEY} characters",
            truncate(key, 40)
        )));
    }
    if key.contains("..") || key.starts_with('/') || key.contains('\0') {
        return Err(StoreError::invalid(format!(
            "Invalid {kind} name '{key}': must not contain '..', start with '/' or contain NUL"
        )));
    }
    Ok(())
}

/// Offset/limit for a page and the token of the next one. Fetches one extra row to know.
pub(crate) fn finish_page<T>(mut items: Vec<T>, page: &PageRequest) -> Page<T> {
    let limit = usize::try_from(page.max_results).unwrap_or(usize::MAX);
    let next_page_token = if items.len() > limit {
        items.truncate(limit);
        Some(kiln_types::PageToken::from_offset(page.offset + page.max_results).encode())
    } else {
        None
    };
    Page {
        items,
        next_page_token,
    }
}

pub(crate) fn limit_params(page: &PageRequest) -> [Val; 2] {
    let limit = i64::try_from(page.max_results.saturating_add(1)).unwrap_or(i64::MAX);
    [
        Val::Int(limit),
        Val::Int(i64::try_from(page.offset).unwrap_or(i64::MAX)),
    ]
}

const EXPERIMENT_COLS: &str =
    "experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time";

fn experiment_from_row(row: &Row) -> Experiment {
    Experiment {
        experiment_id: row.text(0),
        name: row.text(1),
        artifact_location: row.text(2),
        lifecycle_stage: LifecycleStage::parse(&row.text(3)).unwrap_or(LifecycleStage::Active),
        creation_time: row.int(4),
        last_update_time: row.int(5),
        tags: Vec::new(),
    }
}

fn load_experiment_tags(tx: &mut dyn Tx, exps: &mut [Experiment]) -> StoreResult<()> {
    if exps.is_empty() {
        return Ok(());
    }
    let ids: Vec<Val> = exps
        .iter()
        .filter_map(|e| e.experiment_id.parse::<i64>().ok())
        .map(Val::Int)
        .collect();
    let sql = format!(
        "SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN ({}) ORDER BY key",
        placeholders(ids.len())
    );
    let mut by_id: HashMap<String, Vec<Tag>> = HashMap::new();
    for row in tx.query(&sql, &ids)? {
        by_id
            .entry(row.text(0))
            .or_default()
            .push(Tag::new(row.text(1), row.text(2)));
    }
    for e in exps {
        e.tags = by_id.remove(&e.experiment_id).unwrap_or_default();
    }
    Ok(())
}

pub(crate) fn get_experiment_tx(tx: &mut dyn Tx, experiment_id: &str) -> StoreResult<Experiment> {
    let id = parse_experiment_id(experiment_id)?;
    let row = tx
        .query_opt(
            &format!("SELECT {EXPERIMENT_COLS} FROM experiments WHERE experiment_id = ?"),
            &[Val::Int(id)],
        )?
        .ok_or_else(|| {
            StoreError::not_found(format!("No Experiment with id={experiment_id} exists"))
        })?;
    let mut exps = vec![experiment_from_row(&row)];
    load_experiment_tags(tx, &mut exps)?;
    Ok(exps.remove(0))
}

fn touch_experiment(tx: &mut dyn Tx, id: i64) -> StoreResult<()> {
    tx.exec(
        "UPDATE experiments SET last_update_time = ? WHERE experiment_id = ?",
        &[Val::Int(kiln_types::now_ms()), Val::Int(id)],
    )?;
    Ok(())
}

fn require_experiment(tx: &mut dyn Tx, id: i64, experiment_id: &str) -> StoreResult<String> {
    let row = tx
        .query_opt(
            "SELECT lifecycle_stage FROM experiments WHERE experiment_id = ?",
            &[Val::Int(id)],
        )?
        .ok_or_else(|| {
            StoreError::not_found(format!("No Experiment with id={experiment_id} exists"))
        })?;
    Ok(row.text(0))
}

impl ExperimentStore for SqlStore {
    fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> StoreResult<String> {
        if name.trim().is_empty() {
            return Err(StoreError::invalid(
                "Invalid experiment name: must be a non-empty string",
            ));
        }
        for t in tags {
            validate_key("tag", &t.key)?;
        }
        self.write(|tx| {
            if tx.query_opt("SELECT experiment_id FROM experiments WHERE name = ?", &[Val::from(name)])?.is_some() {
                return Err(StoreError::already_exists(format!("Experiment '{name}' already exists.")));
            }
            let now = kiln_types::now_ms();
            let row = tx
                .query_opt(
                    "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
                     VALUES (?, ?, 'active', ?, ?) RETURNING experiment_id",
                    &[Val::from(name), Val::from(artifact_location.unwrap_or("")), Val::Int(now), Val::Int(now)],
                )?
                .ok_or_else(|| StoreError::invalid("Failed to create the experiment"))?;
            let id = row.int(0);
            if artifact_location.is_none_or(str::is_empty) {
                tx.exec(
                    "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                    &[Val::Text(format!("mlflow-artifacts:/{id}")), Val::Int(id)],
                )?;
            }
            for t in tags {
                tx.exec(
                    "INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) \
                     ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                    &[Val::Int(id), Val::from(&t.key), Val::Text(truncate(&t.value, MAX_TAG_VALUE))],
                )?;
            }
            Ok(id.to_string())
        })
    }

    fn get_experiment(&self, experiment_id: &str) -> StoreResult<Experiment> {
        self.read(|tx| get_experiment_tx(tx, experiment_id))
    }

    fn get_experiment_by_name(&self, name: &str) -> StoreResult<Experiment> {
        self.read(|tx| {
            let row = tx
                .query_opt(
                    &format!("SELECT {EXPERIMENT_COLS} FROM experiments WHERE name = ?"),
                    &[Val::from(name)],
                )?
                .ok_or_else(|| {
                    StoreError::not_found(format!("Could not find experiment with name '{name}'"))
                })?;
            let mut exps = vec![experiment_from_row(&row)];
            load_experiment_tags(tx, &mut exps)?;
            Ok(exps.remove(0))
        })
    }

    fn search_experiments(&self, query: &ExperimentQuery) -> StoreResult<Page<Experiment>> {
        self.read(|tx| {
            let dialect = tx.dialect();
            let stages = query.view.stages();
            let mut sql = format!(
                "SELECT {EXPERIMENT_COLS} FROM experiments e WHERE lifecycle_stage IN ({})",
                placeholders(stages.len())
            );
            let mut params: Vec<Val> = stages.iter().map(|s| Val::from(*s)).collect();
            for c in &query.filter.clauses {
                let (expr, vals) = match c.entity {
                    Entity::Tag => {
                        let (cond, vals) = crate::search::string_condition(dialect, "t.value", c.comparator, &c.value)?;
                        let mut all = vec![Val::from(&c.key)];
                        all.extend(vals);
                        (format!("EXISTS (SELECT 1 FROM experiment_tags t WHERE t.experiment_id = e.experiment_id AND t.key = ? AND {cond})"), all)
                    }
                    _ => match c.key.as_str() {
                        "name" => crate::search::string_condition(dialect, "e.name", c.comparator, &c.value)?,
                        "experiment_id" => crate::search::string_condition(dialect, "CAST(e.experiment_id AS TEXT)", c.comparator, &c.value)?,
                        "creation_time" | "last_update_time" => {
                            crate::search::int_condition(&format!("e.{}", c.key), c.comparator, &c.value)?
                        }
                        other => return Err(StoreError::invalid(format!("Invalid attribute key '{other}' for experiments"))),
                    },
                };
                sql.push_str(" AND ");
                sql.push_str(&expr);
                params.extend(vals);
            }
            let mut order = Vec::new();
            for o in &query.order_by {
                let col = match o.key.as_str() {
                    "name" | "experiment_id" | "creation_time" | "last_update_time" => format!("e.{}", o.key),
                    other => return Err(StoreError::invalid(format!("Invalid order_by key '{other}' for experiments"))),
                };
                order.push(format!("{col} {}", if o.ascending { "ASC" } else { "DESC" }));
            }
            if order.is_empty() {
                order.push("e.creation_time DESC".into());
            }
            order.push("e.experiment_id ASC".into());
            sql.push_str(&format!(" ORDER BY {} LIMIT ? OFFSET ?", order.join(", ")));
            params.extend(limit_params(&query.page));
            let mut exps: Vec<Experiment> = tx.query(&sql, &params)?.iter().map(experiment_from_row).collect();
            load_experiment_tags(tx, &mut exps)?;
            Ok(finish_page(exps, &query.page))
        })
    }

    fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> StoreResult<()> {
        if new_name.trim().is_empty() {
            return Err(StoreError::invalid(
                "Invalid experiment name: must be a non-empty string",
            ));
        }
        let id = parse_experiment_id(experiment_id)?;
        self.write(|tx| {
            let stage = require_experiment(tx, id, experiment_id)?;
            if stage != "active" {
                return Err(StoreError::invalid(
                    "Cannot rename a non-active experiment.",
                ));
            }
            if tx
                .query_opt(
                    "SELECT 1 FROM experiments WHERE name = ? AND experiment_id <> ?",
                    &[Val::from(new_name), Val::Int(id)],
                )?
                .is_some()
            {
                return Err(StoreError::already_exists(format!(
                    "Experiment '{new_name}' already exists."
                )));
            }
            tx.exec(
                "UPDATE experiments SET name = ?, last_update_time = ? WHERE experiment_id = ?",
                &[
                    Val::from(new_name),
                    Val::Int(kiln_types::now_ms()),
                    Val::Int(id),
                ],
            )?;
            Ok(())
        })
    }

    fn delete_experiment(&self, experiment_id: &str) -> StoreResult<()> {
        let id = parse_experiment_id(experiment_id)?;
        if id == 0 {
            return Err(StoreError::invalid("Cannot delete the default experiment '0'. This is an internally reserved experiment."));
        }
        let done = self.write(|tx| {
            // As on MLflow's server, only an active experiment can be deleted; deleting twice
            // is RESOURCE_DOES_NOT_EXIST, and the first deletion time stays (restore brings
            // back the runs deleted at that time, and gc's cutoff counts from it).
            if require_experiment(tx, id, experiment_id)? == "deleted" {
                return Err(StoreError::not_found(format!(
                    "No Experiment with id={experiment_id} exists (it is deleted)"
                )));
            }
            let now = kiln_types::now_ms();
            tx.exec(
                "UPDATE experiments SET lifecycle_stage = 'deleted', deleted_time = ?, last_update_time = ? WHERE experiment_id = ?",
                &[Val::Int(now), Val::Int(now), Val::Int(id)],
            )?;
            tx.exec(
                "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = ? WHERE experiment_id = ? AND lifecycle_stage = 'active'",
                &[Val::Int(now), Val::Int(id)],
            )?;
            Ok(())
        });
        self.forget_active_runs();
        done
    }

    fn restore_experiment(&self, experiment_id: &str) -> StoreResult<()> {
        let id = parse_experiment_id(experiment_id)?;
        self.write(|tx| {
            let stage = require_experiment(tx, id, experiment_id)?;
            if stage != "deleted" {
                // MLflow's server looks among deleted experiments only: RESOURCE_DOES_NOT_EXIST.
                return Err(StoreError::not_found(format!("No deleted Experiment with id={experiment_id} exists (it is active)")));
            }
            let row = tx.query_opt("SELECT deleted_time FROM experiments WHERE experiment_id = ?", &[Val::Int(id)])?;
            let deleted_time = row.and_then(|r| r.opt_int(0));
            tx.exec(
                "UPDATE experiments SET lifecycle_stage = 'active', deleted_time = NULL, last_update_time = ? WHERE experiment_id = ?",
                &[Val::Int(kiln_types::now_ms()), Val::Int(id)],
            )?;
            // Runs deleted together with the experiment come back with it.
            if let Some(t) = deleted_time {
                tx.exec(
                    "UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL WHERE experiment_id = ? AND deleted_time = ?",
                    &[Val::Int(id), Val::Int(t)],
                )?;
            }
            Ok(())
        })
    }

    fn set_experiment_tag(&self, experiment_id: &str, tag: &Tag) -> StoreResult<()> {
        validate_key("tag", &tag.key)?;
        let id = parse_experiment_id(experiment_id)?;
        self.write(|tx| {
            let stage = require_experiment(tx, id, experiment_id)?;
            if stage != "active" {
                return Err(StoreError::invalid(format!(
                    "The experiment {experiment_id} must be in the 'active' state."
                )));
            }
            tx.exec(
                "INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) \
                 ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                &[
                    Val::Int(id),
                    Val::from(&tag.key),
                    Val::Text(truncate(&tag.value, MAX_TAG_VALUE)),
                ],
            )?;
            touch_experiment(tx, id)
        })
    }

    fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> StoreResult<()> {
        let id = parse_experiment_id(experiment_id)?;
        self.write(|tx| {
            require_experiment(tx, id, experiment_id)?;
            let n = tx.exec(
                "DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?",
                &[Val::Int(id), Val::from(key)],
            )?;
            if n == 0 {
                return Err(StoreError::not_found(format!(
                    "No tag with name: {key} in experiment with id {experiment_id}"
                )));
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- runs

const RUN_COLS: &str = "run_uuid, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage";

fn run_info_from_row(row: &Row) -> RunInfo {
    let run_id = row.text(0);
    RunInfo {
        run_uuid: run_id.clone(),
        run_id,
        experiment_id: row.text(1),
        run_name: row.text(2),
        user_id: row.text(3),
        status: RunStatus::parse(&row.text(4)).unwrap_or(RunStatus::Running),
        start_time: row.int(5),
        end_time: row.opt_int(6),
        artifact_uri: row.text(7),
        lifecycle_stage: LifecycleStage::parse(&row.text(8)).unwrap_or(LifecycleStage::Active),
    }
}

/// A metric value as stored: NaN is NULL plus a flag, so SQL comparisons and ordering skip it.
pub(crate) fn metric_val(v: f64) -> (Val, Val) {
    if v.is_nan() {
        (Val::Null, Val::Int(1))
    } else {
        (Val::Real(v), Val::Int(0))
    }
}

pub(crate) fn metric_value(row: &Row, value_col: usize, nan_col: usize) -> f64 {
    if row.int(nan_col) != 0 {
        f64::NAN
    } else {
        row.opt_real(value_col).unwrap_or(f64::NAN)
    }
}

/// Load full runs (info, latest metrics, params, tags, inputs, outputs) for `ids`, in that order.
pub(crate) fn load_runs(tx: &mut dyn Tx, ids: &[String]) -> StoreResult<Vec<Run>> {
    let mut runs: HashMap<String, Run> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(900) {
        let vals: Vec<Val> = chunk.iter().map(Val::from).collect();
        let ph = placeholders(chunk.len());
        for row in tx.query(
            &format!("SELECT {RUN_COLS} FROM runs WHERE run_uuid IN ({ph})"),
            &vals,
        )? {
            let info = run_info_from_row(&row);
            runs.insert(
                info.run_id.clone(),
                Run {
                    info,
                    data: RunData::default(),
                    inputs: RunInputs::default(),
                    outputs: RunOutputs::default(),
                },
            );
        }
        for row in tx.query(
            &format!("SELECT run_uuid, key, value, is_nan, timestamp, step FROM latest_metrics WHERE run_uuid IN ({ph}) ORDER BY key"),
            &vals,
        )? {
            if let Some(run) = runs.get_mut(&row.text(0)) {
                run.data.metrics.push(Metric::new(row.text(1), metric_value(&row, 2, 3), row.int(4), row.int(5)));
            }
        }
        for row in tx.query(
            &format!(
                "SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({ph}) ORDER BY key"
            ),
            &vals,
        )? {
            if let Some(run) = runs.get_mut(&row.text(0)) {
                run.data.params.push(Param {
                    key: row.text(1),
                    value: row.text(2),
                });
            }
        }
        for row in tx.query(
            &format!("SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({ph}) ORDER BY key"),
            &vals,
        )? {
            if let Some(run) = runs.get_mut(&row.text(0)) {
                run.data.tags.push(Tag::new(row.text(1), row.text(2)));
            }
        }
        load_inputs(tx, &vals, &ph, &mut runs)?;
        for row in tx.query(&format!("SELECT run_uuid, model_id FROM run_model_inputs WHERE run_uuid IN ({ph}) ORDER BY model_id"), &vals)? {
            if let Some(run) = runs.get_mut(&row.text(0)) {
                run.inputs.model_inputs.push(ModelInput { model_id: row.text(1) });
            }
        }
        for row in tx.query(&format!("SELECT run_uuid, model_id, step FROM run_outputs WHERE run_uuid IN ({ph}) ORDER BY model_id"), &vals)? {
            if let Some(run) = runs.get_mut(&row.text(0)) {
                run.outputs.model_outputs.push(ModelOutput { model_id: row.text(1), step: row.int(2) });
            }
        }
    }
    Ok(ids.iter().filter_map(|id| runs.remove(id)).collect())
}

fn load_inputs(
    tx: &mut dyn Tx,
    vals: &[Val],
    ph: &str,
    runs: &mut HashMap<String, Run>,
) -> StoreResult<()> {
    let rows = tx.query(
        &format!(
            "SELECT i.run_uuid, d.dataset_uuid, d.name, d.digest, d.source_type, d.source, d.dataset_schema, d.profile \
             FROM inputs i JOIN datasets d ON d.dataset_uuid = i.dataset_uuid WHERE i.run_uuid IN ({ph}) ORDER BY d.name, d.digest"
        ),
        vals,
    )?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut tags: HashMap<(String, String), Vec<Tag>> = HashMap::new();
    for row in tx.query(&format!("SELECT run_uuid, dataset_uuid, key, value FROM input_tags WHERE run_uuid IN ({ph}) ORDER BY key"), vals)? {
        tags.entry((row.text(0), row.text(1))).or_default().push(Tag::new(row.text(2), row.text(3)));
    }
    for row in rows {
        if let Some(run) = runs.get_mut(&row.text(0)) {
            run.inputs.dataset_inputs.push(DatasetInput {
                tags: tags.remove(&(row.text(0), row.text(1))).unwrap_or_default(),
                dataset: kiln_types::Dataset {
                    name: row.text(2),
                    digest: row.text(3),
                    source_type: row.text(4),
                    source: row.text(5),
                    schema: row.opt_text(6),
                    profile: row.opt_text(7),
                },
            });
        }
    }
    Ok(())
}

fn not_found_run(run_id: &str) -> StoreError {
    StoreError::not_found(format!("Run with id={run_id} not found"))
}

/// The run's experiment id, checking that it exists and is active.
pub(crate) fn require_active_run(tx: &mut dyn Tx, run_id: &str) -> StoreResult<i64> {
    let row = tx
        .query_opt(
            "SELECT lifecycle_stage, experiment_id FROM runs WHERE run_uuid = ?",
            &[Val::from(run_id)],
        )?
        .ok_or_else(|| not_found_run(run_id))?;
    if row.text(0) != "active" {
        return Err(StoreError::invalid(format!(
            "The run {run_id} must be in the 'active' state. Current state is {}.",
            row.text(0)
        )));
    }
    Ok(row.int(1))
}

fn require_run(tx: &mut dyn Tx, run_id: &str) -> StoreResult<String> {
    let row = tx
        .query_opt(
            "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?",
            &[Val::from(run_id)],
        )?
        .ok_or_else(|| not_found_run(run_id))?;
    Ok(row.text(0))
}

fn set_tag_tx(tx: &mut dyn Tx, run_id: &str, tag: &Tag) -> StoreResult<()> {
    let value = truncate(&tag.value, MAX_TAG_VALUE);
    tx.exec(
        "INSERT INTO tags (run_uuid, key, value) VALUES (?, ?, ?) ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value",
        &[Val::from(run_id), Val::from(&tag.key), Val::from(&value)],
    )?;
    if tag.key == "mlflow.runName" {
        tx.exec(
            "UPDATE runs SET name = ? WHERE run_uuid = ?",
            &[Val::from(&value), Val::from(run_id)],
        )?;
    }
    Ok(())
}

/// Rows per multi-row INSERT (9 values each: well under SQLite's and PostgreSQL's parameter limits).
const METRIC_ROWS_PER_INSERT: usize = 100;

/// Whether `c` replaces `b` as the latest value of a metric: higher step, then later timestamp,
/// then the larger value (a NaN never replaces a number). Mirrors the SQL upsert condition.
pub(crate) fn newer(c: &Metric, b: &Metric) -> bool {
    newer_point(
        (c.step, c.timestamp, c.value),
        (b.step, b.timestamp, b.value),
    )
}

/// [`newer`] on `(step, timestamp, value)` points.
pub(crate) fn newer_point(c: (i64, i64, f64), b: (i64, i64, f64)) -> bool {
    (c.0, c.1) > (b.0, b.1)
        || ((c.0, c.1) == (b.0, b.1) && (b.2.is_nan() || (!c.2.is_nan() && c.2 >= b.2)))
}

/// History rows into `table` (`metrics`, or SQLite's `metrics_staged` for points linked to a
/// model or dataset; see chunks.rs), as multi-row inserts so a 1000-metric batch is ten
/// statements, not a thousand. Latest values are left to the caller.
pub(crate) fn insert_history_into_tx(
    tx: &mut dyn Tx,
    table: &str,
    run_id: &str,
    metrics: &[Metric],
) -> StoreResult<()> {
    for chunk in metrics.chunks(METRIC_ROWS_PER_INSERT) {
        let mut params = Vec::with_capacity(chunk.len() * 9);
        for m in chunk {
            let (value, is_nan) = metric_val(m.value);
            params.extend([
                Val::from(run_id),
                Val::from(&m.key),
                value,
                is_nan,
                Val::Int(m.timestamp),
                Val::Int(m.step),
                Val::from(m.model_id.clone()),
                Val::from(m.dataset_name.clone()),
                Val::from(m.dataset_digest.clone()),
            ]);
        }
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        tx.exec(
            &format!(
                "INSERT INTO {table} (run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest) VALUES {rows}"
            ),
            &params,
        )?;
    }
    Ok(())
}

/// History plus latest values, in one transaction (PostgreSQL, where replicas share the
/// database and so cannot buffer latest values in one process's memory).
fn log_metrics_tx(
    tx: &mut dyn Tx,
    run_id: &str,
    experiment_id: i64,
    metrics: &[Metric],
) -> StoreResult<()> {
    insert_history_into_tx(tx, "metrics", run_id, metrics)?;
    // Reduce the batch to one candidate per key first (PostgreSQL refuses to upsert the same
    // row twice in one statement), then upsert with the same ordering rule.
    let mut latest: Vec<&Metric> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for m in metrics {
        match index.get(m.key.as_str()) {
            Some(&i) => {
                if newer(m, latest[i]) {
                    latest[i] = m;
                }
            }
            None => {
                index.insert(&m.key, latest.len());
                latest.push(m);
            }
        }
    }
    upsert_latest_tx(tx, run_id, experiment_id, &latest)
}

/// [`newer`]'s rule in SQL, for an upsert into `latest_metrics`: the incoming row wins.
pub(crate) const LATEST_IS_NEWER: &str = "excluded.step > latest_metrics.step \
    OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) \
    OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp \
        AND (latest_metrics.value IS NULL OR excluded.value >= latest_metrics.value))";

/// Fold candidates (at most one per key) into `latest_metrics`, keeping the newest by
/// [`newer`]'s rule.
pub(crate) fn upsert_latest_tx(
    tx: &mut dyn Tx,
    run_id: &str,
    experiment_id: i64,
    latest: &[&Metric],
) -> StoreResult<()> {
    for chunk in latest.chunks(METRIC_ROWS_PER_INSERT) {
        let mut params = Vec::with_capacity(chunk.len() * 7);
        for m in chunk {
            let (value, is_nan) = metric_val(m.value);
            params.extend([
                Val::from(run_id),
                Val::Int(experiment_id),
                Val::from(&m.key),
                value,
                is_nan,
                Val::Int(m.timestamp),
                Val::Int(m.step),
            ]);
        }
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        tx.exec(
            &format!(
                "INSERT INTO latest_metrics (run_uuid, experiment_id, key, value, is_nan, timestamp, step) VALUES {rows} \
                 ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, \
                 timestamp = excluded.timestamp, step = excluded.step WHERE {LATEST_IS_NEWER}"
            ),
            &params,
        )?;
    }
    Ok(())
}

fn log_params_tx(tx: &mut dyn Tx, run_id: &str, params: &[Param]) -> StoreResult<()> {
    let mut seen: HashMap<&str, String> = HashMap::new();
    for p in params {
        let value = truncate(&p.value, MAX_PARAM_VALUE);
        if let Some(prev) = seen.get(p.key.as_str()) {
            if *prev != value {
                return Err(StoreError::invalid(format!(
                    "Duplicate parameter keys with different values in the batch: '{}' ('{prev}' vs '{value}')",
                    p.key
                )));
            }
            continue;
        }
        // Insert first, then compare with what is there: two replicas logging the same param
        // at once both succeed (the second waits for the first's row) instead of one of them
        // hitting the primary key.
        let inserted = tx.exec(
            "INSERT INTO params (run_uuid, key, value) VALUES (?, ?, ?) ON CONFLICT (run_uuid, key) DO NOTHING",
            &[Val::from(run_id), Val::from(&p.key), Val::from(&value)],
        )?;
        if inserted == 0 {
            let old = tx
                .query_opt(
                    "SELECT value FROM params WHERE run_uuid = ? AND key = ?",
                    &[Val::from(run_id), Val::from(&p.key)],
                )?
                .map(|row| row.text(0))
                .unwrap_or_default();
            if old != value {
                return Err(StoreError::invalid(format!(
                    "Changing param values is not allowed. Param with key='{}' was already logged with value='{old}' \
                     for run ID='{run_id}'. Attempted logging new value '{value}'.",
                    p.key
                )));
            }
        }
        seen.insert(&p.key, value);
    }
    Ok(())
}

/// MLflow's batch limits and key rules.
fn validate_batch(metrics: &[Metric], params: &[Param], tags: &[Tag]) -> StoreResult<()> {
    if metrics.len() > 1000
        || params.len() > 100
        || tags.len() > 100
        || metrics.len() + params.len() + tags.len() > 1000
    {
        return Err(StoreError::invalid(format!(
            "A batch logging request can contain at most 1000 metrics, 100 params, 100 tags and 1000 entries in total; \
             got {} metrics, {} params and {} tags",
            metrics.len(),
            params.len(),
            tags.len()
        )));
    }
    for m in metrics {
        validate_key("metric", &m.key)?;
    }
    for p in params {
        validate_key("param", &p.key)?;
    }
    for t in tags {
        validate_key("tag", &t.key)?;
    }
    Ok(())
}

/// A batch of plain metrics appended to the metric journal (the server's embedded store, see
/// journal.rs) and acknowledged without a SQLite commit; `None` when it must go through SQLite
/// instead (no journal, params or tags, metrics linked to a model or dataset, a bulk batch).
fn journal_batch(
    db: &crate::db::SqliteDb,
    run_id: &str,
    metrics: &[Metric],
    params: &[Param],
    tags: &[Tag],
) -> Option<StoreResult<()>> {
    let journal = db.journal.get()?;
    if metrics.is_empty()
        || !params.is_empty()
        || !tags.is_empty()
        || metrics.iter().any(crate::chunks::is_linked)
    {
        return None;
    }
    let n = u32::try_from(metrics.len()).ok()?;
    let points = crate::chunks::encode_staged(&metrics.iter().collect::<Vec<_>>());
    // Before the active-run check: a bulk batch goes through SQLite, which checks it there.
    if !journal.accepts(points.len()) {
        return None;
    }
    let experiment_id = match db.active_runs.get(run_id) {
        (Some(experiment_id), _) => experiment_id,
        (None, generation) => match db.read(|tx| require_active_run(tx, run_id)) {
            Ok(experiment_id) => {
                db.active_runs.insert(run_id, experiment_id, generation);
                experiment_id
            }
            Err(e) => return Some(Err(e)),
        },
    };
    if journal.is_full(points.len()) {
        if let Err(e) = crate::latest::spill_journal(db) {
            return Some(Err(e));
        }
    }
    journal.append(run_id, n, points, || {
        db.latest.add(run_id, experiment_id, metrics);
    })
}

/// SQLite's log-batch transaction: history staged with the run's pending marker in one commit
/// (durable with it), latest values folded in behind (see latest.rs). Returns the experiment id
/// for [`LatestBuffer::add`](crate::latest::LatestBuffer).
fn sqlite_batch_tx<'a>(
    run_id: &'a str,
    metrics: &'a [Metric],
    params: &'a [Param],
    tags: &'a [Tag],
) -> impl FnOnce(&mut dyn Tx) -> StoreResult<i64> + 'a {
    move |tx| {
        let experiment_id = require_active_run(tx, run_id)?;
        log_params_tx(tx, run_id, params)?;
        if !metrics.is_empty() {
            crate::chunks::stage_tx(tx, run_id, metrics)?;
            crate::latest::mark_pending_tx(tx, run_id)?;
        }
        for t in tags {
            set_tag_tx(tx, run_id, t)?;
        }
        Ok(experiment_id)
    }
}

impl RunStore for SqlStore {
    fn create_run(&self, new: &NewRun) -> StoreResult<Run> {
        let exp_id = parse_experiment_id(&new.experiment_id)?;
        for t in &new.tags {
            validate_key("tag", &t.key)?;
        }
        let run_id = kiln_types::new_run_id();
        let name_tag = new
            .tags
            .iter()
            .find(|t| t.key == "mlflow.runName")
            .map(|t| t.value.clone());
        let run_name = new
            .run_name
            .clone()
            .filter(|n| !n.is_empty())
            .or(name_tag)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| kiln_types::run_name_for(&run_id));
        self.write(|tx| {
            let row = tx
                .query_opt("SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = ?", &[Val::Int(exp_id)])?
                .ok_or_else(|| StoreError::not_found(format!("No Experiment with id={} exists", new.experiment_id)))?;
            if row.text(0) != "active" {
                return Err(StoreError::invalid(format!(
                    "The experiment {} must be in the 'active' state. Current state is {}.",
                    new.experiment_id,
                    row.text(0)
                )));
            }
            let artifact_uri = format!("{}/{run_id}/artifacts", row.text(1).trim_end_matches('/'));
            let start_time = if new.start_time > 0 { new.start_time } else { kiln_types::now_ms() };
            tx.exec(
                &format!("INSERT INTO runs ({RUN_COLS}) VALUES (?, ?, ?, ?, 'RUNNING', ?, NULL, ?, 'active')"),
                &[
                    Val::from(&run_id),
                    Val::Int(exp_id),
                    Val::from(&run_name),
                    Val::from(&new.user_id),
                    Val::Int(start_time),
                    Val::from(&artifact_uri),
                ],
            )?;
            for t in &new.tags {
                if t.key != "mlflow.runName" {
                    set_tag_tx(tx, &run_id, t)?;
                }
            }
            set_tag_tx(tx, &run_id, &Tag::new("mlflow.runName", run_name.clone()))?;
            load_runs(tx, std::slice::from_ref(&run_id))?
                .pop()
                .ok_or_else(|| not_found_run(&run_id))
        })
    }

    fn get_run(&self, run_id: &str) -> StoreResult<Run> {
        self.read(|tx| {
            load_runs(tx, &[run_id.to_string()])?
                .pop()
                .ok_or_else(|| not_found_run(run_id))
        })
    }

    fn update_run(&self, run_id: &str, update: &RunUpdate) -> StoreResult<RunInfo> {
        self.write(|tx| {
            require_active_run(tx, run_id)?;
            if let Some(status) = update.status {
                tx.exec(
                    "UPDATE runs SET status = ? WHERE run_uuid = ?",
                    &[Val::from(status.as_str()), Val::from(run_id)],
                )?;
            }
            if let Some(end) = update.end_time {
                tx.exec(
                    "UPDATE runs SET end_time = ? WHERE run_uuid = ?",
                    &[Val::Int(end), Val::from(run_id)],
                )?;
            }
            if let Some(name) = update.run_name.as_deref().filter(|n| !n.is_empty()) {
                set_tag_tx(tx, run_id, &Tag::new("mlflow.runName", name))?;
            }
            let row = tx
                .query_opt(
                    &format!("SELECT {RUN_COLS} FROM runs WHERE run_uuid = ?"),
                    &[Val::from(run_id)],
                )?
                .ok_or_else(|| not_found_run(run_id))?;
            Ok(run_info_from_row(&row))
        })
    }

    fn delete_run(&self, run_id: &str) -> StoreResult<()> {
        let done = self.write(|tx| {
            require_run(tx, run_id)?;
            tx.exec(
                // An already deleted run keeps its deletion time (restore_experiment and gc use it).
                "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = COALESCE(deleted_time, ?) WHERE run_uuid = ?",
                &[Val::Int(kiln_types::now_ms()), Val::from(run_id)],
            )?;
            Ok(())
        });
        self.forget_active_runs();
        done
    }

    fn restore_run(&self, run_id: &str) -> StoreResult<()> {
        self.write(|tx| {
            require_run(tx, run_id)?;
            tx.exec("UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL WHERE run_uuid = ?", &[Val::from(run_id)])?;
            Ok(())
        })
    }

    fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> StoreResult<()> {
        validate_batch(metrics, params, tags)?;
        if let Some(db) = self.sqlite() {
            if let Some(done) = journal_batch(db, run_id, metrics, params, tags) {
                return done;
            }
            // Journaled batches first, so history keeps logging order.
            if db.has_journaled() {
                crate::latest::spill_journal(db)?;
            }
            return db
                .write_then(sqlite_batch_tx(run_id, metrics, params, tags), |e| {
                    db.latest.add(run_id, *e, metrics);
                })
                .map(|_| ());
        }
        self.write(|tx| {
            let experiment_id = require_active_run(tx, run_id)?;
            log_params_tx(tx, run_id, params)?;
            log_metrics_tx(tx, run_id, experiment_id, metrics)?;
            for t in tags {
                set_tag_tx(tx, run_id, t)?;
            }
            Ok(())
        })
    }

    fn try_log_batch_now(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Option<StoreResult<()>> {
        if let Err(e) = validate_batch(metrics, params, tags) {
            return Some(Err(e));
        }
        let db = self.sqlite()?;
        if let Some(done) = journal_batch(db, run_id, metrics, params, tags) {
            return Some(done);
        }
        if db.has_journaled() {
            // Journaled batches must be staged first (see log_batch).
            return None;
        }
        let done = db.try_write_then(sqlite_batch_tx(run_id, metrics, params, tags), |e| {
            db.latest.add(run_id, *e, metrics);
        })?;
        Some(done.map(|_| ()))
    }

    fn delete_tag(&self, run_id: &str, key: &str) -> StoreResult<()> {
        self.write(|tx| {
            require_active_run(tx, run_id)?;
            let n = tx.exec(
                "DELETE FROM tags WHERE run_uuid = ? AND key = ?",
                &[Val::from(run_id), Val::from(key)],
            )?;
            if n == 0 {
                return Err(StoreError::not_found(format!(
                    "No tag with name: {key} in run with id {run_id}"
                )));
            }
            Ok(())
        })
    }

    fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> StoreResult<()> {
        self.write(|tx| {
            let experiment_id = require_active_run(tx, run_id)?;
            for input in datasets {
                let d = &input.dataset;
                let existing = tx.query_opt(
                    "SELECT dataset_uuid FROM datasets WHERE experiment_id = ? AND name = ? AND digest = ?",
                    &[Val::Int(experiment_id), Val::from(&d.name), Val::from(&d.digest)],
                )?;
                let dataset_uuid = if let Some(row) = existing {
                    row.text(0)
                } else {
                    let id = kiln_types::new_run_id();
                    tx.exec(
                        "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, source_type, source, dataset_schema, profile) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        &[
                            Val::from(&id),
                            Val::Int(experiment_id),
                            Val::from(&d.name),
                            Val::from(&d.digest),
                            Val::from(&d.source_type),
                            Val::from(&d.source),
                            Val::from(d.schema.clone()),
                            Val::from(d.profile.clone()),
                        ],
                    )?;
                    id
                };
                tx.exec(
                    "INSERT INTO inputs (run_uuid, dataset_uuid) VALUES (?, ?) ON CONFLICT (run_uuid, dataset_uuid) DO NOTHING",
                    &[Val::from(run_id), Val::from(&dataset_uuid)],
                )?;
                for t in &input.tags {
                    tx.exec(
                        "INSERT INTO input_tags (run_uuid, dataset_uuid, key, value) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (run_uuid, dataset_uuid, key) DO UPDATE SET value = excluded.value",
                        &[Val::from(run_id), Val::from(&dataset_uuid), Val::from(&t.key), Val::from(&t.value)],
                    )?;
                }
            }
            Ok(())
        })
    }

    fn log_model_inputs(&self, run_id: &str, models: &[ModelInput]) -> StoreResult<()> {
        self.write(|tx| {
            require_active_run(tx, run_id)?;
            for m in models {
                tx.exec(
                    "INSERT INTO run_model_inputs (run_uuid, model_id) VALUES (?, ?) \
                     ON CONFLICT (run_uuid, model_id) DO NOTHING",
                    &[Val::from(run_id), Val::from(&m.model_id)],
                )?;
            }
            Ok(())
        })
    }

    fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> StoreResult<()> {
        self.write(|tx| {
            require_active_run(tx, run_id)?;
            for m in models {
                tx.exec(
                    "INSERT INTO run_outputs (run_uuid, model_id, step) VALUES (?, ?, ?) \
                     ON CONFLICT (run_uuid, model_id) DO UPDATE SET step = excluded.step",
                    &[Val::from(run_id), Val::from(&m.model_id), Val::Int(m.step)],
                )?;
            }
            Ok(())
        })
    }

    fn get_metric_history(
        &self,
        run_id: &str,
        key: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<Metric>> {
        self.read(|tx| {
            require_run(tx, run_id)?;
            let skip = usize::try_from(page.offset).unwrap_or(usize::MAX);
            let take = usize::try_from(page.max_results.saturating_add(1)).unwrap_or(usize::MAX);
            if let Some(items) = crate::chunks::history_page_tx(tx, run_id, key, skip, take)? {
                return Ok(finish_page(items, page));
            }
            let mut params = vec![Val::from(run_id), Val::from(key)];
            params.extend(limit_params(page));
            let rows = tx.query(
                "SELECT key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest FROM metrics \
                 WHERE run_uuid = ? AND key = ? ORDER BY step, timestamp, id LIMIT ? OFFSET ?",
                &params,
            )?;
            let items = rows
                .iter()
                .map(|r| {
                    let mut m = Metric::new(r.text(0), metric_value(r, 1, 2), r.int(3), r.int(4));
                    m.model_id = r.opt_text(5);
                    m.dataset_name = r.opt_text(6);
                    m.dataset_digest = r.opt_text(7);
                    m
                })
                .collect();
            Ok(finish_page(items, page))
        })
    }

    fn search_runs(&self, query: &RunQuery) -> StoreResult<Page<Run>> {
        let exp_ids: Vec<i64> = query
            .experiment_ids
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect();
        if exp_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        self.read(|tx| {
            let (sql, params) = crate::search::compile_run_search(tx.dialect(), &exp_ids, query)?;
            tracing::debug!(%sql, ?params, "search_runs");
            let ids: Vec<String> = tx.query(&sql, &params)?.iter().map(|r| r.text(0)).collect();
            let page = finish_page(ids, &query.page);
            let runs = load_runs(tx, &page.items)?;
            Ok(Page {
                items: runs,
                next_page_token: page.next_page_token,
            })
        })
    }
}
