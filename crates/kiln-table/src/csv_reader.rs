//! Delimited text → [`Table`].
//!
//! Every field is first read as a string (a null when it is a null token), a chunk of rows at a
//! time; then each column's type is inferred from the first `infer_rows` rows (all by default) and
//! the chunks are converted. A column is the narrowest type all its non-null values fit, in this
//! order: integer, float, boolean, date, timestamp, string. One non-numeric value in a column
//! therefore makes it a string column instead of an error.

use std::io::Read;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::error::Position;
use crate::read::CsvOptions;
use crate::table::CategoryRule;
use crate::values::{parse_bool, parse_date, parse_datetime, parse_float, parse_int, shorten};
use crate::{Table, TableError};

/// Rows per record batch.
const CHUNK_ROWS: usize = 65_536;

/// Physical line of each data row, stored sparsely: one entry wherever a row does not start on
/// the line after the previous row (quoted fields with newlines, skipped blank lines).
#[derive(Debug, Default)]
struct LineMap {
    /// `(row, line)`, rows increasing.
    entries: Vec<(u64, u64)>,
}

impl LineMap {
    fn record(&mut self, row: u64, line: u64) {
        if self.line_of(row) != Some(line) {
            self.entries.push((row, line));
        }
    }

    fn line_of(&self, row: u64) -> Option<u64> {
        let i = self.entries.partition_point(|(r, _)| *r <= row);
        let (r, line) = self.entries.get(i.checked_sub(1)?)?;
        Some(line + (row - r))
    }
}

struct Reader<'a> {
    source: &'a str,
    names: Vec<String>,
    builders: Vec<StringBuilder>,
    chunks: Vec<Vec<ArrayRef>>,
    rows_in_chunk: usize,
    rows: u64,
    lines: LineMap,
    nulls: Vec<&'a str>,
}

impl<'a> Reader<'a> {
    fn malformed(&self, at: Position, message: String) -> TableError {
        TableError::Malformed {
            path: self.source.to_owned(),
            at,
            message,
        }
    }

    fn is_null(&self, field: &str) -> bool {
        let field = field.trim();
        self.nulls.contains(&field)
    }

    /// One data record.
    fn push(&mut self, record: &csv::ByteRecord, delimiter: u8) -> Result<(), TableError> {
        self.rows += 1;
        let row = self.rows;
        let line = record.position().map_or(row, csv::Position::line);
        self.lines.record(row, line);
        if record.len() != self.names.len() {
            let mut message = format!(
                "expected {} fields (as in the header), found {}",
                self.names.len(),
                record.len()
            );
            if record.len() == 1 && self.names.len() > 1 {
                message.push_str(&format!(
                    "; is `{}` the right delimiter?",
                    char::from(delimiter).escape_default()
                ));
            } else {
                message.push_str("; check for an unquoted delimiter or an unclosed quote");
            }
            return Err(self.malformed(
                Position {
                    line: Some(line),
                    row: Some(row),
                    column: None,
                },
                message,
            ));
        }
        for (i, bytes) in record.iter().enumerate() {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Err(self.malformed(
                    Position {
                        line: Some(line),
                        row: Some(row),
                        column: self.names.get(i).cloned(),
                    },
                    "invalid UTF-8 (kiln reads UTF-8 text; convert the file first)".into(),
                ));
            };
            let null = self.is_null(text);
            let builder = &mut self.builders[i];
            if null {
                builder.append_null();
            } else {
                builder.append_value(text);
            }
        }
        self.rows_in_chunk += 1;
        if self.rows_in_chunk == CHUNK_ROWS {
            self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) {
        if self.rows_in_chunk > 0 {
            let columns = self
                .builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect();
            self.chunks.push(columns);
            self.rows_in_chunk = 0;
        }
    }
}

/// Where the bytes read so far leave the CSV quoting: the same rules as the `csv` crate's
/// reader (a quote opens a quoted field only at the start of a field; inside one, a doubled
/// quote stands for a quote and a single one closes it; elsewhere a quote is an ordinary byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: it closed the field, unless the next byte is a quote.
    QuoteInQuoted,
}

/// Follows the quoting of the bytes the `csv` reader reads, so that a quoted field still open at
/// the end of the file can be told from one that closed there.
///
/// The `csv` crate ends an unclosed quoted field at end of file without an error. When the
/// quote opens in the last column, every later line becomes part of that one field and the file
/// reads as short but well-formed: rows silently lost.
struct QuoteTracker<R> {
    inner: R,
    quote: u8,
    delimiter: u8,
    state: QuoteState,
}

impl<R: Read> Read for QuoteTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let (quote, delimiter) = (self.quote, self.delimiter);
        let mut state = self.state;
        for &b in &buf[..n] {
            let ends_field = b == delimiter || b == b'\n' || b == b'\r';
            state = match state {
                QuoteState::FieldStart if b == quote => QuoteState::Quoted,
                QuoteState::FieldStart | QuoteState::Unquoted if ends_field => {
                    QuoteState::FieldStart
                }
                QuoteState::FieldStart | QuoteState::Unquoted => QuoteState::Unquoted,
                QuoteState::Quoted if b == quote => QuoteState::QuoteInQuoted,
                QuoteState::Quoted => QuoteState::Quoted,
                QuoteState::QuoteInQuoted if b == quote => QuoteState::Quoted,
                QuoteState::QuoteInQuoted if ends_field => QuoteState::FieldStart,
                QuoteState::QuoteInQuoted => QuoteState::Unquoted,
            };
        }
        self.state = state;
        Ok(n)
    }
}

