//! `kiln tune` end to end through the binary, on the embedded store.

mod common;

use std::process::Output;

use common::{kiln, tag, text, write_churn};

/// Parse `--json` output, asserting success.
fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    common::parse_json(o)
}

const BASE: &[&str] = &[
    "tune",
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
    "--param",
    "n_trees=20",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = BASE.to_vec();
    v.extend_from_slice(extra);
    v
}

fn param<'a>(run: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    run["data"]["params"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

#[test]
fn grid_search_records_a_parent_and_one_child_per_trial() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 800);
    let v = json(&kiln(
        dir.path(),
        &args(&[
            "--grid",
            "num_leaves=4,15",
            "--grid",
            "learning_rate=0.05,0.2",
            "--metric",
            "roc_auc",
            "--parallel",
            "2",
            "--output",
            "best",
            "--plots",
            "plots",
            "--register",
            "churn",
            "--json",
        ]),
    ));
    let trials = v["trials"].as_array().expect("trials");
    assert_eq!(trials.len(), 4);
    assert_eq!(trials[1]["params"]["num_leaves"], "4");
    assert_eq!(trials[1]["params"]["learning_rate"], "0.2");
    let best = v["best"]["trial"].as_u64().expect("best") as usize;
    let best_score = v["best"]["score"].as_f64().expect("score");
    for t in trials {
        assert!(
            t["score"].as_f64().expect("trial score") <= best_score,
            "{v}"
        );
    }
    assert!(
        v["best"]["metrics"]["test_roc_auc"].as_f64().is_some(),
        "{v}"
    );
    assert_eq!(v["registered"]["version"], "1");
    assert!(dir.path().join("plots/roc.svg").exists());
    let parent_id = v["run_id"].as_str().expect("parent id").to_string();

    let list = json(&kiln(dir.path(), &["runs", "list", "--json"]));
    let runs = list.as_array().expect("runs");
    assert_eq!(runs.len(), 5, "{list}");
    let children: Vec<&serde_json::Value> = runs
        .iter()
        .filter(|r| tag(r, "mlflow.parentRunId") == Some(parent_id.as_str()))
        .collect();
    assert_eq!(children.len(), 4);
    for c in &children {
        assert_eq!(c["info"]["status"], "FINISHED");
        assert!(param(c, "num_leaves").is_some() && param(c, "learning_rate").is_some());
        let has_valid_auc = c["data"]["metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .any(|m| m["key"] == "valid_roc_auc");
        assert!(has_valid_auc, "{c}");
    }
    let parent = runs
        .iter()
        .find(|r| r["info"]["run_id"] == parent_id.as_str())
        .expect("parent listed");
    let best_child = trials[best]["run_id"].as_str().expect("child id");
    assert_eq!(tag(parent, "kiln.tune.best_run_id"), Some(best_child));
    let best_leaves = trials[best]["params"]["num_leaves"]
        .as_str()
        .expect("leaves");
    let best_lr = trials[best]["params"]["learning_rate"]
        .as_str()
        .expect("lr");
    assert_eq!(param(parent, "num_leaves"), Some(best_leaves));
    assert!(parent["data"]["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .any(|m| m["key"] == "test_roc_auc"));

    // The best model is what `kiln train` gives with the same seed, split and parameters.
    let leaves = format!("num_leaves={best_leaves}");
    let lr = format!("learning_rate={best_lr}");
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
            "--split",
            "0.7/0.15/0.15",
            "--param",
            "n_trees=20",
            "--param",
            &leaves,
            "--param",
            &lr,
            "--no-track",
            "--output",
            "retrained",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let a = std::fs::read(dir.path().join("best/kiln-model.json")).expect("best");
    let b = std::fs::read(dir.path().join("retrained/kiln-model.json")).expect("retrained");
    assert!(a == b, "the tuned model must equal kiln train's");

    // Sequential trials give the same result as parallel ones.
    let seq = json(&kiln(
        dir.path(),
        &args(&[
            "--grid",
            "num_leaves=4,15",
            "--grid",
            "learning_rate=0.05,0.2",
            "--parallel",
            "1",
            "--no-track",
            "--output",
            "best-seq",
            "--json",
        ]),
    ));
    assert_eq!(seq["best"]["trial"], v["best"]["trial"]);
    let scores = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["trials"]
            .as_array()
            .expect("trials")
            .iter()
            .map(|t| t["score"].clone())
            .collect()
    };
    assert_eq!(scores(&seq), scores(&v));
    let c = std::fs::read(dir.path().join("best-seq/kiln-model.json")).expect("best-seq");
    assert!(a == c);
}

#[test]
fn random_search_is_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 500);
    let run = |parallel: &str, out: &str| {
        json(&kiln(
            dir.path(),
            &args(&[
                "--random",
                "learning_rate=loguniform(0.01,0.3)",
                "--random",
                "num_leaves=int(4,32)",
                "--trials",
                "3",
                "--seed",
                "11",
                "--parallel",
                parallel,
                "--no-track",
                "--output",
                out,
                "--json",
            ]),
        ))
    };
    let a = run("3", "a");
    let b = run("1", "b");
    let strip = |v: &serde_json::Value| -> Vec<(serde_json::Value, serde_json::Value)> {
        v["trials"]
            .as_array()
            .expect("trials")
            .iter()
            .map(|t| (t["params"].clone(), t["score"].clone()))
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(a["trials"].as_array().map(Vec::len), Some(3));
    let lrs: Vec<f64> = a["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .map(|t| {
            t["params"]["learning_rate"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("lr")
        })
        .collect();
    assert!(lrs.iter().all(|lr| (0.01..0.3).contains(lr)), "{lrs:?}");
    assert!(lrs[0] != lrs[1] || lrs[1] != lrs[2]);
    assert_eq!(
        std::fs::read(dir.path().join("a/kiln-model.json")).expect("a"),
        std::fs::read(dir.path().join("b/kiln-model.json")).expect("b")
    );
    // Another seed draws other parameters.
    let c = json(&kiln(
        dir.path(),
        &args(&[
            "--random",
            "learning_rate=loguniform(0.01,0.3)",
            "--random",
            "num_leaves=int(4,32)",
            "--trials",
            "3",
            "--seed",
            "12",
            "--no-track",
            "--output",
            "c",
            "--json",
        ]),
    ));
    assert_ne!(strip(&a), strip(&c));
}

