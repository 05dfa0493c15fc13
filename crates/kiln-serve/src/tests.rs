//! Decoding every format, every bad-input case, the HTTP surface in process, hot swap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kiln_ml::linear::{fit_linear, LinearParams};
use kiln_ml::{Dataset, Feature, GbdtParams, Objective, MISSING_CODE};
use kiln_train::artifact::{KilnModel, Learner, Predictions, TrainingInfo};
use kiln_train::frame::{FieldKind, InputField, Signature, TargetField, Task};
use tower::ServiceExt;

use crate::decode::{decode_csv, decode_mlflow_json, decode_v2};
use crate::encode::{Batch, Encoder};
use crate::error::DecodeError;
use crate::{
    create_app, watch, KilnScorer, Limits, Loaded, ModelLoader, Scorer, ServeError, ServeState,
};

const PLANS: [&str; 3] = ["basic", "premium", "pro"];

fn signature(task: Task) -> Signature {
    Signature {
        inputs: vec![
            InputField {
                name: "tenure".into(),
                kind: FieldKind::Numeric,
                categories: Vec::new(),
            },
            InputField {
                name: "plan".into(),
                kind: FieldKind::Categorical,
                categories: PLANS.iter().map(|s| (*s).to_string()).collect(),
            },
            InputField {
                name: "active".into(),
                kind: FieldKind::Boolean,
                categories: Vec::new(),
            },
            InputField {
                name: "signup".into(),
                kind: FieldKind::Datetime,
                categories: Vec::new(),
            },
        ],
        target: TargetField {
            name: "churned".into(),
            task,
            classes: if task == Task::Classification {
                vec!["0".into(), "1".into()]
            } else {
                Vec::new()
            },
        },
    }
}

/// Deterministic training data: (dataset, labels).
fn data(task: Task) -> (Dataset, Vec<f64>) {
    let n = 400;
    let mut state: u64 = 7;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / f64::from(1u32 << 31)
    };
    let (mut tenure, mut plan, mut active, mut signup, mut y) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let t = (next() * 72.0).floor();
        let p = (next() * 3.0) as u32 % 3;
        let a = if next() > 0.5 { 1.0 } else { 0.0 };
        let s = 1.6e9 + next() * 1e8;
        let score = -0.05 * t + f64::from(p) * 0.8 + a - 1.0 + (next() - 0.5);
        tenure.push(t);
        plan.push(p);
        active.push(a);
        signup.push(s);
        y.push(match task {
            Task::Classification => f64::from(u8::from(score > 0.0)),
            Task::Regression => score,
        });
    }
    let ds = Dataset::new(vec![
        Feature::numeric("tenure", tenure),
        Feature::categorical(
            "plan",
            plan,
            PLANS.iter().map(|s| (*s).to_string()).collect(),
        ),
        Feature::numeric("active", active),
        Feature::numeric("signup", signup),
    ])
    .unwrap();
    (ds, y)
}

fn training() -> TrainingInfo {
    TrainingInfo {
        kiln_version: "test".into(),
        data_hash: String::new(),
        train_rows: 400,
        seed: 1,
        split: "1".into(),
        params: Vec::new(),
    }
}

fn gbdt(task: Task) -> KilnModel {
    let (ds, y) = data(task);
    let params = GbdtParams {
        objective: match task {
            Task::Classification => Objective::Binary,
            Task::Regression => Objective::Regression,
        },
        n_trees: 20,
        min_data_in_leaf: 5,
        ..GbdtParams::default()
    };
    let m = kiln_ml::gbdt::fit(&params, &ds, &y).unwrap();
    KilnModel::new(signature(task), training(), Learner::Gbdt(m))
}

fn logistic() -> KilnModel {
    let (ds, y) = data(Task::Classification);
    let params = LinearParams::from_kv(Objective::Binary, &[]).unwrap();
    let m = fit_linear(&ds, &y, None, &params).unwrap();
    KilnModel::new(
        signature(Task::Classification),
        training(),
        Learner::Logistic(m),
    )
}

fn encoder() -> Encoder {
    Encoder::new(&signature(Task::Classification))
}

/// The rows every format below encodes: signature order, plan as its vocabulary index.
fn expected_batch() -> Batch {
    Batch {
        n_rows: 2,
        n_features: 4,
        values: vec![
            3.0,
            2.0,
            1.0,
            1_700_000_000.0, //
            40.0,
            0.0,
            0.0,
            1_704_067_200.0,
        ],
        texts: Vec::new(),
    }
}

#[test]
fn decodes_every_mlflow_format_to_the_same_rows() {
    let enc = encoder();
    let bodies = [
        // Columns in another order than the signature, plus one the model does not use.
        r#"{"dataframe_split": {"columns": ["plan", "tenure", "id", "active", "signup"],
            "data": [["pro", 3, "a", true, 1700000000], ["basic", 40, "b", false, "2024-01-01"]]}}"#,
        r#"{"dataframe_split": {"index": [0, 1], "columns": ["tenure", "plan", "active", "signup"],
            "data": [[3, "pro", 1, 1700000000], [40, "basic", 0, "2024-01-01T00:00:00Z"]]}}"#,
        r#"{"dataframe_records": [
            {"tenure": 3, "plan": "pro", "active": true, "signup": 1700000000},
            {"active": false, "signup": "2024-01-01", "plan": "basic", "tenure": "40"}]}"#,
        r#"{"instances": [
            {"tenure": 3, "plan": "pro", "active": true, "signup": 1700000000},
            {"tenure": 40, "plan": "basic", "active": false, "signup": "2024-01-01 00:00:00"}]}"#,
        r#"{"instances": [[3, "pro", true, 1700000000], [40, "basic", false, "2024-01-01"]]}"#,
        r#"{"inputs": {"tenure": [3, 40], "plan": ["pro", "basic"], "active": [true, false],
            "signup": [1700000000, "2024-01-01"]}}"#,
        r#"{"inputs": [{"tenure": 3, "plan": "pro", "active": "true", "signup": 1700000000},
            {"tenure": 40, "plan": "basic", "active": "False", "signup": "2024-01-01"}],
            "params": {"x": 1}}"#,
    ];
    for body in bodies {
        let batch =
            decode_mlflow_json(body.as_bytes(), &enc).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(batch, expected_batch(), "{body}");
    }
}

#[test]
fn decodes_csv_and_v2() {
    let enc = encoder();
    let csv =
        "plan,tenure,active,signup,extra\npro,3,true,1700000000,x\nbasic,40,false,2024-01-01,y\n";
    assert_eq!(decode_csv(csv.as_bytes(), &enc).unwrap(), expected_batch());

    let per_column = r#"{"id": "r1", "inputs": [
        {"name": "tenure", "shape": [2], "datatype": "FP64", "data": [3, 40]},
        {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "data": [["pro"], ["basic"]]},
        {"name": "active", "shape": [2], "datatype": "BOOL", "data": [true, false]},
        {"name": "signup", "shape": [2], "datatype": "FP64", "data": [1700000000, 1704067200]}]}"#;
    let (batch, req) = decode_v2(per_column.as_bytes(), &enc).unwrap();
    assert_eq!(batch, expected_batch());
    assert_eq!(req.id.as_deref(), Some("r1"));

    let matrix = r#"{"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "BYTES",
        "data": [[3, "pro", true, 1700000000], [40, "basic", false, "2024-01-01"]]}]}"#;
    let (batch, req) = decode_v2(matrix.as_bytes(), &enc).unwrap();
    assert_eq!(batch, expected_batch());
    assert_eq!(req, crate::decode::V2Request::default());
}

