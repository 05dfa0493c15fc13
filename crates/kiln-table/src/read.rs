//! [`read_table`]: open a CSV or Parquet file (a path or a `file://` URI) as a [`Table`].

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::table::CategoryRule;
use crate::{Table, TableError};

/// A file format kiln reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Delimited text (comma, tab, semicolon, …), RFC 4180 quoting.
    Csv,
    /// Apache Parquet (snappy, zstd, gzip or uncompressed).
    Parquet,
}

impl Format {
    /// The format for a file name: `.csv`, `.tsv`, `.txt` are CSV; `.parquet`, `.pq`, `.parq` are
    /// Parquet (case-insensitive).
    #[must_use]
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" | "txt" | "tab" => Some(Self::Csv),
            "parquet" | "pq" | "parq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "csv" | "tsv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            _ => Err(format!(
                "unknown format `{s}` (expected `csv` or `parquet`)"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        })
    }
}

/// The null tokens used when none are given: a field equal to one of these, after trimming
/// surrounding whitespace, is null.
pub const DEFAULT_NULL_VALUES: &[&str] = &[
    "", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "<NA>",
];

/// How to read delimited text.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// The field delimiter; `None` is a tab for `.tsv`/`.tab` files and a comma otherwise.
    pub delimiter: Option<u8>,
    /// Whether the first record names the columns. Without one, columns are `column_1`, ….
    pub has_header: bool,
    /// The quote character (doubled inside a quoted field to stand for itself).
    pub quote: u8,
    /// Fields that mean null, compared after trimming whitespace.
    pub null_values: Vec<String>,
    /// How many rows decide each column's type; `None` (the default) looks at every row, so a
    /// column with any non-numeric value is never numeric. With a limit, a later value that does
    /// not fit the inferred type is an error naming its row and column.
    pub infer_rows: Option<usize>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            has_header: true,
            quote: b'"',
            null_values: DEFAULT_NULL_VALUES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            infer_rows: None,
        }
    }
}

/// How to read a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadOptions {
    /// The format; `None` tells it from the file extension.
    pub format: Option<Format>,
    pub csv: CsvOptions,
    /// When a string column is categorical rather than text.
    pub categories: CategoryRule,
}

/// Progress of a long read, in bytes of the file. Libraries do not print: the caller decides
/// how to show it (a bar on a terminal, nothing in CI).
pub trait Progress {
    /// The read starts; the file has `total_bytes`.
    fn start(&self, _total_bytes: u64) {}
    /// `done_bytes` of the file have been read so far.
    fn advance(&self, _done_bytes: u64) {}
    /// The read is over (successfully or not).
    fn finish(&self) {}
}

/// [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Read a dataset: a local path or a `file://` URI, CSV or Parquet.
///
/// # Errors
/// [`TableError`]: an unreadable or malformed file (with its line, row and column), an unknown
/// format, or a location kiln cannot read yet (`s3://`, `mlflow-artifacts:`, …).
pub fn read_table(location: &str, options: &ReadOptions) -> Result<Table, TableError> {
    read_table_with_progress(location, options, &NoProgress)
}

/// [`read_table`], reporting progress.
///
/// # Errors
/// As [`read_table`].
pub fn read_table_with_progress(
    location: &str,
    options: &ReadOptions,
    progress: &dyn Progress,
) -> Result<Table, TableError> {
    let path = local_path(location)?;
    let format = match options.format {
        Some(f) => f,
        None => Format::from_path(&path).ok_or_else(|| TableError::UnknownFormat {
            path: location.to_owned(),
        })?,
    };
    let read_err = |err| TableError::Read {
        path: location.to_owned(),
        err,
    };
    let file = fs_err::File::open(&path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    progress.start(size);
    let result = match format {
        Format::Csv => {
            let tabs = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("tsv") || e.eq_ignore_ascii_case("tab"));
            let delimiter = options
                .csv
                .delimiter
                .unwrap_or(if tabs { b'\t' } else { b',' });
            let reader = Counting {
                inner: file,
                done: 0,
                reported: 0,
                progress,
            };
            crate::csv_reader::read(
                reader,
                location,
                &options.csv,
                delimiter,
                &options.categories,
            )
        }
        Format::Parquet => crate::parquet_reader::read(
            file.into_file(),
            location,
            size,
            &options.categories,
            progress,
        ),
    };
    progress.finish();
    result
}

