//! Command-line definitions (clap). Parsing only; commands live in `commands/`.

use clap::{Args, Parser, Subcommand};

/// Environment variables kiln reads.
pub(crate) struct EnvVars;

impl EnvVars {
    pub(crate) const TRACKING_URI: &'static str = "KILN_TRACKING_URI";
    pub(crate) const BACKEND_STORE_URI: &'static str = "KILN_BACKEND_STORE_URI";
    pub(crate) const ARTIFACTS_DESTINATION: &'static str = "KILN_ARTIFACTS_DESTINATION";
}

/// kiln: CI/CD for machine learning in one binary.
///
/// Exit codes: 0 success, 1 a check or gate failed, 2 usage or input error, 3 internal error.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the tracking server (MLflow REST API, artifact proxy, model registry).
    ///
    /// Point any MLflow client at it: `MLFLOW_TRACKING_URI=http://127.0.0.1:5000`.
    Server(ServerArgs),
    /// Database schema management.
    #[command(subcommand)]
    Db(DbCommand),
    /// Permanently delete soft-deleted runs and experiments, with their artifacts and logged models.
    Gc(GcArgs),
    /// List and create experiments.
    #[command(subcommand)]
    Experiments(ExperimentsCommand),
    /// List, show and compare runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Profile a dataset into a schema file, and validate data against it.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train a built-in model (gbdt, random_forest, logistic, linear) on a table, as a tracked run.
    ///
    /// Example: kiln train --data churn.csv --target churned --task classification --model gbdt
    ///          --param num_leaves=63 --split 0.8/0.2 --stratify --output model/ --register churn
    Train(Box<TrainArgs>),
    /// Evaluate a model on labelled data; gates (`--require "roc_auc>=0.85"`) fail the command.
    Evaluate(Box<EvaluateArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// Training data: CSV or Parquet.
    #[arg(long, value_name = "FILE")]
    pub(crate) data: String,
    /// Label column.
    #[arg(long, value_name = "COLUMN")]
    pub(crate) target: String,
    /// `classification` (binary or multiclass) or `regression`.
    #[arg(long, value_parser = ["classification", "regression"])]
    pub(crate) task: String,
    /// `gbdt` (gradient-boosted trees), `random_forest`, `logistic`, `linear` (ridge).
    #[arg(long, default_value = "gbdt", value_parser = ["gbdt", "random_forest", "logistic", "linear"])]
    pub(crate) model: String,
    /// Learner parameter `key=value` (repeatable), e.g. `n_trees=200`, `learning_rate=0.05`,
    /// `num_leaves=63`, `early_stopping_rounds=20`, `class_weight=balanced`, `c=0.5`, `alpha=2`.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub(crate) params: Vec<String>,
    /// Fractions train/test or train/validation/test (validation feeds early stopping).
    #[arg(long, default_value = "0.8/0.2")]
    pub(crate) split: String,
    /// Score on this file instead of a split of --data (then --split only sets validation).
    #[arg(long, value_name = "FILE")]
    pub(crate) test_data: Option<String>,
    /// Seed for the split and the learner.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Keep class proportions in every split part (classification).
    #[arg(long)]
    pub(crate) stratify: bool,
    /// Column to leave out of the features (repeatable), e.g. an id.
    #[arg(long, value_name = "COLUMN")]
    pub(crate) exclude: Vec<String>,
    /// Also write the model here (a directory, or a `.json` file).
    #[arg(long, value_name = "PATH")]
    pub(crate) output: Option<String>,
    /// Experiment to record the run in.
    #[arg(long, default_value = "Default")]
    pub(crate) experiment: String,
    /// Run name (default: generated).
    #[arg(long)]
    pub(crate) run_name: Option<String>,
    /// Register the model as a new version of this registered model.
    #[arg(long, value_name = "NAME")]
    pub(crate) register: Option<String>,
    /// Do not record a run (needs --output).
    #[arg(long)]
    pub(crate) no_track: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) read: DataReadArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EvaluateArgs {
    /// A model file or directory, `models:/<name>@<alias>`, `models:/<name>/<version>` or `runs:/<run_id>/model`.
    #[arg(long, value_name = "MODEL")]
    pub(crate) model: String,
    /// Labelled data: CSV or Parquet with the model's target column.
    #[arg(long, value_name = "FILE")]
    pub(crate) data: String,
    /// Gate `metric<op>threshold` (repeatable), e.g. `roc_auc>=0.85`, `rmse<=3.5`.
    #[arg(long = "require", value_name = "GATE")]
    pub(crate) require: Vec<String>,
    /// Write JUnit XML (one test case per gate) here.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<String>,
    /// Write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<String>,
    /// Experiment to record the evaluation run in.
    #[arg(long, default_value = "Default")]
    pub(crate) experiment: String,
    /// Do not record a run.
    #[arg(long)]
    pub(crate) no_track: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) read: DataReadArgs,
}

