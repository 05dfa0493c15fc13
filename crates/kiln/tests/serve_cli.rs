//! `kiln serve` end to end: train and register two versions, serve `models:/churn@champion`,
//! check predictions against the model, errors, /metrics, a hot swap under continuous load
//! with no failed request, and a graceful exit on SIGTERM.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{churn_rows, kiln, start_server, text, write_churn, write_churn_rows, Server};
use kiln_store::RegistryStore;

/// A `dataframe_split` body for `rows` (all columns but the label; `customer_id` is ignored).
fn split_body(rows: &[String]) -> String {
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let f: Vec<&str> = r.split(',').collect();
            serde_json::json!([
                f[0],
                f[1].parse::<f64>().unwrap(),
                f[2].parse::<f64>().unwrap(),
                f[3].parse::<f64>().unwrap(),
                f[4]
            ])
        })
        .collect();
    serde_json::json!({ "dataframe_split": {
        "columns": ["customer_id", "tenure", "support_calls", "monthly", "contract"],
        "data": data,
    }})
    .to_string()
}

/// The model's own probabilities for `file` (the in-process reference).
fn reference_proba(dir: &Path, model: &str, file: &str) -> Vec<Vec<f64>> {
    let model =
        kiln_train::model::Model::load(&dir.join(model).display().to_string()).expect("load model");
    let table = kiln_table::read_table(
        &dir.join(file).display().to_string(),
        &kiln_table::ReadOptions::default(),
    )
    .expect("read table");
    match model.predict(&table).expect("predict") {
        kiln_train::artifact::Predictions::Proba(p) => p,
        kiln_train::artifact::Predictions::Values(_) => panic!("a classifier"),
    }
}

fn post(client: &reqwest::blocking::Client, url: &str, body: &str) -> (u16, serde_json::Value) {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .expect("request");
    let status = resp.status().as_u16();
    let v = resp.json().unwrap_or(serde_json::Value::Null);
    (status, v)
}

fn probabilities(v: &serde_json::Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v["probabilities"].clone()).expect("probabilities")
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}

