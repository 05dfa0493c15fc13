//! The `ai.onnx.ml` operators that scikit-learn exporters (skl2onnx) emit and tract lacks,
//! registered into tract's ONNX parser. Each operator parses its attributes once into a
//! [`Kernel`] and evaluates with plain loops in `f64`, then hands tract `f32` outputs as the
//! ONNX operator schemas declare. Semantics follow the ONNX reference implementation
//! (`onnx.reference.ops.aionnxml`).
//!
//! tract's own `TreeEnsembleClassifier` is replaced: ours also covers the regressor, the
//! `*_as_tensor` attributes and every post transform with one tree walker.

use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{AttributeProto, NodeProto};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_ndarray::{Array1, Array2, ArrayView2, Ix2};

/// Operators of the `ai.onnx.ml` domain kiln runs (ZipMap is removed before parsing; see
/// `onnx.rs`; `CategoryMapper` is tract's own).
pub(crate) const SUPPORTED_ML_OPS: &[&str] = &[
    "ArrayFeatureExtractor",
    "Binarizer",
    "CategoryMapper",
    "FeatureVectorizer",
    "Imputer",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "Scaler",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "ZipMap",
];

/// Add kiln's operators to tract's ONNX operator table (replacing tract's tree classifier).
pub(crate) fn register(reg: &mut OnnxOpRegister) {
    reg.insert("ArrayFeatureExtractor", array_feature_extractor);
    reg.insert("Binarizer", binarizer);
    reg.insert("FeatureVectorizer", feature_vectorizer);
    reg.insert("Imputer", imputer);
    reg.insert("LinearClassifier", linear_classifier);
    reg.insert("LinearRegressor", linear_regressor);
    reg.insert("Normalizer", normalizer);
    reg.insert("Scaler", scaler);
    reg.insert("TreeEnsembleClassifier", tree_ensemble_classifier);
    reg.insert("TreeEnsembleRegressor", tree_ensemble_regressor);
}

// ---------------------------------------------------------------------------------------------
// Attributes, read straight from the protobuf (no panics on odd files).

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints<'a>(node: &'a NodeProto, name: &str) -> &'a [i64] {
    attr(node, name).map_or(&[], |a| a.ints.as_slice())
}

fn floats<'a>(node: &'a NodeProto, name: &str) -> &'a [f32] {
    attr(node, name).map_or(&[], |a| a.floats.as_slice())
}

fn strings(node: &NodeProto, name: &str) -> Vec<String> {
    attr(node, name).map_or_else(Vec::new, |a| {
        a.strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    })
}

fn string(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

fn int(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

fn float(node: &NodeProto, name: &str) -> Option<f32> {
    attr(node, name).map(|a| a.f)
}

/// A float list given either as `name` (floats) or `name_as_tensor` (a double tensor).
fn reals(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Vec<f64>> {
    if let Some(t) = attr(node, &format!("{name}_as_tensor")).and_then(|a| a.t.as_ref()) {
        let tensor = ctx.load_tensor(t)?;
        let tensor = tensor.cast_to::<f64>()?;
        return Ok(tensor.as_slice::<f64>()?.to_vec());
    }
    Ok(floats(node, name).iter().map(|v| f64::from(*v)).collect())
}

fn index(node: &NodeProto, attr_name: &str, v: i64) -> TractResult<usize> {
    usize::try_from(v).map_err(|_| {
        format_err!(
            "{} `{}`: attribute `{attr_name}` holds the negative index {v}",
            node.op_type,
            node.name
        )
    })
}

fn indices(node: &NodeProto, attr_name: &str) -> TractResult<Vec<usize>> {
    ints(node, attr_name)
        .iter()
        .map(|v| index(node, attr_name, *v))
        .collect()
}

fn ensure(cond: bool, node: &NodeProto, what: impl FnOnce() -> String) -> TractResult<()> {
    if cond {
        Ok(())
    } else {
        bail!("{} `{}`: {}", node.op_type, node.name, what())
    }
}

/// Class labels of a classifier node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    /// From `<prefix>_int64s`/`<prefix>_ints` or `<prefix>_strings`.
    pub(crate) fn of(node: &NodeProto) -> Option<Self> {
        for name in ["classlabels_int64s", "classlabels_ints"] {
            let v = ints(node, name);
            if !v.is_empty() {
                return Some(Self::Ints(v.to_vec()));
            }
        }
        let s = strings(node, "classlabels_strings");
        (!s.is_empty()).then_some(Self::Strings(s))
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Ints(v) => v.len(),
            Self::Strings(v) => v.len(),
        }
    }

    pub(crate) fn texts(&self) -> Vec<String> {
        match self {
            Self::Ints(v) => v.iter().map(ToString::to_string).collect(),
            Self::Strings(v) => v.clone(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Self::Ints(_) => i64::datum_type(),
            Self::Strings(_) => String::datum_type(),
        }
    }

    /// The label tensor for the winning class index of each row.
    fn pick(&self, winners: &[usize]) -> Tensor {
        match self {
            Self::Ints(v) => Array1::from_iter(
                winners
                    .iter()
                    .map(|&i| v.get(i).copied().unwrap_or_default()),
            )
            .into_tensor(),
            Self::Strings(v) => Array1::from_iter(
                winners
                    .iter()
                    .map(|&i| v.get(i).cloned().unwrap_or_default()),
            )
            .into_tensor(),
        }
    }
}

/// How raw scores become outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    fn of(node: &NodeProto) -> TractResult<Self> {
        Ok(match string(node, "post_transform").as_deref() {
            None | Some("NONE" | "") => Self::None,
            Some("LOGISTIC") => Self::Logistic,
            Some("SOFTMAX") => Self::Softmax,
            Some("SOFTMAX_ZERO") => Self::SoftmaxZero,
            Some("PROBIT") => Self::Probit,
            Some(other) => bail!(
                "{} `{}`: unknown post_transform `{other}`",
                node.op_type,
                node.name
            ),
        })
    }

    fn apply(self, row: &mut [f64]) {
        match self {
            Self::None => {}
            Self::Logistic => row.iter_mut().for_each(|v| *v = logistic(*v)),
            Self::Softmax => {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                row.iter_mut().for_each(|v| *v = (*v - max).exp());
                let sum: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
            Self::SoftmaxZero => {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exp_neg_max = (-max).exp();
                for v in row.iter_mut() {
                    *v = if v.abs() > 1e-7 {
                        (*v - max).exp()
                    } else {
                        *v * exp_neg_max
                    };
                }
                let sum: f64 = row.iter().sum();
                if sum == 0.0 {
                    row.iter_mut().for_each(|v| *v = 0.5);
                } else {
                    row.iter_mut().for_each(|v| *v /= sum);
                }
            }
            Self::Probit => row.iter_mut().for_each(|v| *v = probit(*v)),
        }
    }
}

fn logistic(v: f64) -> f64 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 {
        1.0 - e
    } else {
        e
    }
}

