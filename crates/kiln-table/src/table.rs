//! [`Table`]: Arrow record batches in kiln's canonical column types, with a [`ColumnKind`] per
//! column.
//!
//! Every column is one of six Arrow types, whatever the source: `Int64` or `Float64`
//! ([`ColumnKind::Numeric`]), `Boolean`, `Utf8` ([`ColumnKind::Categorical`] or
//! [`ColumnKind::Text`]), `Date32` or `Timestamp(Microsecond, None)` in UTC
//! ([`ColumnKind::Datetime`]). Columns of other Arrow types (binary, lists, structs, …) are left
//! out and listed by [`Table::skipped_columns`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type, Float16Type,
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::values::{date_to_micros, format_date, format_float, format_timestamp};
use crate::TableError;

/// What a column holds, as far as checks are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Integers or floats (`Int64` / `Float64`).
    Numeric,
    /// Strings drawn from a small set of values (see [`CategoryRule`]).
    Categorical,
    /// `true` / `false`.
    Boolean,
    /// Dates or timestamps (UTC).
    Datetime,
    /// Free strings: identifiers, names, descriptions.
    Text,
}

impl ColumnKind {
    /// The name used in schema files and messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Numeric => "numeric",
            Self::Categorical => "categorical",
            Self::Boolean => "boolean",
            Self::Datetime => "datetime",
            Self::Text => "text",
        }
    }

    /// Categorical and text columns are both strings; the difference is a heuristic.
    #[must_use]
    pub fn is_string(self) -> bool {
        matches!(self, Self::Categorical | Self::Text)
    }
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a string column counts as categorical rather than text.
///
/// A string column is categorical when its values repeat (at most half as many distinct values
/// as non-null values) and it has at most `max_distinct` distinct values, or at most
/// `max_fraction` of its non-null values are distinct and there are at most `cap` of them.
/// Otherwise it is text. With the defaults (50, 5 %, 1000): 20 plan names in 10 000 rows are
/// categorical, 800 country/region codes in 1 000 000 rows are categorical, 10 000 user names in
/// 10 000 rows are text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategoryRule {
    pub max_distinct: usize,
    pub max_fraction: f64,
    pub cap: usize,
}

impl Default for CategoryRule {
    fn default() -> Self {
        Self {
            max_distinct: 50,
            max_fraction: 0.05,
            cap: 1000,
        }
    }
}

impl CategoryRule {
    /// The most distinct values a categorical column with `non_null` values may have.
    #[must_use]
    pub fn limit(&self, non_null: usize) -> usize {
        let by_fraction = ((non_null as f64) * self.max_fraction).floor() as usize;
        let limit = self.max_distinct.max(by_fraction.min(self.cap));
        limit.min(non_null / 2)
    }
}

/// A column of a [`Table`].
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    /// Position in the table.
    pub index: usize,
    pub name: &'a str,
    pub kind: ColumnKind,
    /// The canonical Arrow type (see the module docs).
    pub data_type: &'a DataType,
}

/// A source column left out of a [`Table`] because kiln has no kind for its type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedColumn {
    pub name: String,
    /// The Arrow type, e.g. `List(Int64)`.
    pub data_type: String,
}

/// A dataset in memory: Arrow record batches plus a kind per column. Build one with
/// [`crate::read_table`] or [`Table::from_batches`].
#[derive(Debug, Clone)]
pub struct Table {
    source: String,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    kinds: Vec<ColumnKind>,
    num_rows: usize,
    skipped: Vec<SkippedColumn>,
}

