//! Reading, typing, profiling and validating through the public API.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float32Array,
    Int32Array, LargeStringArray, ListArray, RecordBatch, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use kiln_table::{
    local_path, profile, profile_warnings, read_csv, read_table, render_junit, render_text,
    validate, CheckKind, ColumnKind, CsvOptions, ProfileOptions, ReadOptions, Report, Schema,
    TableError,
};

fn csv(text: &str) -> Result<kiln_table::Table, TableError> {
    read_csv(text.as_bytes(), "data.csv", &ReadOptions::default())
}

fn kinds(table: &kiln_table::Table) -> Vec<(String, ColumnKind)> {
    table
        .columns()
        .map(|c| (c.name.to_owned(), c.kind))
        .collect()
}

fn checks(report: &Report) -> Vec<(String, CheckKind)> {
    report
        .violations
        .iter()
        .map(|v| (v.column.clone().unwrap_or_default(), v.check))
        .collect()
}

#[test]
fn infers_column_kinds() {
    let mut text = String::from("n,x,flag,day,at,plan,name,mixed\n");
    for i in 0..40 {
        let plan = ["basic", "pro"][i % 2];
        let mixed = if i == 17 {
            "n/a?".to_owned()
        } else {
            i.to_string()
        };
        text.push_str(&format!(
            "{i},{}.5,{},2024-01-{:02},2024-01-01T00:00:{:02}Z,{plan},user{i},{mixed}\n",
            i,
            i % 3 == 0,
            i % 28 + 1,
            i % 60
        ));
    }
    let t = csv(&text).unwrap();
    assert_eq!(t.num_rows(), 40);
    assert_eq!(
        kinds(&t),
        [
            ("n".into(), ColumnKind::Numeric),
            ("x".into(), ColumnKind::Numeric),
            ("flag".into(), ColumnKind::Boolean),
            ("day".into(), ColumnKind::Datetime),
            ("at".into(), ColumnKind::Datetime),
            ("plan".into(), ColumnKind::Categorical),
            ("name".into(), ColumnKind::Text),
            // One non-numeric value makes a string column, not an error.
            ("mixed".into(), ColumnKind::Text),
        ]
    );
    let types: Vec<DataType> = t.columns().map(|c| c.data_type.clone()).collect();
    assert_eq!(types[0], DataType::Int64);
    assert_eq!(types[1], DataType::Float64);
    assert_eq!(types[3], DataType::Date32);
    assert_eq!(types[4], DataType::Timestamp(TimeUnit::Microsecond, None));
}

#[test]
fn quoted_fields_keep_delimiters_quotes_and_newlines() {
    let text =
        "id,comment,score\n1,\"a, b\",3\n2,\"line one\nline two\",4\n3,\"say \"\"hi\"\"\",5\n";
    let t = csv(text).unwrap();
    assert_eq!(t.num_rows(), 3);
    let comments = t.batches()[0].column(1).as_string::<i32>();
    assert_eq!(comments.value(0), "a, b");
    assert_eq!(comments.value(1), "line one\nline two");
    assert_eq!(comments.value(2), "say \"hi\"");
    // After a field with a newline, errors still name the physical line.
    let bad = "id,comment,score\n1,\"two\nlines\",3\n2,x\n";
    let err = csv(bad).unwrap_err().to_string();
    assert!(err.contains("row 2 (line 4)"), "{err}");
}

