//! Hyper-parameter search for `kiln tune`: grid or random [`Search`] over learner parameters,
//! trials fitted in parallel on one [`Prepared`] split and compared on the validation part; the
//! best trial's model is kept and scored on the test part.
//!
//! - [`parse_grid`] reads `num_leaves=15,31,63`; [`parse_random`] reads
//!   `learning_rate=loguniform(0.01,0.3)` into a [`Distribution`] (`uniform(a,b)`,
//!   `loguniform(a,b)`, `int(a,b)`, `choice(x,y,…)`).
//! - [`Search::trials`] lists every trial's parameters: the grid's cartesian product (first
//!   `--grid` outermost), or `n` random draws where trial `i` draws from its own stream seeded
//!   by `(seed, i)`, so trial `i` is the same whatever `--trials` and `--parallel` are.
//! - [`plan`] checks a [`TuneRequest`] before any data is read: the specs, the metric, and every
//!   trial's parameters against the learner, so mistakes are refused up front.
//! - [`tune`] fits the trials on a rayon pool of `parallel` threads, optionally recording each
//!   as a child run of a parent run ([`ChildRuns`], tag `mlflow.parentRunId`, as MLflow nests
//!   runs), reports each finished [`TrialResult`] through a callback and returns a
//!   [`TuneOutcome`]. Every trial fits with the same learner seed, so trials differ only by
//!   their parameters and the best one is reproduced by `kiln train` with the same seed and
//!   parameters. Ties go to the lowest trial index: the result never depends on `parallel`.
//!
//! ```
//! use kiln_train::tune::{parse_grid, parse_random, Search};
//! let search = Search::Grid(vec![
//!     parse_grid("num_leaves=15,31").unwrap(),
//!     parse_grid("learning_rate=0.05,0.1").unwrap(),
//! ]);
//! assert_eq!(search.trials(42).len(), 4);
//! let random = Search::Random {
//!     space: vec![parse_random("learning_rate=loguniform(0.01,0.3)").unwrap()],
//!     trials: 5,
//! };
//! assert_eq!(random.trials(7), random.trials(7));
//! assert!(parse_random("lr=loguniform(0,1)").is_err());
//! ```

use std::sync::Mutex;
use std::time::Instant;

use kiln_store::NewRun;
use kiln_types::{RunStatus, Tag};
use rayon::prelude::*;
use serde::Serialize;

use crate::artifact::KilnModel;
use crate::frame::Task;
use crate::tracking::{RunHandle, Tracker};
use crate::train::{check_params, fit_prepared, score_test, Fitted, HeldOut, ModelKind, Prepared};
use crate::TrainError;

/// Largest number of trials a search may list.
pub const MAX_TRIALS: usize = 10_000;

/// A random-search distribution for one parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Distribution {
    /// Uniform on `[low, high)`.
    Uniform { low: f64, high: f64 },
    /// Log-uniform on `[low, high)`, `0 < low < high`.
    LogUniform { low: f64, high: f64 },
    /// A uniform integer in `low..=high`.
    Int { low: i64, high: i64 },
    /// One of the values, equally likely.
    Choice { values: Vec<String> },
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uniform { low, high } => write!(f, "uniform({low},{high})"),
            Self::LogUniform { low, high } => write!(f, "loguniform({low},{high})"),
            Self::Int { low, high } => write!(f, "int({low},{high})"),
            Self::Choice { values } => write!(f, "choice({})", values.join(",")),
        }
    }
}

/// What to search.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Search {
    /// Every combination of the listed values.
    Grid(Vec<(String, Vec<String>)>),
    /// `trials` independent draws from the distributions.
    Random {
        space: Vec<(String, Distribution)>,
        trials: usize,
    },
}

fn spec_error(flag: &str, spec: &str, why: &str, example: &str) -> TrainError {
    TrainError::Input(format!(
        "Invalid {flag} `{spec}`: {why}; expected {example}"
    ))
}

