//! Tables to learner inputs. [`Signature::infer`] decides, from the training table, which columns
//! are features and how each is encoded; [`Signature::encode`] turns any table with those columns
//! into a [`kiln_ml::Dataset`], mapping categories by name so a new file with another category
//! order or new values still lines up.

use std::collections::BTreeSet;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use kiln_ml::{Dataset, Feature, MISSING_CODE};
use kiln_table::{ColumnKind, Table};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Classification,
    Regression,
}

impl Task {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "classification" | "classifier" | "binary" | "multiclass" => Some(Self::Classification),
            "regression" | "regressor" => Some(Self::Regression),
            _ => None,
        }
    }
}

/// How one input column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Numeric,
    Boolean,
    /// Seconds since the epoch.
    Datetime,
    Categorical,
}

/// One model input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputField {
    pub name: String,
    pub kind: FieldKind,
    /// Training categories, sorted (categorical inputs only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// The label column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetField {
    pub name: String,
    pub task: Task,
    /// Class labels as text, in class-index order (classification only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

/// A model's input and output contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub inputs: Vec<InputField>,
    pub target: TargetField,
}

/// Columns left out of the features, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub column: String,
    pub reason: String,
}

fn column<'a>(table: &'a Table, name: &str) -> Result<(ColumnKind, Vec<&'a ArrayRef>), TrainError> {
    let col = table
        .column(name)
        .ok_or_else(|| TrainError::MissingColumn {
            column: name.to_string(),
            available: table
                .columns()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let arrays = table
        .batches()
        .iter()
        .map(|b| b.column(col.index))
        .collect();
    Ok((col.kind, arrays))
}

/// Text of a label cell, or `None` when null.
fn cell_text(array: &ArrayRef, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        return Some(a.value(i).to_string());
    }
    if let Some(a) = array.as_primitive_opt::<Float64Type>() {
        return Some(format_number(a.value(i)));
    }
    if let Some(a) = array.as_boolean_opt() {
        return Some(a.value(i).to_string());
    }
    array.as_string_opt::<i32>().map(|a| a.value(i).to_string())
}

fn is_temporal(array: &ArrayRef) -> bool {
    array.as_primitive_opt::<Date32Type>().is_some()
        || array
            .as_primitive_opt::<TimestampMicrosecondType>()
            .is_some()
}

/// A finite number written as text (spaces around it allowed).
fn finite_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Why a text column is not a feature: empty, numbers spoiled by a few words, or free text.
fn text_column_reason(arrays: &[&ArrayRef]) -> String {
    let (mut present, mut numbers, mut word) = (0usize, 0usize, None);
    for (a, i) in iter_cells(arrays) {
        let Some(text) = cell_text(a, i) else {
            continue;
        };
        present += 1;
        if finite_number(&text).is_some() {
            numbers += 1;
        } else if word.is_none() {
            word = Some(text);
        }
    }
    match word {
        _ if present == 0 => "empty: every value is missing".into(),
        Some(w) if numbers * 10 >= present * 9 => format!(
            "numbers, but some values are not (e.g. `{w}`); fix them, or name the marker with --null-value"
        ),
        _ => "free text (too many distinct values to be a category); exclude it or encode it first"
            .into(),
    }
}

/// A date or timestamp cell as microseconds since the epoch (what
/// [`kiln_table::parse_datetime`] gives for its text).
fn temporal_micros(array: &ArrayRef, i: usize) -> Option<i64> {
    if array.is_null(i) {
        return None;
    }
    if let Some(a) = array.as_primitive_opt::<Date32Type>() {
        return Some(i64::from(a.value(i)) * 86_400_000_000);
    }
    array
        .as_primitive_opt::<TimestampMicrosecondType>()
        .map(|a| a.value(i))
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}

/// Numeric value of a cell (NaN when null or not numeric).
fn cell_f64(array: &ArrayRef, i: usize) -> f64 {
    if array.is_null(i) {
        return f64::NAN;
    }
    if let Some(a) = array.as_primitive_opt::<Float64Type>() {
        return a.value(i);
    }
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        #[allow(clippy::cast_precision_loss)]
        return a.value(i) as f64;
    }
    if let Some(a) = array.as_boolean_opt() {
        return if a.value(i) { 1.0 } else { 0.0 };
    }
    if let Some(a) = array.as_primitive_opt::<Date32Type>() {
        return f64::from(a.value(i)) * 86_400.0;
    }
    if let Some(a) = array.as_primitive_opt::<TimestampMicrosecondType>() {
        #[allow(clippy::cast_precision_loss)]
        return a.value(i) as f64 / 1e6;
    }
    f64::NAN
}

