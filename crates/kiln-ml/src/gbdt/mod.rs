//! Histogram gradient-boosted decision trees, LightGBM-style: [`GbdtModel`] (the fitted
//! model), [`GbdtParams`] (hyper-parameters), [`fit`] / [`fit_with`] (training) and
//! [`Validation`] (a validation set for early stopping).
//!
//! Training bins every feature (numeric: up to 255 quantile bins; categorical: one bin per
//! category; both with a missing-value bin), then grows each tree best-first up to
//! `num_leaves`, building gradient/hessian histograms for the smaller child of each split and
//! deriving the larger by subtraction. Missing values go to whichever side gains more;
//! categorical features split natively (one-vs-rest for few categories, otherwise categories
//! sorted by gradient/hessian ratio). Objectives: binary log loss, multiclass softmax (one
//! tree per class per round), L2 regression.
//!
//! Results are deterministic: the same data, parameters and seed give a bit-identical model
//! (and JSON file) whatever the number of threads.
//!
//! ```
//! use kiln_ml::{Dataset, Feature, GbdtParams};
//! let x: Vec<f64> = (0..200).map(|i| i as f64).collect();
//! let y: Vec<f64> = x.iter().map(|&v| if v > 100.0 { 1.0 } else { 0.0 }).collect();
//! let data = Dataset::new(vec![Feature::numeric("x", x)]).unwrap();
//! let params = GbdtParams { n_trees: 20, ..GbdtParams::default() };
//! let model = kiln_ml::gbdt::fit(&params, &data, &y).unwrap();
//! let p = model.predict(&data).unwrap();
//! assert!(p[150] > 0.9 && p[10] < 0.1);
//! let again = kiln_ml::GbdtModel::from_json(&model.to_json().unwrap()).unwrap();
//! assert_eq!(again.predict(&data).unwrap(), p);
//! ```

mod params;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use params::GbdtParams;

use crate::binning::{compute_bins, BinnedData};
use crate::dataset::Dataset;
use crate::error::{MlError, Result};
use crate::grow::{grow, GrowParams, GrownTree, Workspace};
use crate::hist::{leaf_output, prefetch_ptr, FeatureSet, GradPair, SplitParams, PREFETCH_AHEAD};
use crate::labels::{check_data, check_labels, row_weights};
use crate::model::{
    self, importance, row_matrix, sigmoid, softmax, FeatureImportance, FeatureInfo,
};
use crate::params::Objective;
use crate::predictor::LazyCompiled;
use crate::rng::Rng;
use crate::tree::Tree;

/// The current model format version.
pub const FORMAT_VERSION: u32 = 1;

/// A validation set: early stopping watches the objective's loss on it.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// Validation features (same columns as the training data).
    pub data: &'a Dataset,
    /// Validation labels.
    pub labels: &'a [f64],
}

/// A fitted gradient-boosted trees model. Serialise with [`GbdtModel::to_json`] (or serde);
/// read back with [`GbdtModel::from_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtModel {
    format_version: u32,
    objective: Objective,
    n_classes: usize,
    features: Vec<FeatureInfo>,
    #[serde(with = "crate::serde_f64::vec")]
    init_score: Vec<f64>,
    trees: Vec<Tree>,
    best_iteration: Option<usize>,
    valid_metric_name: Option<String>,
    #[serde(with = "crate::serde_f64::vec")]
    valid_metric: Vec<f64>,
    params: GbdtParams,
    #[serde(skip)]
    compiled: LazyCompiled,
}

/// Fit a model on `data` / labels `y` with `params` (no weights; early stopping, if enabled,
/// holds out `validation_fraction` of the rows).
pub fn fit(params: &GbdtParams, data: &Dataset, y: &[f64]) -> Result<GbdtModel> {
    fit_with(params, data, y, None, None)
}

