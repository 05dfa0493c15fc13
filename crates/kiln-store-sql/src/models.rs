//! MLflow 3 logged models.

use kiln_store::{
    LoggedModelQuery, LoggedModelStore, NewLoggedModel, Page, StoreError, StoreResult,
};
use kiln_types::{
    filter::Entity, LifecycleStage, LoggedModel, LoggedModelData, LoggedModelInfo,
    LoggedModelStatus, Metric, Param, Tag,
};

use crate::db::{Row, Tx, Val};
use crate::search::{int_condition, numeric_condition, string_condition};
use crate::tracking::{
    finish_page, limit_params, metric_value, parse_experiment_id, placeholders, truncate,
    validate_key, MAX_TAG_VALUE,
};
use crate::SqlStore;

const COLS: &str =
    "model_id, experiment_id, name, artifact_uri, status, source_run_id, creation_timestamp_ms, \
                    last_updated_timestamp_ms, model_type, lifecycle_stage";

fn info_from_row(row: &Row) -> LoggedModelInfo {
    LoggedModelInfo {
        model_id: row.text(0),
        experiment_id: row.text(1),
        name: row.text(2),
        artifact_uri: row.text(3),
        status: LoggedModelStatus::parse(&row.text(4))
            .unwrap_or(LoggedModelStatus::LoggedModelPending),
        source_run_id: row.opt_text(5),
        creation_timestamp_ms: row.int(6),
        last_updated_timestamp_ms: row.int(7),
        model_type: row.opt_text(8),
        lifecycle_stage: LifecycleStage::parse(&row.text(9)).unwrap_or(LifecycleStage::Active),
        tags: Vec::new(),
    }
}

fn not_found(model_id: &str) -> StoreError {
    StoreError::not_found(format!("Logged model with ID '{model_id}' not found."))
}

fn load(tx: &mut dyn Tx, rows: &[Row]) -> StoreResult<Vec<LoggedModel>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut info = info_from_row(row);
        let id = Val::from(&info.model_id);
        info.tags = tx
            .query(
                "SELECT key, value FROM logged_model_tags WHERE model_id = ? ORDER BY key",
                std::slice::from_ref(&id),
            )?
            .iter()
            .map(|r| Tag::new(r.text(0), r.text(1)))
            .collect();
        let params = tx
            .query(
                "SELECT key, value FROM logged_model_params WHERE model_id = ? ORDER BY key",
                std::slice::from_ref(&id),
            )?
            .iter()
            .map(|r| Param {
                key: r.text(0),
                value: r.text(1),
            })
            .collect();
        let metrics = tx
            .query(
                "SELECT key, value, is_nan, timestamp, step, run_uuid, dataset_name, dataset_digest FROM metrics \
                 WHERE model_id = ? ORDER BY key, step, timestamp, id",
                std::slice::from_ref(&id),
            )?
            .iter()
            .map(|r| {
                let mut m = Metric::new(r.text(0), metric_value(r, 1, 2), r.int(3), r.int(4));
                m.run_id = r.opt_text(5);
                m.model_id = Some(info.model_id.clone());
                m.dataset_name = r.opt_text(6);
                m.dataset_digest = r.opt_text(7);
                m
            })
            .collect();
        out.push(LoggedModel {
            info,
            data: LoggedModelData { params, metrics },
        });
    }
    Ok(out)
}

fn get_tx(tx: &mut dyn Tx, model_id: &str) -> StoreResult<LoggedModel> {
    let rows = tx.query(
        &format!("SELECT {COLS} FROM logged_models WHERE model_id = ?"),
        &[Val::from(model_id)],
    )?;
    if rows.is_empty() {
        return Err(not_found(model_id));
    }
    load(tx, &rows)?.pop().ok_or_else(|| not_found(model_id))
}

/// Set params of a logged model; a key logged again takes the new value.
fn upsert_params_tx(tx: &mut dyn Tx, model_id: &str, params: &[Param]) -> StoreResult<()> {
    for p in params {
        tx.exec(
            "INSERT INTO logged_model_params (model_id, key, value) VALUES (?, ?, ?) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
            &[Val::from(model_id), Val::from(&p.key), Val::from(&p.value)],
        )?;
    }
    Ok(())
}

