//! Request bodies to [`Batch`]es: MLflow's scoring formats ([`decode_mlflow_json`]:
//! `dataframe_split`, `dataframe_records`, `instances`, `inputs`), CSV ([`decode_csv`]) and
//! Open Inference Protocol v2 requests ([`decode_v2`]). Strings are borrowed from the body; a
//! request allocates its rows and little else.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::encode::{value_budget, Batch, BatchBuilder, Cell, Encoder};
use crate::error::DecodeError;

const SCALAR: &str = "a scalar (number, string, boolean or null)";

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(SCALAR)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Cell::Bool(v))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cell::Num(v as f64))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Cell::Num(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Cell::Num(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

/// A borrowed string (object keys, column names).
#[derive(Debug)]
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One row: a record (`{"col": value}`), a list in signature order, or a single value.
#[derive(Debug)]
enum Row<'a> {
    Record(Vec<(Name<'a>, Cell<'a>)>),
    List(Vec<Cell<'a>>),
    Scalar(Cell<'a>),
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = Row<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row: an object of column values, a list of values or a single value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((k, v)) = map.next_entry::<Name<'de>, Cell<'de>>()? {
            out.push((k, v));
        }
        Ok(Row::Record(out))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(8));
        while let Some(v) = seq.next_element::<Cell<'de>>()? {
            out.push(v);
        }
        Ok(Row::List(out))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        CellVisitor.visit_bool(v).map(Row::Scalar)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        CellVisitor.visit_i64(v).map(Row::Scalar)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        CellVisitor.visit_u64(v).map(Row::Scalar)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        CellVisitor.visit_f64(v).map(Row::Scalar)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        CellVisitor.visit_borrowed_str(v).map(Row::Scalar)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        CellVisitor.visit_str(v).map(Row::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Row::Scalar(Cell::Null))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Row<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RowVisitor)
    }
}

/// `instances` / `inputs`: a list of rows, or an object of columns (`{"col": [values]}`, or a
/// single value per column for one row).
#[derive(Debug)]
enum Inputs<'a> {
    Rows(Vec<Row<'a>>),
    Columns(Vec<(Name<'a>, Vec<Cell<'a>>)>),
}