#[test]
fn missing_values_are_nan() {
    let enc = encoder();
    let body = r#"{"dataframe_records": [{"tenure": null, "plan": null, "active": true, "signup": 1}, {"tenure": 2, "active": false}]}"#;
    let b = decode_mlflow_json(body.as_bytes(), &enc).unwrap();
    assert!(b.row(0)[0].is_nan() && b.row(0)[1].is_nan());
    assert!(b.row(1)[1].is_nan() && b.row(1)[3].is_nan());
    let csv = "tenure,plan,active,signup\nNA,,true,\n";
    let b = decode_csv(csv.as_bytes(), &enc).unwrap();
    assert!(b.row(0)[0].is_nan() && b.row(0)[1].is_nan() && b.row(0)[3].is_nan());
    // CSV's null markers as JSON strings are missing too (not in a categorical column), and a
    // byte order mark before the JSON is skipped.
    let body = "\u{feff}{\"dataframe_split\": {\"columns\": [\"tenure\", \"plan\", \"active\", \"signup\"], \"data\": [[\"NaN\", \"pro\", \"NA\", \"nan\"]]}}";
    let b = decode_mlflow_json(body.as_bytes(), &enc).unwrap();
    assert!(b.row(0)[0].is_nan() && b.row(0)[2].is_nan() && b.row(0)[3].is_nan());
    assert!(!b.row(0)[1].is_nan());
}

