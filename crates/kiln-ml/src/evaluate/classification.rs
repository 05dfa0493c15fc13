//! Classification metrics ([`classification_metrics`], [`ClassificationReport`]).

use serde::Serialize;

use super::{EvalError, Task};

/// Log-loss clipping bound, as scikit-learn (`np.finfo(float64).eps`).
const LOG_LOSS_EPS: f64 = f64::EPSILON;
/// How far a probability row's sum may be from 1.
const ROW_SUM_TOLERANCE: f64 = 1e-6;
/// Number of equal-width calibration bins.
const CALIBRATION_BINS: usize = 10;

/// Precision, recall, F1 and support of one class (one-vs-rest).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Class name.
    pub name: String,
    /// Share of rows predicted as this class that are this class (0 when none is predicted).
    pub precision: f64,
    /// Share of rows of this class predicted as it (0 when the class is absent).
    pub recall: f64,
    /// Harmonic mean of precision and recall, `2·tp / (2·tp + fp + fn)` (0 when undefined).
    pub f1: f64,
    /// Number of rows whose true label is this class (unweighted count).
    pub support: u64,
}

/// One equal-width bin of the calibration table; it holds predicted positive-class
/// probabilities `p` with `lower < p <= upper` (the first bin also holds `p == 0`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationBin {
    /// Lower edge of the bin.
    pub lower: f64,
    /// Upper edge of the bin.
    pub upper: f64,
    /// Number of rows in the bin (unweighted).
    pub count: u64,
    /// (Weighted) mean predicted probability in the bin; `None` when the bin is empty.
    pub mean_predicted: Option<f64>,
    /// (Weighted) share of positives in the bin; `None` when the bin is empty.
    pub observed_frequency: Option<f64>,
}

/// Reliability of binary probabilities: a 10-bin calibration table and the Brier score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Ten equal-width bins over `[0, 1]`, empty ones included.
    pub bins: Vec<CalibrationBin>,
    /// Mean squared difference between the positive-class probability and the 0/1 label.
    pub brier: f64,
    /// Expected calibration error: `Σ (bin weight / total weight) · |mean predicted − observed|`.
    pub ece: f64,
}

/// Everything [`classification_metrics`] computes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationReport {
    /// [`Task::Binary`] for two classes, [`Task::Multiclass`] otherwise.
    pub task: Task,
    /// Number of rows evaluated.
    pub n_samples: usize,
    /// Whether sample weights were applied.
    pub weighted: bool,
    /// Class names, indexed by class.
    pub class_names: Vec<String>,
    /// Share of rows whose most probable class is the true class.
    pub accuracy: f64,
    /// Binary only: precision of the positive class (class 1).
    pub precision: Option<f64>,
    /// Binary only: recall of the positive class (class 1).
    pub recall: Option<f64>,
    /// Binary only: F1 of the positive class (class 1).
    pub f1: Option<f64>,
    /// Unweighted mean of per-class precision over the classes that occur in the labels or
    /// the predictions.
    pub precision_macro: f64,
    /// Unweighted mean of per-class recall (same classes as `precision_macro`).
    pub recall_macro: f64,
    /// Unweighted mean of per-class F1 (same classes as `precision_macro`).
    pub f1_macro: f64,
    /// Per-class precision averaged with the (weighted) support as weights.
    pub precision_weighted: f64,
    /// Per-class recall averaged with the (weighted) support as weights.
    pub recall_weighted: f64,
    /// Per-class F1 averaged with the (weighted) support as weights.
    pub f1_weighted: f64,
    /// One entry per class, in class order.
    pub per_class: Vec<ClassMetrics>,
    /// Area under the ROC curve (binary: of class 1's probability; multiclass: macro average
    /// of one-vs-rest AUCs over the classes for which it is defined). `None` when no class has
    /// both positive and negative rows.
    pub roc_auc: Option<f64>,
    /// Average precision (binary: class 1; multiclass: macro one-vs-rest over the classes
    /// present in the labels). `None` when undefined.
    pub pr_auc: Option<f64>,
    /// Mean negative log-likelihood of the true class.
    pub log_loss: f64,
    /// `confusion_matrix[true][predicted]` row counts (unweighted).
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Binary only: calibration table and Brier score.
    pub calibration: Option<Calibration>,
}

