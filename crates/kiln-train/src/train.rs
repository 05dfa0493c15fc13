//! Fit a built-in learner on a table: split, encode, fit, score the held-out rows.

use std::time::Instant;

use kiln_ml::linear::{fit_linear, LinearParams};
use kiln_ml::{fit_forest, gbdt, Dataset, ForestParams, GbdtParams, Objective, Validation};
use kiln_table::{ReadOptions, Table};
use serde::Serialize;

use crate::artifact::{KilnModel, Learner, Predictions, TrainingInfo};
use crate::frame::{Signature, Skipped, Task};
use crate::split::{split_rows, SplitSpec};
use crate::TrainError;

/// Built-in learners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Gbdt,
    RandomForest,
    Logistic,
    Linear,
}

impl ModelKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gbdt" | "gradient_boosting" | "xgboost" | "lightgbm" => Some(Self::Gbdt),
            "random_forest" | "rf" | "forest" => Some(Self::RandomForest),
            "logistic" | "logistic_regression" => Some(Self::Logistic),
            "linear" | "ridge" | "linear_regression" => Some(Self::Linear),
            _ => None,
        }
    }
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub data: String,
    pub test_data: Option<String>,
    pub target: String,
    pub task: Task,
    pub model: ModelKind,
    pub params: Vec<(String, String)>,
    pub split: SplitSpec,
    pub seed: u64,
    pub stratify: bool,
    pub exclude: Vec<String>,
    pub read: ReadOptions,
}

/// Row counts of each part.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rows {
    pub train: usize,
    pub valid: usize,
    pub test: usize,
}

/// A trained model and how it scored.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub model: KilnModel,
    /// Held-out metrics, `test_*` (and `valid_*` with a validation split).
    pub metrics: Vec<(String, f64)>,
    pub rows: Rows,
    pub skipped: Vec<Skipped>,
    pub fit_seconds: f64,
    pub data_hash: String,
    /// Predictions on the test part (or the validation part without one), for plots.
    pub held_out: Option<HeldOut>,
}

/// BLAKE3 of a file, streamed.
pub fn hash_file(path: &str) -> Result<String, TrainError> {
    let local = kiln_table::local_path(path)?;
    let mut file = fs_err::File::open(&local).map_err(|err| TrainError::Io {
        path: path.to_string(),
        err,
    })?;
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher).map_err(|err| TrainError::Io {
        path: path.to_string(),
        err,
    })?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn objective(task: Task, n_classes: usize) -> Objective {
    match task {
        Task::Regression => Objective::Regression,
        Task::Classification if n_classes > 2 => Objective::Multiclass,
        Task::Classification => Objective::Binary,
    }
}

fn fit(
    kind: ModelKind,
    objective: Objective,
    params: &[(String, String)],
    seed: u64,
    train: &kiln_ml::Dataset,
    y: &[f64],
    valid: Option<(&kiln_ml::Dataset, &[f64])>,
) -> Result<Learner, TrainError> {
    let mut kv = params.to_vec();
    Ok(match kind {
        ModelKind::Gbdt => {
            let mut p = GbdtParams {
                objective,
                seed,
                ..GbdtParams::default()
            };
            if objective == Objective::Multiclass {
                p.num_class = None;
            }
            kv.retain(|(k, _)| k != "objective");
            for (k, v) in &kv {
                p.set(k, v)?;
            }
            p.objective = objective;
            let validation = valid.map(|(data, labels)| Validation { data, labels });
            Learner::Gbdt(gbdt::fit_with(&p, train, y, None, validation)?)
        }
        ModelKind::RandomForest => {
            let mut p = ForestParams {
                objective,
                seed,
                ..ForestParams::default()
            };
            kv.retain(|(k, _)| k != "objective");
            for (k, v) in &kv {
                p.set(k, v)?;
            }
            p.objective = objective;
            Learner::RandomForest(fit_forest(&p, train, y, None)?)
        }
        ModelKind::Logistic => {
            if objective == Objective::Regression {
                return Err(TrainError::Input(
                    "--model logistic is for classification; use --model linear for regression"
                        .into(),
                ));
            }
            Learner::Logistic(fit_linear(
                train,
                y,
                None,
                &LinearParams::from_kv(objective, &kv)?,
            )?)
        }
        ModelKind::Linear => {
            if objective != Objective::Regression {
                return Err(TrainError::Input(
                    "--model linear is for regression; use --model logistic for classification"
                        .into(),
                ));
            }
            Learner::Linear(fit_linear(
                train,
                y,
                None,
                &LinearParams::from_kv(objective, &kv)?,
            )?)
        }
    })
}

