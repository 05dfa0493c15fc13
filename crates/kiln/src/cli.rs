//! Command-line definitions (clap). Parsing only; commands live in `commands/`.

use clap::{Args, Parser, Subcommand};

/// Environment variables kiln reads.
pub(crate) struct EnvVars;

impl EnvVars {
    pub(crate) const TRACKING_URI: &'static str = "KILN_TRACKING_URI";
    pub(crate) const BACKEND_STORE_URI: &'static str = "KILN_BACKEND_STORE_URI";
    pub(crate) const ARTIFACTS_DESTINATION: &'static str = "KILN_ARTIFACTS_DESTINATION";
    pub(crate) const BUSY_POLL: &'static str = "KILN_BUSY_POLL";
    pub(crate) const HEADER_TIMEOUT: &'static str = "KILN_HEADER_TIMEOUT";
}

/// The longest `--busy-poll`: a worker that spins delays timers due meanwhile by up to this.
const MAX_BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// `--busy-poll`: a duration (`100us`, `0.2ms`, `0`) of at most [`MAX_BUSY_POLL`].
fn parse_busy_poll(text: &str) -> Result<std::time::Duration, String> {
    let d = kiln_serve::parse_duration(text)?;
    if d > MAX_BUSY_POLL {
        return Err(format!(
            "--busy-poll `{text}` is too long: at most {MAX_BUSY_POLL:?} (timers wait while a worker spins)"
        ));
    }
    Ok(d)
}

/// A fraction from 0 to 1 (`--log-sample`), refused even where it would go unused.
fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("expected a fraction from 0 to 1, got `{text}`")),
    }
}

/// `--workers`: 1 to 1024 threads.
fn parse_workers(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!(
            "expected a number of threads from 1 to 1024, got `{text}`"
        )),
    }
}

/// A timeout (`--header-timeout`, `--body-timeout`): a duration of more than 0.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d = kiln_serve::parse_duration(text)?;
    if d.is_zero() {
        return Err("a timeout must be more than 0".into());
    }
    Ok(d)
}