/// Where metadata and artifacts live.
#[derive(Debug, Clone, Args)]
pub(crate) struct StoreArgs {
    /// Metadata store: `sqlite:///abs/path/kiln.db` or `postgresql://user[:pass]@host:port/db`.
    /// Default: `.kiln/kiln.db` under the current directory.
    #[arg(long, env = EnvVars::BACKEND_STORE_URI, value_name = "URI")]
    pub(crate) backend_store_uri: Option<String>,
    /// Artifact store: a directory, `file:///dir` or `s3://bucket/prefix` (credentials and endpoint from the
    /// usual AWS_* variables). Default: `.kiln/artifacts` under the current directory.
    #[arg(long, env = EnvVars::ARTIFACTS_DESTINATION, value_name = "URI")]
    pub(crate) artifacts_destination: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, short, default_value_t = 5000)]
    pub(crate) port: u16,
    /// Apply pending PostgreSQL migrations before serving (SQLite upgrades itself).
    #[arg(long)]
    pub(crate) migrate: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub(crate) workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Apply pending schema migrations (under an advisory lock, safe with running replicas).
    Upgrade {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show the applied and the latest schema version.
    Status {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Only collect what was deleted at least this long ago: `30d`, `12h`, `90m`, `2w`.
    #[arg(long, value_name = "AGE")]
    pub(crate) older_than: Option<String>,
    /// Show what would be removed without removing it.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which tracking backend a read command talks to.
#[derive(Debug, Clone, Args)]
pub(crate) struct TrackingArgs {
    /// `http(s)://server:port` (a kiln or MLflow server), `sqlite:///path/kiln.db` or `postgresql://…`.
    /// Default: the local `.kiln/kiln.db`.
    #[arg(long, env = EnvVars::TRACKING_URI, value_name = "URI", global = true)]
    pub(crate) tracking_uri: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExperimentsCommand {
    /// List experiments.
    List {
        #[command(flatten)]
        tracking: TrackingArgs,
        /// Include deleted experiments.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create an experiment and print its id.
    Create {
        /// Experiment name.
        name: String,
        #[command(flatten)]
        tracking: TrackingArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// List runs of an experiment, newest first (filter and order like MLflow's search_runs).
    List {
        #[command(flatten)]
        tracking: TrackingArgs,
        /// Experiment name or id (default: `Default`).
        #[arg(long, short)]
        experiment: Option<String>,
        /// Filter, e.g. `metrics.accuracy > 0.9 and params.model = 'gbdt'`.
        #[arg(long)]
        filter: Option<String>,
        /// Order, e.g. `metrics.accuracy DESC` (repeatable).
        #[arg(long)]
        order_by: Vec<String>,
        /// Most runs to show.
        #[arg(long, default_value_t = 50)]
        max_results: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one run: info, params, metrics, tags, inputs.
    Show {
        /// Run id.
        run_id: String,
        #[command(flatten)]
        tracking: TrackingArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare runs side by side: params and latest metrics.
    Compare {
        /// Two or more run ids.
        #[arg(required = true, num_args = 2..)]
        run_ids: Vec<String>,
        #[command(flatten)]
        tracking: TrackingArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DataCommand {
    /// Describe a CSV or Parquet file as a schema of expectations (YAML): column kinds,
    /// nullability, ranges, categories, keys and the allowed row count.
    ///
    /// Prints the schema to stdout, or writes it with `--output` and prints a summary.
    Profile(DataProfileArgs),
    /// Check a CSV or Parquet file against a schema file and report every violation.
    ///
    /// Exit codes: 0 every check passed, 1 a check failed, 2 usage or input error (unreadable or
    /// malformed data, invalid schema file), 3 internal error.
    Validate(DataValidateArgs),
}

/// How to read the data file.
#[derive(Debug, Clone, Args)]
pub(crate) struct DataReadArgs {
    /// File format; default: from the extension (.csv/.tsv/.txt, .parquet/.pq).
    #[arg(long, value_name = "FORMAT", value_parser = ["csv", "parquet"])]
    pub(crate) format: Option<String>,
    /// CSV field delimiter, one character (`\t` for tab). Default: `,`, or tab for .tsv.
    #[arg(long, value_name = "CHAR")]
    pub(crate) delimiter: Option<String>,
    /// CSV quote character.
    #[arg(long, value_name = "CHAR", default_value = "\"")]
    pub(crate) quote: String,
    /// The CSV file has no header line; columns are named column_1, column_2, ….
    #[arg(long)]
    pub(crate) no_header: bool,
    /// A CSV value that means null (repeatable). Replaces the defaults: empty, NA, N/A, n/a,
    /// NaN, nan, NULL, null, None, <NA>.
    #[arg(long = "null-value", value_name = "TEXT")]
    pub(crate) null_values: Vec<String>,
    /// Infer CSV column types from the first N rows only (faster on big files; a later value
    /// that does not fit is an error). Default (or 0): every row.
    #[arg(long, value_name = "N")]
    pub(crate) infer_rows: Option<usize>,
    /// A string column with at most this many distinct values (and repeats) is categorical.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub(crate) max_categories: usize,
}

#[derive(Debug, Args)]
pub(crate) struct DataProfileArgs {
    /// The data: a CSV or Parquet file path, or a `file://` URI.
    #[arg(value_name = "DATA")]
    pub(crate) file: String,
    /// Write the schema to this file (YAML, or JSON for a .json name) and print a summary.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<std::path::PathBuf>,
    /// Print JSON instead of YAML (with --output: the schema as JSON instead of the summary).
    #[arg(long)]
    pub(crate) json: bool,
    /// A key column, marked unique (repeatable). Default: guessed from the data.
    #[arg(long = "key", value_name = "COLUMN")]
    pub(crate) keys: Vec<String>,
    /// Allowed row counts as factors of the profiled count.
    #[arg(long, value_name = "LOW:HIGH", default_value = "0.5:2")]
    pub(crate) row_range: String,
    /// Added to each nullable column's observed null fraction to give its limit.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.05)]
    pub(crate) null_margin: f64,
    #[command(flatten)]
    pub(crate) read: DataReadArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DataValidateArgs {
    /// The data: a CSV or Parquet file path, or a `file://` URI.
    #[arg(value_name = "DATA")]
    pub(crate) file: String,
    /// The schema file written by `kiln data profile`.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) schema: std::path::PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the report as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) read: DataReadArgs,
}