#[test]
fn malformed_specs_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "churn.csv", 200);
    let cases: &[(&[&str], &str)] = &[
        (&["--grid", "num_leaves"], "num_leaves"),
        (&["--grid", "num_leaves=4,,8"], "empty value"),
        (&["--random", "learning_rate=gauss(0,1)"], "gauss"),
        (&["--random", "learning_rate=loguniform(0,1)"], "positive"),
        (&["--random", "num_leaves=int(8)"], "two bounds"),
        (
            &[
                "--grid",
                "num_leaves=4,8",
                "--random",
                "learning_rate=uniform(0.1,0.2)",
            ],
            "not both",
        ),
        (&[], "Nothing to search"),
        (&["--grid", "bogus=1,2"], "bogus"),
        (&["--grid", "num_leaves=4,abc"], "num_leaves"),
        (&["--grid", "num_leaves=4,8", "--metric", "rmse"], "rmse"),
        (
            &["--grid", "num_leaves=4,8", "--split", "0.8/0.2"],
            "validation",
        ),
        (&["--grid", "num_leaves=4,8", "--trials", "3"], "--trials"),
        (&["--grid", "n_trees=5,10"], "n_trees"),
        (
            &["--grid", "num_leaves=4,8", "--parallel", "0"],
            "--parallel",
        ),
    ];
    for (extra, needle) in cases {
        let out = kiln(dir.path(), &args(extra));
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        assert!(
            text(&out).contains(needle),
            "{extra:?} should mention `{needle}`: {}",
            text(&out)
        );
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
    // Nothing was recorded for refused commands.
    let list = kiln(dir.path(), &["runs", "list", "--json"]);
    if list.status.success() {
        let runs: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
        assert_eq!(runs.as_array().map_or(0, Vec::len), 0, "{runs}");
    }
}

#[test]
#[cfg(unix)]
fn sigterm_ends_the_parent_and_its_trials_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::write_churn(dir.path(), "churn.csv", 20_000);
    // Enough trials that the tune is still running when the signal comes.
    let mut cmd = common::command(
        dir.path(),
        &args(&[
            "--param",
            "n_trees=200",
            "--random",
            "num_leaves=int(8,64)",
            "--trials",
            "400",
            "--parallel",
            "1",
        ]),
    );
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait for a trial to be running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let out = kiln(dir.path(), &["runs", "list", "--json"]);
        if out.status.success() {
            let list = common::parse_json(&out);
            if list.as_array().is_some_and(|r| r.len() >= 2) {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no trial started");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "tune ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "{status:?}");
    let list = json(&kiln(dir.path(), &["runs", "list", "--json"]));
    let runs = list.as_array().expect("runs");
    assert!(runs.len() >= 2, "{list}");
    for r in runs {
        assert_ne!(r["info"]["status"], "RUNNING", "{r}");
    }
    assert!(
        runs.iter().any(|r| r["info"]["status"] == "KILLED"),
        "{list}"
    );
}