/// Fit with optional per-row sample `weights` and an optional validation set for early
/// stopping (used instead of holding out training rows).
pub fn fit_with(
    params: &GbdtParams,
    data: &Dataset,
    y: &[f64],
    weights: Option<&[f64]>,
    valid: Option<Validation<'_>>,
) -> Result<GbdtModel> {
    params.validate()?;
    if params.n_threads > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(params.n_threads)
            .build()
            .map_err(|e| MlError::ThreadPool(e.to_string()))?;
        pool.install(|| fit_inner(params, data, y, weights, valid))
    } else {
        fit_inner(params, data, y, weights, valid)
    }
}

/// Check validation labels against the objective (a single class is fine here).
fn check_valid_labels(objective: Objective, y: &[f64], n_classes: usize) -> Result<()> {
    for (row, &v) in y.iter().enumerate() {
        let ok = match objective {
            Objective::Regression => v.is_finite(),
            Objective::Binary => v == 0.0 || v == 1.0,
            Objective::Multiclass => {
                v.is_finite() && v >= 0.0 && v.fract() == 0.0 && (v as usize) < n_classes
            }
        };
        if !ok {
            return Err(MlError::BadLabel {
                row,
                value: v,
                reason: "invalid validation label for the objective",
            });
        }
    }
    Ok(())
}

fn init_scores(objective: Objective, y: &[f64], w: Option<&[f64]>, n_classes: usize) -> Vec<f64> {
    let wt = |i: usize| w.map_or(1.0, |w| w[i]);
    let sw: f64 = (0..y.len()).map(wt).sum();
    match objective {
        Objective::Regression => vec![(0..y.len()).map(|i| wt(i) * y[i]).sum::<f64>() / sw],
        Objective::Binary => {
            let p =
                ((0..y.len()).map(|i| wt(i) * y[i]).sum::<f64>() / sw).clamp(1e-15, 1.0 - 1e-15);
            vec![(p / (1.0 - p)).ln()]
        }
        Objective::Multiclass => {
            let mut s = vec![0.0; n_classes];
            for (i, &v) in y.iter().enumerate() {
                s[v as usize] += wt(i);
            }
            s.iter().map(|&c| (c / sw).max(1e-15).ln()).collect()
        }
    }
}

const GRAD_CHUNK: usize = 16_384;

/// Gradients of output `k` into `gh`. `probs` holds softmax probabilities (multiclass).
#[allow(clippy::too_many_arguments)]
fn gradients(
    objective: Objective,
    k: usize,
    n_out: usize,
    scores: &[f64],
    probs: &[f64],
    y: &[f64],
    w: Option<&[f64]>,
    gh: &mut [GradPair],
) {
    gh.par_chunks_mut(GRAD_CHUNK)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let base = ci * GRAD_CHUNK;
            for (j, out) in chunk.iter_mut().enumerate() {
                let i = base + j;
                let (g, h) = match objective {
                    Objective::Regression => (scores[i] - y[i], 1.0),
                    Objective::Binary => {
                        let p = sigmoid(scores[i]);
                        (p - y[i], (p * (1.0 - p)).max(1e-16))
                    }
                    Objective::Multiclass => {
                        let p = probs[i * n_out + k];
                        let t = if y[i] as usize == k { 1.0 } else { 0.0 };
                        (p - t, (p * (1.0 - p)).max(1e-16))
                    }
                };
                let wi = w.map_or(1.0, |w| w[i]);
                *out = [(g * wi) as f32, (h * wi) as f32];
            }
        });
}

fn softmax_all(scores: &[f64], n_out: usize, probs: &mut [f64]) {
    probs
        .par_chunks_mut(GRAD_CHUNK * n_out)
        .zip(scores.par_chunks(GRAD_CHUNK * n_out))
        .for_each(|(p, s)| {
            p.copy_from_slice(s);
            for row in p.chunks_mut(n_out) {
                softmax(row);
            }
        });
}

/// A raw pointer that may cross threads; see [`add_leaf_values`].
#[derive(Clone, Copy)]
struct SharedScores(*mut f64);

