//! Compiles filter ASTs to indexed SQL. Metric filters and ordering join `latest_metrics`, whose
//! `(experiment_id, key, value)` index turns "best runs by metric" into an index range scan;
//! params, tags and datasets become `EXISTS` probes on their primary keys. Nothing is filtered in
//! memory.

use std::collections::HashMap;

use kiln_store::{RunQuery, StoreError, StoreResult};
use kiln_types::filter::{Comparator, Entity, Value};

use crate::db::{Dialect, Val};
use crate::tracking::{limit_params, placeholders};

fn op(c: Comparator) -> Option<&'static str> {
    Some(match c {
        Comparator::Eq => "=",
        Comparator::Ne => "<>",
        Comparator::Lt => "<",
        Comparator::Le => "<=",
        Comparator::Gt => ">",
        Comparator::Ge => ">=",
        _ => return None,
    })
}

/// `col <cmp> ?` for a string column.
pub(crate) fn string_condition(
    dialect: Dialect,
    col: &str,
    c: Comparator,
    value: &Value,
) -> StoreResult<(String, Vec<Val>)> {
    let text = |v: &Value| -> StoreResult<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(StoreError::invalid(format!(
                "Expected a single-quoted string value for {col}"
            ))),
        }
    };
    Ok(match c {
        Comparator::Eq => (format!("{col} = ?"), vec![Val::Text(text(value)?)]),
        Comparator::Ne => (format!("{col} <> ?"), vec![Val::Text(text(value)?)]),
        Comparator::Like => (format!("{col} LIKE ?"), vec![Val::Text(text(value)?)]),
        Comparator::ILike => (dialect.ilike(col), vec![Val::Text(text(value)?)]),
        Comparator::In | Comparator::NotIn => {
            let Value::List(items) = value else {
                return Err(StoreError::invalid(
                    "IN and NOT IN expect a parenthesised list of strings, e.g. ('a', 'b')",
                ));
            };
            let not = if c == Comparator::NotIn { "NOT " } else { "" };
            (
                format!("{col} {not}IN ({})", placeholders(items.len())),
                items.iter().map(Val::from).collect(),
            )
        }
        other => {
            return Err(StoreError::invalid(format!(
                "Comparator {other:?} is not supported for string values"
            )))
        }
    })
}

/// `col <cmp> ?` for a numeric column.
pub(crate) fn numeric_condition(
    col: &str,
    c: Comparator,
    value: &Value,
) -> StoreResult<(String, Vec<Val>)> {
    let Some(o) = op(c) else {
        return Err(StoreError::invalid(format!(
            "Comparator {c:?} is not supported for numeric values"
        )));
    };
    let Value::Number(n) = value else {
        return Err(StoreError::invalid(format!(
            "Expected a numeric value for {col}"
        )));
    };
    Ok((format!("{col} {o} ?"), vec![Val::Real(*n)]))
}

/// A numeric condition on an integer (BIGINT) column. An integral value is compared as an
/// integer, so indexes stay usable; any other value (`start_time > 1.5`) is cast to a double in
/// SQL, because PostgreSQL types the placeholder after the column and cannot bind a float there.
pub(crate) fn int_condition(
    col: &str,
    c: Comparator,
    value: &Value,
) -> StoreResult<(String, Vec<Val>)> {
    let (sql, vals) = numeric_condition(col, c, value)?;
    match vals.first() {
        Some(Val::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            #[allow(clippy::cast_possible_truncation)]
            let i = *f as i64;
            Ok((sql, vec![Val::Int(i)]))
        }
        Some(Val::Real(_)) => {
            let sql = match sql.strip_suffix('?') {
                Some(head) => format!("{head}CAST(? AS DOUBLE PRECISION)"),
                None => sql,
            };
            Ok((sql, vals))
        }
        _ => Ok((sql, vals)),
    }
}