/// A numeric, boolean or datetime feature's value. A column read as text (one stray `?` makes a
/// CSV column text) is parsed cell by cell, and a cell that is not a value of the field's kind
/// is an error naming the column and row: read as missing, it would silently skew every
/// prediction, evaluation and promotion gate on that data.
fn numeric_cell(
    field: &InputField,
    array: &ArrayRef,
    i: usize,
    row: usize,
) -> Result<f64, TrainError> {
    let Some(texts) = array.as_string_opt::<i32>() else {
        return Ok(cell_f64(array, i));
    };
    if texts.is_null(i) {
        return Ok(f64::NAN);
    }
    let text = texts.value(i).trim();
    let parsed = match field.kind {
        FieldKind::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(1.0),
            "false" | "0" => Some(0.0),
            _ => None,
        },
        FieldKind::Numeric => finite_number(text),
        FieldKind::Datetime | FieldKind::Categorical => None,
    };
    parsed.ok_or_else(|| {
        let kind = match field.kind {
            FieldKind::Boolean => "true/false",
            FieldKind::Datetime => "a date or timestamp",
            _ => "a number",
        };
        TrainError::Input(format!(
            "Column `{}` is {kind} in the model, but data row {row} has `{text}`; if that marks a missing value, name it with --null-value (which replaces the default null markers)",
            field.name
        ))
    })
}

fn iter_cells<'a>(arrays: &'a [&'a ArrayRef]) -> impl Iterator<Item = (&'a ArrayRef, usize)> + 'a {
    arrays
        .iter()
        .flat_map(|a| (0..a.len()).map(move |i| (*a, i)))
}

/// Sort class labels: numerically when every label is a number, else as text.
fn sort_classes(classes: BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = classes.into_iter().collect();
    if v.iter().all(|c| c.parse::<f64>().is_ok()) {
        v.sort_by(|a, b| {
            let (x, y) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            x.total_cmp(&y)
        });
    }
    v
}

