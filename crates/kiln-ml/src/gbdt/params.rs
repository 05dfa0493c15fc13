//! [`GbdtParams`]: the hyper-parameters of the gradient-boosted trees, their defaults and the
//! `key=value` parser.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::params::{
    invalid, parse_f64, parse_objective, parse_opt_usize, parse_u64, parse_usize, ClassWeight,
    Objective,
};

/// Hyper-parameters of [`crate::GbdtModel`]. Defaults follow LightGBM (which match
/// scikit-learn's `HistGradientBoosting*` where both have the parameter).
///
/// Every field has a default, so a partial JSON object deserialises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GbdtParams {
    /// `binary` (default), `multiclass` or `regression`.
    pub objective: Objective,
    /// Number of boosting rounds (default 100). Multiclass grows one tree per class per round.
    /// Aliases: `num_iterations`, `n_estimators`, `max_iter`.
    pub n_trees: usize,
    /// Shrinkage applied to every tree (default 0.1). Alias: `eta`.
    pub learning_rate: f64,
    /// Maximum leaves per tree, grown best-first (default 31). Alias: `max_leaf_nodes`.
    pub num_leaves: usize,
    /// Maximum tree depth (default `None`: unlimited).
    pub max_depth: Option<usize>,
    /// Minimum rows in a leaf (default 20). Alias: `min_samples_leaf`.
    pub min_data_in_leaf: usize,
    /// Minimum sum of hessians in a leaf (default 1e-3).
    pub min_sum_hessian_in_leaf: f64,
    /// L1 regularisation of leaf values (default 0).
    pub lambda_l1: f64,
    /// L2 regularisation of leaf values (default 0). Alias: `l2_regularization`.
    pub lambda_l2: f64,
    /// Minimum gain to make a split (default 0).
    pub min_gain_to_split: f64,
    /// Maximum bins per feature, 2..=255 (default 255), plus one bin for missing values.
    pub max_bins: usize,
    /// Rows sampled (deterministically) to compute numeric bin bounds (default 200000).
    pub bin_sample_rows: usize,
    /// Categorical features with at most this many categories in a leaf use one-vs-rest
    /// splits (default 4).
    pub max_cat_to_onehot: usize,
    /// Maximum categories on the left side of a categorical split (default 32).
    pub max_cat_threshold: usize,
    /// Smoothing added to the hessian when ordering categories, and the minimum rows a
    /// category needs to be considered (default 10).
    pub cat_smooth: f64,
    /// Extra L2 regularisation of categorical splits (default 10).
    pub cat_l2: f64,
    /// Minimum rows per group of categories in a categorical split (default 100).
    pub min_data_per_group: usize,
    /// Fraction of rows sampled (without replacement) for each round, in (0, 1] (default 1).
    pub bagging_fraction: f64,
    /// Fraction of features sampled for each tree, in (0, 1] (default 1).
    pub feature_fraction: f64,
    /// Stop when the validation metric has not improved for this many rounds, and keep the
    /// best round's trees (default `None`: no early stopping).
    pub early_stopping_rounds: Option<usize>,
    /// With early stopping and no validation set given, the fraction of the training rows
    /// held out for validation (default 0.1).
    pub validation_fraction: f64,
    /// Class weights for classification (default none).
    pub class_weight: ClassWeight,
    /// Number of classes for multiclass (default: largest label + 1).
    pub num_class: Option<usize>,
    /// Seed of every random choice (default 0).
    pub seed: u64,
    /// Worker threads (default 0: rayon's global pool). Results do not depend on it, and a
    /// fitted model records it as 0.
    pub n_threads: usize,
}

impl Default for GbdtParams {
    fn default() -> Self {
        Self {
            objective: Objective::Binary,
            n_trees: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            max_depth: None,
            min_data_in_leaf: 20,
            min_sum_hessian_in_leaf: 1e-3,
            lambda_l1: 0.0,
            lambda_l2: 0.0,
            min_gain_to_split: 0.0,
            max_bins: 255,
            bin_sample_rows: 200_000,
            max_cat_to_onehot: 4,
            max_cat_threshold: 32,
            cat_smooth: 10.0,
            cat_l2: 10.0,
            min_data_per_group: 100,
            bagging_fraction: 1.0,
            feature_fraction: 1.0,
            early_stopping_rounds: None,
            validation_fraction: 0.1,
            class_weight: ClassWeight::None,
            num_class: None,
            seed: 0,
            n_threads: 0,
        }
    }
}