/// Read CSV from any reader (standard input, bytes in memory). `source` names it in messages.
///
/// # Errors
/// As [`read_table`].
pub fn read_csv(
    reader: impl Read,
    source: &str,
    options: &ReadOptions,
) -> Result<Table, TableError> {
    let delimiter = options.csv.delimiter.unwrap_or(b',');
    crate::csv_reader::read(reader, source, &options.csv, delimiter, &options.categories)
}

/// The local file a location names: a plain path, or a `file:` URI (`file:///abs/path`,
/// `file://localhost/abs/path`, `file:/abs/path`, `file:rel/path`; percent-decoded).
///
/// # Errors
/// [`TableError::Location`] for other schemes (`s3://`, `mlflow-artifacts:`, `http://`, …),
/// which kiln does not read data from yet, and for malformed `file:` URIs.
pub fn local_path(location: &str) -> Result<PathBuf, TableError> {
    let fail = |reason: String| TableError::Location {
        location: location.to_owned(),
        reason,
    };
    if location.is_empty() {
        return Err(fail("the location is empty".into()));
    }
    let Some((scheme, rest)) = location.split_once(':') else {
        return Ok(PathBuf::from(location));
    };
    let is_scheme = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        // `C:\data\x.csv`, or a name with a colon in it.
        return Ok(PathBuf::from(location));
    }
    if !scheme.eq_ignore_ascii_case("file") {
        return Err(fail(format!(
            "kiln reads data from local files and `file://` URIs only for now (`{scheme}:` is \
             not supported yet); download the file first and pass its local path"
        )));
    }
    let path = match rest.strip_prefix("//") {
        Some(after) if after.starts_with('/') => after,
        Some(after) => match after.split_once('/') {
            Some((host, tail)) if host.eq_ignore_ascii_case("localhost") => {
                if tail.is_empty() {
                    return Err(fail("the file URI has no path".into()));
                }
                after.get(host.len()..).unwrap_or_default()
            }
            _ => {
                return Err(fail(
                    "file URIs must name a local path, e.g. `file:///data/train.csv`".into(),
                ))
            }
        },
        None => rest,
    };
    if path.is_empty() {
        return Err(fail("the file URI has no path".into()));
    }
    if path.contains(['?', '#']) {
        return Err(fail("file URIs must not have a query or fragment".into()));
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| fail("the path is not valid UTF-8 once percent-decoded".into()))?;
    Ok(PathBuf::from(decoded.into_owned()))
}

/// Counts bytes read and reports every MiB.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    reported: u64,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= 1 << 20 {
            self.reported = self.done;
            self.progress.advance(self.done);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(local_path("data.csv").unwrap(), PathBuf::from("data.csv"));
        assert_eq!(
            local_path("file:///tmp/a%20b.csv").unwrap(),
            PathBuf::from("/tmp/a b.csv")
        );
        assert_eq!(
            local_path("file://localhost/tmp/x.csv").unwrap(),
            PathBuf::from("/tmp/x.csv")
        );
        assert_eq!(
            local_path("file:rel/x.csv").unwrap(),
            PathBuf::from("rel/x.csv")
        );
        assert_eq!(local_path(r"C:\x.csv").unwrap(), PathBuf::from(r"C:\x.csv"));
        let err = local_path("s3://bucket/x.csv").unwrap_err().to_string();
        assert!(err.contains("`s3:` is not supported yet"), "{err}");
        let err = local_path("mlflow-artifacts:/1/abc/artifacts/x.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`mlflow-artifacts:`"), "{err}");
        assert!(local_path("file://otherhost/x.csv").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(Format::from_path(Path::new("a.CSV")), Some(Format::Csv));
        assert_eq!(Format::from_path(Path::new("a.tsv")), Some(Format::Csv));
        assert_eq!(Format::from_path(Path::new("a.pq")), Some(Format::Parquet));
        assert_eq!(Format::from_path(Path::new("a.json")), None);
        assert_eq!("Parquet".parse::<Format>(), Ok(Format::Parquet));
    }
}
