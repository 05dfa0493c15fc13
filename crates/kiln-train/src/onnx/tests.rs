//! ONNX graphs built in code (the shapes skl2onnx emits), run through [`OnnxModel`].

use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::*;

fn floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Floats as i32,
        floats: v.to_vec(),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn text(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn texts(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Strings as i32,
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        domain: "ai.onnx.ml".into(),
        name: format!("{op}_node"),
        input: inputs.iter().map(|s| (*s).to_string()).collect(),
        output: outputs.iter().map(|s| (*s).to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn value(name: &str, elem: DataType, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => dimension::Value::DimValue(*v),
                                None => dimension::Value::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    meta: &[(&str, &str)],
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        producer_name: "kiln-test".into(),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 15,
            },
            OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 1,
            },
        ],
        metadata_props: meta
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Scaler + LinearRegressor on an `[N, 2]` input.
fn linear_regressor(meta: &[(&str, &str)]) -> Vec<u8> {
    model(
        vec![
            node(
                "Scaler",
                &["X"],
                &["scaled"],
                vec![floats("offset", &[1.0, 2.0]), floats("scale", &[0.5, 2.0])],
            ),
            node(
                "LinearRegressor",
                &["scaled"],
                &["variable"],
                vec![
                    floats("coefficients", &[3.0, -1.0]),
                    floats("intercepts", &[0.5]),
                ],
            ),
        ],
        vec![value("X", DataType::Float, &[None, Some(2)])],
        vec![value("variable", DataType::Float, &[None, Some(1)])],
        meta,
    )
}

/// A binary LinearClassifier (string labels) with LOGISTIC, optionally behind a ZipMap.
fn linear_classifier(zipmap: bool) -> Vec<u8> {
    let mut nodes = vec![node(
        "LinearClassifier",
        &["X"],
        &["label", "probabilities"],
        vec![
            floats("coefficients", &[1.0, -2.0]),
            floats("intercepts", &[0.25]),
            texts("classlabels_strings", &["no", "yes"]),
            text("post_transform", "LOGISTIC"),
        ],
    )];
    let mut outputs = vec![value("label", DataType::String, &[None])];
    if zipmap {
        nodes.push(node(
            "ZipMap",
            &["probabilities"],
            &["output_probability"],
            vec![texts("classlabels_strings", &["no", "yes"])],
        ));
        outputs.push(ValueInfoProto {
            name: "output_probability".into(),
            ..Default::default()
        });
    } else {
        outputs.push(value("probabilities", DataType::Float, &[None, Some(2)]));
    }
    model(
        nodes,
        vec![value("X", DataType::Float, &[None, Some(2)])],
        outputs,
        &[],
    )
}

/// One-input-per-column regressor: a tree (x <= 0.5 → 1, else 3) on `a` plus a stump on `b`,
/// concatenated by a FeatureVectorizer.
fn tree_regressor() -> Vec<u8> {
    model(
        vec![
            node(
                "FeatureVectorizer",
                &["a", "b"],
                &["features"],
                vec![ints("inputdimensions", &[1, 1])],
            ),
            node(
                "TreeEnsembleRegressor",
                &["features"],
                &["variable"],
                vec![
                    ints("nodes_treeids", &[0, 0, 0, 1, 1, 1]),
                    ints("nodes_nodeids", &[0, 1, 2, 0, 1, 2]),
                    ints("nodes_featureids", &[0, 0, 0, 1, 0, 0]),
                    texts(
                        "nodes_modes",
                        &["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"],
                    ),
                    floats("nodes_values", &[0.5, 0.0, 0.0, 10.0, 0.0, 0.0]),
                    ints("nodes_truenodeids", &[1, 0, 0, 1, 0, 0]),
                    ints("nodes_falsenodeids", &[2, 0, 0, 2, 0, 0]),
                    ints("nodes_missing_value_tracks_true", &[1, 0, 0, 0, 0, 0]),
                    ints("target_treeids", &[0, 0, 1, 1]),
                    ints("target_nodeids", &[1, 2, 1, 2]),
                    ints("target_ids", &[0, 0, 0, 0]),
                    floats("target_weights", &[1.0, 3.0, 10.0, 20.0]),
                    AttributeProto {
                        name: "n_targets".into(),
                        r#type: AttributeType::Int as i32,
                        i: 1,
                        ..Default::default()
                    },
                    floats("base_values", &[100.0]),
                ],
            ),
        ],
        vec![
            value("a", DataType::Double, &[None, Some(1)]),
            value("b", DataType::Int64, &[None, Some(1)]),
        ],
        vec![value("variable", DataType::Float, &[None, Some(1)])],
        &[],
    )
}

fn table(dir: &tempfile::TempDir, csv: &str) -> Table {
    let path = dir.path().join("data.csv");
    fs_err::write(&path, csv).unwrap();
    kiln_table::read_table(
        &path.display().to_string(),
        &kiln_table::ReadOptions::default(),
    )
    .unwrap()
}

fn values(p: Predictions) -> Vec<f64> {
    match p {
        Predictions::Values(v) => v,
        Predictions::Proba(_) => panic!("expected values"),
    }
}

fn proba(p: Predictions) -> Vec<Vec<f64>> {
    match p {
        Predictions::Proba(v) => v,
        Predictions::Values(_) => panic!("expected probabilities"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn scaler_and_linear_regressor_predict_by_name_and_by_position() {
    let m = OnnxModel::from_bytes(&linear_regressor(&[]), "lin.onnx").unwrap();
    assert_eq!(m.signature().target.task, Task::Regression);
    let names: Vec<&str> = m
        .signature()
        .inputs
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["f0", "f1"]);
    let expect = |x0: f64, x1: f64| 3.0 * (x0 - 1.0) * 0.5 - (x1 - 2.0) * 2.0 + 0.5;
    let dir = tempfile::tempdir().unwrap();
    // By name (extra columns ignored).
    let t = table(&dir, "id,f1,f0\n1,2,3\n2,-1,0.5\n");
    let v = values(m.predict(&t).unwrap());
    assert!(
        close(v[0], expect(3.0, 2.0)) && close(v[1], expect(0.5, -1.0)),
        "{v:?}"
    );
    // By position, when the data has exactly two columns with other names.
    let t = table(&dir, "x,y\n3,2\n");
    let v = values(m.predict(&t).unwrap());
    assert!(close(v[0], expect(3.0, 2.0)), "{v:?}");
}

#[test]
fn metadata_names_the_columns() {
    let bytes = linear_regressor(&[("feature_names", "[\"age\", \"income\"]")]);
    let m = OnnxModel::from_bytes(&bytes, "lin.onnx").unwrap();
    let names: Vec<&str> = m
        .signature()
        .inputs
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["age", "income"]);
    let dir = tempfile::tempdir().unwrap();
    let e = m.predict(&table(&dir, "x,y\n3,2\n")).unwrap_err();
    assert!(e.to_string().contains("Column `age` not found"), "{e}");
    assert!(e.is_input());
}

#[test]
fn wrong_column_count_is_an_input_error() {
    let m = OnnxModel::from_bytes(&linear_regressor(&[]), "lin.onnx").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = m.predict(&table(&dir, "x,y,z\n1,2,3\n")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("takes 2 columns") && msg.contains("has 3 column(s)"),
        "{msg}"
    );
    assert!(e.is_input());
}

#[test]
fn text_column_for_a_numeric_input_is_an_input_error() {
    let m = OnnxModel::from_bytes(&linear_regressor(&[]), "lin.onnx").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = m
        .predict(&table(&dir, "f0,f1\n1,a\n2,b\n3,a\n4,b\n"))
        .unwrap_err();
    assert!(e.to_string().contains("Column `f1` is"), "{e}");
}

#[test]
fn linear_classifier_gives_probabilities_with_or_without_zipmap() {
    let dir = tempfile::tempdir().unwrap();
    let t = table(&dir, "f0,f1\n1,0\n0,1\n");
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    for zipmap in [false, true] {
        let m = OnnxModel::from_bytes(&linear_classifier(zipmap), "clf.onnx").unwrap();
        assert_eq!(m.signature().target.task, Task::Classification);
        assert_eq!(m.signature().target.classes, ["no", "yes"]);
        let p = proba(m.predict(&t).unwrap());
        let p1 = sigmoid(1.25);
        let p2 = sigmoid(-1.75);
        assert!(close(p[0][1], p1) && close(p[0][0], 1.0 - p1), "{p:?}");
        assert!(close(p[1][1], p2) && close(p[1][0], 1.0 - p2), "{p:?}");
    }
}

#[test]
fn per_column_inputs_feed_a_tree_regressor() {
    let m = OnnxModel::from_bytes(&tree_regressor(), "trees.onnx").unwrap();
    let names: Vec<&str> = m
        .signature()
        .inputs
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let t = table(&dir, "b,a\n5,0.2\n12,0.9\n5,\n");
    let v = values(m.predict(&t).unwrap());
    // Missing `a` goes the "true" way (nodes_missing_value_tracks_true).
    assert_eq!(v, vec![111.0, 123.0, 111.0]);
    // An int64 input refuses missing values.
    let e = m.predict(&table(&dir, "a,b\n0.2,\n0.3,4\n")).unwrap_err();
    assert!(e.to_string().contains("Column `b` at data row 1"), "{e}");
}

#[test]
fn predict_columns_matches_the_table_path_and_checks_its_input() {
    let m = OnnxModel::from_bytes(&tree_regressor(), "trees.onnx").unwrap();
    // Signature order: a, then b.
    let cols = |a: Vec<f64>, b: Vec<f64>| vec![OnnxColumn::Numbers(a), OnnxColumn::Numbers(b)];
    let v = values(
        m.predict_columns(3, cols(vec![0.2, 0.9, f64::NAN], vec![5.0, 12.0, 5.0]))
            .unwrap(),
    );
    assert_eq!(v, vec![111.0, 123.0, 111.0]);
    // The int64 input refuses a missing value, naming the column and row.
    let e = m
        .predict_columns(2, cols(vec![0.2, 0.3], vec![4.0, f64::NAN]))
        .unwrap_err();
    assert!(e.to_string().contains("Column `b` at data row 2"), "{e}");
    // Too few columns, a short column, or text for a numeric input: input errors.
    let e = m
        .predict_columns(1, vec![OnnxColumn::Numbers(vec![0.2])])
        .unwrap_err();
    assert!(e.to_string().contains("reads 2 column(s); 1 given"), "{e}");
    let e = m
        .predict_columns(2, cols(vec![0.2], vec![4.0, 5.0]))
        .unwrap_err();
    assert!(
        e.to_string().contains("Column `a` has 1 values for 2 rows"),
        "{e}"
    );
    let e = m
        .predict_columns(
            1,
            vec![
                OnnxColumn::Texts(vec![Some("x".into())]),
                OnnxColumn::Numbers(vec![1.0]),
            ],
        )
        .unwrap_err();
    assert!(e.to_string().contains("Column `a` is text"), "{e}");
}

#[test]
fn concurrent_predictions_share_one_plan() {
    let m = std::sync::Arc::new(OnnxModel::from_bytes(&linear_regressor(&[]), "lin.onnx").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let t = std::sync::Arc::new(table(&dir, "f0,f1\n3,2\n"));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (m, t) = (m.clone(), t.clone());
            std::thread::spawn(move || values(m.predict(&t).unwrap()))
        })
        .collect();
    for h in handles {
        assert!(close(h.join().unwrap()[0], 3.5));
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let e = OnnxModel::from_bytes(b"not a model", "bad.onnx").unwrap_err();
    assert!(
        e.to_string()
            .contains("ONNX model `bad.onnx`: not a valid ONNX file"),
        "{e}"
    );
    assert!(e.is_input());
    // An unsupported ai.onnx.ml operator is named.
    let bytes = model(
        vec![node("SVMRegressor", &["X"], &["y"], vec![])],
        vec![value("X", DataType::Float, &[None, Some(2)])],
        vec![value("y", DataType::Float, &[None, Some(1)])],
        &[],
    );
    let e = OnnxModel::from_bytes(&bytes, "svm.onnx").unwrap_err();
    assert!(e.to_string().contains("`ai.onnx.ml.SVMRegressor`"), "{e}");
    // An input of unknown width.
    let bytes = model(
        vec![],
        vec![value("X", DataType::Float, &[None, None])],
        vec![value("X", DataType::Float, &[None, None])],
        &[],
    );
    let e = OnnxModel::from_bytes(&bytes, "wide.onnx").unwrap_err();
    assert!(e.to_string().contains("unknown number of columns"), "{e}");
}
