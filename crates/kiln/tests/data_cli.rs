//! `kiln data profile` and `kiln data validate`, run as the built binary on temporary files.

mod common;

use std::path::Path;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// [`common::command`] without `KILN_LOG`, its output decoded.
fn kiln(dir: &Path, args: &[&str]) -> Output {
    let out = common::command(dir, args)
        .env_remove("KILN_LOG")
        .output()
        .expect("run kiln");
    Output {
        code: common::code(&out),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// 120 customers: a key, an age, a plan, an income with 10% nulls, a signup date.
fn train_csv() -> String {
    let mut text = String::from("customer_id,age,plan,income,signup,churned\n");
    for i in 1..=120 {
        let income = if i % 10 == 0 {
            String::new()
        } else {
            (30_000 + i * 97).to_string()
        };
        text.push_str(&format!(
            "{i},{},{},{income},2023-{:02}-15,{}\n",
            18 + i % 60,
            ["basic", "pro", "team"][i % 3],
            i % 12 + 1,
            i % 4 == 0
        ));
    }
    text
}

/// `train_csv` drifted every way: a new plan, an age out of range, no `signup`, an extra
/// column, income mostly null, a duplicated key, and a quote that needs escaping in XML.
fn drift_csv() -> String {
    let mut text = String::from("customer_id,age,plan,income,churned,channel\n");
    text.push_str("1,30,\"<platinum & \"\"gold\"\">\",,false,web\n");
    text.push_str("1,140,pro,,true,web\n");
    for i in 3..=90 {
        let income = if i % 2 == 0 { "" } else { "35000" };
        text.push_str(&format!("{i},40,basic,{income},false,store\n"));
    }
    text
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("train.csv"), train_csv()).unwrap();
    fs_err::write(dir.path().join("drift.csv"), drift_csv()).unwrap();
    dir
}

#[test]
fn profile_then_validate_the_same_file_passes() {
    let dir = setup();
    let out = kiln(
        dir.path(),
        &["data", "profile", "train.csv", "-o", "schema.yaml"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("120 rows, 6 columns → schema.yaml"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.starts_with("COLUMN"), "{}", out.stdout);
    assert!(out.stdout.contains("basic, pro, team"), "{}", out.stdout);

    let yaml = fs_err::read_to_string(dir.path().join("schema.yaml")).unwrap();
    let schema = kiln_table::Schema::from_yaml(&yaml, "schema.yaml").unwrap();
    assert_eq!((schema.rows.min, schema.rows.max), (Some(60), Some(240)));
    assert!(schema.column("customer_id").unwrap().unique);
    assert_eq!(
        schema.column("churned").unwrap().kind,
        kiln_table::ColumnKind::Boolean
    );

    let out = kiln(
        dir.path(),
        &["data", "validate", "train.csv", "--schema", "schema.yaml"],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("✓ "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("checks passed for `train.csv` (120 rows)"),
        "{}",
        out.stdout
    );

    // The same file through a file:// URI, with JSON.
    let uri = format!("file://{}", dir.path().join("train.csv").display());
    let out = kiln(
        dir.path(),
        &["data", "validate", &uri, "-s", "schema.yaml", "--json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["violations"].as_array().unwrap().len(), 0);
}

#[test]
fn profile_prints_yaml_or_json_to_stdout() {
    let dir = setup();
    let out = kiln(dir.path(), &["data", "profile", "train.csv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("# kiln data schema"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\nversion: 1\n"), "{}", out.stdout);
    assert!(out.stdout.contains("kind: categorical"), "{}", out.stdout);
    // Deterministic: the same input gives the same bytes.
    let again = kiln(dir.path(), &["data", "profile", "train.csv"]);
    assert_eq!(out.stdout, again.stdout);

    let out = kiln(dir.path(), &["data", "profile", "train.csv", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(schema["version"], 1);
    assert_eq!(schema["columns"][2]["name"], "plan");
    assert_eq!(
        schema["columns"][2]["categories"],
        serde_json::json!(["basic", "pro", "team"])
    );
}

#[test]
fn drift_fails_with_every_violation_named() {
    let dir = setup();
    assert_eq!(
        kiln(
            dir.path(),
            &["data", "profile", "train.csv", "-o", "schema.yaml"]
        )
        .code,
        0
    );
    let out = kiln(
        dir.path(),
        &[
            "data",
            "validate",
            "drift.csv",
            "--schema",
            "schema.yaml",
            "--json",
            "--junit",
            "report.xml",
        ],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["passed"], false);
    let violations = report["violations"].as_array().unwrap();
    let found: Vec<(String, String)> = violations
        .iter()
        .map(|v| {
            (
                v["column"].as_str().unwrap_or("").to_owned(),
                v["check"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (column, check) in [
        ("signup", "missing_column"),
        ("channel", "extra_column"),
        ("plan", "categories"),
        ("age", "range"),
        ("income", "nulls"),
        ("customer_id", "unique"),
    ] {
        assert!(
            found.contains(&(column.to_owned(), check.to_owned())),
            "{column}/{check} missing from {found:?}"
        );
    }
    let range = violations.iter().find(|v| v["check"] == "range").unwrap();
    assert_eq!(range["count"], 1);
    assert_eq!(
        range["examples"][0],
        serde_json::json!({"row": 2, "value": "140"})
    );

    // JUnit: one suite, one case per check, one failure per violation, escaped.
    let xml = fs_err::read_to_string(dir.path().join("report.xml")).unwrap();
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "),
        "{xml}"
    );
    assert_eq!(xml.matches("<testsuite ").count(), 1);
    assert_eq!(xml.matches("</testsuite>").count(), 1);
    assert!(xml.trim_end().ends_with("</testsuites>"), "{xml}");
    let cases = report["checks"].as_array().unwrap().len();
    assert_eq!(xml.matches("<testcase ").count(), cases);
    assert_eq!(xml.matches("<failure ").count(), violations.len());
    assert_eq!(xml.matches("</failure>").count(), violations.len());
    assert!(
        xml.contains(&format!(
            "tests=\"{cases}\" failures=\"{}\"",
            violations.len()
        )),
        "{xml}"
    );
    assert!(
        xml.contains("&lt;platinum &amp; &quot;gold&quot;&gt;"),
        "{xml}"
    );
    assert!(!xml.contains("<platinum"), "{xml}");
    assert!(xml.contains("name=\"age: range\""), "{xml}");

    // The same as a table for people.
    let out = kiln(
        dir.path(),
        &["data", "validate", "drift.csv", "--schema", "schema.yaml"],
    );
    assert_eq!(out.code, 1);
    assert!(out.stdout.starts_with("✗ "), "{}", out.stdout);
    assert!(out.stdout.contains("CHECK"), "{}", out.stdout);
    assert!(
        out.stdout.contains("column `signup` is missing"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("row 2: `140`"), "{}", out.stdout);
}

#[test]
fn non_numeric_values_are_a_type_violation() {
    let dir = setup();
    assert_eq!(
        kiln(
            dir.path(),
            &["data", "profile", "train.csv", "-o", "schema.yaml"]
        )
        .code,
        0
    );
    let text = train_csv().replacen(",19,", ",abc,", 1);
    fs_err::write(dir.path().join("typo.csv"), text).unwrap();
    let out = kiln(
        dir.path(),
        &[
            "data",
            "validate",
            "typo.csv",
            "-s",
            "schema.yaml",
            "--json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let v = &report["violations"][0];
    assert_eq!(v["check"], "type");
    assert_eq!(v["column"], "age");
    assert_eq!(v["examples"][0]["value"], "abc");
}

#[test]
fn malformed_csv_is_an_input_error_naming_row_and_column() {
    let dir = setup();
    fs_err::write(dir.path().join("short.csv"), "a,b,c\n1,2,3\n4,5\n").unwrap();
    let out = kiln(dir.path(), &["data", "profile", "short.csv"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`short.csv` row 2 (line 3): expected 3 fields"),
        "{}",
        out.stderr
    );

    fs_err::write(dir.path().join("late.csv"), "id,age\n1,30\n2,31\n3,abc\n").unwrap();
    let out = kiln(
        dir.path(),
        &["data", "profile", "late.csv", "--infer-rows", "2"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`late.csv` row 3 (line 4), column `age`: expected an integer, found `abc`"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_inputs_exit_2() {
    let dir = setup();
    let out = kiln(dir.path(), &["data", "profile", "missing.csv"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("Failed to read `missing.csv`"),
        "{}",
        out.stderr
    );

    let out = kiln(
        dir.path(),
        &["data", "validate", "train.csv", "--schema", "nope.yaml"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nope.yaml"), "{}", out.stderr);

    // An unwritable report is a usage error named before the data is read (not exit 3 after
    // it, with the outcome lost).
    let out = kiln(
        dir.path(),
        &["data", "profile", "train.csv", "--output", "schema.yaml"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = kiln(
        dir.path(),
        &[
            "data",
            "validate",
            "drift.csv",
            "--schema",
            "schema.yaml",
            "--junit",
            "no/such/dir/report.xml",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--junit"), "{}", out.stderr);

    fs_err::write(
        dir.path().join("bad.yaml"),
        "version: 1\ncolumns:\n  - name: a\n    kind: number\n",
    )
    .unwrap();
    let out = kiln(
        dir.path(),
        &["data", "validate", "train.csv", "--schema", "bad.yaml"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("Invalid schema file `bad.yaml`"),
        "{}",
        out.stderr
    );

    let out = kiln(dir.path(), &["data", "profile", "s3://bucket/train.csv"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("not supported yet"), "{}", out.stderr);

    let out = kiln(
        dir.path(),
        &["data", "profile", "train.csv", "--delimiter", "ab"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);

    let out = kiln(dir.path(), &["data", "validate", "train.csv"]);
    assert_eq!(out.code, 2, "--schema is required: {}", out.stderr);
}
