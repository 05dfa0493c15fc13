//! [`profile`]: describe a [`Table`] as a [`Schema`] of expectations.

use std::collections::{BTreeSet, HashSet};

use arrow_schema::DataType;

use crate::schema::{Bound, ColumnSchema, RowRange, Schema, SCHEMA_VERSION};
use crate::table::{Column, Value};
use crate::validate::Warning;
use crate::values::{format_date, format_timestamp, shorten};
use crate::{ColumnKind, Table};

/// How [`profile`] turns observations into limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileOptions {
    /// Allowed row counts as factors of the profiled count: `(0.5, 2.0)` allows `n/2 ..= 2n`.
    pub row_range: (f64, f64),
    /// Added to each nullable column's observed null fraction to give `max_null_fraction`
    /// (capped at 1). A column without nulls gets `nullable: false` instead.
    pub null_margin: f64,
    /// Key columns, marked `unique`. `None` guesses: a column with no nulls, at least two rows
    /// and all values distinct is a key when it is text, when its name looks like one (`id`,
    /// `*_id`, `*Id`, `*_key`, `*uuid`), or when it holds integers filling at least half of their
    /// range (`1..=n` with gaps). Key columns get no `min`/`max`: new data brings new keys.
    pub keys: Option<Vec<String>>,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            row_range: (0.5, 2.0),
            null_margin: 0.05,
            keys: None,
        }
    }
}

/// Profile a table: per column its kind, nullability and null-fraction limit, min/max
/// (numeric and datetime), allowed categories (categorical), uniqueness, and flags for constant
/// and all-null columns; plus the allowed row-count range. Deterministic: the same table gives
/// the same schema.
#[must_use]
pub fn profile(table: &Table, options: &ProfileOptions) -> Schema {
    let rows = table.num_rows();
    let (lo, hi) = options.row_range;
    let rows_u = rows as u64;
    let min_rows = (rows as f64 * lo).floor().max(0.0);
    let max_rows = (rows as f64 * hi).ceil().max(0.0);
    Schema {
        version: SCHEMA_VERSION,
        source: Some(table.source().to_owned()),
        rows: RowRange {
            min: Some(float_to_u64(min_rows).min(rows_u)),
            max: Some(float_to_u64(max_rows).max(rows_u)),
        },
        allow_extra_columns: false,
        columns: table
            .columns()
            .map(|c| profile_column(table, c, options))
            .collect(),
    }
}

fn float_to_u64(v: f64) -> u64 {
    if v >= u64::MAX as f64 {
        u64::MAX
    } else if v > 0.0 {
        v as u64
    } else {
        0
    }
}

/// Round a fraction up to 4 decimals so YAML shows `0.0623`, not `0.062300000000000001`.
fn ceil4(f: f64) -> f64 {
    // Less a hair, so that 0.1 + 0.05 = 0.15000000000000002 stays 0.15.
    ((f * 10_000.0 - 1e-6).ceil() / 10_000.0).min(1.0)
}

