//! Random forest on the histogram tree learner: [`ForestModel`] (fitted), [`ForestParams`]
//! (hyper-parameters, with [`MaxFeatures`]) and [`fit_forest`] (training).
//!
//! Each tree is grown depth-first to purity (or `max_depth` / `min_samples_leaf`) on a
//! bootstrap sample, choosing among a random subset of features at every node. Trees are
//! squared-error regression trees: for classification they regress the class indicator
//! (one tree per class for multiclass, one on `y` for binary), which is exactly the Gini
//! criterion, and leaves hold class frequencies. Predictions average the trees; multiclass
//! probabilities are normalised to sum to 1. Trees are built in parallel; the result does
//! not depend on the number of threads.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::binning::{compute_bins, BinnedData};
use crate::dataset::Dataset;
use crate::error::{MlError, Result};
use crate::grow::{grow, GrowParams, Workspace};
use crate::hist::{leaf_output, FeatureSet, GradPair, SplitParams};
use crate::labels::{check_data, check_labels, row_weights};
use crate::model::{self, importance, FeatureImportance, FeatureInfo};
use crate::params::{
    invalid, parse_bool, parse_objective, parse_opt_usize, parse_u64, parse_usize, ClassWeight,
    Objective,
};
use crate::predictor::LazyCompiled;
use crate::rng::Rng;
use crate::tree::Tree;

/// How many features each node considers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaxFeatures {
    /// `sqrt` for classification, a third for regression (the default).
    #[default]
    Auto,
    /// Square root of the feature count.
    Sqrt,
    /// Base-2 logarithm of the feature count.
    Log2,
    /// All features (bagged trees).
    All,
    /// This fraction of the features, in (0, 1].
    Fraction(f64),
    /// This many features.
    Count(usize),
}

impl MaxFeatures {
    fn resolve(&self, n_features: usize, objective: Objective) -> usize {
        let nf = n_features as f64;
        let m = match self {
            MaxFeatures::Auto if objective == Objective::Regression => (nf / 3.0).floor(),
            MaxFeatures::Auto | MaxFeatures::Sqrt => nf.sqrt().floor(),
            MaxFeatures::Log2 => nf.log2().floor(),
            MaxFeatures::All => nf,
            MaxFeatures::Fraction(f) => (nf * f).ceil(),
            MaxFeatures::Count(c) => *c as f64,
        };
        (m as usize).clamp(1, n_features.max(1))
    }

    fn parse(name: &str, v: &str) -> Result<Self> {
        let t = v.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(MaxFeatures::Auto),
            "sqrt" => Ok(MaxFeatures::Sqrt),
            "log2" => Ok(MaxFeatures::Log2),
            "all" | "none" => Ok(MaxFeatures::All),
            _ => {
                let expected =
                    "`auto`, `sqrt`, `log2`, `all`, a fraction in (0, 1) or a count >= 1";
                if let Ok(c) = t.parse::<usize>() {
                    return if c >= 1 {
                        Ok(MaxFeatures::Count(c))
                    } else {
                        Err(invalid(name, v, expected))
                    };
                }
                match t.parse::<f64>() {
                    Ok(f) if f > 0.0 && f <= 1.0 => Ok(MaxFeatures::Fraction(f)),
                    _ => Err(invalid(name, v, expected)),
                }
            }
        }
    }
}

/// Hyper-parameters of the random forest. Defaults follow scikit-learn's
/// `RandomForest{Classifier,Regressor}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestParams {
    /// `binary` (default), `multiclass` or `regression`.
    pub objective: Objective,
    /// Number of trees (default 100). Alias: `n_estimators`.
    pub n_trees: usize,
    /// Maximum depth (default `None`: grow until leaves are pure or too small).
    pub max_depth: Option<usize>,
    /// Minimum rows in a leaf (default 1).
    pub min_samples_leaf: usize,
    /// Features considered at each node (default `auto`).
    pub max_features: MaxFeatures,
    /// Draw a bootstrap sample for each tree (default true); otherwise use all rows.
    pub bootstrap: bool,
    /// Maximum bins per feature, 2..=255 (default 255).
    pub max_bins: usize,
    /// Rows sampled to compute numeric bin bounds (default 200000).
    pub bin_sample_rows: usize,
    /// Class weights (default none).
    pub class_weight: ClassWeight,
    /// Number of classes for multiclass (default: largest label + 1).
    pub num_class: Option<usize>,
    /// Seed (default 0).
    pub seed: u64,
    /// Worker threads (default 0: rayon's global pool). Results do not depend on it, and a
    /// fitted model records it as 0.
    pub n_threads: usize,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self {
            objective: Objective::Binary,
            n_trees: 100,
            max_depth: None,
            min_samples_leaf: 1,
            max_features: MaxFeatures::Auto,
            bootstrap: true,
            max_bins: 255,
            bin_sample_rows: 200_000,
            class_weight: ClassWeight::None,
            num_class: None,
            seed: 0,
            n_threads: 0,
        }
    }
}