#[test]
fn an_unclosed_quote_in_the_last_column_is_an_error_not_lost_rows() {
    // `"0` opens a quoted field that the csv crate would close at end of file, taking every
    // later line into it: 2 rows read out of 5, and no error.
    let text = "id,churned\n1,0\n2,\"0\n3,1\n4,0\n5,1\n";
    let err = csv(text).unwrap_err();
    let TableError::Malformed { at, message, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(at.line, Some(3), "{err}");
    assert!(message.contains("never closed"), "{message}");
    // Closed multi-line fields at the end of the file, quotes doubled inside them, and a bare
    // quote in an unquoted field are all fine.
    for ok in [
        "id,note\n1,\"a\nb\"\n",
        "id,note\n1,\"a\nb\"",
        "id,note\n1,\"say \"\"hi\"\"\nbye\"\n",
        "id,size\n1,5\" screen\n2,7\"\n",
        // A literal quote in an unquoted field of a last record that also has a closed
        // multi-line field (a count of quote characters would call this unclosed).
        "id,size,note\n1,5\" screen,\"a\nb\"\n",
        "id,note\r\n1,\"a\r\nb\"\r\n",
        "\u{feff}id,note\n1,\"a\nb\"\n\n\n",
    ] {
        let t = csv(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        assert!(t.num_rows() >= 1, "{ok:?}");
    }
    // The header itself.
    assert!(csv("id,\"note\n1,2\n").is_err());
    // Another quote character: an apostrophe in a name is ordinary text.
    let options = ReadOptions {
        csv: CsvOptions {
            quote: b'\'',
            ..CsvOptions::default()
        },
        ..ReadOptions::default()
    };
    let t = read_csv(
        "id,name,note\n1,O'Brien,'line1\nline2'\n".as_bytes(),
        "d.csv",
        &options,
    )
    .unwrap();
    assert_eq!(t.num_rows(), 1);
    assert!(read_csv("id,note\n1,'open\n2,x\n".as_bytes(), "d.csv", &options).is_err());
}

#[test]
fn a_number_too_large_for_a_double_is_not_read_as_infinity() {
    let t = csv("a,b\n1,2\n1e400,3\n").unwrap();
    assert_ne!(t.column("a").unwrap().kind, ColumnKind::Numeric);
    assert_eq!(t.column("b").unwrap().kind, ColumnKind::Numeric);
}

#[test]
fn null_tokens_and_custom_nulls() {
    let t = csv("a,b\n1,x\nNA,\n3,null\n,N/A\n").unwrap();
    assert_eq!(t.null_count(0), 2);
    assert_eq!(t.null_count(1), 3);
    assert_eq!(t.column("a").unwrap().kind, ColumnKind::Numeric);

    let options = ReadOptions {
        csv: CsvOptions {
            null_values: vec!["-".into()],
            ..CsvOptions::default()
        },
        ..ReadOptions::default()
    };
    let t = read_csv("a,b\n-,NA\n2,NA\n".as_bytes(), "d.csv", &options).unwrap();
    assert_eq!(t.null_count(0), 1);
    assert_eq!(t.null_count(1), 0);
}

#[test]
fn wrong_field_count_names_the_line() {
    let err = csv("a,b,c\n1,2,3\n4,5\n").unwrap_err();
    let TableError::Malformed { at, message, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((at.line, at.row), (Some(3), Some(2)));
    assert!(message.contains("expected 3 fields"), "{message}");
    assert_eq!(
        err.to_string(),
        "`data.csv` row 2 (line 3): expected 3 fields (as in the header), found 2; check for an unquoted delimiter or an unclosed quote"
    );
    // Semicolons where commas were expected: one field per row.
    let err = csv("a,b\n1;2\n").unwrap_err().to_string();
    assert!(
        err.contains("found 1; is `,` the right delimiter?"),
        "{err}"
    );
}

#[test]
fn malformed_input_errors() {
    let err = read_csv(
        &b"a,b\n1,\xff\xfe\n"[..],
        "data.csv",
        &ReadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("row 1 (line 2), column `b`: invalid UTF-8"),
        "{err}"
    );
    let err = csv("a,b,a\n1,2,3\n").unwrap_err().to_string();
    assert!(err.contains("column `a` twice"), "{err}");
    assert!(matches!(csv(""), Err(TableError::Empty { .. })));
    // A header alone is an empty table.
    let t = csv("a,b\n").unwrap();
    assert_eq!((t.num_rows(), t.num_columns()), (0, 2));
}

#[test]
fn limited_inference_reports_the_bad_value() {
    let mut text = String::from("id,age\n");
    for i in 1..=1300 {
        let age = if i == 1234 {
            "abc".to_owned()
        } else {
            (20 + i % 50).to_string()
        };
        text.push_str(&format!("{i},{age}\n"));
    }
    let options = ReadOptions {
        csv: CsvOptions {
            infer_rows: Some(1000),
            ..CsvOptions::default()
        },
        ..ReadOptions::default()
    };
    let err = read_csv(text.as_bytes(), "data.csv", &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "`data.csv` row 1234 (line 1235), column `age`: expected an integer, found `abc`"
        ),
        "{err}"
    );
    // Inferring from every row (the default) reads the column as strings instead.
    let t = csv(&text).unwrap();
    assert!(t.column("age").unwrap().kind.is_string());
}

#[test]
fn header_variants() {
    // A byte-order mark, CRLF line ends and padded names.
    let t = read_csv(
        &b"\xEF\xBB\xBFid , name\r\n1,a\r\n2,b\r\n"[..],
        "d.csv",
        &ReadOptions::default(),
    )
    .unwrap();
    let names: Vec<&str> = t.columns().map(|c| c.name).collect();
    assert_eq!(names, ["id", "name"]);
    assert_eq!(t.batches()[0].column(1).as_string::<i32>().value(1), "b");

    let options = ReadOptions {
        csv: CsvOptions {
            has_header: false,
            delimiter: Some(b';'),
            ..CsvOptions::default()
        },
        ..ReadOptions::default()
    };
    let t = read_csv("1;x\n2;y\n".as_bytes(), "d.csv", &options).unwrap();
    let names: Vec<&str> = t.columns().map(|c| c.name).collect();
    assert_eq!(names, ["column_1", "column_2"]);
    assert_eq!(t.num_rows(), 2);
}

#[test]
fn reads_files_by_extension_and_file_uri() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("data.tsv");
    fs_err::write(&tsv, "a\tb\n1\tx,y\n").unwrap();
    let uri = format!("file://{}", tsv.display());
    let t = read_table(&uri, &ReadOptions::default()).unwrap();
    assert_eq!(t.num_columns(), 2);
    assert_eq!(t.batches()[0].column(1).as_string::<i32>().value(0), "x,y");

    let err = read_table(
        &dir.path().join("missing.csv").display().to_string(),
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, TableError::Read { .. }), "{err:?}");
    assert!(err.is_input());
    let err = read_table("data.json", &ReadOptions::default()).unwrap_err();
    assert!(matches!(err, TableError::UnknownFormat { .. }), "{err:?}");
    let err = read_table("s3://bucket/data.csv", &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not supported yet"), "{err}");
    assert!(local_path("file://").is_err());
}

fn write_parquet(path: &std::path::Path, batch: &RecordBatch) {
    let file = fs_err::File::create(path).unwrap().into_file();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_round_trip() {
    let n = 60;
    let plan: DictionaryArray<arrow_array::types::Int32Type> =
        (0..n).map(|i| ["basic", "pro", "team"][i % 3]).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int32Array::from_iter_values(0..60))),
        (
            "score",
            Arc::new(Float32Array::from_iter(
                (0..n).map(|i| (i != 7).then_some(i as f32 * 0.5)),
            )),
        ),
        ("plan", Arc::new(plan)),
        (
            "active",
            Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 2 == 0)))),
        ),
        (
            "day",
            Arc::new(Date32Array::from_iter_values((0..60).map(|i| 19_000 + i))),
        ),
        (
            "at",
            Arc::new(
                TimestampMillisecondArray::from_iter_values((0..60).map(|i| i64::from(i) * 1000))
                    .with_timezone("UTC"),
            ),
        ),
        (
            "price",
            Arc::new(
                Decimal128Array::from_iter_values((0..60).map(|i| i128::from(i) * 125))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
        (
            "note",
            Arc::new(LargeStringArray::from_iter_values(
                (0..n).map(|i| format!("note {i}")),
            )),
        ),
        (
            "tags",
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                (0..n).map(|i| Some(vec![Some(i as i64)])),
            )),
        ),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.parquet");
    write_parquet(&path, &batch);

    let t = read_table(path.to_str().unwrap(), &ReadOptions::default()).unwrap();
    assert_eq!(t.num_rows(), 60);
    assert_eq!(
        kinds(&t),
        [
            ("id".into(), ColumnKind::Numeric),
            ("score".into(), ColumnKind::Numeric),
            ("plan".into(), ColumnKind::Categorical),
            ("active".into(), ColumnKind::Boolean),
            ("day".into(), ColumnKind::Datetime),
            ("at".into(), ColumnKind::Datetime),
            ("price".into(), ColumnKind::Numeric),
            ("note".into(), ColumnKind::Text),
        ]
    );
    assert_eq!(t.skipped_columns().len(), 1);
    assert_eq!(t.skipped_columns()[0].name, "tags");
    let batch = &t.batches()[0];
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(59), 59);
    assert!(batch.column(1).is_null(7));
    assert!((batch.column(6).as_primitive::<Float64Type>().value(2) - 2.5).abs() < 1e-9);
    assert_eq!(batch.column(2).as_string::<i32>().value(4), "pro");

    let schema = profile(&t, &ProfileOptions::default());
    let yaml = schema.to_yaml();
    let plan = schema.column("plan").unwrap();
    assert_eq!(
        plan.categories.as_deref(),
        Some(&["basic".to_owned(), "pro".into(), "team".into()][..])
    );
    assert!(schema.column("id").unwrap().unique, "{yaml}");
    let day = schema.column("day").unwrap();
    assert_eq!(day.min.as_ref().unwrap().to_string(), "2022-01-08");
    let at = schema.column("at").unwrap();
    assert_eq!(at.max.as_ref().unwrap().to_string(), "1970-01-01T00:00:59");
    let report = validate(&t, &Schema::from_yaml(&yaml, "schema.yaml").unwrap());
    assert!(report.passed, "{}", render_text(&report));
    let warnings = profile_warnings(&t, &schema);
    assert!(
        warnings.iter().any(|w| w.message.contains("`tags`")),
        "{warnings:?}"
    );

    // A truncated file is a clean error.
    let bytes = fs_err::read(&path).unwrap();
    let cut = dir.path().join("cut.parquet");
    fs_err::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_table(cut.to_str().unwrap(), &ReadOptions::default()).unwrap_err();
    assert!(err.is_input(), "{err:?}");
}

