//! Behaviour of the gradient-boosted trees: learning, determinism, missing values,
//! categoricals, weights, early stopping, multiclass, serialisation and input errors.

mod common;

use common::{blobs, mixed, regression, row, slice, xor, TestRng};
use kiln_ml::gbdt::{fit, fit_with};
use kiln_ml::metrics::{r2, roc_auc};
use kiln_ml::{
    ClassWeight, Dataset, Feature, GbdtModel, GbdtParams, MlError, Objective, Validation,
    MISSING_CODE,
};

fn params(n_trees: usize) -> GbdtParams {
    GbdtParams {
        n_trees,
        ..GbdtParams::default()
    }
}

#[test]
fn learns_xor() {
    let (ds, y) = xor(4000, 1);
    let (tr, ytr) = slice(&ds, &y, 0, 3000);
    let (te, yte) = slice(&ds, &y, 3000, 4000);
    let m = fit(&params(50), &tr, &ytr).unwrap();
    let auc = roc_auc(&yte, &m.predict(&te).unwrap()).unwrap();
    assert!(auc > 0.93, "auc {auc}");
    // The noise feature matters least.
    let imp = m.feature_importance();
    assert_eq!(imp.len(), 3);
    assert!(
        imp[2].gain < imp[0].gain && imp[2].gain < imp[1].gain,
        "{imp:?}"
    );
    assert!(imp.iter().all(|i| i.splits > 0 || i.gain == 0.0));
}

#[test]
fn same_seed_same_model_bytes_whatever_the_threads() {
    // Big enough for the parallel (multi-block) histogram and partition paths.
    let (ds, y) = mixed(70_000, 7);
    let p = GbdtParams {
        n_trees: 8,
        bagging_fraction: 0.8,
        feature_fraction: 0.8,
        seed: 42,
        ..GbdtParams::default()
    };
    let a = fit(&p, &ds, &y).unwrap().to_json().unwrap();
    let b = fit(&p, &ds, &y).unwrap().to_json().unwrap();
    assert!(a == b, "two fits differ");
    let one = fit(
        &GbdtParams {
            n_threads: 1,
            ..p.clone()
        },
        &ds,
        &y,
    )
    .unwrap()
    .to_json()
    .unwrap();
    let three = fit(
        &GbdtParams {
            n_threads: 3,
            ..p.clone()
        },
        &ds,
        &y,
    )
    .unwrap()
    .to_json()
    .unwrap();
    assert!(a == one, "1 thread differs");
    assert!(a == three, "3 threads differ");
    // A different seed changes the bagging, so the model.
    let c = fit(&GbdtParams { seed: 43, ..p }, &ds, &y)
        .unwrap()
        .to_json()
        .unwrap();
    assert!(a != c);
}

#[test]
fn mixed_features_with_missing_values_and_categoricals() {
    let (ds, y) = mixed(12_000, 3);
    let (tr, ytr) = slice(&ds, &y, 0, 9000);
    let (te, yte) = slice(&ds, &y, 9000, 12_000);
    let m = fit(&params(100), &tr, &ytr).unwrap();
    let auc = roc_auc(&yte, &m.predict(&te).unwrap()).unwrap();
    assert!(auc > 0.78, "auc {auc}");
    // Categorical splits are used for both categorical features.
    let cat_splits = |f: u32| {
        m.trees()
            .iter()
            .flat_map(|t| &t.nodes)
            .filter(|n| n.feature == f && n.categorical)
            .count()
    };
    assert!(cat_splits(4) > 0 && cat_splits(5) > 0);
    // Batch and single-row predictions agree bit for bit, including missing values.
    let batch = m.predict(&te).unwrap();
    for (r, &b) in batch.iter().enumerate().take(200) {
        assert_eq!(m.predict_row(&row(&te, r)).unwrap(), b, "row {r}");
    }
    let all_missing = vec![f64::NAN; 6];
    let p = m.predict_row(&all_missing).unwrap();
    assert!(p.is_finite() && (0.0..=1.0).contains(&p));
    // Unknown category codes are accepted (they go right at every split).
    let mut r0 = row(&te, 0);
    r0[5] = 999.0;
    assert!(m.predict_row(&r0).unwrap().is_finite());
}