const KNOWN: &[&str] = &[
    "objective",
    "n_trees",
    "max_depth",
    "min_samples_leaf",
    "max_features",
    "bootstrap",
    "max_bins",
    "bin_sample_rows",
    "class_weight",
    "num_class",
    "seed",
    "n_threads",
];

impl ForestParams {
    /// Defaults overridden by `key=value` pairs; errors name the parameter and the expected
    /// type and range.
    pub fn from_kv(pairs: &[(String, String)]) -> Result<Self> {
        let mut p = Self::default();
        for (k, v) in pairs {
            p.set(k, v)?;
        }
        p.validate()?;
        Ok(p)
    }

    /// Set one parameter from text.
    pub fn set(&mut self, key: &str, v: &str) -> Result<()> {
        let k = key.trim();
        match k {
            "objective" | "task" => self.objective = parse_objective(k, v)?,
            "n_trees" | "n_estimators" | "num_trees" => {
                self.n_trees = parse_usize(k, v, 1, 1_000_000)?
            }
            "max_depth" => self.max_depth = parse_opt_usize(k, v, 1)?,
            "min_samples_leaf" | "min_data_in_leaf" => {
                self.min_samples_leaf = parse_usize(k, v, 1, usize::MAX)?
            }
            "max_features" | "mtry" => self.max_features = MaxFeatures::parse(k, v)?,
            "bootstrap" => self.bootstrap = parse_bool(k, v)?,
            "max_bins" | "max_bin" => self.max_bins = parse_usize(k, v, 2, 255)?,
            "bin_sample_rows" => self.bin_sample_rows = parse_usize(k, v, 1, usize::MAX)?,
            "class_weight" => self.class_weight = ClassWeight::parse(k, v)?,
            "num_class" | "num_classes" => self.num_class = parse_opt_usize(k, v, 2)?,
            "seed" | "random_state" => self.seed = parse_u64(k, v)?,
            "n_threads" | "num_threads" | "n_jobs" => self.n_threads = parse_usize(k, v, 0, 1024)?,
            _ => {
                return Err(MlError::UnknownParam {
                    name: k.to_string(),
                    known: KNOWN.join(", "),
                })
            }
        }
        Ok(())
    }

    /// Check ranges.
    pub fn validate(&self) -> Result<()> {
        if self.n_trees == 0 {
            return Err(invalid("n_trees", "0", "an integer >= 1"));
        }
        if self.min_samples_leaf == 0 {
            return Err(invalid("min_samples_leaf", "0", "an integer >= 1"));
        }
        if self.max_depth == Some(0) {
            return Err(invalid("max_depth", "0", "`none` or an integer >= 1"));
        }
        if !(2..=255).contains(&self.max_bins) {
            return Err(invalid(
                "max_bins",
                &self.max_bins.to_string(),
                "an integer in 2..=255",
            ));
        }
        match self.max_features {
            MaxFeatures::Fraction(f) if !(f > 0.0 && f <= 1.0) => Err(invalid(
                "max_features",
                &f.to_string(),
                "a fraction in (0, 1]",
            )),
            MaxFeatures::Count(0) => Err(invalid("max_features", "0", "a count >= 1")),
            _ => Ok(()),
        }
    }
}

/// A fitted random forest. Serialise with [`ForestModel::to_json`] (or serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestModel {
    format_version: u32,
    objective: Objective,
    n_classes: usize,
    features: Vec<FeatureInfo>,
    trees: Vec<Tree>,
    params: ForestParams,
    #[serde(skip)]
    compiled: LazyCompiled,
}