impl Table {
    /// A table from Arrow batches of any types: columns are converted to the canonical types (see
    /// the module docs), columns of unsupported types are skipped, and string columns are
    /// classified with `rule`. `source` names the data in messages (a file name).
    ///
    /// # Errors
    /// [`TableError::Internal`] when the batches do not match `schema`.
    pub fn from_batches(
        source: impl Into<String>,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        rule: &CategoryRule,
    ) -> Result<Self, TableError> {
        let source = source.into();
        let internal = |err| TableError::Internal {
            path: source.clone(),
            err,
        };
        let mut fields = Vec::new();
        let mut keep = Vec::new();
        let mut skipped = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            match canonical_type(field.data_type()) {
                Some(dt) => {
                    fields.push(Field::new(field.name(), dt, true));
                    keep.push(i);
                }
                None => skipped.push(SkippedColumn {
                    name: field.name().clone(),
                    data_type: field.data_type().to_string(),
                }),
            }
        }
        let mut converted: Vec<Vec<ArrayRef>> = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut columns = Vec::with_capacity(keep.len());
            for &i in &keep {
                let Some(column) = batch.columns().get(i) else {
                    return Err(internal(ArrowError::SchemaError(format!(
                        "batch has {} columns, schema {}",
                        batch.num_columns(),
                        schema.fields().len()
                    ))));
                };
                let normalized = normalize(column).map_err(internal)?;
                columns.push(normalized);
            }
            converted.push(columns);
        }
        // Types can differ between batches only when a column changes type mid-file (UInt64
        // overflow, say); settle on Float64 then.
        for (j, field) in fields.iter_mut().enumerate() {
            let types: HashSet<&DataType> = converted
                .iter()
                .filter_map(|cols| cols.get(j).map(|c| c.data_type()))
                .collect();
            if types.len() > 1 || types.iter().any(|t| *t != field.data_type()) {
                if types.len() == 1 {
                    let dt = (*types.iter().next().expect("one type")).clone();
                    *field = Field::new(field.name(), dt, true);
                } else {
                    *field = Field::new(field.name(), DataType::Float64, true);
                    for cols in &mut converted {
                        if let Some(c) = cols.get_mut(j) {
                            *c = to_float(c).map_err(internal)?;
                        }
                    }
                }
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let batches = converted
            .into_iter()
            .zip(batches)
            .map(|(cols, original)| {
                RecordBatch::try_new_with_options(
                    schema.clone(),
                    cols,
                    &arrow_array::RecordBatchOptions::new()
                        .with_row_count(Some(original.num_rows())),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        Ok(Self::from_canonical(source, schema, batches, skipped, rule))
    }

    /// A table from batches already in canonical types.
    pub(crate) fn from_canonical(
        source: String,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        skipped: Vec<SkippedColumn>,
        rule: &CategoryRule,
    ) -> Self {
        let num_rows = batches.iter().map(RecordBatch::num_rows).sum();
        let mut table = Self {
            source,
            schema,
            batches,
            kinds: Vec::new(),
            num_rows,
            skipped,
        };
        table.kinds = (0..table.schema.fields().len())
            .map(|i| table.classify(i, rule))
            .collect();
        table
    }

    fn classify(&self, index: usize, rule: &CategoryRule) -> ColumnKind {
        match self.schema.field(index).data_type() {
            DataType::Int64 | DataType::Float64 => ColumnKind::Numeric,
            DataType::Boolean => ColumnKind::Boolean,
            DataType::Date32 | DataType::Timestamp(..) => ColumnKind::Datetime,
            _ => {
                let non_null = self.num_rows - self.null_count(index);
                let limit = rule.limit(non_null);
                if non_null == 0 || limit == 0 {
                    return ColumnKind::Text;
                }
                let mut seen: HashSet<&str> = HashSet::new();
                for batch in &self.batches {
                    let Some(strings) = batch.column(index).as_string_opt::<i32>() else {
                        return ColumnKind::Text;
                    };
                    for v in strings.iter().flatten() {
                        if seen.insert(v) && seen.len() > limit {
                            return ColumnKind::Text;
                        }
                    }
                }
                ColumnKind::Categorical
            }
        }
    }

    /// The name of the data (a file name) for messages.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    #[must_use]
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    #[must_use]
    pub fn num_columns(&self) -> usize {
        self.kinds.len()
    }

    /// The Arrow schema (canonical types, every field nullable).
    #[must_use]
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The Arrow record batches.
    #[must_use]
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The columns in order.
    pub fn columns(&self) -> impl Iterator<Item = Column<'_>> + '_ {
        self.schema
            .fields()
            .iter()
            .zip(&self.kinds)
            .enumerate()
            .map(|(index, (field, kind))| Column {
                index,
                name: field.name(),
                kind: *kind,
                data_type: field.data_type(),
            })
    }

    /// A column by name.
    #[must_use]
    pub fn column(&self, name: &str) -> Option<Column<'_>> {
        self.columns().find(|c| c.name == name)
    }

    /// Source columns left out because of their type.
    #[must_use]
    pub fn skipped_columns(&self) -> &[SkippedColumn] {
        &self.skipped
    }

    /// Nulls in a column.
    #[must_use]
    pub fn null_count(&self, index: usize) -> usize {
        self.batches
            .iter()
            .map(|b| b.column(index).null_count())
            .sum()
    }

    /// The values of a column with their 1-based row numbers, `None` for nulls.
    pub(crate) fn values(&self, index: usize) -> impl Iterator<Item = (u64, Option<Value<'_>>)> {
        self.batches
            .iter()
            .flat_map(move |b| batch_values(b.column(index)))
            .zip(1u64..)
            .map(|(v, row)| (row, v))
    }
}

/// One value of a canonical column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a str),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
}

impl<'a> Value<'a> {
    /// The value as a number, for numeric values.
    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(v as f64),
            Value::Float(v) => Some(v),
            _ => None,
        }
    }

    /// Microseconds since the epoch, for dates and timestamps.
    pub(crate) fn as_micros(self) -> Option<i64> {
        match self {
            Value::Date(d) => Some(date_to_micros(d)),
            Value::Timestamp(t) => Some(t),
            _ => None,
        }
    }

    /// A hashable identity for uniqueness and distinct counts (floats by bit pattern, -0 = 0).
    pub(crate) fn key(self) -> Key<'a> {
        match self {
            Value::Int(v) | Value::Timestamp(v) => Key::Int(v),
            Value::Date(d) => Key::Int(i64::from(d)),
            Value::Float(v) => Key::Bits(if v == 0.0 { 0 } else { v.to_bits() }),
            Value::Bool(b) => Key::Bool(b),
            Value::Str(s) => Key::Str(s),
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => f.write_str(&format_float(*v)),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(s),
            Value::Date(d) => f.write_str(&format_date(*d)),
            Value::Timestamp(t) => f.write_str(&format_timestamp(*t)),
        }
    }
}

