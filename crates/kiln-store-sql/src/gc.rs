//! Permanent removal of soft-deleted runs, their logged models and deleted experiments.

use kiln_store::{GcExperiment, GcLoggedModel, GcPlan, GcRun, GcStore, StoreResult};

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

fn collect(tx: &mut dyn Tx, cutoff: Option<i64>) -> StoreResult<GcPlan> {
    let (cond, params) = cutoff_cond("deleted_time", cutoff);
    let runs: Vec<GcRun> = tx
        .query(
            &format!("SELECT run_uuid, experiment_id, artifact_uri FROM runs WHERE lifecycle_stage = 'deleted' AND {cond} ORDER BY run_uuid"),
            &params,
        )?
        .iter()
        .map(|r| GcRun { run_id: r.text(0), experiment_id: r.text(1), artifact_uri: r.text(2) })
        .collect();

    // Deleted experiments with no run left that is not collected now.
    let (rcond, rparams) = cutoff_cond("r.deleted_time", cutoff);
    let (econd, mut eparams) = cutoff_cond("e.deleted_time", cutoff);
    eparams.extend(rparams);
    let experiments: Vec<GcExperiment> = tx
        .query(
            &format!(
                "SELECT e.experiment_id, e.artifact_location FROM experiments e \
                 WHERE e.lifecycle_stage = 'deleted' AND e.experiment_id <> 0 AND {econd} \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.experiment_id = e.experiment_id \
                                 AND NOT (r.lifecycle_stage = 'deleted' AND {rcond})) \
                 AND NOT EXISTS (SELECT 1 FROM logged_models lm JOIN model_versions mv ON mv.model_id = lm.model_id \
                                 WHERE lm.experiment_id = e.experiment_id) \
                 ORDER BY e.experiment_id"
            ),
            &eparams,
        )?
        .iter()
        .map(|r| GcExperiment { experiment_id: r.text(0), artifact_location: r.text(1) })
        .collect();

    // Logged models of collected runs or experiments, unless a registered version still uses them.
    let mut logged_models = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let run_ids: Vec<Val> = runs.iter().map(|r| Val::from(&r.run_id)).collect();
    let exp_ids: Vec<Val> = experiments
        .iter()
        .filter_map(|e| e.experiment_id.parse::<i64>().ok())
        .map(Val::Int)
        .collect();
    let keep = "NOT EXISTS (SELECT 1 FROM model_versions mv WHERE mv.model_id = lm.model_id)";
    let mut queries: Vec<(String, Vec<Val>)> = Vec::new();
    for chunk in run_ids.chunks(500) {
        queries.push((
            format!(
                "SELECT model_id, experiment_id, artifact_uri FROM logged_models lm WHERE source_run_id IN ({}) AND {keep}",
                placeholders(chunk.len())
            ),
            chunk.to_vec(),
        ));
    }
    for chunk in exp_ids.chunks(500) {
        queries.push((
            format!("SELECT model_id, experiment_id, artifact_uri FROM logged_models lm WHERE experiment_id IN ({}) AND {keep}", placeholders(chunk.len())),
            chunk.to_vec(),
        ));
    }
    queries.push((
        format!("SELECT model_id, experiment_id, artifact_uri FROM logged_models lm WHERE lifecycle_stage = 'deleted' AND {keep}"),
        Vec::new(),
    ));
    for (sql, params) in queries {
        for r in tx.query(&sql, &params)? {
            if seen.insert(r.text(0)) {
                logged_models.push(GcLoggedModel {
                    model_id: r.text(0),
                    experiment_id: r.text(1),
                    artifact_uri: r.text(2),
                });
            }
        }
    }
    logged_models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
    Ok(GcPlan {
        runs,
        logged_models,
        experiments,
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
                for table in ["metrics", "metric_chunks", "metrics_staged", "latest_metrics", "params", "tags", "inputs", "input_tags", "run_outputs", "runs"] {
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