const GRID_EXAMPLE: &str = "name=value,value,… e.g. num_leaves=15,31,63";
const RANDOM_EXAMPLE: &str = "name=uniform(a,b), loguniform(a,b), int(a,b) or choice(x,y,…), e.g. learning_rate=loguniform(0.01,0.3)";

fn split_name<'a>(
    flag: &str,
    spec: &'a str,
    example: &str,
) -> Result<(&'a str, &'a str), TrainError> {
    let Some((name, rest)) = spec.split_once('=') else {
        return Err(spec_error(flag, spec, "no `=`", example));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(spec_error(
            flag,
            spec,
            "the parameter name is empty",
            example,
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
    {
        return Err(spec_error(
            flag,
            spec,
            &format!("`{name}` is not a parameter name"),
            example,
        ));
    }
    Ok((name, rest.trim()))
}

fn split_values<'a>(
    flag: &str,
    spec: &str,
    list: &'a str,
    example: &str,
) -> Result<Vec<&'a str>, TrainError> {
    let values: Vec<&str> = list.split(',').map(str::trim).collect();
    if values.iter().any(|v| v.is_empty()) {
        return Err(spec_error(
            flag,
            spec,
            "an empty value in the list",
            example,
        ));
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(spec_error(
                flag,
                spec,
                &format!("`{v}` is listed twice"),
                example,
            ));
        }
    }
    Ok(values)
}

/// Parse a `--grid` spec: `name=v1,v2,…`.
pub fn parse_grid(spec: &str) -> Result<(String, Vec<String>), TrainError> {
    let (name, list) = split_name("--grid", spec, GRID_EXAMPLE)?;
    if list.is_empty() {
        return Err(spec_error("--grid", spec, "no values", GRID_EXAMPLE));
    }
    if list.contains('(') {
        return Err(spec_error(
            "--grid",
            spec,
            "a distribution belongs in --random",
            GRID_EXAMPLE,
        ));
    }
    let values = split_values("--grid", spec, list, GRID_EXAMPLE)?;
    Ok((
        name.to_string(),
        values.into_iter().map(str::to_string).collect(),
    ))
}

/// Parse a `--random` spec: `name=uniform(a,b)`, `loguniform(a,b)`, `int(a,b)` or
/// `choice(x,y,…)`.
pub fn parse_random(spec: &str) -> Result<(String, Distribution), TrainError> {
    let bad = |why: &str| spec_error("--random", spec, why, RANDOM_EXAMPLE);
    let (name, body) = split_name("--random", spec, RANDOM_EXAMPLE)?;
    let Some((func, args)) = body.split_once('(') else {
        return Err(bad("no distribution"));
    };
    let Some(args) = args.trim_end().strip_suffix(')') else {
        return Err(bad("missing `)`"));
    };
    let func = func.trim().to_ascii_lowercase();
    let args = split_values("--random", spec, args, RANDOM_EXAMPLE)?;
    let floats = |args: &[&str]| -> Result<(f64, f64), TrainError> {
        let [a, b] = args else {
            return Err(bad(&format!("{func} takes two bounds, got {}", args.len())));
        };
        let parse = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(&format!("`{s}` is not a finite number")))
        };
        let (low, high) = (parse(a)?, parse(b)?);
        if low >= high {
            return Err(bad(&format!(
                "the lower bound {low} must be below the upper bound {high}"
            )));
        }
        Ok((low, high))
    };
    let dist = match func.as_str() {
        "uniform" => {
            let (low, high) = floats(&args)?;
            Distribution::Uniform { low, high }
        }
        "loguniform" | "log_uniform" => {
            let (low, high) = floats(&args)?;
            if low <= 0.0 {
                return Err(bad("loguniform bounds must be positive"));
            }
            Distribution::LogUniform { low, high }
        }
        "int" | "randint" => {
            let [a, b] = args.as_slice() else {
                return Err(bad(&format!("int takes two bounds, got {}", args.len())));
            };
            let parse = |s: &str| {
                s.parse::<i64>()
                    .map_err(|_| bad(&format!("`{s}` is not an integer")))
            };
            let (low, high) = (parse(a)?, parse(b)?);
            if low > high {
                return Err(bad(&format!(
                    "the lower bound {low} must not exceed the upper bound {high}"
                )));
            }
            Distribution::Int { low, high }
        }
        "choice" => Distribution::Choice {
            values: args.iter().map(|s| (*s).to_string()).collect(),
        },
        other => {
            return Err(bad(&format!("unknown distribution `{other}`")));
        }
    };
    Ok((name.to_string(), dist))
}

