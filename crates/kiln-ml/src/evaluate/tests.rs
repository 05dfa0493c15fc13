//! Tests of the evaluation module. Expected numbers come from scikit-learn 1.9.1
//! (`accuracy_score`, `precision_recall_fscore_support`, `roc_auc_score`,
//! `average_precision_score`, `log_loss`, `brier_score_loss`, `calibration_curve`,
//! `confusion_matrix`, `root_mean_squared_error`, `r2_score`, ...), run on the same
//! fixtures and pasted here with full precision.

use super::*;

const TOL: f64 = 1e-9;

#[track_caller]
fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= TOL * expected.abs().max(1.0),
        "actual {actual:?}, expected {expected:?}"
    );
}

#[track_caller]
fn close_opt(actual: Option<f64>, expected: f64) {
    match actual {
        Some(a) => close(a, expected),
        None => panic!("expected {expected:?}, got None"),
    }
}

fn names(k: usize) -> Vec<String> {
    (0..k).map(|c| format!("c{c}")).collect()
}

fn metric(metrics: &[(String, f64)], name: &str) -> Option<f64> {
    metrics.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// 20 binary rows; scores have ties (0.4, 0.8, 0.65, 0.3, 0.1) and an exact 0.5, which
/// `argmax` assigns to class 0.
const BIN_Y: [usize; 20] = [0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1];
const BIN_P1: [f64; 20] = [
    0.1, 0.4, 0.4, 0.35, 0.8, 0.8, 0.5, 0.9, 0.65, 0.2, 0.65, 0.05, 0.3, 0.95, 0.3, 0.7, 0.55,
    0.45, 0.1, 0.8,
];
const BIN_W: [f64; 20] = [
    1.0, 2.0, 0.5, 1.0, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.5, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 4.0,
    1.5,
];

fn binary_proba() -> Vec<Vec<f64>> {
    BIN_P1.iter().map(|&p| vec![1.0 - p, p]).collect()
}

/// 15 rows, 3 classes; rows 4 (0.4/0.4) and 14 (0.45/0.45) have argmax ties.
const MC_Y: [usize; 15] = [0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0, 1, 2, 1];
const MC_P: [[f64; 3]; 15] = [
    [0.7, 0.2, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.3, 0.6],
    [0.3, 0.3, 0.4],
    [0.4, 0.4, 0.2],
    [0.5, 0.25, 0.25],
    [0.2, 0.6, 0.2],
    [0.1, 0.1, 0.8],
    [0.3, 0.5, 0.2],
    [0.6, 0.3, 0.1],
    [0.3, 0.3, 0.4],
    [0.8, 0.1, 0.1],
    [0.25, 0.5, 0.25],
    [0.2, 0.2, 0.6],
    [0.1, 0.45, 0.45],
];
const MC_W: [f64; 15] = [
    1.0, 2.0, 1.0, 0.5, 1.0, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.25, 1.0, 1.0,
];

fn mc_proba() -> Vec<Vec<f64>> {
    MC_P.iter().map(|r| r.to_vec()).collect()
}

const REG_Y: [f64; 12] = [
    3.0, -0.5, 2.0, 7.0, 4.2, 0.0, 1.5, 10.0, -3.0, 5.5, 2.2, 8.1,
];
const REG_P: [f64; 12] = [2.5, 0.0, 2.1, 7.8, 3.9, 0.3, 1.5, 9.1, -2.4, 6.0, 2.0, 7.0];

// ---------------------------------------------------------------------------------------
// Classification against scikit-learn

#[test]
fn binary_matches_sklearn() {
    let r = classification_metrics(&BIN_Y, &binary_proba(), &names(2), None).unwrap();
    assert_eq!(r.task, Task::Binary);
    assert_eq!(r.n_samples, 20);
    assert!(!r.weighted);
    close(r.accuracy, 0.7);
    close_opt(r.precision, 0.7777777777777778);
    close_opt(r.recall, 0.6363636363636364);
    close_opt(r.f1, 0.7);
    close(r.precision_macro, 0.7070707070707071);
    close(r.recall_macro, 0.7070707070707071);
    close(r.f1_macro, 0.7);
    close(r.precision_weighted, 0.7141414141414142);
    close(r.recall_weighted, 0.7);
    close(r.f1_weighted, 0.7);
    close_opt(r.roc_auc, 0.702020202020202);
    close_opt(r.pr_auc, 0.758178809494599);
    close(r.log_loss, 0.6443353663223524);
    assert_eq!(r.confusion_matrix, vec![vec![7, 2], vec![4, 7]]);

    let precision = [0.6363636363636364, 0.7777777777777778];
    let recall = [0.7777777777777778, 0.6363636363636364];
    for (c, m) in r.per_class.iter().enumerate() {
        assert_eq!(m.name, format!("c{c}"));
        close(m.precision, precision[c]);
        close(m.recall, recall[c]);
        close(m.f1, 0.7);
    }
    assert_eq!(
        r.per_class.iter().map(|m| m.support).collect::<Vec<_>>(),
        [9, 11]
    );

    // calibration_curve(y, p1, n_bins=10, strategy="uniform"): every bin is non-empty here.
    let cal = r.calibration.as_ref().unwrap();
    close(cal.brier, 0.22537500000000005);
    let counts = [3, 1, 2, 3, 2, 1, 3, 3, 1, 1];
    let prob_true = [
        0.3333333333333333,
        0.0,
        0.5,
        0.6666666666666666,
        0.0,
        1.0,
        0.6666666666666666,
        0.6666666666666666,
        1.0,
        1.0,
    ];
    let prob_pred = [
        0.08333333333333333,
        0.2,
        0.3,
        0.3833333333333333,
        0.475,
        0.55,
        0.6666666666666666,
        0.8000000000000002,
        0.9,
        0.95,
    ];
    assert_eq!(cal.bins.len(), 10);
    let mut ece = 0.0;
    for (b, bin) in cal.bins.iter().enumerate() {
        assert_eq!(bin.count, counts[b], "bin {b}");
        close(bin.lower, b as f64 / 10.0);
        close(bin.upper, (b + 1) as f64 / 10.0);
        close_opt(bin.observed_frequency, prob_true[b]);
        close_opt(bin.mean_predicted, prob_pred[b]);
        ece += counts[b] as f64 / 20.0 * (prob_pred[b] - prob_true[b]).abs();
    }
    close(cal.ece, ece);
}

#[test]
fn binary_weighted_matches_sklearn() {
    let r = classification_metrics(&BIN_Y, &binary_proba(), &names(2), Some(&BIN_W)).unwrap();
    assert!(r.weighted);
    close(r.accuracy, 0.6545454545454545);
    close_opt(r.precision, 0.84);
    close_opt(r.recall, 0.5833333333333334);
    close_opt(r.f1, 0.6885245901639344);
    close(r.precision_macro, 0.6699999999999999);
    close(r.recall_macro, 0.6864035087719298);
    close(r.f1_macro, 0.6503847440615591);
    close(r.precision_weighted, 0.7225454545454545);
    close(r.recall_weighted, 0.6545454545454545);
    close(r.f1_weighted, 0.6621734237659297);
    close_opt(r.roc_auc, 0.6154970760233919);
    close_opt(r.pr_auc, 0.7893587193331439);
    close(r.log_loss, 0.8005131205370268);
    close(r.calibration.as_ref().unwrap().brier, 0.2774090909090909);
    // Counts stay unweighted.
    assert_eq!(r.confusion_matrix, vec![vec![7, 2], vec![4, 7]]);
}

#[test]
fn multiclass_matches_sklearn() {
    let r = classification_metrics(&MC_Y, &mc_proba(), &names(3), None).unwrap();
    assert_eq!(r.task, Task::Multiclass);
    close(r.accuracy, 0.8);
    assert_eq!((r.precision, r.recall, r.f1), (None, None, None));
    close(r.precision_macro, 0.7999999999999999);
    close(r.recall_macro, 0.8055555555555555);
    close(r.f1_macro, 0.797979797979798);
    close(r.precision_weighted, 0.8133333333333334);
    close(r.recall_weighted, 0.8);
    close(r.f1_weighted, 0.802020202020202);
    close_opt(r.roc_auc, 0.8797643097643096);
    close_opt(r.pr_auc, 0.8171296296296298);
    close(r.log_loss, 0.7305328416626125);
    assert_eq!(
        r.confusion_matrix,
        vec![vec![3, 1, 0], vec![2, 4, 0], vec![0, 0, 5]]
    );
    let precision = [0.6, 0.8, 1.0];
    let recall = [0.75, 0.6666666666666666, 1.0];
    let f1 = [0.6666666666666666, 0.7272727272727273, 1.0];
    for c in 0..3 {
        close(r.per_class[c].precision, precision[c]);
        close(r.per_class[c].recall, recall[c]);
        close(r.per_class[c].f1, f1[c]);
    }
    assert_eq!(
        r.per_class.iter().map(|m| m.support).collect::<Vec<_>>(),
        [4, 6, 5]
    );
    assert!(r.calibration.is_none());
}

#[test]
fn multiclass_weighted_matches_sklearn() {
    let r = classification_metrics(&MC_Y, &mc_proba(), &names(3), Some(&MC_W)).unwrap();
    close(r.accuracy, 0.6619718309859155);
    close(r.precision_macro, 0.6954022988505747);
    close(r.recall_macro, 0.6954022988505747);
    close(r.f1_macro, 0.6954022988505747);
    close(r.precision_weighted, 0.6619718309859155);
    close(r.recall_weighted, 0.6619718309859155);
    close(r.f1_weighted, 0.6619718309859155);
    close_opt(r.roc_auc, 0.7731361088204345);
    close_opt(r.pr_auc, 0.7115712383142673);
    close(r.log_loss, 0.8504778976527455);
}

#[test]
fn unit_weights_equal_no_weights() {
    let ones = [1.0; 20];
    let a = classification_metrics(&BIN_Y, &binary_proba(), &names(2), None).unwrap();
    let mut b = classification_metrics(&BIN_Y, &binary_proba(), &names(2), Some(&ones)).unwrap();
    assert!(b.weighted);
    b.weighted = false;
    assert_eq!(a, b);
}

#[test]
fn metric_names_are_stable() {
    let bin = classification_metrics(&BIN_Y, &binary_proba(), &names(2), None).unwrap();
    let got: Vec<String> = bin.metrics().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        got,
        [
            "accuracy",
            "precision",
            "recall",
            "f1",
            "precision_macro",
            "recall_macro",
            "f1_macro",
            "precision_weighted",
            "recall_weighted",
            "f1_weighted",
            "roc_auc",
            "pr_auc",
            "log_loss",
            "brier",
            "ece"
        ]
    );
    let mc = classification_metrics(&MC_Y, &mc_proba(), &names(3), None).unwrap();
    let got: Vec<String> = mc.metrics().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        got,
        [
            "accuracy",
            "precision_macro",
            "recall_macro",
            "f1_macro",
            "precision_weighted",
            "recall_weighted",
            "f1_weighted",
            "roc_auc",
            "pr_auc",
            "log_loss"
        ]
    );
    let reg = regression_metrics(&REG_Y, &REG_P).unwrap();
    let got: Vec<String> = reg.metrics().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        got,
        [
            "rmse",
            "mse",
            "mae",
            "r2",
            "explained_variance",
            "mape",
            "max_error"
        ]
    );
    for (name, _) in bin
        .metrics()
        .iter()
        .chain(&mc.metrics())
        .chain(&reg.metrics())
    {
        assert!(METRIC_NAMES.contains(&name.as_str()), "{name}");
    }
    close(
        metric(&bin.metrics(), "roc_auc").unwrap(),
        0.702020202020202,
    );
}

