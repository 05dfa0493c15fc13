//! Request values to model rows. An [`Encoder`] is built once per loaded model from its
//! [`Signature`]; a request's decoder feeds it [`Cell`]s by (row, field) and gets back a
//! row-major [`Batch`] in signature order, encoded exactly as training encodes a table
//! (numbers as they are, booleans as 0/1, datetimes as seconds since the epoch, categories as
//! their index in the training vocabulary, missing values as `NaN`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use kiln_train::frame::{FieldKind, InputField, Signature};

use crate::error::DecodeError;

/// One scalar value of a request, borrowed from the body where possible.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
}

impl Cell<'_> {
    /// The value as it appeared, for error messages (`"abc"`, `true`, `3.5`).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Null => "null".into(),
            Self::Bool(b) => b.to_string(),
            Self::Num(v) => format_number(*v),
            Self::Str(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                out.push('"');
                for c in s.chars().take(64) {
                    out.push(c);
                }
                if s.chars().count() > 64 {
                    out.push('…');
                }
                out.push('"');
                out
            }
        }
    }
}

/// A number as category text: integers without a fraction (`3`, not `3.0`), as training reads
/// integer cells.
pub(crate) fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}

/// What a field accepts, for error messages.
pub(crate) fn expected(field: &InputField) -> String {
    match field.kind {
        FieldKind::Numeric => "a number".into(),
        FieldKind::Boolean => "a boolean".into(),
        FieldKind::Datetime => "a datetime (ISO 8601 text or seconds since the epoch)".into(),
        FieldKind::Categorical if field.categories.is_empty() => "a string".into(),
        FieldKind::Categorical => format!("one of {}", category_list(&field.categories)),
    }
}

/// `"a", "b", "c"` (at most 20 shown).
fn category_list(categories: &[String]) -> String {
    let mut out = String::new();
    for (i, c) in categories.iter().take(20).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{c:?}");
    }
    if categories.len() > 20 {
        let _ = write!(out, ", … ({} in all)", categories.len());
    }
    out
}

/// Rows in signature order, row-major; categorical values are vocabulary indices as `f64`,
/// missing values `NaN`. A categorical input without a vocabulary (an ONNX string input) takes
/// any text: its value is an index into `texts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub n_rows: usize,
    pub n_features: usize,
    pub values: Vec<f64>,
    pub texts: Vec<Box<str>>,
}

impl Batch {
    /// Row `i` (empty when out of range).
    pub fn row(&self, i: usize) -> &[f64] {
        self.values
            .get(i * self.n_features..(i + 1) * self.n_features)
            .unwrap_or(&[])
    }

    /// Column `j`, top to bottom.
    pub fn column(&self, j: usize) -> impl Iterator<Item = f64> + '_ {
        self.values
            .iter()
            .skip(j)
            .step_by(self.n_features.max(1))
            .copied()
    }
}

/// Maps request columns to a model's inputs and encodes values.
#[derive(Debug, Clone)]
pub struct Encoder {
    fields: Vec<InputField>,
    index: HashMap<String, usize>,
    /// Categorical inputs without a vocabulary: any text is accepted.
    open: Vec<bool>,
}

impl Encoder {
    pub fn new(signature: &Signature) -> Self {
        let fields = signature.inputs.clone();
        let index = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        let open = fields
            .iter()
            .map(|f| f.kind == FieldKind::Categorical && f.categories.is_empty())
            .collect();
        Self {
            fields,
            index,
            open,
        }
    }

    /// The model inputs, in signature order.
    pub fn fields(&self) -> &[InputField] {
        &self.fields
    }

    /// The position of input `name`, if the model has one.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// A builder for `n_rows` rows (more can be added with [`BatchBuilder::add_row`]).
    /// `n_rows` comes from the request, so at most `budget` values are allocated up front:
    /// see [`value_budget`].
    pub fn builder(&self, n_rows: usize, budget: usize) -> Result<BatchBuilder<'_>, DecodeError> {
        let n = self.fields.len();
        let values = n_rows.saturating_mul(n);
        if values > budget {
            return Err(DecodeError::TooManyValues {
                rows: n_rows,
                inputs: n,
                budget,
            });
        }
        Ok(BatchBuilder {
            encoder: self,
            n_rows,
            values: vec![f64::NAN; values],
            seen: vec![false; n],
            texts: Vec::new(),
        })
    }

    /// Names of the inputs, comma-separated (for error messages).
    pub(crate) fn names(&self) -> String {
        let mut out = String::new();
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&f.name);
        }
        out
    }

    /// Encode one value of `field` (row numbers in errors count from 1).
    pub(crate) fn encode(&self, field: usize, cell: &Cell, row: usize) -> Result<f64, DecodeError> {
        let Some(f) = self.fields.get(field) else {
            return Err(DecodeError::Malformed(format!("no model input #{field}")));
        };
        let wrong = || DecodeError::WrongType {
            column: f.name.clone(),
            expected: expected(f),
            got: cell.describe(),
            row: row + 1,
        };
        match (f.kind, cell) {
            (_, Cell::Null) => Ok(f64::NAN),
            // The null markers a CSV cell may hold (`"NaN"`, `"NA"`, `""`, …), as strings in a
            // JSON body: missing, as in CSV (pandas writes NaN as such a string in some
            // orients). A categorical column keeps them as text.
            (FieldKind::Numeric | FieldKind::Datetime | FieldKind::Boolean, Cell::Str(s))
                if kiln_table::DEFAULT_NULL_VALUES.contains(&s.trim()) =>
            {
                Ok(f64::NAN)
            }
            (FieldKind::Numeric | FieldKind::Datetime, Cell::Num(v)) => Ok(*v),
            (FieldKind::Numeric, Cell::Str(s)) => parse_number(s).ok_or_else(wrong),
            (FieldKind::Numeric | FieldKind::Datetime, Cell::Bool(_)) => Err(wrong()),
            (FieldKind::Boolean, Cell::Bool(b)) => Ok(if *b { 1.0 } else { 0.0 }),
            (FieldKind::Boolean, Cell::Num(v)) if *v == 0.0 || *v == 1.0 => Ok(*v),
            (FieldKind::Boolean, Cell::Num(_)) => Err(wrong()),
            (FieldKind::Boolean, Cell::Str(s)) => match parse_bool(s) {
                Some(b) => Ok(if b { 1.0 } else { 0.0 }),
                None => Err(wrong()),
            },
            (FieldKind::Datetime, Cell::Str(s)) => parse_number(s)
                .or_else(|| kiln_table::parse_datetime(s).map(micros_to_seconds))
                .ok_or_else(wrong),
            (FieldKind::Categorical, Cell::Str(s)) => category(f, s, cell, row),
            (FieldKind::Categorical, Cell::Num(v)) => category(f, &format_number(*v), cell, row),
            (FieldKind::Categorical, Cell::Bool(b)) => {
                category(f, if *b { "true" } else { "false" }, cell, row)
            }
        }
    }
}