// SAFETY: only used by `add_leaf_values`, whose threads write disjoint elements.
unsafe impl Send for SharedScores {}
unsafe impl Sync for SharedScores {}

impl SharedScores {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f64 {
        self.0
    }
}

/// `scores[r * n_out + k] += values[leaf]` for the rows of every leaf of `tree`, in parallel
/// over fixed blocks of row positions.
fn add_leaf_values(
    scores: &mut [f64],
    n_out: usize,
    k: usize,
    idx: &[u32],
    tree: &GrownTree,
    values: &[f64],
) {
    let mut spans: Vec<(usize, usize, f64)> = tree
        .leaves
        .iter()
        .zip(values)
        .map(|(l, &v)| (l.start, l.end, v))
        .collect();
    spans.sort_by_key(|s| s.0);
    let n_pos = spans.last().map_or(0, |s| s.1);
    let len = scores.len();
    // Every index written must be in range; rows are distinct (the leaves partition a set of
    // distinct row indices), so no two threads write the same element.
    if idx[..n_pos].iter().any(|&r| r as usize * n_out + k >= len) {
        return;
    }
    let ptr = SharedScores(scores.as_mut_ptr());
    let n_blocks = n_pos.div_ceil(GRAD_CHUNK);
    (0..n_blocks).into_par_iter().for_each(|b| {
        let (lo, hi) = (b * GRAD_CHUNK, ((b + 1) * GRAD_CHUNK).min(n_pos));
        let first = spans.partition_point(|s| s.1 <= lo);
        for &(start, end, v) in &spans[first..] {
            if start >= hi {
                break;
            }
            let rows = &idx[start.max(lo)..end.min(hi)];
            for (i, &r) in rows.iter().enumerate() {
                if let Some(&ahead) = rows.get(i + PREFETCH_AHEAD) {
                    prefetch_ptr(ptr.get().wrapping_add(ahead as usize * n_out + k));
                }
                // SAFETY: in range (checked above) and written by this block only.
                unsafe { *ptr.get().add(r as usize * n_out + k) += v };
            }
        }
    });
}

/// Validation loss: binary log loss, multiclass log loss, or mean squared error.
fn valid_loss(objective: Objective, scores: &[f64], y: &[f64], n_out: usize) -> f64 {
    let n = y.len() as f64;
    let mut s = 0.0;
    match objective {
        Objective::Regression => {
            for (i, &t) in y.iter().enumerate() {
                let d = scores[i] - t;
                s += d * d;
            }
        }
        Objective::Binary => {
            for (i, &t) in y.iter().enumerate() {
                let p = sigmoid(scores[i]).clamp(1e-15, 1.0 - 1e-15);
                s -= if t == 1.0 { p.ln() } else { (1.0 - p).ln() };
            }
        }
        Objective::Multiclass => {
            let mut row = vec![0.0; n_out];
            for (i, &t) in y.iter().enumerate() {
                row.copy_from_slice(&scores[i * n_out..(i + 1) * n_out]);
                softmax(&mut row);
                s -= row[t as usize].clamp(1e-15, 1.0).ln();
            }
        }
    }
    s / n
}

fn metric_name(objective: Objective) -> &'static str {
    match objective {
        Objective::Binary => "binary_logloss",
        Objective::Multiclass => "multi_logloss",
        Objective::Regression => "l2",
    }
}

/// A training set split into training and held-out validation parts.
struct HeldOut {
    train: Dataset,
    train_y: Vec<f64>,
    train_w: Option<Vec<f64>>,
    valid: Dataset,
    valid_y: Vec<f64>,
}

