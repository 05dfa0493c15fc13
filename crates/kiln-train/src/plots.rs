//! Evaluation plots as self-contained SVG documents: no fonts, no rasteriser, no dependencies.
//!
//! [`evaluation_plots`] draws, for a classifier, the ROC curve ([`roc_curve`]), the
//! precision-recall curve ([`pr_curve`]) and the confusion matrix (a heat map with counts);
//! for a regressor, residuals against predictions and predicted against actual values; and for
//! both, when given an [`Importance`] ([`feature_importance`]), the top 20 features as horizontal
//! bars. Each comes back as a [`Plot`]: a file name (`roc.svg`, …) and the SVG text.
//!
//! The output is deterministic (fixed number formatting, stable order, deterministic
//! down-sampling), so the same model and data give byte-identical files. Curves are computed
//! from the full data; only what is drawn is thinned (at most [`MAX_CURVE_POINTS`] vertices per
//! curve, [`MAX_SCATTER_POINTS`] scatter points).
//!
//! ```
//! use kiln_train::frame::Task;
//! use kiln_train::artifact::Predictions;
//! use kiln_train::plots::evaluation_plots;
//!
//! let proba = Predictions::Proba(vec![vec![0.8, 0.2], vec![0.3, 0.7], vec![0.4, 0.6], vec![0.6, 0.4]]);
//! let classes = vec!["no".to_string(), "yes".to_string()];
//! let plots = evaluation_plots(Task::Classification, &classes, &proba, &[0.0, 1.0, 1.0, 0.0], None).unwrap();
//! assert_eq!(plots.iter().map(|p| p.name).collect::<Vec<_>>(), ["roc.svg", "pr.svg", "confusion_matrix.svg"]);
//! assert!(plots[0].svg.starts_with("<svg") && plots[0].svg.contains("AUC = 1.000"));
//! ```

use std::fmt::Write as _;

use kiln_ml::linear::{ColumnEncoding, LinearModel};

use crate::artifact::{KilnModel, Learner, Predictions};
use crate::frame::Task;
use crate::TrainError;

/// Most vertices drawn per curve.
pub const MAX_CURVE_POINTS: usize = 1000;
/// Most points drawn per scatter plot (an even, deterministic sample beyond that).
pub const MAX_SCATTER_POINTS: usize = 2000;
/// Bars in the feature-importance chart.
pub const TOP_FEATURES: usize = 20;
/// Classes drawn in multiclass ROC / PR charts (one-vs-rest curves).
const MAX_CURVES: usize = 10;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 480.0;
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
const FONT: &str = "font-family=\"sans-serif\"";

/// One rendered plot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plot {
    /// File name: `roc.svg`, `pr.svg`, `confusion_matrix.svg`, `feature_importance.svg`,
    /// `residuals.svg`, `predicted_vs_actual.svg`.
    pub name: &'static str,
    /// The SVG document.
    pub svg: String,
}

/// Per-feature importance of a model, in feature order.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    /// What the values measure, for the chart title.
    pub measure: &'static str,
    pub values: Vec<(String, f64)>,
}

/// Importance of each input feature: total split gain for tree models; for linear models the
/// absolute coefficient on the standardised scale (summed over outputs; a one-hot encoded
/// feature counts its largest category coefficient).
pub fn feature_importance(model: &KilnModel) -> Importance {
    match &model.learner {
        Learner::Gbdt(m) => Importance {
            measure: "total split gain",
            values: m
                .feature_importance()
                .into_iter()
                .map(|f| (f.name, f.gain))
                .collect(),
        },
        Learner::RandomForest(m) => Importance {
            measure: "total split gain",
            values: m
                .feature_importance()
                .into_iter()
                .map(|f| (f.name, f.gain))
                .collect(),
        },
        Learner::Logistic(m) | Learner::Linear(m) => Importance {
            measure: "|coefficient|, standardised",
            values: linear_importance(m),
        },
    }
}

fn linear_importance(m: &LinearModel) -> Vec<(String, f64)> {
    let mut out = Vec::with_capacity(m.design.features.len());
    let mut col = 0;
    for (name, enc) in &m.design.features {
        let width = match enc {
            ColumnEncoding::Standardize { .. } => 1,
            ColumnEncoding::OneHot { categories } => categories.len(),
        };
        let value: f64 = m
            .coef
            .iter()
            .map(|c| {
                c.get(col..col + width)
                    .unwrap_or(&[])
                    .iter()
                    .fold(0.0_f64, |acc, v| acc.max(v.abs()))
            })
            .sum();
        out.push((name.clone(), value));
        col += width;
    }
    out
}

/// A curve and the area it gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// `(x, y)` vertices in drawing order: (false positive rate, true positive rate) for ROC,
    /// (recall, precision) for PR.
    pub points: Vec<(f64, f64)>,
    /// ROC: trapezoid area (ties handled as scikit-learn does); PR: average precision.
    pub area: f64,
}