/// Mark a logged model updated now.
fn touch_tx(tx: &mut dyn Tx, model_id: &str) -> StoreResult<()> {
    tx.exec(
        "UPDATE logged_models SET last_updated_timestamp_ms = ? WHERE model_id = ?",
        &[Val::Int(kiln_types::now_ms()), Val::from(model_id)],
    )?;
    Ok(())
}

fn require(tx: &mut dyn Tx, model_id: &str) -> StoreResult<()> {
    tx.query_opt(
        "SELECT 1 FROM logged_models WHERE model_id = ?",
        &[Val::from(model_id)],
    )?
    .map(|_| ())
    .ok_or_else(|| not_found(model_id))
}

impl LoggedModelStore for SqlStore {
    fn create_logged_model(&self, new: &NewLoggedModel) -> StoreResult<LoggedModel> {
        let exp_id = parse_experiment_id(&new.experiment_id)?;
        for t in &new.tags {
            validate_key("tag", &t.key)?;
        }
        for p in &new.params {
            validate_key("param", &p.key)?;
        }
        let model_id = kiln_types::new_model_id();
        let name = new
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| kiln_types::run_name_for(&model_id[2..]));
        self.write(|tx| {
            let row = tx
                .query_opt("SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = ?", &[Val::Int(exp_id)])?
                .ok_or_else(|| StoreError::not_found(format!("No Experiment with id={} exists", new.experiment_id)))?;
            if row.text(0) != "active" {
                return Err(StoreError::invalid(format!("The experiment {} must be in the 'active' state.", new.experiment_id)));
            }
            if let Some(run_id) = &new.source_run_id {
                if tx.query_opt("SELECT 1 FROM runs WHERE run_uuid = ?", &[Val::from(run_id)])?.is_none() {
                    return Err(StoreError::not_found(format!("Run with id={run_id} not found")));
                }
            }
            let artifact_uri = format!("{}/models/{model_id}/artifacts", row.text(1).trim_end_matches('/'));
            let now = kiln_types::now_ms();
            tx.exec(
                &format!("INSERT INTO logged_models ({COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'active')"),
                &[
                    Val::from(&model_id),
                    Val::Int(exp_id),
                    Val::from(&name),
                    Val::from(&artifact_uri),
                    Val::from(LoggedModelStatus::LoggedModelPending.as_str()),
                    Val::from(new.source_run_id.clone()),
                    Val::Int(now),
                    Val::Int(now),
                    Val::from(new.model_type.clone()),
                ],
            )?;
            upsert_params_tx(tx, &model_id, &new.params)?;
            for t in &new.tags {
                tx.exec(
                    "INSERT INTO logged_model_tags (model_id, key, value) VALUES (?, ?, ?) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
                    &[Val::from(&model_id), Val::from(&t.key), Val::Text(truncate(&t.value, MAX_TAG_VALUE))],
                )?;
            }
            get_tx(tx, &model_id)
        })
    }

    fn get_logged_model(&self, model_id: &str) -> StoreResult<LoggedModel> {
        self.read(|tx| get_tx(tx, model_id))
    }

    fn set_logged_model_status(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> StoreResult<LoggedModel> {
        self.write(|tx| {
            require(tx, model_id)?;
            tx.exec(
                "UPDATE logged_models SET status = ?, last_updated_timestamp_ms = ? WHERE model_id = ?",
                &[Val::from(status.as_str()), Val::Int(kiln_types::now_ms()), Val::from(model_id)],
            )?;
            get_tx(tx, model_id)
        })
    }

    fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> StoreResult<()> {
        for t in tags {
            validate_key("tag", &t.key)?;
        }
        self.write(|tx| {
            require(tx, model_id)?;
            for t in tags {
                tx.exec(
                    "INSERT INTO logged_model_tags (model_id, key, value) VALUES (?, ?, ?) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
                    &[Val::from(model_id), Val::from(&t.key), Val::Text(truncate(&t.value, MAX_TAG_VALUE))],
                )?;
            }
            touch_tx(tx, model_id)
        })
    }

    fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> StoreResult<()> {
        for p in params {
            validate_key("param", &p.key)?;
        }
        self.write(|tx| {
            require(tx, model_id)?;
            upsert_params_tx(tx, model_id, params)?;
            touch_tx(tx, model_id)
        })
    }

    fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> StoreResult<()> {
        self.write(|tx| {
            require(tx, model_id)?;
            let n = tx.exec(
                "DELETE FROM logged_model_tags WHERE model_id = ? AND key = ?",
                &[Val::from(model_id), Val::from(key)],
            )?;
            if n == 0 {
                return Err(StoreError::not_found(format!(
                    "No tag with key '{key}' on logged model '{model_id}'"
                )));
            }
            Ok(())
        })
    }

    fn delete_logged_model(&self, model_id: &str) -> StoreResult<()> {
        self.write(|tx| {
            require(tx, model_id)?;
            tx.exec(
                "UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_timestamp_ms = ? WHERE model_id = ?",
                &[Val::Int(kiln_types::now_ms()), Val::from(model_id)],
            )?;
            Ok(())
        })
    }

    fn search_logged_models(&self, query: &LoggedModelQuery) -> StoreResult<Page<LoggedModel>> {
        let exp_ids: Vec<Val> = query
            .experiment_ids
            .iter()
            .filter_map(|e| e.parse::<i64>().ok())
            .map(Val::Int)
            .collect();
        if exp_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        self.read(|tx| {
            let dialect = tx.dialect();
            let mut sql = format!(
                "SELECT {COLS} FROM logged_models lm WHERE lm.lifecycle_stage = 'active' AND lm.experiment_id IN ({})",
                placeholders(exp_ids.len())
            );
            let mut params = exp_ids.clone();
            for c in &query.filter.clauses {
                let (cond, vals) = match c.entity {
                    Entity::Tag | Entity::Param => {
                        let table = if c.entity == Entity::Tag { "logged_model_tags" } else { "logged_model_params" };
                        let (cond, vals) = string_condition(dialect, "x.value", c.comparator, &c.value)?;
                        let mut all = vec![Val::from(&c.key)];
                        all.extend(vals);
                        (format!("EXISTS (SELECT 1 FROM {table} x WHERE x.model_id = lm.model_id AND x.key = ? AND {cond})"), all)
                    }
                    Entity::Metric => {
                        let (cond, vals) = numeric_condition("x.value", c.comparator, &c.value)?;
                        let mut all = vec![Val::from(&c.key)];
                        all.extend(vals);
                        (format!("EXISTS (SELECT 1 FROM metrics x WHERE x.model_id = lm.model_id AND x.key = ? AND {cond})"), all)
                    }
                    _ => match c.key.as_str() {
                        "name" | "model_id" | "source_run_id" | "status" | "model_type" => {
                            string_condition(dialect, &format!("lm.{}", c.key), c.comparator, &c.value)?
                        }
                        "creation_timestamp" => int_condition("lm.creation_timestamp_ms", c.comparator, &c.value)?,
                        "last_updated_timestamp" => int_condition("lm.last_updated_timestamp_ms", c.comparator, &c.value)?,
                        other => return Err(StoreError::invalid(format!("Invalid attribute '{other}' for logged models"))),
                    },
                };
                sql.push_str(" AND ");
                sql.push_str(&cond);
                params.extend(vals);
            }
            let mut order = Vec::new();
            for o in &query.order_by {
                let dir = if o.ascending { "ASC" } else { "DESC" };
                if o.entity == Entity::Metric {
                    // The model's latest value of the metric (highest step, then newest); models
                    // without it (or with NaN) sort last either way.
                    let latest = "(SELECT x.value FROM metrics x WHERE x.model_id = lm.model_id AND x.key = ? \
                                  ORDER BY x.step DESC, x.timestamp DESC LIMIT 1)";
                    order.push(format!("CASE WHEN {latest} IS NULL THEN 1 ELSE 0 END, {latest} {dir}"));
                    params.extend([Val::from(&o.key), Val::from(&o.key)]);
                    continue;
                }
                let col = match o.key.as_str() {
                    "name" => "lm.name",
                    "creation_timestamp" => "lm.creation_timestamp_ms",
                    "last_updated_timestamp" => "lm.last_updated_timestamp_ms",
                    other => return Err(StoreError::invalid(format!("Invalid order_by key '{other}' for logged models"))),
                };
                order.push(format!("{col} {dir}"));
            }
            order.push("lm.creation_timestamp_ms DESC".into());
            order.push("lm.model_id ASC".into());
            sql.push_str(&format!(" ORDER BY {} LIMIT ? OFFSET ?", order.join(", ")));
            params.extend(limit_params(&query.page));
            let rows = tx.query(&sql, &params)?;
            let models = load(tx, &rows)?;
            Ok(finish_page(models, &query.page))
        })
    }
}