fn train_csv() -> String {
    let mut text = String::from("id,age,plan,income,signup\n");
    for i in 1..=100 {
        let income = if i % 10 == 0 {
            String::new()
        } else {
            (30_000 + i * 97).to_string()
        };
        text.push_str(&format!(
            "{i},{},{},{income},2023-{:02}-15\n",
            18 + i % 60,
            ["basic", "pro", "team"][i % 3],
            i % 12 + 1
        ));
    }
    text
}

#[test]
fn profile_then_validate_passes_on_the_same_data() {
    let t = csv(&train_csv()).unwrap();
    let schema = profile(&t, &ProfileOptions::default());
    assert_eq!((schema.rows.min, schema.rows.max), (Some(50), Some(200)));
    let id = schema.column("id").unwrap();
    assert!(id.unique && !id.nullable && id.min.is_none());
    let age = schema.column("age").unwrap();
    assert!(!age.unique, "ages are not keys");
    assert_eq!(age.min.as_ref().unwrap().to_string(), "18");
    assert_eq!(age.max.as_ref().unwrap().to_string(), "77");
    let income = schema.column("income").unwrap();
    assert!(income.nullable);
    assert_eq!(income.max_null_fraction, Some(0.15));
    assert!(!income.unique, "a distinct measurement is not a key");
    assert_eq!(
        schema
            .column("signup")
            .unwrap()
            .min
            .as_ref()
            .unwrap()
            .to_string(),
        "2023-01-15"
    );
    let yaml = schema.to_yaml();
    let back = Schema::from_yaml(&yaml, "schema.yaml").unwrap();
    assert_eq!(back, schema, "{yaml}");
    let report = validate(&t, &back);
    assert!(report.passed, "{}", render_text(&report));
    assert_eq!(report.failed(), 0);
    assert!(report.checks.len() > 15);
}