#[test]
fn learns_missingness_itself() {
    // y = 1 exactly when x is missing; x otherwise carries no signal.
    let mut rng = TestRng::new(5);
    let n = 3000;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let missing = rng.uniform() < 0.3;
        x.push(if missing { f64::NAN } else { rng.normal() });
        y.push(f64::from(missing));
    }
    let ds = Dataset::new(vec![Feature::numeric("x", x)]).unwrap();
    let m = fit(&params(20), &ds, &y).unwrap();
    let p = m.predict(&ds).unwrap();
    assert!(roc_auc(&y, &p).unwrap() > 0.99);
    assert!(m.predict_row(&[f64::NAN]).unwrap() > 0.9);
    assert!(m.predict_row(&[0.5]).unwrap() < 0.1);
}

#[test]
fn learns_a_categorical_only_signal() {
    // 40 categories, each with its own positive rate; no numeric signal at all.
    let mut rng = TestRng::new(9);
    let rates: Vec<f64> = (0..40)
        .map(|i| if i % 3 == 0 { 0.9 } else { 0.1 })
        .collect();
    let n = 8000;
    let mut codes = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let c = rng.below(40) as u32;
        codes.push(c);
        y.push(f64::from(rng.uniform() < rates[c as usize]));
    }
    let cats: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
    let ds = Dataset::new(vec![Feature::categorical("cat", codes, cats)]).unwrap();
    let m = fit(&params(30), &ds, &y).unwrap();
    for c in 0..40 {
        let p = m.predict_row(&[c as f64]).unwrap();
        if c % 3 == 0 {
            assert!(p > 0.75, "category {c}: {p}");
        } else {
            assert!(p < 0.25, "category {c}: {p}");
        }
    }
    // Predicting with a dataset whose category list is ordered differently remaps by name.
    let rev: Vec<String> = (0..40).rev().map(|i| format!("c{i}")).collect();
    let other = Dataset::new(vec![Feature::categorical("cat", vec![39, 38], rev)]).unwrap();
    let p = m.predict(&other).unwrap();
    assert_eq!(p[0], m.predict_row(&[0.0]).unwrap());
    assert_eq!(p[1], m.predict_row(&[1.0]).unwrap());
}

#[test]
fn early_stopping_stops_and_keeps_the_best_round() {
    // Pure noise: validation loss stops improving almost at once.
    let mut rng = TestRng::new(11);
    let n = 4000;
    let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let y: Vec<f64> = (0..n).map(|_| f64::from(rng.uniform() < 0.3)).collect();
    let ds = Dataset::new(vec![Feature::numeric("x", x)]).unwrap();
    let p = GbdtParams {
        n_trees: 500,
        early_stopping_rounds: Some(10),
        ..GbdtParams::default()
    };
    let m = fit(&p, &ds, &y).unwrap();
    let best = m.best_iteration().unwrap();
    assert!(best < 100, "best {best}");
    assert_eq!(m.trees().len(), best);
    assert!(m.valid_metric().len() <= best + 10);
    assert_eq!(m.valid_metric_name(), Some("binary_logloss"));

    // With an explicit validation set.
    let (ds, y) = mixed(6000, 4);
    let (tr, ytr) = slice(&ds, &y, 0, 4000);
    let (va, yva) = slice(&ds, &y, 4000, 6000);
    let p = GbdtParams {
        n_trees: 1000,
        learning_rate: 0.3,
        early_stopping_rounds: Some(5),
        ..GbdtParams::default()
    };
    let m = fit_with(
        &p,
        &tr,
        &ytr,
        None,
        Some(Validation {
            data: &va,
            labels: &yva,
        }),
    )
    .unwrap();
    let best = m.best_iteration().unwrap();
    assert!(best < 1000);
    let hist = m.valid_metric();
    let min = hist.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(hist[best - 1], min);
}