/// Fit a random forest, with optional per-row sample weights.
pub fn fit_forest(
    params: &ForestParams,
    data: &Dataset,
    y: &[f64],
    weights: Option<&[f64]>,
) -> Result<ForestModel> {
    params.validate()?;
    if params.n_threads > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(params.n_threads)
            .build()
            .map_err(|e| MlError::ThreadPool(e.to_string()))?;
        pool.install(|| fit_inner(params, data, y, weights))
    } else {
        fit_inner(params, data, y, weights)
    }
}

fn fit_inner(
    params: &ForestParams,
    data: &Dataset,
    y: &[f64],
    weights: Option<&[f64]>,
) -> Result<ForestModel> {
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
    let w = row_weights(objective, y, n_classes, weights, &params.class_weight)?;
    let features = FeatureInfo::from_dataset(data);
    let fbins = compute_bins(data, params.max_bins, params.bin_sample_rows, params.seed);
    let binned = BinnedData::new(data, &fbins);
    let n = data.n_rows();
    let nf = binned.n_features;
    let gp = GrowParams {
        split: SplitParams {
            min_data_in_leaf: params.min_samples_leaf as f64,
            min_sum_hessian: 0.0,
            lambda_l1: 0.0,
            lambda_l2: 0.0,
            min_gain_to_split: 0.0,
            max_cat_to_onehot: 4,
            max_cat_threshold: 64,
            cat_smooth: 1.0,
            cat_l2: 0.0,
            min_data_per_group: 1.0,
        },
        num_leaves: usize::MAX,
        max_depth: params.max_depth,
        features_per_node: Some(params.max_features.resolve(nf, objective)),
        parallel: false,
    };
    let target = |i: usize, k: usize| -> f64 {
        match objective {
            Objective::Multiclass => f64::from(y[i] as usize == k),
            _ => y[i],
        }
    };
    let per_tree: Vec<Vec<Tree>> = (0..params.n_trees)
        .into_par_iter()
        .map(|t| {
            let mut rng = Rng::new(params.seed, t as u64);
            let mut mult = vec![0u32; n];
            if params.bootstrap {
                for _ in 0..n {
                    mult[rng.below(n)] += 1;
                }
            } else {
                mult.fill(1);
            }
            let mut ws = Workspace::new();
            let mut gh: Vec<GradPair> = vec![[0.0, 0.0]; n];
            let mut out = Vec::with_capacity(n_out);
            for k in 0..n_out {
                for (i, o) in gh.iter_mut().enumerate() {
                    let wi = w.as_ref().map_or(1.0, |w| w[i]) * mult[i] as f64;
                    *o = [(-target(i, k) * wi) as f32, wi as f32];
                }
                ws.idx.clear();
                ws.idx.extend(
                    (0..n as u32).filter(|&i| mult[i as usize] > 0 && gh[i as usize][1] > 0.0),
                );
                let n_root = ws.idx.len();
                if n_root == 0 {
                    out.push(Tree::constant(0.0, 0.0));
                    continue;
                }
                let grown = grow(
                    &mut ws,
                    n_root,
                    &binned,
                    &fbins,
                    &gh,
                    &FeatureSet::All,
                    &gp,
                    &mut rng,
                );
                let values = grown
                    .leaves
                    .iter()
                    .map(|l| leaf_output(l.sum.g, l.sum.h, 0.0, 0.0))
                    .collect();
                out.push(grown.to_tree(&fbins, values));
            }
            out
        })
        .collect();
    Ok(ForestModel {
        format_version: 1,
        objective,
        n_classes,
        features,
        trees: per_tree.into_iter().flatten().collect(),
        // The thread count does not change the model, so it is not part of the file.
        params: ForestParams {
            n_threads: 0,
            ..params.clone()
        },
        compiled: LazyCompiled::default(),
    })
}

impl ForestModel {
    /// The objective it was trained for.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// Number of classes (2 binary, `k` multiclass, 1 regression).
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// The training features, in order.
    pub fn features(&self) -> &[FeatureInfo] {
        &self.features
    }

    /// The trees, round-major: tree `t * n_outputs + k` is tree `t` for output `k`.
    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// The parameters used.
    pub fn params(&self) -> &ForestParams {
        &self.params
    }

