//! Regularised linear models: [`LinearModel`] fitted by [`fit_linear`] as L2-penalised logistic
//! regression (binary or multinomial, solved with L-BFGS) or ridge regression (normal equations,
//! Cholesky). Preprocessing lives inside the model ([`LinearDesign`]): numeric features are
//! standardised with missing values imputed to the training mean, categorical features are
//! one-hot encoded (a missing or unseen category is all zeros).
//!
//! The penalty follows scikit-learn's `LogisticRegression(C=…)` / `Ridge(alpha=…)`: the intercept
//! is not penalised. Sums are accumulated in a fixed order, so the same data gives the same model.

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, FeatureKind, MISSING_CODE};
use crate::error::{MlError, Result};
use crate::labels::{check_data, check_labels, row_weights};
use crate::params::{invalid, parse_f64, parse_objective, parse_usize, ClassWeight, Objective};

/// Linear model parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    pub objective: Objective,
    /// Inverse L2 strength for logistic regression (scikit-learn's `C`, default 1.0).
    pub c: f64,
    /// L2 strength for ridge regression (scikit-learn's `alpha`, default 1.0).
    pub alpha: f64,
    /// L-BFGS iteration cap (default 500).
    pub max_iter: usize,
    /// Gradient tolerance (default 1e-6).
    pub tol: f64,
    pub class_weight: ClassWeight,
}

impl Default for LinearParams {
    fn default() -> Self {
        Self {
            objective: Objective::Binary,
            c: 1.0,
            alpha: 1.0,
            max_iter: 500,
            tol: 1e-6,
            class_weight: ClassWeight::None,
        }
    }
}

const KNOWN: &str = "objective, c, alpha, max_iter, tol, class_weight";

impl LinearParams {
    /// Apply `key=value` overrides (`c`, `alpha`, `max_iter`, `tol`, `class_weight`, `objective`).
    pub fn from_kv(objective: Objective, kv: &[(String, String)]) -> Result<Self> {
        let mut p = Self {
            objective,
            ..Self::default()
        };
        for (k, v) in kv {
            match k.as_str() {
                "objective" => p.objective = parse_objective(k, v)?,
                "c" | "C" => p.c = parse_f64(k, v, 0.0, true, f64::INFINITY)?,
                "alpha" => p.alpha = parse_f64(k, v, 0.0, false, f64::INFINITY)?,
                "max_iter" => p.max_iter = parse_usize(k, v, 1, 100_000)?,
                "tol" => p.tol = parse_f64(k, v, 0.0, true, 1.0)?,
                "class_weight" => p.class_weight = ClassWeight::parse(k, v)?,
                _ => {
                    return Err(MlError::UnknownParam {
                        name: k.clone(),
                        known: KNOWN.into(),
                    })
                }
            }
        }
        if p.objective == Objective::Regression && p.class_weight != ClassWeight::None {
            return Err(invalid(
                "class_weight",
                "set",
                "no class weights for regression",
            ));
        }
        Ok(p)
    }
}

/// How one input feature becomes design-matrix columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnEncoding {
    /// `(x - mean) / scale`; missing → 0 (the mean).
    Standardize {
        #[serde(with = "crate::serde_f64")]
        mean: f64,
        #[serde(with = "crate::serde_f64")]
        scale: f64,
    },
    /// One column per training category.
    OneHot { categories: Vec<String> },
}