/// The approximation of the ONNX reference (and onnxruntime).
fn probit(v: f64) -> f64 {
    let x = v * 2.0 - 1.0;
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let y = (1.0 - x) * (1.0 + x);
    if y == 0.0 {
        return 0.0;
    }
    let log = y.ln();
    let a = 2.0 / (std::f64::consts::PI * 0.147) + 0.5 * log;
    let b = 1.0 / 0.147 * log;
    std::f64::consts::SQRT_2 * sign * (-a + (a * a - b).sqrt()).sqrt()
}

/// Index of the largest value (first one on ties), as numpy's argmax.
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

// ---------------------------------------------------------------------------------------------
// Kernels.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug, Clone)]
struct LinearClassifier {
    /// `k × f`, row-major.
    coefficients: Vec<f64>,
    intercepts: Vec<f64>,
    k: usize,
    labels: Labels,
    post: PostTransform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

#[derive(Debug, Clone)]
enum TreeNode {
    Branch {
        feature: usize,
        mode: Mode,
        value: f64,
        yes: usize,
        no: usize,
        missing_yes: bool,
    },
    /// `(output column, weight)` pairs.
    Leaf(Vec<(usize, f64)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Debug, Clone)]
struct Trees {
    /// Each tree's nodes; the root is the first.
    trees: Vec<Vec<TreeNode>>,
    /// Output columns: classes or regression targets.
    n_out: usize,
    base: Vec<f64>,
    aggregate: Aggregate,
    post: PostTransform,
    /// Classifier only: labels, and whether leaves only score class 0 of two (binary layout).
    labels: Option<Labels>,
    binary: bool,
    n_features: usize,
}

#[derive(Debug, Clone)]
enum Kernel {
    Scaler {
        offset: Vec<f64>,
        scale: Vec<f64>,
    },
    Normalizer(Norm),
    LinearClassifier(LinearClassifier),
    LinearRegressor {
        coefficients: Vec<f64>,
        intercepts: Vec<f64>,
        targets: usize,
    },
    Trees(Box<Trees>),
    Imputer {
        values: Vec<f64>,
        replaced: f64,
    },
    Binarizer {
        threshold: f64,
    },
    FeatureVectorizer {
        dims: Vec<usize>,
    },
    ArrayFeatureExtractor,
}

impl Kernel {
    fn name(&self) -> &'static str {
        match self {
            Self::Scaler { .. } => "Scaler",
            Self::Normalizer(_) => "Normalizer",
            Self::LinearClassifier(_) => "LinearClassifier",
            Self::LinearRegressor { .. } => "LinearRegressor",
            Self::Trees(t) if t.labels.is_some() => "TreeEnsembleClassifier",
            Self::Trees(_) => "TreeEnsembleRegressor",
            Self::Imputer { .. } => "Imputer",
            Self::Binarizer { .. } => "Binarizer",
            Self::FeatureVectorizer { .. } => "FeatureVectorizer",
            Self::ArrayFeatureExtractor => "ArrayFeatureExtractor",
        }
    }

