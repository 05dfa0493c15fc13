//! Label and weight validation shared by the learners.

use crate::dataset::Dataset;
use crate::error::{MlError, Result};
use crate::params::{ClassWeight, Objective};

/// Largest class count accepted for multiclass labels.
pub(crate) const MAX_CLASSES: usize = 1 << 16;

/// Check the shape of the training inputs.
pub(crate) fn check_data(
    data: &Dataset,
    y: &[f64],
    weights: Option<&[f64]>,
    what: &'static str,
) -> Result<()> {
    if data.n_rows() == 0 {
        return Err(MlError::EmptyData { what });
    }
    if data.features().is_empty() {
        return Err(MlError::NoFeatures { what });
    }
    if y.len() != data.n_rows() {
        return Err(MlError::LengthMismatch {
            what: "labels",
            got: y.len(),
            expected: data.n_rows(),
        });
    }
    if let Some(w) = weights {
        if w.len() != data.n_rows() {
            return Err(MlError::LengthMismatch {
                what: "sample weights",
                got: w.len(),
                expected: data.n_rows(),
            });
        }
        for (row, &v) in w.iter().enumerate() {
            if !v.is_finite() || v < 0.0 {
                return Err(MlError::BadWeight { row, value: v });
            }
        }
        if w.iter().all(|&v| v == 0.0) {
            return Err(MlError::BadWeight { row: 0, value: 0.0 });
        }
    }
    Ok(())
}

/// Validate labels for `objective` and return the number of classes (1 for regression).
/// `num_class` fixes the class count for multiclass (otherwise `max label + 1`).
pub(crate) fn check_labels(
    objective: Objective,
    y: &[f64],
    num_class: Option<usize>,
) -> Result<usize> {
    match objective {
        Objective::Regression => {
            for (row, &v) in y.iter().enumerate() {
                if !v.is_finite() {
                    return Err(MlError::BadLabel {
                        row,
                        value: v,
                        reason: "regression labels must be finite numbers",
                    });
                }
            }
            Ok(1)
        }
        Objective::Binary => {
            let mut seen = [false; 2];
            for (row, &v) in y.iter().enumerate() {
                if v == 0.0 {
                    seen[0] = true;
                } else if v == 1.0 {
                    seen[1] = true;
                } else {
                    return Err(MlError::BadLabel {
                        row,
                        value: v,
                        reason: "binary labels must be 0 or 1",
                    });
                }
            }
            if !(seen[0] && seen[1]) {
                return Err(MlError::SingleClass {
                    class: usize::from(seen[1]),
                });
            }
            Ok(2)
        }
        Objective::Multiclass => {
            let mut max = 0usize;
            for (row, &v) in y.iter().enumerate() {
                if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < MAX_CLASSES as f64) {
                    return Err(MlError::BadLabel {
                        row,
                        value: v,
                        reason:
                            "multiclass labels must be class indices 0, 1, 2, ... (below 65536)",
                    });
                }
                max = max.max(v as usize);
            }
            let k = match num_class {
                Some(k) => {
                    if max >= k {
                        let row = y.iter().position(|&v| v as usize >= k).unwrap_or(0);
                        return Err(MlError::BadLabel {
                            row,
                            value: y[row],
                            reason: "label is >= num_class",
                        });
                    }
                    k
                }
                None => max + 1,
            };
            let mut seen = vec![false; k];
            for &v in y {
                seen[v as usize] = true;
            }
            let present = seen.iter().filter(|&&s| s).count();
            if present < 2 {
                return Err(MlError::SingleClass {
                    class: y.first().map_or(0, |&v| v as usize),
                });
            }
            Ok(k.max(2))
        }
    }
}

/// Per-row weights from sample weights and class weights (`None` when all are 1).
pub(crate) fn row_weights(
    objective: Objective,
    y: &[f64],
    n_classes: usize,
    sample: Option<&[f64]>,
    class_weight: &ClassWeight,
) -> Result<Option<Vec<f64>>> {
    let cw: Option<Vec<f64>> = match (class_weight, objective) {
        (ClassWeight::None, _) | (_, Objective::Regression) => None,
        (ClassWeight::Balanced, _) => {
            let mut counts = vec![0usize; n_classes];
            for &v in y {
                counts[v as usize] += 1;
            }
            let n = y.len() as f64;
            let k = counts.iter().filter(|&&c| c > 0).count() as f64;
            Some(
                counts
                    .iter()
                    .map(|&c| if c > 0 { n / (k * c as f64) } else { 0.0 })
                    .collect(),
            )
        }
        (ClassWeight::Custom(w), _) => {
            if w.len() != n_classes {
                return Err(MlError::InvalidParam {
                    name: "class_weight".into(),
                    value: format!("{w:?}"),
                    expected: format!("{n_classes} weights (one per class)"),
                });
            }
            if let Some(bad) = w.iter().find(|x| !x.is_finite() || **x < 0.0) {
                return Err(MlError::InvalidParam {
                    name: "class_weight".into(),
                    value: bad.to_string(),
                    expected: "finite weights >= 0".into(),
                });
            }
            Some(w.clone())
        }
    };
    if cw.is_none() && sample.is_none() {
        return Ok(None);
    }
    let w: Vec<f64> = (0..y.len())
        .map(|i| {
            let s = sample.map_or(1.0, |s| s[i]);
            let c = cw.as_ref().map_or(1.0, |c| c[y[i] as usize]);
            s * c
        })
        .collect();
    if w.iter().any(|&v| v != 0.0) {
        Ok(Some(w))
    } else {
        Err(MlError::BadWeight { row: 0, value: 0.0 })
    }
}