impl ClassificationReport {
    /// The report's scalar metrics as `(name, value)` pairs, in a stable order: `accuracy`,
    /// `precision`, `recall`, `f1` (binary), `precision_macro`, `recall_macro`, `f1_macro`,
    /// `precision_weighted`, `recall_weighted`, `f1_weighted`, `roc_auc`, `pr_auc` (when
    /// defined), `log_loss`, `brier`, `ece` (binary).
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let entries = [
            ("accuracy", Some(self.accuracy)),
            ("precision", self.precision),
            ("recall", self.recall),
            ("f1", self.f1),
            ("precision_macro", Some(self.precision_macro)),
            ("recall_macro", Some(self.recall_macro)),
            ("f1_macro", Some(self.f1_macro)),
            ("precision_weighted", Some(self.precision_weighted)),
            ("recall_weighted", Some(self.recall_weighted)),
            ("f1_weighted", Some(self.f1_weighted)),
            ("roc_auc", self.roc_auc),
            ("pr_auc", self.pr_auc),
            ("log_loss", Some(self.log_loss)),
            ("brier", self.calibration.as_ref().map(|c| c.brier)),
            ("ece", self.calibration.as_ref().map(|c| c.ece)),
        ];
        entries
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| (name.to_string(), v)))
            .collect()
    }

    /// Class names and the confusion matrix, in the shape [`super::render_markdown`] and
    /// [`super::render_text`] take.
    pub fn confusion(&self) -> (&[String], &[Vec<u64>]) {
        (&self.class_names, &self.confusion_matrix)
    }
}

/// Computes classification metrics from true class indices and predicted class
/// probabilities.
///
/// `y_true[i]` is a class index into `class_names`; `proba[i]` holds one probability per class
/// (each in `[0, 1]`, summing to 1 within 1e-6). The predicted class is the most probable one
/// (the lowest index on ties, as `argmax`). For two classes, class 1 is the positive class.
/// `weights`, when given, are non-negative per-row sample weights used by every metric except
/// the counts (`support`, `confusion_matrix`, calibration `count`).
///
/// # Errors
/// [`EvalError`] on empty input, mismatched lengths, fewer than two classes, a label out of
/// range, a non-finite or out-of-range probability, a row not summing to 1, or invalid
/// weights.
pub fn classification_metrics(
    y_true: &[usize],
    proba: &[Vec<f64>],
    class_names: &[String],
    weights: Option<&[f64]>,
) -> Result<ClassificationReport, EvalError> {
    let n = y_true.len();
    let k = class_names.len();
    validate(y_true, proba, k, weights)?;
    let w: Vec<f64> = match weights {
        Some(w) => w.to_vec(),
        None => vec![1.0; n],
    };
    let total_w: f64 = w.iter().sum();

    let pred: Vec<usize> = proba.iter().map(|row| argmax(row)).collect();

    // Confusion matrices: counts and weights.
    let mut counts = vec![vec![0u64; k]; k];
    let mut cmw = vec![vec![0.0f64; k]; k];
    for i in 0..n {
        counts[y_true[i]][pred[i]] += 1;
        cmw[y_true[i]][pred[i]] += w[i];
    }

    let correct_w: f64 = (0..n).filter(|&i| pred[i] == y_true[i]).map(|i| w[i]).sum();
    let accuracy = correct_w / total_w;

    let mut per_class = Vec::with_capacity(k);
    let mut true_sums = Vec::with_capacity(k);
    let mut present = Vec::with_capacity(k);
    for c in 0..k {
        let tp = cmw[c][c];
        let true_sum: f64 = cmw[c].iter().sum();
        let pred_sum: f64 = cmw.iter().map(|row| row[c]).sum();
        let support: u64 = counts[c].iter().sum();
        let predicted: u64 = counts.iter().map(|row| row[c]).sum();
        per_class.push(ClassMetrics {
            name: class_names[c].clone(),
            precision: safe_div(tp, pred_sum),
            recall: safe_div(tp, true_sum),
            f1: safe_div(2.0 * tp, true_sum + pred_sum),
            support,
        });
        true_sums.push(true_sum);
        present.push(support > 0 || predicted > 0);
    }
    let averaged = |f: fn(&ClassMetrics) -> f64| -> (f64, f64) {
        let mut sum = 0.0;
        let mut used = 0usize;
        let mut wsum = 0.0;
        let mut wtot = 0.0;
        for c in 0..k {
            if present[c] {
                sum += f(&per_class[c]);
                used += 1;
                wsum += true_sums[c] * f(&per_class[c]);
                wtot += true_sums[c];
            }
        }
        (safe_div(sum, used as f64), safe_div(wsum, wtot))
    };
    let (precision_macro, precision_weighted) = averaged(|m| m.precision);
    let (recall_macro, recall_weighted) = averaged(|m| m.recall);
    let (f1_macro, f1_weighted) = averaged(|m| m.f1);

    let log_loss = (0..n)
        .map(|i| {
            -w[i]
                * proba[i][y_true[i]]
                    .clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
                    .ln()
        })
        .sum::<f64>()
        / total_w;

    let binary = k == 2;
    let (roc_auc, pr_auc) = if binary {
        let scores: Vec<f64> = proba.iter().map(|r| r[1]).collect();
        let is_pos: Vec<bool> = y_true.iter().map(|&y| y == 1).collect();
        let curve = BinaryCurve::new(&is_pos, &scores, &w);
        (curve.roc_auc(), curve.average_precision())
    } else {
        let mut roc = Vec::new();
        let mut ap = Vec::new();
        for c in 0..k {
            let scores: Vec<f64> = proba.iter().map(|r| r[c]).collect();
            let is_pos: Vec<bool> = y_true.iter().map(|&y| y == c).collect();
            let curve = BinaryCurve::new(&is_pos, &scores, &w);
            roc.extend(curve.roc_auc());
            ap.extend(curve.average_precision());
        }
        (mean(&roc), mean(&ap))
    };

    let (precision, recall, f1, calibration) = if binary {
        let pos = &per_class[1];
        (
            Some(pos.precision),
            Some(pos.recall),
            Some(pos.f1),
            Some(calibration(y_true, proba, &w, total_w)),
        )
    } else {
        (None, None, None, None)
    };

    Ok(ClassificationReport {
        task: if binary {
            Task::Binary
        } else {
            Task::Multiclass
        },
        n_samples: n,
        weighted: weights.is_some(),
        class_names: class_names.to_vec(),
        accuracy,
        precision,
        recall,
        f1,
        precision_macro,
        recall_macro,
        f1_macro,
        precision_weighted,
        recall_weighted,
        f1_weighted,
        per_class,
        roc_auc,
        pr_auc,
        log_loss,
        confusion_matrix: counts,
        calibration,
    })
}