/// Mean and scale (standard deviation; 1 for a constant column) of a column's finite values,
/// computed on values divided by their largest magnitude so that squares of values near
/// `f64::MAX` (anything over about 1e154) cannot overflow to infinity.
fn standardization(v: &[f64]) -> (f64, f64) {
    let finite = || v.iter().copied().filter(|x| x.is_finite());
    let top = finite().fold(0.0_f64, |m, x| m.max(x.abs()));
    let n = finite().count();
    if n == 0 || top == 0.0 {
        return (0.0, 1.0);
    }
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    let mean = finite().map(|x| x / top).sum::<f64>() / n;
    let var = finite().map(|x| (x / top - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt() * top;
    let scale = if sd > 1e-12 && sd.is_finite() {
        sd
    } else {
        1.0
    };
    (mean * top, scale)
}

/// `(x - mean) / scale`, without overflowing when `x` and `mean` are huge and of opposite sign.
fn standardize(x: f64, mean: f64, scale: f64) -> f64 {
    let z = (x - mean) / scale;
    if z.is_finite() {
        z
    } else {
        x / scale - mean / scale
    }
}

/// The preprocessing that turns a [`Dataset`] into model inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearDesign {
    pub features: Vec<(String, ColumnEncoding)>,
    /// Number of design columns (without the intercept).
    pub width: usize,
}

impl LinearDesign {
    fn fit(data: &Dataset) -> Self {
        let mut features = Vec::with_capacity(data.features().len());
        let mut width = 0;
        for f in data.features() {
            let enc = match &f.kind {
                FeatureKind::Numeric(v) => {
                    let (mean, scale) = standardization(v);
                    width += 1;
                    ColumnEncoding::Standardize { mean, scale }
                }
                FeatureKind::Categorical { categories, .. } => {
                    width += categories.len();
                    ColumnEncoding::OneHot {
                        categories: categories.clone(),
                    }
                }
            };
            features.push((f.name.clone(), enc));
        }
        Self { features, width }
    }

    /// The dense, row-major design matrix for `data` (no intercept column). Categorical codes are
    /// mapped by category name, so data encoded with another category order still lines up.
    pub fn transform(&self, data: &Dataset) -> Result<Vec<f64>> {
        if data.features().len() != self.features.len() {
            return Err(MlError::FeatureMismatch(format!(
                "the model expects {} features, the data has {}",
                self.features.len(),
                data.features().len()
            )));
        }
        let n = data.n_rows();
        let mut x = vec![0.0; n * self.width];
        let mut col = 0;
        for ((name, enc), f) in self.features.iter().zip(data.features()) {
            if *name != f.name {
                return Err(MlError::FeatureMismatch(format!(
                    "expected feature `{name}`, found `{}`",
                    f.name
                )));
            }
            match (enc, &f.kind) {
                (ColumnEncoding::Standardize { mean, scale }, FeatureKind::Numeric(v)) => {
                    for (i, &value) in v.iter().enumerate() {
                        x[i * self.width + col] = if value.is_finite() {
                            standardize(value, *mean, *scale)
                        } else {
                            0.0
                        };
                    }
                    col += 1;
                }
                (
                    ColumnEncoding::OneHot { categories },
                    FeatureKind::Categorical {
                        codes,
                        categories: data_cats,
                    },
                ) => {
                    let map: Vec<Option<usize>> = data_cats
                        .iter()
                        .map(|c| categories.iter().position(|m| m == c))
                        .collect();
                    for (i, &code) in codes.iter().enumerate() {
                        if code != MISSING_CODE {
                            if let Some(Some(j)) = map.get(code as usize) {
                                x[i * self.width + col + j] = 1.0;
                            }
                        }
                    }
                    col += categories.len();
                }
                _ => {
                    return Err(MlError::FeatureMismatch(format!(
                        "feature `{name}` changed between numeric and categorical"
                    )));
                }
            }
        }
        Ok(x)
    }
}

/// A fitted linear model. `coef` is `n_outputs × (width + 1)`, intercept last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub objective: Objective,
    pub n_classes: usize,
    pub design: LinearDesign,
    pub coef: Vec<Vec<f64>>,
    pub params: LinearParams,
    /// L-BFGS iterations used (0 for ridge).
    pub iterations: usize,
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl LinearModel {
    /// Regression values, binary probabilities of class 1, or `n × k` row-major class probabilities.
    pub fn predict(&self, data: &Dataset) -> Result<Vec<f64>> {
        let x = self.design.transform(data)?;
        let w = self.design.width;
        let n = data.n_rows();
        let mut out = Vec::with_capacity(n * self.coef.len().max(1));
        for i in 0..n {
            let row = &x[i * w..(i + 1) * w];
            let scores: Vec<f64> = self.coef.iter().map(|c| dot(&c[..w], row) + c[w]).collect();
            match self.objective {
                Objective::Regression => out.push(scores[0]),
                Objective::Binary => out.push(sigmoid(scores[0])),
                Objective::Multiclass => out.extend(softmax(&scores)),
            }
        }
        Ok(out)
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Fit a linear model on `data` and labels `y` (class indices for classification).
pub fn fit_linear(
    data: &Dataset,
    y: &[f64],
    weights: Option<&[f64]>,
    params: &LinearParams,
) -> Result<LinearModel> {
    check_data(data, y, weights, "training data")?;
    let n_classes = check_labels(params.objective, y, None)?;
    let w = row_weights(
        params.objective,
        y,
        n_classes,
        weights,
        &params.class_weight,
    )?;
    let design = LinearDesign::fit(data);
    let x = design.transform(data)?;
    let (coef, iterations, converged) = match params.objective {
        Objective::Regression => (
            vec![ridge(&x, design.width, y, w.as_deref(), params.alpha)?],
            0,
            true,
        ),
        Objective::Binary | Objective::Multiclass => {
            let k = if params.objective == Objective::Binary {
                1
            } else {
                n_classes
            };
            logistic(&x, design.width, y, w.as_deref(), k, params)
        }
    };
    // A model with a non-finite coefficient would predict NaN (and could not be written as
    // JSON numbers): refuse it with the reason instead.
    if coef.iter().flatten().any(|c| !c.is_finite()) {
        return Err(MlError::Diverged(
            "linear model training diverged (a coefficient is not finite): the features may span too wide a range; rescale them, or raise alpha".into(),
        ));
    }
    Ok(LinearModel {
        objective: params.objective,
        n_classes,
        design,
        coef,
        params: params.clone(),
        iterations,
        converged,
    })
}

/// Ridge regression with an unpenalised intercept: centre, solve `(XᵀWX + αI) b = XᵀW y`.
fn ridge(x: &[f64], width: usize, y: &[f64], w: Option<&[f64]>, alpha: f64) -> Result<Vec<f64>> {
    let n = y.len();
    let wt = |i: usize| w.map_or(1.0, |w| w[i]);
    let sw: f64 = (0..n).map(wt).sum();
    let mut xmean = vec![0.0; width];
    let mut ymean = 0.0;
    for i in 0..n {
        let row = &x[i * width..(i + 1) * width];
        for (m, v) in xmean.iter_mut().zip(row) {
            *m += wt(i) * v;
        }
        ymean += wt(i) * y[i];
    }
    for m in &mut xmean {
        *m /= sw;
    }
    ymean /= sw;
    let mut a = vec![0.0; width * width];
    let mut b = vec![0.0; width];
    let mut centred = vec![0.0; width];
    for i in 0..n {
        let row = &x[i * width..(i + 1) * width];
        for j in 0..width {
            centred[j] = row[j] - xmean[j];
        }
        let wi = wt(i);
        let yi = y[i] - ymean;
        for j in 0..width {
            let cj = wi * centred[j];
            b[j] += cj * yi;
            for l in j..width {
                a[j * width + l] += cj * centred[l];
            }
        }
    }
    for j in 0..width {
        a[j * width + j] += alpha.max(1e-10);
        for l in 0..j {
            a[j * width + l] = a[l * width + j];
        }
    }
    let beta = cholesky_solve(&mut a, &b, width).ok_or_else(|| {
        MlError::WrongObjective(
            "ridge regression: the normal equations are singular; raise `alpha`".into(),
        )
    })?;
    let intercept = ymean - dot(&beta, &xmean);
    let mut coef = beta;
    coef.push(intercept);
    Ok(coef)
}

/// Solve `A x = b` for symmetric positive definite `A` (overwritten with its factor).
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    let mut z = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            z[i] -= a[i * n + k] * z[k];
        }
        z[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            z[i] -= a[k * n + i] * z[k];
        }
        z[i] /= a[i * n + i];
    }
    Some(z)
}