/// The accepted parameter names (canonical names first, then aliases).
const KNOWN: &[&str] = &[
    "objective",
    "n_trees",
    "learning_rate",
    "num_leaves",
    "max_depth",
    "min_data_in_leaf",
    "min_sum_hessian_in_leaf",
    "lambda_l1",
    "lambda_l2",
    "min_gain_to_split",
    "max_bins",
    "bin_sample_rows",
    "max_cat_to_onehot",
    "max_cat_threshold",
    "cat_smooth",
    "cat_l2",
    "min_data_per_group",
    "bagging_fraction",
    "feature_fraction",
    "early_stopping_rounds",
    "validation_fraction",
    "class_weight",
    "num_class",
    "seed",
    "n_threads",
];

impl GbdtParams {
    /// Defaults overridden by `key=value` pairs (e.g. from `--param k=v`). Errors name the
    /// parameter and the expected type and range.
    ///
    /// ```
    /// let p = kiln_ml::GbdtParams::from_kv(&[("num_leaves".into(), "63".into())]).unwrap();
    /// assert_eq!(p.num_leaves, 63);
    /// let e = kiln_ml::GbdtParams::from_kv(&[("learning_rate".into(), "fast".into())]).unwrap_err();
    /// assert!(e.to_string().contains("learning_rate"));
    /// ```
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
            "n_trees" | "num_iterations" | "num_boost_round" | "n_estimators" | "max_iter" => {
                self.n_trees = parse_usize(k, v, 1, 1_000_000)?
            }
            "learning_rate" | "eta" | "shrinkage_rate" => {
                self.learning_rate = parse_f64(k, v, 0.0, true, 1e3)?
            }
            "num_leaves" | "max_leaf_nodes" => self.num_leaves = parse_usize(k, v, 2, 1 << 20)?,
            "max_depth" => self.max_depth = parse_opt_usize(k, v, 1)?,
            "min_data_in_leaf" | "min_samples_leaf" | "min_child_samples" => {
                self.min_data_in_leaf = parse_usize(k, v, 1, usize::MAX)?
            }
            "min_sum_hessian_in_leaf" | "min_child_weight" | "min_hessian_to_split" => {
                self.min_sum_hessian_in_leaf = parse_f64(k, v, 0.0, false, f64::INFINITY)?
            }
            "lambda_l1" | "reg_alpha" => {
                self.lambda_l1 = parse_f64(k, v, 0.0, false, f64::INFINITY)?
            }
            "lambda_l2" | "reg_lambda" | "l2_regularization" => {
                self.lambda_l2 = parse_f64(k, v, 0.0, false, f64::INFINITY)?
            }
            "min_gain_to_split" | "min_split_gain" => {
                self.min_gain_to_split = parse_f64(k, v, 0.0, false, f64::INFINITY)?
            }
            "max_bins" | "max_bin" => self.max_bins = parse_usize(k, v, 2, 255)?,
            "bin_sample_rows" | "bin_construct_sample_cnt" => {
                self.bin_sample_rows = parse_usize(k, v, 1, usize::MAX)?
            }
            "max_cat_to_onehot" => self.max_cat_to_onehot = parse_usize(k, v, 1, 256)?,
            "max_cat_threshold" => self.max_cat_threshold = parse_usize(k, v, 1, 256)?,
            "cat_smooth" => self.cat_smooth = parse_f64(k, v, 0.0, false, f64::INFINITY)?,
            "cat_l2" => self.cat_l2 = parse_f64(k, v, 0.0, false, f64::INFINITY)?,
            "min_data_per_group" => self.min_data_per_group = parse_usize(k, v, 1, usize::MAX)?,
            "bagging_fraction" | "subsample" => {
                self.bagging_fraction = parse_f64(k, v, 0.0, true, 1.0)?
            }
            "feature_fraction" | "colsample_bytree" => {
                self.feature_fraction = parse_f64(k, v, 0.0, true, 1.0)?
            }
            "early_stopping_rounds" | "early_stopping_round" | "n_iter_no_change" => {
                self.early_stopping_rounds = match v.trim().to_ascii_lowercase().as_str() {
                    "none" | "0" | "" => None,
                    _ => Some(parse_usize(k, v, 1, usize::MAX)?),
                }
            }
            "validation_fraction" => self.validation_fraction = parse_f64(k, v, 0.0, false, 0.9)?,
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