fn validate(
    y_true: &[usize],
    proba: &[Vec<f64>],
    k: usize,
    weights: Option<&[f64]>,
) -> Result<(), EvalError> {
    let n = y_true.len();
    if n == 0 {
        return Err(EvalError::Empty { what: "labels" });
    }
    if proba.len() != n {
        return Err(EvalError::LengthMismatch {
            what: "probability rows",
            expected: n,
            got: proba.len(),
        });
    }
    if k < 2 {
        return Err(EvalError::TooFewClasses { got: k });
    }
    for (row, (&y, p)) in y_true.iter().zip(proba).enumerate() {
        if y >= k {
            return Err(EvalError::ClassOutOfRange {
                row,
                class: y,
                n_classes: k,
            });
        }
        if p.len() != k {
            return Err(EvalError::LengthMismatch {
                what: "probability row",
                expected: k,
                got: p.len(),
            });
        }
        for (class, &v) in p.iter().enumerate() {
            if !v.is_finite() {
                return Err(EvalError::NonFinite {
                    what: "probability",
                    row,
                    value: v,
                });
            }
            // float32 models (ONNX) may land a rounding step outside [0, 1].
            if !(-ROW_SUM_TOLERANCE..=1.0 + ROW_SUM_TOLERANCE).contains(&v) {
                return Err(EvalError::ProbabilityOutOfRange {
                    row,
                    class,
                    value: v,
                });
            }
        }
        let sum: f64 = p.iter().sum();
        if (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
            return Err(EvalError::ProbabilitiesDoNotSumToOne { row, sum });
        }
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(EvalError::LengthMismatch {
                what: "sample weights",
                expected: n,
                got: w.len(),
            });
        }
        for (row, &value) in w.iter().enumerate() {
            if !value.is_finite() {
                return Err(EvalError::NonFinite {
                    what: "sample weight",
                    row,
                    value,
                });
            }
            if value < 0.0 {
                return Err(EvalError::NegativeWeight { row, value });
            }
        }
        if w.iter().sum::<f64>() <= 0.0 {
            return Err(EvalError::ZeroTotalWeight);
        }
    }
    Ok(())
}