fn profile_column(table: &Table, column: Column<'_>, options: &ProfileOptions) -> ColumnSchema {
    let rows = table.num_rows();
    let mut schema = ColumnSchema::new(column.name, column.kind);
    let mut nulls = 0usize;
    let mut first: Option<Value<'_>> = None;
    let mut constant = true;
    let mut min: Option<Value<'_>> = None;
    let mut max: Option<Value<'_>> = None;
    let mut categories: BTreeSet<&str> = BTreeSet::new();
    let key_candidate = match &options.keys {
        Some(keys) => keys.iter().any(|k| k == column.name),
        None => {
            matches!(column.data_type, DataType::Int64 | DataType::Utf8)
                && column.kind != ColumnKind::Categorical
        }
    };
    let mut distinct = key_candidate.then(HashSet::new);
    let mut all_distinct = true;
    for (_, value) in table.values(column.index) {
        let Some(v) = value else {
            nulls += 1;
            continue;
        };
        match first {
            None => first = Some(v),
            Some(f) => constant &= f.key() == v.key(),
        }
        match column.kind {
            ColumnKind::Numeric => {
                let x = v.as_f64().unwrap_or(f64::NAN);
                if min.and_then(Value::as_f64).is_none_or(|m| x < m) {
                    min = Some(v);
                }
                if max.and_then(Value::as_f64).is_none_or(|m| x > m) {
                    max = Some(v);
                }
            }
            ColumnKind::Datetime => {
                let t = v.as_micros().unwrap_or(0);
                if min.and_then(Value::as_micros).is_none_or(|m| t < m) {
                    min = Some(v);
                }
                if max.and_then(Value::as_micros).is_none_or(|m| t > m) {
                    max = Some(v);
                }
            }
            ColumnKind::Categorical => {
                if let Value::Str(s) = v {
                    categories.insert(s);
                }
            }
            ColumnKind::Boolean | ColumnKind::Text => {}
        }
        if all_distinct {
            if let Some(seen) = &mut distinct {
                all_distinct = seen.insert(v.key());
            }
        }
    }
    let non_null = rows - nulls;
    schema.all_null = non_null == 0;
    schema.nullable = nulls > 0 || non_null == 0;
    if schema.nullable {
        let observed = if rows == 0 {
            1.0
        } else {
            nulls as f64 / rows as f64
        };
        schema.max_null_fraction = Some(ceil4(observed + options.null_margin.max(0.0)));
    }
    schema.constant = non_null >= 2 && constant;
    if column.kind == ColumnKind::Categorical {
        schema.categories = Some(categories.into_iter().map(str::to_owned).collect());
    }
    schema.unique = match &options.keys {
        Some(keys) => keys.iter().any(|k| k == column.name),
        None => {
            key_candidate
                && nulls == 0
                && non_null >= 2
                && all_distinct
                && (column.kind == ColumnKind::Text
                    || key_like_name(column.name)
                    || dense_integers(min, max, non_null))
        }
    };
    // New data brings new identifiers: a key's range is no expectation.
    if !schema.unique {
        schema.min = min.map(bound);
        schema.max = max.map(bound);
    }
    schema
}

/// `id`, `user_id`, `userId`, `order-key`, `uuid`, … (case-insensitive).
fn key_like_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "id"
        || lower == "key"
        || lower.ends_with("uuid")
        || ["_id", "-id", " id", "_key", "-key", " key"]
            .iter()
            .any(|s| lower.ends_with(s))
        || (name.ends_with("Id") && name.len() > 2)
}

/// Distinct integers filling at least half of their span, like identifiers `1..=n` with gaps
/// (a distinct measurement such as an income spreads far wider).
fn dense_integers(min: Option<Value<'_>>, max: Option<Value<'_>>, count: usize) -> bool {
    let (Some(Value::Int(lo)), Some(Value::Int(hi))) = (min, max) else {
        return false;
    };
    let span = i128::from(hi) - i128::from(lo) + 1;
    span <= 2 * count as i128
}

fn bound(v: Value<'_>) -> Bound {
    match v {
        Value::Int(i) => Bound::Int(i),
        Value::Float(f) => Bound::Float(f),
        Value::Date(d) => Bound::Text(format_date(d)),
        Value::Timestamp(t) => Bound::Text(format_timestamp(t)),
        Value::Bool(b) => Bound::Text(b.to_string()),
        Value::Str(s) => Bound::Text(s.to_owned()),
    }
}

/// Things worth a look in a fresh profile: all-null and constant columns carry no signal for a
/// model, and columns of unsupported types were left out.
#[must_use]
pub fn profile_warnings(table: &Table, schema: &Schema) -> Vec<Warning> {
    let mut out = Vec::new();
    for c in &schema.columns {
        if c.all_null && table.num_rows() > 0 {
            out.push(Warning {
                column: Some(c.name.clone()),
                message: format!(
                    "column `{}` is entirely null; its kind ({}) is a guess and is not checked",
                    c.name, c.kind
                ),
            });
        } else if c.constant {
            let value = c
                .min
                .as_ref()
                .map(ToString::to_string)
                .or_else(|| c.categories.as_ref().and_then(|v| v.first().cloned()));
            out.push(Warning {
                column: Some(c.name.clone()),
                message: match value {
                    Some(v) => format!(
                        "column `{}` is constant (every value is `{}`)",
                        c.name,
                        shorten(&v, 40)
                    ),
                    None => format!("column `{}` is constant (a single value)", c.name),
                },
            });
        }
    }
    for s in table.skipped_columns() {
        out.push(Warning {
            column: Some(s.name.clone()),
            message: format!(
                "column `{}` has type {}, which kiln does not profile; it was left out",
                s.name, s.data_type
            ),
        });
    }
    out
}