/// Positive and negative counts at each distinct score, highest score first.
fn threshold_counts(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len().min(positive.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut out: Vec<(f64, f64)> = Vec::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if positive[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order
            .get(k + 1)
            .is_none_or(|&j| scores[j].total_cmp(&scores[i]).is_ne());
        if last_of_tie {
            out.push((tp, fp));
        }
    }
    out
}

/// The ROC curve of `scores` for the rows marked `positive`; `None` when either class is absent.
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Option<Curve> {
    let counts = threshold_counts(scores, positive);
    let &(p, n) = counts.last()?;
    if p == 0.0 || n == 0.0 {
        return None;
    }
    let mut points = vec![(0.0, 0.0)];
    points.extend(counts.iter().map(|&(tp, fp)| (fp / n, tp / p)));
    let area = points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum();
    Some(Curve { points, area })
}

/// The precision-recall curve of `scores` for the rows marked `positive`, from recall 0
/// (precision 1) up; `None` when no row is positive.
pub fn pr_curve(scores: &[f64], positive: &[bool]) -> Option<Curve> {
    let counts = threshold_counts(scores, positive);
    let &(p, _) = counts.last()?;
    if p == 0.0 {
        return None;
    }
    let mut points = vec![(0.0, 1.0)];
    let mut area = 0.0;
    let mut last_recall = 0.0;
    for (tp, fp) in counts {
        let recall = tp / p;
        let precision = tp / (tp + fp);
        area += (recall - last_recall) * precision;
        last_recall = recall;
        points.push((recall, precision));
    }
    Some(Curve { points, area })
}

/// Every plot that applies to the task. `y` holds class indices (classification) or targets.
pub fn evaluation_plots(
    task: Task,
    classes: &[String],
    pred: &Predictions,
    y: &[f64],
    importance: Option<&Importance>,
) -> Result<Vec<Plot>, TrainError> {
    let mut plots = Vec::new();
    match (task, pred) {
        (Task::Classification, Predictions::Proba(proba)) => {
            if proba.len() != y.len() {
                return Err(TrainError::Input(format!(
                    "plots: {} predictions for {} labels",
                    proba.len(),
                    y.len()
                )));
            }
            let k = classes.len();
            if let Some(row) = proba.iter().position(|r| r.len() != k) {
                return Err(TrainError::Input(format!(
                    "plots: prediction row {row} has {} class probabilities, expected {k}",
                    proba[row].len()
                )));
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let labels: Vec<usize> = y.iter().map(|v| *v as usize).collect();
            if let Some(row) = labels.iter().position(|&c| c >= k) {
                return Err(TrainError::Input(format!(
                    "plots: label at row {row} is class {}, but there are {k} classes",
                    labels[row]
                )));
            }
            let curves = one_vs_rest(classes, proba, &labels);
            plots.push(Plot {
                name: "roc.svg",
                svg: curve_chart(&curves, CurveKind::Roc, &labels),
            });
            plots.push(Plot {
                name: "pr.svg",
                svg: curve_chart(&curves, CurveKind::Pr, &labels),
            });
            plots.push(Plot {
                name: "confusion_matrix.svg",
                svg: confusion_chart(classes, proba, &labels),
            });
        }
        (Task::Regression, Predictions::Values(values)) => {
            if values.len() != y.len() {
                return Err(TrainError::Input(format!(
                    "plots: {} predictions for {} targets",
                    values.len(),
                    y.len()
                )));
            }
            plots.push(Plot {
                name: "residuals.svg",
                svg: residuals_chart(y, values),
            });
            plots.push(Plot {
                name: "predicted_vs_actual.svg",
                svg: predicted_vs_actual_chart(y, values),
            });
        }
        _ => {
            return Err(TrainError::Input(
                "plots: the model's outputs do not match its task".into(),
            ))
        }
    }
    if let Some(imp) = importance {
        plots.push(Plot {
            name: "feature_importance.svg",
            svg: importance_chart(imp),
        });
    }
    Ok(plots)
}

/// Write plots into `dir` (created when missing); returns the written paths.
pub fn write_plots(plots: &[Plot], dir: &str) -> Result<Vec<std::path::PathBuf>, TrainError> {
    let dir = std::path::Path::new(dir);
    fs_err::create_dir_all(dir).map_err(|err| TrainError::Io {
        path: dir.display().to_string(),
        err,
    })?;
    plots
        .iter()
        .map(|p| {
            let path = dir.join(p.name);
            fs_err::write(&path, &p.svg).map_err(|err| TrainError::Io {
                path: path.display().to_string(),
                err,
            })?;
            Ok(path)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Curves

struct ClassCurves {
    name: String,
    roc: Option<Curve>,
    pr: Option<Curve>,
    positives: usize,
}

fn one_vs_rest(classes: &[String], proba: &[Vec<f64>], labels: &[usize]) -> Vec<ClassCurves> {
    let targets: Vec<usize> = if classes.len() == 2 {
        vec![1]
    } else {
        (0..classes.len()).take(MAX_CURVES).collect()
    };
    targets
        .into_iter()
        .map(|c| {
            let scores: Vec<f64> = proba.iter().map(|r| r[c]).collect();
            let positive: Vec<bool> = labels.iter().map(|&l| l == c).collect();
            ClassCurves {
                name: classes[c].clone(),
                roc: roc_curve(&scores, &positive),
                pr: pr_curve(&scores, &positive),
                positives: positive.iter().filter(|p| **p).count(),
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CurveKind {
    Roc,
    Pr,
}

fn curve_chart(curves: &[ClassCurves], kind: CurveKind, labels: &[usize]) -> String {
    let binary = curves.len() == 1;
    let pick = |c: &ClassCurves| match kind {
        CurveKind::Roc => c.roc.clone(),
        CurveKind::Pr => c.pr.clone(),
    };
    let defined: Vec<f64> = curves
        .iter()
        .filter_map(|c| pick(c).map(|k| k.area))
        .collect();
    let (what, area_name) = match kind {
        CurveKind::Roc => ("ROC curve", "AUC"),
        CurveKind::Pr => ("Precision-recall curve", "AP"),
    };
    let title = if defined.is_empty() {
        format!("{what} ({area_name} undefined: one class only)")
    } else if binary {
        format!("{what}, {area_name} = {:.3}", defined[0])
    } else {
        #[allow(clippy::cast_precision_loss)]
        let mean = defined.iter().sum::<f64>() / defined.len() as f64;
        format!("{what} (one-vs-rest), macro {area_name} = {mean:.3}")
    };
    let (xlabel, ylabel) = match kind {
        CurveKind::Roc => ("False positive rate", "True positive rate"),
        CurveKind::Pr => ("Recall", "Precision"),
    };
    let frame = Frame::standard();
    let unit = Scale::new(0.0, 1.0, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    let mut svg = open_svg(WIDTH, HEIGHT, &title);
    axes(&mut svg, &frame, &unit, &unit, xlabel, ylabel);
    // Chance level.
    match kind {
        CurveKind::Roc => {
            let _ = writeln!(
                svg,
                r##"<line class="chance" x1="{:.2}" y1="{:.2}" x2="{:.2}" y2="{:.2}" stroke="#999" stroke-dasharray="4 4"/>"##,
                frame.x(&unit, 0.0),
                frame.y(&unit, 0.0),
                frame.x(&unit, 1.0),
                frame.y(&unit, 1.0)
            );
        }
        CurveKind::Pr if binary => {
            #[allow(clippy::cast_precision_loss)]
            let prevalence = curves[0].positives as f64 / labels.len().max(1) as f64;
            let _ = writeln!(
                svg,
                r##"<line class="chance" x1="{:.2}" y1="{:.2}" x2="{:.2}" y2="{:.2}" stroke="#999" stroke-dasharray="4 4"/>"##,
                frame.x(&unit, 0.0),
                frame.y(&unit, prevalence),
                frame.x(&unit, 1.0),
                frame.y(&unit, prevalence)
            );
        }
        CurveKind::Pr => {}
    }
    let mut legend = Vec::new();
    for (i, c) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let Some(curve) = pick(c) else {
            legend.push((color, format!("{} ({area_name} undefined)", c.name)));
            continue;
        };
        let pts = thin(&curve.points);
        let _ = write!(
            svg,
            r#"<polyline class="series" data-series="{}" fill="none" stroke="{color}" stroke-width="2" points=""#,
            esc(&c.name)
        );
        for (k, (x, y)) in pts.iter().enumerate() {
            if k > 0 {
                svg.push(' ');
            }
            let _ = write!(svg, "{:.2},{:.2}", frame.x(&unit, *x), frame.y(&unit, *y));
        }
        svg.push_str("\"/>\n");
        legend.push((
            color,
            if binary {
                format!("positive class {} ({area_name} {:.3})", c.name, curve.area)
            } else {
                format!("{} vs rest ({area_name} {:.3})", c.name, curve.area)
            },
        ));
    }
    let corner = match kind {
        CurveKind::Roc => Corner::BottomRight,
        CurveKind::Pr => Corner::BottomLeft,
    };
    draw_legend(&mut svg, &frame, &legend, corner);
    svg.push_str("</svg>\n");
    svg
}

/// Drop vertices closer than 1/1000 of the unit square to the previous kept one, then thin
/// evenly to at most [`MAX_CURVE_POINTS`]; the first and last vertices always stay.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut kept: Vec<(f64, f64)> = Vec::new();
    for (i, &p) in points.iter().enumerate() {
        let last = i + 1 == points.len();
        match kept.last() {
            Some(&(x, y)) if !last && (p.0 - x).abs() < 1e-3 && (p.1 - y).abs() < 1e-3 => {}
            _ => kept.push(p),
        }
    }
    even_sample(&kept, MAX_CURVE_POINTS)
}

/// At most `max` items, evenly spaced, keeping the first and last.
fn even_sample<T: Copy>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max < 2 {
        return items.to_vec();
    }
    let n = items.len();
    (0..max).map(|k| items[k * (n - 1) / (max - 1)]).collect()
}

// ---------------------------------------------------------------------------------------------
// Confusion matrix

fn confusion_chart(classes: &[String], proba: &[Vec<f64>], labels: &[usize]) -> String {
    let k = classes.len();
    let mut m = vec![vec![0u64; k]; k];
    for (row, &t) in proba.iter().zip(labels) {
        let p = argmax(row);
        m[t][p] += 1;
    }
    let max = m.iter().flatten().copied().max().unwrap_or(0).max(1);
    #[allow(clippy::cast_precision_loss)]
    let cell = (400.0 / k as f64).clamp(24.0, 80.0);
    let label_w = 20.0
        + 7.0
            * classes
                .iter()
                .map(|c| short(c, 16).chars().count())
                .max()
                .unwrap_or(1) as f64;
    let left = 40.0 + label_w;
    let top = 60.0;
    #[allow(clippy::cast_precision_loss)]
    let grid = cell * k as f64;
    let width = (left + grid + 30.0).max(320.0);
    let height = top + grid + label_w + 40.0;
    let title = format!("Confusion matrix (n = {})", labels.len());
    let mut svg = open_svg(width, height, &title);
    let font = if cell < 36.0 { 10 } else { 13 };
    for (t, row) in m.iter().enumerate() {
        let row_total: u64 = row.iter().sum();
        for (p, &count) in row.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let (x, y) = (left + p as f64 * cell, top + t as f64 * cell);
            #[allow(clippy::cast_precision_loss)]
            let level = count as f64 / max as f64;
            let share = if row_total > 0 {
                #[allow(clippy::cast_precision_loss)]
                let s = 100.0 * count as f64 / row_total as f64;
                s
            } else {
                0.0
            };
            let _ = writeln!(
                svg,
                r##"<rect class="cell" data-true="{t}" data-pred="{p}" data-count="{count}" x="{x:.2}" y="{y:.2}" width="{cell:.2}" height="{cell:.2}" fill="{}" stroke="#fff"><title>true {}, predicted {}: {count} ({share:.1}% of the row)</title></rect>"##,
                blues(level),
                esc(&classes[t]),
                esc(&classes[p])
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.2}" y="{:.2}" {FONT} font-size="{font}" text-anchor="middle" dominant-baseline="central" fill="{}">{count}</text>"#,
                x + cell / 2.0,
                y + cell / 2.0,
                if level > 0.5 { "#fff" } else { "#000" }
            );
        }
    }
    for (i, c) in classes.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let mid = i as f64 * cell + cell / 2.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.2}" y="{:.2}" {FONT} font-size="12" text-anchor="end" dominant-baseline="central">{}</text>"#,
            left - 6.0,
            top + mid,
            esc(&short(c, 16))
        );
        let (x, y) = (left + mid, top + grid + 8.0);
        let _ = writeln!(
            svg,
            r#"<text x="{x:.2}" y="{y:.2}" {FONT} font-size="12" text-anchor="end" dominant-baseline="central" transform="rotate(-45 {x:.2} {y:.2})">{}</text>"#,
            esc(&short(c, 16))
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.2}" y="{:.2}" {FONT} font-size="13" text-anchor="middle">Predicted class</text>"#,
        left + grid / 2.0,
        height - 12.0
    );
    let (x, y) = (16.0, top + grid / 2.0);
    let _ = writeln!(
        svg,
        r#"<text x="{x:.2}" y="{y:.2}" {FONT} font-size="13" text-anchor="middle" transform="rotate(-90 {x:.2} {y:.2})">True class</text>"#
    );
    svg.push_str("</svg>\n");
    svg
}

/// The lowest index of the largest value (as the evaluation metrics pick the predicted class).
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// White to dark blue.
fn blues(level: f64) -> String {
    let lerp = |a: f64, b: f64| a + (b - a) * level.clamp(0.0, 1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let c = |a: f64, b: f64| lerp(a, b).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        c(247.0, 8.0),
        c(251.0, 48.0),
        c(255.0, 107.0)
    )
}

// ---------------------------------------------------------------------------------------------
// Feature importance

fn importance_chart(imp: &Importance) -> String {
    let mut values: Vec<(String, f64)> = imp
        .values
        .iter()
        .map(|(n, v)| (n.clone(), if v.is_finite() { *v } else { 0.0 }))
        .collect();
    values.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total = values.len();
    values.truncate(TOP_FEATURES);
    let max = values.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let bar_h = 18.0;
    let gap = 6.0;
    #[allow(clippy::cast_precision_loss)]
    let label_w = 16.0
        + 7.0
            * values
                .iter()
                .map(|(n, _)| short(n, 28).chars().count())
                .max()
                .unwrap_or(1) as f64;
    let left = label_w + 10.0;
    let top = 56.0;
    let bars_w = WIDTH - left - 90.0;
    #[allow(clippy::cast_precision_loss)]
    let height = top + (bar_h + gap) * values.len().max(1) as f64 + 30.0;
    let shown = if total > values.len() {
        format!(", top {} of {total}", values.len())
    } else {
        String::new()
    };
    let title = format!("Feature importance ({}{shown})", imp.measure);
    let mut svg = open_svg(WIDTH, height, &title);
    for (i, (name, v)) in values.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = top + (bar_h + gap) * i as f64;
        let w = if max > 0.0 { bars_w * v / max } else { 0.0 };
        let _ = writeln!(
            svg,
            r##"<rect class="bar" data-feature="{}" data-value="{}" x="{left:.2}" y="{y:.2}" width="{w:.2}" height="{bar_h:.2}" fill="#1f77b4"><title>{}: {}</title></rect>"##,
            esc(name),
            fmt_num(*v),
            esc(name),
            fmt_num(*v)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.2}" y="{:.2}" {FONT} font-size="12" text-anchor="end" dominant-baseline="central">{}</text>"#,
            left - 6.0,
            y + bar_h / 2.0,
            esc(&short(name, 28))
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.2}" y="{:.2}" {FONT} font-size="11" dominant-baseline="central" fill="#333">{}</text>"##,
            left + w + 4.0,
            y + bar_h / 2.0,
            fmt_num(*v)
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{left:.2}" y1="{:.2}" x2="{left:.2}" y2="{:.2}" stroke="#333"/>"##,
        top - 4.0,
        height - 26.0
    );
    svg.push_str("</svg>\n");
    svg
}

