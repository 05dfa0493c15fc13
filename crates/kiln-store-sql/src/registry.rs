//! The model registry: registered models, versions, tags, stages and aliases with an append-only
//! alias history.

use kiln_store::{
    AliasActor, NameQuery, NewModelVersion, Page, RegistryStore, StoreError, StoreResult,
};
use kiln_types::{filter::Entity, Alias, AliasEvent, ModelVersion, RegisteredModel, Tag};

use crate::db::{Dialect, Row, Tx, Val};
use crate::search::{int_condition, string_condition};
use crate::tracking::{finish_page, limit_params, truncate, validate_key, MAX_TAG_VALUE};
use crate::SqlStore;

const STAGES: &[&str] = &["None", "Staging", "Production", "Archived"];

/// A registered model name as MLflow accepts it ([`kiln_types::model_name_problem`]).
fn validate_model_name(name: &str) -> StoreResult<()> {
    match kiln_types::model_name_problem(name) {
        None => Ok(()),
        Some(_) if name.trim().is_empty() => Err(StoreError::invalid(
            "Registered model name cannot be empty.",
        )),
        Some(problem) => Err(StoreError::invalid(format!(
            "Invalid model name '{name}'. {}.",
            capitalize(problem)
        ))),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn canonical_stage(stage: &str) -> StoreResult<&'static str> {
    STAGES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(stage))
        .copied()
        .ok_or_else(|| StoreError::invalid(format!("Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived.")))
}

fn parse_version(version: &str) -> StoreResult<i64> {
    version
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            StoreError::invalid(format!(
                "Invalid model version '{version}': expected a positive integer"
            ))
        })
}

fn model_not_found(name: &str) -> StoreError {
    StoreError::not_found(format!("Registered Model with name={name} not found"))
}

fn version_not_found(name: &str, version: &str) -> StoreError {
    StoreError::not_found(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

fn require_model(tx: &mut dyn Tx, name: &str) -> StoreResult<()> {
    tx.query_opt(
        "SELECT 1 FROM registered_models WHERE name = ?",
        &[Val::from(name)],
    )?
    .map(|_| ())
    .ok_or_else(|| model_not_found(name))
}

/// [`require_model`], holding the model's row until the transaction ends (PostgreSQL; SQLite
/// has one writer anyway): every registry write that touches the model row takes it first
/// (alias moves, deletes, stage changes, model tags; a new version bumps its counter first),
/// so replicas apply them one at a time and never lock in opposite orders. Without it, an alias set while its version was being deleted on another
/// replica pointed at the deleted version, and two alias moves at once recorded the wrong
/// previous holder in the history that `kiln models rollback` walks.
fn lock_model(tx: &mut dyn Tx, name: &str) -> StoreResult<()> {
    let sql = match tx.dialect() {
        Dialect::Postgres => "SELECT 1 FROM registered_models WHERE name = ? FOR UPDATE",
        Dialect::Sqlite => "SELECT 1 FROM registered_models WHERE name = ?",
    };
    tx.query_opt(sql, &[Val::from(name)])?
        .map(|_| ())
        .ok_or_else(|| model_not_found(name))
}

fn require_version(tx: &mut dyn Tx, name: &str, version: &str) -> StoreResult<i64> {
    let v = parse_version(version)?;
    tx.query_opt(
        "SELECT 1 FROM model_versions WHERE name = ? AND version = ?",
        &[Val::from(name), Val::Int(v)],
    )?
    .map(|_| v)
    .ok_or_else(|| version_not_found(name, version))
}

fn touch_model(tx: &mut dyn Tx, name: &str, now: i64) -> StoreResult<()> {
    tx.exec(
        "UPDATE registered_models SET last_updated_timestamp = ? WHERE name = ?",
        &[Val::Int(now), Val::from(name)],
    )?;
    Ok(())
}

const MV_COLS: &str = "name, version, creation_timestamp, last_updated_timestamp, description, user_id, current_stage, \
                       source, run_id, run_link, status, model_id";

fn load_versions(tx: &mut dyn Tx, rows: &[Row]) -> StoreResult<Vec<ModelVersion>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name = row.text(0);
        let version = row.int(1);
        let key = [Val::from(&name), Val::Int(version)];
        let tags = tx
            .query("SELECT key, value FROM model_version_tags WHERE name = ? AND version = ? ORDER BY key", &key)?
            .iter()
            .map(|r| Tag::new(r.text(0), r.text(1)))
            .collect();
        let aliases = tx
            .query("SELECT alias FROM registered_model_aliases WHERE name = ? AND version = ? ORDER BY alias", &key)?
            .iter()
            .map(|r| r.text(0))
            .collect();
        out.push(ModelVersion {
            name,
            version: version.to_string(),
            creation_timestamp: row.int(2),
            last_updated_timestamp: row.int(3),
            description: row.text(4),
            user_id: row.opt_text(5),
            current_stage: row.text(6),
            source: row.text(7),
            run_id: row.opt_text(8),
            run_link: row.text(9),
            status: row.text(10),
            model_id: row.opt_text(11),
            tags,
            aliases,
        });
    }
    Ok(out)
}