// ---------------------------------------------------------------------------------------
// Classification edge cases

#[test]
fn single_class_leaves_auc_undefined() {
    let proba = vec![vec![0.3, 0.7], vec![0.6, 0.4], vec![0.1, 0.9]];
    let all_pos = classification_metrics(&[1, 1, 1], &proba, &names(2), None).unwrap();
    assert_eq!(all_pos.roc_auc, None);
    // Average precision is defined with positives only: every threshold has precision 1.
    close_opt(all_pos.pr_auc, 1.0);
    let all_neg = classification_metrics(&[0, 0, 0], &proba, &names(2), None).unwrap();
    assert_eq!(all_neg.roc_auc, None);
    assert_eq!(all_neg.pr_auc, None);
    let m = all_neg.metrics();
    assert!(metric(&m, "roc_auc").is_none() && metric(&m, "pr_auc").is_none());
    assert!(m.iter().all(|(_, v)| v.is_finite()));
    // The other metrics are still there; the positive class is never true nor... predicted
    // twice, so its precision is 0 (zero division → 0) and recall is 0.
    close(metric(&m, "accuracy").unwrap(), 1.0 / 3.0);
    close(metric(&m, "recall").unwrap(), 0.0);

    // A gate on the undefined metric fails with an explanation.
    let res = check_gates(&m, &[Gate::parse("roc_auc>=0.8").unwrap()]);
    assert!(!res[0].passed);
    assert_eq!(res[0].actual, None);
    assert!(
        res[0].message.contains("not available"),
        "{}",
        res[0].message
    );
    assert!(res[0].message.contains("accuracy"), "{}", res[0].message);
}

