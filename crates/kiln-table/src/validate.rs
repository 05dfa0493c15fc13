//! [`validate`]: check a [`Table`] against a [`Schema`] and report every violation.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::schema::{Bound, ColumnSchema, Schema};
use crate::table::{Column, Key, Value};
use crate::values::{parse_bool, parse_datetime, parse_float, shorten};
use crate::{ColumnKind, Table};

/// How many example rows a violation keeps.
pub const MAX_EXAMPLES: usize = 5;

/// The checks [`validate`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The row count is within `rows: {min, max}`.
    RowCount,
    /// A schema column is present.
    MissingColumn,
    /// No column outside the schema (unless `allow_extra_columns`).
    ExtraColumn,
    /// The column's kind matches (categorical and text are interchangeable).
    Type,
    /// Nulls are allowed and under `max_null_fraction`.
    Nulls,
    /// Values within `min`/`max`.
    Range,
    /// Values among `categories`.
    Categories,
    /// No duplicated values in a `unique` column.
    Unique,
}

impl CheckKind {
    /// The check's name in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RowCount => "row_count",
            Self::MissingColumn => "missing_column",
            Self::ExtraColumn => "extra_column",
            Self::Type => "type",
            Self::Nulls => "nulls",
            Self::Range => "range",
            Self::Categories => "categories",
            Self::Unique => "unique",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One offending row (1-based, the first row after the header is 1) and/or value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl fmt::Display for Example {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.row, &self.value) {
            (Some(r), Some(v)) => write!(f, "row {r}: `{}`", shorten(v, 40)),
            (Some(r), None) => write!(f, "row {r}"),
            (None, Some(v)) => write!(f, "`{}`", shorten(v, 40)),
            (None, None) => Ok(()),
        }
    }
}

/// A failed check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The column, or `None` for table-level checks.
    pub column: Option<String>,
    pub check: CheckKind,
    pub message: String,
    /// How many values (or rows, or columns) offend.
    pub count: u64,
    /// The first few offenders, at most [`MAX_EXAMPLES`].
    pub examples: Vec<Example>,
}

/// A check that ran, and whether it passed. Each failed one has one [`Violation`] with the same
/// `column` and `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    pub column: Option<String>,
    pub check: CheckKind,
    pub passed: bool,
}

/// Something suspicious that does not fail validation (an all-null or constant column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub column: Option<String>,
    pub message: String,
}

/// The result of [`validate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The data checked (a file name).
    pub source: String,
    pub rows: u64,
    /// Whether every check passed.
    pub passed: bool,
    /// Every check that ran, in order: row count, then per schema column (presence, type,
    /// nulls, range, categories, uniqueness), then extra columns.
    pub checks: Vec<CheckOutcome>,
    pub violations: Vec<Violation>,
    pub warnings: Vec<Warning>,
}

impl Report {
    /// How many checks failed.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed).count()
    }

    /// The violation of a failed check.
    #[must_use]
    pub fn violation(&self, outcome: &CheckOutcome) -> Option<&Violation> {
        self.violations
            .iter()
            .find(|v| v.check == outcome.check && v.column == outcome.column)
    }

    fn pass(&mut self, column: Option<&str>, check: CheckKind) {
        self.checks.push(CheckOutcome {
            column: column.map(str::to_owned),
            check,
            passed: true,
        });
    }

    fn fail(
        &mut self,
        column: Option<&str>,
        check: CheckKind,
        message: String,
        count: u64,
        examples: Vec<Example>,
    ) {
        self.checks.push(CheckOutcome {
            column: column.map(str::to_owned),
            check,
            passed: false,
        });
        self.violations.push(Violation {
            column: column.map(str::to_owned),
            check,
            message,
            count,
            examples,
        });
    }

    fn warn(&mut self, column: &str, message: String) {
        self.warnings.push(Warning {
            column: Some(column.to_owned()),
            message,
        });
    }
}