#[test]
fn serve_predicts_reports_metrics_and_swaps_when_the_alias_moves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_churn(d, "churn.csv", 1500);
    let fresh = churn_rows(40, 999);
    write_churn_rows(d, "new.csv", &fresh);
    for (trees, out) in [("20", "m1"), ("60", "m2")] {
        let o = kiln(
            d,
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
                &format!("n_trees={trees}"),
                "--output",
                out,
                "--register",
                "churn",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let store = kiln_store_sql::SqlStore::open(
        &format!("sqlite:///{}", d.join(".kiln/kiln.db").display()),
        &kiln_store_sql::OpenOptions::default(),
    )
    .expect("open store");
    let actor = kiln_store::AliasActor {
        user_id: None,
        reason: Some("test".into()),
    };
    store.set_alias("churn", "champion", "1", &actor).unwrap();

    let server = start_server(
        d,
        &[
            "serve",
            "models:/churn@champion",
            "--port",
            "0",
            "--poll-interval",
            "200ms",
        ],
    );
    let base = server.addr.clone();
    let client = reqwest::blocking::Client::new();

    // Predictions equal the model's own, for JSON and CSV bodies.
    let want_v1 = reference_proba(d, "m1", "new.csv");
    let want_v2 = reference_proba(d, "m2", "new.csv");
    assert_ne!(want_v1, want_v2, "the two versions should differ");
    let body = split_body(&fresh);
    let (status, v) = post(&client, &format!("{base}/invocations"), &body);
    assert_eq!(status, 200, "{v}");
    assert_close(&probabilities(&v), &want_v1);
    let labels = v["predictions"].as_array().expect("labels");
    for (label, p) in labels.iter().zip(&want_v1) {
        assert_eq!(label.as_i64(), Some(i64::from(p[1] > p[0])), "{v}");
    }
    let csv = std::fs::read_to_string(d.join("new.csv")).unwrap();
    let resp = client
        .post(format!("{base}/invocations"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value = resp.json().unwrap();
    assert_close(&probabilities(&v), &want_v1);

    // Input errors name the field.
    let (status, v) = post(
        &client,
        &format!("{base}/invocations"),
        r#"{"dataframe_records": [{"tenure": 3, "support_calls": 1, "monthly": 50, "contract": "weekly"}]}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(v["error_code"], "BAD_REQUEST");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("column `contract`: unknown category \"weekly\""),
        "{v}"
    );
    let (status, v) = post(
        &client,
        &format!("{base}/invocations"),
        r#"{"dataframe_records": [{"support_calls": 1, "monthly": 50, "contract": "yearly"}]}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(v["message"], "missing column `tenure` (expected a number)");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        r#"kiln_requests_total{model="churn",version="1",arm="main",endpoint="/invocations",code="200"} 2"#,
        r#"kiln_requests_total{model="churn",version="1",arm="main",endpoint="/invocations",code="400"} 2"#,
        r#"kiln_prediction_rows_total{model="churn",version="1",arm="main"} 80"#,
        r#"kiln_model_info{model="churn",version="1",arm="main",flavor="kiln/gbdt"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}`:\n{metrics}"
        );
    }

    // Hot swap under continuous load: no request fails, and both versions answer.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let infer = serde_json::json!({ "inputs": [
        { "name": "tenure", "shape": [1], "datatype": "FP64", "data": [3] },
        { "name": "support_calls", "shape": [1], "datatype": "FP64", "data": [4] },
        { "name": "monthly", "shape": [1], "datatype": "FP64", "data": [50.5] },
        { "name": "contract", "shape": [1], "datatype": "BYTES", "data": ["monthly"] },
    ]})
    .to_string();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, failures, sent, seen) = (
                Arc::clone(&stop),
                Arc::clone(&failures),
                Arc::clone(&sent),
                Arc::clone(&seen),
            );
            let (base, body, infer) = (base.clone(), body.clone(), infer.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let (s1, _) = post(&client, &format!("{base}/invocations"), &body);
                    let (s2, v) = post(&client, &format!("{base}/v2/models/churn/infer"), &infer);
                    sent.fetch_add(2, Ordering::Relaxed);
                    if s1 != 200 || s2 != 200 {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(version) = v["model_version"].as_str() {
                        seen.lock().unwrap().insert(version.to_string());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    store.set_alias("churn", "champion", "2", &actor).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h: serde_json::Value = client
            .get(format!("{base}/health"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if h["version"] == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no swap: {h}\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests during the swap"
    );
    assert!(sent.load(Ordering::Relaxed) > 4);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains("1") && seen.contains("2"), "{seen:?}");
    assert!(server
        .log
        .lock()
        .unwrap()
        .contains("Swapped the served model version"));

    let (status, v) = post(&client, &format!("{base}/invocations"), &body);
    assert_eq!(status, 200);
    assert_close(&probabilities(&v), &want_v2);
    let meta: serde_json::Value = client
        .get(format!("{base}/v2/models/churn"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["versions"], serde_json::json!(["2"]));
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics
        .contains(r#"kiln_model_info{model="churn",version="2",arm="main",flavor="kiln/gbdt"} 1"#));
    assert!(metrics.contains("kiln_model_swaps_total 1"), "{metrics}");
    assert!(
        metrics.contains("kiln_busy_poll_spins_total{outcome=\"ready\"}"),
        "{metrics}"
    );

    // SIGTERM: drain and exit 0.
    let mut server = server;
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "kiln serve did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.log.lock().unwrap().contains("kiln serve stopped"));
}

#[test]
fn serve_refuses_bad_references_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = kiln(dir.path(), &["serve", "models:/churn", "--port", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("Invalid model reference"), "{}", text(&o));
    let o = kiln(dir.path(), &["serve", "missing-model.json", "--port", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("missing-model.json"), "{}", text(&o));
    let o = kiln(dir.path(), &["serve", "m.json", "--max-body", "lots"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A worker spinning that long would hold timers back: refused, with the limit named.
    let o = kiln(dir.path(), &["serve", "m.json", "--busy-poll", "5ms"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("at most 1ms"), "{}", text(&o));
    let o = kiln(dir.path(), &["server", "--busy-poll", "soon"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for flags in [
        &["--workers", "0"][..],
        &["--workers", "100000"][..],
        &["--log-rotate-secs", "0"][..],
        &["--log-queue", "0"][..],
        &["--canary", "challenger=10.555"][..],
        &["--log-sample", "1.5"][..],
        &["--header-timeout", "0s"][..],
    ] {
        let o = kiln(dir.path(), &[&["serve", "m.json"][..], flags].concat());
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
        assert!(text(&o).contains(flags[0]), "{flags:?}: {}", text(&o));
    }
}

/// Train `churn.csv` twice (20 and 60 trees) and register both as `churn` versions 1 and 2.
fn two_versions(d: &Path) -> kiln_store_sql::SqlStore {
    write_churn(d, "churn.csv", 1500);
    for (trees, out) in [("20", "m1"), ("60", "m2")] {
        let o = kiln(
            d,
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
                &format!("n_trees={trees}"),
                "--output",
                out,
                "--register",
                "churn",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    kiln_store_sql::SqlStore::open(
        &format!("sqlite:///{}", d.join(".kiln/kiln.db").display()),
        &kiln_store_sql::OpenOptions::default(),
    )
    .expect("open store")
}

fn wait_exit(server: &mut Server) -> std::process::ExitStatus {
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "kiln serve did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_splits_canary_traffic_sticks_users_and_logs_predictions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let store = two_versions(d);
    let actor = kiln_store::AliasActor {
        user_id: None,
        reason: Some("test".into()),
    };
    store.set_alias("churn", "champion", "1", &actor).unwrap();
    store.set_alias("churn", "challenger", "2", &actor).unwrap();
    let mut server = start_server(
        d,
        &[
            "serve",
            "models:/churn@champion",
            "--port",
            "0",
            "--poll-interval",
            "200ms",
            "--canary",
            "challenger=50",
            "--sticky-header",
            "X-User-Id",
            "--shadow",
            "champion",
            "--log-predictions",
            "predlog",
            "--log-sample",
            "1",
            "--log-rotate-rows",
            "100",
            "--log-queue",
            "8192",
        ],
    );
    let base = server.addr.clone();
    let client = reqwest::blocking::Client::new();
    let body = split_body(&churn_rows(1, 7));
    let send = |user: Option<&str>, id: Option<&str>| {
        let mut req = client
            .post(format!("{base}/invocations"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(u) = user {
            req = req.header("X-User-Id", u);
        }
        if let Some(i) = id {
            req = req.header("X-Request-Id", i);
        }
        let resp = req.send().expect("request");
        assert_eq!(resp.status().as_u16(), 200);
        let h = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        (
            h("x-kiln-model-version"),
            h("x-kiln-arm"),
            h("x-request-id"),
        )
    };

    // Without the sticky header: about half the requests on each version.
    let mut counts = std::collections::BTreeMap::new();
    let mut sent = 0;
    for i in 0..200 {
        let id = format!("req-{i}");
        let (version, arm, rid) = send(None, Some(&id));
        assert_eq!(rid, id);
        assert_eq!(
            arm,
            if version == "2" { "canary" } else { "main" },
            "{version}"
        );
        *counts.entry(version).or_insert(0) += 1;
        sent += 1;
    }
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(
        counts.values().all(|n| (60..=140).contains(n)),
        "{counts:?}"
    );

    // With it: each user stays on one version, and users land on both.
    let mut versions_seen = std::collections::BTreeSet::new();
    for u in 0..12 {
        let user = format!("user-{u}");
        let (first, _, _) = send(Some(&user), None);
        for _ in 0..5 {
            assert_eq!(send(Some(&user), None).0, first, "{user} moved");
        }
        versions_seen.insert(first);
        sent += 6;
    }
    assert_eq!(versions_seen.len(), 2);

    // The canary arm has its own watcher: moving its alias swaps that arm only.
    store.set_alias("churn", "challenger", "1", &actor).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h: serde_json::Value = client
            .get(format!("{base}/health"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let arms = h["arms"].as_array().cloned().unwrap_or_default();
        if arms
            .iter()
            .any(|a| a["arm"] == "canary" && a["version"] == "1")
        {
            assert!(arms
                .iter()
                .any(|a| a["arm"] == "main" && a["version"] == "1"));
            assert!(arms
                .iter()
                .any(|a| a["arm"] == "shadow" && a["version"] == "1"));
            assert!(
                arms.iter()
                    .any(|a| a["arm"] == "canary" && a["source"] == "models:/churn@challenger"),
                "the arm still follows its alias after the swap: {h}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no canary swap: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            r#"kiln_model_info{model="churn",version="1",arm="canary",flavor="kiln/gbdt"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("kiln_prediction_log_dropped_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kiln_prediction_log_dropped_rows_total 0"),
        "{metrics}"
    );

    // Removing the canary's alias withdraws the canary (the store answers a removed alias as
    // MLflow does, INVALID_PARAMETER_VALUE): all traffic goes to the main arm.
    store.delete_alias("churn", "challenger", &actor).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h: serde_json::Value = client
            .get(format!("{base}/health"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let arms = h["arms"].as_array().cloned().unwrap_or_default();
        if arms
            .iter()
            .any(|a| a["arm"] == "canary" && a["withdrawn"] == true)
        {
            break;
        }
        assert!(Instant::now() < deadline, "canary not withdrawn: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..40 {
        let (_, arm, _) = send(None, Some(&format!("after-{i}")));
        assert_eq!(arm, "main", "a withdrawn canary answered");
        sent += 1;
    }

    // SIGTERM flushes the prediction log: every answered row, plus the shadow's copies.
    let status = wait_exit(&mut server);
    assert!(status.success(), "{status:?}");
    let mut rows = 0;
    let mut debug = String::new();
    let mut files: Vec<_> = std::fs::read_dir(d.join("predlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("predictions-") && name.ends_with(".parquet"),
            "{name}"
        );
        let table = kiln_table::read_table(
            &f.display().to_string(),
            &kiln_table::ReadOptions::default(),
        )
        .expect("read the prediction log");
        for col in [
            "timestamp",
            "request_id",
            "model",
            "version",
            "arm",
            "latency_us",
            "inputs",
            "prediction",
            "probabilities",
        ] {
            assert!(table.column(col).is_some(), "{name} has no `{col}`");
        }
        rows += table.num_rows();
        for b in table.batches() {
            debug.push_str(&format!("{b:?}"));
        }
    }
    // Main or canary answered each request once; the shadow saw a copy of each.
    assert_eq!(rows, 2 * sent, "{} files", files.len());
    for needle in [
        "\"req-0\"",
        "\"req-199\"",
        "\"shadow\"",
        "\"canary\"",
        "\"main\"",
        "tenure",
    ] {
        assert!(debug.contains(needle), "no {needle} in the log");
    }
}

/// Train a small untracked model into `d/m` (from a 300-row `churn.csv`).
fn small_model(d: &Path) {
    write_churn(d, "churn.csv", 300);
    let o = kiln(
        d,
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
            "n_trees=5",
            "--no-track",
            "--output",
            "m",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// `--drain-delay`: after SIGTERM the server keeps accepting new connections and answering,
/// with `/health` and `/v2/health/ready` at 503 so a load balancer stops routing to it; then it
/// exits 0.
#[test]
fn drain_delay_keeps_serving_while_health_checks_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    small_model(d);
    let mut server = start_server(d, &["serve", "m", "--port", "0", "--drain-delay", "3s"]);
    let base = server.addr.clone();
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let signalled = Instant::now();
    // Wait for the server to notice the signal, then check on fresh connections.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if server.log.lock().unwrap().contains("Draining") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", server.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    for path in ["/health", "/v2/health/ready"] {
        let fresh = reqwest::blocking::Client::new();
        let status = fresh.get(format!("{base}{path}")).send().unwrap().status();
        assert_eq!(status.as_u16(), 503, "{path}");
    }
    let fresh = reqwest::blocking::Client::new();
    let (status, _) = post(
        &fresh,
        &format!("{base}/invocations"),
        &split_body(&churn_rows(2, 7)),
    );
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "kiln serve did not exit after its drain delay"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "exited before its drain delay"
    );
}

/// A client that sends its headers and then trickles (or stops sending) the body gets a 408
/// after `--body-timeout` and its connection closed, while other clients are served.
#[test]
fn a_body_that_never_arrives_is_a_408_after_the_body_timeout() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    small_model(d);
    let zero = kiln(d, &["serve", "m", "--port", "0", "--body-timeout", "0s"]);
    assert_eq!(common::code(&zero), 2, "{}", text(&zero));
    assert!(text(&zero).contains("--body-timeout"), "{}", text(&zero));
    let server = start_server(
        d,
        &[
            "serve",
            "m",
            "--port",
            "0",
            "--body-timeout",
            "1s",
            "--header-timeout",
            "2s",
        ],
    );
    let host = server.addr.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&host).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let started = Instant::now();
    write!(
        slow,
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"dataframe_split\""
    )
    .expect("write");
    // Others are answered meanwhile.
    let client = reqwest::blocking::Client::new();
    let (status, _) = post(
        &client,
        &format!("{}/invocations", server.addr),
        &split_body(&churn_rows(2, 7)),
    );
    assert_eq!(status, 200);
    let mut answer = String::new();
    slow.read_to_string(&mut answer)
        .expect("the server closes the connection");
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("--body-timeout"), "{answer}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");

    // Headers that never end, and a keep-alive connection left idle, are closed after
    // --header-timeout.
    let mut stalled = std::net::TcpStream::connect(&host).expect("connect");
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(stalled, "POST /invocations HTTP/1.1\r\nHost: x\r\n").expect("write");
    let mut idle = std::net::TcpStream::connect(&host).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(idle, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let started = Instant::now();
    for (what, conn) in [("stalled headers", &mut stalled), ("idle", &mut idle)] {
        let mut rest = String::new();
        conn.read_to_string(&mut rest)
            .unwrap_or_else(|e| panic!("{what}: the server should close it: {e}"));
        if what == "idle" {
            assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

/// A server raises its soft open-file limit to the hard limit (one descriptor per connection;
/// a soft limit of 256 or 1024 would refuse clients long before the machine is busy).
#[cfg(target_os = "linux")]
#[test]
fn servers_raise_their_open_file_limit() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("prlimit (util-linux) not installed; skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=256:4096", "--", env!("CARGO_BIN_EXE_kiln")])
        .args(["server", "--port", "0"])
        .current_dir(dir.path())
        .env_remove("KILN_TRACKING_URI")
        .env_remove("KILN_BACKEND_STORE_URI")
        .env_remove("KILN_ARTIFACTS_DESTINATION");
    let server = common::start_command(cmd);
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3..5], ["4096", "4096"], "{line}");
}