    fn labels(&self) -> Option<&Labels> {
        match self {
            Self::LinearClassifier(c) => Some(&c.labels),
            Self::Trees(t) => t.labels.as_ref(),
            _ => None,
        }
    }

    fn n_inputs(&self) -> Option<usize> {
        match self {
            Self::FeatureVectorizer { .. } => None,
            Self::ArrayFeatureExtractor => Some(2),
            _ => Some(1),
        }
    }
}

/// A tensor as a `rows × columns` matrix of `f64` (a vector is one row, as in onnxruntime).
fn matrix(t: &Tensor) -> TractResult<Array2<f64>> {
    let t = t.cast_to::<f64>()?;
    let view = t.to_array_view::<f64>()?;
    match view.ndim() {
        1 => {
            let n = view.len();
            Ok(view.to_shape((1, n))?.to_owned())
        }
        2 => Ok(view.into_dimensionality::<Ix2>()?.to_owned()),
        r => bail!("expected a matrix [rows, columns], got a tensor of rank {r}"),
    }
}

fn f32_matrix(m: &Array2<f64>) -> Tensor {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "ONNX ml outputs are float32"
    )]
    m.mapv(|v| v as f32).into_tensor()
}

/// A column-wise parameter that may be given once for every column.
fn per_column(values: &[f64], j: usize, default: f64) -> f64 {
    match values.len() {
        0 => default,
        1 => values[0],
        _ => values.get(j).copied().unwrap_or(default),
    }
}

impl Trees {
    fn eval_row(&self, x: &[f64], out: &mut [f64]) -> TractResult<()> {
        // Leaf counts matter only for Min/Max (an output no tree reached is 0); no allocation
        // per row for the usual sums.
        let minmax = matches!(self.aggregate, Aggregate::Min | Aggregate::Max);
        let mut counts = if minmax {
            vec![0usize; self.n_out]
        } else {
            Vec::new()
        };
        let init = match self.aggregate {
            Aggregate::Sum | Aggregate::Average => 0.0,
            Aggregate::Min => f64::INFINITY,
            Aggregate::Max => f64::NEG_INFINITY,
        };
        out.iter_mut().for_each(|v| *v = init);
        for tree in &self.trees {
            let mut i = 0;
            let mut steps = 0;
            let leaf = loop {
                steps += 1;
                if steps > tree.len() {
                    bail!("tree ensemble has a cycle");
                }
                match &tree[i] {
                    TreeNode::Leaf(w) => break w,
                    TreeNode::Branch {
                        feature,
                        mode,
                        value,
                        yes,
                        no,
                        missing_yes,
                    } => {
                        let v = x.get(*feature).copied().unwrap_or(f64::NAN);
                        let go_yes = if v.is_nan() {
                            *missing_yes
                        } else {
                            match mode {
                                Mode::Leq => v <= *value,
                                Mode::Lt => v < *value,
                                Mode::Gte => v >= *value,
                                Mode::Gt => v > *value,
                                Mode::Eq => v == *value,
                                Mode::Neq => v != *value,
                            }
                        };
                        i = if go_yes { *yes } else { *no };
                    }
                }
            };
            for (col, w) in leaf {
                let slot = &mut out[*col];
                if minmax {
                    counts[*col] += 1;
                }
                *slot = match self.aggregate {
                    Aggregate::Sum | Aggregate::Average => *slot + w,
                    Aggregate::Min => slot.min(*w),
                    Aggregate::Max => slot.max(*w),
                };
            }
        }
        if self.aggregate == Aggregate::Average {
            #[expect(clippy::cast_precision_loss, reason = "tree counts are small")]
            let n = self.trees.len().max(1) as f64;
            out.iter_mut().for_each(|v| *v /= n);
        }
        for (j, v) in out.iter_mut().enumerate() {
            if minmax && counts[j] == 0 {
                *v = 0.0;
            }
            *v += per_column(&self.base, j, 0.0);
        }
        if self.binary {
            // One score for two classes: column 1 is the score, column 0 its complement.
            out[1] = out[0];
            out[0] = if matches!(self.post, PostTransform::None | PostTransform::Probit) {
                1.0 - out[1]
            } else {
                -out[1]
            };
        }
        self.post.apply(out);
        Ok(())
    }
}