fn decode_err(body: &str) -> String {
    decode_mlflow_json(body.as_bytes(), &encoder())
        .map(|b| panic!("expected an error for {body}, got {b:?}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_inputs_name_the_field_and_the_expected_type() {
    let m = decode_err(r#"{"dataframe_records": [{"plan": "pro", "active": true, "signup": 1}]}"#);
    assert_eq!(m, "missing column `tenure` (expected a number)");
    let m = decode_err(r#"{"dataframe_split": {"columns": ["tenure"], "data": [[1]]}}"#);
    assert!(m.starts_with("missing columns `plan` (expected one of \"basic\", \"premium\", \"pro\"), `active` (expected a boolean), `signup`"), "{m}");

    let m = decode_err(
        r#"{"dataframe_records": [
            {"tenure": 1, "plan": "pro", "active": true, "signup": 1},
            {"tenure": 1, "plan": "pro", "active": true, "signup": 1},
            {"tenure": "abc", "plan": "pro", "active": true, "signup": 1}]}"#,
    );
    assert_eq!(m, "column `tenure`: expected a number, got \"abc\" (row 3)");
    let m = decode_err(r#"{"instances": [[1, "pro", "maybe", 1]]}"#);
    assert_eq!(
        m,
        "column `active`: expected a boolean, got \"maybe\" (row 1)"
    );
    let m = decode_err(r#"{"instances": [[true, "pro", true, 1]]}"#);
    assert_eq!(m, "column `tenure`: expected a number, got true (row 1)");
    let m = decode_err(r#"{"instances": [[1, "pro", true, "yesterday"]]}"#);
    assert!(m.starts_with("column `signup`: expected a datetime"), "{m}");

    let m = decode_err(
        r#"{"inputs": {"tenure": [1], "plan": ["gold"], "active": [true], "signup": [1]}}"#,
    );
    assert_eq!(
        m,
        "column `plan`: unknown category \"gold\" (row 1); expected one of \"basic\", \"premium\", \"pro\""
    );

    assert!(decode_err(r#"{"dataframe_records": [{"tenure": 1,}]}"#).starts_with("Invalid JSON"));
    assert!(decode_err("not json").starts_with("Invalid JSON"));
    assert!(decode_err(r#"{"instances": [[[1, 2]]]}"#).starts_with("Invalid JSON"));
    assert_eq!(
        decode_err(r#"{"dataframe_records": []}"#),
        "The request has no rows"
    );
    assert_eq!(
        decode_err(r#"{"dataframe_split": {"columns": ["tenure"], "data": []}}"#),
        "The request has no rows"
    );
    assert!(decode_err(r#"{"rows": []}"#).contains("expected exactly one of"));
    assert!(decode_err(r#"{"instances": [], "inputs": []}"#).contains("got 2"));
    assert!(decode_err(r#"{"instances": [[1, "pro"]]}"#).contains("the model takes 4 inputs"));
    assert!(decode_err(
        r#"{"dataframe_split": {"columns": ["tenure", "tenure"], "data": [[1, 2]]}}"#
    )
    .contains("appears twice"));
    assert!(
        decode_err(r#"{"inputs": {"tenure": [1, 2], "plan": ["pro"]}}"#).contains("has 1 values")
    );

    let enc = encoder();
    let err = decode_csv(b"tenure,plan,active,signup\n1,pro,true\n", &enc).unwrap_err();
    assert!(err.to_string().starts_with("Invalid CSV"), "{err}");
    let err = decode_csv(b"tenure,plan,active,signup\n", &enc).unwrap_err();
    assert_eq!(err.to_string(), "The request has no rows");
    let err = decode_v2(
        br#"{"inputs": [{"name": "tenure", "shape": [2], "datatype": "FP64", "data": [1]}]}"#,
        &enc,
    )
    .unwrap_err();
    assert!(err.to_string().contains("2 values"), "{err}");
    let err = decode_v2(
        br#"{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}"#,
        &enc,
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected [rows, 4]"), "{err}");
    let err = decode_v2(
        br#"{"inputs": [{"name": "tenure", "shape": [1], "datatype": "FLOAT", "data": [1]}]}"#,
        &enc,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown datatype"), "{err}");
}

#[test]
fn requests_that_would_expand_or_hide_values_are_refused() {
    let enc = encoder();
    // Empty rows cost 3 bytes each but 4 values each: more values than body bytes is refused
    // before anything is allocated for them.
    let rows = vec!["{}"; 30_000].join(",");
    let body = format!(r#"{{"dataframe_records": [{rows}]}}"#);
    let err = decode_mlflow_json(body.as_bytes(), &enc).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooManyValues {
                rows: 30_000,
                inputs: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at most 90"), "{err}");
    let column = vec!["1"; 40_000].join(",");
    let body = format!(
        r#"{{"inputs": [{{"name": "tenure", "shape": [40000], "datatype": "FP64", "data": [{column}]}}]}}"#
    );
    let err = decode_v2(body.as_bytes(), &enc).unwrap_err();
    assert!(matches!(err, DecodeError::TooManyValues { .. }), "{err}");
    // A dense request of the same size is fine.
    let rows = vec![r#"[1, "pro", true, 1]"#; 30_000].join(",");
    let body = format!(r#"{{"instances": [{rows}]}}"#);
    assert_eq!(
        decode_mlflow_json(body.as_bytes(), &enc).unwrap().n_rows,
        30_000
    );

    // Numbers too large for an f64 are not infinity.
    let m = decode_err(
        r#"{"dataframe_records": [{"tenure": "1e999", "plan": "pro", "active": true, "signup": 1}]}"#,
    );
    assert_eq!(
        m,
        "column `tenure`: expected a number, got \"1e999\" (row 1)"
    );
    let err = decode_csv(b"tenure,plan,active,signup\n1e999,pro,true,1\n", &enc).unwrap_err();
    assert!(err.to_string().contains("expected a number"), "{err}");

    // A column given twice is refused in every form, not silently overwritten.
    let m = decode_err(
        r#"{"dataframe_records": [{"tenure": 1, "tenure": 2, "plan": "pro", "active": true, "signup": 1}]}"#,
    );
    assert_eq!(m, "Invalid input: row 1 has column `tenure` twice");
    let m = decode_err(
        r#"{"inputs": {"tenure": [1], "tenure": [2], "plan": ["pro"], "active": [true], "signup": [1]}}"#,
    );
    assert!(m.contains("`tenure` appears twice"), "{m}");
    let err = decode_v2(
        br#"{"inputs": [{"name": "tenure", "shape": [1], "datatype": "FP64", "data": [1]},
                        {"name": "tenure", "shape": [1], "datatype": "FP64", "data": [2]}]}"#,
        &enc,
    )
    .unwrap_err();
    assert!(err.to_string().contains("`tenure` appears twice"), "{err}");
    // The same key in different rows is of course fine.
    let ok = r#"{"dataframe_records": [{"tenure": 1, "plan": "pro", "active": true, "signup": 1},
                                       {"tenure": 2, "plan": "pro", "active": true, "signup": 1}]}"#;
    assert_eq!(decode_mlflow_json(ok.as_bytes(), &enc).unwrap().n_rows, 2);

    // CSV null markers are trimmed, as training reads them.
    let b = decode_csv(b"tenure,plan,active,signup\n NA ,pro,true, \n", &enc).unwrap();
    assert!(b.row(0)[0].is_nan() && b.row(0)[3].is_nan(), "{b:?}");
}

/// The row path gives the same predictions as the model's batch API on a dataset.
#[test]
fn scorers_match_batch_predictions() {
    let (ds, _) = data(Task::Classification);
    let rows: Vec<f64> = (0..ds.n_rows())
        .flat_map(|r| {
            ds.features().iter().map(move |f| match &f.kind {
                kiln_ml::FeatureKind::Numeric(v) => v[r],
                kiln_ml::FeatureKind::Categorical { codes, .. } => {
                    if codes[r] == MISSING_CODE {
                        f64::NAN
                    } else {
                        f64::from(codes[r])
                    }
                }
            })
        })
        .collect();
    let batch = Batch {
        n_rows: ds.n_rows(),
        n_features: 4,
        values: rows,
        texts: Vec::new(),
    };
    for model in [
        gbdt(Task::Classification),
        gbdt(Task::Regression),
        logistic(),
    ] {
        let expected = model.predict(&ds).unwrap();
        let scorer = KilnScorer::new(model);
        let got = scorer.predict(&batch).unwrap();
        match (expected, got) {
            (Predictions::Proba(a), Predictions::Proba(b)) => {
                for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                    assert!((x - y).abs() < 1e-12, "{} {x} {y}", scorer.flavor());
                }
            }
            (Predictions::Values(a), Predictions::Values(b)) => {
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-12, "{} {x} {y}", scorer.flavor());
                }
            }
            _ => panic!("prediction kinds differ"),
        }
    }
    // A signature listing the inputs in another order than the model's features.
    let mut model = gbdt(Task::Classification);
    let expected = model.predict(&ds).unwrap();
    model.signature.inputs.reverse();
    let scorer = KilnScorer::new(model);
    let mut reversed = batch.clone();
    for r in 0..batch.n_rows {
        let mut row = batch.row(r).to_vec();
        row.reverse();
        reversed.values[r * 4..r * 4 + 4].copy_from_slice(&row);
    }
    assert_eq!(scorer.predict(&reversed).unwrap(), expected);
}

fn loaded(model: KilnModel, version: &str) -> Loaded {
    Loaded {
        scorer: Arc::new(KilnScorer::new(model)),
        name: Some("churn".into()),
        version: Some(version.into()),
        run_id: None,
        source: format!("models:/churn/{version}"),
    }
}

fn state_with(limits: Limits) -> Arc<ServeState> {
    ServeState::new(loaded(gbdt(Task::Classification), "1"), None, limits)
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

const RECORDS: &str = r#"{"dataframe_records": [
    {"tenure": 3, "plan": "pro", "active": true, "signup": 1700000000},
    {"tenure": 70, "plan": "basic", "active": false, "signup": "2024-01-01"}]}"#;

#[tokio::test]
async fn invocations_and_v2_answer_with_the_model_predictions() {
    let state = state_with(Limits::default());
    let app = create_app(Arc::clone(&state));
    let model = gbdt(Task::Classification);
    let expected = match model
        .predict(
            &Dataset::new(vec![
                Feature::numeric("tenure", vec![3.0, 70.0]),
                Feature::categorical(
                    "plan",
                    vec![2, 0],
                    PLANS.iter().map(|s| (*s).to_string()).collect(),
                ),
                Feature::numeric("active", vec![1.0, 0.0]),
                Feature::numeric("signup", vec![1_700_000_000.0, 1_704_067_200.0]),
            ])
            .unwrap(),
        )
        .unwrap()
    {
        Predictions::Proba(p) => p,
        Predictions::Values(_) => panic!("classifier"),
    };

    let (status, body) = call(
        &app,
        "POST",
        "/invocations",
        Some("application/json"),
        RECORDS,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json(&body);
    let probs: Vec<Vec<f64>> = serde_json::from_value(v["probabilities"].clone()).unwrap();
    assert_eq!(probs, expected);
    let labels: Vec<serde_json::Value> = serde_json::from_value(v["predictions"].clone()).unwrap();
    for (label, p) in labels.iter().zip(&expected) {
        assert_eq!(label.as_i64(), Some(i64::from(p[1] > p[0])));
    }

    let csv = "tenure,plan,active,signup\n3,pro,true,1700000000\n70,basic,false,2024-01-01\n";
    let (status, body) = call(
        &app,
        "POST",
        "/invocations",
        Some("text/csv; charset=utf-8"),
        csv,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["probabilities"], v["probabilities"]);

    let infer = r#"{"id": "42", "inputs": [
        {"name": "tenure", "shape": [2], "datatype": "FP64", "data": [3, 70]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["pro", "basic"]},
        {"name": "active", "shape": [2], "datatype": "BOOL", "data": [true, false]},
        {"name": "signup", "shape": [2], "datatype": "FP64", "data": [1700000000, 1704067200]}]}"#;
    let (status, body) = call(&app, "POST", "/v2/models/churn/infer", None, infer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = json(&body);
    assert_eq!(r["model_name"], "churn");
    assert_eq!(r["model_version"], "1");
    assert_eq!(r["id"], "42");
    assert_eq!(r["outputs"][0]["name"], "predictions");
    assert_eq!(r["outputs"][0]["datatype"], "BYTES");
    assert_eq!(r["outputs"][1]["shape"], serde_json::json!([2, 2]));
    let flat: Vec<f64> = serde_json::from_value(r["outputs"][1]["data"].clone()).unwrap();
    assert_eq!(flat, expected.concat());
    let (status, _) = call(
        &app,
        "POST",
        "/v2/models/churn/versions/1/infer",
        None,
        infer,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = call(&app, "GET", "/v2/models/churn", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let meta = json(&body);
    assert_eq!(meta["versions"], serde_json::json!(["1"]));
    assert_eq!(meta["platform"], "kiln/gbdt");
    assert_eq!(meta["inputs"][1]["datatype"], "BYTES");
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/health",
        "/ping",
        "/v2",
        "/v2/models/churn/ready",
        "/version",
    ] {
        let (status, _) = call(&app, "GET", path, None, Body::empty()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, body) = call(&app, "GET", "/openapi.json", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let doc = json(&body);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/invocations"]["post"].is_object());
    for path in ["/invocations", "/v2/models/{name}/infer"] {
        let headers = &doc["paths"][path]["post"]["responses"]["200"]["headers"];
        for h in ["X-Request-Id", "X-Kiln-Model-Version", "X-Kiln-Arm"] {
            assert!(headers[h].is_object(), "{path} documents {h}: {headers}");
        }
    }
    assert_eq!(
        doc["components"]["schemas"]["Row"]["properties"]["plan"]["enum"][2],
        "pro"
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors_and_are_counted() {
    let state = state_with(Limits {
        max_body: 1024,
        offload_bytes: 512,
        ..Limits::default()
    });
    let app = create_app(Arc::clone(&state));

    let bad =
        r#"{"dataframe_records": [{"tenure": "abc", "plan": "pro", "active": true, "signup": 1}]}"#;
    let (status, body) = call(&app, "POST", "/invocations", Some("application/json"), bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e = json(&body);
    assert_eq!(e["error_code"], "BAD_REQUEST");
    assert_eq!(
        e["message"],
        "column `tenure`: expected a number, got \"abc\" (row 1)"
    );

    let (status, body) = call(&app, "POST", "/invocations", None, "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &app,
        "POST",
        "/invocations",
        Some("application/xml"),
        "<a/>",
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let big = format!(
        r#"{{"instances": [{}]}}"#,
        vec!["[1, \"pro\", true, 1]"; 100].join(",")
    );
    assert!(big.len() > 1024);
    let (status, body) = call(
        &app,
        "POST",
        "/invocations",
        Some("application/json"),
        big.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(json(&body)["error_code"], "REQUEST_LIMIT_EXCEEDED");
    let (status, _) = call(&app, "POST", "/v2/models/churn/infer", None, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A Content-Length over the limit is refused before the body is read: this body never
    // comes.
    let never = Body::from_stream(futures::stream::pending::<
        Result<bytes::Bytes, std::io::Error>,
    >());
    let req = Request::builder()
        .method("POST")
        .uri("/invocations")
        .header("content-type", "application/json")
        .header("content-length", "999999999")
        .body(never)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), app.clone().oneshot(req))
        .await
        .expect("answered before the body came")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Between offload_bytes and max_body: decoded on the blocking pool.
    let mid = format!(
        r#"{{"instances": [{}]}}"#,
        vec!["[1, \"pro\", true, 1]"; 30].join(",")
    );
    assert!(mid.len() > 512 && mid.len() < 1024);
    let (status, body) = call(&app, "POST", "/invocations", None, mid).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        json(&body)["predictions"].as_array().map(Vec::len),
        Some(30)
    );

    let (status, body) = call(&app, "POST", "/v2/models/other/infer", None, "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json(&body)["error"]
        .as_str()
        .unwrap()
        .contains("serves `churn`"));
    let (status, _) = call(
        &app,
        "POST",
        "/v2/models/churn/versions/9/infer",
        None,
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        &app,
        "POST",
        "/v2/models/churn/infer",
        None,
        r#"{"inputs": []}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["error"], "The request has no rows");
    let (status, body) = call(&app, "GET", "/nope", None, Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["error_code"], "RESOURCE_DOES_NOT_EXIST");
    let (status, _) = call(&app, "GET", "/invocations", None, Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let (status, text) = call(&app, "GET", "/metrics", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        r#"kiln_requests_total{model="churn",version="1",arm="main",endpoint="/invocations",code="400"} 2"#,
        r#"kiln_requests_total{model="churn",version="1",arm="main",endpoint="/invocations",code="415"} 1"#,
        r#"kiln_requests_total{model="churn",version="1",arm="main",endpoint="/invocations",code="413"} 2"#,
        r#"kiln_requests_total{model="churn",version="1",arm="main",endpoint="/invocations",code="200"} 1"#,
        r#"kiln_requests_total{model="churn",version="1",arm="main",endpoint="/v2/models/{name}/infer",code="404"} 2"#,
        r#"kiln_request_errors_total{model="churn",version="1",arm="main",endpoint="/invocations"} 5"#,
        r#"kiln_request_duration_seconds_count{model="churn",version="1",arm="main",endpoint="/invocations"} 6"#,
        r#"kiln_prediction_rows_total{model="churn",version="1",arm="main"} 30"#,
        r#"kiln_predictions_count{model="churn",version="1",arm="main"} 30"#,
        r#"kiln_model_info{model="churn",version="1",arm="main",flavor="kiln/gbdt"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
}

/// A registry stand-in: the alias points at `version`; loading fails for version "bad".
struct FakeRegistry {
    version: Mutex<String>,
}

impl ModelLoader for FakeRegistry {
    fn current_version(&self) -> Result<Option<String>, ServeError> {
        Ok(Some(self.version.lock().unwrap().clone()))
    }
    fn load(&self, version: Option<&str>) -> Result<Loaded, ServeError> {
        match version {
            Some("bad") => Err(ServeError::Internal("corrupt model".into())),
            Some(v) => Ok(loaded(gbdt(Task::Classification), v)),
            None => Ok(loaded(gbdt(Task::Classification), "1")),
        }
    }
}

#[tokio::test]
async fn watch_swaps_when_the_alias_moves_and_keeps_serving_on_a_bad_version() {
    let state = state_with(Limits::default());
    let app = create_app(Arc::clone(&state));
    let registry = Arc::new(FakeRegistry {
        version: Mutex::new("1".into()),
    });
    let held = state.routes.pick();
    let task = tokio::spawn(watch(
        Arc::clone(&state),
        Arc::clone(&registry) as Arc<dyn ModelLoader>,
        Duration::from_millis(10),
    ));
    *registry.version.lock().unwrap() = "bad".into();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(state.routes.pick().version, "1");
    *registry.version.lock().unwrap() = "2".into();
    let mut swapped = false;
    for _ in 0..200 {
        if state.routes.pick().version == "2" {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(swapped, "the watcher did not swap to version 2");
    // A request that started before the swap still holds version 1.
    assert_eq!(held.version, "1");
    let (_, body) = call(&app, "GET", "/health", None, Body::empty()).await;
    assert_eq!(json(&body)["version"], "2");
    let (_, body) = call(&app, "POST", "/v2/models/churn/infer", None,
        r#"{"inputs": [{"name": "m", "shape": [1, 4], "datatype": "BYTES", "data": [1, "pro", true, 1]}]}"#).await;
    assert_eq!(json(&body)["model_version"], "2");
    let (_, text) = call(&app, "GET", "/metrics", None, Body::empty()).await;
    assert!(
        text.contains(r#"kiln_model_info{model="churn",version="1",arm="main",flavor=""} 0"#),
        "{text}"
    );
    assert!(text
        .contains(r#"kiln_model_info{model="churn",version="2",arm="main",flavor="kiln/gbdt"} 1"#));
    assert!(text.contains("kiln_model_swaps_total 1"));
    assert!(!text.contains("kiln_model_load_failures_total 0"));
}

/// A registry whose alias is rolled back from 2 to 1 while version 2 loads.
struct RolledBackDuringLoad {
    version: Mutex<String>,
    loads: std::sync::atomic::AtomicUsize,
}

impl ModelLoader for RolledBackDuringLoad {
    fn current_version(&self) -> Result<Option<String>, ServeError> {
        Ok(Some(self.version.lock().unwrap().clone()))
    }
    fn load(&self, version: Option<&str>) -> Result<Loaded, ServeError> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if version == Some("2") {
            *self.version.lock().unwrap() = "1".into();
        }
        Ok(loaded(gbdt(Task::Classification), version.unwrap_or("1")))
    }
}

#[tokio::test]
async fn a_rollback_during_a_load_wins_over_the_loaded_version() {
    let state = state_with(Limits::default());
    let registry = Arc::new(RolledBackDuringLoad {
        version: Mutex::new("2".into()),
        loads: Default::default(),
    });
    let task = tokio::spawn(watch(
        Arc::clone(&state),
        Arc::clone(&registry) as Arc<dyn ModelLoader>,
        Duration::from_millis(10),
    ));
    for _ in 0..100 {
        assert_eq!(
            state.routes.pick().version,
            "1",
            "served a rolled-back version"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    task.abort();
    assert!(registry.loads.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

/// A registry whose alias points at a version that never loads; counts the tries.
struct AlwaysBroken {
    loads: std::sync::atomic::AtomicUsize,
}

impl ModelLoader for AlwaysBroken {
    fn current_version(&self) -> Result<Option<String>, ServeError> {
        Ok(Some("broken".into()))
    }
    fn load(&self, _version: Option<&str>) -> Result<Loaded, ServeError> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(ServeError::Internal("corrupt model".into()))
    }
}

#[tokio::test]
async fn a_version_that_fails_to_load_is_retried_with_backoff() {
    let state = state_with(Limits::default());
    let registry = Arc::new(AlwaysBroken {
        loads: Default::default(),
    });
    let task = tokio::spawn(watch(
        Arc::clone(&state),
        Arc::clone(&registry) as Arc<dyn ModelLoader>,
        Duration::from_millis(10),
    ));
    let loads = || registry.loads.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while loads() == 0 {
        assert!(std::time::Instant::now() < deadline, "never tried");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Then about 40 polls: tries after 1, 2, 4, 8, 16 intervals, not one per poll (a slow
    // machine only makes fewer).
    let first = loads();
    tokio::time::sleep(Duration::from_millis(400)).await;
    task.abort();
    let again = loads() - first;
    assert!(again <= 6, "{again} more loads in about 40 polls");
    assert_eq!(
        state.routes.pick().version,
        "1",
        "still serving the loaded version"
    );
}

#[test]
fn parses_sizes_and_durations() {
    assert_eq!(crate::parse_size("10MiB"), Ok(10 * 1024 * 1024));
    assert_eq!(crate::parse_size("512kb"), Ok(512_000));
    assert_eq!(crate::parse_size("2048"), Ok(2048));
    assert!(crate::parse_size("ten").is_err());
    assert!(crate::parse_size("0").is_err());
    assert!(crate::parse_size("1XB").is_err());
    assert_eq!(crate::parse_duration("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(
        crate::parse_duration("200ms"),
        Ok(Duration::from_millis(200))
    );
    assert_eq!(crate::parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(
        crate::parse_duration("100us"),
        Ok(Duration::from_micros(100))
    );
    assert!(crate::parse_duration("-1s").is_err());
    assert!(crate::parse_duration("5 parsecs").is_err());
}

/// A categorical input without a vocabulary (an ONNX string input) takes any text.
#[test]
fn open_text_inputs_keep_their_strings() {
    let mut sig = signature(Task::Classification);
    sig.inputs[1].categories.clear();
    let enc = Encoder::new(&sig);
    let body = r#"{"instances": [[1, "gold", true, 1], [2, null, false, 2], [3, 7, true, 3]]}"#;
    let b = decode_mlflow_json(body.as_bytes(), &enc).unwrap();
    let texts: Vec<&str> = b.texts.iter().map(|t| &**t).collect();
    assert_eq!(texts, ["gold", "7"]);
    assert_eq!(b.row(0)[1], 0.0);
    assert!(b.row(1)[1].is_nan());
    assert_eq!(b.row(2)[1], 1.0);
}

// ---- release practices: canary, sticky routing, shadow, prediction log, micro-batching

/// A request with headers; returns status, headers and body.
async fn call_with(
    app: &axum::Router,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn header<'a>(h: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

const INFER: &str = r#"{"id": "7", "inputs": [
    {"name": "tenure", "shape": [2], "datatype": "FP64", "data": [3, 70]},
    {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["pro", "basic"]},
    {"name": "active", "shape": [2], "datatype": "BOOL", "data": [true, false]},
    {"name": "signup", "shape": [2], "datatype": "INT64", "data": [1700000000, 1704067200]}]"#;

#[tokio::test]
async fn v2_follows_the_open_inference_protocol() {
    let app = create_app(state_with(Limits::default()));
    let infer = |extra: &str| format!("{INFER}{extra}}}");

    // `outputs` picks the tensors returned, in the asked order; an unknown one is a 400.
    let body = infer(r#", "outputs": [{"name": "probabilities"}]"#);
    let (status, text) = call(&app, "POST", "/v2/models/churn/infer", None, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let r = json(&text);
    assert_eq!(r["outputs"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(r["outputs"][0]["name"], "probabilities");
    let body = infer(r#", "outputs": [{"name": "probabilities"}, {"name": "predictions"}]"#);
    let r = json(
        &call(&app, "POST", "/v2/models/churn/infer", None, body)
            .await
            .1,
    );
    assert_eq!(r["outputs"][1]["name"], "predictions");
    let (status, text) = call(
        &app,
        "POST",
        "/v2/models/churn/infer",
        None,
        infer(r#", "outputs": [{"name": "nope"}]"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&text)["error"]
            .as_str()
            .unwrap()
            .contains("unknown output `nope`; this model's outputs are predictions, probabilities"),
        "{text}"
    );

    // Values must be what the tensor's datatype says.
    for (tensor, expected) in [
        (
            r#"{"name": "tenure", "shape": [1], "datatype": "INT64", "data": [1.5]}"#,
            "is INT64: its value 1.5 (index 0 of data) is not a whole number",
        ),
        (
            r#"{"name": "tenure", "shape": [1], "datatype": "UINT8", "data": [-3]}"#,
            "is not a whole number from 0 to 255",
        ),
        (
            r#"{"name": "tenure", "shape": [1], "datatype": "FP64", "data": ["3"]}"#,
            "is not a number that FP64 holds",
        ),
        (
            r#"{"name": "tenure", "shape": [1], "datatype": "FP32", "data": [1e39]}"#,
            "is not a number that FP32 holds",
        ),
        (
            r#"{"name": "active", "shape": [1], "datatype": "BOOL", "data": [1]}"#,
            "is not true or false",
        ),
    ] {
        let body = format!(
            r#"{{"inputs": [{{"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]}}, {tensor}]}}"#
        );
        let (status, text) = call(&app, "POST", "/v2/models/churn/infer", None, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{tensor}: {text}");
        assert!(
            json(&text)["error"].as_str().unwrap().contains(expected),
            "{tensor}: {text}"
        );
    }
    // The largest FP32, spelled as clients spell it, is an FP32; a tensor named after no input
    // is ignored (pandas codecs send every column of a frame), as extra columns are elsewhere.
    let body = r#"{"inputs": [
        {"name": "tenure", "shape": [2], "datatype": "FP32", "data": [3.4028235e38, 1]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["pro", "basic"]},
        {"name": "active", "shape": [2], "datatype": "BOOL", "data": [true, false]},
        {"name": "signup", "shape": [2], "datatype": "INT64", "data": [1700000000, 1704067200]},
        {"name": "customer_id", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "c"]}]}"#;
    let (status, text) = call(&app, "POST", "/v2/models/churn/infer", None, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // A long shape is not echoed whole.
    let shape = vec!["1"; 5000].join(",");
    let body = format!(
        r#"{{"inputs": [{{"name": "tenure", "shape": [{shape}], "datatype": "FP64", "data": [1, 2]}}]}}"#
    );
    let (status, text) = call(&app, "POST", "/v2/models/churn/infer", None, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.len() < 500 && text.contains("(5000 dimensions)"),
        "{text}"
    );

    // Versioned readiness, and the protocol's error body on unknown paths and methods.
    let (status, text) = call(
        &app,
        "GET",
        "/v2/models/churn/versions/1/ready",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json(&text)["ready"], true);
    let (status, text) = call(
        &app,
        "GET",
        "/v2/models/churn/versions/2/ready",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json(&text)["error"].is_string(), "{text}");
    let (status, text) = call(&app, "GET", "/v2/models/churn/foo", None, Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json(&text)["error"].is_string(), "{text}");
    let (status, text) = call(&app, "GET", "/v2/models/churn/infer", None, Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(json(&text)["error"].is_string(), "{text}");
    let (status, text) = call(&app, "GET", "/nope", None, Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        json(&text)["error_code"],
        "RESOURCE_DOES_NOT_EXIST",
        "{text}"
    );
}

/// A classifier whose second row comes out as NaN.
struct NanScorer {
    signature: Signature,
}

impl Scorer for NanScorer {
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn flavor(&self) -> &str {
        "test/nan"
    }
    fn predict(&self, batch: &Batch) -> Result<Predictions, ServeError> {
        Ok(Predictions::Proba(
            (0..batch.n_rows)
                .map(|i| {
                    if i == 1 {
                        vec![f64::NAN, f64::NAN]
                    } else {
                        vec![0.25, 0.75]
                    }
                })
                .collect(),
        ))
    }
}

#[tokio::test]
async fn a_nan_output_is_a_400_naming_the_row_and_keeps_metrics_finite() {
    let state = ServeState::new(
        Loaded {
            scorer: Arc::new(NanScorer {
                signature: signature(Task::Classification),
            }),
            name: Some("churn".into()),
            version: Some("1".into()),
            run_id: None,
            source: "models:/churn/1".into(),
        },
        None,
        Limits::default(),
    );
    let app = create_app(state);
    let (status, text) = call(
        &app,
        "POST",
        "/invocations",
        Some("application/json"),
        RECORDS,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let v = json(&text);
    assert_eq!(v["error_code"], "BAD_REQUEST");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("output for row 2 is NaN"),
        "{text}"
    );
    let (status, text) = call(
        &app,
        "POST",
        "/v2/models/churn/infer",
        None,
        format!("{INFER}}}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        json(&text)["error"].as_str().unwrap().contains("row 2"),
        "{text}"
    );
    let metrics = call(&app, "GET", "/metrics", None, Body::empty()).await.1;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok_and(f64::is_finite), "{line}");
    }
}

/// A scorer that fails, or sleeps, for the shadow arm.
struct OddScorer {
    signature: Signature,
    sleep: Duration,
}

impl Scorer for OddScorer {
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn flavor(&self) -> &str {
        "test/odd"
    }
    fn predict(&self, _batch: &Batch) -> Result<Predictions, ServeError> {
        std::thread::sleep(self.sleep);
        Err(ServeError::Internal("the shadow model is broken".into()))
    }
}

fn canary_state(percent: f64, sticky: Option<&str>) -> Arc<ServeState> {
    ServeState::with_arms(
        crate::Arms {
            main: loaded(gbdt(Task::Classification), "1"),
            canary: Some((loaded(logistic(), "2"), percent)),
            shadow: None,
            sticky_header: sticky.map(str::to_string),
        },
        None,
        Limits::default(),
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn canary_takes_its_share_and_sticky_callers_stay_on_one_arm() {
    let state = canary_state(30.0, Some("X-User-Id"));
    let app = create_app(Arc::clone(&state));
    let n = 2000;
    let mut canary = 0;
    for _ in 0..n {
        let (status, h, _) = call_with(&app, "/invocations", &[], RECORDS).await;
        assert_eq!(status, StatusCode::OK);
        match (header(&h, "x-kiln-arm"), header(&h, "x-kiln-model-version")) {
            ("canary", "2") => canary += 1,
            ("main", "1") => {}
            other => panic!("unexpected arm/version {other:?}"),
        }
        assert_eq!(header(&h, "x-request-id").len(), 32);
    }
    // 30 % of 2,000 = 600; 4 standard deviations ≈ ±82.
    assert!(
        (518..=682).contains(&canary),
        "{canary} of {n} on the canary"
    );

    // Sticky: a user always lands on the arm its hash picks, whatever the draw.
    let mut arms = std::collections::BTreeSet::new();
    for user in 0..40 {
        let id = format!("user-{user}");
        let want = state
            .routes
            .arm_for_key(crate::sticky_hash(id.as_bytes()))
            .as_str();
        arms.insert(want);
        for _ in 0..5 {
            let (_, h, _) = call_with(&app, "/invocations", &[("x-user-id", &id)], RECORDS).await;
            assert_eq!(header(&h, "x-kiln-arm"), want, "{id}");
        }
    }
    assert_eq!(arms.len(), 2, "40 users should land on both arms");

    // The request id is echoed when the caller sends one.
    let (_, h, _) = call_with(
        &app,
        "/invocations",
        &[("x-request-id", "abc-123")],
        RECORDS,
    )
    .await;
    assert_eq!(header(&h, "x-request-id"), "abc-123");
    // ... and replaced when it has spaces or tabs (ids are logged and joined on).
    let (_, h, _) = call_with(&app, "/invocations", &[("x-request-id", "a b")], RECORDS).await;
    assert_eq!(header(&h, "x-request-id").len(), 32);

    // An empty sticky header is no key: such callers are split like the rest.
    let mut on_canary = 0;
    for _ in 0..200 {
        let (_, h, _) = call_with(&app, "/invocations", &[("x-user-id", "")], RECORDS).await;
        on_canary += usize::from(header(&h, "x-kiln-arm") == "canary");
    }
    assert!(
        (20..=100).contains(&on_canary),
        "{on_canary} of 200 on the canary"
    );

    // /metrics: one series per version and arm.
    let (_, text) = call(&app, "GET", "/metrics", None, Body::empty()).await;
    assert!(
        text.contains(
            r#"kiln_model_info{model="churn",version="2",arm="canary",flavor="kiln/logistic"} 1"#
        ),
        "{text}"
    );
    assert!(text
        .contains(r#"kiln_model_info{model="churn",version="1",arm="main",flavor="kiln/gbdt"} 1"#));
    assert!(text.contains(r#"kiln_requests_total{model="churn",version="2",arm="canary",endpoint="/invocations",code="200"}"#));

    // Both loaded versions have their metadata; an unknown one is a 404 naming both.
    for version in ["1", "2"] {
        let path = format!("/v2/models/churn/versions/{version}");
        let (status, body) = call(&app, "GET", &path, None, Body::empty()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(json(&body)["versions"][0], version, "{body}");
    }
    let (status, body) = call(
        &app,
        "GET",
        "/v2/models/churn/versions/9",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains("the loaded versions are `1` and `2`"),
        "{body}"
    );

    // 0 % and 100 % are exact.
    for (percent, arm) in [(0.0, "main"), (100.0, "canary")] {
        let app = create_app(canary_state(percent, None));
        for _ in 0..50 {
            let (_, h, _) = call_with(&app, "/invocations", &[], RECORDS).await;
            assert_eq!(header(&h, "x-kiln-arm"), arm);
        }
    }
    assert!(ServeState::with_arms(
        crate::Arms {
            main: loaded(gbdt(Task::Classification), "1"),
            canary: Some((loaded(logistic(), "2"), 120.0)),
            shadow: None,
            sticky_header: None,
        },
        None,
        Limits::default(),
        None,
    )
    .is_err());
}

#[tokio::test]
async fn a_broken_or_slow_shadow_never_changes_or_delays_the_answer() {
    let plain = create_app(state_with(Limits::default()));
    let (_, want) = call(
        &plain,
        "POST",
        "/invocations",
        Some("application/json"),
        RECORDS,
    )
    .await;
    let state = ServeState::with_arms(
        crate::Arms {
            main: loaded(gbdt(Task::Classification), "1"),
            canary: None,
            shadow: Some(Loaded {
                scorer: Arc::new(OddScorer {
                    signature: signature(Task::Classification),
                    sleep: Duration::from_millis(50),
                }),
                name: Some("churn".into()),
                version: Some("9".into()),
                run_id: None,
                source: "models:/churn/9".into(),
            }),
            sticky_header: None,
        },
        None,
        Limits::default(),
        None,
    )
    .unwrap();
    let app = create_app(Arc::clone(&state));
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let (status, h, body) = call_with(&app, "/invocations", &[], RECORDS).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, want);
        assert_eq!(header(&h, "x-kiln-arm"), "main");
    }
    // Ten shadow predictions take 500 ms; the answers did not wait for them.
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    // The shadow works through its queue while the server runs.
    let shadow_done = r#"kiln_requests_total{model="churn",version="9",arm="shadow",endpoint="/invocations",code="500"} 10"#;
    let mut text = String::new();
    for _ in 0..500 {
        text = call(&app, "GET", "/metrics", None, Body::empty()).await.1;
        if text.contains(shadow_done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(text.contains(shadow_done), "{text}");
    assert!(text.contains(r#"kiln_requests_total{model="churn",version="1",arm="main",endpoint="/invocations",code="200"} 10"#));

    // At shutdown, copies still queued are dropped and counted instead of holding the exit.
    for _ in 0..5 {
        let (status, _, _) = call_with(&app, "/invocations", &[], RECORDS).await;
        assert_eq!(status, StatusCode::OK);
    }
    let s = Arc::clone(&state);
    tokio::task::spawn_blocking(move || s.finish(Duration::from_secs(30)))
        .await
        .unwrap();
    let text = call(&app, "GET", "/metrics", None, Body::empty()).await.1;
    let value = |prefix: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let scored = value(
        r#"kiln_requests_total{model="churn",version="9",arm="shadow",endpoint="/invocations",code="500"}"#,
    );
    let dropped = value("kiln_shadow_dropped_total");
    assert_eq!(scored + dropped, 15, "{text}");
    assert!(dropped >= 1, "finish scored the whole backlog: {text}");
}

/// A shadow scorer that says when it has started, then hangs.
struct StuckScorer {
    signature: Signature,
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl Scorer for StuckScorer {
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn flavor(&self) -> &str {
        "test/stuck"
    }
    fn predict(&self, _batch: &Batch) -> Result<Predictions, ServeError> {
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(20));
        Err(ServeError::Internal("stuck".into()))
    }
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_stuck_shadow_past_the_deadline() {
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = ServeState::with_arms(
        crate::Arms {
            main: loaded(gbdt(Task::Classification), "1"),
            canary: None,
            shadow: Some(Loaded {
                scorer: Arc::new(StuckScorer {
                    signature: signature(Task::Classification),
                    started: Arc::clone(&started),
                }),
                name: Some("churn".into()),
                version: Some("9".into()),
                run_id: None,
                source: "models:/churn/9".into(),
            }),
            sticky_header: None,
        },
        None,
        Limits::default(),
        None,
    )
    .unwrap();
    let app = create_app(Arc::clone(&state));
    for _ in 0..3 {
        let (status, _, _) = call_with(&app, "/invocations", &[], RECORDS).await;
        assert_eq!(status, StatusCode::OK);
    }
    // The shadow is stuck in its first copy; the exit leaves it after its share of the deadline.
    for _ in 0..1000 {
        if started.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        started.load(std::sync::atomic::Ordering::SeqCst),
        "the shadow never started"
    );
    let s = Arc::clone(&state);
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || s.finish(Duration::from_millis(400)))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "finish waited for the stuck shadow: {:?}",
        started.elapsed()
    );
}

fn read_log(dir: &std::path::Path) -> Vec<arrow_array::RecordBatch> {
    let mut files: Vec<_> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("predictions-") && name.ends_with(".parquet"),
            "{name}"
        );
        let file = fs_err::File::open(&f).unwrap().into_parts().0;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        out.push(arrow_select_concat(&batches));
    }
    out
}

fn arrow_select_concat(batches: &[arrow_array::RecordBatch]) -> arrow_array::RecordBatch {
    assert_eq!(batches.len(), 1, "one row group per test file");
    batches[0].clone()
}

fn strings(batch: &arrow_array::RecordBatch, column: &str) -> Vec<Option<String>> {
    use arrow_array::Array as _;
    let col = batch.column_by_name(column).unwrap();
    let a = col
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect()
}

#[tokio::test]
async fn the_prediction_log_writes_rotating_parquet_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = crate::LogConfig {
        sample: 1.0,
        rotate_rows: 4,
        ..crate::LogConfig::new(dir.path().display().to_string())
    };
    let state = ServeState::with_arms(
        crate::Arms::single(loaded(gbdt(Task::Classification), "1")),
        None,
        Limits::default(),
        Some(log),
    )
    .unwrap();
    let app = create_app(Arc::clone(&state));
    let mut answers = Vec::new();
    // 5 requests of 2 rows: files of 4, 4 and 2 rows.
    for i in 0..5 {
        let id = format!("req-{i}");
        let (status, h, body) =
            call_with(&app, "/invocations", &[("x-request-id", &id)], RECORDS).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "x-request-id"), id);
        answers.push(json(&body));
    }
    // A failed request is not logged.
    let (status, _, _) = call_with(&app, "/invocations", &[], r#"{"dataframe_records": []}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let s = Arc::clone(&state);
    tokio::task::spawn_blocking(move || s.finish(Duration::from_secs(30)))
        .await
        .unwrap();

    let files = read_log(dir.path());
    let rows: Vec<usize> = files
        .iter()
        .map(arrow_array::RecordBatch::num_rows)
        .collect();
    assert_eq!(rows, [4, 4, 2]);
    let schema = files[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "timestamp",
            "request_id",
            "row",
            "model",
            "version",
            "arm",
            "latency_us",
            "inputs",
            "prediction",
            "probabilities"
        ]
    );
    let all: Vec<(String, String, String, String, String, String)> = files
        .iter()
        .flat_map(|b| {
            let (r, m, v, a, i, p) = (
                strings(b, "request_id"),
                strings(b, "model"),
                strings(b, "version"),
                strings(b, "arm"),
                strings(b, "inputs"),
                strings(b, "probabilities"),
            );
            (0..b.num_rows())
                .map(|k| {
                    (
                        r[k].clone().unwrap(),
                        m[k].clone().unwrap(),
                        v[k].clone().unwrap(),
                        a[k].clone().unwrap(),
                        i[k].clone().unwrap(),
                        p[k].clone().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(all.len(), 10);
    for (k, (rid, model, version, arm, inputs, proba)) in all.iter().enumerate() {
        assert_eq!(rid, &format!("req-{}", k / 2));
        assert_eq!(
            (model.as_str(), version.as_str(), arm.as_str()),
            ("churn", "1", "main")
        );
        let inputs = json(inputs);
        let proba = json(proba);
        assert_eq!(proba, answers[k / 2]["probabilities"][k % 2], "row {k}");
        if k % 2 == 0 {
            assert_eq!(
                inputs,
                serde_json::json!({"tenure": 3.0, "plan": "pro", "active": true, "signup": 1.7e9})
            );
        } else {
            assert_eq!(inputs["plan"], "basic");
            assert_eq!(inputs["active"], false);
        }
    }
    let (_, text) = call(&app, "GET", "/metrics", None, Body::empty()).await;
    assert!(
        text.contains("kiln_prediction_log_records_total 10"),
        "{text}"
    );
    assert!(text.contains("kiln_prediction_log_files_total 3"), "{text}");
    assert!(
        text.contains("kiln_prediction_log_dropped_total 0"),
        "{text}"
    );
}

#[test]
fn a_full_prediction_log_queue_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(crate::Metrics::default());
    let log = crate::PredictionLog::start(
        crate::LogConfig {
            sample: 1.0,
            queue: 1,
            ..crate::LogConfig::new(dir.path().display().to_string())
        },
        Arc::clone(&metrics),
    )
    .unwrap();
    let state = state_with(Limits::default());
    let model = state.routes.pick();
    let batch = decode_mlflow_json(RECORDS.as_bytes(), &model.encoder).unwrap();
    let predictions = model.scorer.predict(&batch).unwrap();
    let id = axum::http::HeaderValue::from_static("x");
    for _ in 0..2000 {
        log.submit(crate::predlog::LogRecord::new(
            Arc::clone(&model),
            &id,
            Duration::from_micros(5),
            batch.clone(),
            predictions.clone(),
        ));
    }
    assert!(log.finish(Duration::from_secs(30)));
    let (records, dropped, files, errors, _) = metrics.log_counts();
    assert!(dropped > 0, "a one-slot queue should overflow");
    assert_eq!(records / 2 + dropped, 2000);
    // Rows dropped count like rows queued: two per request here.
    let dropped_rows = metrics
        .log_dropped_rows
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped_rows, 2 * dropped);
    assert_eq!(records + dropped_rows, 4000);
    assert_eq!((files, errors), (1, 0));
    let rows: usize = read_log(dir.path())
        .iter()
        .map(arrow_array::RecordBatch::num_rows)
        .sum();
    assert_eq!(rows as u64, records);
    // Nothing is sampled at 0.
    let none = crate::PredictionLog::start(
        crate::LogConfig {
            sample: 0.0,
            ..crate::LogConfig::new(dir.path().display().to_string())
        },
        Arc::new(crate::Metrics::default()),
    )
    .unwrap();
    assert!((0..1000).all(|_| !none.sampled()));
    assert!(none.finish(Duration::from_secs(30)));
    assert!(crate::PredictionLog::start(
        crate::LogConfig {
            sample: 1.5,
            ..crate::LogConfig::new(dir.path().display().to_string())
        },
        Arc::new(crate::Metrics::default()),
    )
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn micro_batches_answer_every_request_with_its_own_rows() {
    let plain = create_app(state_with(Limits::default()));
    let batched_state = state_with(Limits {
        batch_max_rows: Some(16),
        ..Limits::default()
    });
    let batched = create_app(Arc::clone(&batched_state));
    let bodies: Vec<String> = (0..64)
        .map(|i| {
            format!(
                r#"{{"dataframe_records": [{{"tenure": {i}, "plan": "{}", "active": {}, "signup": {}}}]}}"#,
                PLANS[i % 3],
                i % 2 == 0,
                1_600_000_000 + i * 86_400
            )
        })
        .collect();
    let mut want = Vec::new();
    for b in &bodies {
        want.push(
            call(
                &plain,
                "POST",
                "/invocations",
                Some("application/json"),
                b.clone(),
            )
            .await
            .1,
        );
    }
    for _ in 0..5 {
        let tasks: Vec<_> = bodies
            .iter()
            .map(|b| {
                let (app, b) = (batched.clone(), b.clone());
                tokio::spawn(async move {
                    call(&app, "POST", "/invocations", Some("application/json"), b).await
                })
            })
            .collect();
        for (t, w) in tasks.into_iter().zip(&want) {
            let (status, body) = t.await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body, w);
        }
    }
    // A bad row in a batch fails only its own request.
    let (status, _) = call(
        &batched,
        "POST",
        "/invocations",
        Some("application/json"),
        r#"{"dataframe_records": [{"tenure": "x", "plan": "pro", "active": true, "signup": 1}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn a_big_request_is_logged_in_row_groups_and_a_removed_log_directory_comes_back() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("logs");
    let metrics = Arc::new(crate::Metrics::default());
    let log = crate::PredictionLog::start(
        crate::LogConfig {
            sample: 1.0,
            rotate_rows: 1_000_000,
            rotate_interval: Duration::from_millis(50),
            ..crate::LogConfig::new(dir.display().to_string())
        },
        Arc::clone(&metrics),
    )
    .unwrap();
    let state = state_with(Limits::default());
    let model = state.routes.pick();
    let row = r#"{"tenure": 3, "plan": "pro", "active": true, "signup": 1700000000}"#;
    let body = format!(
        r#"{{"dataframe_records": [{}]}}"#,
        vec![row; 20_000].join(",")
    );
    let batch = decode_mlflow_json(body.as_bytes(), &model.encoder).unwrap();
    let predictions = model.scorer.predict(&batch).unwrap();
    let id = axum::http::HeaderValue::from_static("big");
    let submit = |batch: &crate::encode::Batch| {
        log.submit(crate::predlog::LogRecord::new(
            Arc::clone(&model),
            &id,
            Duration::from_micros(5),
            batch.clone(),
            predictions.clone(),
        ));
    };
    submit(&batch);
    // The first file closes at its age; then the directory goes, and the next file makes it again.
    let wait_files = |n: u64| {
        for _ in 0..500 {
            if metrics.log_counts().2 >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no file {n}: {:?}", metrics.log_counts());
    };
    wait_files(1);
    let first: Vec<_> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(first.len(), 1);
    let file = fs_err::File::open(&first[0]).unwrap().into_parts().0;
    let groups = parquet::file::reader::SerializedFileReader::new(file)
        .map(|r| parquet::file::reader::FileReader::metadata(&r).num_row_groups())
        .unwrap();
    assert_eq!(groups, 3, "20,000 rows in row groups of 8,192");
    fs_err::remove_dir_all(&dir).unwrap();
    submit(&batch);
    assert!(log.finish(Duration::from_secs(30)));
    let (records, dropped, files, errors, _) = metrics.log_counts();
    assert_eq!((records, dropped, files, errors), (40_000, 0, 2, 0));
    let rows: usize = fs_err::read_dir(&dir).unwrap().count();
    assert_eq!(rows, 1, "the second file, in the directory made again");
}

#[test]
fn queue_byte_budget_admits_one_big_item_and_bounds_the_rest() {
    let budget = crate::predlog::ByteBudget::default();
    assert!(
        budget.try_take(500, 100),
        "one item of any size when nothing waits"
    );
    assert!(!budget.try_take(1, 100));
    budget.give(500);
    assert!(budget.try_take(60, 100));
    assert!(budget.try_take(40, 100));
    assert!(!budget.try_take(1, 100));
    budget.give(40);
    assert!(budget.try_take(30, 100));
}

#[test]
fn starting_the_log_removes_files_a_killed_server_left_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir
        .path()
        .join(".predictions-20260101T000000.000Z-00001.parquet.tmp");
    let fresh = dir
        .path()
        .join(".predictions-20260101T000000.000Z-00002.parquet.tmp");
    let other = dir.path().join("notes.tmp");
    for f in [&old, &fresh, &other] {
        fs_err::write(f, b"PAR1 no footer").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for f in [&old, &other] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    let log = crate::PredictionLog::start(
        crate::LogConfig::new(dir.path().display().to_string()),
        Arc::new(crate::Metrics::default()),
    )
    .unwrap();
    assert!(!old.exists(), "an hour-old unfinished file is removed");
    assert!(fresh.exists(), "a recent one may belong to a live replica");
    assert!(other.exists(), "only the log's own files");
    assert!(log.finish(Duration::from_secs(30)));
}

/// The canary's alias: `None` once it was removed from the registry.
struct CanaryAlias {
    version: Mutex<Option<String>>,
}

impl ModelLoader for CanaryAlias {
    fn current_version(&self) -> Result<Option<String>, ServeError> {
        match self.version.lock().unwrap().clone() {
            Some(v) => Ok(Some(v)),
            None => Err(ServeError::NotFound(
                "Registered model alias challenger not found.".into(),
            )),
        }
    }
    fn load(&self, version: Option<&str>) -> Result<Loaded, ServeError> {
        match version {
            Some("bad") => Err(ServeError::Internal("corrupt model".into())),
            v => Ok(loaded(logistic(), v.unwrap_or("2"))),
        }
    }
}

#[tokio::test]
async fn removing_the_canary_alias_sends_all_traffic_to_the_main_arm_until_it_is_back() {
    let state = canary_state(50.0, None);
    let app = create_app(Arc::clone(&state));
    let alias = Arc::new(CanaryAlias {
        version: Mutex::new(Some("2".into())),
    });
    let task = tokio::spawn(crate::watch_arm(
        Arc::clone(&state),
        crate::Arm::Canary,
        Arc::clone(&alias) as Arc<dyn ModelLoader>,
        Duration::from_millis(10),
    ));
    let canary_share = |state: &Arc<ServeState>| {
        (0..400)
            .filter(|_| state.routes.route(&axum::http::HeaderMap::new()).arm == crate::Arm::Canary)
            .count()
    };
    assert!(canary_share(&state) > 100, "a 50 % canary");
    *alias.version.lock().unwrap() = None;
    let mut withdrawn = false;
    for _ in 0..2000 {
        if state.routes.canary_withdrawn() {
            withdrawn = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(withdrawn, "the watcher did not withdraw the canary");
    assert_eq!(canary_share(&state), 0);
    let (_, body) = call(&app, "GET", "/health", None, Body::empty()).await;
    assert_eq!(json(&body)["arms"][1]["withdrawn"], true, "{body:?}");
    // Set again to a version that does not load: the aborted canary stays out.
    *alias.version.lock().unwrap() = Some("bad".into());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        state.routes.canary_withdrawn(),
        "back before its new version loaded"
    );
    *alias.version.lock().unwrap() = Some("2".into());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.routes.canary_withdrawn() {
        assert!(
            std::time::Instant::now() < deadline,
            "the canary did not come back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    assert!(canary_share(&state) > 100, "back to its share");
}
