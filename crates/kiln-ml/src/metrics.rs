//! Evaluation metrics: [`roc_auc`], [`roc_auc_ovr`], [`log_loss`], [`r2`], [`mse`],
//! [`accuracy`]. All are deterministic (fixed summation order).

use crate::error::{MlError, Result};

fn same_len(a: usize, b: usize, what: &'static str) -> Result<()> {
    if a != b {
        return Err(MlError::LengthMismatch {
            what,
            got: b,
            expected: a,
        });
    }
    if a == 0 {
        return Err(MlError::EmptyData {
            what: "metric input",
        });
    }
    Ok(())
}

/// Area under the ROC curve of scores for binary labels (`y == 1` is positive); ties get
/// average ranks. Errors when only one class is present.
pub fn roc_auc(y: &[f64], score: &[f64]) -> Result<f64> {
    same_len(y.len(), score.len(), "scores")?;
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        for &o in &order[i..=j] {
            if y[o] == 1.0 {
                rank_sum_pos += avg;
            }
        }
        i = j + 1;
    }
    let n_pos = y.iter().filter(|&&v| v == 1.0).count() as f64;
    let n_neg = y.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return Err(MlError::SingleClass {
            class: usize::from(n_pos > 0.0),
        });
    }
    Ok((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// Macro-averaged one-vs-rest ROC AUC for class labels `0..k` and per-row probabilities
/// (as scikit-learn's `roc_auc_score(..., multi_class="ovr")`). Classes absent from `y` are
/// skipped.
pub fn roc_auc_ovr(y: &[f64], proba: &[Vec<f64>]) -> Result<f64> {
    same_len(y.len(), proba.len(), "probability rows")?;
    let k = proba.first().map_or(0, Vec::len);
    let mut total = 0.0;
    let mut used = 0;
    for c in 0..k {
        let yc: Vec<f64> = y.iter().map(|&v| f64::from(v as usize == c)).collect();
        if !yc.contains(&1.0) {
            continue;
        }
        let sc: Vec<f64> = proba
            .iter()
            .map(|p| p.get(c).copied().unwrap_or(0.0))
            .collect();
        total += roc_auc(&yc, &sc)?;
        used += 1;
    }
    if used == 0 {
        return Err(MlError::SingleClass { class: 0 });
    }
    Ok(total / used as f64)
}

/// Mean log loss of class probabilities (`proba[i][c]` for class `c`), clipped at 1e-15.
pub fn log_loss(y: &[f64], proba: &[Vec<f64>]) -> Result<f64> {
    same_len(y.len(), proba.len(), "probability rows")?;
    let mut s = 0.0;
    for (&t, p) in y.iter().zip(proba) {
        let q = p.get(t as usize).copied().unwrap_or(0.0).clamp(1e-15, 1.0);
        s -= q.ln();
    }
    Ok(s / y.len() as f64)
}

/// Mean squared error.
pub fn mse(y: &[f64], pred: &[f64]) -> Result<f64> {
    same_len(y.len(), pred.len(), "predictions")?;
    Ok(y.iter()
        .zip(pred)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / y.len() as f64)
}

/// Coefficient of determination `1 - SS_res / SS_tot`.
pub fn r2(y: &[f64], pred: &[f64]) -> Result<f64> {
    same_len(y.len(), pred.len(), "predictions")?;
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
    let ss_res: f64 = y.iter().zip(pred).map(|(a, b)| (a - b) * (a - b)).sum();
    Ok(if ss_tot == 0.0 {
        f64::NAN
    } else {
        1.0 - ss_res / ss_tot
    })
}

/// Fraction of equal labels and predictions.
pub fn accuracy(y: &[f64], pred: &[f64]) -> Result<f64> {
    same_len(y.len(), pred.len(), "predictions")?;
    Ok(y.iter().zip(pred).filter(|(a, b)| a == b).count() as f64 / y.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_computed() {
        let y = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(roc_auc(&y, &[0.1, 0.4, 0.35, 0.8]).unwrap(), 0.75);
        assert_eq!(roc_auc(&y, &[0.5, 0.5, 0.5, 0.5]).unwrap(), 0.5);
        assert!(roc_auc(&[1.0, 1.0], &[0.1, 0.2]).is_err());
        assert!(roc_auc(&[1.0, 0.0], &[0.1]).is_err());
    }

    #[test]
    fn r2_and_mse() {
        let y = [1.0, 2.0, 3.0];
        assert_eq!(r2(&y, &y).unwrap(), 1.0);
        assert_eq!(mse(&y, &[1.0, 2.0, 4.0]).unwrap(), 1.0 / 3.0);
    }
}