/// After the last record: an error when the file ended inside a quoted field (see
/// [`QuoteTracker`]), naming the line where that record starts.
fn check_closed<R: Read>(
    rdr: &csv::Reader<QuoteTracker<R>>,
    last_line: Option<u64>,
    source: &str,
) -> Result<(), TableError> {
    if rdr.get_ref().state != QuoteState::Quoted {
        return Ok(());
    }
    Err(TableError::Malformed {
        path: source.to_owned(),
        at: Position {
            line: last_line,
            row: None,
            column: None,
        },
        message: format!(
            "a quoted field in the record starting here is never closed: it takes in every \
             line to the end of the file. Close the field with `{q}` (a `{q}` inside a quoted \
             field is written twice)",
            q = char::from(rdr.get_ref().quote)
        ),
    })
}

fn read_record<R: Read>(
    rdr: &mut csv::Reader<R>,
    record: &mut csv::ByteRecord,
    source: &str,
) -> Result<bool, TableError> {
    rdr.read_byte_record(record).map_err(|err| {
        let line = err.position().map(csv::Position::line);
        let message = err.to_string();
        match err.into_kind() {
            csv::ErrorKind::Io(err) => TableError::Read {
                path: source.to_owned(),
                err,
            },
            _ => TableError::Malformed {
                path: source.to_owned(),
                at: Position {
                    line,
                    row: None,
                    column: None,
                },
                message,
            },
        }
    })
}

/// Column names from the header record: trimmed, `column_N` for blanks, no duplicates.
fn header_names(record: &csv::ByteRecord, source: &str) -> Result<Vec<String>, TableError> {
    let mut names: Vec<String> = Vec::with_capacity(record.len());
    for (i, bytes) in record.iter().enumerate() {
        let bytes = if i == 0 {
            bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
        } else {
            bytes
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(TableError::Malformed {
                path: source.to_owned(),
                at: Position {
                    line: Some(1),
                    row: None,
                    column: None,
                },
                message: format!("header field {} is not valid UTF-8", i + 1),
            });
        };
        let name = text.trim();
        let name = if name.is_empty() {
            format!("column_{}", i + 1)
        } else {
            name.to_owned()
        };
        if let Some(first) = names.iter().position(|n| *n == name) {
            return Err(TableError::Malformed {
                path: source.to_owned(),
                at: Position {
                    line: record.position().map(csv::Position::line),
                    row: None,
                    column: None,
                },
                message: format!(
                    "the header names column `{name}` twice (fields {} and {}); column names must be unique",
                    first + 1,
                    i + 1
                ),
            });
        }
        names.push(name);
    }
    Ok(names)
}