/// A column's values: a list, or one value.
struct ColumnValues<'a>(Vec<Cell<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for ColumnValues<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ColumnValues<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of values or a single value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(v) = seq.next_element::<Cell<'de>>()? {
                    out.push(v);
                }
                Ok(ColumnValues(out))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ColumnValues(vec![Cell::Bool(v)]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                CellVisitor.visit_i64(v).map(|c| ColumnValues(vec![c]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                CellVisitor.visit_u64(v).map(|c| ColumnValues(vec![c]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ColumnValues(vec![Cell::Num(v)]))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ColumnValues(vec![Cell::Str(Cow::Borrowed(v))]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ColumnValues(vec![Cell::Str(Cow::Owned(v.to_string()))]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ColumnValues(vec![Cell::Null]))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Inputs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Inputs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of rows or an object of columns")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(v) = seq.next_element::<Row<'de>>()? {
                    out.push(v);
                }
                Ok(Inputs::Rows(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Name<'de>, ColumnValues<'de>>()? {
                    out.push((k, v.0));
                }
                Ok(Inputs::Columns(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `dataframe_split`: pandas' `orient="split"`.
#[derive(Debug, Deserialize)]
struct Split<'a> {
    #[serde(borrow, default)]
    columns: Option<Vec<Name<'a>>>,
    #[serde(borrow)]
    data: Vec<Row<'a>>,
    #[serde(default, rename = "index")]
    _index: Option<IgnoredAny>,
}

/// MLflow's scoring request (unknown keys such as `params` are ignored).
#[derive(Debug, Deserialize)]
struct MlflowRequest<'a> {
    #[serde(borrow, default)]
    dataframe_split: Option<Split<'a>>,
    #[serde(borrow, default)]
    dataframe_records: Option<Vec<Row<'a>>>,
    #[serde(borrow, default)]
    instances: Option<Inputs<'a>>,
    #[serde(borrow, default)]
    inputs: Option<Inputs<'a>>,
}

fn json_error(e: &serde_json::Error) -> DecodeError {
    DecodeError::Json(e.to_string())
}

/// Decode an MLflow scoring request (`application/json`).
/// The body without a UTF-8 byte order mark (some Windows and .NET clients send one; JSON
/// parsers that follow RFC 8259 may ignore it, and MLflow's server does).
fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

pub fn decode_mlflow_json(body: &[u8], encoder: &Encoder) -> Result<Batch, DecodeError> {
    let body = without_bom(body);
    let req: MlflowRequest<'_> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let budget = value_budget(body.len());
    let given = [
        req.dataframe_split.is_some(),
        req.dataframe_records.is_some(),
        req.instances.is_some(),
        req.inputs.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(DecodeError::Malformed(format!(
            "expected exactly one of `dataframe_split`, `dataframe_records`, `instances` or `inputs`, got {given}"
        )));
    }
    if let Some(split) = req.dataframe_split {
        return decode_split(split, encoder, budget);
    }
    if let Some(records) = req.dataframe_records {
        return decode_rows(&records, None, encoder, budget);
    }
    match req.instances.or(req.inputs) {
        Some(Inputs::Rows(rows)) => decode_rows(&rows, None, encoder, budget),
        Some(Inputs::Columns(cols)) => decode_columns(&cols, encoder, budget),
        None => Err(DecodeError::Empty),
    }
}

/// Stamp input `i` with `mark` (a row number, or 1 for the whole request); false when it
/// already bore that mark, i.e. the request gives the input twice.
fn mark_once(marks: &mut [usize], i: usize, mark: usize) -> bool {
    match marks.get_mut(i) {
        Some(m) if *m == mark => false,
        Some(m) => {
            *m = mark;
            true
        }
        None => true,
    }
}

/// Map request column names to model inputs (unknown columns are ignored, as MLflow does).
fn column_map(names: &[Name<'_>], encoder: &Encoder) -> Result<Vec<Option<usize>>, DecodeError> {
    let mut seen = vec![0; encoder.fields().len()];
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let idx = encoder.field_index(&n.0);
        if let Some(i) = idx {
            if !mark_once(&mut seen, i, 1) {
                return Err(DecodeError::Malformed(format!(
                    "column `{}` appears twice",
                    n.0
                )));
            }
        }
        out.push(idx);
    }
    Ok(out)
}

fn decode_split(split: Split<'_>, encoder: &Encoder, budget: usize) -> Result<Batch, DecodeError> {
    let map = match &split.columns {
        Some(cols) => Some(column_map(cols, encoder)?),
        None => None,
    };
    if split.data.is_empty() {
        return Err(DecodeError::Empty);
    }
    decode_rows(&split.data, map.as_deref(), encoder, budget)
}

/// Rows of records, lists (positional: `columns` when given, else signature order) or scalars.
fn decode_rows(
    rows: &[Row<'_>],
    columns: Option<&[Option<usize>]>,
    encoder: &Encoder,
    budget: usize,
) -> Result<Batch, DecodeError> {
    let n_fields = encoder.fields().len();
    let mut b = encoder.builder(rows.len(), budget)?;
    // The last row (counted from 1) that set each input, to refuse a key given twice in a row.
    let mut set_in_row = vec![0usize; n_fields];
    for (r, row) in rows.iter().enumerate() {
        match row {
            Row::Record(pairs) => {
                if columns.is_some() {
                    return Err(DecodeError::Malformed(format!(
                        "row {} of `dataframe_split` data is an object; expected a list of values",
                        r + 1
                    )));
                }
                for (k, v) in pairs {
                    if let Some(i) = encoder.field_index(&k.0) {
                        if !mark_once(&mut set_in_row, i, r + 1) {
                            return Err(DecodeError::Malformed(format!(
                                "row {} has column `{}` twice",
                                r + 1,
                                k.0
                            )));
                        }
                        b.set(r, i, v)?;
                    }
                }
            }
            Row::List(values) => set_list(&mut b, r, values, columns, n_fields)?,
            Row::Scalar(v) => set_list(&mut b, r, std::slice::from_ref(v), columns, n_fields)?,
        }
    }
    b.finish()
}

fn set_list(
    b: &mut BatchBuilder<'_>,
    r: usize,
    values: &[Cell<'_>],
    columns: Option<&[Option<usize>]>,
    n_fields: usize,
) -> Result<(), DecodeError> {
    match columns {
        Some(map) => {
            if values.len() != map.len() {
                return Err(DecodeError::Malformed(format!(
                    "row {} has {} values but there are {} columns",
                    r + 1,
                    values.len(),
                    map.len()
                )));
            }
            for (v, idx) in values.iter().zip(map) {
                if let Some(i) = idx {
                    b.set(r, *i, v)?;
                }
            }
        }
        None => {
            if values.len() != n_fields {
                return Err(DecodeError::Malformed(format!(
                    "row {} has {} values; the model takes {} inputs in this order: {}",
                    r + 1,
                    values.len(),
                    n_fields,
                    b.encoder().names()
                )));
            }
            for (i, v) in values.iter().enumerate() {
                b.set(r, i, v)?;
            }
        }
    }
    Ok(())
}

fn decode_columns(
    cols: &[(Name<'_>, Vec<Cell<'_>>)],
    encoder: &Encoder,
    budget: usize,
) -> Result<Batch, DecodeError> {
    let mut n_rows = None;
    let mut given = vec![0; encoder.fields().len()];
    for (name, values) in cols {
        let Some(i) = encoder.field_index(&name.0) else {
            continue;
        };
        if !mark_once(&mut given, i, 1) {
            return Err(DecodeError::Malformed(format!(
                "column `{}` appears twice",
                name.0
            )));
        }
        match n_rows {
            None => n_rows = Some((values.len(), &name.0)),
            Some((n, first)) if n != values.len() => {
                return Err(DecodeError::Malformed(format!(
                    "column `{}` has {} values but column `{first}` has {n}",
                    name.0,
                    values.len()
                )))
            }
            Some(_) => {}
        }
    }
    // With no known column, the rows still count (the error then names the missing inputs).
    let n = n_rows.map_or_else(|| cols.first().map_or(0, |(_, v)| v.len()), |(n, _)| n);
    let mut b = encoder.builder(n, budget)?;
    for (name, values) in cols {
        if let Some(i) = encoder.field_index(&name.0) {
            b.mark_seen(i);
            for (r, v) in values.iter().enumerate() {
                b.set(r, i, v)?;
            }
        }
    }
    b.finish()
}

/// Decode a CSV body with a header line. Empty cells and the usual null markers (`NA`, `null`,
/// …) are missing values.
pub fn decode_csv(body: &[u8], encoder: &Encoder) -> Result<Batch, DecodeError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| DecodeError::Csv(e.to_string()))?
        .clone();
    let names: Vec<Name<'_>> = headers
        .iter()
        .map(|h| Name(Cow::Borrowed(h.trim())))
        .collect();
    let map = column_map(&names, encoder)?;
    let mut b = encoder.builder(0, 0)?;
    for i in map.iter().flatten() {
        b.mark_seen(*i);
    }
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(DecodeError::Csv(e.to_string())),
        }
        let r = b.add_row();
        for (text, idx) in record.iter().zip(&map) {
            let Some(i) = idx else { continue };
            // The same null markers as training reads, after the same trim.
            let cell = if kiln_table::DEFAULT_NULL_VALUES.contains(&text.trim()) {
                Cell::Null
            } else {
                Cell::Str(Cow::Borrowed(text))
            };
            b.set(r, *i, &cell)?;
        }
    }
    b.finish()
}

/// Flattens nested lists of scalars (a tensor's `data`, row-major) into one list.
struct Flatten<'v, 'a>(&'v mut Vec<Cell<'a>>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for Flatten<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Flatten<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("tensor data: a (nested) list of scalars")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push(Cell::Bool(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push(CellVisitor.visit_i64(v)?);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push(CellVisitor.visit_u64(v)?);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.0.push(Cell::Num(v));
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.0.push(Cell::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(Cell::Str(Cow::Owned(v.to_string())));
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.push(Cell::Null);
        Ok(())
    }
}

#[derive(Debug)]
struct TensorData<'a>(Vec<Cell<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for TensorData<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        Flatten(&mut out).deserialize(d)?;
        Ok(TensorData(out))
    }
}

/// One input tensor of an inference request.
#[derive(Debug, Deserialize)]
struct Tensor<'a> {
    #[serde(borrow)]
    name: Name<'a>,
    shape: Vec<i64>,
    #[serde(borrow)]
    datatype: Name<'a>,
    #[serde(borrow)]
    data: TensorData<'a>,
}

/// One entry of a request's `outputs` (its `parameters` are accepted and ignored).
#[derive(Debug, Deserialize)]
struct OutputRequest<'a> {
    #[serde(borrow)]
    name: Name<'a>,
}

/// An Open Inference Protocol v2 request (`parameters` is accepted and ignored).
#[derive(Debug, Deserialize)]
struct InferRequest<'a> {
    #[serde(borrow, default)]
    id: Option<Name<'a>>,
    #[serde(borrow)]
    inputs: Vec<Tensor<'a>>,
    #[serde(borrow, default)]
    outputs: Option<Vec<OutputRequest<'a>>>,
}

/// What an inference request asks of the answer besides the inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Request {
    /// The request's `id`, echoed in the response.
    pub id: Option<String>,
    /// The outputs asked for by name, in the request's order; `None` (or an empty list) for
    /// all of them.
    pub outputs: Option<Vec<String>>,
}