/// SplitMix64 (the generator the row split uses): deterministic on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Self(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on `[0, 1)`.
    fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        u
    }

    fn below(&mut self, n: u64) -> u64 {
        #[allow(clippy::cast_possible_truncation)]
        let r = ((u128::from(self.next()) * u128::from(n)) >> 64) as u64;
        r
    }
}

/// Six significant digits, written as short as Rust prints the rounded value.
fn format_float(v: f64) -> String {
    let rounded: f64 = format!("{v:.5e}").parse().unwrap_or(v);
    format!("{rounded}")
}

impl Distribution {
    fn sample(&self, rng: &mut Rng) -> String {
        match self {
            Self::Uniform { low, high } => format_float(low + rng.unit() * (high - low)),
            Self::LogUniform { low, high } => {
                format_float((low.ln() + rng.unit() * (high.ln() - low.ln())).exp())
            }
            Self::Int { low, high } => {
                let span = high.abs_diff(*low).saturating_add(1);
                let offset = if span == 0 {
                    rng.next()
                } else {
                    rng.below(span)
                };
                low.wrapping_add_unsigned(offset).to_string()
            }
            Self::Choice { values } => {
                let i = usize::try_from(rng.below(values.len() as u64)).unwrap_or(0);
                values.get(i).cloned().unwrap_or_default()
            }
        }
    }
}

impl Search {
    /// `grid` or `random`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Grid(_) => "grid",
            Self::Random { .. } => "random",
        }
    }

    /// The parameter names searched, in spec order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::Grid(g) => g.iter().map(|(n, _)| n.as_str()).collect(),
            Self::Random { space, .. } => space.iter().map(|(n, _)| n.as_str()).collect(),
        }
    }

    /// The specs as given, e.g. `num_leaves=15,31; learning_rate=0.05,0.1`.
    pub fn describe(&self) -> String {
        match self {
            Self::Grid(g) => g
                .iter()
                .map(|(n, v)| format!("{n}={}", v.join(",")))
                .collect::<Vec<_>>()
                .join("; "),
            Self::Random { space, .. } => space
                .iter()
                .map(|(n, d)| format!("{n}={d}"))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// How many trials [`Search::trials`] lists (saturating).
    pub fn len(&self) -> usize {
        match self {
            Self::Grid(g) => g
                .iter()
                .fold(1usize, |acc, (_, v)| acc.saturating_mul(v.len())),
            Self::Random { trials, .. } => *trials,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Check names are unique and the search has between 1 and [`MAX_TRIALS`] trials.
    pub fn validate(&self) -> Result<(), TrainError> {
        let names = self.names();
        if names.is_empty() {
            return Err(TrainError::Input(
                "Nothing to search: give --grid name=v1,v2,… or --random name=dist(…)".into(),
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(TrainError::Input(format!(
                    "Parameter `{n}` is searched twice; give it one --{} spec",
                    self.kind()
                )));
            }
        }
        let n = self.len();
        if n == 0 {
            return Err(TrainError::Input("--trials must be at least 1".into()));
        }
        if n > MAX_TRIALS {
            return Err(TrainError::Input(format!(
                "The search has {n} trials; at most {MAX_TRIALS} are allowed (use --random with --trials for large spaces)"
            )));
        }
        Ok(())
    }

    /// Every trial's searched parameters, in trial order.
    pub fn trials(&self, seed: u64) -> Vec<Vec<(String, String)>> {
        match self {
            Self::Grid(grid) => {
                let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
                for (name, values) in grid {
                    out = out
                        .into_iter()
                        .flat_map(|prefix| {
                            values.iter().map(move |v| {
                                let mut p = prefix.clone();
                                p.push((name.clone(), v.clone()));
                                p
                            })
                        })
                        .collect();
                    if out.len() > MAX_TRIALS {
                        out.truncate(MAX_TRIALS);
                    }
                }
                out
            }
            Self::Random { space, trials } => (0..*trials)
                .map(|i| {
                    let mut rng = Rng::new(seed, i as u64);
                    space
                        .iter()
                        .map(|(name, dist)| (name.clone(), dist.sample(&mut rng)))
                        .collect()
                })
                .collect(),
        }
    }
}

/// Whether a larger metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Max,
    Min,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "max" | "maximize" => Some(Self::Max),
            "min" | "minimize" => Some(Self::Min),
            _ => None,
        }
    }

    /// Lower is better for errors and losses, higher for everything else.
    pub fn for_metric(metric: &str) -> Self {
        match metric {
            "rmse" | "mse" | "mae" | "mape" | "max_error" | "log_loss" | "brier" | "ece" => {
                Self::Min
            }
            _ => Self::Max,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Max => "max",
            Self::Min => "min",
        }
    }

    /// Whether `a` beats `b`.
    fn better(self, a: f64, b: f64) -> bool {
        match self {
            Self::Max => a > b,
            Self::Min => a < b,
        }
    }
}

const REGRESSION_METRICS: &[&str] = &[
    "rmse",
    "mse",
    "mae",
    "r2",
    "explained_variance",
    "mape",
    "max_error",
];

/// The default metric of a task: `roc_auc` for classification, `rmse` for regression.
pub fn default_metric(task: Task) -> &'static str {
    match task {
        Task::Classification => "roc_auc",
        Task::Regression => "rmse",
    }
}

