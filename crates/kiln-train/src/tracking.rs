//! Train and evaluate runs in kiln's store: the same experiments, runs, params, metrics, tags and
//! artifacts as a run logged through the MLflow API, plus registry versions with lineage.
//! Store calls are synchronous; artifact transfers run on the given tokio runtime.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kiln_blob::{BlobPath, BlobStore};
use kiln_store::{AliasActor, NewModelVersion, NewRun, RunUpdate, TrackingStore};
use kiln_types::{Dataset, DatasetInput, Metric, Param, RunStatus, Tag};

use crate::artifact::{KilnModel, MODEL_FILE};
use crate::model::{Model, ONNX_FILE};
use crate::TrainError;

/// Where runs and artifacts go.
pub struct Tracker {
    pub store: Arc<dyn TrackingStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub runtime: tokio::runtime::Handle,
}

/// Who runs this process, much as MLflow's client finds out (`getpass.getuser()`): `USER`,
/// `LOGNAME`, `LNAME` or `USERNAME`, else the user database's name for this uid (CI containers
/// often set none of the variables), else `uid:<n>`. Looked up once per process (a tuning run
/// asks once per trial).
pub fn current_user() -> Option<String> {
    static USER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    USER.get_or_init(lookup_user).clone()
}

fn lookup_user() -> Option<String> {
    for var in ["USER", "LOGNAME", "LNAME", "USERNAME"] {
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return Some(v);
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let from_passwd = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == uid && !name.is_empty()).then(|| name.to_string())
            })
        });
    Some(from_passwd.unwrap_or_else(|| format!("uid:{uid}")))
}

/// A run being recorded.
pub struct RunHandle {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
}

/// Closed once the process is being interrupted: no run starts after that. Starting a run holds
/// the read side across the store call (and, for a top-level run, its entry in the open list),
/// so [`close_run_gate`] returns only when no start is in flight: every run this process
/// created is then in [`with_open_runs`]'s list or, for a child run, findable by its parent.
static RUN_GATE: std::sync::RwLock<bool> = std::sync::RwLock::new(false);

/// Top-level runs started by [`Tracker::start`] and not yet ended by their command.
static OPEN_RUNS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Stop new runs from starting (a signal is ending the process); waits for starts in flight.
pub fn close_run_gate() {
    *RUN_GATE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
}

/// Whether [`close_run_gate`] was called.
pub fn run_gate_closed() -> bool {
    *RUN_GATE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Work on the list of open top-level runs (run ids), holding it: a command ending a run holds
/// it across the store call, so a signal handler taking the list waits for that end instead of
/// overwriting it.
pub fn with_open_runs<T>(f: impl FnOnce(&mut Vec<String>) -> T) -> T {
    let mut open = OPEN_RUNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut open)
}

/// Create a run unless the gate is closed; a top-level run (`track`) joins the open list.
pub(crate) fn create_run_gated(
    store: &dyn TrackingStore,
    run: &NewRun,
    track: bool,
) -> Result<kiln_types::Run, TrainError> {
    let closed = RUN_GATE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *closed {
        return Err(TrainError::Input(
            "Interrupted: no new run is started".into(),
        ));
    }
    let created = store.create_run(run)?;
    if track {
        with_open_runs(|open| open.push(created.info.run_id.clone()));
    }
    drop(closed);
    Ok(created)
}

/// Git commit and dirty flag of the working directory, when it is a repository.
pub fn git_info() -> Option<(String, bool)> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()?;
    Some((commit, !status.stdout.is_empty()))
}