#[test]
fn weights_matter() {
    let (ds, y) = mixed(5000, 8);
    let a = fit(&params(20), &ds, &y).unwrap();
    let w: Vec<f64> = y
        .iter()
        .map(|&v| if v == 1.0 { 5.0 } else { 1.0 })
        .collect();
    let b = fit_with(&params(20), &ds, &y, Some(&w), None).unwrap();
    let pa = a.predict(&ds).unwrap();
    let pb = b.predict(&ds).unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&pb) > mean(&pa) + 0.1,
        "{} vs {}",
        mean(&pb),
        mean(&pa)
    );

    // Balanced class weights lift an imbalanced minority class.
    let mut rng = TestRng::new(3);
    let x: Vec<f64> = (0..4000).map(|_| rng.normal()).collect();
    let yi: Vec<f64> = x
        .iter()
        .map(|&v| f64::from(v + 0.8 * rng.normal() > 1.8))
        .collect();
    let ds = Dataset::new(vec![Feature::numeric("x", x)]).unwrap();
    let plain = fit(&params(20), &ds, &yi).unwrap();
    let bal = fit(
        &GbdtParams {
            class_weight: ClassWeight::Balanced,
            ..params(20)
        },
        &ds,
        &yi,
    )
    .unwrap();
    assert!(mean(&bal.predict(&ds).unwrap()) > mean(&plain.predict(&ds).unwrap()) + 0.1);
}