/// A shape for an error message: a long one is cut after 8 dimensions.
fn show_shape(shape: &[i64]) -> String {
    const SHOWN: usize = 8;
    if shape.len() <= SHOWN {
        return format!("{shape:?}");
    }
    let head: Vec<String> = shape[..SHOWN].iter().map(i64::to_string).collect();
    format!("[{}, … ({} dimensions)]", head.join(", "), shape.len())
}

/// The range of whole numbers an integer datatype holds (as doubles: the JSON numbers).
#[allow(clippy::cast_precision_loss)]
fn integer_range(datatype: &str) -> Option<(f64, f64)> {
    Some(match datatype {
        "INT8" => (f64::from(i8::MIN), f64::from(i8::MAX)),
        "INT16" => (f64::from(i16::MIN), f64::from(i16::MAX)),
        "INT32" => (f64::from(i32::MIN), f64::from(i32::MAX)),
        "INT64" => (i64::MIN as f64, i64::MAX as f64),
        "UINT8" => (0.0, f64::from(u8::MAX)),
        "UINT16" => (0.0, f64::from(u16::MAX)),
        "UINT32" => (0.0, f64::from(u32::MAX)),
        "UINT64" => (0.0, u64::MAX as f64),
        _ => return None,
    })
}

/// Check each value against the tensor's `datatype`: booleans for `BOOL`, whole numbers in
/// range for the integer types, numbers the float width holds for `FP16`/`FP32`/`FP64`.
/// `null` (a missing value) is accepted in any tensor, and `BYTES` takes any scalar (a single
/// `[rows, inputs]` tensor of mixed columns is sent as `BYTES`).
fn check_data(t: &Tensor<'_>) -> Result<(), DecodeError> {
    let datatype = t.datatype.0.as_ref();
    // The largest finite value of each width, the way a client rounds to it: `3.4028235e38`
    // (the shortest spelling of f32::MAX) parses a little above it and must still pass.
    let fits: Option<fn(f64) -> bool> = match datatype {
        "FP16" => Some(|x| x.abs() < 65520.0),
        #[allow(clippy::cast_possible_truncation)]
        "FP32" => Some(|x| (x as f32).is_finite()),
        "FP64" => Some(f64::is_finite),
        _ => None,
    };
    let ints = integer_range(datatype);
    for (k, v) in t.data.0.iter().enumerate() {
        let expected = match (v, datatype, fits, ints) {
            (Cell::Null, ..) | (_, "BYTES", ..) | (Cell::Bool(_), "BOOL", ..) => continue,
            (Cell::Num(x), _, Some(fits), _) if fits(*x) => continue,
            (Cell::Num(x), _, _, Some((lo, hi))) if x.fract() == 0.0 && (lo..=hi).contains(x) => {
                continue
            }
            (_, "BOOL", ..) => "true or false".to_string(),
            (_, _, Some(_), _) => format!("a number that {datatype} holds"),
            (_, _, _, Some((lo, hi))) => format!("a whole number from {lo} to {hi}"),
            _ => continue,
        };
        return Err(DecodeError::Malformed(format!(
            "tensor `{}` is {datatype}: its value {} (index {k} of data) is not {expected}",
            t.name.0,
            v.describe()
        )));
    }
    Ok(())
}