// ---------------------------------------------------------------------------------------------
// Regression

fn residuals_chart(y: &[f64], pred: &[f64]) -> String {
    let pairs: Vec<(f64, f64)> = pred
        .iter()
        .zip(y)
        .map(|(p, t)| (*p, t - p))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect();
    let rmse = rmse(&pairs);
    let title = format!("Residuals (actual − predicted), RMSE = {}", fmt_num(rmse));
    let (xs, ys) = bounds(&pairs);
    let x = Scale::nice(xs.0, xs.1);
    let yr = ys.0.abs().max(ys.1.abs()).max(f64::MIN_POSITIVE);
    let y_scale = Scale::nice(-yr, yr);
    let frame = Frame::standard();
    let mut svg = open_svg(WIDTH, HEIGHT, &title);
    axes(
        &mut svg,
        &frame,
        &x,
        &y_scale,
        "Predicted value",
        "Residual",
    );
    let _ = writeln!(
        svg,
        r##"<line class="zero" x1="{:.2}" y1="{:.2}" x2="{:.2}" y2="{:.2}" stroke="#d62728" stroke-dasharray="4 4"/>"##,
        frame.x(&x, x.min),
        frame.y(&y_scale, 0.0),
        frame.x(&x, x.max),
        frame.y(&y_scale, 0.0)
    );
    scatter(&mut svg, &frame, &x, &y_scale, &pairs, "residuals");
    svg.push_str("</svg>\n");
    svg
}