impl Kernel {
    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let Some(first) = inputs.first() else {
            bail!("{} has no input", self.name());
        };
        match self {
            Self::Scaler { offset, scale } => {
                let mut m = matrix(first)?;
                for mut row in m.rows_mut() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (*v - per_column(offset, j, 0.0)) * per_column(scale, j, 1.0);
                    }
                }
                Ok(tvec!(f32_matrix(&m).into_tvalue()))
            }
            Self::Normalizer(norm) => {
                let mut m = matrix(first)?;
                for mut row in m.rows_mut() {
                    let div = match norm {
                        Norm::Max => row.iter().fold(0.0f64, |a, v| a.max(v.abs())),
                        Norm::L1 => row.iter().map(|v| v.abs()).sum(),
                        Norm::L2 => row.iter().map(|v| v * v).sum::<f64>().sqrt(),
                    }
                    .max(1e-30);
                    row.iter_mut().for_each(|v| *v /= div);
                }
                Ok(tvec!(f32_matrix(&m).into_tvalue()))
            }
            Self::LinearClassifier(c) => {
                let m = matrix(first)?;
                let f = m.ncols();
                if c.coefficients.len() != c.k * f {
                    bail!(
                        "LinearClassifier has {} coefficients for {} classes; the input has {f} columns",
                        c.coefficients.len(),
                        c.k
                    );
                }
                let binary = c.k == 1 && c.labels.len() == 2;
                let width = if binary { 2 } else { c.k };
                let mut scores = Array2::<f64>::zeros((m.nrows(), width));
                let mut winners = Vec::with_capacity(m.nrows());
                for (x, mut out) in m.rows().into_iter().zip(scores.rows_mut()) {
                    let mut row: Vec<f64> = (0..c.k)
                        .map(|k| {
                            let w = &c.coefficients[k * f..(k + 1) * f];
                            x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>()
                                + c.intercepts.get(k).copied().unwrap_or(0.0)
                        })
                        .collect();
                    if binary {
                        row = vec![-row[0], row[0]];
                    }
                    c.post.apply(&mut row);
                    let winner = if row.len() > 1 {
                        argmax(&row)
                    } else {
                        let threshold = if c.post == PostTransform::None {
                            0.0
                        } else {
                            0.5
                        };
                        usize::from(row[0] >= threshold)
                    };
                    winners.push(winner);
                    out.iter_mut().zip(&row).for_each(|(o, v)| *o = *v);
                }
                Ok(tvec!(
                    c.labels.pick(&winners).into_tvalue(),
                    f32_matrix(&scores).into_tvalue()
                ))
            }
            Self::LinearRegressor {
                coefficients,
                intercepts,
                targets,
            } => {
                let m = matrix(first)?;
                let f = m.ncols();
                if coefficients.len() != targets * f {
                    bail!(
                        "LinearRegressor has {} coefficients for {targets} target(s); the input has {f} columns",
                        coefficients.len()
                    );
                }
                let mut out = Array2::<f64>::zeros((m.nrows(), *targets));
                for (x, mut o) in m.rows().into_iter().zip(out.rows_mut()) {
                    for (t, slot) in o.iter_mut().enumerate() {
                        let w = &coefficients[t * f..(t + 1) * f];
                        *slot = x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>()
                            + intercepts.get(t).copied().unwrap_or(0.0);
                    }
                }
                Ok(tvec!(f32_matrix(&out).into_tvalue()))
            }
            Self::Trees(t) => {
                let m = matrix(first)?;
                if m.ncols() < t.n_features {
                    bail!(
                        "{} reads feature {} but the input has {} columns",
                        self.name(),
                        t.n_features - 1,
                        m.ncols()
                    );
                }
                let mut out = Array2::<f64>::zeros((m.nrows(), t.n_out));
                let mut winners = Vec::with_capacity(m.nrows());
                let mut x = Vec::with_capacity(m.ncols());
                let mut scores = vec![0.0; t.n_out];
                for (row, mut o) in m.rows().into_iter().zip(out.rows_mut()) {
                    x.clear();
                    x.extend(row.iter().copied());
                    t.eval_row(&x, &mut scores)?;
                    winners.push(argmax(&scores));
                    o.iter_mut().zip(&scores).for_each(|(a, b)| *a = *b);
                }
                match &t.labels {
                    Some(labels) => Ok(tvec!(
                        labels.pick(&winners).into_tvalue(),
                        f32_matrix(&out).into_tvalue()
                    )),
                    None => Ok(tvec!(f32_matrix(&out).into_tvalue())),
                }
            }
            Self::Imputer { values, replaced } => {
                let dt = first.datum_type();
                let mut m = matrix(first)?;
                for mut row in m.rows_mut() {
                    for (j, v) in row.iter_mut().enumerate() {
                        let hit = if replaced.is_nan() {
                            v.is_nan()
                        } else {
                            *v == *replaced
                        };
                        if hit {
                            *v = per_column(values, j, *v);
                        }
                    }
                }
                Ok(tvec!(m
                    .into_tensor()
                    .cast_to_dt(dt)?
                    .into_owned()
                    .into_tvalue()))
            }
            Self::Binarizer { threshold } => {
                let dt = first.datum_type();
                let m = matrix(first)?.mapv(|v| if v > *threshold { 1.0 } else { 0.0 });
                Ok(tvec!(m
                    .into_tensor()
                    .cast_to_dt(dt)?
                    .into_owned()
                    .into_tvalue()))
            }
            Self::FeatureVectorizer { dims } => {
                let parts = inputs
                    .iter()
                    .map(|t| matrix(t))
                    .collect::<TractResult<Vec<_>>>()?;
                let n = parts.first().map_or(0, Array2::nrows);
                let width: usize = parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| dims.get(i).copied().unwrap_or(p.ncols()))
                    .sum();
                let mut out = Array2::<f64>::zeros((n, width));
                let mut col = 0;
                for (i, p) in parts.iter().enumerate() {
                    if p.nrows() != n {
                        bail!("FeatureVectorizer inputs have different row counts");
                    }
                    let d = dims.get(i).copied().unwrap_or(p.ncols());
                    for j in 0..d.min(p.ncols()) {
                        out.column_mut(col + j).assign(&p.column(j));
                    }
                    col += d;
                }
                Ok(tvec!(f32_matrix(&out).into_tvalue()))
            }
            Self::ArrayFeatureExtractor => {
                let Some(idx) = inputs.get(1) else {
                    bail!("ArrayFeatureExtractor needs two inputs");
                };
                let idx = idx.cast_to::<i64>()?;
                let idx = idx.as_slice::<i64>()?;
                Ok(tvec!(extract_columns(first, idx)?.into_tvalue()))
            }
        }
    }
}