#[test]
fn perfect_predictions() {
    let proba = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.0, 1.0]];
    let r = classification_metrics(&[0, 1, 1], &proba, &names(2), None).unwrap();
    close(r.accuracy, 1.0);
    close_opt(r.roc_auc, 1.0);
    close_opt(r.pr_auc, 1.0);
    close_opt(r.f1, 1.0);
    close(r.f1_macro, 1.0);
    // sklearn: log_loss([0,1,1], [[1,0],[0,1],[0,1]]) == 2.2204460492503136e-16 (clipped).
    close(r.log_loss, 2.2204460492503136e-16);
    assert!(r.log_loss > 0.0);
    close(r.calibration.as_ref().unwrap().brier, 0.0);
    close(r.calibration.as_ref().unwrap().ece, 0.0);

    // Completely wrong probabilities: clipped, so finite.
    let wrong = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
    let r = classification_metrics(&[0, 1], &wrong, &names(2), None).unwrap();
    close_opt(r.roc_auc, 0.0);
    close(r.log_loss, -(f64::EPSILON.ln()));
}

#[test]
fn tied_scores() {
    // sklearn: roc_auc_score([0,1,1,0,1], [0.5]*5) == 0.5, average_precision_score == 0.6.
    let proba = vec![vec![0.5, 0.5]; 5];
    let r = classification_metrics(&[0, 1, 1, 0, 1], &proba, &names(2), None).unwrap();
    close_opt(r.roc_auc, 0.5);
    close_opt(r.pr_auc, 0.6);
    // argmax ties go to class 0.
    assert_eq!(r.confusion_matrix, vec![vec![2, 0], vec![3, 0]]);
    // Exactly 0.5 falls in the [0.4, 0.5] bin, as numpy's searchsorted.
    assert_eq!(r.calibration.as_ref().unwrap().bins[4].count, 5);
}

