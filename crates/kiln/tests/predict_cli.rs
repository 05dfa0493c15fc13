//! `kiln predict` through the binary: scoring with a kiln model, and bad input exiting 2.
//! (ONNX models exported from scikit-learn are checked in `tests/python/test_onnx.py`.)

mod common;

use std::path::Path;

use common::{kiln, text};

/// A small table whose label follows `x` (with a categorical column along for the ride).
fn write_data(dir: &Path, name: &str, rows: usize, with_label: bool) {
    let mut s = String::from(if with_label {
        "x,color,label\n"
    } else {
        "x,color\n"
    });
    for i in 0..rows {
        let x = (i * 37 % 101) as f64 / 10.0;
        let color = ["red", "green", "blue"][i % 3];
        if with_label {
            let label = if x > 5.0 { "high" } else { "low" };
            s.push_str(&format!("{x},{color},{label}\n"));
        } else {
            s.push_str(&format!("{x},{color}\n"));
        }
    }
    std::fs::write(dir.join(name), s).expect("write csv");
}

fn train(dir: &Path) {
    write_data(dir, "train.csv", 300, true);
    let out = kiln(
        dir,
        &[
            "train",
            "--data",
            "train.csv",
            "--target",
            "label",
            "--task",
            "classification",
            "--model",
            "logistic",
            "--no-track",
            "--output",
            "model",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn predicts_with_a_kiln_model_as_json_and_csv() {
    let dir = tempfile::tempdir().expect("tempdir");
    train(dir.path());
    write_data(dir.path(), "new.csv", 10, false);

    let out = kiln(
        dir.path(),
        &["predict", "--model", "model", "--data", "new.csv", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["classes"], serde_json::json!(["high", "low"]));
    assert_eq!(v["task"], "classification");
    assert_eq!(v["rows"], 10);
    let preds = v["predictions"].as_array().expect("predictions");
    let proba = v["probabilities"].as_array().expect("probabilities");
    assert_eq!(preds.len(), 10);
    for (p, row) in preds.iter().zip(proba) {
        let row: Vec<f64> = row
            .as_array()
            .expect("row")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect();
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let best = if row[0] >= row[1] { "high" } else { "low" };
        assert_eq!(p, best);
    }

    let out = kiln(
        dir.path(),
        &[
            "predict",
            "--model",
            "model/kiln-model.json",
            "--data",
            "new.csv",
            "--output",
            "preds.csv",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Wrote 10 prediction(s) to preds.csv"),
        "{}",
        text(&out)
    );
    let csv = std::fs::read_to_string(dir.path().join("preds.csv")).expect("preds");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("prediction,proba_high,proba_low"));
    assert_eq!(lines.count(), 10);

    // Without --output or --json the CSV goes to stdout.
    let out = kiln(
        dir.path(),
        &["predict", "--model", "model", "--data", "new.csv"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("prediction,proba_high,proba_low\n"));
}

#[test]
fn bad_models_and_data_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    train(dir.path());
    write_data(dir.path(), "new.csv", 5, false);
    std::fs::write(dir.path().join("garbage.onnx"), b"\x08\x07 not really onnx").expect("write");
    std::fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
    std::fs::write(dir.path().join("wrong.csv"), "y,color\n1,red\n").expect("write");
    std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
    // One stray `?` makes the numeric `x` a text column; scoring it as missing would be silent.
    std::fs::write(
        dir.path().join("stray.csv"),
        "x,color\n1.5,red\n?,blue\n2,green\n",
    )
    .expect("write");

    let cases: [(&[&str], &str); 7] = [
        (
            &["--model", "model", "--data", "stray.csv"],
            "Column `x` is a number in the model, but data row 2 has `?`",
        ),
        (
            &["--model", "garbage.onnx", "--data", "new.csv"],
            "ONNX model `garbage.onnx`: not a valid ONNX file",
        ),
        (
            &["--model", "notes.txt", "--data", "new.csv"],
            "neither a kiln model",
        ),
        (
            &["--model", "missing.onnx", "--data", "new.csv"],
            "missing.onnx",
        ),
        (
            &["--model", "empty", "--data", "new.csv"],
            "holds neither `kiln-model.json` nor `model.onnx`",
        ),
        (
            &["--model", "model", "--data", "wrong.csv"],
            "Column `x` not found",
        ),
        (&["--model", "model", "--data", "nope.csv"], "nope.csv"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["predict"];
        full.extend_from_slice(args);
        let out = kiln(dir.path(), &full);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
    }
}

/// A categorical column whose training values were mostly dates (one `unknown` made it text)
/// is read as a date column from a file that holds only dates: the dates still match their
/// training categories, and a date never seen in training is counted as unseen, not dropped
/// silently.
#[test]
fn date_categories_match_when_the_new_file_reads_them_as_dates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut train = String::from("d,x,y\n");
    for i in 0..40 {
        let (date, label) = if i % 2 == 0 {
            ("2024-01-01", "a")
        } else {
            ("2024-02-01", "b")
        };
        let date = if i % 10 == 9 { "unknown" } else { date };
        train.push_str(&format!("{date},{},{label}\n", i % 3));
    }
    std::fs::write(d.join("train.csv"), train).expect("write");
    std::fs::write(
        d.join("new.csv"),
        "d,x\n2024-01-01,0\n2024-02-01,0\n2024-03-01,0\n",
    )
    .expect("write");
    let out = kiln(
        d,
        &[
            "train",
            "--data",
            "train.csv",
            "--target",
            "y",
            "--task",
            "classification",
            "--param",
            "min_data_in_leaf=1",
            "--split",
            "1/0",
            "--no-track",
            "--output",
            "model",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = kiln(
        d,
        &["predict", "--model", "model", "--data", "new.csv", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["predictions"][0], "a", "{v}");
    assert_eq!(v["predictions"][1], "b", "{v}");
    assert!(
        text(&out).contains("column `d` has 1 value(s) not seen in training"),
        "{}",
        text(&out)
    );
}

/// A regression target that is not a number is named with its row and value, and a left-out
/// column says why (empty, or numbers spoiled by a word) rather than calling it free text.
#[test]
fn bad_values_are_named_with_their_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut train = String::from("x,spoiled,empty,y\n");
    for i in 0..60 {
        let spoiled = if i == 7 {
            "inf".to_string()
        } else {
            format!("{i}.5")
        };
        train.push_str(&format!("{i},{spoiled},,{}\n", 2 * i + 1));
    }
    std::fs::write(d.join("train.csv"), train).expect("write");
    std::fs::write(d.join("eval.csv"), "x,y\n1,3\n2,5\n3,?\n").expect("write");
    let out = kiln(
        d,
        &[
            "train",
            "--data",
            "train.csv",
            "--target",
            "y",
            "--task",
            "regression",
            "--model",
            "linear",
            "--split",
            "1/0",
            "--no-track",
            "--output",
            "model",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains("column `spoiled` left out: numbers, but some values are not (e.g. `inf`)"),
        "{log}"
    );
    assert!(
        log.contains("column `empty` left out: empty: every value is missing"),
        "{log}"
    );
    let out = kiln(
        d,
        &[
            "evaluate",
            "--model",
            "model",
            "--data",
            "eval.csv",
            "--no-track",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("Target `y` at data row 3 is `?`; regression needs a finite number"),
        "{}",
        text(&out)
    );
}