/// Check that `params` are valid for `kind` without fitting (unknown names and bad values are
/// refused with the learner's message). Checks that need the data (e.g. a class-weight list's
/// length) happen when fitting.
pub fn check_params(
    kind: ModelKind,
    task: Task,
    params: &[(String, String)],
) -> Result<(), TrainError> {
    let objective = match task {
        Task::Regression => Objective::Regression,
        Task::Classification => Objective::Binary,
    };
    let kv: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "objective")
        .cloned()
        .collect();
    match kind {
        ModelKind::Gbdt => {
            let mut p = GbdtParams::default();
            for (k, v) in &kv {
                p.set(k, v)?;
            }
        }
        ModelKind::RandomForest => {
            let mut p = ForestParams::default();
            for (k, v) in &kv {
                p.set(k, v)?;
            }
        }
        ModelKind::Logistic | ModelKind::Linear => {
            LinearParams::from_kv(objective, &kv)?;
        }
    }
    Ok(())
}

/// Held-out metrics for predictions against labels, each name prefixed with `prefix`.
pub fn score(
    task: Task,
    class_names: &[String],
    pred: &Predictions,
    y: &[f64],
    prefix: &str,
) -> Result<Vec<(String, f64)>, TrainError> {
    let metrics = evaluate(task, class_names, pred, y)?.metrics();
    Ok(metrics
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect())
}

/// A full evaluation report.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Report {
    Classification(kiln_ml::evaluate::ClassificationReport),
    Regression(kiln_ml::evaluate::RegressionReport),
}

impl Report {
    pub fn metrics(&self) -> Vec<(String, f64)> {
        match self {
            Self::Classification(r) => r.metrics(),
            Self::Regression(r) => r.metrics(),
        }
    }

    pub fn confusion(&self) -> Option<(&[String], &[Vec<u64>])> {
        match self {
            Self::Classification(r) => Some(r.confusion()),
            Self::Regression(_) => None,
        }
    }
}

/// Evaluate predictions against labels (class indices for classification).
pub fn evaluate(
    task: Task,
    class_names: &[String],
    pred: &Predictions,
    y: &[f64],
) -> Result<Report, TrainError> {
    let eval_err =
        |e: kiln_ml::evaluate::EvalError| TrainError::Input(format!("Evaluation failed: {e}"));
    match (task, pred) {
        (Task::Classification, Predictions::Proba(p)) => {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let classes: Vec<usize> = y.iter().map(|v| *v as usize).collect();
            Ok(Report::Classification(
                kiln_ml::evaluate::classification_metrics(&classes, p, class_names, None)
                    .map_err(eval_err)?,
            ))
        }
        (Task::Regression, Predictions::Values(v)) => Ok(Report::Regression(
            kiln_ml::evaluate::regression_metrics(y, v).map_err(eval_err)?,
        )),
        _ => Err(TrainError::Input(
            "the model's outputs do not match its task".into(),
        )),
    }
}

fn read(path: &str, options: &ReadOptions) -> Result<Table, TrainError> {
    Ok(kiln_table::read_table(path, options)?)
}

/// The data of one run read, encoded and split once: [`fit_prepared`] fits learners on it, so
/// `kiln tune` reads the table once for all its trials and every trial sees the same split.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub signature: Signature,
    pub skipped: Vec<Skipped>,
    pub task: Task,
    objective: Objective,
    /// BLAKE3 of the data file(s) (`train+test` with `--test-data`).
    pub data_hash: String,
    /// The split as recorded in the model (`0.7/0.15/0.15` or `test-data`).
    pub split: String,
    pub train: (Dataset, Vec<f64>),
    pub valid: Option<(Dataset, Vec<f64>)>,
    pub test: Option<(Dataset, Vec<f64>)>,
}

