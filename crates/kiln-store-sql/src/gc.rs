//! Permanent removal of soft-deleted runs, their logged models and deleted experiments.

use std::collections::{HashMap, HashSet};

use kiln_store::{GcExperiment, GcKept, GcLoggedModel, GcPlan, GcRun, GcStore, StoreResult};

use crate::db::{Tx, Val};
use crate::tracking::placeholders;
use crate::SqlStore;

/// `deleted_time` condition for the cutoff (`None` = everything deleted).
fn cutoff_cond(col: &str, cutoff: Option<i64>) -> (String, Vec<Val>) {
    match cutoff {
        Some(t) => (
            format!("{col} IS NOT NULL AND {col} <= ?"),
            vec![Val::Int(t)],
        ),
        None => ("1 = 1".to_string(), Vec::new()),
    }
}

/// What the registry still loads from: every run or logged model id that a model version's
/// `source` names (`runs:/<run>/model`, `models:/<m-id>`, a path through a run's artifacts),
/// its `model_id`, and its `run_id` when it has no logged model (the run's artifacts are then
/// the model), with the first version naming it. The source run of a registered *logged* model
/// is not needed to load it and goes like any other deleted run.
struct VersionRefs {
    by_id: HashMap<String, String>,
    sources: Vec<String>,
}

impl VersionRefs {
    fn load(tx: &mut dyn Tx) -> StoreResult<Self> {
        let mut by_id = HashMap::new();
        let mut sources = Vec::new();
        for r in tx.query(
            "SELECT name, version, source, run_id, model_id FROM model_versions ORDER BY name, version",
            &[],
        )? {
            let who = format!("{} version {}", r.text(0), r.int(1));
            let source = r.text(2);
            let model_id = r.opt_text(4);
            let run_id = r.opt_text(3).filter(|_| model_id.is_none());
            let ids = [run_id, model_id].into_iter().flatten();
            let segments = source
                .split(['/', ':', '@', '?', '#'])
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            for id in ids.chain(segments) {
                by_id.entry(id).or_insert_with(|| who.clone());
            }
            sources.push(source);
        }
        Ok(Self { by_id, sources })
    }

    fn user(&self, id: &str) -> Option<&String> {
        self.by_id.get(id)
    }
}

fn collect(tx: &mut dyn Tx, cutoff: Option<i64>) -> StoreResult<GcPlan> {
    let refs = VersionRefs::load(tx)?;
    let mut kept = Vec::new();

    // Deleted runs, less those a registered model version still uses (`kiln train --register`
    // versions name their run in `run_id` and `runs:/<id>/model`): serving and lineage need them.
    let (cond, params) = cutoff_cond("deleted_time", cutoff);
    let mut runs = Vec::new();
    let mut kept_run_experiments = HashSet::new();
    for r in tx.query(
        &format!("SELECT run_uuid, experiment_id, artifact_uri FROM runs WHERE lifecycle_stage = 'deleted' AND {cond} ORDER BY run_uuid"),
        &params,
    )? {
        let run = GcRun { run_id: r.text(0), experiment_id: r.text(1), artifact_uri: r.text(2) };
        match refs.user(&run.run_id) {
            Some(who) => {
                kept_run_experiments.insert(run.experiment_id);
                kept.push(GcKept {
                    kind: "run",
                    id: run.run_id,
                    reason: format!("registered model {who} uses it"),
                });
            }
            None => runs.push(run),
        }
    }

    // Deleted experiments with no run left that is not collected now, and no logged model a
    // model version uses.
    let (rcond, rparams) = cutoff_cond("r.deleted_time", cutoff);
    let (econd, mut eparams) = cutoff_cond("e.deleted_time", cutoff);
    eparams.extend(rparams);
    let mut experiments: Vec<GcExperiment> = tx
        .query(
            &format!(
                "SELECT e.experiment_id, e.artifact_location FROM experiments e \
                 WHERE e.lifecycle_stage = 'deleted' AND e.experiment_id <> 0 AND {econd} \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.experiment_id = e.experiment_id \
                                 AND NOT (r.lifecycle_stage = 'deleted' AND {rcond})) \
                 ORDER BY e.experiment_id"
            ),
            &eparams,
        )?
        .iter()
        .map(|r| GcExperiment {
            experiment_id: r.text(0),
            artifact_location: r.text(1),
        })
        .filter(|e| !kept_run_experiments.contains(&e.experiment_id))
        .collect();
    let exp_vals = |exps: &[GcExperiment]| -> Vec<Val> {
        exps.iter()
            .filter_map(|e| e.experiment_id.parse::<i64>().ok())
            .map(Val::Int)
            .collect()
    };
    let mut used_model_experiments = HashSet::new();
    for chunk in exp_vals(&experiments).chunks(500) {
        for r in tx.query(
            &format!(
                "SELECT model_id, experiment_id FROM logged_models WHERE experiment_id IN ({})",
                placeholders(chunk.len())
            ),
            chunk,
        )? {
            if refs.user(&r.text(0)).is_some() {
                used_model_experiments.insert(r.text(1));
            }
        }
    }
    experiments.retain(|e| !used_model_experiments.contains(&e.experiment_id));

    // Logged models of collected runs or experiments, and deleted ones, unless a registered
    // version still uses them.
    let mut logged_models = Vec::new();
    let mut seen = HashSet::new();
    let run_ids: Vec<Val> = runs.iter().map(|r| Val::from(&r.run_id)).collect();
    let cols = "model_id, experiment_id, artifact_uri FROM logged_models lm";
    let mut queries: Vec<(String, Vec<Val>)> = Vec::new();
    for chunk in run_ids.chunks(500) {
        queries.push((
            format!(
                "SELECT {cols} WHERE source_run_id IN ({})",
                placeholders(chunk.len())
            ),
            chunk.to_vec(),
        ));
    }
    for chunk in exp_vals(&experiments).chunks(500) {
        queries.push((
            format!(
                "SELECT {cols} WHERE experiment_id IN ({})",
                placeholders(chunk.len())
            ),
            chunk.to_vec(),
        ));
    }
    // A logged model's deletion time is its last update: deleting one updates nothing else.
    let (mcond, mparams) = cutoff_cond("last_updated_timestamp_ms", cutoff);
    queries.push((
        format!("SELECT {cols} WHERE lifecycle_stage = 'deleted' AND {mcond}"),
        mparams,
    ));
    for (sql, params) in queries {
        for r in tx.query(&sql, &params)? {
            if !seen.insert(r.text(0)) {
                continue;
            }
            let model = GcLoggedModel {
                model_id: r.text(0),
                experiment_id: r.text(1),
                artifact_uri: r.text(2),
            };
            match refs.user(&model.model_id) {
                Some(who) => kept.push(GcKept {
                    kind: "logged model",
                    id: model.model_id,
                    reason: format!("registered model {who} uses it"),
                }),
                None => logged_models.push(model),
            }
        }
    }
    logged_models.sort_by(|a, b| a.model_id.cmp(&b.model_id));

    let collected: HashSet<&str> = experiments
        .iter()
        .map(|e| e.experiment_id.as_str())
        .collect();
    let mut live_locations: Vec<String> = tx
        .query(
            "SELECT experiment_id, artifact_location FROM experiments",
            &[],
        )?
        .iter()
        .filter(|r| !collected.contains(r.text(0).as_str()))
        .map(|r| r.text(1))
        .collect();
    live_locations.extend(refs.sources);
    Ok(GcPlan {
        runs,
        logged_models,
        experiments,
        kept,
        live_locations,
    })
}