impl Tracker {
    /// The experiment's id, created when missing.
    /// The id of the experiment named `name`, created when missing; `None` is experiment 0
    /// (MLflow's default, whatever it is called now).
    pub fn experiment(&self, name: Option<&str>) -> Result<String, TrainError> {
        let Some(name) = name else {
            return Ok(self
                .store
                .get_experiment(kiln_types::DEFAULT_EXPERIMENT_ID)?
                .experiment_id);
        };
        match self.store.get_experiment_by_name(name) {
            Ok(e) => Ok(e.experiment_id),
            Err(kiln_store::StoreError::NotFound(_)) => {
                Ok(self.store.create_experiment(name, None, &[])?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Start a run with the standard source tags plus git lineage.
    pub fn start(
        &self,
        experiment: Option<&str>,
        run_name: Option<String>,
        command: &str,
        extra_tags: Vec<Tag>,
    ) -> Result<RunHandle, TrainError> {
        let experiment_id = self.experiment(experiment)?;
        let user = current_user().unwrap_or_default();
        let mut tags = vec![
            Tag::new("mlflow.source.name", command),
            Tag::new("mlflow.source.type", "LOCAL"),
            Tag::new("mlflow.user", user.clone()),
            Tag::new("kiln.command", command),
        ];
        if let Some((commit, dirty)) = git_info() {
            tags.push(Tag::new("mlflow.source.git.commit", commit.clone()));
            tags.push(Tag::new("kiln.git.commit", commit));
            tags.push(Tag::new("kiln.git.dirty", dirty.to_string()));
        }
        tags.extend(extra_tags);
        let run = create_run_gated(
            self.store.as_ref(),
            &NewRun {
                experiment_id: experiment_id.clone(),
                user_id: user,
                run_name,
                start_time: kiln_types::now_ms(),
                tags,
            },
            true,
        )?;
        Ok(RunHandle {
            run_id: run.info.run_id,
            experiment_id,
            artifact_uri: run.info.artifact_uri,
        })
    }

    /// Log params, metrics and tags in batches of the API's size limits.
    pub fn log(
        &self,
        run: &RunHandle,
        params: &[(String, String)],
        metrics: &[(String, f64)],
        tags: &[Tag],
    ) -> Result<(), TrainError> {
        let now = kiln_types::now_ms();
        let params: Vec<Param> = params
            .iter()
            .map(|(k, v)| Param {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let metrics: Vec<Metric> = metrics
            .iter()
            .map(|(k, v)| Metric::new(k.clone(), *v, now, 0))
            .collect();
        for chunk in params.chunks(100) {
            self.store.log_batch(&run.run_id, &[], chunk, &[])?;
        }
        for chunk in metrics.chunks(1000) {
            self.store.log_batch(&run.run_id, chunk, &[], &[])?;
        }
        for chunk in tags.chunks(100) {
            self.store.log_batch(&run.run_id, &[], &[], chunk)?;
        }
        Ok(())
    }

    /// Record the data file as a run input (name, BLAKE3 digest, local source).
    pub fn log_dataset(
        &self,
        run: &RunHandle,
        path: &str,
        digest: &str,
        context: &str,
    ) -> Result<(), TrainError> {
        let name = std::path::Path::new(path)
            .file_name()
            .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
        // The absolute path: lineage read later, from elsewhere, must still find the file.
        let path = std::fs::canonicalize(path)
            .map_or_else(|_| path.to_string(), |p| p.display().to_string());
        let input = DatasetInput {
            tags: vec![Tag::new("mlflow.data.context", context)],
            dataset: Dataset {
                name,
                digest: digest.chars().take(64).collect(),
                source_type: "local".into(),
                source: serde_json::json!({ "uri": path }).to_string(),
                schema: None,
                profile: None,
            },
        };
        Ok(self.store.log_inputs(&run.run_id, &[input])?)
    }

    fn artifact_root(&self, run: &RunHandle) -> Result<BlobPath, TrainError> {
        kiln_blob::artifact_uri_path(&run.artifact_uri).ok_or_else(|| {
            TrainError::Input(format!(
                "The run's artifact location `{}` is not in this artifact store",
                run.artifact_uri
            ))
        })
    }

    /// Upload bytes as a run artifact at `path` (relative to the run's artifact root).
    pub fn put_artifact(
        &self,
        run: &RunHandle,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), TrainError> {
        let dest = self.artifact_root(run)?.join(path)?;
        let body =
            futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(bytes)) })
                .boxed();
        self.runtime.block_on(self.blobs.put(&dest, body))?;
        Ok(())
    }

    pub fn finish(&self, run: &RunHandle, status: RunStatus) -> Result<(), TrainError> {
        self.store.update_run(
            &run.run_id,
            &RunUpdate {
                status: Some(status),
                end_time: Some(kiln_types::now_ms()),
                run_name: None,
            },
        )?;
        Ok(())
    }

    /// Register the run's `model/` artifact as a new version of `name` (created when missing).
    pub fn register(
        &self,
        run: &RunHandle,
        name: &str,
        tags: Vec<Tag>,
    ) -> Result<String, TrainError> {
        match self.store.create_registered_model(name, None, &[]) {
            Ok(_) | Err(kiln_store::StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let version = self.store.create_model_version(&NewModelVersion {
            name: name.to_string(),
            source: format!("runs:/{}/model", run.run_id),
            run_id: Some(run.run_id.clone()),
            model_id: None,
            run_link: None,
            description: None,
            tags,
            user_id: current_user(),
        })?;
        Ok(version.version)
    }

    /// Load a model, a kiln model or an ONNX graph, from a local path (file or directory) or
    /// `models:/name@alias` / `models:/name/version` / `models:/m-<id>` (a logged model, as
    /// MLflow 3 registers `log_model` output) / `runs:/<run_id>/<path>`. A run's or logged
    /// model's directory may hold `kiln-model.json` or `model.onnx` (MLflow's onnx flavor
    /// layout); a `runs:/<id>/path/x.onnx` reference reads that artifact.
    pub fn load_any_model(&self, reference: &str) -> Result<(Model, ModelSource), TrainError> {
        self.load_model_ref(reference, 0)
    }

    fn load_model_ref(
        &self,
        reference: &str,
        depth: usize,
    ) -> Result<(Model, ModelSource), TrainError> {
        /// Registry sources that name other versions (`copy_model_version`) are followed this far.
        const MAX_DEPTH: usize = 8;
        if let Some(rest) = reference.strip_prefix("models:/") {
            let id = rest.trim_end_matches('/');
            if kiln_types::is_valid_model_id(id) {
                let logged = self.store.get_logged_model(id)?;
                let root =
                    kiln_blob::artifact_uri_path(&logged.info.artifact_uri).ok_or_else(|| {
                        TrainError::Input(format!(
                        "Logged model `{id}` keeps its files at `{}`, outside this artifact store",
                        logged.info.artifact_uri
                    ))
                    })?;
                let model =
                    self.read_model_at(&root, "", reference, &format!("Logged model `{id}`"))?;
                return Ok((
                    model,
                    ModelSource {
                        name: None,
                        version: None,
                        run_id: logged.info.source_run_id,
                    },
                ));
            }
            let (name, mv) = match kiln_types::ModelsUri::parse(rest) {
                Some(kiln_types::ModelsUri::Alias { name, alias }) => {
                    (name, self.store.get_model_version_by_alias(name, alias)?)
                }
                Some(kiln_types::ModelsUri::Version { name, version }) => {
                    (name, self.store.get_model_version(name, version)?)
                }
                _ => return Err(TrainError::Input(format!("Invalid model reference `{reference}`: expected models:/<name>@<alias>, models:/<name>/<version> or models:/m-<logged model id>"))),
            };
            if depth >= MAX_DEPTH {
                return Err(TrainError::Input(format!(
                    "Model version `{reference}` leads through more than {MAX_DEPTH} registry sources (last: `{}`); is there a cycle?",
                    mv.source
                )));
            }
            let (model, _) = self.load_model_ref(&mv.source, depth + 1)?;
            return Ok((
                model,
                ModelSource {
                    name: Some(name.to_string()),
                    version: Some(mv.version),
                    run_id: mv.run_id,
                },
            ));
        }
        if let Some(rest) = reference.strip_prefix("runs:/") {
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, "model"));
            let run = self.store.get_run(run_id)?;
            let handle = RunHandle {
                run_id: run_id.to_string(),
                experiment_id: run.info.experiment_id,
                artifact_uri: run.info.artifact_uri,
            };
            let root = self.artifact_root(&handle)?;
            let model = self.read_model_at(&root, path, reference, &format!("Run `{run_id}`"))?;
            return Ok((
                model,
                ModelSource {
                    name: None,
                    version: None,
                    run_id: Some(run_id.to_string()),
                },
            ));
        }
        Ok((Model::load(reference)?, ModelSource::default()))
    }

    /// The model at `path` under an artifact directory: that file when it names one
    /// (`.onnx`/`.json`), else the directory's `kiln-model.json` or `model.onnx`.
    fn read_model_at(
        &self,
        root: &BlobPath,
        path: &str,
        reference: &str,
        owner: &str,
    ) -> Result<Model, TrainError> {
        let path = path.trim_end_matches('/');
        let dir = if path.is_empty() {
            root.clone()
        } else {
            root.join(path)?
        };
        let candidates = if path.ends_with(".onnx") || path.ends_with(".json") {
            vec![dir]
        } else {
            vec![dir.join(MODEL_FILE)?, dir.join(ONNX_FILE)?]
        };
        for file in &candidates {
            match self.read_artifact(file) {
                Ok(bytes) => return Model::from_bytes(&bytes, &format!("{reference} ({file})")),
                Err(TrainError::Blob(kiln_blob::BlobError::NotFound(_))) => {}
                Err(e) => return Err(e),
            }
        }
        let shown = if path.is_empty() { "its root" } else { path };
        // Nothing there at all: the files are gone, which is not the same mistake as pointing
        // kiln at a model it cannot read.
        let listed = self
            .runtime
            .block_on(async { self.blobs.list(&candidates_dir(root, path)?).await });
        match listed {
            Ok(entries) if !entries.is_empty() => {}
            Ok(_) | Err(kiln_blob::BlobError::NotFound(_)) => {
                return Err(TrainError::NoArtifacts(format!(
                    "{owner} has no files at `{shown}`: its artifacts are gone (deleted, or collected by `kiln gc`)"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        Err(TrainError::Input(format!(
            "{owner} has no model at `{shown}` (looked for {}): kiln serves kiln models and ONNX models",
            candidates
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// The bytes of one artifact.
    fn read_artifact(&self, file: &BlobPath) -> Result<Vec<u8>, TrainError> {
        self.runtime.block_on(async {
            let object = self.blobs.get(file).await?;
            let chunks: Vec<Result<Bytes, std::io::Error>> = object.stream.collect().await;
            let mut out = Vec::with_capacity(usize::try_from(object.size).unwrap_or(0));
            for c in chunks {
                out.extend_from_slice(&c.map_err(|err| TrainError::Io {
                    path: file.to_string(),
                    err,
                })?);
            }
            Ok::<_, TrainError>(out)
        })
    }

    /// Point `alias` at a version, recorded in the alias history.
    pub fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        reason: &str,
    ) -> Result<(), TrainError> {
        Ok(self.store.set_alias(
            name,
            alias,
            version,
            &AliasActor {
                user_id: current_user(),
                reason: Some(reason.to_string()),
            },
        )?)
    }
}

/// Where a loaded model came from.
#[derive(Debug, Clone, Default)]
pub struct ModelSource {
    pub name: Option<String>,
    pub version: Option<String>,
    pub run_id: Option<String>,
}

/// Write a model to `path` (a `.json` file, or a directory that gets `kiln-model.json`).
/// The directory a model reference's files are in: `path` under `root`, or its parent when
/// `path` names a file.
fn candidates_dir(root: &BlobPath, path: &str) -> Result<BlobPath, kiln_blob::BlobError> {
    let path = path.trim_end_matches('/');
    let dir = if path.ends_with(".onnx") || path.ends_with(".json") {
        path.rsplit_once('/').map_or("", |(d, _)| d)
    } else {
        path
    };
    if dir.is_empty() {
        Ok(root.clone())
    } else {
        root.join(dir)
    }
}

pub fn save_local(model: &KilnModel, path: &str) -> Result<std::path::PathBuf, TrainError> {
    let p = std::path::Path::new(path);
    let file = if p.extension().is_some_and(|e| e == "json") {
        p.to_path_buf()
    } else {
        p.join(MODEL_FILE)
    };
    if let Some(parent) = file.parent() {
        if !parent.as_os_str().is_empty() {
            fs_err::create_dir_all(parent).map_err(|err| TrainError::Io {
                path: parent.display().to_string(),
                err,
            })?;
        }
    }
    fs_err::write(&file, model.to_bytes()?).map_err(|err| TrainError::Io {
        path: file.display().to_string(),
        err,
    })?;
    Ok(file)
}