/// Index of the largest value; the first one on ties.
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn safe_div(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// Cumulative (weighted) true and false positives at each distinct score threshold, scores
/// descending — scikit-learn's `_binary_clf_curve`.
struct BinaryCurve {
    tps: Vec<f64>,
    fps: Vec<f64>,
}

impl BinaryCurve {
    fn new(is_pos: &[bool], scores: &[f64], w: &[f64]) -> Self {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Stable sort, descending by score (scores are finite).
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut tps = Vec::new();
        let mut fps = Vec::new();
        let (mut tp, mut fp) = (0.0, 0.0);
        for (pos, &i) in order.iter().enumerate() {
            if is_pos[i] {
                tp += w[i];
            } else {
                fp += w[i];
            }
            let last_of_tie = order
                .get(pos + 1)
                .is_none_or(|&next| scores[next] != scores[i]);
            if last_of_tie {
                tps.push(tp);
                fps.push(fp);
            }
        }
        Self { tps, fps }
    }

    fn total_pos(&self) -> f64 {
        self.tps.last().copied().unwrap_or(0.0)
    }

    fn total_neg(&self) -> f64 {
        self.fps.last().copied().unwrap_or(0.0)
    }

    /// Trapezoid area under (fpr, tpr) from (0, 0); `None` without both classes.
    fn roc_auc(&self) -> Option<f64> {
        let (p, n) = (self.total_pos(), self.total_neg());
        if p <= 0.0 || n <= 0.0 {
            return None;
        }
        let (mut prev_x, mut prev_y) = (0.0, 0.0);
        let mut area = 0.0;
        for (&tp, &fp) in self.tps.iter().zip(&self.fps) {
            let (x, y) = (fp / n, tp / p);
            area += (x - prev_x) * (y + prev_y) / 2.0;
            (prev_x, prev_y) = (x, y);
        }
        Some(area)
    }

    /// `Σ (R_t − R_{t−1}) · P_t` over thresholds; `None` without positives.
    fn average_precision(&self) -> Option<f64> {
        let p = self.total_pos();
        if p <= 0.0 {
            return None;
        }
        let mut prev_recall = 0.0;
        let mut ap = 0.0;
        for (&tp, &fp) in self.tps.iter().zip(&self.fps) {
            let recall = tp / p;
            let precision = safe_div(tp, tp + fp);
            ap += (recall - prev_recall) * precision;
            prev_recall = recall;
        }
        Some(ap.max(0.0))
    }
}

/// Ten equal-width bins of the positive-class probability (as scikit-learn's
/// `calibration_curve(strategy="uniform")`), the Brier score and the ECE.
fn calibration(y_true: &[usize], proba: &[Vec<f64>], w: &[f64], total_w: f64) -> Calibration {
    let mut count = [0u64; CALIBRATION_BINS];
    let mut bin_w = [0.0f64; CALIBRATION_BINS];
    let mut bin_p = [0.0f64; CALIBRATION_BINS];
    let mut bin_y = [0.0f64; CALIBRATION_BINS];
    let mut brier = 0.0;
    for (i, (&y, row)) in y_true.iter().zip(proba).enumerate() {
        let p = row[1];
        let y = if y == 1 { 1.0 } else { 0.0 };
        // Edges as numpy's `linspace(0, 1, 11)`: j · 0.1; p goes to the bin whose upper edge is
        // the first one >= p.
        let b = (1..CALIBRATION_BINS)
            .filter(|&j| j as f64 * 0.1 < p)
            .count();
        count[b] += 1;
        bin_w[b] += w[i];
        bin_p[b] += w[i] * p;
        bin_y[b] += w[i] * y;
        brier += w[i] * (p - y) * (p - y);
    }
    let mut ece = 0.0;
    let bins = (0..CALIBRATION_BINS)
        .map(|b| {
            let (mean_predicted, observed_frequency) = if bin_w[b] > 0.0 {
                let mp = bin_p[b] / bin_w[b];
                let of = bin_y[b] / bin_w[b];
                ece += bin_w[b] / total_w * (mp - of).abs();
                (Some(mp), Some(of))
            } else {
                (None, None)
            };
            CalibrationBin {
                lower: b as f64 / CALIBRATION_BINS as f64,
                upper: (b + 1) as f64 / CALIBRATION_BINS as f64,
                count: count[b],
                mean_predicted,
                observed_frequency,
            }
        })
        .collect();
    Calibration {
        bins,
        brier: brier / total_w,
        ece,
    }
}