impl GcStore for SqlStore {
    fn collectable(&self, older_than_ms: Option<i64>) -> StoreResult<GcPlan> {
        self.read(|tx| collect(tx, older_than_ms))
    }

    fn purge(&self, plan: &GcPlan) -> StoreResult<()> {
        // The plan may be stale (artifacts are deleted between `collectable` and `purge`), so
        // every entry is checked again: a run restored since is left alone, an experiment goes
        // only once none of its runs is left, a logged model only while no model version uses it
        // and its run or experiment is gone (or it was deleted itself).
        self.write(|tx| {
            for run in &plan.runs {
                let id = [Val::from(&run.run_id)];
                let still_deleted = tx
                    .query_opt("SELECT 1 FROM runs WHERE run_uuid = ? AND lifecycle_stage = 'deleted'", &id)?
                    .is_some();
                if !still_deleted {
                    continue;
                }
                for table in ["metrics", "metric_chunks", "metrics_staged", "metrics_staged_batches", "latest_pending", "latest_metrics", "params", "tags", "inputs", "input_tags", "run_outputs", "run_model_inputs", "runs"] {
                    tx.exec(&format!("DELETE FROM {table} WHERE run_uuid = ?"), &id)?;
                }
            }
            for e in &plan.experiments {
                let Ok(id) = e.experiment_id.parse::<i64>() else { continue };
                let id = [Val::Int(id)];
                let purgeable = tx
                    .query_opt(
                        "SELECT 1 FROM experiments e WHERE e.experiment_id = ? AND e.experiment_id <> 0 \
                         AND e.lifecycle_stage = 'deleted' \
                         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.experiment_id = e.experiment_id) \
                         AND NOT EXISTS (SELECT 1 FROM logged_models lm JOIN model_versions mv ON mv.model_id = lm.model_id \
                                         WHERE lm.experiment_id = e.experiment_id)",
                        &id,
                    )?
                    .is_some();
                if !purgeable {
                    continue;
                }
                for table in ["experiment_tags", "datasets", "experiments"] {
                    tx.exec(&format!("DELETE FROM {table} WHERE experiment_id = ?"), &id)?;
                }
            }
            for m in &plan.logged_models {
                let id = [Val::from(&m.model_id)];
                let purgeable = tx
                    .query_opt(
                        "SELECT 1 FROM logged_models lm WHERE lm.model_id = ? \
                         AND NOT EXISTS (SELECT 1 FROM model_versions mv WHERE mv.model_id = lm.model_id) \
                         AND (lm.lifecycle_stage = 'deleted' \
                              OR NOT EXISTS (SELECT 1 FROM experiments e WHERE e.experiment_id = lm.experiment_id) \
                              OR (lm.source_run_id IS NOT NULL \
                                  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_uuid = lm.source_run_id)))",
                        &id,
                    )?
                    .is_some();
                if !purgeable {
                    continue;
                }
                for table in ["logged_model_tags", "logged_model_params", "logged_models"] {
                    tx.exec(&format!("DELETE FROM {table} WHERE model_id = ?"), &id)?;
                }
            }
            Ok(())
        })
    }
}
