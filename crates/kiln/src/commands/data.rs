//! `kiln data profile|validate`.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use kiln_table::{
    CategoryRule, ColumnKind, CsvOptions, Format, ProfileOptions, ReadOptions, Schema, Table,
};

use super::InputError;
use crate::cli::{DataCommand, DataProfileArgs, DataReadArgs, DataValidateArgs};
use crate::printer::Printer;

/// Files at least this big get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 50 * 1024 * 1024;

pub(super) fn run(cmd: DataCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Profile(args) => profile(args, printer),
        DataCommand::Validate(args) => validate(args, printer),
    }
}

/// One byte from a `--delimiter`/`--quote` value: a single ASCII character, or `\t`.
fn one_byte(flag: &str, value: &str) -> Result<u8, InputError> {
    match value {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        v if v.len() == 1 && v.is_ascii() => Ok(v.as_bytes()[0]),
        v => Err(InputError(format!(
            "Invalid --{flag} `{v}`: expected one ASCII character (or `\\t` for tab)"
        ))),
    }
}

pub(crate) fn read_options(args: DataReadArgs) -> Result<ReadOptions, InputError> {
    let DataReadArgs {
        format,
        delimiter,
        quote,
        no_header,
        null_values,
        infer_rows,
        max_categories,
    } = args;
    let format = format
        .map(|f| f.parse::<Format>().map_err(InputError))
        .transpose()?;
    let delimiter = delimiter.map(|d| one_byte("delimiter", &d)).transpose()?;
    let mut csv = CsvOptions {
        delimiter,
        quote: one_byte("quote", &quote)?,
        has_header: !no_header,
        infer_rows: infer_rows.filter(|n| *n > 0),
        ..CsvOptions::default()
    };
    if !null_values.is_empty() {
        csv.null_values = null_values;
    }
    Ok(ReadOptions {
        format,
        csv,
        categories: CategoryRule {
            max_distinct: max_categories,
            ..CategoryRule::default()
        },
    })
}

/// Read the data, with a progress bar on a terminal for big files; the bar stays for a status
/// line while the caller works on the table (`what`, e.g. "Profiling").
fn read(
    file: &str,
    options: &ReadOptions,
    what: &str,
) -> anyhow::Result<(Table, TerminalProgress)> {
    let progress = TerminalProgress::new(file);
    let table = kiln_table::read_table_with_progress(file, options, &progress)?;
    progress.status(&format!("{what} {}…", progress.label));
    Ok((table, progress))
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    fs_err::write(path, text).map_err(|err| {
        anyhow::Error::new(err).context(InputError(format!("Failed to write `{}`", path.display())))
    })
}

fn parse_row_range(text: &str) -> Result<(f64, f64), InputError> {
    let invalid = || {
        InputError(format!(
            "Invalid --row-range `{text}`: expected LOW:HIGH factors such as 0.5:2"
        ))
    };
    let (lo, hi) = text.split_once(':').ok_or_else(invalid)?;
    let lo: f64 = lo.trim().parse().map_err(|_| invalid())?;
    let hi: f64 = hi.trim().parse().map_err(|_| invalid())?;
    if !(lo >= 0.0 && hi >= lo && hi.is_finite()) {
        return Err(invalid());
    }
    Ok((lo, hi))
}