#[test]
fn auc_is_rank_based_and_handles_large_inputs() {
    // 200k rows with heavy ties: the result equals the Mann–Whitney statistic.
    let n = 200_000usize;
    let y: Vec<usize> = (0..n).map(|i| usize::from(i % 3 == 0)).collect();
    let proba: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let p = ((i * 7919) % 101) as f64 / 100.0;
            vec![1.0 - p, p]
        })
        .collect();
    let r = classification_metrics(&y, &proba, &names(2), None).unwrap();
    // Count pairs by score bucket.
    let mut pos = [0u64; 101];
    let mut neg = [0u64; 101];
    for (i, &yi) in y.iter().enumerate() {
        let b = (i * 7919) % 101;
        if yi == 1 {
            pos[b] += 1;
        } else {
            neg[b] += 1;
        }
    }
    let (mut wins, mut neg_below) = (0.0, 0.0);
    for b in 0..101 {
        wins += pos[b] as f64 * (neg_below + 0.5 * neg[b] as f64);
        neg_below += neg[b] as f64;
    }
    let n_pos = pos.iter().sum::<u64>() as f64;
    let n_neg = neg.iter().sum::<u64>() as f64;
    close_opt(r.roc_auc, wins / (n_pos * n_neg));
}

#[test]
fn macro_average_uses_classes_present_in_labels_or_predictions() {
    // Three declared classes, class 2 never appears: sklearn's default averaging over
    // unique_labels(y_true, y_pred) gives precision 0.8333…, recall 0.75, f1 0.7333….
    let proba = vec![
        vec![0.8, 0.1, 0.1],
        vec![0.6, 0.3, 0.1],
        vec![0.7, 0.2, 0.1],
        vec![0.1, 0.8, 0.1],
    ];
    let r = classification_metrics(&[0, 1, 0, 1], &proba, &names(3), None).unwrap();
    close(r.precision_macro, 0.8333333333333333);
    close(r.recall_macro, 0.75);
    close(r.f1_macro, 0.7333333333333334);
    assert_eq!(r.per_class[2].support, 0);
    // One-vs-rest AUC is averaged over the classes where it is defined (0 and 1).
    let p0: Vec<Vec<f64>> = proba.iter().map(|r| vec![1.0 - r[0], r[0]]).collect();
    let p1: Vec<Vec<f64>> = proba.iter().map(|r| vec![1.0 - r[1], r[1]]).collect();
    let auc0 = classification_metrics(&[1, 0, 1, 0], &p0, &names(2), None)
        .unwrap()
        .roc_auc
        .unwrap();
    let auc1 = classification_metrics(&[0, 1, 0, 1], &p1, &names(2), None)
        .unwrap()
        .roc_auc
        .unwrap();
    close_opt(r.roc_auc, (auc0 + auc1) / 2.0);
}

