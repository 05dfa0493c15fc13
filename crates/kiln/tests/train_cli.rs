//! `kiln train` / `kiln evaluate` end to end through the binary, on the embedded store.

mod common;

use std::path::Path;

use common::{kiln, tag, text, write_churn};

#[test]
fn train_is_tracked_registered_and_bit_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 2000);
    let args = [
        "train",
        "--data",
        "churn.csv",
        "--target",
        "churned",
        "--task",
        "classification",
        "--model",
        "gbdt",
        "--exclude",
        "customer_id",
        "--stratify",
        "--seed",
        "7",
        "--param",
        "n_trees=50",
    ];
    let mut first = args.to_vec();
    first.extend(["--output", "m1", "--register", "churn", "--json"]);
    let out = kiln(dir.path(), &first);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let auc = v["metrics"]["test_roc_auc"].as_f64().expect("auc");
    assert!(auc > 0.8, "auc {auc}");
    assert_eq!(v["registered"]["version"], "1");
    let run_id = v["run_id"].as_str().expect("run id").to_string();

    let mut second = args.to_vec();
    second.extend(["--output", "m2", "--no-track"]);
    let out = kiln(dir.path(), &second);
    assert!(out.status.success(), "{}", text(&out));
    let a = std::fs::read(dir.path().join("m1/kiln-model.json")).expect("m1");
    let b = std::fs::read(dir.path().join("m2/kiln-model.json")).expect("m2");
    assert!(
        a == b,
        "same seed and data must give a byte-identical model file"
    );

    // The run is in the store like any MLflow run.
    let out = kiln(dir.path(), &["runs", "show", &run_id, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run json");
    let params = run["data"]["params"].as_array().expect("params");
    assert!(params
        .iter()
        .any(|p| p["key"] == "model" && p["value"] == "gbdt"));
    let metrics = run["data"]["metrics"].as_array().expect("metrics");
    assert!(metrics.iter().any(|m| m["key"] == "test_roc_auc"));
    let tags = run["data"]["tags"].as_array().expect("tags");
    assert!(tags.iter().any(|t| t["key"] == "kiln.data.hash"));
    assert_eq!(
        run["inputs"]["dataset_inputs"][0]["dataset"]["name"],
        "churn.csv"
    );
    assert!(dir
        .path()
        .join(format!(
            ".kiln/artifacts/0/{run_id}/artifacts/model/kiln-model.json"
        ))
        .exists());
}

#[test]
fn every_learner_trains() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 600);
    for model in ["gbdt", "random_forest", "logistic"] {
        let out = kiln(
            dir.path(),
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--model",
                model,
                "--exclude",
                "customer_id",
                "--json",
            ],
        );
        assert!(out.status.success(), "{model}: {}", text(&out));
    }
    for model in ["gbdt", "random_forest", "linear"] {
        let out = kiln(
            dir.path(),
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "monthly",
                "--task",
                "regression",
                "--model",
                model,
                "--exclude",
                "customer_id",
                "--json",
            ],
        );
        assert!(out.status.success(), "{model}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(v["metrics"]["test_rmse"].as_f64().is_some(), "{v}");
    }
}

