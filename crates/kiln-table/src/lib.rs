//! Tabular data for kiln: read CSV and Parquet into Arrow, type the columns, profile a dataset
//! into a schema of expectations, and validate new data against it.
//!
//! - [`read_table`] opens a file (a path or `file://` URI) as a [`Table`]: Arrow record batches
//!   in canonical types plus a [`ColumnKind`] per column (numeric, categorical, boolean,
//!   datetime, text). Malformed CSV fails with a [`TableError::Malformed`] naming the line, row
//!   and column.
//! - [`profile`] turns a table into a [`Schema`] (YAML via [`Schema::to_yaml`]): kinds,
//!   nullability, ranges, categories, uniqueness, row-count range.
//! - [`validate`] checks a table against a schema and returns a [`Report`] of every
//!   [`Violation`]; [`render_text`], [`render_json`] and [`render_junit`] present it.
//!
//! ```
//! use kiln_table::{profile, read_csv, validate, ColumnKind, ProfileOptions, ReadOptions};
//!
//! let train = "id,age,plan\n1,34,pro\n2,51,basic\n3,29,pro\n4,42,basic\n";
//! let table = read_csv(train.as_bytes(), "train.csv", &ReadOptions::default())?;
//! assert_eq!(table.column("plan").unwrap().kind, ColumnKind::Categorical);
//! let schema = profile(&table, &ProfileOptions::default());
//!
//! let new = "id,age,plan\n5,38,pro\n6,17,team\n";
//! let report = validate(&read_csv(new.as_bytes(), "new.csv", &ReadOptions::default())?, &schema);
//! assert!(!report.passed);
//! let failed: Vec<_> = report.violations.iter().map(|v| v.check.as_str()).collect();
//! assert_eq!(failed, ["range", "categories"]);
//! # Ok::<(), kiln_table::TableError>(())
//! ```

mod csv_reader;
mod error;
mod parquet_reader;
mod profile;
mod read;
mod render;
mod schema;
mod table;
mod validate;
mod values;

pub use error::{Position, TableError};
pub use profile::{profile, profile_warnings, ProfileOptions};
pub use read::{
    local_path, read_csv, read_table, read_table_with_progress, CsvOptions, Format, NoProgress,
    Progress, ReadOptions, DEFAULT_NULL_VALUES,
};
pub use render::{render_json, render_junit, render_text, xml_escape};
pub use schema::{Bound, ColumnSchema, RowRange, Schema, SCHEMA_VERSION};
pub use table::{CategoryRule, Column, ColumnKind, SkippedColumn, Table};
pub use validate::{
    validate, CheckKind, CheckOutcome, Example, Report, Violation, Warning, MAX_EXAMPLES,
};
pub use values::parse_datetime;
