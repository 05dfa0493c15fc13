//! [`TableError`]: everything that can go wrong reading data or a schema file.

use std::fmt;

/// Where in a delimited text file a problem is: the physical line (1-based, counting the header
/// and embedded newlines), the data row (1-based, the first row after the header is row 1) and
/// the column, as far as they are known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub line: Option<u64>,
    pub row: Option<u64>,
    pub column: Option<String>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match (self.row, self.line) {
            (Some(row), Some(line)) => parts.push(format!("row {row} (line {line})")),
            (Some(row), None) => parts.push(format!("row {row}")),
            (None, Some(line)) => parts.push(format!("line {line}")),
            (None, None) => {}
        }
        if let Some(column) = &self.column {
            parts.push(format!("column `{column}`"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Errors of this crate. All but [`TableError::Internal`] are problems with the input (a missing
/// or malformed file, an unsupported location, an invalid schema file): see [`TableError::is_input`].
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened or read.
    #[error("Failed to read `{path}`")]
    Read {
        path: String,
        #[source]
        err: std::io::Error,
    },
    /// A location kiln cannot read from (yet), or a malformed `file:` URI.
    #[error("Cannot read `{location}`: {reason}")]
    Location { location: String, reason: String },
    /// The format could not be told from the file name.
    #[error("Cannot tell the format of `{path}` from its extension (expected .csv, .tsv, .parquet or .pq); name the format explicitly")]
    UnknownFormat { path: String },
    /// A delimited text file is malformed at a known position.
    #[error("`{path}` {at}: {message}")]
    Malformed {
        path: String,
        at: Position,
        message: String,
    },
    /// The file has no header and no rows.
    #[error("`{path}` is empty: expected a header line")]
    Empty { path: String },
    /// The Parquet reader failed (a corrupt or unsupported file).
    #[error("Failed to read the Parquet file `{path}`")]
    Parquet {
        path: String,
        #[source]
        err: parquet::errors::ParquetError,
    },
    /// The Parquet file's data could not be decoded.
    #[error("Failed to decode the Parquet file `{path}`")]
    Decode {
        path: String,
        #[source]
        err: arrow_schema::ArrowError,
    },
    /// The schema file is not valid YAML for a kiln schema.
    #[error("Invalid schema file `{path}`")]
    SchemaSyntax {
        path: String,
        #[source]
        err: serde_yaml_ng::Error,
    },
    /// The schema file parses but says something impossible.
    #[error("Invalid schema file `{path}`: {message}")]
    SchemaInvalid { path: String, message: String },
    /// A bug or an Arrow failure that the input did not cause.
    #[error("Internal error while building `{path}`")]
    Internal {
        path: String,
        #[source]
        err: arrow_schema::ArrowError,
    },
}

impl TableError {
    /// Whether the input (file, location, options, schema) is at fault rather than kiln.
    #[must_use]
    pub fn is_input(&self) -> bool {
        !matches!(self, Self::Internal { .. })
    }
}