/// Penalised log loss and its gradient for `k` score columns (k = 1: binary sigmoid).
#[allow(clippy::too_many_arguments)]
fn logistic_loss(
    x: &[f64],
    width: usize,
    y: &[f64],
    w: Option<&[f64]>,
    k: usize,
    lambda: f64,
    theta: &[f64],
    grad: &mut [f64],
) -> f64 {
    let stride = width + 1;
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    let mut scores = vec![0.0; k];
    for (i, &label) in y.iter().enumerate() {
        let row = &x[i * width..(i + 1) * width];
        let wi = w.map_or(1.0, |w| w[i]);
        if wi == 0.0 {
            continue;
        }
        for (c, s) in scores.iter_mut().enumerate() {
            let t = &theta[c * stride..(c + 1) * stride];
            *s = dot(&t[..width], row) + t[width];
        }
        if k == 1 {
            let z = scores[0];
            // log(1 + e^z) - y z, computed stably.
            let lse = if z > 0.0 {
                z + (-z).exp().ln_1p()
            } else {
                z.exp().ln_1p()
            };
            loss += wi * (lse - label * z);
            let r = wi * (sigmoid(z) - label);
            for (g, v) in grad[..width].iter_mut().zip(row) {
                *g += r * v;
            }
            grad[width] += r;
        } else {
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            let lse = max + sum.ln();
            let yc = label as usize;
            loss += wi * (lse - scores[yc]);
            for c in 0..k {
                let p = (scores[c] - lse).exp();
                let r = wi * (p - if c == yc { 1.0 } else { 0.0 });
                let g = &mut grad[c * stride..(c + 1) * stride];
                for (gj, v) in g[..width].iter_mut().zip(row) {
                    *gj += r * v;
                }
                g[width] += r;
            }
        }
    }
    for c in 0..k {
        let t = &theta[c * stride..c * stride + width];
        let g = &mut grad[c * stride..c * stride + width];
        for (gj, tj) in g.iter_mut().zip(t) {
            *gj += lambda * tj;
        }
        loss += 0.5 * lambda * dot(t, t);
    }
    loss
}