fn profile(args: DataProfileArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let DataProfileArgs {
        file,
        output,
        json,
        keys,
        row_range,
        null_margin,
        read: read_args,
    } = args;
    let row_range = parse_row_range(&row_range)?;
    if !(0.0..=1.0).contains(&null_margin) {
        return Err(InputError(format!(
            "Invalid --null-margin {null_margin}: expected a fraction between 0 and 1"
        ))
        .into());
    }
    let options = read_options(read_args)?;
    let (table, progress) = read(&file, &options, "Profiling")?;
    if let Some(missing) = keys.iter().find(|k| table.column(k).is_none()) {
        return Err(InputError(format!("--key `{missing}` is not a column of `{file}`")).into());
    }
    let schema = kiln_table::profile(
        &table,
        &ProfileOptions {
            row_range,
            null_margin,
            keys: (!keys.is_empty()).then_some(keys),
        },
    );
    progress.clear();
    for warning in kiln_table::profile_warnings(&table, &schema) {
        printer.status(&format!("warning: {}", warning.message));
    }
    let Some(output) = output else {
        if json {
            printer.json(&schema)?;
        } else {
            // The YAML ends with a newline already.
            printer.line(schema.to_yaml().trim_end());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let is_json = output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let text = if is_json {
        serde_json::to_string_pretty(&schema).context("Failed to serialize the schema")? + "\n"
    } else {
        schema.to_yaml()
    };
    write_file(&output, &text)?;
    if json {
        printer.json(&schema)?;
        return Ok(ExitCode::SUCCESS);
    }
    printer.status(&format!(
        "Profiled `{file}`: {} rows, {} columns → {}",
        table.num_rows(),
        table.num_columns(),
        output.display()
    ));
    let rows: Vec<Vec<String>> = schema.columns.iter().map(summary_row).collect();
    printer.table(&["COLUMN", "KIND", "NULLS", "VALUES", "NOTES"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn summary_row(c: &kiln_table::ColumnSchema) -> Vec<String> {
    let nulls = match (c.nullable, c.max_null_fraction) {
        (false, _) => "none".to_owned(),
        (true, Some(f)) => format!("≤ {:.1}%", f * 100.0),
        (true, None) => "any".to_owned(),
    };
    let values = match (&c.min, &c.max, &c.categories) {
        (_, _, Some(cats)) => {
            let mut s = cats.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
            if cats.len() > 6 {
                s.push_str(&format!(", … ({} in all)", cats.len()));
            }
            s
        }
        (Some(lo), Some(hi), None) => format!("{lo} … {hi}"),
        _ => "-".to_owned(),
    };
    let mut notes = Vec::new();
    if c.unique {
        notes.push("unique");
    }
    if c.constant {
        notes.push("constant");
    }
    if c.all_null {
        notes.push("all null");
    }
    if c.kind == ColumnKind::Text && !c.unique && !c.all_null {
        notes.push("free text");
    }
    vec![
        c.name.clone(),
        c.kind.to_string(),
        nulls,
        values,
        notes.join(", "),
    ]
}

fn validate(args: DataValidateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let DataValidateArgs {
        file,
        schema,
        json,
        junit,
        read: read_args,
    } = args;
    let options = read_options(read_args)?;
    // The schema first: a typo there should not cost a read of a big file.
    let schema = Schema::load(&schema)?;
    // And the report file: an unwritable --junit must not hide the outcome after the read.
    let junit = super::ReportFile::check("--junit", junit.as_deref())?;
    let (table, progress) = read(&file, &options, "Validating")?;
    let report = kiln_table::validate(&table, &schema);
    progress.clear();
    if let Some(f) = junit {
        f.write(&kiln_table::render_junit(&report))?;
    }
    if json {
        printer.line(&kiln_table::render_json(&report));
    } else {
        printer.line(kiln_table::render_text(&report).trim_end());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A one-line progress bar on stderr while a big file is read; nothing when stderr is not a
/// terminal (CI logs) or the file is small.
struct TerminalProgress {
    label: String,
    total: Cell<u64>,
    shown: Cell<Option<u64>>,
    active: Cell<bool>,
    /// Something is on the terminal line.
    dirty: Cell<bool>,
}

impl TerminalProgress {
    fn new(file: &str) -> Self {
        let name = Path::new(file)
            .file_name()
            .map_or_else(|| file.to_owned(), |n| n.to_string_lossy().into_owned());
        Self {
            label: name,
            total: Cell::new(0),
            shown: Cell::new(None),
            active: Cell::new(false),
            dirty: Cell::new(false),
        }
    }

    /// Replace the bar with a status line, if a bar was shown.
    fn status(&self, text: &str) {
        if self.dirty.get() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
        }
    }

    /// Clear the line, if anything was shown.
    fn clear(&self) {
        if self.dirty.replace(false) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }

    fn draw(&self, done: u64) {
        const WIDTH: u64 = 30;
        let total = self.total.get().max(1);
        let done = done.min(total);
        let percent = done * 100 / total;
        if self.shown.get() == Some(percent) {
            return;
        }
        self.shown.set(Some(percent));
        self.dirty.set(true);
        let filled = usize::try_from(done * WIDTH / total).unwrap_or(0);
        let empty = usize::try_from(WIDTH).unwrap_or(0).saturating_sub(filled);
        let mib = |b: u64| b / (1024 * 1024);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2KReading {} [{}{}] {percent:>3}%  {}/{} MiB",
            self.label,
            "=".repeat(filled),
            " ".repeat(empty),
            mib(done),
            mib(total)
        );
        let _ = err.flush();
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.clear();
    }
}

impl kiln_table::Progress for TerminalProgress {
    fn start(&self, total_bytes: u64) {
        if total_bytes >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal() {
            self.total.set(total_bytes);
            self.active.set(true);
            self.draw(0);
        }
    }

    fn advance(&self, done_bytes: u64) {
        if self.active.get() {
            self.draw(done_bytes);
        }
    }

    fn finish(&self) {
        self.active.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!(one_byte("delimiter", "\\t").unwrap(), b'\t');
        assert_eq!(one_byte("delimiter", ";").unwrap(), b';');
        assert!(one_byte("delimiter", ";;").is_err());
        assert_eq!(parse_row_range("0.5:2").unwrap(), (0.5, 2.0));
        assert!(parse_row_range("2:1").is_err());
        assert!(parse_row_range("x").is_err());
    }
}