#[test]
fn bad_input_is_a_clear_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 100);
    std::fs::write(dir.path().join("one.csv"), "x,y\n1,a\n2,a\n3,a\n").expect("write");
    std::fs::write(dir.path().join("nolabels.csv"), "x,y\n1,\n2,\n3,NA\n").expect("write");
    // 20 rows of a/b and one of c: a 50/50 split cannot train on c.
    let mut rare = String::from("x,y\n");
    for i in 0..20 {
        rare.push_str(&format!("{i},{}\n", ["a", "b"][i % 2]));
    }
    rare.push_str("5,c\n");
    std::fs::write(dir.path().join("rare.csv"), rare).expect("write");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--register",
                "team/churn",
            ],
            "Invalid --register `team/churn`: names cannot contain '/' or ':'",
        ),
        (
            &[
                "train",
                "--data",
                "nolabels.csv",
                "--target",
                "y",
                "--task",
                "classification",
                "--no-track",
                "--output",
                "m",
            ],
            "Target `y` has no labels: every value is missing",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--exclude",
                "customer_idd",
                "--no-track",
                "--output",
                "m",
            ],
            "Excluded column `customer_idd` is not in the data; the columns are customer_id,",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--exclude",
                "churned",
                "--no-track",
                "--output",
                "m",
            ],
            "Excluded column `churned` is the target",
        ),
        (
            &[
                "train",
                "--data",
                "rare.csv",
                "--target",
                "y",
                "--task",
                "classification",
                "--split",
                "0.5/0.5",
                "--stratify",
                "--no-track",
                "--output",
                "rare.json",
            ],
            "Class `c` of target `y` has no rows in the training part",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "nope",
                "--task",
                "classification",
            ],
            "nope",
        ),
        (
            &[
                "train",
                "--data",
                "one.csv",
                "--target",
                "y",
                "--task",
                "classification",
            ],
            "single class",
        ),
        (
            &[
                "train",
                "--data",
                "missing.csv",
                "--target",
                "y",
                "--task",
                "classification",
            ],
            "missing.csv",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--param",
                "n_trees=-3",
            ],
            "n_trees",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--param",
                "bogus=1",
            ],
            "bogus",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--split",
                "0.9/0.3",
            ],
            "split",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "contract",
                "--task",
                "regression",
            ],
            "regression",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--model",
                "linear",
            ],
            "logistic",
        ),
        (
            &[
                "train",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--no-track",
            ],
            "--no-track needs --output, or the model",
        ),
        (
            &[
                "tune",
                "--data",
                "churn.csv",
                "--target",
                "churned",
                "--task",
                "classification",
                "--grid",
                "n_trees=5,10",
                "--no-track",
                "--output",
                "best",
                "--register",
                "churn",
            ],
            "--register records a run; drop --no-track",
        ),
    ];
    for (args, needle) in cases {
        let out = kiln(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(needle),
            "{args:?} should mention `{needle}`: {}",
            text(&out)
        );
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
}