/// Hashable identity of a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key<'a> {
    Int(i64),
    Bits(u64),
    Bool(bool),
    Str(&'a str),
}

fn batch_values(array: &ArrayRef) -> Box<dyn Iterator<Item = Option<Value<'_>>> + '_> {
    match array.data_type() {
        DataType::Int64 => Box::new(
            array
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(Value::Int)),
        ),
        DataType::Float64 => Box::new(
            array
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.filter(|f| !f.is_nan()).map(Value::Float)),
        ),
        DataType::Boolean => Box::new(array.as_boolean().iter().map(|v| v.map(Value::Bool))),
        DataType::Utf8 => Box::new(array.as_string::<i32>().iter().map(|v| v.map(Value::Str))),
        DataType::Date32 => Box::new(
            array
                .as_primitive::<Date32Type>()
                .iter()
                .map(|v| v.map(Value::Date)),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Box::new(
            array
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|v| v.map(Value::Timestamp)),
        ),
        // Not reachable for canonical tables; read as all-null rather than panic.
        _ => Box::new(std::iter::repeat_n(None, array.len())),
    }
}

/// The canonical type for a source type, or `None` when kiln has no kind for it.
fn canonical_type(dt: &DataType) -> Option<DataType> {
    Some(match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DataType::Int64,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => DataType::Float64,
        DataType::Boolean => DataType::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            DataType::Utf8
        }
        DataType::Date32 => DataType::Date32,
        DataType::Date64 | DataType::Timestamp(..) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        DataType::Dictionary(_, values) => return canonical_type(values),
        _ => return None,
    })
}

fn decimal_scale(scale: i8) -> f64 {
    10f64.powi(i32::from(scale))
}