fn predicted_vs_actual_chart(y: &[f64], pred: &[f64]) -> String {
    let pairs: Vec<(f64, f64)> = y
        .iter()
        .zip(pred)
        .map(|(t, p)| (*t, *p))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect();
    let r2 = r_squared(&pairs);
    let title = format!("Predicted vs actual, R² = {:.3}", r2);
    let (xs, ys) = bounds(&pairs);
    let s = Scale::nice(xs.0.min(ys.0), xs.1.max(ys.1));
    let frame = Frame::standard();
    let mut svg = open_svg(WIDTH, HEIGHT, &title);
    axes(&mut svg, &frame, &s, &s, "Actual value", "Predicted value");
    let _ = writeln!(
        svg,
        r##"<line class="identity" x1="{:.2}" y1="{:.2}" x2="{:.2}" y2="{:.2}" stroke="#d62728" stroke-dasharray="4 4"/>"##,
        frame.x(&s, s.min),
        frame.y(&s, s.min),
        frame.x(&s, s.max),
        frame.y(&s, s.max)
    );
    scatter(&mut svg, &frame, &s, &s, &pairs, "predictions");
    svg.push_str("</svg>\n");
    svg
}

fn scatter(
    svg: &mut String,
    frame: &Frame,
    x: &Scale,
    y: &Scale,
    pairs: &[(f64, f64)],
    series: &str,
) {
    let _ = writeln!(
        svg,
        r##"<g class="series" data-series="{series}" data-points="{}" fill="#1f77b4" fill-opacity="0.45">"##,
        pairs.len()
    );
    for (a, b) in even_sample(pairs, MAX_SCATTER_POINTS) {
        let _ = writeln!(
            svg,
            r#"<circle cx="{:.2}" cy="{:.2}" r="2.5"/>"#,
            frame.x(x, a),
            frame.y(y, b)
        );
    }
    svg.push_str("</g>\n");
}

