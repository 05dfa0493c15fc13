//! `kiln models` end to end through the binary, on the embedded store: train → register →
//! promote → promote a better model behind `--must-beat` → refuse a worse one → rollback, with
//! `kiln serve` following the alias.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{code, start_server, text, Server};
use serde_json::Value;

/// [`common::kiln`] as user `ci-bot`.
fn kiln(dir: &Path, args: &[&str]) -> Output {
    common::command(dir, args)
        .env("USER", "ci-bot")
        .output()
        .expect("run kiln")
}

/// Run and parse `--json` output, asserting the exit code.
fn json(dir: &Path, args: &[&str], want: i32) -> Value {
    let o = kiln(dir, args);
    assert_eq!(code(&o), want, "kiln {args:?}:\n{}", text(&o));
    common::parse_json(&o)
}

/// A churn-like table: the label depends on tenure, support calls and the contract; `noise_*`
/// columns carry no signal.
fn write_churn(dir: &Path, name: &str, rows: usize, seed: u64) {
    let mut s = String::from("tenure,support_calls,monthly,contract,noise_a,noise_b,churned\n");
    let contracts = ["monthly", "yearly", "two-year"];
    let mut next = common::lcg(seed);
    for _ in 0..rows {
        let tenure = (next() * 72.0).floor();
        let calls = (next() * 6.0).floor();
        let monthly = 20.0 + next() * 80.0;
        let c = contracts[(next() * 3.0) as usize % 3];
        let (na, nb) = (next(), next());
        let score = -0.05 * tenure
            + 0.6 * calls
            + if c == "monthly" { 1.0 } else { -1.0 }
            + (next() - 0.5) * 1.5;
        let churned = u8::from(score > 0.0);
        s.push_str(&format!(
            "{tenure},{calls},{monthly:.2},{c},{na:.4},{nb:.4},{churned}\n"
        ));
    }
    std::fs::write(dir.join(name), s).expect("write csv");
}

const GOOD: &[&str] = &["--model", "gbdt", "--param", "n_trees=40"];
const WEAK: &[&str] = &[
    "--model",
    "gbdt",
    "--param",
    "n_trees=1",
    "--param",
    "num_leaves=2",
];
/// Logistic regression on the noise columns only.
const BAD: &[&str] = &[
    "--model",
    "logistic",
    "--exclude",
    "tenure",
    "--exclude",
    "support_calls",
    "--exclude",
    "monthly",
    "--exclude",
    "contract",
];

/// `kiln train` on train.csv, registering a new version of `churn` (add the learner).
const TRAIN: &[&str] = &[
    "train",
    "--data",
    "train.csv",
    "--target",
    "churned",
    "--task",
    "classification",
    "--register",
    "churn",
    "--json",
];

/// Train on train.csv and register a new version of `churn`; returns the version.
fn train(dir: &Path, learner: &[&str]) -> String {
    let args = [TRAIN, learner].concat();
    let v = json(dir, &args, 0);
    v["registered"]["version"]
        .as_str()
        .expect("registered version")
        .to_string()
}

fn champion(dir: &Path) -> String {
    let v = json(
        dir,
        &["models", "show", "churn", "--alias", "champion", "--json"],
        0,
    );
    v["version"]["version"]
        .as_str()
        .expect("version")
        .to_string()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_churn(dir.path(), "train.csv", 1500, 11);
    write_churn(dir.path(), "test.csv", 600, 97);
    dir
}

