//! [`Schema`]: the expectations file (`schema.yaml`) written by [`crate::profile`] and checked by
//! [`crate::validate`]. Every constraint is optional: delete a line to stop checking it.
//!
//! ```yaml
//! version: 1
//! rows: { min: 500, max: 2000 }
//! columns:
//!   - name: age
//!     kind: numeric
//!     nullable: true
//!     max_null_fraction: 0.07
//!     min: 18
//!     max: 90
//!   - name: plan
//!     kind: categorical
//!     nullable: false
//!     categories: [basic, pro, team]
//! ```

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::values::{format_float, parse_datetime};
use crate::{ColumnKind, TableError};

/// The schema file format version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Expectations about a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// Format version, [`SCHEMA_VERSION`].
    pub version: u32,
    /// Where the profile came from (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Allowed row counts.
    #[serde(default, skip_serializing_if = "RowRange::is_empty")]
    pub rows: RowRange,
    /// Whether columns the schema does not name are allowed (default: no, each is a violation).
    #[serde(default)]
    pub allow_extra_columns: bool,
    /// Expected columns, in order.
    pub columns: Vec<ColumnSchema>,
}

/// Allowed row counts, both ends inclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

impl RowRange {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.min.is_none() && self.max.is_none()
    }
}

/// Expectations about one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSchema {
    pub name: String,
    pub kind: ColumnKind,
    /// Whether nulls are allowed at all (default: yes).
    #[serde(default = "yes")]
    pub nullable: bool,
    /// The largest allowed share of null values, 0 to 1 (only with `nullable: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_null_fraction: Option<f64>,
    /// Smallest allowed value (numeric: a number; datetime: `YYYY-MM-DD` or an ISO 8601 time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Bound>,
    /// Largest allowed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Bound>,
    /// Allowed values of a string column.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalars"
    )]
    pub categories: Option<Vec<String>>,
    /// No value may appear twice (nulls aside): a key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    /// The profiled data had a single value in this column (informational).
    #[serde(default, skip_serializing_if = "is_false")]
    pub constant: bool,
    /// The profiled data had only nulls in this column, so its kind is a guess and not checked.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_null: bool,
}

impl ColumnSchema {
    /// A column expectation with no constraints but its kind.
    #[must_use]
    pub fn new(name: impl Into<String>, kind: ColumnKind) -> Self {
        Self {
            name: name.into(),
            kind,
            nullable: true,
            max_null_fraction: None,
            min: None,
            max: None,
            categories: None,
            unique: false,
            constant: false,
            all_null: false,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
    true
}

/// A range bound: an integer, a float, or text (dates and times).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Bound {
    /// The bound as a number, for numeric columns.
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(v) => Some(*v as f64),
            Self::Float(v) => Some(*v),
            Self::Text(_) => None,
        }
    }

    /// The bound as microseconds since the epoch (UTC), for datetime columns.
    #[must_use]
    pub fn as_micros(&self) -> Option<i64> {
        match self {
            Self::Text(s) => parse_datetime(s),
            _ => None,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(v) => write!(f, "{v}"),
            Self::Float(v) => f.write_str(&format_float(*v)),
            Self::Text(s) => f.write_str(s),
        }
    }
}

/// Categories written by hand may be unquoted numbers or booleans (`[1, 2, 3]`): read them as
/// their text.
fn scalars<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
    }
    let values: Option<Vec<Scalar>> = Option::deserialize(d)?;
    Ok(values.map(|vs| {
        vs.into_iter()
            .map(|v| match v {
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => format_float(f),
                Scalar::Str(s) => s,
            })
            .collect()
    }))
}

impl Schema {
    /// Parse and check a schema file's text. `path` names it in errors.
    ///
    /// # Errors
    /// [`TableError::SchemaSyntax`] for YAML that is not a schema (unknown keys included),
    /// [`TableError::SchemaInvalid`] for a wrong version, duplicate columns, bad bounds or
    /// fractions.
    pub fn from_yaml(text: &str, path: &str) -> Result<Self, TableError> {
        let schema: Self =
            serde_yaml_ng::from_str(text).map_err(|err| TableError::SchemaSyntax {
                path: path.to_owned(),
                err,
            })?;
        schema.check(path)?;
        Ok(schema)
    }

    /// Read a schema file.
    ///
    /// # Errors
    /// [`TableError::Read`] when it cannot be read, else as [`Schema::from_yaml`].
    pub fn load(path: &std::path::Path) -> Result<Self, TableError> {
        let shown = path.display().to_string();
        let text = fs_err::read_to_string(path).map_err(|err| TableError::Read {
            path: shown.clone(),
            err,
        })?;
        Self::from_yaml(&text, &shown)
    }

    /// The schema as YAML, with a header comment.
    #[must_use]
    pub fn to_yaml(&self) -> String {
        let body = serde_yaml_ng::to_string(self).unwrap_or_else(|err| format!("# {err}\n"));
        format!(
            "# kiln data schema: written by `kiln data profile`, checked by `kiln data validate`.\n\
             # Edit freely: remove a line to stop checking it. Format: docs/data.md\n{body}"
        )
    }

    /// A column by name.
    #[must_use]
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn check(&self, path: &str) -> Result<(), TableError> {
        let fail = |message: String| TableError::SchemaInvalid {
            path: path.to_owned(),
            message,
        };
        if self.version != SCHEMA_VERSION {
            return Err(fail(format!(
                "version {} is not supported (this kiln reads version {SCHEMA_VERSION})",
                self.version
            )));
        }
        if let (Some(min), Some(max)) = (self.rows.min, self.rows.max) {
            if min > max {
                return Err(fail(format!("rows: min {min} is above max {max}")));
            }
        }
        let mut names = HashSet::new();
        for c in &self.columns {
            let name = &c.name;
            if !names.insert(name.as_str()) {
                return Err(fail(format!("column `{name}` is listed twice")));
            }
            if let Some(f) = c.max_null_fraction {
                if !(0.0..=1.0).contains(&f) {
                    return Err(fail(format!(
                        "column `{name}`: max_null_fraction {f} is not between 0 and 1"
                    )));
                }
            }
            for (which, bound) in [("min", &c.min), ("max", &c.max)] {
                let Some(bound) = bound else { continue };
                let ok = match c.kind {
                    ColumnKind::Numeric => bound.as_f64().is_some(),
                    ColumnKind::Datetime => bound.as_micros().is_some(),
                    _ => false,
                };
                if !ok {
                    let expected = match c.kind {
                        ColumnKind::Numeric => "a number",
                        ColumnKind::Datetime => {
                            "a date or time such as 2024-05-01 or 2024-05-01T12:00:00Z"
                        }
                        _ => "nothing: only numeric and datetime columns have ranges",
                    };
                    return Err(fail(format!(
                        "column `{name}` ({}): {which} `{bound}` should be {expected}",
                        c.kind
                    )));
                }
            }
            let lo = c
                .min
                .as_ref()
                .and_then(|b| b.as_f64().or_else(|| b.as_micros().map(|m| m as f64)));
            let hi = c
                .max
                .as_ref()
                .and_then(|b| b.as_f64().or_else(|| b.as_micros().map(|m| m as f64)));
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if lo > hi {
                    return Err(fail(format!("column `{name}`: min is above max")));
                }
            }
            if c.categories.is_some() && !c.kind.is_string() {
                return Err(fail(format!(
                    "column `{name}` ({}): only categorical and text columns have categories",
                    c.kind
                )));
            }
        }
        Ok(())
    }
}