#[allow(clippy::cast_precision_loss)]
fn rmse(pairs: &[(f64, f64)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    (pairs.iter().map(|(_, r)| r * r).sum::<f64>() / pairs.len() as f64).sqrt()
}

#[allow(clippy::cast_precision_loss)]
fn r_squared(pairs: &[(f64, f64)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let mean = pairs.iter().map(|(t, _)| t).sum::<f64>() / pairs.len() as f64;
    let ss_tot: f64 = pairs.iter().map(|(t, _)| (t - mean) * (t - mean)).sum();
    let ss_res: f64 = pairs.iter().map(|(t, p)| (t - p) * (t - p)).sum();
    if ss_tot == 0.0 {
        if ss_res == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - ss_res / ss_tot
    }
}

fn bounds(pairs: &[(f64, f64)]) -> ((f64, f64), (f64, f64)) {
    if pairs.is_empty() {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let fold = |f: fn(&(f64, f64)) -> f64| {
        pairs
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    (fold(|p| p.0), fold(|p| p.1))
}

// ---------------------------------------------------------------------------------------------
// Drawing primitives

/// A linear axis: data range and tick positions.
struct Scale {
    min: f64,
    max: f64,
    ticks: Vec<f64>,
}

impl Scale {
    fn new(min: f64, max: f64, ticks: Vec<f64>) -> Self {
        Self { min, max, ticks }
    }

    /// A range covering `[lo, hi]` with round tick steps (1, 2 or 5 × 10ⁿ), about six ticks.
    fn nice(lo: f64, hi: f64) -> Self {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            lo -= pad;
            hi += pad;
        }
        let raw = (hi - lo) / 6.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let start = (lo / step).floor() * step;
        let end = (hi / step).ceil() * step;
        let mut ticks = Vec::new();
        let mut k = 0.0;
        while start + k * step <= end + step * 1e-9 && ticks.len() < 50 {
            let t = start + k * step;
            // Avoid `-0` and float dust like 0.30000000000000004 in labels.
            ticks.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
            k += 1.0;
        }
        Self {
            min: start,
            max: end,
            ticks,
        }
    }
}

/// The plotting area inside the SVG canvas.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Frame {
    fn standard() -> Self {
        Self {
            left: 72.0,
            top: 48.0,
            width: WIDTH - 72.0 - 24.0,
            height: HEIGHT - 48.0 - 60.0,
        }
    }

    fn x(&self, s: &Scale, v: f64) -> f64 {
        self.left + (v - s.min) / (s.max - s.min) * self.width
    }

    fn y(&self, s: &Scale, v: f64) -> f64 {
        self.top + self.height - (v - s.min) / (s.max - s.min) * self.height
    }
}

fn open_svg(width: f64, height: f64, title: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}">"#
    );
    let _ = writeln!(svg, "<title>{}</title>", esc(title));
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let _ = writeln!(
        svg,
        r#"<text class="title" x="{:.2}" y="28" {FONT} font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    svg
}

fn axes(svg: &mut String, f: &Frame, x: &Scale, y: &Scale, xlabel: &str, ylabel: &str) {
    let bottom = f.top + f.height;
    let right = f.left + f.width;
    for &t in &x.ticks {
        let px = f.x(x, t);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.2}" y1="{:.2}" x2="{px:.2}" y2="{bottom:.2}" stroke="#e5e5e5"/>"##,
            f.top
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.2}" y1="{bottom:.2}" x2="{px:.2}" y2="{:.2}" stroke="#333"/>"##,
            bottom + 5.0
        );
        let _ = writeln!(
            svg,
            r#"<text class="tick" x="{px:.2}" y="{:.2}" {FONT} font-size="11" text-anchor="middle">{}</text>"#,
            bottom + 18.0,
            fmt_tick(t)
        );
    }
    for &t in &y.ticks {
        let py = f.y(y, t);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.2}" y1="{py:.2}" x2="{right:.2}" y2="{py:.2}" stroke="#e5e5e5"/>"##,
            f.left
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{:.2}" y1="{py:.2}" x2="{:.2}" y2="{py:.2}" stroke="#333"/>"##,
            f.left - 5.0,
            f.left
        );
        let _ = writeln!(
            svg,
            r#"<text class="tick" x="{:.2}" y="{py:.2}" {FONT} font-size="11" text-anchor="end" dominant-baseline="central">{}</text>"#,
            f.left - 8.0,
            fmt_tick(t)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect class="frame" x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="none" stroke="#333"/>"##,
        f.left, f.top, f.width, f.height
    );
    let _ = writeln!(
        svg,
        r#"<text class="xlabel" x="{:.2}" y="{:.2}" {FONT} font-size="13" text-anchor="middle">{}</text>"#,
        f.left + f.width / 2.0,
        bottom + 42.0,
        esc(xlabel)
    );
    let (lx, ly) = (18.0, f.top + f.height / 2.0);
    let _ = writeln!(
        svg,
        r#"<text class="ylabel" x="{lx:.2}" y="{ly:.2}" {FONT} font-size="13" text-anchor="middle" transform="rotate(-90 {lx:.2} {ly:.2})">{}</text>"#,
        esc(ylabel)
    );
}