/// kiln: CI/CD for machine learning in one binary.
///
/// Exit codes: 0 success, 1 a check or gate failed, 2 usage or input error, 3 internal error.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the tracking server (MLflow REST API, artifact proxy, model registry).
    ///
    /// Point any MLflow client at it: `MLFLOW_TRACKING_URI=http://127.0.0.1:5000`.
    ///
    /// On SQLite, single metrics and small metric batches are acknowledged by an append to a
    /// journal beside the database (`<db>-kiln-journal.0`, `.1`) and folded in within ~100 ms;
    /// they survive the server being killed. Stop it with Ctrl-C or SIGTERM to fold and exit.
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
    /// The model registry: list models and versions, show lineage, promote a version to an
    /// alias behind gates (`--require`, `--must-beat champion --on test.csv`), roll an alias
    /// back, and read its append-only history.
    ///
    /// Example: kiln models promote churn 2 --alias champion --must-beat champion --on test.csv
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Profile a dataset into a schema file, and validate data against it.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train a built-in model (gbdt, random_forest, logistic, linear) on a table, as a tracked run.
    ///
    /// Example: kiln train --data churn.csv --target churned --task classification --model gbdt
    ///          --param num_leaves=63 --split 0.8/0.2 --stratify --output model/ --register churn
    Train(Box<TrainArgs>),
    /// Evaluate a model on labelled data; gates (`--require "roc_auc>=0.85"`) fail the command.
    ///
    /// Example: kiln evaluate --model models:/churn@champion --data holdout.csv
    ///          --require "roc_auc>=0.85" --junit gates.xml
    ///
    /// Exit codes: 0 every gate passed, 1 a gate failed, 2 bad input.
    Evaluate(Box<EvaluateArgs>),
    /// Search learner parameters (grid or random), trials in parallel as child runs of one
    /// parent run; the best trial's model is scored on the test part, saved and registered.
    ///
    /// Example: kiln tune --data churn.csv --target churned --task classification --model gbdt
    ///          --grid "num_leaves=15,31,63" --grid "learning_rate=0.05,0.1" --metric roc_auc
    Tune(Box<TuneArgs>),
    /// Score a table with a model (kiln or ONNX): a `prediction` column, plus `proba_<class>`
    /// columns for a classifier, as CSV (stdout or --output) or JSON.
    ///
    /// Example: kiln predict --model models:/churn@champion --data new.csv --output preds.csv
    Predict(Box<PredictArgs>),
    /// Serve a model over HTTP: MLflow's scoring protocol (`POST /invocations`), the Open
    /// Inference Protocol v2, /health, Prometheus /metrics and /openapi.json. A
    /// `models:/<name>@<alias>` is watched and swapped without downtime when the alias moves.
    ///
    /// Example: kiln serve models:/churn@champion --port 8080
    Serve(Box<ServeArgs>),
    /// Generate deployment files for `kiln serve`: Kubernetes manifests (Deployment, Service,
    /// HorizontalPodAutoscaler). Pure generation: the registry is not contacted.
    ///
    /// Example: kiln deploy k8s churn --alias champion --image registry.example.com/kiln:0.1.0
    #[command(subcommand)]
    Deploy(DeployCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeployCommand {
    /// Kubernetes manifests serving `models:/<NAME>@<alias>` (or a fixed version) as stateless
    /// replicas that share one registry: a Deployment (probes, resources, non-root read-only
    /// container, Prometheus scrape annotations), a Service and an autoscaling/v2 HPA.
    ///
    /// Prints one multi-document YAML stream, or writes deployment.yaml, service.yaml and
    /// hpa.yaml (none with --replicas) into --output.
    #[command(disable_version_flag = true)]
    K8s(Box<DeployK8sArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct DeployK8sArgs {
    /// Registered model name.
    #[arg(value_name = "NAME")]
    pub(crate) model: String,
    /// Serve this alias; the replicas re-resolve it and swap models when it moves.
    #[arg(long, default_value = "champion", conflicts_with = "model_version")]
    pub(crate) alias: String,
    /// Serve this fixed version instead of an alias.
    #[arg(long = "version", id = "model_version", value_name = "N")]
    pub(crate) model_version: Option<u64>,
    /// Name of the Deployment, Service and HPA (default: `<NAME>-<alias>` or `<NAME>-v<N>`,
    /// made a valid DNS-1123 label).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Namespace of the resources (default: none, i.e. the one `kubectl apply` uses).
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Container image with kiln in its PATH (the repository's Dockerfile builds one).
    #[arg(long, default_value = "kiln:latest")]
    pub(crate) image: String,
    /// A fixed number of replicas, and no HPA.
    #[arg(long, value_name = "N", conflicts_with_all = ["min_replicas", "max_replicas", "target_cpu"])]
    pub(crate) replicas: Option<u32>,
    /// Fewest replicas the HPA keeps.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub(crate) min_replicas: u32,
    /// Most replicas the HPA starts.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) max_replicas: u32,
    /// The HPA's target average CPU use, in percent of --cpu-request.
    #[arg(long, value_name = "PERCENT", default_value_t = 70)]
    pub(crate) target_cpu: u32,
    /// Port `kiln serve` listens on in the container (the Service listens on 80).
    #[arg(long, default_value_t = 8080)]
    pub(crate) port: u16,
    /// Metadata store URI written into the manifest as plain text (no password: use
    /// --store-secret for that).
    #[arg(long, value_name = "URI", conflicts_with = "store_secret")]
    pub(crate) backend_store_uri: Option<String>,
    /// Secret holding the metadata store URI, `NAME[/KEY]` (default: `kiln-store/backend-store-uri`,
    /// unless --backend-store-uri or --volume-claim is given). Its key `artifacts-destination`
    /// gives the artifact store unless --artifacts-destination or --volume-claim is given.
    #[arg(long, value_name = "NAME[/KEY]")]
    pub(crate) store_secret: Option<String>,
    /// Artifact store URI, e.g. `s3://bucket/kiln` (default: from the store Secret).
    #[arg(long, value_name = "URI")]
    pub(crate) artifacts_destination: Option<String>,
    /// Secret whose keys become environment variables (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, …); optional, for S3 artifacts.
    #[arg(long, value_name = "NAME", default_value = "kiln-aws")]
    pub(crate) aws_secret: String,
    /// A PersistentVolumeClaim (ReadWriteMany for several nodes) mounted at /var/lib/kiln; the
    /// defaults become `sqlite:////var/lib/kiln/kiln.db` (unless --store-secret) and
    /// `/var/lib/kiln/artifacts`.
    #[arg(long, value_name = "CLAIM")]
    pub(crate) volume_claim: Option<String>,
    /// CPU request (the HPA's 100%).
    #[arg(long, default_value = "250m")]
    pub(crate) cpu_request: String,
    /// CPU limit (default: none, so replicas are not throttled).
    #[arg(long)]
    pub(crate) cpu_limit: Option<String>,
    /// Memory request.
    #[arg(long, default_value = "256Mi")]
    pub(crate) memory_request: String,
    /// Memory limit.
    #[arg(long, default_value = "512Mi")]
    pub(crate) memory_limit: String,
    /// How often the replicas re-resolve the alias (`kiln serve --poll-interval`; default 5s).
    #[arg(long, value_parser = kiln_serve::parse_duration)]
    pub(crate) poll_interval: Option<std::time::Duration>,
    /// `kiln serve --drain-timeout`; the pod's terminationGracePeriodSeconds covers it.
    #[arg(long, default_value = "30s", value_parser = kiln_serve::parse_duration)]
    pub(crate) drain_timeout: std::time::Duration,
    /// Write deployment.yaml, service.yaml and hpa.yaml (none with --replicas) into this
    /// directory instead of printing one YAML stream.
    #[arg(long, short, value_name = "DIR")]
    pub(crate) output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A model file or directory (kiln or ONNX), `models:/<name>@<alias>`,
    /// `models:/<name>/<version>`, `models:/m-<id>` (a logged model) or
    /// `runs:/<run_id>/<path>` (e.g. `runs:/<id>/model`).
    #[arg(value_name = "MODEL")]
    pub(crate) model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, short, default_value_t = 8080)]
    pub(crate) port: u16,
    #[command(flatten)]
    pub(crate) runtime: ServerRuntimeArgs,
    /// Largest request body accepted (larger: 413), e.g. `10MiB`, `512KiB`.
    #[arg(long, default_value = "10MiB", value_parser = kiln_serve::parse_size)]
    pub(crate) max_body: usize,
    /// How long a client may take to send a request body once its headers are in (slower:
    /// 408 and the connection closes), e.g. `30s`; bounds what a slow client can hold.
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub(crate) body_timeout: std::time::Duration,
    /// How often to re-resolve a `models:/<name>@<alias>` (e.g. `5s`, `500ms`).
    #[arg(long, default_value = "5s", value_parser = kiln_serve::parse_duration)]
    pub(crate) poll_interval: std::time::Duration,
    /// On SIGTERM or Ctrl-C, how long in-flight requests may take before the server exits.
    #[arg(long, default_value = "30s", value_parser = kiln_serve::parse_duration)]
    pub(crate) drain_timeout: std::time::Duration,
    /// On SIGTERM or Ctrl-C, keep accepting and answering requests this long (e.g. `5s`) while
    /// `/health` and `/v2/health/ready` answer 503, so that a load balancer polling them stops
    /// routing here before the listener closes; a second signal ends the wait. Kubernetes does
    /// not need it: `kiln deploy k8s` pauses in a preStop hook instead.
    #[arg(long, default_value = "0s", value_parser = kiln_serve::parse_duration)]
    pub(crate) drain_delay: std::time::Duration,
    /// Name of the model in the endpoints (`/v2/models/<name>`); default: the registered name,
    /// else `model`.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Canary arm: `<alias>=<percent>` (an alias of the served registered model, or any model
    /// reference) answers that share of requests, e.g. `challenger=10`.
    #[arg(long, value_name = "ALIAS=PERCENT")]
    pub(crate) canary: Option<String>,
    /// Keep each caller on one arm by a hash of this request header (e.g. `X-User-Id`).
    #[arg(long, value_name = "HEADER")]
    pub(crate) sticky_header: Option<String>,
    /// Shadow arm: mirror answered requests to this alias (or model reference); its answers
    /// are logged and counted, never returned.
    #[arg(long, value_name = "ALIAS")]
    pub(crate) shadow: Option<String>,
    /// Log sampled predictions as rotating Parquet files to a directory, `file:///dir` or
    /// `s3://bucket/prefix`.
    #[arg(long, value_name = "DIR|URI")]
    pub(crate) log_predictions: Option<String>,
    /// Fraction of requests written to the prediction log (0-1).
    #[arg(long, default_value_t = 0.1, value_parser = parse_fraction)]
    pub(crate) log_sample: f64,
    /// Start a new prediction-log file after this many rows.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) log_rotate_rows: usize,
    /// Requests the prediction log may hold before its writer takes them (beyond it, or
    /// beyond 64 MiB of rows, a sampled request is dropped and counted, never waited for).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) log_queue: u64,
    /// Start a new prediction-log file after this many seconds (at least 1).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) log_rotate_secs: u64,
    /// Micro-batching: coalesce up to this many rows of concurrent requests into one model
    /// call (0: off). Default: 32 for ONNX models, off for kiln models.
    #[arg(long)]
    pub(crate) batch_max_rows: Option<usize>,
    /// Micro-batching: the longest a batch waits for requests still being read, microseconds
    /// (an idle server never waits).
    #[arg(long, default_value_t = 200)]
    pub(crate) batch_wait_us: u64,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
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
    /// Experiment to record the run in, by name; created when missing (default: experiment 0,
    /// "Default" in a new store, whatever it has been renamed to).
    #[arg(long, value_name = "NAME")]
    pub(crate) experiment: Option<String>,
    /// Run name (default: generated).
    #[arg(long)]
    pub(crate) run_name: Option<String>,
    /// Register the model as a new version of this registered model.
    #[arg(long, value_name = "NAME")]
    pub(crate) register: Option<String>,
    /// Also write evaluation plots (SVG) of the held-out part here; a tracked run always gets
    /// them as `plots/` artifacts.
    #[arg(long, value_name = "DIR")]
    pub(crate) plots: Option<String>,
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
    /// A kiln model (file or directory), an `.onnx` file, `models:/<name>@<alias>`,
    /// `models:/<name>/<version>`, `models:/m-<id>` (a logged model) or `runs:/<run_id>/<path>`.
    #[arg(long, value_name = "MODEL")]
    pub(crate) model: String,
    /// Labelled data: CSV or Parquet with the model's target column.
    #[arg(long, value_name = "FILE")]
    pub(crate) data: String,
    /// Label column. A kiln model knows its own; an ONNX model needs this unless its metadata
    /// names it (`target`).
    #[arg(long, value_name = "COLUMN")]
    pub(crate) target: Option<String>,
    /// Gate `metric<op>threshold` (repeatable), e.g. `roc_auc>=0.85`, `rmse<=3.5`.
    #[arg(long = "require", value_name = "GATE")]
    pub(crate) require: Vec<String>,
    /// Write JUnit XML (one test case per gate) here.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<String>,
    /// Write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<String>,
    /// Write plots (SVG: ROC, PR, confusion matrix, feature importance, residuals) here; a
    /// tracked evaluation run always gets them as `plots/` artifacts.
    #[arg(long, value_name = "DIR")]
    pub(crate) plots: Option<String>,
    /// Experiment to record the evaluation run in, by name; created when missing (default: experiment 0,
    /// "Default" in a new store, whatever it has been renamed to).
    #[arg(long, value_name = "NAME")]
    pub(crate) experiment: Option<String>,
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

#[derive(Debug, Args)]
pub(crate) struct PredictArgs {
    /// A kiln model (file or directory), an `.onnx` file, `models:/<name>@<alias>`,
    /// `models:/<name>/<version>`, `models:/m-<id>` (a logged model) or `runs:/<run_id>/<path>`.
    #[arg(long, value_name = "MODEL")]
    pub(crate) model: String,
    /// Data to score: CSV or Parquet with the model's input columns (others are ignored).
    #[arg(long, value_name = "FILE")]
    pub(crate) data: String,
    /// Write the predictions here as CSV (default: CSV on stdout, unless --json).
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<String>,
    /// Print `{"predictions": [...], "probabilities": [[...]], "classes": [...], "task": ..., "rows": ...}`.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) read: DataReadArgs,
}

#[derive(Debug, Args)]
pub(crate) struct TuneArgs {
    /// Training data: CSV or Parquet.
    #[arg(long, value_name = "FILE")]
    pub(crate) data: String,
    /// Label column.
    #[arg(long, value_name = "COLUMN")]
    pub(crate) target: String,
    /// `classification` (binary or multiclass) or `regression`.
    #[arg(long, value_parser = ["classification", "regression"])]
    pub(crate) task: String,
    /// `gbdt`, `random_forest`, `logistic`, `linear`.
    #[arg(long, default_value = "gbdt", value_parser = ["gbdt", "random_forest", "logistic", "linear"])]
    pub(crate) model: String,
    /// Grid search over `name=v1,v2,…` (repeatable; every combination is a trial).
    #[arg(long = "grid", value_name = "NAME=V1,V2,…")]
    pub(crate) grid: Vec<String>,
    /// Random search over `name=uniform(a,b)|loguniform(a,b)|int(a,b)|choice(x,y,…)` (repeatable).
    #[arg(long = "random", value_name = "NAME=DIST(…)")]
    pub(crate) random: Vec<String>,
    /// Random-search trials (default 20).
    #[arg(long, value_name = "N")]
    pub(crate) trials: Option<usize>,
    /// Metric compared on the validation part (default: roc_auc, or rmse for regression).
    #[arg(long, value_name = "METRIC")]
    pub(crate) metric: Option<String>,
    /// `max` or `min` (default: min for errors and losses, max otherwise).
    #[arg(long, value_parser = ["max", "min"])]
    pub(crate) direction: Option<String>,
    /// Trials fitted at once (default: the number of CPUs). Results do not depend on it.
    #[arg(long, value_name = "N")]
    pub(crate) parallel: Option<usize>,
    /// Learner parameter every trial shares, `key=value` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub(crate) params: Vec<String>,
    /// Fractions train/validation/test: trials compare on validation, the best is scored on test.
    #[arg(long, default_value = "0.7/0.15/0.15")]
    pub(crate) split: String,
    /// Score the best model on this file instead of a split of --data.
    #[arg(long, value_name = "FILE")]
    pub(crate) test_data: Option<String>,
    /// Seed for the split, the learners and the random draws.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Keep class proportions in every split part (classification).
    #[arg(long)]
    pub(crate) stratify: bool,
    /// Column to leave out of the features (repeatable).
    #[arg(long, value_name = "COLUMN")]
    pub(crate) exclude: Vec<String>,
    /// Write the best model here (a directory, or a `.json` file).
    #[arg(long, value_name = "PATH")]
    pub(crate) output: Option<String>,
    /// Also write evaluation plots (SVG) of the best model on the test part here.
    #[arg(long, value_name = "DIR")]
    pub(crate) plots: Option<String>,
    /// Experiment to record the runs in, by name; created when missing (default: experiment 0,
    /// "Default" in a new store, whatever it has been renamed to).
    #[arg(long, value_name = "NAME")]
    pub(crate) experiment: Option<String>,
    /// Name of the parent run (default: generated).
    #[arg(long)]
    pub(crate) run_name: Option<String>,
    /// Register the best model as a new version of this registered model.
    #[arg(long, value_name = "NAME")]
    pub(crate) register: Option<String>,
    /// Do not record runs (needs --output).
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

/// The worker threads of `kiln server` and `kiln serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServerRuntimeArgs {
    /// Worker threads (default: one per core; 1 to 1024).
    #[arg(long, value_parser = parse_workers)]
    pub(crate) workers: Option<usize>,
    /// Before a worker thread sleeps, watch the open connections for this long (`0`: off; at
    /// most `1ms`). A request that arrives meanwhile is served without waking a sleeping CPU,
    /// which on virtual machines without guest halt-polling costs more than the request itself
    /// (2-3x the requests/s at one keep-alive connection there). The price is at most this much
    /// CPU after each burst of work; a spinning worker yields to any other thread that wants
    /// its CPU.
    #[arg(long, env = EnvVars::BUSY_POLL, default_value = "100us", value_parser = parse_busy_poll, value_name = "DURATION")]
    pub(crate) busy_poll: std::time::Duration,
    /// How long a connection may take to send a request's headers, and stay idle between
    /// requests, before it is closed (as nginx's client_header_timeout and keepalive_timeout):
    /// a client cannot hold connections open for ever. HTTP clients reconnect on their own;
    /// behind a proxy, keep it above the proxy's upstream idle timeout (60s for ingress-nginx
    /// and AWS ALB).
    #[arg(long, env = EnvVars::HEADER_TIMEOUT, default_value = "75s", value_parser = parse_timeout, value_name = "DURATION")]
    pub(crate) header_timeout: std::time::Duration,
}

/// Where metadata and artifacts live.
#[derive(Debug, Clone, Args)]
pub(crate) struct StoreArgs {
    /// Metadata store: `sqlite:///relative/kiln.db`, `sqlite:////abs/path/kiln.db` (as SQLAlchemy
    /// and `mlflow server` read them) or `postgresql://user[:pass]@host:port/db`.
    /// `train`, `tune`, `evaluate`, `predict`, `serve` and `models` (not `server`, `gc` or `db`)
    /// also take a tracking server, `http://host:5000`: runs, models and aliases then go through
    /// its REST API and artifacts through its artifact proxy (--artifacts-destination is the
    /// server's business).
    /// Default: for the client commands, `KILN_TRACKING_URI` when set (as `kiln runs` and
    /// `kiln experiments` read it); else `.kiln/kiln.db` under the current directory.
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
    #[command(flatten)]
    pub(crate) runtime: ServerRuntimeArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Apply pending schema migrations (under an advisory lock, safe with running replicas).
    Upgrade {
        #[command(flatten)]
        store: MetadataArgs,
    },
    /// Show the applied and the latest schema version.
    Status {
        #[command(flatten)]
        store: MetadataArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The metadata store alone (schema commands touch no artifacts).
#[derive(Debug, Clone, Args)]
pub(crate) struct MetadataArgs {
    /// Metadata store: `sqlite:///relative/kiln.db`, `sqlite:////abs/path/kiln.db` or
    /// `postgresql://user[:pass]@host:port/db`. Default: `.kiln/kiln.db` under the current
    /// directory.
    #[arg(long, env = EnvVars::BACKEND_STORE_URI, value_name = "URI")]
    pub(crate) backend_store_uri: Option<String>,
}

impl MetadataArgs {
    /// As full store arguments (no artifact store).
    pub(crate) fn store_args(&self) -> StoreArgs {
        StoreArgs {
            backend_store_uri: self.backend_store_uri.clone(),
            artifacts_destination: None,
        }
    }
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
    /// `http(s)://server:port` (a kiln or MLflow server), `sqlite:////abs/path/kiln.db` or `postgresql://…`.
    /// Default: `KILN_BACKEND_STORE_URI` when set (as the other commands use it), else the
    /// local `.kiln/kiln.db`. A SQLite file named here must exist (a typo is not an empty store).
    #[arg(
        long,
        visible_alias = "backend-store-uri",
        env = EnvVars::TRACKING_URI,
        value_name = "URI",
        global = true
    )]
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
        /// Experiment name or id (default: experiment 0, "Default" in a new store, even once
        /// renamed).
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
pub(crate) enum ModelsCommand {
    /// List registered models with their latest version and aliases.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the versions of a model, oldest first, with aliases, source run and data hash.
    Versions {
        /// Registered model name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a version (default: the latest) with its lineage: source run, git commit, data
    /// hashes, params and metrics.
    Show {
        /// Registered model name.
        name: String,
        /// Version number (default: the latest, or the holder of --alias).
        #[arg(value_name = "VERSION", id = "model_version")]
        model_version: Option<String>,
        /// Show the version this alias points at.
        #[arg(long, conflicts_with = "model_version")]
        alias: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Point an alias at a version once it passes its gates. Exit 1 (alias unchanged, report
    /// printed) when a gate fails or the candidate is worse than the --must-beat holder.
    Promote(Box<ModelsPromoteArgs>),
    /// Move an alias back to its previous holder (from the alias history; versions deleted
    /// since are skipped). Repeated rollbacks walk further back.
    Rollback {
        /// Registered model name.
        name: String,
        /// The alias to move back.
        #[arg(long, default_value = "champion")]
        alias: String,
        /// Who rolls back (default: $USER).
        #[arg(long)]
        user: Option<String>,
        /// Why, recorded after `rollback from vN: `.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The append-only history of an alias: when, who, version, previous holder, why.
    History {
        /// Registered model name.
        name: String,
        /// The alias.
        #[arg(long, default_value = "champion")]
        alias: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ModelsPromoteArgs {
    /// Registered model name.
    pub(crate) name: String,
    /// The candidate version.
    #[arg(value_name = "VERSION", id = "model_version")]
    pub(crate) model_version: String,
    /// The alias to point at the candidate.
    #[arg(long, default_value = "champion")]
    pub(crate) alias: String,
    /// Gate on the candidate's metrics, `metric<op>threshold` (repeatable), e.g. `roc_auc>=0.85`.
    /// Checked on --on data, else on the source run's `test_*` metrics.
    #[arg(long = "require", value_name = "GATE")]
    pub(crate) require: Vec<String>,
    /// Refuse the candidate when it is worse than this alias's current holder on --on data
    /// (passes with a note when the alias has no holder yet).
    #[arg(long, value_name = "ALIAS")]
    pub(crate) must_beat: Option<String>,
    /// Labelled data (CSV or Parquet) to evaluate the candidate (and the holder) on.
    #[arg(long, value_name = "FILE")]
    pub(crate) on: Option<String>,
    /// Metric --must-beat compares (default: roc_auc for binary classification, f1_macro for
    /// multiclass, rmse for regression; errors and losses are lower-is-better).
    #[arg(long, value_name = "METRIC")]
    pub(crate) metric: Option<String>,
    /// Who promotes, recorded in the alias history (default: $USER).
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Why, recorded in the alias history (default: a summary such as
    /// `promoted: roc_auc 0.8700 vs champion v1 0.8500`).
    #[arg(long)]
    pub(crate) reason: Option<String>,
    /// Also write the report as Markdown here (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) read: DataReadArgs,
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
    /// File format; default: from the extension (.csv/.tsv/.tab/.txt, .parquet/.pq/.parq).
    #[arg(long, value_name = "FORMAT", value_parser = ["csv", "parquet"])]
    pub(crate) format: Option<String>,
    /// CSV field delimiter, one character (`\t` for tab). Default: `,`, or tab for .tsv and .tab.
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