#[test]
fn multiclass_probabilities_sum_to_one() {
    let (ds, y) = blobs(3000, 2);
    let p = GbdtParams {
        objective: Objective::Multiclass,
        n_trees: 30,
        ..GbdtParams::default()
    };
    let m = fit(&p, &ds, &y).unwrap();
    assert_eq!(m.n_classes(), 3);
    assert_eq!(m.trees().len(), 90);
    let proba = m.predict_proba(&ds).unwrap();
    for row in &proba {
        assert_eq!(row.len(), 3);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    let pred = m.predict(&ds).unwrap();
    let acc = pred.iter().zip(&y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64;
    assert!(acc > 0.9, "accuracy {acc}");
    let auc = kiln_ml::metrics::roc_auc_ovr(&y, &proba).unwrap();
    assert!(auc > 0.97);
    assert_eq!(m.predict_proba_row(&[3.0, 3.0]).unwrap().len(), 3);
    assert!(m.predict_raw_row(&[3.0, 3.0]).is_err());
}

#[test]
fn regression_fits_a_smooth_function() {
    let (ds, y) = regression(5000, 6);
    let (tr, ytr) = slice(&ds, &y, 0, 4000);
    let (te, yte) = slice(&ds, &y, 4000, 5000);
    let m = fit(
        &GbdtParams {
            objective: Objective::Regression,
            ..params(100)
        },
        &tr,
        &ytr,
    )
    .unwrap();
    let score = r2(&yte, &m.predict(&te).unwrap()).unwrap();
    assert!(score > 0.9, "r2 {score}");
    assert!(m.predict_proba(&te).is_err());
}

#[test]
fn serialization_round_trip_predicts_identically() {
    let (ds, y) = mixed(4000, 12);
    let m = fit(&params(30), &ds, &y).unwrap();
    let json = m.to_json().unwrap();
    let back = GbdtModel::from_json(&json).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_json().unwrap(), json);
    let a = m.predict(&ds).unwrap();
    let b = back.predict(&ds).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    // Thresholds of "all non-missing values" splits are +inf and survive JSON.
    assert!(GbdtModel::from_json("{\"nope\": 1}").is_err());
    let broken = json.replacen("\"left\":", "\"left\":9999,\"x\":", 1);
    assert!(GbdtModel::from_json(&broken).is_err());
}

#[test]
fn predicts_with_reordered_columns_and_rejects_missing_ones() {
    let (ds, y) = xor(2000, 2);
    let m = fit(&params(10), &ds, &y).unwrap();
    let f = ds.features();
    let reordered = Dataset::new(vec![f[2].clone(), f[0].clone(), f[1].clone()]).unwrap();
    assert_eq!(m.predict(&reordered).unwrap(), m.predict(&ds).unwrap());
    let missing = Dataset::new(vec![f[0].clone(), f[1].clone()]).unwrap();
    assert!(matches!(
        m.predict(&missing),
        Err(MlError::FeatureMismatch(_))
    ));
    assert!(matches!(
        m.predict_row(&[0.0, 1.0]),
        Err(MlError::FeatureMismatch(_))
    ));
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let (ds, y) = xor(100, 1);
    let p = params(5);
    // Mismatched lengths.
    assert!(matches!(
        fit(&p, &ds, &y[..50]),
        Err(MlError::LengthMismatch { what: "labels", .. })
    ));
    assert!(matches!(
        fit_with(&p, &ds, &y, Some(&[1.0; 3]), None),
        Err(MlError::LengthMismatch {
            what: "sample weights",
            ..
        })
    ));
    // NaN label, non-binary label, single class.
    let mut bad = y.clone();
    bad[7] = f64::NAN;
    assert!(matches!(
        fit(&p, &ds, &bad),
        Err(MlError::BadLabel { row: 7, .. })
    ));
    bad[7] = 2.0;
    assert!(matches!(
        fit(&p, &ds, &bad),
        Err(MlError::BadLabel { row: 7, .. })
    ));
    assert!(matches!(
        fit(&p, &ds, &vec![1.0; 100]),
        Err(MlError::SingleClass { class: 1 })
    ));
    let mc = GbdtParams {
        objective: Objective::Multiclass,
        ..p.clone()
    };
    assert!(matches!(
        fit(&mc, &ds, &vec![2.0; 100]),
        Err(MlError::SingleClass { .. })
    ));
    let reg = GbdtParams {
        objective: Objective::Regression,
        ..p.clone()
    };
    let mut inf = y.clone();
    inf[0] = f64::INFINITY;
    assert!(matches!(
        fit(&reg, &ds, &inf),
        Err(MlError::BadLabel { row: 0, .. })
    ));
    // Empty data, no features.
    let empty = Dataset::new(vec![Feature::numeric("x", vec![])]).unwrap();
    assert!(matches!(
        fit(&p, &empty, &[]),
        Err(MlError::EmptyData { .. })
    ));
    let none = Dataset::new(vec![]).unwrap();
    assert!(matches!(
        fit(&p, &none, &[]),
        Err(MlError::EmptyData { .. })
    ));
    // Bad weights.
    let mut w = vec![1.0; 100];
    w[3] = -1.0;
    assert!(matches!(
        fit_with(&p, &ds, &y, Some(&w), None),
        Err(MlError::BadWeight { row: 3, .. })
    ));
    assert!(matches!(
        fit_with(&p, &ds, &y, Some(&[0.0; 100]), None),
        Err(MlError::BadWeight { .. })
    ));
    // Bad parameters built in code.
    let e = fit(
        &GbdtParams {
            learning_rate: -1.0,
            ..p.clone()
        },
        &ds,
        &y,
    )
    .unwrap_err();
    assert!(e.to_string().contains("learning_rate"), "{e}");
    // Validation labels are checked too.
    let vy = vec![3.0; 100];
    let e = fit_with(
        &p,
        &ds,
        &y,
        None,
        Some(Validation {
            data: &ds,
            labels: &vy,
        }),
    )
    .unwrap_err();
    assert!(matches!(e, MlError::BadLabel { .. }));
    // Tiny data still fits (no split possible).
    let tiny = Dataset::new(vec![Feature::numeric("x", vec![1.0, 2.0])]).unwrap();
    let m = fit(&p, &tiny, &[0.0, 1.0]).unwrap();
    assert!((m.predict_row(&[1.5]).unwrap() - 0.5).abs() < 1e-9);
    // All-missing and constant features.
    let odd = Dataset::new(vec![
        Feature::numeric("nan", vec![f64::NAN; 100]),
        Feature::numeric("const", vec![3.0; 100]),
        Feature::categorical("cat", vec![MISSING_CODE; 100], vec!["a".into()]),
    ])
    .unwrap();
    let m = fit(&p, &odd, &y).unwrap();
    assert!(m.trees().iter().all(|t| t.nodes.is_empty()));
}