#[derive(Clone, Copy)]
enum Corner {
    BottomRight,
    BottomLeft,
}

fn draw_legend(svg: &mut String, f: &Frame, entries: &[(&str, String)], corner: Corner) {
    if entries.is_empty() {
        return;
    }
    let line_h = 18.0;
    #[allow(clippy::cast_precision_loss)]
    let w = 40.0
        + 6.5
            * entries
                .iter()
                .map(|(_, t)| t.chars().count())
                .max()
                .unwrap_or(0) as f64;
    #[allow(clippy::cast_precision_loss)]
    let h = 10.0 + line_h * entries.len() as f64;
    let x0 = match corner {
        Corner::BottomRight => f.left + f.width - w - 10.0,
        Corner::BottomLeft => f.left + 10.0,
    };
    let y0 = f.top + f.height - h - 10.0;
    let _ = writeln!(
        svg,
        r##"<g class="legend"><rect x="{x0:.2}" y="{y0:.2}" width="{w:.2}" height="{h:.2}" fill="#fff" fill-opacity="0.9" stroke="#ccc"/>"##
    );
    for (i, (color, text)) in entries.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = y0 + 5.0 + line_h * i as f64 + line_h / 2.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="{color}" stroke-width="3"/>"#,
            x0 + 8.0,
            x0 + 28.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.2}" y="{y:.2}" {FONT} font-size="12" dominant-baseline="central">{}</text>"#,
            x0 + 34.0,
            esc(text)
        );
    }
    svg.push_str("</g>\n");
}