#[test]
fn every_kind_of_drift_is_reported() {
    let schema = profile(&csv(&train_csv()).unwrap(), &ProfileOptions::default());
    // Row 1: an unseen plan; row 2: age out of range; `signup` missing; `extra` added;
    // income mostly null; id 1 duplicated.
    let mut text = String::from("id,age,plan,income,extra\n");
    text.push_str("1,30,platinum,,x\n");
    text.push_str("1,140,pro,,y\n");
    for i in 3..=60 {
        let income = if i % 2 == 0 {
            String::new()
        } else {
            "35000".into()
        };
        text.push_str(&format!("{i},40,basic,{income},z\n"));
    }
    let t = csv(&text).unwrap();
    let report = validate(&t, &schema);
    assert!(!report.passed);
    let found = checks(&report);
    for expected in [
        ("signup", CheckKind::MissingColumn),
        ("extra", CheckKind::ExtraColumn),
        ("plan", CheckKind::Categories),
        ("age", CheckKind::Range),
        ("income", CheckKind::Nulls),
        ("id", CheckKind::Unique),
    ] {
        assert!(
            found.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} not in {found:?}\n{}",
            render_text(&report)
        );
    }
    let range = report
        .violations
        .iter()
        .find(|v| v.check == CheckKind::Range)
        .unwrap();
    assert_eq!(range.count, 1);
    assert_eq!(range.examples[0].row, Some(2));
    assert_eq!(range.examples[0].value.as_deref(), Some("140"));
    let cats = report
        .violations
        .iter()
        .find(|v| v.check == CheckKind::Categories)
        .unwrap();
    assert!(cats.message.contains("`platinum`"), "{}", cats.message);
    let dup = report
        .violations
        .iter()
        .find(|v| v.check == CheckKind::Unique)
        .unwrap();
    assert!(
        dup.message.contains("`1` at rows 1 and 2"),
        "{}",
        dup.message
    );

    // Fewer rows than allowed.
    let tiny = csv("id,age,plan,income,signup\n1,30,pro,35000,2023-05-15\n").unwrap();
    let report = validate(&tiny, &schema);
    assert_eq!(checks(&report), [(String::new(), CheckKind::RowCount)]);
}

