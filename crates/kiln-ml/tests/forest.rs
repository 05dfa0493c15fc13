//! Behaviour of the random forest.

mod common;

use common::{blobs, mixed, regression, row, slice, xor};
use kiln_ml::metrics::{r2, roc_auc};
use kiln_ml::{fit_forest, ForestModel, ForestParams, MaxFeatures, MlError, Objective};

#[test]
fn classifies_xor_and_mixed_data() {
    let (ds, y) = xor(3000, 1);
    let (tr, ytr) = slice(&ds, &y, 0, 2000);
    let (te, yte) = slice(&ds, &y, 2000, 3000);
    let p = ForestParams {
        n_trees: 30,
        ..ForestParams::default()
    };
    let m = fit_forest(&p, &tr, &ytr, None).unwrap();
    let auc = roc_auc(&yte, &m.predict(&te).unwrap()).unwrap();
    assert!(auc > 0.9, "auc {auc}");

    let (ds, y) = mixed(6000, 2);
    let (tr, ytr) = slice(&ds, &y, 0, 4000);
    let (te, yte) = slice(&ds, &y, 4000, 6000);
    let m = fit_forest(
        &ForestParams {
            min_samples_leaf: 5,
            ..p
        },
        &tr,
        &ytr,
        None,
    )
    .unwrap();
    let auc = roc_auc(&yte, &m.predict(&te).unwrap()).unwrap();
    assert!(auc > 0.75, "auc {auc}");
    let batch = m.predict_proba(&te).unwrap();
    for (r, b) in batch.iter().enumerate().take(50) {
        assert_eq!(&m.predict_proba_row(&row(&te, r)).unwrap(), b);
    }
}

#[test]
fn deterministic_and_thread_independent() {
    let (ds, y) = mixed(3000, 5);
    let p = ForestParams {
        n_trees: 12,
        seed: 9,
        ..ForestParams::default()
    };
    let a = fit_forest(&p, &ds, &y, None).unwrap().to_json().unwrap();
    let b = fit_forest(
        &ForestParams {
            n_threads: 1,
            ..p.clone()
        },
        &ds,
        &y,
        None,
    )
    .unwrap()
    .to_json()
    .unwrap();
    assert!(a == b, "models differ");
    let back = ForestModel::from_json(&a).unwrap();
    assert_eq!(back.to_json().unwrap(), a);
}

#[test]
fn multiclass_and_regression() {
    let (ds, y) = blobs(1500, 3);
    let p = ForestParams {
        objective: Objective::Multiclass,
        n_trees: 20,
        ..ForestParams::default()
    };
    let m = fit_forest(&p, &ds, &y, None).unwrap();
    for pr in m.predict_proba(&ds).unwrap() {
        assert!((pr.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    let acc = m
        .predict(&ds)
        .unwrap()
        .iter()
        .zip(&y)
        .filter(|(a, b)| a == b)
        .count() as f64
        / y.len() as f64;
    assert!(acc > 0.9);

    let (ds, y) = regression(3000, 4);
    let (tr, ytr) = slice(&ds, &y, 0, 2000);
    let (te, yte) = slice(&ds, &y, 2000, 3000);
    let p = ForestParams {
        objective: Objective::Regression,
        n_trees: 30,
        max_features: MaxFeatures::All,
        ..ForestParams::default()
    };
    let m = fit_forest(&p, &tr, &ytr, None).unwrap();
    let score = r2(&yte, &m.predict(&te).unwrap()).unwrap();
    assert!(score > 0.85, "r2 {score}");
    assert!(m.feature_importance()[0].gain > 0.0);
}

#[test]
fn params_and_errors() {
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    let p = ForestParams::from_kv(&[
        kv("n_estimators", "7"),
        kv("max_features", "0.5"),
        kv("bootstrap", "false"),
    ])
    .unwrap();
    assert_eq!(p.n_trees, 7);
    assert_eq!(p.max_features, MaxFeatures::Fraction(0.5));
    assert!(!p.bootstrap);
    let e = ForestParams::from_kv(&[kv("max_features", "-2")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_features"), "{e}");
    let e = ForestParams::from_kv(&[kv("bootstrap", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("bootstrap") && e.contains("boolean"), "{e}");

    let (ds, y) = xor(50, 1);
    assert!(matches!(
        fit_forest(&p, &ds, &y[..10], None),
        Err(MlError::LengthMismatch { .. })
    ));
    assert!(matches!(
        fit_forest(&p, &ds, &[0.0; 50], None),
        Err(MlError::SingleClass { .. })
    ));
}