/// XML text and attribute escaping.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Compact number for labels: up to 4 significant digits, scientific when very large or small.
fn fmt_num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            v.to_string()
        };
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6);
    #[allow(clippy::cast_sign_loss)]
    let s = format!("{v:.prec$}", prec = decimals as usize);
    trim_zeros(&s)
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-4..1e7).contains(&a) {
        return format!("{v:.1e}");
    }
    trim_zeros(&format!("{v:.6}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags balance: every opened element is closed in order (a minimal well-formedness check).
    pub(crate) fn well_formed(svg: &str) -> Result<(), String> {
        if !svg.starts_with("<svg ") {
            return Err("does not start with <svg".into());
        }
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                return Err("unterminated tag".into());
            };
            let tag = &rest[start + 1..start + end];
            rest = &rest[start + end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else if !tag.ends_with('/') {
                let name = tag
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                stack.push(name);
            }
            if stack.is_empty() && !rest.trim().is_empty() {
                return Err("content after the root element".into());
            }
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed: {stack:?}"))
        }
    }

    #[test]
    fn roc_and_pr_match_known_values() {
        // scikit-learn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75,
        // average_precision_score(...) = 0.8333…
        let scores = [0.1, 0.4, 0.35, 0.8];
        let pos = [false, false, true, true];
        let roc = roc_curve(&scores, &pos).unwrap();
        assert!((roc.area - 0.75).abs() < 1e-12);
        assert_eq!(roc.points.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.points.last(), Some(&(1.0, 1.0)));
        let pr = pr_curve(&scores, &pos).unwrap();
        assert!((pr.area - 0.833_333_333_333_333_4).abs() < 1e-12);
        // Ties are one threshold: sklearn gives 0.5 for all-equal scores.
        let tied = roc_curve(&[0.5; 4], &pos).unwrap();
        assert!((tied.area - 0.5).abs() < 1e-12);
        assert!(roc_curve(&scores, &[true; 4]).is_none());
        assert!(pr_curve(&scores, &[false; 4]).is_none());
    }

    #[test]
    fn classification_plots_are_well_formed() {
        let classes: Vec<String> = vec!["a".into(), "b<&>".into(), "c".into()];
        let proba = vec![
            vec![0.7, 0.2, 0.1],
            vec![0.1, 0.8, 0.1],
            vec![0.2, 0.2, 0.6],
            vec![0.5, 0.4, 0.1],
            vec![0.3, 0.3, 0.4],
        ];
        let y = [0.0, 1.0, 2.0, 1.0, 2.0];
        let imp = Importance {
            measure: "total split gain",
            values: (0..30).map(|i| (format!("f{i}"), f64::from(i))).collect(),
        };
        let plots = evaluation_plots(
            Task::Classification,
            &classes,
            &Predictions::Proba(proba),
            &y,
            Some(&imp),
        )
        .unwrap();
        let names: Vec<_> = plots.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "roc.svg",
                "pr.svg",
                "confusion_matrix.svg",
                "feature_importance.svg"
            ]
        );
        for p in &plots {
            well_formed(&p.svg).unwrap_or_else(|e| panic!("{}: {e}\n{}", p.name, p.svg));
        }
        let roc = &plots[0].svg;
        assert!(roc.contains("macro AUC = "), "{roc}");
        assert_eq!(roc.matches(r#"class="series""#).count(), 3);
        assert!(roc.contains("b&lt;&amp;&gt; vs rest"));
        let cm = &plots[2].svg;
        assert_eq!(cm.matches(r#"class="cell""#).count(), 9);
        // Row 3 (true c) predicted a once? No: rows 2 and 4 are class c, predicted c both.
        assert!(
            cm.contains(r#"data-true="2" data-pred="2" data-count="2""#),
            "{cm}"
        );
        assert!(
            cm.contains(r#"data-true="1" data-pred="0" data-count="1""#),
            "{cm}"
        );
        let fi = &plots[3].svg;
        assert_eq!(fi.matches(r#"class="bar""#).count(), TOP_FEATURES);
        assert!(fi.contains("top 20 of 30"));
        // Largest first.
        let first = fi.find("data-feature=\"f29\"").unwrap();
        let second = fi.find("data-feature=\"f28\"").unwrap();
        assert!(first < second);
        assert!(!fi.contains("data-feature=\"f9\""));
    }

    #[test]
    fn binary_title_has_auc_and_output_is_deterministic() {
        let classes: Vec<String> = vec!["no".into(), "yes".into()];
        let n = 5000;
        let proba: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                let p = f64::from((i * 7919) % 1000) / 1000.0;
                vec![1.0 - p, p]
            })
            .collect();
        let y: Vec<f64> = (0..n)
            .map(|i| f64::from(u8::from((i * 7919) % 1000 > 400 || i % 7 == 0)))
            .collect();
        let pred = Predictions::Proba(proba.clone());
        let a = evaluation_plots(Task::Classification, &classes, &pred, &y, None).unwrap();
        let b = evaluation_plots(Task::Classification, &classes, &pred, &y, None).unwrap();
        assert_eq!(a, b);
        let scores: Vec<f64> = proba.iter().map(|r| r[1]).collect();
        let pos: Vec<bool> = y.iter().map(|v| *v == 1.0).collect();
        let auc = roc_curve(&scores, &pos).unwrap().area;
        assert!(
            a[0].svg.contains(&format!("ROC curve, AUC = {auc:.3}")),
            "{}",
            a[0].svg
        );
        let report = kiln_ml::evaluate::classification_metrics(
            &y.iter().map(|v| *v as usize).collect::<Vec<_>>(),
            &proba,
            &classes,
            None,
        )
        .unwrap();
        assert!((report.roc_auc.unwrap() - auc).abs() < 1e-9);
        assert!((report.pr_auc.unwrap() - pr_curve(&scores, &pos).unwrap().area).abs() < 1e-9);
        for p in &a {
            well_formed(&p.svg).unwrap();
            // Thinned: far fewer vertices than rows.
            assert!(p.svg.len() < 200_000, "{} is {} bytes", p.name, p.svg.len());
        }
    }

    #[test]
    fn regression_plots() {
        let y: Vec<f64> = (0..3000).map(|i| f64::from(i) / 10.0).collect();
        let pred: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let plots =
            evaluation_plots(Task::Regression, &[], &Predictions::Values(pred), &y, None).unwrap();
        assert_eq!(plots.len(), 2);
        assert_eq!(plots[0].name, "residuals.svg");
        assert!(
            plots[0].svg.contains("RMSE = 1"),
            "{}",
            &plots[0].svg[..400]
        );
        assert!(plots[0].svg.contains(r#"data-points="3000""#));
        assert_eq!(plots[0].svg.matches("<circle").count(), MAX_SCATTER_POINTS);
        assert!(plots[1].svg.contains("Predicted vs actual, R² = "));
        for p in &plots {
            well_formed(&p.svg).unwrap();
        }
        // Constant data still gets a usable scale.
        let flat = evaluation_plots(
            Task::Regression,
            &[],
            &Predictions::Values(vec![2.0; 3]),
            &[2.0; 3],
            None,
        )
        .unwrap();
        for p in &flat {
            well_formed(&p.svg).unwrap();
            assert!(!p.svg.contains("NaN"), "{}", p.svg);
        }
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let classes: Vec<String> = vec!["a".into(), "b".into()];
        assert!(evaluation_plots(
            Task::Classification,
            &classes,
            &Predictions::Proba(vec![vec![0.5, 0.5]]),
            &[0.0, 1.0],
            None
        )
        .is_err());
        assert!(evaluation_plots(
            Task::Classification,
            &classes,
            &Predictions::Proba(vec![vec![1.0]]),
            &[0.0],
            None
        )
        .is_err());
        assert!(evaluation_plots(
            Task::Classification,
            &classes,
            &Predictions::Proba(vec![vec![0.5, 0.5]]),
            &[5.0],
            None
        )
        .is_err());
        assert!(evaluation_plots(
            Task::Regression,
            &classes,
            &Predictions::Proba(vec![vec![0.5, 0.5]]),
            &[0.0],
            None
        )
        .is_err());
    }

    #[test]
    fn nice_scales() {
        let s = Scale::nice(0.3, 9.7);
        assert_eq!((s.min, s.max), (0.0, 10.0));
        assert_eq!(s.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let s = Scale::nice(-0.013, 0.021);
        assert!(s.min <= -0.013 && s.max >= 0.021 && s.ticks.len() <= 12);
        assert_eq!(fmt_tick(0.30000000000000004), "0.3");
        assert_eq!(fmt_num(1234.5678), "1235");
        assert_eq!(fmt_num(0.012345), "0.01235");
    }
}