impl Prepared {
    /// Row counts of each part.
    pub fn rows(&self) -> Rows {
        Rows {
            train: self.train.0.n_rows(),
            valid: self.valid.as_ref().map_or(0, |(d, _)| d.n_rows()),
            test: self.test.as_ref().map_or(0, |(d, _)| d.n_rows()),
        }
    }
}

/// Read, encode and split the data of `req` (its model and params are not used).
pub fn prepare(req: &TrainRequest) -> Result<Prepared, TrainError> {
    let table = read(&req.data, &req.read)?;
    let mut data_hash = hash_file(&req.data)?;
    let (signature, skipped) = Signature::infer(&table, &req.target, req.task, &req.exclude)?;
    let (all, _) = signature.encode(&table)?;
    let labels = signature.labels(&table)?;
    // The Arrow table is no longer needed once encoded: free it before the split copies the
    // rows (peak memory is otherwise table + encoded + training copy).
    let n_table_rows = table.num_rows();
    drop(table);
    let n_classes = signature.target.classes.len();
    let objective = objective(req.task, n_classes);

    let (train_idx, valid_idx, test_part) = match &req.test_data {
        Some(test_path) => {
            let spec = SplitSpec {
                train: 1.0 - req.split.valid,
                valid: req.split.valid,
                test: 0.0,
            };
            let strata =
                (req.stratify && req.task == Task::Classification).then_some(labels.as_slice());
            let rows = split_rows(n_table_rows, &spec, req.seed, strata);
            let test_table = read(test_path, &req.read)?;
            data_hash = format!("{data_hash}+{}", hash_file(test_path)?);
            let (test_ds, _) = signature.encode(&test_table)?;
            let test_y = signature.labels(&test_table)?;
            (rows.train, rows.valid, Some((test_ds, test_y)))
        }
        None => {
            let strata =
                (req.stratify && req.task == Task::Classification).then_some(labels.as_slice());
            let rows = split_rows(n_table_rows, &req.split, req.seed, strata);
            let test = if rows.test.is_empty() {
                None
            } else {
                Some((
                    all.take(&rows.test),
                    rows.test.iter().map(|&i| labels[i]).collect::<Vec<f64>>(),
                ))
            };
            (rows.train, rows.valid, test)
        }
    };
    let train_y: Vec<f64> = train_idx.iter().map(|&i| labels[i]).collect();
    if req.task == Task::Classification {
        check_every_class_trains(&signature, &labels, &train_y, req.stratify)?;
    }
    let valid = (!valid_idx.is_empty()).then(|| {
        (
            all.take(&valid_idx),
            valid_idx.iter().map(|&i| labels[i]).collect::<Vec<f64>>(),
        )
    });
    // Last, consuming the encoded table column by column: never two full copies at once.
    let train_ds = all.into_take(&train_idx);
    Ok(Prepared {
        signature,
        skipped,
        task: req.task,
        objective,
        data_hash,
        split: if req.test_data.is_some() {
            "test-data".into()
        } else {
            req.split.describe()
        },
        train: (train_ds, train_y),
        valid,
        test: test_part,
    })
}

/// Every class of the target must have training rows: a learner sizes its outputs from the
/// classes it sees, so a class that the split put only in the validation or test part would
/// leave a model one output short (and a confusing error when it is scored).
fn check_every_class_trains(
    signature: &Signature,
    labels: &[f64],
    train_y: &[f64],
    stratified: bool,
) -> Result<(), TrainError> {
    let classes = &signature.target.classes;
    let mut in_train = vec![0usize; classes.len()];
    let mut in_all = vec![0usize; classes.len()];
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = |v: f64| v as usize;
    for &y in train_y {
        if let Some(c) = in_train.get_mut(index(y)) {
            *c += 1;
        }
    }
    for &y in labels {
        if let Some(c) = in_all.get_mut(index(y)) {
            *c += 1;
        }
    }
    let Some(missing) = in_train.iter().position(|&n| n == 0) else {
        return Ok(());
    };
    let n = in_all.get(missing).copied().unwrap_or(0);
    let hint = if stratified {
        "add rows of that class, or drop them"
    } else {
        "add rows of that class, drop them, or split with --stratify"
    };
    Err(TrainError::Input(format!(
        "Class `{}` of target `{}` has no rows in the training part ({n} row{} in all, put in the validation/test part by the split): {hint}",
        classes.get(missing).map_or("?", String::as_str),
        signature.target.name,
        if n == 1 { "" } else { "s" },
    )))
}

