//! Regression metrics ([`regression_metrics`], [`RegressionReport`]).

use serde::Serialize;

use super::{EvalError, Task};

/// Everything [`regression_metrics`] computes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionReport {
    /// Always [`Task::Regression`].
    pub task: Task,
    /// Number of rows evaluated.
    pub n_samples: usize,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean squared error.
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination, `1 − SS_res / SS_tot`. With constant targets
    /// (`SS_tot = 0`, which includes a single row) it is 1 for perfect predictions and 0
    /// otherwise (scikit-learn's `force_finite=True`).
    pub r2: f64,
    /// `1 − Var(y − ŷ) / Var(y)`, with the same constant-target rule as `r2`.
    pub explained_variance: f64,
    /// Mean absolute percentage error as a fraction (not ×100):
    /// `mean(|y − ŷ| / max(|y|, f64::EPSILON))`, as scikit-learn. Huge when some `y` is 0.
    pub mape: f64,
    /// Largest absolute error.
    pub max_error: f64,
}

impl RegressionReport {
    /// The report's scalar metrics as `(name, value)` pairs, in a stable order: `rmse`,
    /// `mse`, `mae`, `r2`, `explained_variance`, `mape`, `max_error`.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        [
            ("rmse", self.rmse),
            ("mse", self.mse),
            ("mae", self.mae),
            ("r2", self.r2),
            ("explained_variance", self.explained_variance),
            ("mape", self.mape),
            ("max_error", self.max_error),
        ]
        .into_iter()
        .map(|(name, v)| (name.to_string(), v))
        .collect()
    }
}

/// Computes regression metrics of predictions `y_pred` against targets `y_true`.
///
/// # Errors
/// [`EvalError`] when the inputs are empty, differ in length, or hold NaN or infinite values.
pub fn regression_metrics(y_true: &[f64], y_pred: &[f64]) -> Result<RegressionReport, EvalError> {
    let n = y_true.len();
    if n == 0 {
        return Err(EvalError::Empty { what: "targets" });
    }
    if y_pred.len() != n {
        return Err(EvalError::LengthMismatch {
            what: "predictions",
            expected: n,
            got: y_pred.len(),
        });
    }
    for (what, values) in [("target", y_true), ("prediction", y_pred)] {
        if let Some((row, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(EvalError::NonFinite { what, row, value });
        }
    }

    let nf = n as f64;
    let residuals: Vec<f64> = y_true.iter().zip(y_pred).map(|(t, p)| t - p).collect();
    let sse: f64 = residuals.iter().map(|r| r * r).sum();
    let mse = sse / nf;
    let mae = residuals.iter().map(|r| r.abs()).sum::<f64>() / nf;
    let max_error = residuals.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    let mape = y_true
        .iter()
        .zip(&residuals)
        .map(|(t, r)| r.abs() / t.abs().max(f64::EPSILON))
        .sum::<f64>()
        / nf;

    let y_mean = y_true.iter().sum::<f64>() / nf;
    let ss_tot: f64 = y_true.iter().map(|t| (t - y_mean) * (t - y_mean)).sum();
    let r2 = force_finite_score(sse, ss_tot);

    let r_mean = residuals.iter().sum::<f64>() / nf;
    let ss_res_centered: f64 = residuals.iter().map(|r| (r - r_mean) * (r - r_mean)).sum();
    let explained_variance = force_finite_score(ss_res_centered, ss_tot);

    Ok(RegressionReport {
        task: Task::Regression,
        n_samples: n,
        rmse: mse.sqrt(),
        mse,
        mae,
        r2,
        explained_variance,
        mape,
        max_error,
    })
}

/// `1 − num / den`; with `den == 0`, 1 when `num == 0` and 0 otherwise.
fn force_finite_score(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        if num == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - num / den
    }
}