impl Signature {
    /// Decide features and label encoding from a training table. Text columns and `exclude`d
    /// columns are left out (reported in the second value).
    pub fn infer(
        table: &Table,
        target: &str,
        task: Task,
        exclude: &[String],
    ) -> Result<(Self, Vec<Skipped>), TrainError> {
        let (target_kind, target_arrays) = column(table, target)?;
        // A misspelled exclusion would train on the column it meant to leave out (often a
        // leaky one): refuse it.
        for e in exclude {
            if e == target {
                return Err(TrainError::Input(format!(
                    "Excluded column `{e}` is the target; the target is never a model input, so leave it out of --exclude"
                )));
            }
            if table.column(e).is_none() {
                return Err(TrainError::Input(format!(
                    "Excluded column `{e}` is not in the data; the columns are {}",
                    table
                        .columns()
                        .map(|c| c.name.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mut skipped = Vec::new();
        let mut inputs = Vec::new();
        for col in table.columns() {
            if col.name == target || exclude.iter().any(|e| e == col.name) {
                continue;
            }
            let kind = match col.kind {
                ColumnKind::Numeric => FieldKind::Numeric,
                ColumnKind::Boolean => FieldKind::Boolean,
                ColumnKind::Datetime => FieldKind::Datetime,
                ColumnKind::Categorical => FieldKind::Categorical,
                ColumnKind::Text => {
                    let (_, arrays) = column(table, col.name)?;
                    skipped.push(Skipped {
                        column: col.name.to_string(),
                        reason: text_column_reason(&arrays),
                    });
                    continue;
                }
            };
            let mut categories = Vec::new();
            if kind == FieldKind::Categorical {
                let (_, arrays) = column(table, col.name)?;
                let set: BTreeSet<String> = iter_cells(&arrays)
                    .filter_map(|(a, i)| cell_text(a, i))
                    .collect();
                categories = set.into_iter().collect();
            }
            inputs.push(InputField {
                name: col.name.to_string(),
                kind,
                categories,
            });
        }
        if inputs.is_empty() {
            return Err(TrainError::NoFeatures {
                target: target.to_string(),
            });
        }
        let classes = match task {
            Task::Classification => {
                let set: BTreeSet<String> = iter_cells(&target_arrays)
                    .filter_map(|(a, i)| cell_text(a, i))
                    .collect();
                if set.is_empty() {
                    return Err(TrainError::Input(format!(
                        "Target `{target}` has no labels: every value is missing"
                    )));
                }
                if set.len() < 2 {
                    return Err(TrainError::SingleClass {
                        target: target.to_string(),
                        class: set.into_iter().next().unwrap_or_default(),
                    });
                }
                if set.len() > 1000 {
                    return Err(TrainError::TooManyClasses {
                        target: target.to_string(),
                        n: set.len(),
                    });
                }
                sort_classes(set)
            }
            Task::Regression => {
                if !matches!(target_kind, ColumnKind::Numeric | ColumnKind::Boolean) {
                    return Err(TrainError::NonNumericTarget {
                        target: target.to_string(),
                        kind: target_kind.as_str(),
                    });
                }
                Vec::new()
            }
        };
        Ok((
            Self {
                inputs,
                target: TargetField {
                    name: target.to_string(),
                    task,
                    classes,
                },
            },
            skipped,
        ))
    }

    /// Encode the features of `table`. Unseen categories become missing; their count per column
    /// is returned.
    pub fn encode(&self, table: &Table) -> Result<(Dataset, Vec<(String, usize)>), TrainError> {
        let mut features = Vec::with_capacity(self.inputs.len());
        let mut unseen = Vec::new();
        for field in &self.inputs {
            let (_, arrays) = column(table, &field.name)?;
            match field.kind {
                FieldKind::Numeric | FieldKind::Boolean | FieldKind::Datetime => {
                    let values = iter_cells(&arrays)
                        .enumerate()
                        .map(|(row, (a, i))| numeric_cell(field, a, i, row + 1))
                        .collect::<Result<Vec<f64>, TrainError>>()?;
                    features.push(Feature::numeric(&field.name, values));
                }
                FieldKind::Categorical => {
                    let mut n_unseen = 0;
                    // Categories that read as dates or times, by instant: a scoring file whose
                    // column holds only dates is read as a date column, not as text.
                    let by_instant: std::collections::HashMap<i64, u32> =
                        if arrays.iter().any(|a| is_temporal(a)) {
                            field
                                .categories
                                .iter()
                                .enumerate()
                                .filter_map(|(idx, c)| {
                                    Some((kiln_table::parse_datetime(c)?, u32::try_from(idx).ok()?))
                                })
                                .collect()
                        } else {
                            std::collections::HashMap::new()
                        };
                    let codes = iter_cells(&arrays)
                        .map(|(a, i)| match cell_text(a, i) {
                            None if a.is_null(i) => MISSING_CODE,
                            // A value that has no text form here (a date) is matched by instant;
                            // anything else unmatched counts as an unseen category.
                            None => match temporal_micros(a, i).and_then(|t| by_instant.get(&t)) {
                                Some(code) => *code,
                                None => {
                                    n_unseen += 1;
                                    MISSING_CODE
                                }
                            },
                            Some(v) => match field.categories.binary_search(&v) {
                                Ok(idx) => u32::try_from(idx).unwrap_or(MISSING_CODE),
                                Err(_) => {
                                    n_unseen += 1;
                                    MISSING_CODE
                                }
                            },
                        })
                        .collect();
                    if n_unseen > 0 {
                        unseen.push((field.name.clone(), n_unseen));
                    }
                    features.push(Feature::categorical(
                        &field.name,
                        codes,
                        field.categories.clone(),
                    ));
                }
            }
        }
        Ok((Dataset::new(features)?, unseen))
    }

    /// The labels of `table`: class indices for classification, values for regression. Rows with
    /// a missing label are an error naming the first one.
    pub fn labels(&self, table: &Table) -> Result<Vec<f64>, TrainError> {
        let (_, arrays) = column(table, &self.target.name)?;
        let mut out = Vec::with_capacity(table.num_rows());
        for (row, (a, i)) in iter_cells(&arrays).enumerate() {
            let missing = || TrainError::MissingLabel {
                target: self.target.name.clone(),
                row: row + 1,
            };
            match self.target.task {
                Task::Regression => {
                    if a.is_null(i) {
                        return Err(missing());
                    }
                    let v = match a.as_string_opt::<i32>() {
                        Some(texts) => finite_number(texts.value(i)).unwrap_or(f64::NAN),
                        None => cell_f64(a, i),
                    };
                    if !v.is_finite() {
                        let shown = cell_text(a, i).unwrap_or_else(|| v.to_string());
                        return Err(TrainError::Input(format!(
                            "Target `{}` at data row {} is `{shown}`; regression needs a finite number",
                            self.target.name,
                            row + 1
                        )));
                    }
                    out.push(v);
                }
                Task::Classification => {
                    let text = cell_text(a, i).ok_or_else(missing)?;
                    let idx = self
                        .target
                        .classes
                        .iter()
                        .position(|c| *c == text)
                        .ok_or_else(|| TrainError::UnknownClass {
                            target: self.target.name.clone(),
                            row: row + 1,
                            value: text.clone(),
                            classes: self.target.classes.join(", "),
                        })?;
                    #[allow(clippy::cast_precision_loss)]
                    out.push(idx as f64);
                }
            }
        }
        Ok(out)
    }
}
