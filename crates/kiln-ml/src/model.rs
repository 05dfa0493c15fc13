//! Pieces shared by the fitted models: the feature schema ([`FeatureInfo`]), feature
//! importance ([`FeatureImportance`]), and the batch prediction engine that turns a columnar
//! [`Dataset`] into row-major blocks and runs the trees over them.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, FeatureKind, MISSING_CODE};
use crate::error::{MlError, Result};
use crate::predictor::Compiled;
use crate::tree::Tree;

/// A feature as the model saw it in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureInfo {
    /// Column name.
    pub name: String,
    /// Whether the feature is categorical.
    pub categorical: bool,
    /// The category names (categorical features): code `i` is `categories[i]`.
    pub categories: Vec<String>,
}

impl FeatureInfo {
    pub(crate) fn from_dataset(data: &Dataset) -> Vec<FeatureInfo> {
        data.features()
            .iter()
            .map(|f| match &f.kind {
                FeatureKind::Numeric(_) => FeatureInfo {
                    name: f.name.clone(),
                    categorical: false,
                    categories: Vec::new(),
                },
                FeatureKind::Categorical { categories, .. } => FeatureInfo {
                    name: f.name.clone(),
                    categorical: true,
                    categories: categories.clone(),
                },
            })
            .collect()
    }
}

/// Importance of one feature, summed over all trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureImportance {
    /// Feature name.
    pub name: String,
    /// Total gain (objective reduction) of the splits on this feature.
    pub gain: f64,
    /// Number of splits on this feature.
    pub splits: u64,
}

pub(crate) fn importance(features: &[FeatureInfo], trees: &[Tree]) -> Vec<FeatureImportance> {
    let mut out: Vec<FeatureImportance> = features
        .iter()
        .map(|f| FeatureImportance {
            name: f.name.clone(),
            gain: 0.0,
            splits: 0,
        })
        .collect();
    for t in trees {
        for (n, &g) in t.nodes.iter().zip(&t.split_gain) {
            if let Some(fi) = out.get_mut(n.feature as usize) {
                fi.gain += g;
                fi.splits += 1;
            }
        }
    }
    out
}

/// How to read one model feature from a prediction dataset.
enum Column<'a> {
    Numeric(&'a [f64]),
    /// Codes, with an optional remap (data code -> model code as f64, -1 for unknown).
    Categorical(&'a [u32], Option<Vec<f64>>),
}

fn resolve<'a>(features: &[FeatureInfo], data: &'a Dataset) -> Result<Vec<Column<'a>>> {
    let cols = data.features();
    let by_position =
        cols.len() == features.len() && cols.iter().zip(features).all(|(c, f)| c.name == f.name);
    let lookup: HashMap<&str, usize> = if by_position {
        HashMap::new()
    } else {
        cols.iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect()
    };
    let mut out = Vec::with_capacity(features.len());
    for (i, f) in features.iter().enumerate() {
        let ci = if by_position {
            i
        } else {
            *lookup.get(f.name.as_str()).ok_or_else(|| {
                MlError::FeatureMismatch(format!("the data has no feature `{}`", f.name))
            })?
        };
        let col = &cols[ci];
        match (&col.kind, f.categorical) {
            (FeatureKind::Numeric(v), false) => out.push(Column::Numeric(v)),
            (FeatureKind::Categorical { codes, categories }, true) => {
                let remap = if *categories == f.categories {
                    None
                } else {
                    let model: HashMap<&str, usize> = f
                        .categories
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.as_str(), i))
                        .collect();
                    Some(
                        categories
                            .iter()
                            .map(|c| model.get(c.as_str()).map_or(-1.0, |&m| m as f64))
                            .collect(),
                    )
                };
                out.push(Column::Categorical(codes, remap));
            }
            (_, true) => {
                return Err(MlError::FeatureMismatch(format!(
                    "feature `{}` is categorical in the model but numeric in the data",
                    f.name
                )))
            }
            (_, false) => {
                return Err(MlError::FeatureMismatch(format!(
                    "feature `{}` is numeric in the model but categorical in the data",
                    f.name
                )))
            }
        }
    }
    Ok(out)
}