    /// Check ranges (for parameters built in code or deserialised rather than parsed).
    pub fn validate(&self) -> Result<()> {
        let fail = |name: &str, value: String, expected: &str| Err(invalid(name, &value, expected));
        if self.n_trees == 0 {
            return fail("n_trees", self.n_trees.to_string(), "an integer >= 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return fail(
                "learning_rate",
                self.learning_rate.to_string(),
                "a number > 0",
            );
        }
        if self.num_leaves < 2 {
            return fail("num_leaves", self.num_leaves.to_string(), "an integer >= 2");
        }
        if self.max_depth == Some(0) {
            return fail("max_depth", "0".into(), "`none` or an integer >= 1");
        }
        if self.min_data_in_leaf == 0 {
            return fail("min_data_in_leaf", "0".into(), "an integer >= 1");
        }
        for (name, v) in [
            ("min_sum_hessian_in_leaf", self.min_sum_hessian_in_leaf),
            ("lambda_l1", self.lambda_l1),
            ("lambda_l2", self.lambda_l2),
            ("min_gain_to_split", self.min_gain_to_split),
            ("cat_smooth", self.cat_smooth),
            ("cat_l2", self.cat_l2),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return fail(name, v.to_string(), "a finite number >= 0");
            }
        }
        if !(2..=255).contains(&self.max_bins) {
            return fail(
                "max_bins",
                self.max_bins.to_string(),
                "an integer in 2..=255",
            );
        }
        for (name, v) in [
            ("bagging_fraction", self.bagging_fraction),
            ("feature_fraction", self.feature_fraction),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return fail(name, v.to_string(), "a number in (0, 1]");
            }
        }
        if !(0.0..=0.9).contains(&self.validation_fraction) {
            return fail(
                "validation_fraction",
                self.validation_fraction.to_string(),
                "a number in [0, 0.9]",
            );
        }
        if self.early_stopping_rounds == Some(0) {
            return fail(
                "early_stopping_rounds",
                "0".into(),
                "`none` or an integer >= 1",
            );
        }
        if self.max_cat_to_onehot == 0
            || self.max_cat_threshold == 0
            || self.min_data_per_group == 0
        {
            return fail(
                "max_cat_to_onehot/max_cat_threshold/min_data_per_group",
                "0".into(),
                "integers >= 1",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn parses_and_reports_errors() {
        let p = GbdtParams::from_kv(&[
            kv("objective", "multiclass"),
            kv("max_iter", "50"),
            kv("max_depth", "none"),
            kv("class_weight", "balanced"),
            kv("early_stopping_rounds", "10"),
        ])
        .unwrap();
        assert_eq!(p.objective, Objective::Multiclass);
        assert_eq!(p.n_trees, 50);
        assert_eq!(p.class_weight, ClassWeight::Balanced);
        assert_eq!(p.early_stopping_rounds, Some(10));

        let e = GbdtParams::from_kv(&[kv("num_leaves", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_leaves") && e.contains("2.."), "{e}");
        let e = GbdtParams::from_kv(&[kv("bagging_fraction", "1.5")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bagging_fraction") && e.contains("(0, 1]"),
            "{e}"
        );
        let e = GbdtParams::from_kv(&[kv("nope", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown parameter `nope`"), "{e}");
        let e = GbdtParams::from_kv(&[kv("objective", "ranking")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("binary"), "{e}");
    }

    #[test]
    fn partial_json_uses_defaults() {
        let p: GbdtParams = serde_json::from_str(r#"{"num_leaves": 7}"#).unwrap();
        assert_eq!(p.num_leaves, 7);
        assert_eq!(p.n_trees, 100);
    }
}