/// A model fitted on [`Prepared`] data, scored on the validation part (when there is one).
#[derive(Debug, Clone)]
pub struct Fitted {
    pub model: KilnModel,
    /// `valid_*` metrics; empty without a validation part.
    pub valid_metrics: Vec<(String, f64)>,
    pub fit_seconds: f64,
}

/// Fit `kind` with `params` and `seed` on the training part; the validation part feeds early
/// stopping and the `valid_*` metrics. The test part is not touched.
pub fn fit_prepared(
    prep: &Prepared,
    kind: ModelKind,
    params: &[(String, String)],
    seed: u64,
) -> Result<Fitted, TrainError> {
    let (train_ds, train_y) = &prep.train;
    let started = Instant::now();
    let learner = fit(
        kind,
        prep.objective,
        params,
        seed,
        train_ds,
        train_y,
        prep.valid.as_ref().map(|(d, y)| (d, y.as_slice())),
    )?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let model = KilnModel::new(
        prep.signature.clone(),
        TrainingInfo {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            data_hash: prep.data_hash.clone(),
            train_rows: train_ds.n_rows(),
            seed,
            split: prep.split.clone(),
            params: params.to_vec(),
        },
        learner,
    );
    let valid_metrics = match &prep.valid {
        Some((d, y)) => score(
            prep.task,
            &model.signature.target.classes,
            &model.predict(d)?,
            y,
            "valid_",
        )?,
        None => Vec::new(),
    };
    Ok(Fitted {
        model,
        valid_metrics,
        fit_seconds,
    })
}

/// Predictions of a model on one held-out part, with its labels (what the plots draw).
#[derive(Debug, Clone)]
pub struct HeldOut {
    /// `test` or `valid`.
    pub part: &'static str,
    pub predictions: Predictions,
    pub labels: Vec<f64>,
}

/// A model's scores on the test part.
#[derive(Debug, Clone, Default)]
pub struct TestScores {
    /// `test_*` metrics (empty without a test part).
    pub metrics: Vec<(String, f64)>,
    /// The predictions, for plots (none without a test part).
    pub held_out: Option<HeldOut>,
}

/// Score `model` on the test part.
pub fn score_test(prep: &Prepared, model: &KilnModel) -> Result<TestScores, TrainError> {
    let Some((d, y)) = &prep.test else {
        return Ok(TestScores::default());
    };
    let predictions = model.predict(d)?;
    let metrics = score(
        prep.task,
        &model.signature.target.classes,
        &predictions,
        y,
        "test_",
    )?;
    Ok(TestScores {
        metrics,
        held_out: Some(HeldOut {
            part: "test",
            predictions,
            labels: y.clone(),
        }),
    })
}

/// Train per `req`.
pub fn train(req: &TrainRequest) -> Result<TrainOutcome, TrainError> {
    let prep = prepare(req)?;
    let Fitted {
        model,
        valid_metrics,
        fit_seconds,
    } = fit_prepared(&prep, req.model, &req.params, req.seed)?;
    let mut metrics = valid_metrics;
    let TestScores {
        metrics: test_metrics,
        mut held_out,
    } = score_test(&prep, &model)?;
    metrics.extend(test_metrics);
    if held_out.is_none() {
        if let Some((d, y)) = &prep.valid {
            held_out = Some(HeldOut {
                part: "valid",
                predictions: model.predict(d)?,
                labels: y.clone(),
            });
        }
    }
    Ok(TrainOutcome {
        rows: prep.rows(),
        model,
        metrics,
        skipped: prep.skipped,
        fit_seconds,
        data_hash: prep.data_hash,
        held_out,
    })
}