fn get_version_tx(tx: &mut dyn Tx, name: &str, version: i64) -> StoreResult<ModelVersion> {
    let rows = tx.query(
        &format!("SELECT {MV_COLS} FROM model_versions WHERE name = ? AND version = ?"),
        &[Val::from(name), Val::Int(version)],
    )?;
    load_versions(tx, &rows)?
        .pop()
        .ok_or_else(|| version_not_found(name, &version.to_string()))
}

fn latest_versions_tx(
    tx: &mut dyn Tx,
    name: &str,
    stages: &[String],
) -> StoreResult<Vec<ModelVersion>> {
    let rows = tx.query(
        &format!(
            "SELECT {MV_COLS} FROM model_versions mv WHERE name = ? AND version = \
             (SELECT MAX(version) FROM model_versions x WHERE x.name = mv.name AND x.current_stage = mv.current_stage) \
             ORDER BY version"
        ),
        &[Val::from(name)],
    )?;
    let mut versions = load_versions(tx, &rows)?;
    if !stages.is_empty() {
        let wanted: Vec<&str> = stages
            .iter()
            .map(|s| canonical_stage(s))
            .collect::<StoreResult<_>>()?;
        versions.retain(|v| wanted.contains(&v.current_stage.as_str()));
    }
    Ok(versions)
}

fn get_model_tx(tx: &mut dyn Tx, name: &str) -> StoreResult<RegisteredModel> {
    let row = tx
        .query_opt(
            "SELECT name, creation_timestamp, last_updated_timestamp, description FROM registered_models WHERE name = ?",
            &[Val::from(name)],
        )?
        .ok_or_else(|| model_not_found(name))?;
    model_from_row(tx, &row)
}

fn model_from_row(tx: &mut dyn Tx, row: &Row) -> StoreResult<RegisteredModel> {
    let name = row.text(0);
    let tags = tx
        .query(
            "SELECT key, value FROM registered_model_tags WHERE name = ? ORDER BY key",
            &[Val::from(&name)],
        )?
        .iter()
        .map(|r| Tag::new(r.text(0), r.text(1)))
        .collect();
    let aliases = tx
        .query(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ? ORDER BY alias",
            &[Val::from(&name)],
        )?
        .iter()
        .map(|r| Alias {
            alias: r.text(0),
            version: r.int(1).to_string(),
        })
        .collect();
    let latest_versions = latest_versions_tx(tx, &name, &[])?;
    Ok(RegisteredModel {
        name,
        creation_timestamp: row.int(1),
        last_updated_timestamp: row.int(2),
        description: row.opt_text(3),
        latest_versions,
        tags,
        aliases,
    })
}

/// The tag that makes a registered model (or version) a prompt of MLflow's prompt registry.
const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

/// Whether a registry search asks for prompts (`tags.\`mlflow.prompt.is_prompt\` = 'true'`, or
/// `!= 'false'`). As in MLflow, every other search leaves prompts out, and a clause on the
/// prompt tag is then only that choice: models do not carry the tag at all.
fn querying_prompts(clauses: &[kiln_types::filter::Clause]) -> bool {
    use kiln_types::filter::{Comparator, Value};
    clauses
        .iter()
        .find(|c| c.entity == Entity::Tag && c.key == PROMPT_TAG)
        .is_some_and(|c| match (&c.comparator, &c.value) {
            (Comparator::Eq, Value::String(v)) => v.eq_ignore_ascii_case("true"),
            (Comparator::Ne, Value::String(v)) => v.eq_ignore_ascii_case("false"),
            _ => false,
        })
}