fn pick_columns<T: Datum + Clone>(t: &Tensor, idx: &[usize]) -> TractResult<Tensor> {
    let view = t.to_array_view::<T>()?;
    let view: ArrayView2<T> = match view.ndim() {
        1 => {
            let n = view.len();
            view.into_shape_with_order((1, n))?
        }
        2 => view.into_dimensionality::<Ix2>()?,
        r => bail!("ArrayFeatureExtractor: expected a matrix, got rank {r}"),
    };
    let mut out = Vec::with_capacity(view.nrows() * idx.len());
    for row in view.rows() {
        for &j in idx {
            out.push(row[j].clone());
        }
    }
    Ok(Array2::from_shape_vec((view.nrows(), idx.len()), out)?.into_tensor())
}

fn extract_columns(t: &Tensor, idx: &[i64]) -> TractResult<Tensor> {
    let width = t.shape().last().copied().unwrap_or(0);
    let idx = idx
        .iter()
        .map(|&i| {
            usize::try_from(i)
                .ok()
                .filter(|i| *i < width)
                .ok_or_else(|| {
                    format_err!(
                        "ArrayFeatureExtractor: index {i} is out of range for {width} columns"
                    )
                })
        })
        .collect::<TractResult<Vec<_>>>()?;
    match t.datum_type() {
        DatumType::F32 => pick_columns::<f32>(t, &idx),
        DatumType::F64 => pick_columns::<f64>(t, &idx),
        DatumType::I64 => pick_columns::<i64>(t, &idx),
        DatumType::I32 => pick_columns::<i32>(t, &idx),
        DatumType::String => pick_columns::<String>(t, &idx),
        dt => bail!("ArrayFeatureExtractor on {dt:?} tensors is not supported"),
    }
}

// ---------------------------------------------------------------------------------------------
// tract glue: an inference-time expansion wiring one typed op.

#[derive(Debug, Clone)]
struct MlOp {
    kernel: Arc<Kernel>,
}

impl Op for MlOp {
    fn name(&self) -> StaticName {
        self.kernel.name().into()
    }

    op_as_typed_op!();
}

impl EvalOp for MlOp {
    fn is_stateless(&self) -> bool {
        true
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.kernel.eval(&inputs)
    }
}

/// Rows of a `[rows, columns]` or `[columns]` fact.
fn rows_of(fact: &TypedFact) -> TDim {
    if fact.shape.rank() >= 2 {
        fact.shape[0].clone()
    } else {
        1.into()
    }
}

fn cols_of(fact: &TypedFact) -> TDim {
    fact.shape
        .as_ref()
        .last()
        .cloned()
        .unwrap_or_else(|| 1.into())
}

