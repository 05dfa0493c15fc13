//! Shared parameter types ([`Objective`], [`ClassWeight`]) and the `key=value` parsing
//! helpers behind `GbdtParams::from_kv` and `ForestParams::from_kv`.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Two classes, labels `0`/`1`; predicts the probability of class `1` (log loss).
    #[default]
    Binary,
    /// `k` classes, labels `0..k`; predicts class probabilities (softmax, multi log loss).
    Multiclass,
    /// Real-valued target (squared error).
    Regression,
}

impl Objective {
    /// Parse `binary` / `multiclass` / `regression` (and a few common aliases).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "binary" | "binary_logloss" | "logistic" | "classification" => Some(Objective::Binary),
            "multiclass" | "softmax" | "multi_logloss" | "multiclassification" => {
                Some(Objective::Multiclass)
            }
            "regression" | "l2" | "mse" | "squared_error" | "regression_l2" => {
                Some(Objective::Regression)
            }
            _ => None,
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Binary => "binary",
            Objective::Multiclass => "multiclass",
            Objective::Regression => "regression",
        }
    }
}

/// Per-class weights for classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Every row weighs 1 (times its sample weight).
    #[default]
    None,
    /// Class `c` weighs `n / (k * count_c)`, as scikit-learn's `class_weight="balanced"`.
    Balanced,
    /// Explicit weight per class index.
    Custom(Vec<f64>),
}

impl ClassWeight {
    /// Parse `none`, `balanced`, or a comma-separated list of per-class weights.
    pub(crate) fn parse(name: &str, v: &str) -> Result<Self> {
        let t = v.trim().to_ascii_lowercase();
        match t.as_str() {
            "none" | "" => Ok(ClassWeight::None),
            "balanced" => Ok(ClassWeight::Balanced),
            _ => {
                let ws: Option<Vec<f64>> = t
                    .split(',')
                    .map(|x| {
                        x.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|w| w.is_finite() && *w >= 0.0)
                    })
                    .collect();
                ws.map(ClassWeight::Custom).ok_or_else(|| {
                    invalid(name, v, "`none`, `balanced`, or comma-separated non-negative numbers (one per class)")
                })
            }
        }
    }
}

pub(crate) fn invalid(name: &str, value: &str, expected: &str) -> MlError {
    MlError::InvalidParam {
        name: name.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

pub(crate) fn parse_usize(name: &str, v: &str, min: usize, max: usize) -> Result<usize> {
    match v.trim().parse::<usize>() {
        Ok(x) if (min..=max).contains(&x) => Ok(x),
        _ if max == usize::MAX => Err(invalid(name, v, &format!("an integer >= {min}"))),
        _ => Err(invalid(name, v, &format!("an integer in {min}..={max}"))),
    }
}

/// `none`, `-1` (LightGBM's convention) or an integer `>= min`.
pub(crate) fn parse_opt_usize(name: &str, v: &str, min: usize) -> Result<Option<usize>> {
    let t = v.trim().to_ascii_lowercase();
    if t == "none" || t == "-1" || t.is_empty() {
        return Ok(None);
    }
    match t.parse::<usize>() {
        Ok(x) if x >= min => Ok(Some(x)),
        _ => Err(invalid(
            name,
            v,
            &format!("`none` (or -1) or an integer >= {min}"),
        )),
    }
}

/// A finite number in `[lo, hi]` (or `(lo, hi]` when `lo_open`).
pub(crate) fn parse_f64(name: &str, v: &str, lo: f64, lo_open: bool, hi: f64) -> Result<f64> {
    let ok = |x: f64| x.is_finite() && (if lo_open { x > lo } else { x >= lo }) && x <= hi;
    match v.trim().parse::<f64>() {
        Ok(x) if ok(x) => Ok(x),
        _ => {
            let range = match (lo_open, hi.is_finite()) {
                (true, true) => format!("a number in ({lo}, {hi}]"),
                (false, true) => format!("a number in [{lo}, {hi}]"),
                (true, false) => format!("a number > {lo}"),
                (false, false) => format!("a number >= {lo}"),
            };
            Err(invalid(name, v, &range))
        }
    }
}

pub(crate) fn parse_u64(name: &str, v: &str) -> Result<u64> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| invalid(name, v, "a non-negative integer"))
}

pub(crate) fn parse_objective(name: &str, v: &str) -> Result<Objective> {
    Objective::parse(v)
        .ok_or_else(|| invalid(name, v, "one of `binary`, `multiclass`, `regression`"))
}

pub(crate) fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(name, v, "a boolean (`true` or `false`)")),
    }
}