/// Point `alias` at `version`, recording the move in its history, under the model-row lock.
/// With `expected`, only while the alias points at that version (`Some(None)`: at nothing);
/// whether it moved.
fn move_alias_tx(
    tx: &mut dyn Tx,
    name: &str,
    alias: &str,
    version: &str,
    expected: Option<Option<&str>>,
    actor: &AliasActor,
) -> StoreResult<bool> {
    lock_model(tx, name)?;
    let v = require_version(tx, name, version)?;
    let now = tx
        .query_opt(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
            &[Val::from(name), Val::from(alias)],
        )?
        .map(|r| r.int(0));
    if let Some(expected) = expected {
        if now.map(|n| n.to_string()).as_deref() != expected {
            return Ok(false);
        }
    }
    if now == Some(v) {
        // Already there: no event, or the history would read as a move (and a rollback's
        // stack would take the repeat for a new holder).
        return Ok(true);
    }
    record_alias(tx, name, alias, Some(v), actor)?;
    tx.exec(
        "INSERT INTO registered_model_aliases (name, alias, version) VALUES (?, ?, ?) \
         ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
        &[Val::from(name), Val::from(alias), Val::Int(v)],
    )?;
    touch_model(tx, name, kiln_types::now_ms())?;
    Ok(true)
}

fn record_alias(
    tx: &mut dyn Tx,
    name: &str,
    alias: &str,
    version: Option<i64>,
    actor: &AliasActor,
) -> StoreResult<()> {
    let previous = tx
        .query_opt(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
            &[Val::from(name), Val::from(alias)],
        )?
        .and_then(|r| r.opt_int(0));
    tx.exec(
        "INSERT INTO alias_history (name, alias, version, previous_version, timestamp, user_id, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            Val::from(name),
            Val::from(alias),
            Val::from(version),
            Val::from(previous),
            Val::Int(kiln_types::now_ms()),
            Val::from(actor.user_id.clone()),
            Val::from(actor.reason.clone()),
        ],
    )?;
    Ok(())
}

/// Record the removal of every alias of `name` (of `version` only, when given) that is about to
/// go with a deleted version or model, so the alias history does not end on a stale version.
fn record_dropped_aliases(
    tx: &mut dyn Tx,
    name: &str,
    version: Option<i64>,
    reason: &str,
) -> StoreResult<()> {
    let rows = match version {
        Some(v) => tx.query(
            "SELECT alias FROM registered_model_aliases WHERE name = ? AND version = ? ORDER BY alias",
            &[Val::from(name), Val::Int(v)],
        )?,
        None => tx.query(
            "SELECT alias FROM registered_model_aliases WHERE name = ? ORDER BY alias",
            &[Val::from(name)],
        )?,
    };
    let actor = AliasActor {
        user_id: None,
        reason: Some(reason.to_string()),
    };
    for row in rows {
        record_alias(tx, name, &row.text(0), None, &actor)?;
    }
    Ok(())
}

fn validate_alias(alias: &str) -> StoreResult<()> {
    match kiln_types::alias_problem(alias) {
        None => Ok(()),
        Some(problem) => Err(StoreError::invalid(format!(
            "Invalid alias '{alias}': {problem}"
        ))),
    }
}