#[test]
fn non_numeric_values_in_a_numeric_column_are_a_type_violation() {
    let schema = profile(&csv(&train_csv()).unwrap(), &ProfileOptions::default());
    let mut text = String::from("id,age,plan,income,signup\n");
    for i in 1..=60 {
        let age = match i {
            5 => "abc".to_owned(),
            9 => "forty".to_owned(),
            _ => "30".to_owned(),
        };
        text.push_str(&format!("{i},{age},pro,35000,2023-05-15\n"));
    }
    let report = validate(&csv(&text).unwrap(), &schema);
    assert_eq!(checks(&report), [("age".to_owned(), CheckKind::Type)]);
    let v = &report.violations[0];
    assert_eq!(v.count, 2);
    assert_eq!(
        v.message,
        "expected numeric, found categorical: 2 values are not numbers"
    );
    let rendered: Vec<String> = v.examples.iter().map(ToString::to_string).collect();
    assert_eq!(rendered, ["row 5: `abc`", "row 9: `forty`"]);
}

#[test]
fn all_null_and_constant_columns() {
    let mut text = String::from("id,empty,same,v\n");
    for i in 1..=20 {
        text.push_str(&format!("{i},,7,{}\n", i % 4));
    }
    let t = csv(&text).unwrap();
    let schema = profile(&t, &ProfileOptions::default());
    let empty = schema.column("empty").unwrap();
    assert!(empty.all_null && empty.nullable);
    assert_eq!(empty.max_null_fraction, Some(1.0));
    let same = schema.column("same").unwrap();
    assert!(same.constant);
    let warnings: Vec<String> = profile_warnings(&t, &schema)
        .into_iter()
        .map(|w| w.message)
        .collect();
    assert_eq!(
        warnings,
        [
            "column `empty` is entirely null; its kind (text) is a guess and is not checked",
            "column `same` is constant (every value is `7`)",
        ]
    );
    // The same data validates; now `v` goes constant and `empty` gets numbers.
    assert!(validate(&t, &schema).passed);
    let mut text = String::from("id,empty,same,v\n");
    for i in 1..=20 {
        text.push_str(&format!("{i},{i},7,1\n"));
    }
    let report = validate(&csv(&text).unwrap(), &schema);
    assert!(report.passed, "{}", render_text(&report));
    let warnings: Vec<&str> = report.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(warnings, ["column `v` is constant (every value is `1`)"]);
}

