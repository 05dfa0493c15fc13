//! Parquet → [`Table`], through the `parquet` crate's Arrow reader.

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::read::Progress;
use crate::table::CategoryRule;
use crate::{Table, TableError};

/// Rows per record batch.
const BATCH_ROWS: usize = 65_536;

pub(crate) fn read(
    file: std::fs::File,
    source: &str,
    size: u64,
    rule: &CategoryRule,
    progress: &dyn Progress,
) -> Result<Table, TableError> {
    let parquet_err = |err| TableError::Parquet {
        path: source.to_owned(),
        err,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(parquet_err)?;
    let mut batches = Vec::new();
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|err| TableError::Decode {
            path: source.to_owned(),
            err,
        })?;
        rows += batch.num_rows() as u64;
        if total_rows > 0 {
            let done = u128::from(size) * u128::from(rows) / u128::from(total_rows);
            progress.advance(u64::try_from(done).unwrap_or(size));
        }
        batches.push(batch);
    }
    Table::from_batches(source, &schema, &batches, rule)
}