pub(crate) fn read<R: Read>(
    input: R,
    source: &str,
    options: &CsvOptions,
    delimiter: u8,
    rule: &CategoryRule,
) -> Result<Table, TableError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quote(options.quote)
        .has_headers(false)
        .flexible(true)
        .from_reader(QuoteTracker {
            inner: input,
            quote: options.quote,
            delimiter,
            state: QuoteState::FieldStart,
        });
    let mut record = csv::ByteRecord::new();
    if !read_record(&mut rdr, &mut record, source)? {
        return Err(TableError::Empty {
            path: source.to_owned(),
        });
    }
    let mut last_line = record.position().map(csv::Position::line);
    let names = if options.has_header {
        header_names(&record, source)?
    } else {
        (1..=record.len()).map(|i| format!("column_{i}")).collect()
    };
    let mut reader = Reader {
        source,
        builders: names.iter().map(|_| StringBuilder::new()).collect(),
        names,
        chunks: Vec::new(),
        rows_in_chunk: 0,
        rows: 0,
        lines: LineMap::default(),
        nulls: options.null_values.iter().map(String::as_str).collect(),
    };
    if !options.has_header {
        if let Some(first) = record.get(0) {
            // A BOM before the first field of a header-less file.
            if first.starts_with(b"\xEF\xBB\xBF") {
                let mut fixed = csv::ByteRecord::new();
                for (i, f) in record.iter().enumerate() {
                    fixed.push_field(if i == 0 { &f[3..] } else { f });
                }
                fixed.set_position(record.position().cloned());
                record = fixed;
            }
        }
        reader.push(&record, delimiter)?;
    }
    while read_record(&mut rdr, &mut record, source)? {
        last_line = record.position().map(csv::Position::line);
        reader.push(&record, delimiter)?;
    }
    check_closed(&rdr, last_line, source)?;
    reader.flush();
    let Reader {
        names,
        chunks,
        lines,
        rows,
        ..
    } = reader;

    let sample = options
        .infer_rows
        .map_or(rows, |n| u64::try_from(n).unwrap_or(u64::MAX).min(rows));
    let types: Vec<DataType> = (0..names.len())
        .map(|i| infer(&chunks, i, sample))
        .collect();
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .zip(&types)
            .map(|(n, t)| Field::new(n, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let mut batches = Vec::with_capacity(chunks.len());
    let mut first_row = 1u64;
    for chunk in chunks {
        let mut columns = Vec::with_capacity(chunk.len());
        let len = chunk.first().map_or(0, |c| c.len());
        for (i, strings) in chunk.into_iter().enumerate() {
            let converted = convert(&strings, &types[i], first_row).map_err(|(row, value)| {
                let expected = match types[i] {
                    DataType::Int64 => "an integer",
                    DataType::Float64 => "a number",
                    DataType::Boolean => "`true` or `false`",
                    DataType::Date32 => "a date (YYYY-MM-DD)",
                    _ => "a date-time (e.g. 2024-05-01T12:30:00Z)",
                };
                TableError::Malformed {
                    path: source.to_owned(),
                    at: Position {
                        line: lines.line_of(row),
                        row: Some(row),
                        column: Some(names[i].clone()),
                    },
                    message: format!(
                        "expected {expected}, found `{}` (the column's type was inferred from \
                         the first {sample} rows; infer from more rows to read it as text)",
                        shorten(&value, 60)
                    ),
                }
            })?;
            columns.push(converted);
        }
        first_row += len as u64;
        let batch =
            RecordBatch::try_new(schema.clone(), columns).map_err(|err| TableError::Internal {
                path: source.to_owned(),
                err,
            })?;
        batches.push(batch);
    }
    Ok(Table::from_canonical(
        source.to_owned(),
        schema,
        batches,
        Vec::new(),
        rule,
    ))
}

/// Which types every non-null value seen so far still fits.
#[derive(Debug, Clone, Copy)]
struct Candidates {
    int: bool,
    float: bool,
    boolean: bool,
    date: bool,
    datetime: bool,
    seen: bool,
}

impl Candidates {
    fn any(self) -> bool {
        self.int || self.float || self.boolean || self.date || self.datetime
    }

    fn observe(&mut self, v: &str) {
        self.seen = true;
        let int = self.int && parse_int(v).is_some();
        self.float = self.float && (int || parse_float(v).is_some());
        self.int = int;
        self.boolean = self.boolean && parse_bool(v).is_some();
        let date = self.date && parse_date(v).is_some();
        self.datetime = self.datetime && (date || parse_datetime(v).is_some());
        self.date = date;
    }
}

fn infer(chunks: &[Vec<ArrayRef>], column: usize, sample: u64) -> DataType {
    let mut c = Candidates {
        int: true,
        float: true,
        boolean: true,
        date: true,
        datetime: true,
        seen: false,
    };
    let mut left = sample;
    'chunks: for chunk in chunks {
        let strings = chunk[column].as_string::<i32>();
        for v in strings {
            if left == 0 || !c.any() {
                break 'chunks;
            }
            left -= 1;
            if let Some(v) = v {
                c.observe(v);
            }
        }
    }
    if !c.seen {
        DataType::Utf8
    } else if c.int {
        DataType::Int64
    } else if c.float {
        DataType::Float64
    } else if c.boolean {
        DataType::Boolean
    } else if c.date {
        DataType::Date32
    } else if c.datetime {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else {
        DataType::Utf8
    }
}

/// Convert a chunk of strings; on failure, the 1-based row and the offending text.
fn convert(strings: &ArrayRef, to: &DataType, first_row: u64) -> Result<ArrayRef, (u64, String)> {
    fn parse_all<T>(
        strings: &StringArray,
        first_row: u64,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<Option<T>>, (u64, String)> {
        strings
            .iter()
            .zip(first_row..)
            .map(|(v, row)| match v {
                None => Ok(None),
                Some(s) => parse(s).map(Some).ok_or_else(|| (row, s.to_owned())),
            })
            .collect()
    }
    let s = strings.as_string::<i32>();
    Ok(match to {
        DataType::Int64 => Arc::new(Int64Array::from(parse_all(s, first_row, parse_int)?)),
        DataType::Float64 => Arc::new(Float64Array::from(parse_all(s, first_row, parse_float)?)),
        DataType::Boolean => Arc::new(BooleanArray::from(parse_all(s, first_row, parse_bool)?)),
        DataType::Date32 => Arc::new(Date32Array::from(parse_all(s, first_row, parse_date)?)),
        DataType::Timestamp(..) => Arc::new(TimestampMicrosecondArray::from(parse_all(
            s,
            first_row,
            parse_datetime,
        )?)),
        _ => strings.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::LineMap;

    #[test]
    fn line_map_is_sparse() {
        let mut m = LineMap::default();
        m.record(1, 2);
        m.record(2, 3);
        m.record(3, 6); // row 2 spanned three lines
        m.record(4, 7);
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.line_of(2), Some(3));
        assert_eq!(m.line_of(4), Some(7));
        assert_eq!(m.line_of(100), Some(103));
    }
}