/// Row-major `f64` copy of (part of) a dataset, in the model's feature order; categorical
/// values are their model codes as `f64`, missing values `NaN`.
pub(crate) struct RowMatrix {
    pub(crate) n_features: usize,
    pub(crate) values: Vec<f64>,
}

impl RowMatrix {
    pub(crate) fn row(&self, r: usize) -> &[f64] {
        &self.values[r * self.n_features..(r + 1) * self.n_features]
    }
}

fn fill_rows(cols: &[Column<'_>], start: usize, rows: usize, buf: &mut [f64]) {
    let nf = cols.len();
    for (f, col) in cols.iter().enumerate() {
        match col {
            Column::Numeric(v) => {
                for r in 0..rows {
                    buf[r * nf + f] = v[start + r];
                }
            }
            Column::Categorical(codes, remap) => {
                for r in 0..rows {
                    let c = codes[start + r];
                    buf[r * nf + f] = if c == MISSING_CODE {
                        f64::NAN
                    } else {
                        match remap {
                            None => c as f64,
                            Some(m) => m.get(c as usize).copied().unwrap_or(-1.0),
                        }
                    };
                }
            }
        }
    }
}

pub(crate) fn row_matrix(features: &[FeatureInfo], data: &Dataset) -> Result<RowMatrix> {
    let cols = resolve(features, data)?;
    let n = data.n_rows();
    let mut values = vec![0.0; n * features.len()];
    fill_rows(&cols, 0, n, &mut values);
    Ok(RowMatrix {
        n_features: features.len(),
        values,
    })
}

/// Rows per parallel prediction block.
const PRED_BLOCK: usize = 256;

/// Sum of tree outputs for every row: `out[r * n_out + k] = init[k] + scale * sum of trees
/// t with t % n_out == k`. Rows are processed in parallel blocks.
pub(crate) fn predict_raw(
    features: &[FeatureInfo],
    compiled: &Compiled,
    n_out: usize,
    init: &[f64],
    scale: f64,
    data: &Dataset,
) -> Result<Vec<f64>> {
    let cols = resolve(features, data)?;
    let n = data.n_rows();
    let nf = features.len();
    let mut out = vec![0.0; n * n_out];
    if n == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(PRED_BLOCK * n_out)
        .enumerate()
        .for_each(|(bi, chunk)| {
            let rows = chunk.len() / n_out;
            let mut buf = vec![0.0; rows * nf];
            fill_rows(&cols, bi * PRED_BLOCK, rows, &mut buf);
            compiled.predict_block(&buf, nf, n_out, chunk);
            for o in chunk.chunks_mut(n_out) {
                finish(o, init, scale);
            }
        });
    Ok(out)
}

/// Turn summed tree outputs into raw scores: `init + scale * sum` (the one formula used by
/// batch and single-row prediction, so both give identical numbers).
#[inline]
pub(crate) fn finish(acc: &mut [f64], init: &[f64], scale: f64) {
    for (k, o) in acc.iter_mut().enumerate() {
        *o = init.get(k).copied().unwrap_or(0.0) + scale * *o;
    }
}

/// Raw scores of one row (model feature order) into `out` (length `n_out`).
pub(crate) fn predict_raw_row(
    n_features: usize,
    compiled: &Compiled,
    init: &[f64],
    scale: f64,
    row: &[f64],
    out: &mut [f64],
) -> Result<()> {
    check_row(row, n_features)?;
    out.fill(0.0);
    compiled.predict_row(row, out.len(), out);
    finish(out, init, scale);
    Ok(())
}

/// Check a single prediction row's length.
pub(crate) fn check_row(row: &[f64], n_features: usize) -> Result<()> {
    if row.len() != n_features {
        return Err(MlError::FeatureMismatch(format!(
            "row has {} values, the model has {n_features} features",
            row.len()
        )));
    }
    Ok(())
}

#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// In-place softmax.
pub(crate) fn softmax(v: &mut [f64]) {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    if s > 0.0 {
        for x in v.iter_mut() {
            *x /= s;
        }
    }
}