/// Check `table` against `schema`. Every check runs (a failure does not stop the others, except
/// that a missing column or a type change skips that column's value checks).
#[must_use]
pub fn validate(table: &Table, schema: &Schema) -> Report {
    let rows = table.num_rows() as u64;
    let mut report = Report {
        source: table.source().to_owned(),
        rows,
        passed: true,
        checks: Vec::new(),
        violations: Vec::new(),
        warnings: Vec::new(),
    };

    let range = schema.rows;
    if !range.is_empty() {
        let low = range.min.is_some_and(|m| rows < m);
        let high = range.max.is_some_and(|m| rows > m);
        if low || high {
            let expected = match (range.min, range.max) {
                (Some(a), Some(b)) => format!("between {a} and {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => String::new(),
            };
            report.fail(
                None,
                CheckKind::RowCount,
                format!("{rows} rows, expected {expected}"),
                1,
                Vec::new(),
            );
        } else {
            report.pass(None, CheckKind::RowCount);
        }
    }

    for expected in &schema.columns {
        let name = expected.name.as_str();
        let Some(column) = table.column(name) else {
            if let Some(skipped) = table.skipped_columns().iter().find(|s| s.name == name) {
                report.pass(Some(name), CheckKind::MissingColumn);
                report.fail(
                    Some(name),
                    CheckKind::Type,
                    format!(
                        "expected {}, found {} (a type kiln does not check)",
                        expected.kind, skipped.data_type
                    ),
                    1,
                    Vec::new(),
                );
            } else {
                report.fail(
                    Some(name),
                    CheckKind::MissingColumn,
                    format!("column `{name}` is missing"),
                    1,
                    Vec::new(),
                );
            }
            continue;
        };
        report.pass(Some(name), CheckKind::MissingColumn);
        check_column(table, column, expected, &mut report);
    }

    if !schema.allow_extra_columns {
        let mut extra = 0;
        for column in table.columns() {
            if schema.column(column.name).is_none() {
                extra += 1;
                report.fail(
                    Some(column.name),
                    CheckKind::ExtraColumn,
                    format!(
                        "column `{}` ({}) is not in the schema",
                        column.name, column.kind
                    ),
                    1,
                    Vec::new(),
                );
            }
        }
        if extra == 0 {
            report.pass(None, CheckKind::ExtraColumn);
        }
    }
    report.passed = report.violations.is_empty();
    report
}

/// What one pass over a column's values found.
#[derive(Default)]
struct Scan<'a> {
    nulls: u64,
    null_rows: Vec<Example>,
    first: Option<Value<'a>>,
    constant: bool,
}

fn scan<'a>(table: &'a Table, column: Column<'_>) -> Scan<'a> {
    let mut s = Scan {
        constant: true,
        ..Scan::default()
    };
    for (row, value) in table.values(column.index) {
        match value {
            None => {
                s.nulls += 1;
                if s.null_rows.len() < MAX_EXAMPLES {
                    s.null_rows.push(Example {
                        row: Some(row),
                        value: None,
                    });
                }
            }
            Some(v) => match s.first {
                None => s.first = Some(v),
                Some(f) => s.constant &= f.key() == v.key(),
            },
        }
    }
    s
}

/// `1 value`, `2 values`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn percent(f: f64) -> String {
    let p = f * 100.0;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0}%")
    } else if p >= 0.1 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

fn check_column(table: &Table, column: Column<'_>, expected: &ColumnSchema, report: &mut Report) {
    let name = column.name;
    let rows = table.num_rows() as u64;
    let s = scan(table, column);
    let non_null = rows - s.nulls;

    if non_null == 0 && rows > 0 && !expected.all_null {
        report.warn(name, format!("column `{name}` is entirely null"));
    } else if non_null >= 2 && s.constant && !expected.constant {
        let value = s
            .first
            .map(|v| shorten(&v.to_string(), 40))
            .unwrap_or_default();
        report.warn(
            name,
            format!("column `{name}` is constant (every value is `{value}`)"),
        );
    }

    // Type. Nothing to contradict the schema in an all-null column; nothing to check when the
    // schema's own kind was a guess.
    let mut same_type = true;
    if !expected.all_null {
        let compatible = column.kind == expected.kind
            || (column.kind.is_string() && expected.kind.is_string())
            || non_null == 0;
        if compatible {
            report.pass(Some(name), CheckKind::Type);
        } else {
            same_type = false;
            let (message, count, examples) = type_mismatch(table, column, expected.kind, non_null);
            report.fail(Some(name), CheckKind::Type, message, count, examples);
        }
    }

    // Nulls.
    let fraction = if rows == 0 {
        0.0
    } else {
        s.nulls as f64 / rows as f64
    };
    if !expected.nullable && s.nulls > 0 {
        report.fail(
            Some(name),
            CheckKind::Nulls,
            format!(
                "{} ({}); the column is not nullable",
                count(s.nulls, "null value", "null values"),
                percent(fraction)
            ),
            s.nulls,
            s.null_rows,
        );
    } else if let Some(limit) = expected.max_null_fraction.filter(|l| fraction > l + 1e-12) {
        report.fail(
            Some(name),
            CheckKind::Nulls,
            format!(
                "{} ({}), over the limit of {}",
                count(s.nulls, "null value", "null values"),
                percent(fraction),
                percent(limit)
            ),
            s.nulls,
            s.null_rows,
        );
    } else {
        report.pass(Some(name), CheckKind::Nulls);
    }

    if same_type && (expected.min.is_some() || expected.max.is_some()) {
        match column.kind {
            ColumnKind::Numeric | ColumnKind::Datetime => {
                check_range(table, column, expected, report);
            }
            _ => {}
        }
    }
    if let Some(allowed) = &expected.categories {
        if column.kind.is_string() {
            check_categories(table, column, allowed, report);
        }
    }
    if expected.unique {
        check_unique(table, column, report);
    }
}