#[test]
fn schema_files_round_trip_awkward_values_and_reject_nonsense() {
    let mut text = String::from("flag,n\n");
    for v in ["true", "1", "null?", "yes", "2020-01-01", "a: b", "#x", "~"] {
        text.push_str(&format!("{v},1\n{v},2\n"));
    }
    let t = csv(&text).unwrap();
    let schema = profile(&t, &ProfileOptions::default());
    let yaml = schema.to_yaml();
    assert_eq!(
        Schema::from_yaml(&yaml, "s.yaml").unwrap(),
        schema,
        "{yaml}"
    );

    let hand = "version: 1\ncolumns:\n  - name: code\n    kind: categorical\n    categories: [1, 2, true]\n";
    let s = Schema::from_yaml(hand, "s.yaml").unwrap();
    assert_eq!(
        s.columns[0].categories.as_deref(),
        Some(&["1".to_owned(), "2".into(), "true".into()][..])
    );
    assert!(s.columns[0].nullable, "nullable defaults to true");

    for (bad, expected) in [
        ("version: 2\ncolumns: []\n", "version 2 is not supported"),
        (
            "version: 1\ncolumns: []\nextra: 1\n",
            "unknown field `extra`",
        ),
        (
            "version: 1\ncolumns:\n  - {name: a, kind: numeric}\n  - {name: a, kind: text}\n",
            "listed twice",
        ),
        (
            "version: 1\ncolumns:\n  - {name: a, kind: numeric, min: x}\n",
            "min `x` should be a number",
        ),
        (
            "version: 1\ncolumns:\n  - {name: a, kind: numeric, max_null_fraction: 2}\n",
            "not between 0 and 1",
        ),
        (
            "version: 1\ncolumns:\n  - {name: a, kind: number}\n",
            "unknown variant",
        ),
    ] {
        let err = Schema::from_yaml(bad, "s.yaml").unwrap_err();
        let chain = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert!(chain.contains(expected), "{bad:?}: {chain}");
    }
}