#[test]
fn promote_refuse_rollback_and_history() {
    let dir = setup();
    let d = dir.path();
    assert_eq!(train(d, WEAK), "1");
    assert_eq!(train(d, GOOD), "2");
    assert_eq!(train(d, BAD), "3");

    let list = json(d, &["models", "list", "--json"], 0);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["name"], "churn");
    assert_eq!(list[0]["latest_version"], "3");
    assert_eq!(list[0]["aliases"], serde_json::json!({}));

    let versions = json(d, &["models", "versions", "churn", "--json"], 0);
    let numbers: Vec<&str> = versions
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(numbers, ["1", "2", "3"]);

    // v1 becomes champion without gates; the reason and user are recorded.
    let first = json(
        d,
        &[
            "models",
            "promote",
            "churn",
            "1",
            "--alias",
            "champion",
            "--user",
            "alice",
            "--reason",
            "first model",
            "--json",
        ],
        0,
    );
    assert_eq!(first["moved"], true);
    assert_eq!(first["previous_version"], Value::Null);
    assert_eq!(champion(d), "1");

    // v2 beats the champion on the same data and passes its gate.
    let better = json(
        d,
        &[
            "models",
            "promote",
            "churn",
            "2",
            "--alias",
            "champion",
            "--must-beat",
            "champion",
            "--on",
            "test.csv",
            "--require",
            "roc_auc>=0.8",
            "--json",
        ],
        0,
    );
    assert_eq!(better["passed"], true, "{better}");
    assert_eq!(better["moved"], true);
    assert_eq!(better["previous_version"], "1");
    let cmp = &better["comparison"];
    assert_eq!(cmp["metric"], "roc_auc");
    assert_eq!(cmp["holder_version"], "1");
    let (c, h) = (
        cmp["candidate"].as_f64().expect("candidate"),
        cmp["holder"].as_f64().expect("holder"),
    );
    assert!(c > h, "{cmp}");
    assert_eq!(better["candidate"]["metrics"]["roc_auc"].as_f64(), Some(c));
    assert_eq!(better["holder"]["metrics"]["roc_auc"].as_f64(), Some(h));
    assert_eq!(better["gates"][0]["passed"], true);
    assert!(better["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("promoted: roc_auc") && r.contains("champion v1")));
    assert_eq!(champion(d), "2");

    // The worse v3 is refused with a report; the alias does not move.
    let o = kiln(
        d,
        &[
            "models",
            "promote",
            "churn",
            "3",
            "--must-beat",
            "champion",
            "--on",
            "test.csv",
            "--markdown",
            "report.md",
        ],
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Promotion refused"), "{out}");
    assert!(out.contains("worse than the holder"), "{out}");
    assert!(
        out.contains("| Metric | Candidate v3 | champion v2 |"),
        "{out}"
    );
    assert!(out.contains("still points at v2"), "{out}");
    let md = std::fs::read_to_string(d.join("report.md")).expect("report.md");
    assert!(
        md.starts_with("## kiln models promote: churn v3 → champion"),
        "{md}"
    );
    assert_eq!(champion(d), "2");

    // A gate on the run's logged test metrics (no --on) can refuse too.
    let gated = json(
        d,
        &[
            "models",
            "promote",
            "churn",
            "3",
            "--require",
            "roc_auc>=0.99",
            "--json",
        ],
        1,
    );
    assert_eq!(gated["passed"], false);
    assert_eq!(gated["moved"], false);
    assert_eq!(gated["candidate"]["source"], "run");
    assert_eq!(champion(d), "2");

    // Rollback returns to v1; a second has nowhere to go.
    let back = json(d, &["models", "rollback", "churn", "--json"], 0);
    assert_eq!(back["from"], "2");
    assert_eq!(back["to"], "1");
    assert_eq!(back["reason"], "rollback from v2");
    assert_eq!(champion(d), "1");
    let o = kiln(d, &["models", "rollback", "churn", "--alias", "champion"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("no previous holder"), "{}", text(&o));
    assert_eq!(champion(d), "1");

    // The history holds every move, with who and why; refusals moved nothing.
    let history = json(d, &["models", "history", "churn", "--json"], 0);
    let events = history.as_array().expect("array");
    let moves: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["version"].as_str().unwrap_or("-"),
                e["previous_version"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(moves, [("1", "-"), ("2", "1"), ("1", "2")]);
    assert_eq!(events[0]["reason"], "first model");
    assert_eq!(events[0]["user_id"], "alice");
    assert_eq!(events[1]["user_id"], "ci-bot");
    assert_eq!(events[2]["reason"], "rollback from v2");
    let o = kiln(d, &["models", "history", "churn", "--alias", "champion"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("WHY") && table.contains("first model"),
        "{table}"
    );

    // Lineage of v2: source run, data hash, params, metrics, datasets.
    let shown = json(d, &["models", "show", "churn", "2", "--json"], 0);
    assert_eq!(shown["version"]["version"], "2");
    let lineage = &shown["lineage"];
    assert_eq!(lineage["run_id"], shown["version"]["run_id"]);
    assert_eq!(lineage["params"]["model"], "gbdt");
    assert_eq!(lineage["params"]["n_trees"], "40");
    assert!(lineage["metrics"]["test_roc_auc"].is_number(), "{lineage}");
    let hash = lineage["data_hash"].as_str().expect("data hash");
    assert_eq!(hash.len(), 64);
    assert_eq!(lineage["datasets"][0]["digest"], hash);
    assert_eq!(lineage["datasets"][0]["context"], "training");
    let o = kiln(d, &["models", "show", "churn", "2"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Lineage:") && out.contains(hash), "{out}");
}

#[test]
fn bad_inputs_exit_2_and_name_what_exists() {
    let dir = setup();
    let d = dir.path();
    assert_eq!(train(d, WEAK), "1");
    assert_eq!(train(d, GOOD), "2");

    let fails = |args: &[&str], needle: &str| {
        let o = kiln(d, args);
        assert_eq!(code(&o), 2, "kiln {args:?}:\n{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(needle),
            "kiln {args:?}: wanted `{needle}` in\n{err}"
        );
    };
    fails(&["models", "versions", "nope"], "registered models: churn");
    // A mistyped store is not an empty registry, and is not created.
    for args in [
        &["models", "list"][..],
        &["models", "rollback", "churn"][..],
        &["models", "promote", "churn", "1"][..],
    ] {
        let mut with = args.to_vec();
        with.extend(["--backend-store-uri", "sqlite:///typo/kiln.db"]);
        fails(&with, "No kiln store at");
    }
    assert!(!d.join("typo").exists(), "a store was created");
    // With --json, stdout is JSON for a usage error too.
    let usage = json(
        d,
        &["models", "promote", "churn", "1", "--json", "--bogus"],
        2,
    );
    assert_eq!(usage["error"]["exit_code"], 2, "{usage}");
    assert!(
        usage["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--bogus")),
        "{usage}"
    );
    fails(&["models", "show", "churn", "9"], "its versions: 1, 2");
    fails(
        &["models", "show", "churn", "--alias", "prod"],
        "no alias `prod`",
    );
    fails(&["models", "promote", "churn", "9"], "its versions: 1, 2");
    fails(
        &["models", "promote", "nope", "1"],
        "registered models: churn",
    );
    fails(
        &["models", "promote", "churn", "1", "--must-beat", "champion"],
        "add --on",
    );
    fails(
        &[
            "models",
            "promote",
            "churn",
            "1",
            "--require",
            "roc_auc=>0.5",
        ],
        "Invalid --require",
    );
    fails(
        &["models", "promote", "churn", "1", "--on", "missing.csv"],
        "missing.csv",
    );
    fails(
        &["models", "history", "churn", "--alias", "prod"],
        "never had the alias",
    );
    fails(&["models", "rollback", "churn"], "never had the alias");
    fails(
        &[
            "models",
            "promote",
            "churn",
            "1",
            "--reason",
            "rollback from v9",
        ],
        "may not start with",
    );
    assert_eq!(code(&kiln(d, &["models", "bogus"])), 2);
    // An unwritable --markdown path is refused before the alias can move.
    fails(
        &[
            "models",
            "promote",
            "churn",
            "1",
            "--markdown",
            "no/such/dir/report.md",
        ],
        "Cannot write the --markdown report to `no/such/dir/report.md`",
    );
    fails(
        &["models", "show", "churn", "--alias", "champion"],
        "no alias `champion`",
    );

    // Must-beat an alias nobody holds yet: passes, with a note.
    let v = json(
        d,
        &[
            "models",
            "promote",
            "churn",
            "1",
            "--alias",
            "challenger",
            "--must-beat",
            "champion",
            "--on",
            "test.csv",
            "--json",
        ],
        0,
    );
    assert_eq!(v["passed"], true);
    assert_eq!(v["comparison"]["holder_version"], Value::Null);
    assert!(
        v["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("no holder")),
        "{v}"
    );
    // An alias the model never had may be a typo: the note says so.
    assert!(
        v["notes"][1]
            .as_str()
            .is_some_and(|n| n.contains("has never had the alias `champion`")),
        "{v}"
    );
    // Promoting the holder again moves nothing and records nothing.
    let again = json(
        d,
        &[
            "models",
            "promote",
            "churn",
            "1",
            "--alias",
            "challenger",
            "--json",
        ],
        0,
    );
    assert_eq!(again["moved"], false);
    assert!(
        again["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already holds") && r.contains("nothing moved")),
        "{again}"
    );
    // Once the model has aliases, a --must-beat alias it never had is a typo in the gate:
    // refused before anything is evaluated, instead of waving the candidate through.
    fails(
        &[
            "models",
            "promote",
            "churn",
            "2",
            "--alias",
            "challenger",
            "--must-beat",
            "champoin",
            "--on",
            "test.csv",
        ],
        "check --must-beat for a typo",
    );
    let history = json(
        d,
        &[
            "models",
            "history",
            "churn",
            "--alias",
            "challenger",
            "--json",
        ],
        0,
    );
    assert_eq!(history.as_array().map(Vec::len), Some(1));
}

/// Wait until the server reports `version` on /health.
fn wait_for_version(client: &reqwest::blocking::Client, server: &Server, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h: Value = client
            .get(format!("{}/health", server.addr))
            .send()
            .and_then(reqwest::blocking::Response::json)
            .unwrap_or(Value::Null);
        if h["version"] == version {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server never served v{version}: {h}\n{}",
            server.log.lock().expect("log lock")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn served_alias_follows_promotion_and_rollback() {
    let dir = setup();
    let d = dir.path();
    assert_eq!(train(d, WEAK), "1");
    json(d, &["models", "promote", "churn", "1", "--json"], 0);
    let server = start_server(
        d,
        &[
            "serve",
            "models:/churn@champion",
            "--port",
            "0",
            "--poll-interval",
            "100ms",
        ],
    );
    let client = reqwest::blocking::Client::new();
    wait_for_version(&client, &server, "1");
    let body = r#"{"dataframe_records": [{"tenure": 3, "support_calls": 4, "monthly": 70, "contract": "monthly", "noise_a": 0.5, "noise_b": 0.5}]}"#;
    let predict = || {
        let resp = client
            .post(format!("{}/invocations", server.addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("predict");
        assert_eq!(resp.status().as_u16(), 200);
        resp.json::<Value>().expect("json")
    };
    let p1 = predict();

    // A better model passes the gate and the server swaps to it.
    assert_eq!(train(d, GOOD), "2");
    json(
        d,
        &[
            "models",
            "promote",
            "churn",
            "2",
            "--must-beat",
            "champion",
            "--on",
            "test.csv",
            "--json",
        ],
        0,
    );
    wait_for_version(&client, &server, "2");
    let p2 = predict();
    assert_ne!(p1, p2, "v1 and v2 should predict differently");

    // A worse one is refused: the server keeps v2.
    assert_eq!(train(d, BAD), "3");
    json(
        d,
        &[
            "models",
            "promote",
            "churn",
            "3",
            "--must-beat",
            "champion",
            "--on",
            "test.csv",
            "--json",
        ],
        1,
    );
    std::thread::sleep(Duration::from_millis(400));
    wait_for_version(&client, &server, "2");

    // Rollback: the server answers with the previous version again.
    json(d, &["models", "rollback", "churn", "--json"], 0);
    wait_for_version(&client, &server, "1");
    assert_eq!(predict(), p1);
}

/// The same workflow with every command pointed at a `kiln server` (a CI job and a central
/// tracking server): runs, versions and aliases go through its REST API and model artifacts
/// through its artifact proxy into the server's own store; `kiln serve` follows the alias
/// through the server too.
#[test]
fn workflow_through_a_tracking_server() {
    let srv = tempfile::tempdir().expect("server dir");
    let tracking = start_server(srv.path(), &["server", "--port", "0"]);
    let dir = setup();
    let d = dir.path();
    let url = tracking.addr.clone();
    let via = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
        v.extend(["--backend-store-uri".to_string(), url.clone()]);
        v
    };
    let run = |args: &[&str], want: i32| -> Value {
        let owned = via(args);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        json(d, &refs, want)
    };
    assert_eq!(
        run(&[TRAIN, WEAK].concat(), 0)["registered"]["version"],
        "1"
    );
    assert_eq!(
        run(&[TRAIN, GOOD].concat(), 0)["registered"]["version"],
        "2"
    );
    // Nothing landed in the client's directory: it all went to the server.
    assert!(!d.join(".kiln").exists(), "a local store was created");

    let list = run(&["models", "list", "--json"], 0);
    assert_eq!(list[0]["name"], "churn", "{list}");
    assert_eq!(list[0]["latest_version"], "2");
    run(
        &[
            "models", "promote", "churn", "1", "--reason", "first", "--json",
        ],
        0,
    );
    // v2 beats v1 on the same data: both models come down through the artifact proxy.
    let better = run(
        &[
            "models",
            "promote",
            "churn",
            "2",
            "--must-beat",
            "champion",
            "--on",
            "test.csv",
            "--json",
        ],
        0,
    );
    assert_eq!(better["moved"], true, "{better}");
    assert_eq!(better["comparison"]["holder_version"], "1");
    let back = run(&["models", "rollback", "churn", "--json"], 0);
    assert_eq!(
        (back["from"].as_str(), back["to"].as_str()),
        (Some("2"), Some("1"))
    );
    let history = run(&["models", "history", "churn", "--json"], 0);
    let events = history.as_array().map_or(0, Vec::len);
    assert_eq!(events, 3, "{history}");

    // The server's own store saw it all: the alias, and the model files under its artifacts.
    let db = format!("sqlite:///{}", srv.path().join(".kiln/kiln.db").display());
    let shown = json(
        d,
        &[
            "models",
            "show",
            "churn",
            "--alias",
            "champion",
            "--json",
            "--backend-store-uri",
            &db,
        ],
        0,
    );
    assert_eq!(shown["version"]["version"], "1", "{shown}");
    let model_files = walk(&srv.path().join(".kiln/artifacts"))
        .into_iter()
        .filter(|p| p.ends_with("kiln-model.json"))
        .count();
    assert_eq!(
        model_files, 2,
        "one model per trained version in the server's artifacts"
    );

    // gc has to run where the data is.
    let o = kiln(
        d,
        &via(&["gc"]).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("--backend-store-uri"), "{}", text(&o));

    // A serving replica that only knows the tracking server.
    let serve = start_server(
        d,
        &via(&["serve", "models:/churn@champion", "--port", "0"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let client = reqwest::blocking::Client::new();
    wait_for_version(&client, &serve, "1");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// A promotion judges the holder it read before the evaluation: when the alias moves while the
/// candidate is evaluated (here the evaluation data comes through a FIFO, written only after
/// another promotion moved `champion`), it refuses instead of overriding a version it never
/// compared with.
#[cfg(target_os = "linux")]
#[test]
fn a_promotion_refuses_when_the_alias_moved_during_its_evaluation() {
    let dir = setup();
    let d = dir.path();
    assert_eq!(train(d, WEAK), "1");
    assert_eq!(train(d, GOOD), "2");
    assert_eq!(train(d, BAD), "3");
    json(
        d,
        &[
            "models", "promote", "churn", "1", "--alias", "champion", "--json",
        ],
        0,
    );
    let fifo = d.join("holdout.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let gated = common::command(
        d,
        &[
            "models",
            "promote",
            "churn",
            "2",
            "--alias",
            "champion",
            "--must-beat",
            "champion",
            "--on",
            "holdout.csv",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn");
    // Opening the FIFO's writing end waits for the promotion to open its reading end, which
    // it does after reading the holder (v1); then champion moves to v3, then the data flows.
    // (Non-blocking, so that a promotion that failed before opening it fails the test instead of
    // hanging it; the data then fits the pipe's 64 KiB buffer.)
    let mut gated = gated;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut writer = loop {
        use std::os::unix::fs::OpenOptionsExt as _;
        const O_NONBLOCK: i32 = 0o4000;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo)
        {
            Ok(w) => break w,
            Err(e) if e.raw_os_error() == Some(6) => {
                // ENXIO: no reader yet.
                if let Some(status) = gated.try_wait().expect("try_wait") {
                    panic!("the gated promotion exited early: {status}");
                }
                assert!(
                    Instant::now() < deadline,
                    "the promotion never opened its data"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open fifo: {e}"),
        }
    };
    let data = std::fs::read(d.join("test.csv")).expect("test.csv");
    assert!(data.len() < 60_000, "fits the pipe buffer");
    json(
        d,
        &[
            "models", "promote", "churn", "3", "--alias", "champion", "--json",
        ],
        0,
    );
    std::io::Write::write_all(&mut writer, &data).expect("fifo");
    drop(writer);
    let o = gated.wait_with_output().expect("wait");
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("moved from v1 to v3"), "{}", text(&o));
    assert_eq!(champion(d), "3", "the gated promotion changed nothing");
}

/// Remove the model files of `churn` version `version` from the embedded artifact store (deleted
/// by hand, or by a bucket lifecycle rule).
fn remove_model_files(dir: &Path, version: &str) {
    let shown = json(dir, &["models", "show", "churn", version, "--json"], 0);
    let run_id = shown["version"]["run_id"].as_str().expect("run id");
    let file = walk(&dir.join(".kiln/artifacts"))
        .into_iter()
        .find(|p| p.contains(run_id) && p.ends_with("kiln-model.json"))
        .unwrap_or_else(|| panic!("v{version}'s model file"));
    std::fs::remove_dir_all(dir.join(&file).parent().expect("model dir")).expect("remove");
}

#[test]
fn a_version_whose_files_are_gone_is_not_promoted() {
    let dir = setup();
    let v1 = train(dir.path(), &["--model", "gbdt"]);
    let v2 = train(dir.path(), &["--model", "gbdt"]);
    json(
        dir.path(),
        &[
            "models", "promote", "churn", &v1, "--alias", "champion", "--json",
        ],
        0,
    );
    // v2's artifacts disappear (deleted by hand, or a bucket lifecycle rule).
    remove_model_files(dir.path(), &v2);
    let o = kiln(
        dir.path(),
        &["models", "promote", "churn", &v2, "--alias", "champion"],
    );
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("its artifacts are gone"), "{}", text(&o));
    assert_eq!(champion(dir.path()), v1, "the alias did not move");

    // A rollback does not deploy a version whose files are gone either: v3 is promoted over
    // v1, v1's files go, and there is nothing loadable to roll back to.
    let v3 = train(dir.path(), &["--model", "gbdt"]);
    json(
        dir.path(),
        &[
            "models", "promote", "churn", &v3, "--alias", "champion", "--json",
        ],
        0,
    );
    remove_model_files(dir.path(), &v1);
    let refused = json(
        dir.path(),
        &[
            "models", "rollback", "churn", "--alias", "champion", "--json",
        ],
        2,
    );
    let message = refused["error"]["message"].as_str().expect("message");
    assert!(message.contains("model files missing: v1"), "{message}");
    assert_eq!(refused["error"]["exit_code"], 2);
    assert_eq!(champion(dir.path()), v3, "the alias did not move");

    // The holder's files gone: --must-beat names the holder, not the candidate.
    let v4 = train(dir.path(), &["--model", "gbdt"]);
    remove_model_files(dir.path(), &v3);
    let o = kiln(
        dir.path(),
        &[
            "models",
            "promote",
            "churn",
            &v4,
            "--must-beat",
            "champion",
            "--on",
            "test.csv",
        ],
    );
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains(&format!("current holder of `champion`, v{v3}")),
        "{}",
        text(&o)
    );
}

/// A model deleted and registered again under its name does not inherit the old alias
/// history: rollback has nothing to return to instead of deploying a version that never held
/// the alias.
#[test]
fn a_recreated_model_starts_with_no_alias_history() {
    let dir = setup();
    let d = dir.path();
    for _ in 0..3 {
        let v = train(d, &["--model", "gbdt"]);
        json(
            d,
            &[
                "models", "promote", "churn", &v, "--alias", "champion", "--json",
            ],
            0,
        );
    }
    let store = kiln_store_sql::SqlStore::open(
        &format!("sqlite:///{}", d.join(".kiln/kiln.db").display()),
        &kiln_store_sql::OpenOptions::default(),
    )
    .expect("open store");
    kiln_store::RegistryStore::delete_registered_model(&store, "churn").expect("delete");
    let v1 = train(d, &["--model", "gbdt"]);
    train(d, &["--model", "gbdt"]);
    json(
        d,
        &[
            "models", "promote", "churn", &v1, "--alias", "champion", "--json",
        ],
        0,
    );
    let history = json(d, &["models", "history", "churn", "--json"], 0);
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    let o = kiln(d, &["models", "rollback", "churn"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("no previous holder"), "{}", text(&o));
    assert_eq!(champion(d), v1);
}

/// Rollbacks that run at once each move the alias back from the holder they read, or refuse
/// (exit 2): never forward again, and the history stays a stack later rollbacks can walk.
#[test]
fn concurrent_rollbacks_never_move_the_alias_forward() {
    let dir = setup();
    let d = dir.path();
    let mut versions = Vec::new();
    for _ in 0..4 {
        let v = train(d, &["--model", "gbdt", "--param", "n_trees=3"]);
        json(
            d,
            &[
                "models", "promote", "churn", &v, "--alias", "champion", "--json",
            ],
            0,
        );
        versions.push(v);
    }
    // v4 holds champion; two rollbacks at once.
    let children: Vec<_> = (0..2)
        .map(|_| {
            common::command(d, &["models", "rollback", "churn", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outcomes: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let succeeded: Vec<&Output> = outcomes.iter().filter(|o| code(o) == 0).collect();
    assert!(
        !succeeded.is_empty(),
        "{:?}",
        outcomes.iter().map(text).collect::<Vec<_>>()
    );
    for o in &outcomes {
        assert!(matches!(code(o), 0 | 2), "{}", text(o));
    }
    // Each success stepped back one holder: v3 then v2, or v3 alone.
    let now = champion(d);
    let want = if succeeded.len() == 2 {
        &versions[1]
    } else {
        &versions[2]
    };
    assert_eq!(
        &now,
        want,
        "{:?}",
        outcomes.iter().map(text).collect::<Vec<_>>()
    );
    let history = json(d, &["models", "history", "churn", "--json"], 0);
    for e in history.as_array().expect("events") {
        assert_ne!(
            e["version"], e["previous_version"],
            "a no-op event: {history}"
        );
    }
    // The stack still walks back to v1.
    while champion(d) != versions[0] {
        json(d, &["models", "rollback", "churn", "--json"], 0);
    }
}

/// Lineage names every file the version's metrics came from, by absolute path: the training
/// file and the `--test-data` file, each with its own BLAKE3 digest.
#[test]
fn lineage_lists_the_test_data_with_absolute_sources() {
    let dir = setup();
    let d = dir.path();
    let trained = json(
        d,
        &[TRAIN, &["--model", "gbdt", "--test-data", "test.csv"]].concat(),
        0,
    );
    let version = trained["registered"]["version"].as_str().expect("version");
    let shown = json(d, &["models", "show", "churn", version, "--json"], 0);
    let lineage = &shown["lineage"];
    let hash = lineage["data_hash"].as_str().expect("data hash");
    let (train_hash, test_hash) = hash.split_once('+').expect("train+test hash");
    let datasets = lineage["datasets"].as_array().expect("datasets");
    assert_eq!(datasets.len(), 2, "{lineage}");
    for (name, context, digest) in [
        ("train.csv", "training", train_hash),
        ("test.csv", "testing", test_hash),
    ] {
        let ds = datasets
            .iter()
            .find(|ds| ds["context"] == context)
            .unwrap_or_else(|| panic!("no {context} dataset: {lineage}"));
        assert_eq!(ds["name"], name);
        assert_eq!(ds["digest"], digest);
        let source = ds["source"].as_str().expect("source");
        let want = std::fs::canonicalize(d.join(name)).expect("canonical");
        assert!(source.contains(&want.display().to_string()), "{source}");
    }
    assert_eq!(lineage["run_deleted"], false);

    // A source run deleted since (the MLflow UI's delete) says so in the lineage.
    let store = kiln_store_sql::SqlStore::open(
        &format!("sqlite:///{}", d.join(".kiln/kiln.db").display()),
        &kiln_store_sql::OpenOptions::default(),
    )
    .expect("open store");
    let run_id = lineage["run_id"].as_str().expect("run id");
    kiln_store::RunStore::delete_run(&store, run_id).expect("delete run");
    let shown = json(d, &["models", "show", "churn", version, "--json"], 0);
    assert_eq!(shown["lineage"]["run_deleted"], true, "{shown}");
    let o = kiln(d, &["models", "show", "churn", version]);
    assert!(text(&o).contains("run deleted"), "{}", text(&o));
}

/// With no `USER` (or `LOGNAME`…) in the environment, as in many CI containers, the history
/// and the run still name who acted: the user database's name for the uid.
#[test]
fn who_is_known_without_a_user_variable() {
    let dir = setup();
    let d = dir.path();
    let v = train(d, &["--model", "gbdt", "--param", "n_trees=3"]);
    let o = common::command(
        d,
        &[
            "models", "promote", "churn", &v, "--alias", "champion", "--json",
        ],
    )
    .env_remove("USER")
    .env_remove("LOGNAME")
    .env_remove("LNAME")
    .env_remove("USERNAME")
    .output()
    .expect("run");
    assert_eq!(code(&o), 0, "{}", text(&o));
    let history = json(d, &["models", "history", "churn", "--json"], 0);
    let who = history[0]["user_id"].as_str().unwrap_or_default();
    assert!(!who.is_empty(), "{history}");
}