/// Message, count and examples for a column whose kind differs from the schema's.
fn type_mismatch(
    table: &Table,
    column: Column<'_>,
    expected: ColumnKind,
    non_null: u64,
) -> (String, u64, Vec<Example>) {
    let found = column.kind;
    let mut examples = Vec::new();
    let push = |examples: &mut Vec<Example>, row, v: Value<'_>| {
        if examples.len() < MAX_EXAMPLES {
            examples.push(Example {
                row: Some(row),
                value: Some(v.to_string()),
            });
        }
    };
    if found.is_string() {
        let (fits, one, many): (fn(&str) -> bool, &str, &str) = match expected {
            ColumnKind::Numeric => (|s| parse_float(s).is_some(), "a number", "numbers"),
            ColumnKind::Boolean => (
                |s| parse_bool(s).is_some(),
                "`true` or `false`",
                "`true` or `false`",
            ),
            ColumnKind::Datetime => (
                |s| parse_datetime(s).is_some(),
                "a date or time",
                "dates or times",
            ),
            ColumnKind::Categorical | ColumnKind::Text => (|_| true, "", ""),
        };
        let mut bad = 0u64;
        for (row, v) in table.values(column.index) {
            if let Some(v @ Value::Str(s)) = v {
                if !fits(s) {
                    bad += 1;
                    push(&mut examples, row, v);
                }
            }
        }
        if bad > 0 {
            let what = if bad == 1 {
                format!("1 value is not {one}")
            } else {
                format!("{bad} values are not {many}")
            };
            return (
                format!("expected {expected}, found {found}: {what}"),
                bad,
                examples,
            );
        }
    }
    for (row, v) in table.values(column.index) {
        if let Some(v) = v {
            push(&mut examples, row, v);
            if examples.len() >= MAX_EXAMPLES {
                break;
            }
        }
    }
    (
        format!("expected {expected}, found {found}"),
        non_null,
        examples,
    )
}

fn compare(v: Value<'_>, bound: &Bound) -> Option<Ordering> {
    match (v, bound) {
        (Value::Int(a), Bound::Int(b)) => Some(a.cmp(b)),
        (Value::Date(_) | Value::Timestamp(_), _) => Some(v.as_micros()?.cmp(&bound.as_micros()?)),
        _ => v.as_f64()?.partial_cmp(&bound.as_f64()?),
    }
}