fn hold_out(
    params: &GbdtParams,
    data: &Dataset,
    y: &[f64],
    weights: Option<&[f64]>,
    n_classes: usize,
) -> Result<HeldOut> {
    let n = data.n_rows();
    let n_val = ((n as f64 * params.validation_fraction).round() as usize).clamp(1, n - 1);
    let mut perm: Vec<usize> = (0..n).collect();
    Rng::new(params.seed, 0x5EED_5A11).shuffle(&mut perm);
    let mut val_idx = perm[..n_val].to_vec();
    let mut tr_idx = perm[n_val..].to_vec();
    val_idx.sort_unstable();
    tr_idx.sort_unstable();
    let train_y: Vec<f64> = tr_idx.iter().map(|&i| y[i]).collect();
    // The training part must still have two classes.
    let objective = params.objective;
    check_labels(
        objective,
        &train_y,
        Some(n_classes).filter(|_| objective == Objective::Multiclass),
    )?;
    Ok(HeldOut {
        train: data.take(&tr_idx),
        train_y,
        train_w: weights.map(|w| tr_idx.iter().map(|&i| w[i]).collect()),
        valid: data.take(&val_idx),
        valid_y: val_idx.iter().map(|&i| y[i]).collect(),
    })
}

fn fit_inner(
    params: &GbdtParams,
    data: &Dataset,
    y: &[f64],
    weights: Option<&[f64]>,
    valid: Option<Validation<'_>>,
) -> Result<GbdtModel> {
    let objective = params.objective;
    check_data(data, y, weights, "training data")?;
    let n_classes = check_labels(
        objective,
        y,
        params
            .num_class
            .filter(|_| objective == Objective::Multiclass),
    )?;
    let n_out = if objective == Objective::Multiclass {
        n_classes
    } else {
        1
    };
    let features = FeatureInfo::from_dataset(data);

    // Hold out a validation split when early stopping has no validation set.
    let split = match (valid, params.early_stopping_rounds) {
        (None, Some(_)) if params.validation_fraction > 0.0 && data.n_rows() >= 2 => {
            Some(hold_out(params, data, y, weights, n_classes)?)
        }
        _ => None,
    };
    let (train, ty, tw, valid): (&Dataset, &[f64], Option<&[f64]>, Option<Validation<'_>>) =
        match &split {
            Some(s) => (
                &s.train,
                &s.train_y,
                s.train_w.as_deref(),
                Some(Validation {
                    data: &s.valid,
                    labels: &s.valid_y,
                }),
            ),
            None => (data, y, weights, valid),
        };
    let valid_rows = match &valid {
        Some(v) => {
            check_data(v.data, v.labels, None, "validation data")?;
            check_valid_labels(objective, v.labels, n_classes)?;
            Some((row_matrix(&features, v.data)?, v.labels))
        }
        None => None,
    };

    let w = row_weights(objective, ty, n_classes, tw, &params.class_weight)?;
    let n = train.n_rows();
    let fbins = compute_bins(train, params.max_bins, params.bin_sample_rows, params.seed);
    let binned = BinnedData::new(train, &fbins);
    let nf = binned.n_features;

    let init = init_scores(objective, ty, w.as_deref(), n_classes);
    let mut scores: Vec<f64> = (0..n * n_out).map(|i| init[i % n_out]).collect();
    let mut probs = if objective == Objective::Multiclass {
        vec![0.0; n * n_out]
    } else {
        Vec::new()
    };
    let mut val_scores: Vec<f64> = valid_rows
        .as_ref()
        .map(|(m, _)| {
            (0..m.values.len() / nf.max(1) * n_out)
                .map(|i| init[i % n_out])
                .collect()
        })
        .unwrap_or_default();

    let gp = GrowParams {
        split: SplitParams {
            min_data_in_leaf: params.min_data_in_leaf as f64,
            min_sum_hessian: params.min_sum_hessian_in_leaf,
            lambda_l1: params.lambda_l1,
            lambda_l2: params.lambda_l2,
            min_gain_to_split: params.min_gain_to_split,
            max_cat_to_onehot: params.max_cat_to_onehot,
            max_cat_threshold: params.max_cat_threshold,
            cat_smooth: params.cat_smooth,
            cat_l2: params.cat_l2,
            min_data_per_group: params.min_data_per_group as f64,
        },
        num_leaves: params.num_leaves,
        max_depth: params.max_depth,
        features_per_node: None,
        parallel: true,
    };

    let mut ws = Workspace::new();
    let mut gh: Vec<GradPair> = vec![[0.0, 0.0]; n];
    let mut trees: Vec<Tree> = Vec::with_capacity(params.n_trees * n_out);
    let mut history: Vec<f64> = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut bag: Vec<u32> = Vec::new();
    let mut in_bag: Vec<bool> = Vec::new();
    let bagging = params.bagging_fraction < 1.0;

    for round in 0..params.n_trees {
        if bagging {
            let k = ((n as f64 * params.bagging_fraction).ceil() as usize).clamp(1, n);
            bag = Rng::new(params.seed, 0x1000_0000 + round as u64)
                .sample_sorted(n, k)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            in_bag.clear();
            in_bag.resize(n, false);
            for &r in &bag {
                in_bag[r as usize] = true;
            }
        }
        let feats = if params.feature_fraction < 1.0 {
            let m = ((nf as f64 * params.feature_fraction).ceil() as usize).clamp(1, nf);
            FeatureSet::Some(Rng::new(params.seed, 0x2000_0000 + round as u64).sample_sorted(nf, m))
        } else {
            FeatureSet::All
        };
        if objective == Objective::Multiclass {
            softmax_all(&scores, n_out, &mut probs);
        }
        for k in 0..n_out {
            gradients(
                objective,
                k,
                n_out,
                &scores,
                &probs,
                ty,
                w.as_deref(),
                &mut gh,
            );
            ws.idx.clear();
            if bagging {
                ws.idx.extend_from_slice(&bag);
            } else {
                ws.idx.extend(0..n as u32);
            }
            let n_root = ws.idx.len();
            let mut rng = Rng::new(params.seed, 0x3000_0000 + (round * n_out + k) as u64);
            let grown = grow(&mut ws, n_root, &binned, &fbins, &gh, &feats, &gp, &mut rng);
            let values: Vec<f64> = grown
                .leaves
                .iter()
                .map(|l| {
                    leaf_output(l.sum.g, l.sum.h, params.lambda_l1, params.lambda_l2)
                        * params.learning_rate
                })
                .collect();
            add_leaf_values(&mut scores, n_out, k, &ws.idx, &grown, &values);
            if bagging {
                // Rows outside the bag go down the tree on their bins.
                scores
                    .par_chunks_mut(GRAD_CHUNK * n_out)
                    .enumerate()
                    .for_each(|(ci, chunk)| {
                        for (j, row_scores) in chunk.chunks_mut(n_out).enumerate() {
                            let r = ci * GRAD_CHUNK + j;
                            if !in_bag[r] {
                                row_scores[k] += values[grown.leaf_of_binned(binned.row(r))];
                            }
                        }
                    });
            }
            let tree = grown.to_tree(&fbins, values);
            if let Some((m, _)) = &valid_rows {
                let vs = &mut val_scores;
                vs.par_chunks_mut(4096 * n_out)
                    .enumerate()
                    .for_each(|(ci, chunk)| {
                        for (j, o) in chunk.chunks_mut(n_out).enumerate() {
                            o[k] += tree.predict_row(m.row(ci * 4096 + j));
                        }
                    });
            }
            trees.push(tree);
        }
        if let Some((_, vy)) = &valid_rows {
            let loss = valid_loss(objective, &val_scores, vy, n_out);
            history.push(loss);
            if best.is_none_or(|(_, b)| loss < b) {
                best = Some((round, loss));
            }
            if let (Some(esr), Some((br, _))) = (params.early_stopping_rounds, best) {
                if round - br >= esr {
                    break;
                }
            }
        }
    }
    let best_iteration = match (params.early_stopping_rounds, best) {
        (Some(_), Some((br, _))) => {
            trees.truncate((br + 1) * n_out);
            Some(br + 1)
        }
        _ => None,
    };
    Ok(GbdtModel {
        format_version: FORMAT_VERSION,
        objective,
        n_classes,
        features,
        init_score: init,
        trees,
        best_iteration,
        valid_metric_name: valid_rows
            .as_ref()
            .map(|_| metric_name(objective).to_string()),
        valid_metric: history,
        // The thread count does not change the model, so it is not part of the file.
        params: GbdtParams {
            n_threads: 0,
            ..params.clone()
        },
        compiled: LazyCompiled::default(),
    })
}

impl GbdtModel {
    /// Fit (see [`fit`]).
    pub fn fit(params: &GbdtParams, data: &Dataset, y: &[f64]) -> Result<Self> {
        fit(params, data, y)
    }

    /// The objective it was trained for.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// Number of classes (2 for binary, `k` for multiclass, 1 for regression).
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// The training features, in order.
    pub fn features(&self) -> &[FeatureInfo] {
        &self.features
    }

    /// Initial raw score per output (log-odds of the base rate, log class priors, or mean).
    pub fn init_score(&self) -> &[f64] {
        &self.init_score
    }

    /// The trees, round-major: tree `r * n_outputs + k` is round `r`, output `k`. Leaf
    /// values include the learning rate.
    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// With early stopping: the number of rounds kept (best round + 1).
    pub fn best_iteration(&self) -> Option<usize> {
        self.best_iteration
    }

    /// Name of the validation metric (`binary_logloss`, `multi_logloss` or `l2`), if a
    /// validation set was used.
    pub fn valid_metric_name(&self) -> Option<&str> {
        self.valid_metric_name.as_deref()
    }

    /// Validation metric after each round (empty without a validation set).
    pub fn valid_metric(&self) -> &[f64] {
        &self.valid_metric
    }

    /// The parameters used.
    pub fn params(&self) -> &GbdtParams {
        &self.params
    }

    /// Raw scores per row: 1 for binary/regression, `n_classes` for multiclass.
    pub fn n_outputs(&self) -> usize {
        if self.objective == Objective::Multiclass {
            self.n_classes.max(1)
        } else {
            1
        }
    }

    /// Number of boosting rounds in the model.
    pub fn n_rounds(&self) -> usize {
        self.trees.len() / self.n_outputs().max(1)
    }

    /// The feature names, in order.
    pub fn feature_names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.name.as_str()).collect()
    }

    /// Raw scores (log-odds / softmax inputs / values), flat row-major `n_rows x n_outputs`.
    /// Columns are matched by name when the data's column order differs; categorical codes are
    /// remapped by category name when the data's category list differs (unknown categories
    /// go right at every split).
    pub fn predict_raw(&self, data: &Dataset) -> Result<Vec<f64>> {
        let c = self.compiled.get(&self.trees, self.features.len());
        model::predict_raw(
            &self.features,
            c,
            self.n_outputs(),
            &self.init_score,
            1.0,
            data,
        )
    }

    /// Binary: probability of class 1; regression: the prediction; multiclass: the most
    /// probable class index.
    pub fn predict(&self, data: &Dataset) -> Result<Vec<f64>> {
        let raw = self.predict_raw(data)?;
        Ok(match self.objective {
            Objective::Regression => raw,
            Objective::Binary => raw.into_iter().map(sigmoid).collect(),
            Objective::Multiclass => raw.chunks(self.n_outputs()).map(argmax).collect(),
        })
    }

    /// Class probabilities per row (binary: `[1 - p, p]`). Errors for regression.
    pub fn predict_proba(&self, data: &Dataset) -> Result<Vec<Vec<f64>>> {
        let raw = self.predict_raw(data)?;
        match self.objective {
            Objective::Regression => Err(MlError::WrongObjective(
                "predict_proba needs a classification model".into(),
            )),
            Objective::Binary => Ok(raw
                .into_iter()
                .map(|s| {
                    let p = sigmoid(s);
                    vec![1.0 - p, p]
                })
                .collect()),
            Objective::Multiclass => Ok(raw
                .chunks(self.n_outputs())
                .map(|c| {
                    let mut v = c.to_vec();
                    softmax(&mut v);
                    v
                })
                .collect()),
        }
    }

    /// Raw scores of one row into `out` (length [`Self::n_outputs`]). `row` holds the
    /// features in model order; categorical values are their codes as `f64`; `NaN` is
    /// missing.
    pub fn predict_raw_row_into(&self, row: &[f64], out: &mut [f64]) -> Result<()> {
        let n_out = self.n_outputs();
        if out.len() != n_out {
            return Err(MlError::LengthMismatch {
                what: "output buffer",
                got: out.len(),
                expected: n_out,
            });
        }
        let c = self.compiled.get(&self.trees, self.features.len());
        model::predict_raw_row(self.features.len(), c, &self.init_score, 1.0, row, out)
    }

    /// The raw score of one row for a single-output model (binary log-odds or regression
    /// value). Errors for multiclass (use [`Self::predict_raw_row_into`]).
    pub fn predict_raw_row(&self, row: &[f64]) -> Result<f64> {
        if self.n_outputs() != 1 {
            return Err(MlError::WrongObjective(
                "predict_raw_row needs a single-output model".into(),
            ));
        }
        let mut out = [0.0];
        self.predict_raw_row_into(row, &mut out)?;
        Ok(out[0])
    }

    /// One row's prediction: binary probability of class 1, regression value, or the
    /// multiclass class index.
    pub fn predict_row(&self, row: &[f64]) -> Result<f64> {
        match self.objective {
            Objective::Regression => self.predict_raw_row(row),
            Objective::Binary => Ok(sigmoid(self.predict_raw_row(row)?)),
            Objective::Multiclass => Ok(argmax(&self.predict_proba_row(row)?)),
        }
    }

    /// One row's class probabilities (binary: `[1 - p, p]`).
    pub fn predict_proba_row(&self, row: &[f64]) -> Result<Vec<f64>> {
        match self.objective {
            Objective::Regression => Err(MlError::WrongObjective(
                "predict_proba needs a classification model".into(),
            )),
            Objective::Binary => {
                let p = sigmoid(self.predict_raw_row(row)?);
                Ok(vec![1.0 - p, p])
            }
            Objective::Multiclass => {
                let mut out = vec![0.0; self.n_classes];
                self.predict_raw_row_into(row, &mut out)?;
                softmax(&mut out);
                Ok(out)
            }
        }
    }

    /// Gain- and split-count importance of every feature.
    pub fn feature_importance(&self) -> Vec<FeatureImportance> {
        importance(&self.features, &self.trees)
    }

    /// The model as JSON. The same model always gives the same bytes, and floats round-trip
    /// exactly.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Read a model written by [`Self::to_json`], checking its consistency.
    pub fn from_json(s: &str) -> Result<Self> {
        let m: GbdtModel = serde_json::from_str(s)?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(MlError::FeatureMismatch(format!("invalid model: {msg}")));
        if self.format_version != FORMAT_VERSION {
            return bad(format!(
                "format version {} (expected {FORMAT_VERSION})",
                self.format_version
            ));
        }
        let n_out = self.n_outputs();
        if self.init_score.len() != n_out {
            return bad(format!(
                "{} initial scores for {n_out} outputs",
                self.init_score.len()
            ));
        }
        if self.trees.len().checked_rem(n_out) != Some(0) {
            return bad(format!(
                "{} trees is not a multiple of {n_out} outputs",
                self.trees.len()
            ));
        }
        for (i, t) in self.trees.iter().enumerate() {
            t.validate(self.features.len())
                .or_else(|e| bad(format!("tree {i}: {e}")))?;
        }
        Ok(())
    }
}

fn argmax(v: &[f64]) -> f64 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as f64
}