#[test]
fn classification_input_errors() {
    let p = binary_proba();
    let n2 = names(2);
    assert!(matches!(
        classification_metrics(&[], &[], &n2, None),
        Err(EvalError::Empty { .. })
    ));
    assert!(matches!(
        classification_metrics(&BIN_Y[..3], &p, &n2, None),
        Err(EvalError::LengthMismatch {
            expected: 3,
            got: 20,
            ..
        })
    ));
    assert!(matches!(
        classification_metrics(&[0], &[vec![1.0]], &names(1), None),
        Err(EvalError::TooFewClasses { got: 1 })
    ));
    assert_eq!(
        classification_metrics(&[0, 2], &p[..2], &n2, None),
        Err(EvalError::ClassOutOfRange {
            row: 1,
            class: 2,
            n_classes: 2
        })
    );
    assert!(matches!(
        classification_metrics(&[0], &[vec![0.2, 0.3, 0.5]], &n2, None),
        Err(EvalError::LengthMismatch {
            what: "probability row",
            expected: 2,
            got: 3
        })
    ));
    let err = classification_metrics(&[0, 1], &[vec![0.5, 0.5], vec![f64::NAN, 0.5]], &n2, None)
        .unwrap_err();
    assert!(matches!(err, EvalError::NonFinite { row: 1, .. }), "{err}");
    assert!(err.to_string().contains("row 1"));
    assert!(matches!(
        classification_metrics(&[0], &[vec![1.5, -0.5]], &n2, None),
        Err(EvalError::ProbabilityOutOfRange {
            row: 0,
            class: 0,
            ..
        })
    ));
    assert!(matches!(
        classification_metrics(&[0], &[vec![0.5, 0.4]], &n2, None),
        Err(EvalError::ProbabilitiesDoNotSumToOne { row: 0, .. })
    ));
    assert!(matches!(
        classification_metrics(&BIN_Y, &p, &n2, Some(&[1.0; 3])),
        Err(EvalError::LengthMismatch {
            what: "sample weights",
            ..
        })
    ));
    let mut w = [1.0; 20];
    w[4] = -1.0;
    assert!(matches!(
        classification_metrics(&BIN_Y, &p, &n2, Some(&w)),
        Err(EvalError::NegativeWeight { row: 4, .. })
    ));
    w[4] = f64::INFINITY;
    assert!(matches!(
        classification_metrics(&BIN_Y, &p, &n2, Some(&w)),
        Err(EvalError::NonFinite { row: 4, .. })
    ));
    assert_eq!(
        classification_metrics(&BIN_Y, &p, &n2, Some(&[0.0; 20])),
        Err(EvalError::ZeroTotalWeight)
    );
}