fn category(field: &InputField, text: &str, cell: &Cell, row: usize) -> Result<f64, DecodeError> {
    match field.categories.binary_search_by(|c| c.as_str().cmp(text)) {
        #[allow(clippy::cast_precision_loss)]
        Ok(i) => Ok(i as f64),
        Err(_) => Err(DecodeError::UnknownCategory {
            column: field.name.clone(),
            value: cell.describe(),
            expected: category_list(&field.categories),
            row: row + 1,
        }),
    }
}

/// Fills a [`Batch`]; inputs never given are reported by [`BatchBuilder::finish`].
#[derive(Debug)]
pub struct BatchBuilder<'e> {
    encoder: &'e Encoder,
    n_rows: usize,
    values: Vec<f64>,
    seen: Vec<bool>,
    texts: Vec<Box<str>>,
}

impl BatchBuilder<'_> {
    pub fn encoder(&self) -> &Encoder {
        self.encoder
    }

    /// Append an all-missing row; returns its index.
    pub fn add_row(&mut self) -> usize {
        let n = self.encoder.fields.len();
        self.values.resize(self.values.len() + n, f64::NAN);
        self.n_rows += 1;
        self.n_rows - 1
    }

    /// Set input `field` of row `row`.
    pub fn set(&mut self, row: usize, field: usize, cell: &Cell) -> Result<(), DecodeError> {
        let v = if self.encoder.open.get(field).copied().unwrap_or(false) {
            let text: Box<str> = match cell {
                Cell::Null => return self.set_value(row, field, f64::NAN),
                Cell::Str(s) => (**s).into(),
                Cell::Num(v) => format_number(*v).into(),
                Cell::Bool(b) => b.to_string().into(),
            };
            self.texts.push(text);
            #[allow(clippy::cast_precision_loss)]
            let index = (self.texts.len() - 1) as f64;
            index
        } else {
            self.encoder.encode(field, cell, row)?
        };
        self.set_value(row, field, v)
    }

    fn set_value(&mut self, row: usize, field: usize, v: f64) -> Result<(), DecodeError> {
        let n = self.encoder.fields.len();
        let Some(slot) = self.values.get_mut(row * n + field) else {
            return Err(DecodeError::Malformed(format!(
                "row {} is outside the batch",
                row + 1
            )));
        };
        *slot = v;
        if let Some(s) = self.seen.get_mut(field) {
            *s = true;
        }
        Ok(())
    }

    /// Mark `field` as present without a value (a column of nulls).
    pub fn mark_seen(&mut self, field: usize) {
        if let Some(s) = self.seen.get_mut(field) {
            *s = true;
        }
    }

    /// The batch, or an error naming every input that no row gave.
    pub fn finish(self) -> Result<Batch, DecodeError> {
        if self.n_rows == 0 {
            return Err(DecodeError::Empty);
        }
        let missing: Vec<(String, String)> = self
            .encoder
            .fields
            .iter()
            .zip(&self.seen)
            .filter(|(_, seen)| !**seen)
            .map(|(f, _)| (f.name.clone(), expected(f)))
            .collect();
        if !missing.is_empty() {
            return Err(DecodeError::MissingColumns(missing));
        }
        Ok(Batch {
            n_rows: self.n_rows,
            n_features: self.encoder.fields.len(),
            values: self.values,
            texts: self.texts,
        })
    }
}

/// How many model input values a request body of `body_len` bytes may expand to: one per byte
/// (a dense JSON or CSV body spends at least two bytes a value), and never less than 64 Ki.
/// Without it a small body of empty rows (`[{},{},…]`) for a wide model would allocate
/// gigabytes of missing values before any check could fail.
pub fn value_budget(body_len: usize) -> usize {
    body_len.max(64 * 1024)
}

/// A finite decimal number (`3`, `-1.5`, `2e-3`); words such as `inf` or `nan`, and numbers
/// too large for an f64 (`1e999`), are not numbers.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok().filter(|v: &f64| v.is_finite())
}

/// `true`/`false` (any case) or `1`/`0`.
fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Some(false)
    } else {
        None
    }
}

#[allow(clippy::cast_precision_loss)]
fn micros_to_seconds(us: i64) -> f64 {
    us as f64 / 1e6
}