fn run_attribute_column(key: &str) -> StoreResult<&'static str> {
    Ok(match key {
        "run_id" => "r.run_uuid",
        "run_name" => "r.name",
        "status" => "r.status",
        "user_id" => "r.user_id",
        "artifact_uri" => "r.artifact_uri",
        "start_time" => "r.start_time",
        "end_time" => "r.end_time",
        other => {
            return Err(StoreError::invalid(format!(
                "Invalid attribute key '{other}' for runs"
            )))
        }
    })
}

/// SQL and parameters selecting the ids of one page of runs, in order (one row more than the
/// page size, to know whether another page follows).
pub(crate) fn compile_run_search(
    dialect: Dialect,
    experiment_ids: &[i64],
    query: &RunQuery,
) -> StoreResult<(String, Vec<Val>)> {
    let exp_vals: Vec<Val> = experiment_ids.iter().map(|e| Val::Int(*e)).collect();
    let exp_ph = placeholders(exp_vals.len());
    let mut joins = String::new();
    let mut join_params: Vec<Val> = Vec::new();
    let mut wheres = vec![
        format!("r.experiment_id IN ({exp_ph})"),
        format!(
            "r.lifecycle_stage IN ({})",
            placeholders(query.view.stages().len())
        ),
    ];
    let mut where_params: Vec<Val> = exp_vals.clone();
    where_params.extend(query.view.stages().iter().map(|s| Val::from(*s)));

    // One inner join per filtered metric key; ordering by the same key reuses it.
    let mut metric_alias: HashMap<&str, String> = HashMap::new();
    let join_metric = |joins: &mut String,
                       join_params: &mut Vec<Val>,
                       key: &str,
                       left: bool|
     -> String {
        let alias = format!("m{}", join_params.len());
        let kind = if left { "LEFT JOIN" } else { "JOIN" };
        joins.push_str(&format!(
            " {kind} latest_metrics {alias} ON {alias}.run_uuid = r.run_uuid AND {alias}.key = ? AND {alias}.experiment_id IN ({exp_ph})"
        ));
        join_params.push(Val::from(key));
        join_params.extend(exp_vals.iter().cloned());
        alias
    };

    let order_metric = query
        .order_by
        .first()
        .filter(|o| o.entity == Entity::Metric)
        .map(|o| o.key.as_str());
    for c in &query.filter.clauses {
        match c.entity {
            // Filtering on the metric the page is ordered by joins it, so the page comes
            // straight off the (experiment_id, key, value) index in order. Any other metric filter
            // is a primary-key probe per candidate run, so ordering by start time (the default)
            // walks runs newest first and stops at the page size instead of sorting every match.
            Entity::Metric if order_metric == Some(c.key.as_str()) => {
                let alias = match metric_alias.get(c.key.as_str()) {
                    Some(a) => a.clone(),
                    None => {
                        let a = join_metric(&mut joins, &mut join_params, &c.key, false);
                        metric_alias.insert(&c.key, a.clone());
                        a
                    }
                };
                let (cond, vals) =
                    numeric_condition(&format!("{alias}.value"), c.comparator, &c.value)?;
                wheres.push(cond);
                where_params.extend(vals);
            }
            Entity::Metric => {
                let (cond, vals) = numeric_condition("lm.value", c.comparator, &c.value)?;
                wheres.push(format!(
                    "EXISTS (SELECT 1 FROM latest_metrics lm WHERE lm.run_uuid = r.run_uuid AND lm.key = ? AND {cond})"
                ));
                where_params.push(Val::from(&c.key));
                where_params.extend(vals);
            }
            Entity::Param | Entity::Tag => {
                let table = if c.entity == Entity::Param {
                    "params"
                } else {
                    "tags"
                };
                match c.comparator {
                    Comparator::IsNull | Comparator::IsNotNull => {
                        let not = if c.comparator == Comparator::IsNull {
                            "NOT "
                        } else {
                            ""
                        };
                        wheres.push(format!("{not}EXISTS (SELECT 1 FROM {table} x WHERE x.run_uuid = r.run_uuid AND x.key = ?)"));
                        where_params.push(Val::from(&c.key));
                    }
                    cmp => {
                        let (cond, vals) = string_condition(dialect, "x.value", cmp, &c.value)?;
                        wheres.push(format!("EXISTS (SELECT 1 FROM {table} x WHERE x.run_uuid = r.run_uuid AND x.key = ? AND {cond})"));
                        where_params.push(Val::from(&c.key));
                        where_params.extend(vals);
                    }
                }
            }
            Entity::Attribute => {
                let col = run_attribute_column(&c.key)?;
                let (cond, vals) = if matches!(c.key.as_str(), "start_time" | "end_time") {
                    int_condition(col, c.comparator, &c.value)?
                } else {
                    string_condition(dialect, col, c.comparator, &c.value)?
                };
                wheres.push(cond);
                where_params.extend(vals);
            }
            Entity::Dataset => {
                let (sql, vals) = if c.key == "context" {
                    let (cond, vals) =
                        string_condition(dialect, "it.value", c.comparator, &c.value)?;
                    (
                        format!(
                            "EXISTS (SELECT 1 FROM input_tags it WHERE it.run_uuid = r.run_uuid AND it.key = 'mlflow.data.context' AND {cond})"
                        ),
                        vals,
                    )
                } else {
                    let col = match c.key.as_str() {
                        "name" => "d.name",
                        "digest" => "d.digest",
                        other => {
                            return Err(StoreError::invalid(format!(
                                "Invalid dataset key '{other}'"
                            )))
                        }
                    };
                    let (cond, vals) = string_condition(dialect, col, c.comparator, &c.value)?;
                    (
                        format!(
                            "EXISTS (SELECT 1 FROM inputs i JOIN datasets d ON d.dataset_uuid = i.dataset_uuid \
                             WHERE i.run_uuid = r.run_uuid AND {cond})"
                        ),
                        vals,
                    )
                };
                wheres.push(sql);
                where_params.extend(vals);
            }
        }
    }

    let mut order = Vec::new();
    for o in &query.order_by {
        let dir = if o.ascending { "ASC" } else { "DESC" };
        let nulls = dialect.nulls_last(o.ascending);
        match o.entity {
            Entity::Metric => {
                let alias = match metric_alias.get(o.key.as_str()) {
                    Some(a) => a.clone(),
                    None => {
                        let a = join_metric(&mut joins, &mut join_params, &o.key, true);
                        metric_alias.insert(&o.key, a.clone());
                        a
                    }
                };
                order.push(format!("{alias}.value {dir}{nulls}"));
                // As MLflow's server orders them, either direction: values, then NaN (a NULL
                // value flagged is_nan), then runs without the metric.
                order.push(format!("{alias}.is_nan DESC{}", dialect.nulls_last(false)));
            }
            Entity::Param | Entity::Tag => {
                let table = if o.entity == Entity::Param {
                    "params"
                } else {
                    "tags"
                };
                let alias = format!("o{}", join_params.len());
                joins.push_str(&format!(" LEFT JOIN {table} {alias} ON {alias}.run_uuid = r.run_uuid AND {alias}.key = ?"));
                join_params.push(Val::from(&o.key));
                order.push(format!("{alias}.value {dir}{nulls}"));
            }
            Entity::Attribute => {
                let col = run_attribute_column(&o.key)?;
                order.push(format!("{col} {dir}{nulls}"));
            }
            Entity::Dataset => {
                return Err(StoreError::invalid("Ordering by datasets is not supported"))
            }
        }
    }
    // Implicit tie-break: newest first, then run id. Skip columns already ordered on, so the
    // planner can read `runs_experiment_start` in order instead of sorting every match.
    for (col, term) in [
        ("r.start_time", "r.start_time DESC"),
        ("r.run_uuid", "r.run_uuid ASC"),
    ] {
        if !order.iter().any(|o| o.split(' ').next() == Some(col)) {
            order.push(term.into());
        }
    }

    let sql = format!(
        "SELECT r.run_uuid FROM runs r{joins} WHERE {} ORDER BY {} LIMIT ? OFFSET ?",
        wheres.join(" AND "),
        order.join(", ")
    );
    let mut params = join_params;
    params.extend(where_params);
    params.extend(limit_params(&query.page));
    Ok((sql, params))
}