#[test]
fn results_are_deterministic() {
    let a = classification_metrics(&MC_Y, &mc_proba(), &names(3), Some(&MC_W)).unwrap();
    let b = classification_metrics(&MC_Y, &mc_proba(), &names(3), Some(&MC_W)).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

// ---------------------------------------------------------------------------------------
// Regression

#[test]
fn regression_matches_sklearn() {
    let r = regression_metrics(&REG_Y, &REG_P).unwrap();
    assert_eq!(r.task, Task::Regression);
    assert_eq!(r.n_samples, 12);
    close(r.rmse, 0.5773502691896257);
    close(r.mse, 0.3333333333333333);
    close(r.mae, 0.48333333333333334);
    close(r.r2, 0.974764468371467);
    close(r.explained_variance, 0.9747854979811574);
    close(r.max_error, 1.0999999999999996);
    // y_true holds a 0, so MAPE divides by f64::EPSILON: 112589990684262.55 in sklearn.
    close(r.mape, 112589990684262.55);

    let keep: Vec<usize> = (0..12).filter(|&i| i != 5).collect();
    let y: Vec<f64> = keep.iter().map(|&i| REG_Y[i]).collect();
    let p: Vec<f64> = keep.iter().map(|&i| REG_P[i]).collect();
    close(
        regression_metrics(&y, &p).unwrap().mape,
        0.18272741848499427,
    );
}

#[test]
fn regression_edge_cases() {
    let perfect = regression_metrics(&REG_Y, &REG_Y).unwrap();
    assert_eq!(
        (perfect.rmse, perfect.mae, perfect.max_error),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(
        (perfect.r2, perfect.explained_variance, perfect.mape),
        (1.0, 1.0, 0.0)
    );

    // Constant targets (sklearn force_finite=True).
    let c = [2.0, 2.0, 2.0];
    let r = regression_metrics(&c, &c).unwrap();
    assert_eq!((r.r2, r.explained_variance), (1.0, 1.0));
    let r = regression_metrics(&c, &[2.0, 2.0, 3.0]).unwrap();
    assert_eq!((r.r2, r.explained_variance), (0.0, 0.0));
    let r = regression_metrics(&c, &[3.0, 3.0, 3.0]).unwrap();
    assert_eq!((r.r2, r.explained_variance), (0.0, 1.0));
    // A single row is a constant target.
    let r = regression_metrics(&[5.0], &[4.0]).unwrap();
    assert_eq!((r.r2, r.rmse, r.max_error), (0.0, 1.0, 1.0));
    assert!(r.metrics().iter().all(|(_, v)| v.is_finite()));

    assert!(matches!(
        regression_metrics(&[], &[]),
        Err(EvalError::Empty { .. })
    ));
    assert!(matches!(
        regression_metrics(&[1.0, 2.0], &[1.0]),
        Err(EvalError::LengthMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        regression_metrics(&[1.0, 2.0], &[1.0, f64::NAN]),
        Err(EvalError::NonFinite {
            what: "prediction",
            row: 1,
            ..
        })
    ));
    assert!(matches!(
        regression_metrics(&[f64::NEG_INFINITY], &[1.0]),
        Err(EvalError::NonFinite {
            what: "target",
            row: 0,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// Gates

#[test]
fn gate_parsing() {
    let g = Gate::parse("roc_auc>=0.85").unwrap();
    assert_eq!(
        g,
        Gate {
            metric: "roc_auc".into(),
            op: GateOp::Ge,
            threshold: 0.85
        }
    );
    assert_eq!(g.to_string(), "roc_auc >= 0.85");
    assert_eq!(Gate::parse("  roc_auc   >=   0.85 ").unwrap(), g);
    assert_eq!("roc_auc >= 0.85".parse::<Gate>().unwrap(), g);
    for (text, op) in [
        ("a>1", GateOp::Gt),
        ("a<=1", GateOp::Le),
        ("a<1", GateOp::Lt),
        ("a==1", GateOp::Eq),
        ("a >= 1", GateOp::Ge),
    ] {
        assert_eq!(Gate::parse(text).unwrap().op, op, "{text}");
    }
    let g = Gate::parse("r2 > -0.5").unwrap();
    assert_eq!((g.op, g.threshold), (GateOp::Gt, -0.5));
    assert_eq!(Gate::parse("log_loss<1e-3").unwrap().threshold, 1e-3);
    assert_eq!(
        Gate::parse("accuracy==1").unwrap().to_string(),
        "accuracy == 1"
    );
}

#[track_caller]
fn gate_error(text: &str, needles: &[&str]) {
    let err = Gate::parse(text).unwrap_err();
    let EvalError::InvalidGate { gate, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(gate, text);
    let msg = err.to_string();
    for needle in needles {
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
}

#[test]
fn gate_parse_errors_say_what_was_expected() {
    gate_error("", &["empty", "roc_auc>=0.85"]);
    gate_error("   ", &["empty"]);
    gate_error(
        "roc_auc 0.85",
        &["no comparison operator", ">=", "roc_auc>=0.85"],
    );
    gate_error(">=0.85", &["no metric name", "roc_auc>=0.85"]);
    gate_error("roc_auc>=", &["no threshold", "roc_auc>=0.85"]);
    gate_error(
        "roc_auc=>0.85",
        &[
            "unknown operator `=>`",
            "did you mean `>=`",
            "roc_auc>=0.85",
        ],
    );
    gate_error(
        "roc_auc=0.85",
        &["unknown operator `=`", "did you mean `==`"],
    );
    gate_error("roc_auc=<0.85", &["did you mean `<=`"]);
    gate_error(
        "roc_auc!=0.85",
        &["unknown operator `!=`", "expected one of >=, >, <=, <, =="],
    );
    gate_error("roc_auc>>0.85", &["unknown operator `>>`"]);
    gate_error(
        "roc_auc>=high",
        &["threshold `high` is not a number", "roc_auc>=0.85"],
    );
    gate_error("roc_auc>=0.85%", &["is not a number"]);
    gate_error("roc_auc>=nan", &["not finite"]);
    gate_error("roc_auc>=inf", &["not finite"]);
    gate_error("roc auc>=0.85", &["may only contain"]);
}

fn results(metrics: &[(String, f64)], gates: &[&str]) -> Vec<GateResult> {
    let gates: Vec<Gate> = gates.iter().map(|g| Gate::parse(g).unwrap()).collect();
    check_gates(metrics, &gates)
}

fn sample_metrics() -> Vec<(String, f64)> {
    vec![
        ("accuracy".to_string(), 0.9),
        ("roc_auc".to_string(), 0.8499999),
        ("log_loss".to_string(), 0.25),
        ("accuracy".to_string(), 0.1),
    ]
}

#[test]
fn gate_checking() {
    let m = sample_metrics();
    let r = results(
        &m,
        &[
            "accuracy>=0.9",
            "accuracy>0.9",
            "accuracy<=0.9",
            "accuracy<0.9",
            "accuracy==0.9",
            "accuracy==0.9000000000001",
            "accuracy==0.91",
            "log_loss<0.3",
        ],
    );
    let passed: Vec<bool> = r.iter().map(|g| g.passed).collect();
    assert_eq!(passed, [true, false, true, false, true, true, false, true]);
    // The first entry of a duplicated name counts.
    assert_eq!(r[0].actual, Some(0.9));
    assert_eq!(r[0].message, "accuracy = 0.9000, required >= 0.9");
    assert!(!all_passed(&r));
    assert!(all_passed(&r[..1]));
    assert!(all_passed(&[]));

    // Rounding must not hide why a gate failed.
    let r = results(&m, &["roc_auc>=0.85"]);
    assert!(!r[0].passed);
    assert_eq!(r[0].message, "roc_auc = 0.8499999, required >= 0.85");
}

#[test]
fn unknown_metric_fails_with_the_available_names() {
    let m = sample_metrics();
    let r = results(&m, &["roc_acu>=0.8", "zzz<1"]);
    assert!(r.iter().all(|g| !g.passed && g.actual.is_none()));
    assert!(
        r[0].message.contains("unknown metric `roc_acu`"),
        "{}",
        r[0].message
    );
    assert!(
        r[0].message.contains("did you mean `roc_auc`"),
        "{}",
        r[0].message
    );
    assert!(
        r[0].message
            .contains("available metrics: accuracy, roc_auc, log_loss"),
        "{}",
        r[0].message
    );
    assert!(!r[1].message.contains("did you mean"), "{}", r[1].message);
    let none = results(&[], &["accuracy>0"]);
    assert!(none[0].message.contains("no metrics were computed"));
}

#[test]
fn gates_serialize_for_json() {
    let r = results(&sample_metrics(), &["accuracy>=0.9"]);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v[0]["gate"]["op"], ">=");
    assert_eq!(v[0]["gate"]["metric"], "accuracy");
    assert_eq!(v[0]["passed"], true);
    let report = classification_metrics(&BIN_Y, &binary_proba(), &names(2), None).unwrap();
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["task"], "binary");
    assert_eq!(v["confusion_matrix"][0][0], 7);
    assert_eq!(v["calibration"]["bins"].as_array().unwrap().len(), 10);
    let reg = serde_json::to_value(regression_metrics(&REG_Y, &REG_P).unwrap()).unwrap();
    assert_eq!(reg["task"], "regression");
}

// ---------------------------------------------------------------------------------------
// Renderers

#[test]
fn junit_has_one_case_per_gate() {
    let r = results(
        &sample_metrics(),
        &["accuracy>=0.9", "roc_auc>=0.85", "nope<1"],
    );
    let xml = render_junit("kiln evaluate", &r);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite "));
    assert!(xml.contains(
        r#"<testsuite name="kiln evaluate" tests="3" failures="2" errors="0" skipped="0">"#
    ));
    assert_eq!(xml.matches("<testcase ").count(), 3);
    assert_eq!(xml.matches("<failure ").count(), 2);
    assert!(xml.contains(r#"<testcase classname="kiln.evaluate" name="accuracy &gt;= 0.9"/>"#));
    assert!(xml.contains(r#"<testcase classname="kiln.evaluate" name="roc_auc &gt;= 0.85">"#));
    assert!(xml.contains(
        r#"<failure message="roc_auc = 0.8499999, required &gt;= 0.85" type="kiln.gate">"#
    ));
    assert!(xml.contains("actual: 0.8499999\nrequired: &gt;= 0.85"));
    assert!(xml.contains("unknown metric `nope`"));
    assert!(xml.trim_end().ends_with("</testsuite>"));

    let empty = render_junit("s", &[]);
    assert!(empty.contains(r#"tests="0" failures="0""#));
}

#[test]
fn junit_escapes_everything() {
    let gate = Gate {
        metric: "a<b&\"c'>".to_string(),
        op: GateOp::Lt,
        threshold: 1.0,
    };
    let r = check_gates(&[], &[gate]);
    let xml = render_junit("suite <&\"'>\n\u{1b}x", &r);
    assert!(
        xml.contains("name=\"suite &lt;&amp;&quot;&apos;&gt;&#10;\u{FFFD}x\""),
        "{xml}"
    );
    assert!(
        xml.contains(r#"name="a&lt;b&amp;&quot;c&apos;&gt; &lt; 1""#),
        "{xml}"
    );
    assert!(!xml.contains('\u{1b}'));
    // No raw markup characters apart from the tags themselves.
    let stripped = xml
        .replace("<?xml ", "")
        .replace("?>", "")
        .replace("<testsuite ", "")
        .replace("</testsuite>", "")
        .replace("<testcase ", "")
        .replace("</testcase>", "")
        .replace("<failure ", "")
        .replace("</failure>", "")
        .replace("\">", "")
        .replace("\"/>", "");
    assert!(!stripped.contains('<'), "{stripped}");
    assert!(!stripped.contains('>'), "{stripped}");
}

#[test]
fn markdown_summary() {
    let report = classification_metrics(&BIN_Y, &binary_proba(), &names(2), None).unwrap();
    let metrics = report.metrics();
    let gates = check_gates(
        &metrics,
        &[
            Gate::parse("roc_auc>=0.7").unwrap(),
            Gate::parse("accuracy>=0.9").unwrap(),
        ],
    );
    let md = render_markdown("Model | churn", &metrics, &gates, Some(report.confusion()));
    assert!(md.starts_with("## Model \\| churn\n"), "{md}");
    assert!(md.contains("❌ **1 of 2 gates failed**"), "{md}");
    assert!(
        md.contains("| Metric | Value |\n| --- | ---: |\n| `accuracy` | 0.7000 |"),
        "{md}"
    );
    assert!(md.contains("| `roc_auc` | 0.7020 |"), "{md}");
    assert!(md.contains("| ✅ | `roc_auc >= 0.7` | 0.7020 |"), "{md}");
    assert!(md.contains("| ❌ | `accuracy >= 0.9` | 0.7000 |"), "{md}");
    assert!(md.contains("| true \\ predicted | c0 | c1 |"), "{md}");
    assert!(
        md.contains("| **c0** | 7 | 2 |\n| **c1** | 4 | 7 |"),
        "{md}"
    );

    let ok = render_markdown("t", &metrics, &gates[..1], None);
    assert!(ok.contains("✅ **All 1 gate passed**"), "{ok}");
    assert!(!ok.contains("Confusion"));
    let bare = render_markdown("t", &[], &[], None);
    assert!(bare.contains("No metrics"));
    assert!(!bare.contains("Gates"));

    // Class names cannot break the table.
    let names = vec!["a|b".to_string(), "<x>\n*y*".to_string()];
    let cm = vec![vec![1, 0], vec![0, 1]];
    let md = render_markdown("t", &[], &[], Some((&names, &cm)));
    assert!(md.contains(r"| a\|b | \<x> \*y\* |"), "{md}");
    // Ragged input is rendered, not a panic.
    let ragged = vec![vec![1], vec![0, 1, 2]];
    let _ = render_markdown("t", &[], &[], Some((&names[..1], &ragged)));
    let _ = render_text("t", &[], &[], Some((&names[..1], &ragged)));
}

#[test]
fn text_report() {
    let report = classification_metrics(&MC_Y, &mc_proba(), &names(3), None).unwrap();
    let metrics = report.metrics();
    let gates = check_gates(
        &metrics,
        &[
            Gate::parse("f1_macro>=0.7").unwrap(),
            Gate::parse("log_loss<0.5").unwrap(),
        ],
    );
    let text = render_text("churn\x1b[31m", &metrics, &gates, Some(report.confusion()));
    assert!(!text.contains('\u{1b}'));
    assert!(
        text.starts_with("churn [31m\n==========\n\nMetrics\n"),
        "{text}"
    );
    assert!(text.contains("  accuracy            0.8000\n"), "{text}");
    assert!(text.contains("Gates: 1 of 2 gates failed\n"), "{text}");
    assert!(text.contains("  PASS  f1_macro >= 0.7  f1_macro = 0.7980, required >= 0.7\n"));
    assert!(text.contains("  FAIL  log_loss < 0.5   log_loss = 0.7305, required < 0.5\n"));
    assert!(
        text.contains("      c0  c1  c2\n  c0   3   1   0\n  c1   2   4   0\n"),
        "{text}"
    );
}