/// L-BFGS (memory 10) with a backtracking Armijo line search.
fn logistic(
    x: &[f64],
    width: usize,
    y: &[f64],
    w: Option<&[f64]>,
    k: usize,
    params: &LinearParams,
) -> (Vec<Vec<f64>>, usize, bool) {
    let lambda = 1.0 / params.c;
    let dim = k * (width + 1);
    let mut theta = vec![0.0; dim];
    let mut grad = vec![0.0; dim];
    let mut f = logistic_loss(x, width, y, w, k, lambda, &theta, &mut grad);
    let scale = y.len().max(1) as f64;
    let (mut s_hist, mut y_hist, mut rho): (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut converged = false;
    let mut iter = 0;
    let mut new_grad = vec![0.0; dim];
    while iter < params.max_iter {
        let gmax = grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        if gmax / scale <= params.tol {
            converged = true;
            break;
        }
        iter += 1;
        // Two-loop recursion: d = -H g.
        let mut q = grad.clone();
        let mut alphas = vec![0.0; s_hist.len()];
        for j in (0..s_hist.len()).rev() {
            alphas[j] = rho[j] * dot(&s_hist[j], &q);
            for (qi, yi) in q.iter_mut().zip(&y_hist[j]) {
                *qi -= alphas[j] * yi;
            }
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(yv)) => dot(s, yv) / dot(yv, yv),
            _ => 1.0 / gmax.max(1.0),
        };
        for qi in &mut q {
            *qi *= gamma;
        }
        for j in 0..s_hist.len() {
            let beta = rho[j] * dot(&y_hist[j], &q);
            for (qi, si) in q.iter_mut().zip(&s_hist[j]) {
                *qi += si * (alphas[j] - beta);
            }
        }
        let dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let slope = dot(&grad, &dir);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho.clear();
            continue;
        }
        let mut step = 1.0;
        let mut accepted = false;
        let mut trial = vec![0.0; dim];
        for _ in 0..40 {
            for ((t, th), d) in trial.iter_mut().zip(&theta).zip(&dir) {
                *t = th + step * d;
            }
            let f_new = logistic_loss(x, width, y, w, k, lambda, &trial, &mut new_grad);
            if f_new <= f + 1e-4 * step * slope {
                let s: Vec<f64> = trial.iter().zip(&theta).map(|(a, b)| a - b).collect();
                let yv: Vec<f64> = new_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &yv);
                if sy > 1e-12 {
                    if s_hist.len() == 10 {
                        s_hist.remove(0);
                        y_hist.remove(0);
                        rho.remove(0);
                    }
                    rho.push(1.0 / sy);
                    s_hist.push(s);
                    y_hist.push(yv);
                }
                let rel = (f - f_new).abs() / f.abs().max(1.0);
                theta.clone_from(&trial);
                grad.clone_from(&new_grad);
                f = f_new;
                accepted = true;
                if rel < 1e-12 {
                    converged = true;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted || converged {
            converged = true;
            break;
        }
    }
    let coef = theta.chunks(width + 1).map(<[f64]>::to_vec).collect();
    (coef, iter, converged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Feature;

    fn toy() -> (Dataset, Vec<f64>) {
        let xs: Vec<f64> = (0..200).map(|i| f64::from(i) / 20.0).collect();
        let cats: Vec<u32> = (0..200).map(|i| i % 3).collect();
        let y: Vec<f64> = xs
            .iter()
            .zip(&cats)
            .map(|(x, c)| f64::from(u8::from(*x + f64::from(*c) > 5.5)))
            .collect();
        let ds = Dataset::new(vec![
            Feature::numeric("x", xs),
            Feature::categorical("c", cats, vec!["a".into(), "b".into(), "c".into()]),
        ])
        .unwrap();
        (ds, y)
    }

    #[test]
    fn logistic_separates_and_is_deterministic() {
        let (ds, y) = toy();
        let p = LinearParams::default();
        let m = fit_linear(&ds, &y, None, &p).unwrap();
        let probs = m.predict(&ds).unwrap();
        let acc = probs
            .iter()
            .zip(&y)
            .filter(|(p, y)| (**p > 0.5) == (**y > 0.5))
            .count() as f64
            / y.len() as f64;
        assert!(acc > 0.9, "accuracy {acc}");
        let m2 = fit_linear(&ds, &y, None, &p).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            serde_json::to_string(&m2).unwrap()
        );
        assert!(m.converged);
    }

    #[test]
    fn multinomial_probabilities_sum_to_one() {
        let (ds, _) = toy();
        let y: Vec<f64> = (0..200).map(|i| f64::from(i * 3 / 200)).collect();
        let m = fit_linear(
            &ds,
            &y,
            None,
            &LinearParams {
                objective: Objective::Multiclass,
                ..LinearParams::default()
            },
        )
        .unwrap();
        let p = m.predict(&ds).unwrap();
        assert_eq!(p.len(), 600);
        for row in p.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn ridge_recovers_a_line() {
        let xs: Vec<f64> = (0..100).map(f64::from).collect();
        let y: Vec<f64> = xs.iter().map(|x| 3.0 * x + 2.0).collect();
        let ds = Dataset::new(vec![Feature::numeric("x", xs)]).unwrap();
        let m = fit_linear(
            &ds,
            &y,
            None,
            &LinearParams {
                objective: Objective::Regression,
                alpha: 1e-9,
                ..LinearParams::default()
            },
        )
        .unwrap();
        let pred = m.predict(&ds).unwrap();
        for (p, t) in pred.iter().zip(&y) {
            assert!((p - t).abs() < 1e-6, "{p} vs {t}");
        }
    }

    #[test]
    fn features_near_f64_max_are_standardized_and_the_model_round_trips() {
        // Squares of values over ~1e154 overflow: the column used to get scale = inf (the
        // feature silently dropped, and `inf` written as JSON null: an unloadable model).
        for magnitude in [1e300, 1.7e308] {
            let vs: Vec<f64> = (0..100).map(|i| f64::from(i) / 50.0 - 1.0).collect();
            let xs: Vec<f64> = vs.iter().map(|v| v * magnitude).collect();
            let y: Vec<f64> = vs.iter().map(|v| 10.0 * v).collect();
            let ds = Dataset::new(vec![Feature::numeric("big", xs)]).unwrap();
            let m = fit_linear(
                &ds,
                &y,
                None,
                &LinearParams {
                    objective: Objective::Regression,
                    alpha: 1e-9,
                    ..LinearParams::default()
                },
            )
            .unwrap();
            let pred = m.predict(&ds).unwrap();
            for (p, t) in pred.iter().zip(&y) {
                assert!((p - t).abs() < 1e-6, "{magnitude}: {p} vs {t}");
            }
            let back: LinearModel =
                serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            assert_eq!(back.predict(&ds).unwrap(), pred);
        }
    }

    #[test]
    fn rejects_bad_params_and_mismatched_data() {
        assert!(LinearParams::from_kv(Objective::Binary, &[("c".into(), "-1".into())]).is_err());
        assert!(LinearParams::from_kv(Objective::Binary, &[("nope".into(), "1".into())]).is_err());
        let (ds, y) = toy();
        let m = fit_linear(&ds, &y, None, &LinearParams::default()).unwrap();
        let other = Dataset::new(vec![Feature::numeric("z", vec![1.0])]).unwrap();
        assert!(m.predict(&other).is_err());
    }
}