fn check_range(table: &Table, column: Column<'_>, expected: &ColumnSchema, report: &mut Report) {
    let name = column.name;
    let mut bad = 0u64;
    let mut examples = Vec::new();
    let mut lowest: Option<Value<'_>> = None;
    let mut highest: Option<Value<'_>> = None;
    for (row, v) in table.values(column.index) {
        let Some(v) = v else { continue };
        let below = expected
            .min
            .as_ref()
            .is_some_and(|m| compare(v, m) == Some(Ordering::Less));
        let above = expected
            .max
            .as_ref()
            .is_some_and(|m| compare(v, m) == Some(Ordering::Greater));
        if below || above {
            bad += 1;
            if examples.len() < MAX_EXAMPLES {
                examples.push(Example {
                    row: Some(row),
                    value: Some(v.to_string()),
                });
            }
        }
        if below && lowest.is_none_or(|l| less(v, l)) {
            lowest = Some(v);
        }
        if above && highest.is_none_or(|h| less(h, v)) {
            highest = Some(v);
        }
    }
    if bad == 0 {
        report.pass(Some(name), CheckKind::Range);
        return;
    }
    let range = match (&expected.min, &expected.max) {
        (Some(a), Some(b)) => format!("[{a}, {b}]"),
        (Some(a), None) => format!("[{a}, …)"),
        (None, Some(b)) => format!("(…, {b}]"),
        (None, None) => String::new(),
    };
    let mut extremes = Vec::new();
    if let Some(l) = lowest {
        extremes.push(format!("lowest {l}"));
    }
    if let Some(h) = highest {
        extremes.push(format!("highest {h}"));
    }
    report.fail(
        Some(name),
        CheckKind::Range,
        format!(
            "{} outside {range} ({})",
            count(bad, "value", "values"),
            extremes.join(", ")
        ),
        bad,
        examples,
    );
}

fn less(a: Value<'_>, b: Value<'_>) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x < y,
        _ => match (a.as_micros(), b.as_micros()) {
            (Some(x), Some(y)) => x < y,
            _ => a.as_f64().unwrap_or(f64::NAN) < b.as_f64().unwrap_or(f64::NAN),
        },
    }
}

fn check_categories(table: &Table, column: Column<'_>, allowed: &[String], report: &mut Report) {
    let name = column.name;
    let allowed: HashSet<&str> = allowed.iter().map(String::as_str).collect();
    let mut bad = 0u64;
    let mut unseen: Vec<(u64, &str)> = Vec::new();
    let mut unseen_set: HashSet<&str> = HashSet::new();
    for (row, v) in table.values(column.index) {
        let Some(Value::Str(s)) = v else { continue };
        if !allowed.contains(s) {
            bad += 1;
            if unseen_set.insert(s) {
                unseen.push((row, s));
            }
        }
    }
    if bad == 0 {
        report.pass(Some(name), CheckKind::Categories);
        return;
    }
    let listed: Vec<String> = unseen
        .iter()
        .take(MAX_EXAMPLES)
        .map(|(_, s)| format!("`{}`", shorten(s, 40)))
        .collect();
    let more = if unseen.len() > MAX_EXAMPLES {
        format!(", … (+{})", unseen.len() - MAX_EXAMPLES)
    } else {
        String::new()
    };
    report.fail(
        Some(name),
        CheckKind::Categories,
        format!(
            "{} in {} not in the schema: {}{more}",
            count(bad, "value", "values"),
            count(unseen.len() as u64, "category", "categories"),
            listed.join(", ")
        ),
        bad,
        unseen
            .iter()
            .take(MAX_EXAMPLES)
            .map(|(row, s)| Example {
                row: Some(*row),
                value: Some((*s).to_owned()),
            })
            .collect(),
    );
}

fn check_unique(table: &Table, column: Column<'_>, report: &mut Report) {
    let name = column.name;
    let mut first_row: HashMap<Key<'_>, u64> = HashMap::new();
    let mut dup_keys: HashSet<Key<'_>> = HashSet::new();
    let mut bad = 0u64;
    let mut examples = Vec::new();
    let mut first_pair: Option<(u64, u64, String)> = None;
    for (row, v) in table.values(column.index) {
        let Some(v) = v else { continue };
        let key = v.key();
        if let Some(&first) = first_row.get(&key) {
            bad += 1;
            dup_keys.insert(key);
            if first_pair.is_none() {
                first_pair = Some((first, row, v.to_string()));
            }
            if examples.len() < MAX_EXAMPLES {
                examples.push(Example {
                    row: Some(row),
                    value: Some(v.to_string()),
                });
            }
        } else {
            first_row.insert(key, row);
        }
    }
    match first_pair {
        None => report.pass(Some(name), CheckKind::Unique),
        Some((a, b, value)) => report.fail(
            Some(name),
            CheckKind::Unique,
            format!(
                "{} of {} in a unique column; e.g. `{}` at rows {a} and {b}",
                count(bad, "repeat", "repeats"),
                count(dup_keys.len() as u64, "value", "values"),
                shorten(&value, 40)
            ),
            bad,
            examples,
        ),
    }
}