impl RegistryStore for SqlStore {
    fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[Tag],
    ) -> StoreResult<RegisteredModel> {
        validate_model_name(name)?;
        for t in tags {
            validate_key("tag", &t.key)?;
        }
        self.write(|tx| {
            if tx.query_opt("SELECT 1 FROM registered_models WHERE name = ?", &[Val::from(name)])?.is_some() {
                return Err(StoreError::already_exists(format!("Registered Model (name={name}) already exists.")));
            }
            // History left under this name by a model deleted before deletions removed it (a
            // store from an earlier kiln) is not this new model's past.
            tx.exec("DELETE FROM alias_history WHERE name = ?", &[Val::from(name)])?;
            let now = kiln_types::now_ms();
            tx.exec(
                "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, description) VALUES (?, ?, ?, ?)",
                &[Val::from(name), Val::Int(now), Val::Int(now), Val::from(description)],
            )?;
            for t in tags {
                tx.exec(
                    "INSERT INTO registered_model_tags (name, key, value) VALUES (?, ?, ?) ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
                    &[Val::from(name), Val::from(&t.key), Val::Text(truncate(&t.value, MAX_TAG_VALUE))],
                )?;
            }
            get_model_tx(tx, name)
        })
    }

    fn get_registered_model(&self, name: &str) -> StoreResult<RegisteredModel> {
        self.read(|tx| get_model_tx(tx, name))
    }

    fn update_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> StoreResult<RegisteredModel> {
        self.write(|tx| {
            require_model(tx, name)?;
            tx.exec(
                "UPDATE registered_models SET description = ?, last_updated_timestamp = ? WHERE name = ?",
                &[Val::from(description), Val::Int(kiln_types::now_ms()), Val::from(name)],
            )?;
            get_model_tx(tx, name)
        })
    }

    fn rename_registered_model(&self, name: &str, new_name: &str) -> StoreResult<RegisteredModel> {
        validate_model_name(new_name)?;
        self.write(|tx| {
            lock_model(tx, name)?;
            if tx
                .query_opt(
                    "SELECT 1 FROM registered_models WHERE name = ?",
                    &[Val::from(new_name)],
                )?
                .is_some()
            {
                return Err(StoreError::already_exists(format!(
                    "Registered Model (name={new_name}) already exists."
                )));
            }
            // History left under the new name by a store from before deletions removed it
            // belongs to a model that is gone: it must not become this model's past.
            tx.exec(
                "DELETE FROM alias_history WHERE name = ?",
                &[Val::from(new_name)],
            )?;
            for table in [
                "registered_models",
                "registered_model_tags",
                "model_versions",
                "model_version_tags",
                "registered_model_aliases",
                "alias_history",
            ] {
                tx.exec(
                    &format!("UPDATE {table} SET name = ? WHERE name = ?"),
                    &[Val::from(new_name), Val::from(name)],
                )?;
            }
            touch_model(tx, new_name, kiln_types::now_ms())?;
            get_model_tx(tx, new_name)
        })
    }

    fn delete_registered_model(&self, name: &str) -> StoreResult<()> {
        self.write(|tx| {
            lock_model(tx, name)?;
            // The alias history goes with the model: a model created later under the same name
            // starts its versions at 1 again, and must not inherit (or roll back into) the
            // holders of the one deleted.
            for table in [
                "registered_models",
                "registered_model_tags",
                "model_versions",
                "model_version_tags",
                "registered_model_aliases",
                "alias_history",
            ] {
                tx.exec(
                    &format!("DELETE FROM {table} WHERE name = ?"),
                    &[Val::from(name)],
                )?;
            }
            Ok(())
        })
    }

    fn search_registered_models(&self, query: &NameQuery) -> StoreResult<Page<RegisteredModel>> {
        self.read(|tx| {
            let dialect = tx.dialect();
            let mut sql = String::from("SELECT name, creation_timestamp, last_updated_timestamp, description FROM registered_models rm WHERE 1 = 1");
            let mut params = Vec::new();
            let prompts = querying_prompts(&query.filter.clauses);
            if !prompts {
                sql.push_str(" AND NOT EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.name = rm.name AND t.key = ? AND LOWER(t.value) = 'true')");
                params.push(Val::from(PROMPT_TAG));
            }
            for c in &query.filter.clauses {
                if !prompts && c.entity == Entity::Tag && c.key == PROMPT_TAG {
                    continue;
                }
                let (cond, vals) = match c.entity {
                    Entity::Tag => {
                        let (cond, vals) = string_condition(dialect, "t.value", c.comparator, &c.value)?;
                        let mut all = vec![Val::from(&c.key)];
                        all.extend(vals);
                        (format!("EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.name = rm.name AND t.key = ? AND {cond})"), all)
                    }
                    _ if c.key == "name" => string_condition(dialect, "rm.name", c.comparator, &c.value)?,
                    _ => return Err(StoreError::invalid(format!("Invalid filter key '{}' for registered models", c.key))),
                };
                sql.push_str(" AND ");
                sql.push_str(&cond);
                params.extend(vals);
            }
            let mut order = Vec::new();
            for o in &query.order_by {
                let col = match o.key.as_str() {
                    "name" => "rm.name",
                    "creation_timestamp" => "rm.creation_timestamp",
                    "last_updated_timestamp" => "rm.last_updated_timestamp",
                    other => return Err(StoreError::invalid(format!("Invalid order_by key '{other}' for registered models"))),
                };
                order.push(format!("{col} {}", if o.ascending { "ASC" } else { "DESC" }));
            }
            order.push("rm.name ASC".into());
            sql.push_str(&format!(" ORDER BY {} LIMIT ? OFFSET ?", order.join(", ")));
            params.extend(limit_params(&query.page));
            let rows = tx.query(&sql, &params)?;
            let mut models = Vec::with_capacity(rows.len());
            for row in &rows {
                models.push(model_from_row(tx, row)?);
            }
            Ok(finish_page(models, &query.page))
        })
    }

    fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> StoreResult<()> {
        validate_key("tag", &tag.key)?;
        self.write(|tx| {
            // The model row first, as every registry write that touches it: no lock cycle with
            // a concurrent delete of the model (which takes the row, then the tags).
            lock_model(tx, name)?;
            tx.exec(
                "INSERT INTO registered_model_tags (name, key, value) VALUES (?, ?, ?) ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
                &[Val::from(name), Val::from(&tag.key), Val::Text(truncate(&tag.value, MAX_TAG_VALUE))],
            )?;
            touch_model(tx, name, kiln_types::now_ms())
        })
    }

    fn delete_registered_model_tag(&self, name: &str, key: &str) -> StoreResult<()> {
        self.write(|tx| {
            require_model(tx, name)?;
            tx.exec(
                "DELETE FROM registered_model_tags WHERE name = ? AND key = ?",
                &[Val::from(name), Val::from(key)],
            )?;
            Ok(())
        })
    }

    fn create_model_version(&self, new: &NewModelVersion) -> StoreResult<ModelVersion> {
        for t in &new.tags {
            validate_key("tag", &t.key)?;
        }
        self.write(|tx| {
            // Bumping the model's counter row-locks it, so concurrent creates get distinct
            // numbers; a deleted version's number is never handed out again.
            let next = tx
                .query_opt(
                    "UPDATE registered_models SET max_version = max_version + 1 WHERE name = ? RETURNING max_version",
                    &[Val::from(&new.name)],
                )?
                .ok_or_else(|| model_not_found(&new.name))?
                .int(0);
            let existing = tx
                .query_opt("SELECT MAX(version) FROM model_versions WHERE name = ?", &[Val::from(&new.name)])?
                .and_then(|r| r.opt_int(0))
                .unwrap_or(0);
            let next = if next > existing {
                next
            } else {
                tx.exec(
                    "UPDATE registered_models SET max_version = ? WHERE name = ?",
                    &[Val::Int(existing + 1), Val::from(&new.name)],
                )?;
                existing + 1
            };
            let now = kiln_types::now_ms();
            tx.exec(
                &format!("INSERT INTO model_versions ({MV_COLS}) VALUES (?, ?, ?, ?, ?, ?, 'None', ?, ?, ?, 'READY', ?)"),
                &[
                    Val::from(&new.name),
                    Val::Int(next),
                    Val::Int(now),
                    Val::Int(now),
                    Val::from(new.description.clone().unwrap_or_default()),
                    Val::from(new.user_id.clone()),
                    Val::from(&new.source),
                    Val::from(new.run_id.clone()),
                    Val::from(new.run_link.clone().unwrap_or_default()),
                    Val::from(new.model_id.clone()),
                ],
            )?;
            for t in &new.tags {
                tx.exec(
                    "INSERT INTO model_version_tags (name, version, key, value) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
                    &[Val::from(&new.name), Val::Int(next), Val::from(&t.key), Val::Text(truncate(&t.value, MAX_TAG_VALUE))],
                )?;
            }
            touch_model(tx, &new.name, now)?;
            get_version_tx(tx, &new.name, next)
        })
    }

    fn get_model_version(&self, name: &str, version: &str) -> StoreResult<ModelVersion> {
        let v = parse_version(version)?;
        self.read(|tx| get_version_tx(tx, name, v))
    }

    fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: &str,
    ) -> StoreResult<ModelVersion> {
        self.write(|tx| {
            let v = require_version(tx, name, version)?;
            let now = kiln_types::now_ms();
            tx.exec(
                "UPDATE model_versions SET description = ?, last_updated_timestamp = ? WHERE name = ? AND version = ?",
                &[Val::from(description), Val::Int(now), Val::from(name), Val::Int(v)],
            )?;
            get_version_tx(tx, name, v)
        })
    }

    fn delete_model_version(&self, name: &str, version: &str) -> StoreResult<()> {
        self.write(|tx| {
            lock_model(tx, name)?;
            let v = require_version(tx, name, version)?;
            record_dropped_aliases(tx, name, Some(v), &format!("model version {v} deleted"))?;
            let key = [Val::from(name), Val::Int(v)];
            tx.exec(
                "DELETE FROM model_versions WHERE name = ? AND version = ?",
                &key,
            )?;
            tx.exec(
                "DELETE FROM model_version_tags WHERE name = ? AND version = ?",
                &key,
            )?;
            tx.exec(
                "DELETE FROM registered_model_aliases WHERE name = ? AND version = ?",
                &key,
            )?;
            touch_model(tx, name, kiln_types::now_ms())
        })
    }

    fn transition_model_version_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> StoreResult<ModelVersion> {
        let stage = canonical_stage(stage)?;
        self.write(|tx| {
            // The model row before the version rows, as `delete_model_version` takes them: the
            // other order deadlocked a stage change against a delete on another replica.
            lock_model(tx, name)?;
            let v = require_version(tx, name, version)?;
            let now = kiln_types::now_ms();
            if archive_existing && matches!(stage, "Staging" | "Production") {
                tx.exec(
                    "UPDATE model_versions SET current_stage = 'Archived', last_updated_timestamp = ? WHERE name = ? AND current_stage = ? AND version <> ?",
                    &[Val::Int(now), Val::from(name), Val::from(stage), Val::Int(v)],
                )?;
            }
            tx.exec(
                "UPDATE model_versions SET current_stage = ?, last_updated_timestamp = ? WHERE name = ? AND version = ?",
                &[Val::from(stage), Val::Int(now), Val::from(name), Val::Int(v)],
            )?;
            touch_model(tx, name, now)?;
            get_version_tx(tx, name, v)
        })
    }

    fn get_latest_versions(&self, name: &str, stages: &[String]) -> StoreResult<Vec<ModelVersion>> {
        self.read(|tx| {
            require_model(tx, name)?;
            latest_versions_tx(tx, name, stages)
        })
    }

    fn search_model_versions(&self, query: &NameQuery) -> StoreResult<Page<ModelVersion>> {
        self.read(|tx| {
            let dialect = tx.dialect();
            let mut sql = format!("SELECT {MV_COLS} FROM model_versions mv WHERE 1 = 1");
            let mut params = Vec::new();
            let prompts = querying_prompts(&query.filter.clauses);
            if !prompts {
                sql.push_str(" AND NOT EXISTS (SELECT 1 FROM model_version_tags t WHERE t.name = mv.name AND t.version = mv.version AND t.key = ? AND LOWER(t.value) = 'true')");
                params.push(Val::from(PROMPT_TAG));
            }
            for c in &query.filter.clauses {
                if !prompts && c.entity == Entity::Tag && c.key == PROMPT_TAG {
                    continue;
                }
                let (cond, vals) = match c.entity {
                    Entity::Tag => {
                        let (cond, vals) = string_condition(dialect, "t.value", c.comparator, &c.value)?;
                        let mut all = vec![Val::from(&c.key)];
                        all.extend(vals);
                        (
                            format!("EXISTS (SELECT 1 FROM model_version_tags t WHERE t.name = mv.name AND t.version = mv.version AND t.key = ? AND {cond})"),
                            all,
                        )
                    }
                    _ => match c.key.as_str() {
                        "name" => string_condition(dialect, "mv.name", c.comparator, &c.value)?,
                        "run_id" => string_condition(dialect, "mv.run_id", c.comparator, &c.value)?,
                        "source_path" | "source" => string_condition(dialect, "mv.source", c.comparator, &c.value)?,
                        "version" => string_condition(dialect, "CAST(mv.version AS TEXT)", c.comparator, &c.value)?,
                        "version_number" => int_condition("mv.version", c.comparator, &c.value)?,
                        other => return Err(StoreError::invalid(format!("Invalid filter key '{other}' for model versions"))),
                    },
                };
                sql.push_str(" AND ");
                sql.push_str(&cond);
                params.extend(vals);
            }
            let mut order = Vec::new();
            for o in &query.order_by {
                let col = match o.key.as_str() {
                    "name" => "mv.name",
                    "version_number" | "version" => "mv.version",
                    "creation_timestamp" => "mv.creation_timestamp",
                    "last_updated_timestamp" => "mv.last_updated_timestamp",
                    other => return Err(StoreError::invalid(format!("Invalid order_by key '{other}' for model versions"))),
                };
                order.push(format!("{col} {}", if o.ascending { "ASC" } else { "DESC" }));
            }
            order.push("mv.name ASC".into());
            order.push("mv.version DESC".into());
            sql.push_str(&format!(" ORDER BY {} LIMIT ? OFFSET ?", order.join(", ")));
            params.extend(limit_params(&query.page));
            let rows = tx.query(&sql, &params)?;
            let versions = load_versions(tx, &rows)?;
            Ok(finish_page(versions, &query.page))
        })
    }

    fn set_model_version_tag(&self, name: &str, version: &str, tag: &Tag) -> StoreResult<()> {
        validate_key("tag", &tag.key)?;
        self.write(|tx| {
            let v = require_version(tx, name, version)?;
            tx.exec(
                "INSERT INTO model_version_tags (name, version, key, value) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
                &[
                    Val::from(name),
                    Val::Int(v),
                    Val::from(&tag.key),
                    Val::Text(truncate(&tag.value, MAX_TAG_VALUE)),
                ],
            )?;
            Ok(())
        })
    }

    fn delete_model_version_tag(&self, name: &str, version: &str, key: &str) -> StoreResult<()> {
        self.write(|tx| {
            let v = require_version(tx, name, version)?;
            tx.exec(
                "DELETE FROM model_version_tags WHERE name = ? AND version = ? AND key = ?",
                &[Val::from(name), Val::Int(v), Val::from(key)],
            )?;
            Ok(())
        })
    }

    fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        actor: &AliasActor,
    ) -> StoreResult<()> {
        validate_alias(alias)?;
        self.write(|tx| move_alias_tx(tx, name, alias, version, None, actor))
            .map(|_| ())
    }

    fn set_alias_if(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        expected: Option<&str>,
        actor: &AliasActor,
    ) -> StoreResult<bool> {
        validate_alias(alias)?;
        self.write(|tx| move_alias_tx(tx, name, alias, version, Some(expected), actor))
    }

    fn delete_alias(&self, name: &str, alias: &str, actor: &AliasActor) -> StoreResult<()> {
        self.write(|tx| {
            lock_model(tx, name)?;
            if tx
                .query_opt(
                    "SELECT 1 FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    &[Val::from(name), Val::from(alias)],
                )?
                .is_none()
            {
                return Ok(());
            }
            record_alias(tx, name, alias, None, actor)?;
            tx.exec(
                "DELETE FROM registered_model_aliases WHERE name = ? AND alias = ?",
                &[Val::from(name), Val::from(alias)],
            )?;
            touch_model(tx, name, kiln_types::now_ms())
        })
    }

    fn get_model_version_by_alias(&self, name: &str, alias: &str) -> StoreResult<ModelVersion> {
        self.read(|tx| {
            require_model(tx, name)?;
            let v = tx
                .query_opt(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    &[Val::from(name), Val::from(alias)],
                )?
                .ok_or_else(|| {
                    // MLflow answers an unknown alias of an existing model with 400 INVALID_PARAMETER_VALUE.
                    StoreError::invalid(format!("Registered model alias {alias} not found."))
                })?
                .int(0);
            get_version_tx(tx, name, v)
        })
    }

    fn alias_history(&self, name: &str, alias: &str) -> StoreResult<Vec<AliasEvent>> {
        self.read(|tx| {
            require_model(tx, name)?;
            let rows = tx.query(
                "SELECT name, alias, version, previous_version, timestamp, user_id, reason FROM alias_history \
                 WHERE name = ? AND alias = ? ORDER BY id",
                &[Val::from(name), Val::from(alias)],
            )?;
            Ok(rows
                .iter()
                .map(|r| AliasEvent {
                    name: r.text(0),
                    alias: r.text(1),
                    version: r.opt_int(2).map(|v| v.to_string()),
                    previous_version: r.opt_int(3).map(|v| v.to_string()),
                    timestamp: r.int(4),
                    user_id: r.opt_text(5),
                    reason: r.opt_text(6),
                })
                .collect())
        })
    }
}