/// Check that `metric` is an evaluation metric of `task`.
pub fn check_metric(task: Task, metric: &str) -> Result<(), TrainError> {
    let known = kiln_ml::evaluate::METRIC_NAMES.contains(&metric);
    let regression = REGRESSION_METRICS.contains(&metric);
    let names: Vec<&str> = kiln_ml::evaluate::METRIC_NAMES
        .iter()
        .copied()
        .filter(|m| REGRESSION_METRICS.contains(m) == (task == Task::Regression))
        .collect();
    if !known || regression != (task == Task::Regression) {
        return Err(TrainError::Input(format!(
            "Invalid --metric `{metric}`: expected one of the {} metrics: {}",
            match task {
                Task::Classification => "classification",
                Task::Regression => "regression",
            },
            names.join(", ")
        )));
    }
    Ok(())
}

/// What to tune. The data, split and seed are in the [`Prepared`] given to [`tune`].
#[derive(Debug, Clone)]
pub struct TuneRequest {
    pub model: ModelKind,
    /// Parameters every trial shares (`--param`).
    pub fixed: Vec<(String, String)>,
    pub search: Search,
    /// Metric name without prefix (`roc_auc`); trials compare on `valid_<metric>`.
    pub metric: String,
    pub direction: Direction,
    /// Learner seed of every trial; also seeds the random draws.
    pub seed: u64,
    /// Trials fitted at once (≥ 1).
    pub parallel: usize,
}

/// One finished trial.
#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    /// 0-based trial number.
    pub index: usize,
    /// The searched parameters of this trial.
    pub params: Vec<(String, String)>,
    /// `valid_<metric>`; `None` when the trial failed or the metric is undefined on the data.
    pub score: Option<f64>,
    /// Every `valid_*` metric.
    pub metrics: Vec<(String, f64)>,
    pub fit_seconds: f64,
    /// Why the trial failed.
    pub error: Option<String>,
    /// The child run, when tracking.
    pub run_id: Option<String>,
}