const DATATYPES: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BYTES",
];

fn shape_len(t: &Tensor<'_>) -> Result<usize, DecodeError> {
    let mut n: usize = 1;
    for &d in &t.shape {
        let d = usize::try_from(d).map_err(|_| {
            DecodeError::Malformed(format!(
                "tensor `{}` has a negative dimension in shape {}",
                t.name.0,
                show_shape(&t.shape)
            ))
        })?;
        n = n.checked_mul(d).ok_or_else(|| {
            DecodeError::Malformed(format!("tensor `{}` shape is too large", t.name.0))
        })?;
    }
    if n != t.data.0.len() {
        return Err(DecodeError::Malformed(format!(
            "tensor `{}` has shape {} ({n} values) but {} data values",
            t.name.0,
            show_shape(&t.shape),
            t.data.0.len()
        )));
    }
    if !DATATYPES.contains(&t.datatype.0.as_ref()) {
        return Err(DecodeError::Malformed(format!(
            "tensor `{}` has unknown datatype `{}`; expected one of {}",
            t.name.0,
            t.datatype.0,
            DATATYPES.join(", ")
        )));
    }
    check_data(t)?;
    Ok(n)
}

/// Decode an inference request: one tensor per model input (named like the column, shape `[n]`
/// or `[n, 1]`), or a single `[n, inputs]` tensor with the columns in signature order. Returns
/// the batch, and the request's id and outputs asked for.
pub fn decode_v2(body: &[u8], encoder: &Encoder) -> Result<(Batch, V2Request), DecodeError> {
    let body = without_bom(body);
    let req: InferRequest<'_> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let budget = value_budget(body.len());
    let id = V2Request {
        id: req.id.map(|n| n.0.into_owned()),
        outputs: req
            .outputs
            .filter(|o| !o.is_empty())
            .map(|o| o.into_iter().map(|o| o.name.0.into_owned()).collect()),
    };
    let n_fields = encoder.fields().len();
    if req.inputs.is_empty() {
        return Err(DecodeError::Empty);
    }
    for t in &req.inputs {
        shape_len(t)?;
    }
    let by_name = req
        .inputs
        .iter()
        .any(|t| encoder.field_index(&t.name.0).is_some());
    if !by_name {
        let [t] = req.inputs.as_slice() else {
            return Err(DecodeError::Malformed(format!(
                "no input tensor is named after a model input ({}); send one tensor per input, or a single [rows, {n_fields}] tensor",
                encoder.names()
            )));
        };
        let cols = match t.shape.as_slice() {
            [_, m] => usize::try_from(*m).unwrap_or(0),
            [_] if n_fields == 1 => 1,
            _ => 0,
        };
        if cols != n_fields {
            return Err(DecodeError::Malformed(format!(
                "tensor `{}` has shape {}; expected [rows, {n_fields}] with the inputs in this order: {}",
                t.name.0,
                show_shape(&t.shape),
                encoder.names()
            )));
        }
        let n_rows = t.data.0.len() / n_fields.max(1);
        let mut b = encoder.builder(n_rows, budget)?;
        for (k, v) in t.data.0.iter().enumerate() {
            b.set(k / n_fields, k % n_fields, v)?;
        }
        for i in 0..n_fields {
            b.mark_seen(i);
        }
        return Ok((b.finish()?, id));
    }
    let mut n_rows = None;
    let mut given = vec![0; n_fields];
    for t in &req.inputs {
        // Other tensors are ignored, as other columns are on /invocations: the pandas codecs
        // of MLServer and KServe send every column of a frame (ids, labels) as a tensor.
        let Some(i) = encoder.field_index(&t.name.0) else {
            continue;
        };
        if !mark_once(&mut given, i, 1) {
            return Err(DecodeError::Malformed(format!(
                "tensor `{}` appears twice",
                t.name.0
            )));
        }
        let rows = match t.shape.as_slice() {
            [n] | [n, 1] => usize::try_from(*n).unwrap_or(0),
            _ => {
                return Err(DecodeError::Malformed(format!(
                    "tensor `{}` has shape {}; a per-column tensor has shape [rows] or [rows, 1]",
                    t.name.0,
                    show_shape(&t.shape)
                )))
            }
        };
        match n_rows {
            None => n_rows = Some((rows, &t.name.0)),
            Some((n, first)) if n != rows => {
                return Err(DecodeError::Malformed(format!(
                    "tensor `{}` has {rows} rows but tensor `{first}` has {n}",
                    t.name.0
                )))
            }
            Some(_) => {}
        }
    }
    let mut b = encoder.builder(n_rows.map_or(0, |(n, _)| n), budget)?;
    for t in &req.inputs {
        if let Some(i) = encoder.field_index(&t.name.0) {
            b.mark_seen(i);
            for (r, v) in t.data.0.iter().enumerate() {
                b.set(r, i, v)?;
            }
        }
    }
    Ok((b.finish()?, id))
}