/// Convert a column to its canonical type ([`canonical_type`] must be `Some`).
fn normalize(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let converted: ArrayRef = match array.data_type() {
        DataType::Int64
        | DataType::Float64
        | DataType::Boolean
        | DataType::Utf8
        | DataType::Date32
        | DataType::Timestamp(TimeUnit::Microsecond, None) => return Ok(array.clone()),
        DataType::Int8 => Arc::new(
            array
                .as_primitive::<Int8Type>()
                .unary::<_, Int64Type>(i64::from),
        ),
        DataType::Int16 => Arc::new(
            array
                .as_primitive::<Int16Type>()
                .unary::<_, Int64Type>(i64::from),
        ),
        DataType::Int32 => Arc::new(
            array
                .as_primitive::<Int32Type>()
                .unary::<_, Int64Type>(i64::from),
        ),
        DataType::UInt8 => Arc::new(
            array
                .as_primitive::<UInt8Type>()
                .unary::<_, Int64Type>(i64::from),
        ),
        DataType::UInt16 => Arc::new(
            array
                .as_primitive::<UInt16Type>()
                .unary::<_, Int64Type>(i64::from),
        ),
        DataType::UInt32 => Arc::new(
            array
                .as_primitive::<UInt32Type>()
                .unary::<_, Int64Type>(i64::from),
        ),
        DataType::UInt64 => {
            let a = array.as_primitive::<UInt64Type>();
            if a.values().iter().all(|v| i64::try_from(*v).is_ok()) {
                Arc::new(a.unary::<_, Int64Type>(|v| i64::try_from(v).unwrap_or(i64::MAX)))
            } else {
                Arc::new(a.unary::<_, Float64Type>(|v| v as f64))
            }
        }
        DataType::Float16 => Arc::new(
            array
                .as_primitive::<Float16Type>()
                .unary::<_, Float64Type>(|v| v.to_f64()),
        ),
        DataType::Float32 => Arc::new(
            array
                .as_primitive::<Float32Type>()
                .unary::<_, Float64Type>(f64::from),
        ),
        DataType::Decimal32(_, s) => {
            let d = decimal_scale(*s);
            Arc::new(
                array
                    .as_primitive::<Decimal32Type>()
                    .unary::<_, Float64Type>(|v| f64::from(v) / d),
            )
        }
        DataType::Decimal64(_, s) => {
            let d = decimal_scale(*s);
            Arc::new(
                array
                    .as_primitive::<Decimal64Type>()
                    .unary::<_, Float64Type>(|v| v as f64 / d),
            )
        }
        DataType::Decimal128(_, s) => {
            let d = decimal_scale(*s);
            Arc::new(
                array
                    .as_primitive::<Decimal128Type>()
                    .unary::<_, Float64Type>(|v| v as f64 / d),
            )
        }
        DataType::Decimal256(_, s) => {
            let d = decimal_scale(*s);
            Arc::new(
                array
                    .as_primitive::<Decimal256Type>()
                    .unary::<_, Float64Type>(|v| {
                        v.to_string().parse::<f64>().unwrap_or(f64::NAN) / d
                    }),
            )
        }
        DataType::LargeUtf8 => Arc::new(array.as_string::<i64>().iter().collect::<StringArray>()),
        DataType::Utf8View => Arc::new(array.as_string_view().iter().collect::<StringArray>()),
        DataType::Null => Arc::new(StringArray::new_null(array.len())),
        DataType::Date64 => Arc::new(
            array
                .as_primitive::<arrow_array::types::Date64Type>()
                .unary::<_, TimestampMicrosecondType>(|v| v.saturating_mul(1000)),
        ),
        DataType::Timestamp(unit, _) => {
            let micros = |factor: i64, divisor: i64| {
                move |v: i64| v.saturating_mul(factor).div_euclid(divisor)
            };
            let (factor, divisor) = match unit {
                TimeUnit::Second => (1_000_000, 1),
                TimeUnit::Millisecond => (1000, 1),
                TimeUnit::Microsecond => (1, 1),
                TimeUnit::Nanosecond => (1, 1000),
            };
            let f = micros(factor, divisor);
            match unit {
                TimeUnit::Second => Arc::new(
                    array
                        .as_primitive::<TimestampSecondType>()
                        .unary::<_, TimestampMicrosecondType>(f),
                ),
                TimeUnit::Millisecond => Arc::new(
                    array
                        .as_primitive::<TimestampMillisecondType>()
                        .unary::<_, TimestampMicrosecondType>(f),
                ),
                TimeUnit::Microsecond => Arc::new(
                    array
                        .as_primitive::<TimestampMicrosecondType>()
                        .unary::<_, TimestampMicrosecondType>(f),
                ),
                TimeUnit::Nanosecond => Arc::new(
                    array
                        .as_primitive::<TimestampNanosecondType>()
                        .unary::<_, TimestampMicrosecondType>(f),
                ),
            }
        }
        DataType::Dictionary(..) => {
            let dict = array.as_any_dictionary();
            let values = normalize(dict.values())?;
            arrow_select::take::take(values.as_ref(), dict.keys(), None)?
        }
        other => {
            return Err(ArrowError::NotYetImplemented(format!(
                "no canonical type for {other}"
            )))
        }
    };
    Ok(converted)
}

fn to_float(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    Ok(match array.data_type() {
        DataType::Float64 => array.clone(),
        DataType::Int64 => Arc::new(
            array
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.and_then(|v| Value::Int(v).as_f64()))
                .collect::<Float64Array>(),
        ),
        other => {
            return Err(ArrowError::SchemaError(format!(
                "column changes type between batches ({other})"
            )))
        }
    })
}