impl TypedOp for MlOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let Some(first) = inputs.first() else {
            bail!("{} has no input", self.kernel.name());
        };
        let n = rows_of(first);
        let f32_out = |cols: TDim| f32::fact([n.clone(), cols]);
        Ok(match &*self.kernel {
            Kernel::Scaler { .. } | Kernel::Normalizer(_) => tvec!(f32_out(cols_of(first))),
            Kernel::Imputer { .. } | Kernel::Binarizer { .. } => {
                tvec!(TypedFact::dt_shape(
                    first.datum_type,
                    [n.clone(), cols_of(first)]
                ))
            }
            Kernel::LinearClassifier(c) => {
                let width = if c.k == 1 && c.labels.len() == 2 {
                    2
                } else {
                    c.k
                };
                tvec!(
                    TypedFact::dt_shape(c.labels.datum_type(), [n.clone()]),
                    f32_out(width.into())
                )
            }
            Kernel::LinearRegressor { targets, .. } => tvec!(f32_out((*targets).into())),
            Kernel::Trees(t) => match &t.labels {
                Some(labels) => tvec!(
                    TypedFact::dt_shape(labels.datum_type(), [n.clone()]),
                    f32_out(t.n_out.into())
                ),
                None => tvec!(f32_out(t.n_out.into())),
            },
            Kernel::FeatureVectorizer { dims } => {
                let mut width = TDim::from(0);
                for (i, fact) in inputs.iter().enumerate() {
                    width += dims.get(i).map_or_else(|| cols_of(fact), |d| (*d).into());
                }
                tvec!(f32_out(width))
            }
            Kernel::ArrayFeatureExtractor => {
                let Some(konst) = inputs.get(1).and_then(|f| f.konst.as_ref()) else {
                    bail!("ArrayFeatureExtractor: the indices must be a constant");
                };
                tvec!(TypedFact::dt_shape(
                    first.datum_type,
                    [n.clone(), konst.len().into()]
                ))
            }
        })
    }

    as_op!();
}

#[derive(Debug, Clone)]
struct MlExpansion {
    kernel: Arc<Kernel>,
}