#[test]
fn evaluate_gates_exit_codes_and_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 1500);
    write_churn(dir.path(), "holdout.csv", 400);
    let out = kiln(
        dir.path(),
        &[
            "train",
            "--data",
            "churn.csv",
            "--target",
            "churned",
            "--task",
            "classification",
            "--exclude",
            "customer_id",
            "--register",
            "churn",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    let pass = kiln(
        dir.path(),
        &[
            "evaluate",
            "--model",
            "models:/churn/1",
            "--data",
            "holdout.csv",
            "--require",
            "roc_auc>=0.7",
            "--junit",
            "pass.xml",
            "--markdown",
            "pass.md",
            "--json",
        ],
    );
    assert_eq!(pass.status.code(), Some(0), "{}", text(&pass));
    let v: serde_json::Value = serde_json::from_slice(&pass.stdout).expect("json");
    assert_eq!(v["passed"], true);
    assert!(
        v["metrics"]["f1"].as_f64().is_some() && v["metrics"]["pr_auc"].as_f64().is_some(),
        "{v}"
    );
    let junit = std::fs::read_to_string(dir.path().join("pass.xml")).expect("junit");
    assert!(junit.contains("tests=\"1\" failures=\"0\""), "{junit}");
    assert!(std::fs::read_to_string(dir.path().join("pass.md"))
        .expect("md")
        .contains("roc_auc"));

    let fail = kiln(
        dir.path(),
        &[
            "evaluate",
            "--model",
            "models:/churn/1",
            "--data",
            "holdout.csv",
            "--require",
            "accuracy>=0.9999",
            "--junit",
            "fail.xml",
        ],
    );
    assert_eq!(fail.status.code(), Some(1), "{}", text(&fail));
    assert!(text(&fail).contains("FAIL"), "{}", text(&fail));
    let junit = std::fs::read_to_string(dir.path().join("fail.xml")).expect("junit");
    assert!(junit.contains("<failure"), "{junit}");

    let bad = kiln(
        dir.path(),
        &[
            "evaluate",
            "--model",
            "models:/churn/1",
            "--data",
            "holdout.csv",
            "--require",
            "roc_auc=>0.7",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let missing = kiln(
        dir.path(),
        &[
            "evaluate",
            "--model",
            "models:/nope/1",
            "--data",
            "holdout.csv",
        ],
    );
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
}

/// Minimal well-formedness: starts with `<svg`, every element closed in order.
fn assert_svg(path: &Path) -> String {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(svg.starts_with("<svg "), "{}", path.display());
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg.as_str();
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("tag closes");
        let tag = &rest[start + 1..start + end];
        rest = &rest[start + end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "{}", path.display());
        } else if !tag.ends_with('/') {
            stack.push(
                tag.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    assert!(stack.is_empty(), "{}: unclosed {stack:?}", path.display());
    svg
}

#[test]
fn plots_are_written_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 800);
    write_churn(dir.path(), "holdout.csv", 300);
    let out = kiln(
        dir.path(),
        &[
            "train",
            "--data",
            "churn.csv",
            "--target",
            "churned",
            "--task",
            "classification",
            "--exclude",
            "customer_id",
            "--param",
            "n_trees=30",
            "--output",
            "model",
            "--plots",
            "train-plots",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let run_id = v["run_id"].as_str().expect("run id").to_string();
    assert_eq!(v["plots"].as_array().map(Vec::len), Some(4), "{v}");
    for name in [
        "roc.svg",
        "pr.svg",
        "confusion_matrix.svg",
        "feature_importance.svg",
    ] {
        assert_svg(&dir.path().join("train-plots").join(name));
        assert!(
            dir.path()
                .join(format!(".kiln/artifacts/0/{run_id}/artifacts/plots/{name}"))
                .exists(),
            "{name} not logged"
        );
    }

    let out = kiln(
        dir.path(),
        &[
            "evaluate",
            "--model",
            "model",
            "--data",
            "holdout.csv",
            "--plots",
            "eval-plots",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let roc = assert_svg(&dir.path().join("eval-plots/roc.svg"));
    let auc = v["metrics"]["roc_auc"].as_f64().expect("auc");
    assert!(roc.contains(&format!("AUC = {auc:.3}")), "{roc}");
    let cm = assert_svg(&dir.path().join("eval-plots/confusion_matrix.svg"));
    assert_eq!(cm.matches(r#"class="cell""#).count(), 4);
    let fi = assert_svg(&dir.path().join("eval-plots/feature_importance.svg"));
    for feature in ["tenure", "support_calls", "contract", "monthly"] {
        assert!(
            fi.contains(&format!("data-feature=\"{feature}\"")),
            "{feature}: {fi}"
        );
    }
    assert!(!fi.contains("customer_id"));
    let eval_run = v["run_id"].as_str().expect("eval run id");
    assert!(dir
        .path()
        .join(format!(
            ".kiln/artifacts/0/{eval_run}/artifacts/plots/pr.svg"
        ))
        .exists());

    // Regression: residuals and predicted-vs-actual; linear importance from coefficients.
    let out = kiln(
        dir.path(),
        &[
            "train",
            "--data",
            "churn.csv",
            "--target",
            "monthly",
            "--task",
            "regression",
            "--model",
            "linear",
            "--exclude",
            "customer_id",
            "--no-track",
            "--output",
            "reg",
            "--plots",
            "reg-plots",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for name in [
        "residuals.svg",
        "predicted_vs_actual.svg",
        "feature_importance.svg",
    ] {
        let svg = assert_svg(&dir.path().join("reg-plots").join(name));
        assert!(!svg.contains("NaN"), "{name}");
    }
    assert!(!dir.path().join("reg-plots/roc.svg").exists());
}

/// The runs in the store, as `kiln runs list --json` gives them.
fn runs(dir: &Path) -> Vec<serde_json::Value> {
    let out = kiln(dir, &["runs", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    common::parse_json(&out).as_array().expect("runs").clone()
}

#[test]
fn a_run_whose_recording_fails_ends_failed_with_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 400);
    // The Default experiment's artifact directory is a file: the model cannot be stored once
    // training is done.
    std::fs::create_dir(dir.path().join("arts")).expect("mkdir");
    std::fs::write(dir.path().join("arts/0"), "x").expect("write");
    let out = kiln(
        dir.path(),
        &[
            "train",
            "--data",
            "churn.csv",
            "--target",
            "churned",
            "--exclude",
            "customer_id",
            "--task",
            "classification",
            "--artifacts-destination",
            "arts",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let all = runs(dir.path());
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["info"]["status"], "FAILED", "{:?}", all[0]);
    assert!(tag(&all[0], "kiln.error").is_some(), "{:?}", all[0]);
}

#[test]
fn evaluate_refuses_typos_and_unwritable_reports_before_recording_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 600);
    let out = kiln(
        dir.path(),
        &[
            "train",
            "--data",
            "churn.csv",
            "--target",
            "churned",
            "--task",
            "classification",
            "--exclude",
            "customer_id",
            "--output",
            "m",
            "--no-track",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let evaluate = |extra: &[&str]| {
        let mut args = vec!["evaluate", "--model", "m", "--data", "churn.csv"];
        args.extend_from_slice(extra);
        kiln(dir.path(), &args)
    };
    // A misspelled metric is a usage error (2), not a failed gate (1).
    let out = evaluate(&["--require", "ROC_AUC>=0.5"]);
    assert_eq!(common::code(&out), 2, "{}", text(&out));
    assert!(
        text(&out).contains("did you mean `roc_auc`?"),
        "{}",
        text(&out)
    );
    // An empty report path (an unset $GITHUB_STEP_SUMMARY) names its flag.
    let out = evaluate(&["--require", "roc_auc>=0.5", "--markdown", ""]);
    assert_eq!(common::code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("--markdown is empty"), "{}", text(&out));
    let out = evaluate(&["--junit", "no/such/dir/gates.xml"]);
    assert_eq!(common::code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("--junit"), "{}", text(&out));
    assert!(
        runs(dir.path()).is_empty(),
        "nothing is recorded for a refused command"
    );
    // A command that fails after creating its report leaves no empty report behind.
    let out = kiln(
        dir.path(),
        &[
            "evaluate",
            "--model",
            "no-such-model",
            "--data",
            "churn.csv",
            "--junit",
            "r.xml",
        ],
    );
    assert_eq!(common::code(&out), 2, "{}", text(&out));
    assert!(
        !dir.path().join("r.xml").exists(),
        "an empty report was left"
    );
    // Nor touches a file already there (it may be the user's, or a device).
    std::fs::write(dir.path().join("old.xml"), "keep").expect("write");
    let out = kiln(
        dir.path(),
        &[
            "evaluate",
            "--model",
            "no-such-model",
            "--data",
            "churn.csv",
            "--junit",
            "old.xml",
        ],
    );
    assert_eq!(common::code(&out), 2, "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("old.xml")).expect("read"),
        "keep"
    );
    // A known metric the data cannot give still fails the gate (exit 1).
    let out = evaluate(&["--require", "rmse<=0.5"]);
    assert_eq!(common::code(&out), 1, "{}", text(&out));
}

#[test]
fn every_command_reads_the_store_it_is_pointed_at_and_never_invents_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 400);
    std::fs::create_dir(dir.path().join("team")).expect("mkdir");
    let out = kiln(
        dir.path(),
        &[
            "train",
            "--data",
            "churn.csv",
            "--target",
            "churned",
            "--task",
            "classification",
            "--exclude",
            "customer_id",
            "--register",
            "churn",
            "--backend-store-uri",
            "sqlite:///team/kiln.db",
            "--artifacts-destination",
            "team/artifacts",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // KILN_TRACKING_URI reaches the registry commands as it reaches `kiln runs`.
    let out = common::command(dir.path(), &["models", "list", "--json"])
        .env("KILN_TRACKING_URI", "sqlite:///team/kiln.db")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("churn"), "{}", text(&out));
    assert!(
        !dir.path().join(".kiln").exists(),
        "a second store was made"
    );
    // The server side does not follow KILN_TRACKING_URI: a shell that points its clients at a
    // server can still run `kiln db` (and `kiln server`, `kiln gc`) on their own store.
    let out = common::command(
        dir.path(),
        &[
            "db",
            "status",
            "--backend-store-uri",
            "sqlite:///team/kiln.db",
        ],
    )
    .env("KILN_TRACKING_URI", "http://127.0.0.1:9")
    .output()
    .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    // `kiln runs` takes --backend-store-uri as the other commands do.
    let out = kiln(
        dir.path(),
        &[
            "runs",
            "list",
            "--backend-store-uri",
            "sqlite:///team/kiln.db",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // A typo is an error, not an empty store created on the spot.
    for args in [
        &[
            "experiments",
            "list",
            "--tracking-uri",
            "sqlite:///tema/kiln.db",
        ][..],
        &[
            "db",
            "status",
            "--backend-store-uri",
            "sqlite:///tema/kiln.db",
        ][..],
    ] {
        let out = kiln(dir.path(), args);
        assert_eq!(common::code(&out), 2, "{args:?}: {}", text(&out));
        assert!(
            !dir.path().join("tema").exists(),
            "{args:?} created the store"
        );
    }
    // The server side does not follow KILN_TRACKING_URI: a shell that points its clients at a
    // server can still run `kiln db` (and `kiln server`, `kiln gc`) on the local store.
    let out = kiln(dir.path(), &["experiments", "create", "local"]);
    assert!(out.status.success(), "{}", text(&out));
    for args in [&["db", "status"][..], &["gc", "--dry-run"][..]] {
        let out = common::command(dir.path(), args)
            .env("KILN_TRACKING_URI", "http://127.0.0.1:9")
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
}

#[test]
fn a_tracking_server_that_never_answers_times_out_as_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Accepts connections (the kernel's backlog does) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let started = std::time::Instant::now();
    let out = common::command(dir.path(), &["runs", "list", "--tracking-uri", &url])
        .env("KILN_HTTP_TIMEOUT", "1")
        .output()
        .expect("run");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("set KILN_HTTP_TIMEOUT"),
        "{}",
        text(&out)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "waited {:?}",
        started.elapsed()
    );
    // A value that is not a number of seconds is refused, not ignored.
    let out = common::command(dir.path(), &["runs", "list", "--tracking-uri", &url])
        .env("KILN_HTTP_TIMEOUT", "abc")
        .output()
        .expect("run");
    assert_eq!(common::code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("KILN_HTTP_TIMEOUT"), "{}", text(&out));
    drop(listener);
}

/// With no `--experiment`, runs go to experiment 0 and `kiln runs list` lists it, even after
/// it was renamed (MLflow's default is the id, not the name "Default").
#[test]
fn the_default_experiment_is_experiment_zero_whatever_its_name() {
    let srv = tempfile::tempdir().expect("server dir");
    let server = common::start_server(srv.path(), &["server", "--port", "0"]);
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 300);
    let api = format!("{}/api/2.0/mlflow", server.addr);
    let http = reqwest::blocking::Client::new();
    let renamed = http
        .post(format!("{api}/experiments/update"))
        .json(&serde_json::json!({"experiment_id": "0", "new_name": "main-line"}))
        .send()
        .expect("rename");
    assert!(renamed.status().is_success(), "{:?}", renamed.text());

    let train = [
        "train",
        "--data",
        "churn.csv",
        "--target",
        "churned",
        "--task",
        "classification",
        "--exclude",
        "customer_id",
        "--backend-store-uri",
        &server.addr,
        "--json",
    ];
    let out = kiln(dir.path(), &train);
    assert!(out.status.success(), "{}", text(&out));
    let trained = common::parse_json(&out);
    assert_eq!(trained["experiment_id"], "0", "{trained}");

    let out = kiln(
        dir.path(),
        &["runs", "list", "--tracking-uri", &server.addr, "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let listed = common::parse_json(&out);
    assert_eq!(listed[0]["info"]["run_id"], trained["run_id"], "{listed}");
    // No experiment named "Default" was created on the side.
    let found = http
        .get(format!("{api}/experiments/get-by-name"))
        .query(&[("experiment_name", "Default")])
        .send()
        .expect("get-by-name");
    assert_eq!(found.status().as_u16(), 404);
}