/// The search's result.
#[derive(Debug, Clone)]
pub struct TuneOutcome {
    /// Every trial, in trial order.
    pub trials: Vec<TrialResult>,
    /// Index of the best trial in `trials`.
    pub best: usize,
    /// The best trial's model.
    pub model: KilnModel,
    /// All parameters of the best model (fixed, then searched), as `kiln train --param` takes them.
    pub best_params: Vec<(String, String)>,
    /// The best trial's `valid_*` metrics followed by its `test_*` metrics.
    pub metrics: Vec<(String, f64)>,
    /// The best model's test predictions, for plots.
    pub held_out: Option<HeldOut>,
}

/// Where trials are recorded: child runs of `parent`.
pub struct ChildRuns<'a> {
    pub tracker: &'a Tracker,
    pub parent: &'a RunHandle,
    /// Tags every child gets besides `mlflow.parentRunId` (source, user, git).
    pub tags: Vec<Tag>,
}

impl ChildRuns<'_> {
    fn start(&self, index: usize) -> Result<RunHandle, TrainError> {
        let mut tags = self.tags.clone();
        tags.push(Tag::new("mlflow.parentRunId", &self.parent.run_id));
        tags.push(Tag::new("kiln.tune.trial", index.to_string()));
        let run = crate::tracking::create_run_gated(
            self.tracker.store.as_ref(),
            &NewRun {
                experiment_id: self.parent.experiment_id.clone(),
                user_id: crate::tracking::current_user().unwrap_or_default(),
                run_name: Some(format!("trial-{index}")),
                start_time: kiln_types::now_ms(),
                tags,
            },
            false,
        )?;
        Ok(RunHandle {
            run_id: run.info.run_id,
            experiment_id: self.parent.experiment_id.clone(),
            artifact_uri: run.info.artifact_uri,
        })
    }
}

fn all_params(fixed: &[(String, String)], searched: &[(String, String)]) -> Vec<(String, String)> {
    fixed.iter().chain(searched).cloned().collect()
}