#[test]
fn datetime_ranges_and_booleans() {
    let schema = Schema::from_yaml(
        "version: 1\ncolumns:\n  - {name: at, kind: datetime, min: 2024-01-01, max: '2024-12-31T23:59:59Z'}\n  - {name: ok, kind: boolean}\n",
        "s.yaml",
    )
    .unwrap();
    let t = csv("at,ok\n2024-03-01T10:00:00Z,true\n2025-01-01 00:00:00,false\n2023-12-31,TRUE\n")
        .unwrap();
    let report = validate(&t, &schema);
    assert_eq!(checks(&report), [("at".to_owned(), CheckKind::Range)]);
    assert_eq!(report.violations[0].count, 2);
    assert!(
        report.violations[0]
            .message
            .contains("lowest 2023-12-31T00:00:00, highest 2025-01-01T00:00:00"),
        "{}",
        report.violations[0].message
    );
}

/// A minimal XML well-formedness check: balanced tags, quoted attributes, no stray `<` or `&`.
fn assert_well_formed(xml: &str) {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        check_text(text);
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "`<` inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = tag.split_whitespace().next().expect("tag name");
            let attrs = tag[name.len()..].trim();
            check_attributes(attrs);
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        rest = &rest[end + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn check_text(text: &str) {
    let mut parts = text.split('&');
    parts.next();
    for p in parts {
        let entity = p.split(';').next().unwrap();
        assert!(
            matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
                || entity.starts_with('#') && entity[1..].chars().all(|c| c.is_ascii_digit()),
            "bad entity &{entity};"
        );
    }
}

fn check_attributes(mut attrs: &str) {
    while !attrs.is_empty() {
        let eq = attrs.find("=\"").expect("attribute without a quoted value");
        let name = attrs[..eq].trim();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "attribute name {name:?}"
        );
        let value_end = attrs[eq + 2..].find('"').expect("unterminated attribute") + eq + 2;
        check_text(&attrs[eq + 2..value_end]);
        attrs = attrs[value_end + 1..].trim_start();
    }
}

#[test]
fn junit_is_well_formed_and_escaped() {
    let schema = profile(&csv(&train_csv()).unwrap(), &ProfileOptions::default());
    let mut text = String::from("id,age,plan,income,signup,\"we<ird & \"\"col\"\"\"\n");
    for i in 1..=60 {
        let plan = if i == 3 { "<script>&\"'" } else { "pro" };
        text.push_str(&format!(
            "{i},30,\"{}\",1,2023-05-15,\u{1}\n",
            plan.replace('"', "\"\"")
        ));
    }
    let report = validate(&csv(&text).unwrap(), &schema);
    let xml = render_junit(&report);
    assert_well_formed(&xml);
    assert!(xml.contains("tests=\""), "{xml}");
    assert!(
        xml.contains("<testcase classname=\"data.csv\" name=\"plan: categories\">"),
        "{xml}"
    );
    assert!(xml.contains("&lt;script&gt;&amp;&quot;&apos;"), "{xml}");
    assert!(
        xml.contains("name=\"we&lt;ird &amp; &quot;col&quot;: extra_column\""),
        "{xml}"
    );
    let failures = xml.matches("<failure ").count();
    assert_eq!(failures, report.failed());
    assert_eq!(xml.matches("<testcase ").count(), report.checks.len());
}

#[test]
fn unsupported_columns_are_skipped_and_reported() {
    let tags: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
        (0..3).map(|i| Some(vec![Some(i)])),
    ));
    let schema = Arc::new(ArrowSchema::new(vec![Field::new(
        "tags",
        tags.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![tags]).unwrap();
    let t = kiln_table::Table::from_batches("x.parquet", &schema, &[batch], &Default::default())
        .unwrap();
    assert_eq!((t.num_rows(), t.num_columns()), (3, 0));
    let expected = Schema::from_yaml(
        "version: 1\ncolumns:\n  - {name: tags, kind: numeric}\n",
        "s.yaml",
    )
    .unwrap();
    let report = validate(&t, &expected);
    assert_eq!(checks(&report), [("tags".to_owned(), CheckKind::Type)]);
    assert!(
        report.violations[0]
            .message
            .starts_with("expected numeric, found List("),
        "{}",
        report.violations[0].message
    );
}