impl Expansion for MlExpansion {
    fn name(&self) -> StaticName {
        self.kernel.name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(if self.kernel.labels().is_some() { 2 } else { 1 })
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if let Some(n) = self.kernel.n_inputs() {
            check_input_arity(inputs, n)?;
        }
        match &*self.kernel {
            Kernel::Imputer { .. } | Kernel::Binarizer { .. } | Kernel::ArrayFeatureExtractor => {
                check_output_arity(outputs, 1)?;
                s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
                s.equals(&outputs[0].rank, 2)?;
            }
            kernel => match kernel.labels() {
                Some(labels) => {
                    check_output_arity(outputs, 2)?;
                    s.equals(&outputs[0].datum_type, labels.datum_type())?;
                    s.equals(&outputs[0].rank, 1)?;
                    s.equals(&outputs[1].datum_type, f32::datum_type())?;
                    s.equals(&outputs[1].rank, 2)?;
                }
                None => {
                    check_output_arity(outputs, 1)?;
                    s.equals(&outputs[0].datum_type, f32::datum_type())?;
                    s.equals(&outputs[0].rank, 2)?;
                }
            },
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(
            prefix,
            MlOp {
                kernel: self.kernel.clone(),
            },
            inputs,
        )
    }
}

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

fn built(kernel: Kernel) -> Built {
    Ok((
        expand(MlExpansion {
            kernel: Arc::new(kernel),
        }),
        vec![],
    ))
}

// ---------------------------------------------------------------------------------------------
// Builders: attributes to kernels, validated once.

fn scaler(_: &ParsingContext, node: &NodeProto) -> Built {
    let f = |name| floats(node, name).iter().map(|v| f64::from(*v)).collect();
    built(Kernel::Scaler {
        offset: f("offset"),
        scale: f("scale"),
    })
}

fn normalizer(_: &ParsingContext, node: &NodeProto) -> Built {
    let norm = match string(node, "norm").as_deref() {
        Some("MAX") => Norm::Max,
        Some("L1") => Norm::L1,
        None | Some("L2") => Norm::L2,
        Some(other) => bail!("Normalizer `{}`: unknown norm `{other}`", node.name),
    };
    built(Kernel::Normalizer(norm))
}

fn linear_classifier(_: &ParsingContext, node: &NodeProto) -> Built {
    let Some(labels) = Labels::of(node) else {
        bail!(
            "LinearClassifier `{}`: no classlabels_ints or classlabels_strings",
            node.name
        );
    };
    let coefficients: Vec<f64> = floats(node, "coefficients")
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    let intercepts: Vec<f64> = floats(node, "intercepts")
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    let k = if intercepts.is_empty() {
        labels.len()
    } else {
        intercepts.len()
    };
    ensure(
        k > 0 && coefficients.len().is_multiple_of(k) && !coefficients.is_empty(),
        node,
        || {
            format!(
                "{} coefficients do not split into {k} classes",
                coefficients.len()
            )
        },
    )?;
    built(Kernel::LinearClassifier(LinearClassifier {
        coefficients,
        intercepts,
        k,
        labels,
        post: PostTransform::of(node)?,
    }))
}

fn linear_regressor(_: &ParsingContext, node: &NodeProto) -> Built {
    let targets = index(node, "targets", int(node, "targets").unwrap_or(1))?;
    let coefficients: Vec<f64> = floats(node, "coefficients")
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    ensure(
        targets > 0 && !coefficients.is_empty() && coefficients.len().is_multiple_of(targets),
        node,
        || {
            format!(
                "{} coefficients do not split into {targets} targets",
                coefficients.len()
            )
        },
    )?;
    ensure(
        PostTransform::of(node)? == PostTransform::None,
        node,
        || "only post_transform NONE is supported".into(),
    )?;
    built(Kernel::LinearRegressor {
        coefficients,
        intercepts: floats(node, "intercepts")
            .iter()
            .map(|v| f64::from(*v))
            .collect(),
        targets,
    })
}

fn imputer(_: &ParsingContext, node: &NodeProto) -> Built {
    ensure(ints(node, "imputed_value_int64s").is_empty(), node, || {
        "integer imputation is not supported".into()
    })?;
    built(Kernel::Imputer {
        values: floats(node, "imputed_value_floats")
            .iter()
            .map(|v| f64::from(*v))
            .collect(),
        replaced: f64::from(float(node, "replaced_value_float").unwrap_or(0.0)),
    })
}

fn binarizer(_: &ParsingContext, node: &NodeProto) -> Built {
    built(Kernel::Binarizer {
        threshold: f64::from(float(node, "threshold").unwrap_or(0.0)),
    })
}

fn feature_vectorizer(_: &ParsingContext, node: &NodeProto) -> Built {
    built(Kernel::FeatureVectorizer {
        dims: indices(node, "inputdimensions")?,
    })
}

fn array_feature_extractor(_: &ParsingContext, _: &NodeProto) -> Built {
    built(Kernel::ArrayFeatureExtractor)
}

fn tree_ensemble_classifier(ctx: &ParsingContext, node: &NodeProto) -> Built {
    built(Kernel::Trees(Box::new(trees(ctx, node, true)?)))
}

fn tree_ensemble_regressor(ctx: &ParsingContext, node: &NodeProto) -> Built {
    built(Kernel::Trees(Box::new(trees(ctx, node, false)?)))
}

fn trees(ctx: &ParsingContext, node: &NodeProto, classifier: bool) -> TractResult<Trees> {
    let labels = if classifier {
        let Some(labels) = Labels::of(node) else {
            bail!(
                "TreeEnsembleClassifier `{}`: no classlabels_int64s or classlabels_strings",
                node.name
            );
        };
        Some(labels)
    } else {
        None
    };
    let tree_ids = indices(node, "nodes_treeids")?;
    let node_ids = indices(node, "nodes_nodeids")?;
    let features = indices(node, "nodes_featureids")?;
    let modes = strings(node, "nodes_modes");
    let values = reals(ctx, node, "nodes_values")?;
    let yes = indices(node, "nodes_truenodeids")?;
    let no = indices(node, "nodes_falsenodeids")?;
    let missing = ints(node, "nodes_missing_value_tracks_true");
    let n = tree_ids.len();
    ensure(n > 0, node, || "no nodes".into())?;
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.len()),
        ("nodes_truenodeids", yes.len()),
        ("nodes_falsenodeids", no.len()),
    ] {
        ensure(len == n, node, || {
            format!("`{name}` has {len} entries, `nodes_treeids` {n}")
        })?;
    }
    ensure(missing.is_empty() || missing.len() == n, node, || {
        "`nodes_missing_value_tracks_true` has the wrong length".into()
    })?;

    let prefix = if classifier { "class" } else { "target" };
    let leaf_trees = indices(node, &format!("{prefix}_treeids"))?;
    let leaf_nodes = indices(node, &format!("{prefix}_nodeids"))?;
    let leaf_cols = indices(node, &format!("{prefix}_ids"))?;
    let leaf_weights = reals(ctx, node, &format!("{prefix}_weights"))?;
    let m = leaf_trees.len();
    ensure(
        leaf_nodes.len() == m && leaf_cols.len() == m && leaf_weights.len() == m,
        node,
        || format!("the `{prefix}_*` attributes have different lengths"),
    )?;

    let n_out = match &labels {
        Some(l) => l.len(),
        None => index(node, "n_targets", int(node, "n_targets").unwrap_or(1))?,
    };
    ensure(n_out > 0, node, || "no output columns".into())?;
    ensure(leaf_cols.iter().all(|c| *c < n_out), node, || {
        format!(
            "a leaf scores column {} of {n_out}",
            leaf_cols.iter().max().copied().unwrap_or(0)
        )
    })?;
    let binary = classifier && n_out == 2 && m > 0 && leaf_cols.iter().all(|c| *c == 0);

    // Group nodes by tree, in order of first appearance; the first node listed is the root.
    let mut tree_order: Vec<usize> = Vec::new();
    let mut slot_of = std::collections::HashMap::<(usize, usize), (usize, usize)>::new();
    let mut per_tree: Vec<Vec<usize>> = Vec::new();
    let mut tree_slot = std::collections::HashMap::<usize, usize>::new();
    for i in 0..n {
        let t = *tree_slot.entry(tree_ids[i]).or_insert_with(|| {
            tree_order.push(tree_ids[i]);
            per_tree.push(Vec::new());
            per_tree.len() - 1
        });
        let pos = per_tree[t].len();
        ensure(
            slot_of
                .insert((tree_ids[i], node_ids[i]), (t, pos))
                .is_none(),
            node,
            || format!("tree {} lists node {} twice", tree_ids[i], node_ids[i]),
        )?;
        per_tree[t].push(i);
    }
    let mut leaves = std::collections::HashMap::<(usize, usize), Vec<(usize, f64)>>::new();
    for j in 0..m {
        leaves
            .entry((leaf_trees[j], leaf_nodes[j]))
            .or_default()
            .push((leaf_cols[j], leaf_weights[j]));
    }
    let mut max_feature = 0;
    let mut trees = Vec::with_capacity(per_tree.len());
    for (t, members) in per_tree.iter().enumerate() {
        let tree_id = tree_order[t];
        let child = |target: usize| -> TractResult<usize> {
            slot_of
                .get(&(tree_id, target))
                .map(|(_, pos)| *pos)
                .ok_or_else(|| {
                    format_err!(
                        "{} `{}`: tree {tree_id} points at missing node {target}",
                        node.op_type,
                        node.name
                    )
                })
        };
        let mut nodes = Vec::with_capacity(members.len());
        for &i in members {
            let mode = match modes[i].as_str() {
                "LEAF" => None,
                "BRANCH_LEQ" => Some(Mode::Leq),
                "BRANCH_LT" => Some(Mode::Lt),
                "BRANCH_GTE" => Some(Mode::Gte),
                "BRANCH_GT" => Some(Mode::Gt),
                "BRANCH_EQ" => Some(Mode::Eq),
                "BRANCH_NEQ" => Some(Mode::Neq),
                other => bail!(
                    "{} `{}`: node mode `{other}` is not supported",
                    node.op_type,
                    node.name
                ),
            };
            nodes.push(match mode {
                None => TreeNode::Leaf(leaves.remove(&(tree_id, node_ids[i])).unwrap_or_default()),
                Some(mode) => {
                    max_feature = max_feature.max(features[i] + 1);
                    TreeNode::Branch {
                        feature: features[i],
                        mode,
                        value: values[i],
                        yes: child(yes[i])?,
                        no: child(no[i])?,
                        missing_yes: missing.get(i).is_some_and(|v| *v != 0),
                    }
                }
            });
        }
        trees.push(nodes);
    }
    let aggregate = if classifier {
        Aggregate::Sum
    } else {
        match string(node, "aggregate_function").as_deref() {
            None | Some("SUM") => Aggregate::Sum,
            Some("AVERAGE") => Aggregate::Average,
            Some("MIN") => Aggregate::Min,
            Some("MAX") => Aggregate::Max,
            Some(other) => bail!(
                "{} `{}`: unknown aggregate_function `{other}`",
                node.op_type,
                node.name
            ),
        }
    };
    Ok(Trees {
        trees,
        n_out,
        base: reals(ctx, node, "base_values")?,
        aggregate,
        post: PostTransform::of(node)?,
        labels,
        binary,
        n_features: max_feature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_transforms_match_the_reference() {
        let mut row = vec![1.0, 2.0, 3.0];
        PostTransform::Softmax.apply(&mut row);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((row[2] - 0.665_240_955_774_821_6).abs() < 1e-12);
        assert!((logistic(-2.0) - 0.119_202_922_022_117_57).abs() < 1e-12);
        assert_eq!(argmax(&[0.2, 0.5, 0.5]), 1);
        assert!(probit(0.5).abs() < 1e-12);
    }

    #[test]
    fn trees_walk_branches_and_missing_values() {
        let trees = Trees {
            trees: vec![vec![
                TreeNode::Branch {
                    feature: 0,
                    mode: Mode::Leq,
                    value: 1.0,
                    yes: 1,
                    no: 2,
                    missing_yes: true,
                },
                TreeNode::Leaf(vec![(0, 10.0)]),
                TreeNode::Leaf(vec![(0, 20.0)]),
            ]],
            n_out: 1,
            base: vec![0.5],
            aggregate: Aggregate::Sum,
            post: PostTransform::None,
            labels: None,
            binary: false,
            n_features: 1,
        };
        let mut out = vec![0.0];
        trees.eval_row(&[1.0], &mut out).unwrap();
        assert_eq!(out, vec![10.5]);
        trees.eval_row(&[1.5], &mut out).unwrap();
        assert_eq!(out, vec![20.5]);
        trees.eval_row(&[f64::NAN], &mut out).unwrap();
        assert_eq!(out, vec![10.5]);
    }

    #[test]
    fn cyclic_trees_are_an_error_not_a_hang() {
        let trees = Trees {
            trees: vec![vec![TreeNode::Branch {
                feature: 0,
                mode: Mode::Leq,
                value: 1.0,
                yes: 0,
                no: 0,
                missing_yes: false,
            }]],
            n_out: 1,
            base: vec![],
            aggregate: Aggregate::Sum,
            post: PostTransform::None,
            labels: None,
            binary: false,
            n_features: 1,
        };
        assert!(trees.eval_row(&[0.0], &mut [0.0]).is_err());
    }
}