/// Check the request without touching data and list every trial's searched parameters: the
/// search is valid, no parameter is both fixed and searched, the metric fits the task, and
/// every trial's parameters are accepted by the learner (so a bad value is refused before any
/// fitting, naming the trial).
pub fn plan(req: &TuneRequest, task: Task) -> Result<Vec<Vec<(String, String)>>, TrainError> {
    req.search.validate()?;
    check_metric(task, &req.metric)?;
    for (name, _) in &req.fixed {
        if req.search.names().contains(&name.as_str()) {
            return Err(TrainError::Input(format!(
                "Parameter `{name}` is given by --param and searched by --{}; keep one",
                req.search.kind()
            )));
        }
    }
    let trials = req.search.trials(req.seed);
    for (i, searched) in trials.iter().enumerate() {
        check_params(req.model, task, &all_params(&req.fixed, searched)).map_err(|e| {
            TrainError::Input(format!(
                "Trial {i} ({}): {e}",
                searched
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    }
    Ok(trials)
}

/// Run the search on `prep`. Each finished trial is passed to `progress` (from worker threads,
/// in completion order). Fails when the trials' parameters are invalid (before fitting any), when
/// recording a run fails, or when no trial produced a score.
pub fn tune(
    prep: &Prepared,
    req: &TuneRequest,
    runs: Option<&ChildRuns<'_>>,
    progress: &(dyn Fn(&TrialResult) + Sync),
) -> Result<TuneOutcome, TrainError> {
    if prep.valid.is_none() {
        return Err(TrainError::Input(
            "kiln tune compares trials on the validation part, and this split has none: use a three-part --split such as 0.7/0.15/0.15".into(),
        ));
    }
    let trials = plan(req, prep.task)?;
    let metric_key = format!("valid_{}", req.metric);
    // Best so far: (score, index, fitted). Comparing by score, then the lower index, makes the
    // winner independent of the completion order.
    let best: Mutex<Option<(f64, usize, Fitted)>> = Mutex::new(None);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(req.parallel.max(1))
        .build()
        .map_err(|e| TrainError::Input(format!("Failed to start {} threads: {e}", req.parallel)))?;
    let run_one =
        |index: usize, searched: &Vec<(String, String)>| -> Result<TrialResult, TrainError> {
            let child = match runs {
                Some(r) => Some(r.start(index)?),
                None => None,
            };
            let params = all_params(&req.fixed, searched);
            let started = Instant::now();
            let fitted = fit_prepared(prep, req.model, &params, req.seed);
            let mut result = TrialResult {
                index,
                params: searched.clone(),
                score: None,
                metrics: Vec::new(),
                fit_seconds: started.elapsed().as_secs_f64(),
                error: None,
                run_id: child.as_ref().map(|c| c.run_id.clone()),
            };
            match fitted {
                Ok(f) => {
                    result.fit_seconds = f.fit_seconds;
                    result.metrics.clone_from(&f.valid_metrics);
                    result.score = f
                        .valid_metrics
                        .iter()
                        .find(|(k, _)| *k == metric_key)
                        .map(|(_, v)| *v)
                        .filter(|v| v.is_finite());
                    if let Some(score) = result.score {
                        let mut guard = best
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let replace = match guard.as_ref() {
                            None => true,
                            Some((s, i, _)) => {
                                req.direction.better(score, *s) || (score == *s && index < *i)
                            }
                        };
                        if replace {
                            *guard = Some((score, index, f));
                        }
                    }
                }
                Err(e) => result.error = Some(e.to_string()),
            }
            if let (Some(r), Some(c)) = (runs, &child) {
                let mut logged = vec![
                    ("model".to_string(), req.model_name().to_string()),
                    ("seed".to_string(), req.seed.to_string()),
                    ("trial".to_string(), index.to_string()),
                ];
                logged.extend(params.iter().cloned());
                let mut metrics = result.metrics.clone();
                metrics.push(("fit_seconds".into(), result.fit_seconds));
                let tags: Vec<Tag> = result
                    .error
                    .iter()
                    .map(|e| Tag::new("kiln.error", e))
                    .collect();
                r.tracker.log(c, &logged, &metrics, &tags)?;
                r.tracker.finish(
                    c,
                    if result.error.is_some() {
                        RunStatus::Failed
                    } else {
                        RunStatus::Finished
                    },
                )?;
            }
            progress(&result);
            Ok(result)
        };
    let results: Vec<TrialResult> = pool.install(|| {
        trials
            .par_iter()
            .enumerate()
            .with_max_len(1)
            .map(|(i, p)| run_one(i, p))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let Some((_, best_index, fitted)) = best
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    else {
        let first_error = results.iter().find_map(|r| r.error.clone());
        return Err(TrainError::Input(match first_error {
            Some(e) => format!("Every trial failed; the first error: {e}"),
            None => format!(
                "No trial has a `{metric_key}`: the metric is undefined on the validation part (e.g. a single class)"
            ),
        }));
    };
    let test = score_test(prep, &fitted.model)?;
    let mut metrics = fitted.valid_metrics;
    metrics.extend(test.metrics);
    Ok(TuneOutcome {
        best_params: all_params(&req.fixed, &results[best_index].params),
        trials: results,
        best: best_index,
        model: fitted.model,
        metrics,
        held_out: test.held_out,
    })
}

impl TuneRequest {
    fn model_name(&self) -> &'static str {
        match self.model {
            ModelKind::Gbdt => "gbdt",
            ModelKind::RandomForest => "random_forest",
            ModelKind::Logistic => "logistic",
            ModelKind::Linear => "linear",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_the_cartesian_product_in_order() {
        let s = Search::Grid(vec![
            parse_grid("a=1,2").unwrap(),
            parse_grid("b = x, y ,z").unwrap(),
        ]);
        s.validate().unwrap();
        let t = s.trials(0);
        assert_eq!(t.len(), 6);
        assert_eq!(
            t[0],
            vec![("a".into(), "1".into()), ("b".into(), "x".into())]
        );
        assert_eq!(
            t[1],
            vec![("a".into(), "1".into()), ("b".into(), "y".into())]
        );
        assert_eq!(
            t[5],
            vec![("a".into(), "2".into()), ("b".into(), "z".into())]
        );
        assert_eq!(s.describe(), "a=1,2; b=x,y,z");
    }

    #[test]
    fn random_draws_are_deterministic_in_range_and_prefix_stable() {
        let space = vec![
            parse_random("lr=loguniform(0.01, 0.3)").unwrap(),
            parse_random("leaves=int(8,128)").unwrap(),
            parse_random("frac=uniform(0.5,1)").unwrap(),
            parse_random("cw=choice(balanced,none)").unwrap(),
        ];
        let s20 = Search::Random {
            space: space.clone(),
            trials: 20,
        };
        let s5 = Search::Random { space, trials: 5 };
        let a = s20.trials(42);
        assert_eq!(a, s20.trials(42));
        assert_eq!(&a[..5], s5.trials(42).as_slice());
        assert_ne!(a, s20.trials(43));
        for t in &a {
            let lr: f64 = t[0].1.parse().unwrap();
            assert!((0.01..0.3).contains(&lr), "{lr}");
            let leaves: i64 = t[1].1.parse().unwrap();
            assert!((8..=128).contains(&leaves));
            let frac: f64 = t[2].1.parse().unwrap();
            assert!((0.5..1.0).contains(&frac));
            assert!(["balanced", "none"].contains(&t[3].1.as_str()));
            assert!(t[0].1.len() <= 12, "{}", t[0].1);
        }
        let distinct: std::collections::BTreeSet<&String> = a.iter().map(|t| &t[1].1).collect();
        assert!(distinct.len() > 5);
    }

    #[test]
    fn malformed_specs_name_the_spec_and_the_expectation() {
        for (spec, needle) in [
            ("num_leaves", "no `=`"),
            ("=1,2", "name is empty"),
            ("a=", "no values"),
            ("a=1,,2", "empty value"),
            ("a=1,1", "listed twice"),
            ("a=loguniform(1,2)", "--random"),
        ] {
            let e = parse_grid(spec).unwrap_err().to_string();
            assert!(
                e.contains(spec) && e.contains(needle) && e.contains("expected"),
                "{e}"
            );
        }
        for (spec, needle) in [
            ("lr=0.1", "no distribution"),
            ("lr=loguniform(0.1,0.3", "missing `)`"),
            ("lr=loguniform(0,0.3)", "positive"),
            ("lr=uniform(1)", "two bounds"),
            ("lr=uniform(2,1)", "below"),
            ("lr=uniform(a,1)", "not a finite number"),
            ("n=int(1.5,3)", "not an integer"),
            ("n=gauss(0,1)", "unknown distribution `gauss`"),
        ] {
            let e = parse_random(spec).unwrap_err().to_string();
            assert!(
                e.contains(spec) && e.contains(needle) && e.contains("expected"),
                "{e}"
            );
        }
        let dup = Search::Grid(vec![parse_grid("a=1").unwrap(), parse_grid("a=2").unwrap()]);
        assert!(dup.validate().unwrap_err().to_string().contains("twice"));
        let none = Search::Random {
            space: vec![parse_random("a=int(1,2)").unwrap()],
            trials: 0,
        };
        assert!(none.validate().is_err());
    }

    #[test]
    fn metric_direction_and_task() {
        assert_eq!(Direction::for_metric("rmse"), Direction::Min);
        assert_eq!(Direction::for_metric("roc_auc"), Direction::Max);
        assert!(check_metric(Task::Classification, "roc_auc").is_ok());
        assert!(check_metric(Task::Regression, "roc_auc").is_err());
        let e = check_metric(Task::Classification, "auc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("roc_auc") && !e.contains("rmse"), "{e}");
    }
}