    /// Outputs per row (1 binary/regression, `n_classes` multiclass).
    pub fn n_outputs(&self) -> usize {
        if self.objective == Objective::Multiclass {
            self.n_classes.max(1)
        } else {
            1
        }
    }

    fn n_rounds(&self) -> usize {
        (self.trees.len() / self.n_outputs()).max(1)
    }

    /// Averaged tree outputs, flat `n_rows x n_outputs` (class frequencies for
    /// classification, unnormalised).
    pub fn predict_raw(&self, data: &Dataset) -> Result<Vec<f64>> {
        let n_out = self.n_outputs();
        let c = self.compiled.get(&self.trees, self.features.len());
        model::predict_raw(
            &self.features,
            c,
            n_out,
            &[],
            1.0 / self.n_rounds() as f64,
            data,
        )
    }

    /// Binary: probability of class 1; regression: the prediction; multiclass: the most
    /// probable class.
    pub fn predict(&self, data: &Dataset) -> Result<Vec<f64>> {
        let raw = self.predict_raw(data)?;
        Ok(match self.objective {
            Objective::Regression => raw,
            Objective::Binary => raw.into_iter().map(|p| p.clamp(0.0, 1.0)).collect(),
            Objective::Multiclass => raw
                .chunks(self.n_outputs())
                .map(|c| {
                    let mut b = 0;
                    for (i, &x) in c.iter().enumerate() {
                        if x > c[b] {
                            b = i;
                        }
                    }
                    b as f64
                })
                .collect(),
        })
    }

    /// Class probabilities per row (binary: `[1 - p, p]`); rows sum to 1.
    pub fn predict_proba(&self, data: &Dataset) -> Result<Vec<Vec<f64>>> {
        let raw = self.predict_raw(data)?;
        self.to_proba(&raw)
    }

    fn to_proba(&self, raw: &[f64]) -> Result<Vec<Vec<f64>>> {
        match self.objective {
            Objective::Regression => Err(MlError::WrongObjective(
                "predict_proba needs a classification model".into(),
            )),
            Objective::Binary => Ok(raw
                .iter()
                .map(|&p| {
                    let p = p.clamp(0.0, 1.0);
                    vec![1.0 - p, p]
                })
                .collect()),
            Objective::Multiclass => Ok(raw.chunks(self.n_outputs()).map(normalise).collect()),
        }
    }

    /// One row (features in model order, category codes as `f64`, `NaN` missing): averaged
    /// outputs, length [`Self::n_outputs`].
    pub fn predict_raw_row(&self, row: &[f64]) -> Result<Vec<f64>> {
        let mut out = vec![0.0; self.n_outputs()];
        let c = self.compiled.get(&self.trees, self.features.len());
        model::predict_raw_row(
            self.features.len(),
            c,
            &[],
            1.0 / self.n_rounds() as f64,
            row,
            &mut out,
        )?;
        Ok(out)
    }

    /// One row's class probabilities.
    pub fn predict_proba_row(&self, row: &[f64]) -> Result<Vec<f64>> {
        let raw = self.predict_raw_row(row)?;
        Ok(self.to_proba(&raw)?.pop().unwrap_or_default())
    }

    /// Gain- and split-count importance of every feature.
    pub fn feature_importance(&self) -> Vec<FeatureImportance> {
        importance(&self.features, &self.trees)
    }

    /// The model as JSON (deterministic bytes, exact floats).
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Read a model written by [`Self::to_json`].
    pub fn from_json(s: &str) -> Result<Self> {
        let m: ForestModel = serde_json::from_str(s)?;
        for (i, t) in m.trees.iter().enumerate() {
            t.validate(m.features.len())
                .map_err(|e| MlError::FeatureMismatch(format!("invalid model: tree {i}: {e}")))?;
        }
        if m.trees.is_empty() || m.trees.len().checked_rem(m.n_outputs()) != Some(0) {
            return Err(MlError::FeatureMismatch(
                "invalid model: bad tree count".into(),
            ));
        }
        Ok(m)
    }
}

fn normalise(c: &[f64]) -> Vec<f64> {
    let v: Vec<f64> = c.iter().map(|&x| x.max(0.0)).collect();
    let s: f64 = v.iter().sum();
    if s > 0.0 {
        v.iter().map(|x| x / s).collect()
    } else {
        vec![1.0 / c.len() as f64; c.len()]
    }
}
