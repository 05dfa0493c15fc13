//! `kiln deploy k8s`: Kubernetes manifests for `kiln serve` replicas.
//!
//! Generation is pure: flags become a [`K8sSpec`] (checked, no I/O), [`manifests`] turns it into
//! `serde_json::Value` documents (Deployment, Service, HPA), and `serde_yaml_ng` renders them.
//! Every replica is stateless: it reads the same registry (PostgreSQL + S3, or a SQLite file on a
//! shared volume) and re-resolves the alias on its own, so scaling is only a replica count.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};

use super::InputError;
use crate::cli::{DeployCommand, DeployK8sArgs};
use crate::printer::Printer;

/// Where `--volume-claim` is mounted; also the image's working directory.
const DATA_DIR: &str = "/var/lib/kiln";
/// The Secret (and its keys) the store locations come from by default.
const STORE_SECRET: &str = "kiln-store";
const STORE_URI_KEY: &str = "backend-store-uri";
const ARTIFACTS_KEY: &str = "artifacts-destination";
/// Seconds the pod keeps serving after it is told to stop, so that endpoints and load
/// balancers stop sending it traffic before `kiln serve` stops accepting connections.
const PRE_STOP_SECS: u64 = 5;
/// Slack on top of the pre-stop pause and the drain timeout before the kubelet kills the pod.
const GRACE_MARGIN_SECS: u64 = 5;
/// The user of the image (Dockerfile) and of the pod's security context.
const UID: u32 = 10001;
/// Longest DNS-1123 label.
const MAX_NAME: usize = 63;

pub(super) fn run(cmd: DeployCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        DeployCommand::K8s(args) => k8s(*args, printer),
    }
}

fn k8s(args: DeployK8sArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let output = args.output.clone();
    let spec = K8sSpec::from_args(args)?;
    // Render every document before any output, so that a failure leaves nothing behind.
    let files = manifests(&spec)
        .into_iter()
        .map(|(file, doc)| Ok((file, to_yaml(&doc)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    match output {
        None => {
            let stream: Vec<&str> = files.iter().map(|(_, text)| text.as_str()).collect();
            printer.line(stream.join("---\n").trim_end());
        }
        Some(dir) => {
            let fixed = matches!(spec.scaling, Scaling::Fixed(_));
            let stale = write_files(&dir, &files, fixed)?;
            let names: Vec<&str> = files.iter().map(|(file, _)| *file).collect();
            printer.status(&format!("Wrote {} to {}", names.join(", "), dir.display()));
            if let Some(stale) = stale {
                printer.status(&format!(
                    "Removed `{}`, an HPA an earlier run wrote: with --replicas there is none. \
                     An HPA already applied stays in the cluster until deleted: {}",
                    stale.path.display(),
                    stale.delete_command()
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn to_yaml(doc: &Value) -> anyhow::Result<String> {
    serde_yaml_ng::to_string(doc).context("Failed to render YAML")
}

/// The file name of the HPA document, the one file a run with `--replicas` does not write.
const HPA_FILE: &str = "hpa.yaml";

/// A `hpa.yaml` that an earlier run without `--replicas` wrote into the output directory.
#[derive(Debug)]
struct StaleHpa {
    path: PathBuf,
    name: String,
    namespace: Option<String>,
}

impl StaleHpa {
    fn delete_command(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("kubectl delete hpa {} -n {ns}", self.name),
            None => format!("kubectl delete hpa {}", self.name),
        }
    }
}

/// Writes `files` into `dir` all or nothing (as far as a file system allows): every check is
/// made and every file is written to a temporary file next to its target before the first one
/// is renamed into place, so an output that cannot be written leaves the directory as it was.
/// With `fixed` replicas a `hpa.yaml` kiln wrote earlier is removed (and returned); one that
/// kiln did not write is refused rather than deleted. Every failure is an input error naming
/// the path.
fn write_files(
    dir: &Path,
    files: &[(&'static str, String)],
    fixed: bool,
) -> anyhow::Result<Option<StaleHpa>> {
    match fs_err::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(InputError(format!(
                "--output `{}` is not a directory: pass a directory (it is created if missing)",
                dir.display()
            ))
            .into())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs_err::create_dir_all(dir).map_err(|err| {
                InputError(format!("Failed to create the --output directory: {err}"))
            })?;
        }
        Err(err) => return Err(InputError(format!("Cannot use --output: {err}")).into()),
    }
    for (file, _) in files {
        let path = dir.join(file);
        match fs_err::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                return Err(InputError(format!(
                    "Cannot write `{}`: a directory is in the way; remove it or pick another \
                     --output",
                    path.display()
                ))
                .into())
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(InputError(format!("Cannot write `{}`: {err}", path.display())).into())
            }
        }
    }
    let stale = if fixed { stale_hpa(dir)? } else { None };

    let mut written = Vec::with_capacity(files.len());
    for (file, text) in files {
        let target = dir.join(file);
        let tmp = TempFile::write(dir, file, text)
            .map_err(|err| InputError(format!("Failed to write `{}`: {err}", target.display())))?;
        written.push((tmp, target));
    }
    // The stale HPA goes before the new Deployment lands: should anything fail from here on,
    // the directory never pairs a fixed replica count with an HPA.
    if let Some(stale) = &stale {
        fs_err::remove_file(&stale.path).map_err(|err| {
            InputError(format!(
                "Failed to remove `{}`, an HPA an earlier run wrote: {err}",
                stale.path.display()
            ))
        })?;
    }
    for (tmp, target) in written {
        tmp.persist(&target)
            .map_err(|err| InputError(format!("Failed to write `{}`: {err}", target.display())))?;
    }
    Ok(stale)
}

/// The `hpa.yaml` in `dir` when kiln wrote it (its labels say so), `None` when there is none;
/// an error when one is there that kiln did not write: it may be the user's own, so it is
/// neither deleted nor left to fight the fixed replica count.
fn stale_hpa(dir: &Path) -> Result<Option<StaleHpa>, InputError> {
    let path = dir.join(HPA_FILE);
    let refuse = |why: &str| {
        InputError(format!(
            "`{}` {why}, so kiln leaves it alone; with --replicas the output directory must \
             hold no HPA (`kubectl apply -f {}` would apply it against the fixed replica \
             count): remove it or pick another --output",
            path.display(),
            dir.display()
        ))
    };
    match fs_err::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(refuse("is not a regular file")),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(InputError(format!("Cannot check for a stale HPA: {err}"))),
    }
    let text = fs_err::read_to_string(&path)
        .map_err(|err| InputError(format!("Cannot check for a stale HPA: {err}")))?;
    let Ok(doc) = serde_yaml_ng::from_str::<Value>(&text) else {
        return Err(refuse("is not a single YAML document kiln wrote"));
    };
    let labels = &doc["metadata"]["labels"];
    let ours = doc["kind"] == "HorizontalPodAutoscaler"
        && labels["app.kubernetes.io/managed-by"] == "kiln"
        && labels["app.kubernetes.io/name"] == "kiln-serve";
    let (true, Some(name)) = (ours, doc["metadata"]["name"].as_str()) else {
        return Err(refuse(
            "is not an HPA kiln wrote (no `app.kubernetes.io/managed-by: kiln` label)",
        ));
    };
    Ok(Some(StaleHpa {
        name: name.to_string(),
        namespace: doc["metadata"]["namespace"].as_str().map(str::to_string),
        path,
    }))
}

/// A file written next to its target under a hidden temporary name, removed when dropped
/// unless [`TempFile::persist`] renamed it into place.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    fn write(dir: &Path, file: &str, text: &str) -> io::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!(".{file}.{}-{nanos}.kiln-tmp", std::process::id()));
        // `create_new`: never follows or clobbers whatever is already there.
        let mut out = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let tmp = Self {
            path,
            persisted: false,
        };
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        Ok(tmp)
    }

    fn persist(mut self, target: &Path) -> io::Result<()> {
        fs_err::rename(&self.path, target)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            if let Err(error) = fs_err::remove_file(&self.path) {
                tracing::warn!(%error, "Failed to remove a temporary manifest file.");
            }
        }
    }
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Literal(String),
    Secret { name: String, key: String },
}

impl Source {
    fn env(&self, var: &str) -> Value {
        match self {
            Self::Literal(value) => json!({"name": var, "value": value}),
            Self::Secret { name, key } => json!({
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": name, "key": key}},
            }),
        }
    }
}

/// How many replicas run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scaling {
    Fixed(u32),
    Autoscaled { min: u32, max: u32, target_cpu: u32 },
}

/// Everything the manifests need, checked.
#[derive(Debug, Clone)]
struct K8sSpec {
    /// Resource name and `app.kubernetes.io/instance` label.
    name: String,
    namespace: Option<String>,
    /// `models:/<name>@<alias>` or `models:/<name>/<version>`.
    reference: String,
    image: String,
    port: u16,
    scaling: Scaling,
    store: Source,
    /// `None` when the store is a tracking server: its artifact proxy serves the models.
    artifacts: Option<Source>,
    /// Secret loaded whole into the environment (optional), for S3 credentials.
    aws_secret: Option<String>,
    volume_claim: Option<String>,
    cpu_request: String,
    cpu_limit: Option<String>,
    memory_request: String,
    memory_limit: String,
    poll_interval: Option<Duration>,
    drain_timeout: Duration,
}

impl K8sSpec {
    fn from_args(args: DeployK8sArgs) -> Result<Self, InputError> {
        let DeployK8sArgs {
            model,
            alias,
            model_version,
            name,
            namespace,
            image,
            replicas,
            min_replicas,
            max_replicas,
            target_cpu,
            port,
            backend_store_uri,
            store_secret,
            artifacts_destination,
            aws_secret,
            volume_claim,
            cpu_request,
            cpu_limit,
            memory_request,
            memory_limit,
            poll_interval,
            drain_timeout,
            output: _,
        } = args;

        let (reference, suffix) = model_reference(&model, &alias, model_version)?;
        let name = match name {
            Some(n) => {
                let sanitized = dns_label(&n)
                    .ok_or_else(|| InputError(format!("Invalid --name `{n}`: {NAME_RULE}")))?;
                if sanitized != n {
                    return Err(InputError(format!(
                        "Invalid --name `{n}`: {NAME_RULE} (e.g. `{sanitized}`)"
                    )));
                }
                n
            }
            None => default_name(&model, &suffix).ok_or_else(|| {
                InputError(format!(
                    "Cannot derive a Kubernetes name from the model name `{model}` (a DNS-1123 \
                     label needs a letter); pass --name"
                ))
            })?,
        };
        if let Some(ns) = &namespace {
            if dns_label(ns).as_deref() != Some(ns.as_str()) {
                return Err(InputError(format!(
                    "Invalid --namespace `{ns}`: {NAME_RULE}"
                )));
            }
        }
        if let Some(claim) = &volume_claim {
            check_subdomain("--volume-claim", claim)?;
        }
        check_subdomain("--aws-secret", &aws_secret)?;
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            return Err(InputError(format!("Invalid --image `{image}`")));
        }
        if port == 0 {
            return Err(InputError("--port must not be 0".into()));
        }

        let scaling = match replicas {
            Some(0) => return Err(InputError("--replicas must be at least 1".into())),
            Some(n) => Scaling::Fixed(n),
            None => {
                if min_replicas == 0 {
                    return Err(InputError("--min-replicas must be at least 1".into()));
                }
                if max_replicas < min_replicas {
                    return Err(InputError(format!(
                        "--max-replicas ({max_replicas}) is below --min-replicas ({min_replicas})"
                    )));
                }
                if target_cpu == 0 {
                    return Err(InputError(
                        "--target-cpu must be at least 1 (percent)".into(),
                    ));
                }
                Scaling::Autoscaled {
                    min: min_replicas,
                    max: max_replicas,
                    target_cpu,
                }
            }
        };

        let secret = store_secret
            .as_deref()
            .map(|s| parse_secret_ref(s, STORE_URI_KEY))
            .transpose()?;
        let secret_name = secret.as_ref().map_or(STORE_SECRET, |(n, _)| n.as_str());
        let from_secret = |key: &str| Source::Secret {
            name: secret_name.to_string(),
            key: key.to_string(),
        };
        let store = match (backend_store_uri, &secret, &volume_claim) {
            (Some(uri), _, _) => {
                if has_password(&uri) {
                    return Err(InputError(format!(
                        "--backend-store-uri `{}` holds a password, which would be written into \
                         the manifest in clear; put the URI into a Secret and pass \
                         --store-secret NAME/KEY",
                        crate::tracking::redact(&uri)
                    )));
                }
                Source::Literal(uri)
            }
            (None, Some((name, key)), _) => Source::Secret {
                name: name.clone(),
                key: key.clone(),
            },
            (None, None, Some(_)) => Source::Literal(format!("sqlite:///{DATA_DIR}/kiln.db")),
            (None, None, None) => from_secret(STORE_URI_KEY),
        };
        // Replicas pointed at a tracking server need no database or bucket credentials: models
        // come through the server's artifact proxy.
        let via_server = matches!(&store, Source::Literal(uri) if super::is_server_uri(uri));
        let artifacts =
            match (artifacts_destination, &secret, &volume_claim) {
                (Some(_), _, _) if via_server => return Err(InputError(
                    "--artifacts-destination has no effect with a tracking server as the store: \
                     the replicas read models through the server's artifact proxy; drop it"
                        .into(),
                )),
                _ if via_server => None,
                (Some(uri), _, _) => Some(Source::Literal(uri)),
                (None, _, Some(_)) => Some(Source::Literal(format!("{DATA_DIR}/artifacts"))),
                (None, _, None) => Some(from_secret(ARTIFACTS_KEY)),
            };
        // Credentials matter only for S3 (or a location not known here).
        let aws_secret = match &artifacts {
            None => None,
            Some(Source::Literal(uri)) if !uri.starts_with("s3://") => None,
            Some(_) => Some(aws_secret),
        };

        for (flag, value) in [
            ("--cpu-request", &cpu_request),
            ("--memory-request", &memory_request),
            ("--memory-limit", &memory_limit),
        ]
        .into_iter()
        .chain(cpu_limit.as_ref().map(|v| ("--cpu-limit", v)))
        {
            if quantity(value).is_none() {
                return Err(InputError(format!(
                    "Invalid {flag} `{value}`: expected a Kubernetes quantity, e.g. 250m, 1, 256Mi, 1Gi"
                )));
            }
        }
        // Kubernetes refuses a container whose request is above its limit.
        for (resource, request, limit) in [
            ("memory", &memory_request, Some(&memory_limit)),
            ("cpu", &cpu_request, cpu_limit.as_ref()),
        ] {
            let Some(limit) = limit else { continue };
            if let (Some(r), Some(l)) = (quantity(request), quantity(limit)) {
                if r > l {
                    return Err(InputError(format!(
                        "--{resource}-request `{request}` is above --{resource}-limit `{limit}`, \
                         which Kubernetes refuses: expected a request at most the limit; lower \
                         --{resource}-request or raise --{resource}-limit"
                    )));
                }
            }
        }
        if drain_timeout.is_zero() {
            return Err(InputError("--drain-timeout must be positive".into()));
        }
        if poll_interval.is_some_and(|d| d.is_zero()) {
            return Err(InputError("--poll-interval must be positive".into()));
        }

        Ok(Self {
            name,
            namespace,
            reference,
            image,
            port,
            scaling,
            store,
            artifacts,
            aws_secret,
            volume_claim,
            cpu_request,
            cpu_limit,
            memory_request,
            memory_limit,
            poll_interval,
            drain_timeout,
        })
    }

    fn metadata(&self) -> Value {
        let mut meta = json!({"name": self.name, "labels": self.labels()});
        if let (Some(ns), Some(map)) = (&self.namespace, meta.as_object_mut()) {
            map.insert("namespace".into(), json!(ns));
        }
        meta
    }

    fn selector(&self) -> Value {
        json!({
            "app.kubernetes.io/name": "kiln-serve",
            "app.kubernetes.io/instance": self.name,
        })
    }

    fn labels(&self) -> Value {
        let mut labels = self.selector();
        if let Some(map) = labels.as_object_mut() {
            map.insert("app.kubernetes.io/component".into(), json!("model-server"));
            map.insert("app.kubernetes.io/managed-by".into(), json!("kiln"));
        }
        labels
    }
}

const NAME_RULE: &str = "expected a DNS-1123 label: at most 63 lowercase letters, digits and \
                         `-`, starting with a letter and ending with a letter or digit";

/// `models:/<name>@<alias>` or `models:/<name>/<version>`, and the default resource-name suffix.
fn model_reference(
    model: &str,
    alias: &str,
    version: Option<u64>,
) -> Result<(String, String), InputError> {
    if model.trim().is_empty() || model.contains('@') || model.chars().any(char::is_control) {
        return Err(InputError(format!(
            "Invalid model name `{model}`: expected a registered model name (no `@`)"
        )));
    }
    let (reference, suffix) = match version {
        Some(0) => {
            return Err(InputError(
                "Invalid --version 0: expected a registry version number, 1 or more".into(),
            ))
        }
        Some(v) => (format!("models:/{model}/{v}"), format!("v{v}")),
        None => {
            check_alias(alias)?;
            (format!("models:/{model}@{alias}"), alias.to_string())
        }
    };
    // The reference must read back as written in the container's arguments.
    let parsed = kiln_serve::ModelRef::parse(&reference)
        .map_err(|e| InputError(format!("Invalid model reference `{reference}`: {e}")))?;
    let expected = match version {
        Some(v) => kiln_serve::ModelRef::Version {
            name: model.to_string(),
            version: v.to_string(),
        },
        None => kiln_serve::ModelRef::Alias {
            name: model.to_string(),
            alias: alias.to_string(),
        },
    };
    if parsed != expected {
        return Err(InputError(format!(
            "Model name `{model}` does not make an unambiguous reference `{reference}`"
        )));
    }
    Ok((reference, suffix))
}

/// The registry's rule for alias names ([`kiln_types::alias_problem`]), so that a manifest
/// never watches an alias no one can set.
fn check_alias(alias: &str) -> Result<(), InputError> {
    match kiln_types::alias_problem(alias) {
        None => Ok(()),
        Some(problem) => Err(InputError(format!(
            "Invalid --alias `{alias}`: {problem} (the registry's alias names; use --version N \
             for a fixed version)"
        ))),
    }
}

/// `text` lowercased, other characters as `-`, runs of `-` merged, no `-` at either end.
fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

/// A DNS-1123 label (and DNS-1035, as Services need: starts with a letter) made from `text`
/// with [`slug`], a leading digit prefixed with `m-`, at most 63 characters. `None` when no
/// letter is left.
fn dns_label(text: &str) -> Option<String> {
    let slug = slug(text);
    if !slug.bytes().any(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut label = if slug.starts_with(|c: char| c.is_ascii_digit()) {
        format!("m-{slug}")
    } else {
        slug
    };
    label.truncate(MAX_NAME);
    Some(label.trim_end_matches('-').to_string())
}

/// `<model>-<suffix>` as a DNS-1123 label; a long model name is cut, never the suffix, so that
/// two aliases of one model keep distinct names. `None` when the model name has no letter.
fn default_name(model: &str, suffix: &str) -> Option<String> {
    let model = dns_label(model)?;
    let mut suffix = slug(suffix);
    suffix.truncate(MAX_NAME / 2);
    let suffix = suffix.trim_end_matches('-');
    if suffix.is_empty() {
        return Some(model);
    }
    let room = MAX_NAME - suffix.len() - 1;
    let model = model.get(..room.min(model.len())).unwrap_or(&model);
    Some(format!("{}-{suffix}", model.trim_end_matches('-')))
}

/// A DNS-1123 subdomain (Secret and claim names): at most 253 characters, dot-separated labels
/// of lowercase letters, digits and `-`, each starting and ending with a letter or digit.
fn check_subdomain(flag: &str, name: &str) -> Result<(), InputError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(InputError(format!(
            "Invalid {flag} `{name}`: expected a Kubernetes object name (lowercase letters, \
             digits, `-` and `.`)"
        )))
    }
}

/// `NAME[/KEY]` of a Secret.
fn parse_secret_ref(text: &str, default_key: &str) -> Result<(String, String), InputError> {
    let (name, key) = text.split_once('/').unwrap_or((text, default_key));
    check_subdomain("--store-secret", name)?;
    let key_ok = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !key_ok {
        return Err(InputError(format!(
            "Invalid --store-secret key `{key}`: expected letters, digits, `-`, `_` and `.`"
        )));
    }
    Ok((name.to_string(), key.to_string()))
}

/// Whether a URI carries `user:password@` or a `password=` query parameter.
fn has_password(uri: &str) -> bool {
    let Some((_, rest)) = uri.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let in_userinfo = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let in_query = rest.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.to_ascii_lowercase().starts_with("password="))
    });
    in_userinfo || in_query
}

/// The value of a Kubernetes resource quantity (a non-negative decimal number and an optional
/// suffix), `None` when `text` is not one. The value is the nearest `f64`: rounding keeps the
/// order, so a request is never taken for above its limit, and one value written two ways
/// (`1Gi` and `1073741824`, `0.5` and `500m`) compares equal.
fn quantity(text: &str) -> Option<f64> {
    /// Suffix, power of 10, power of 2.
    const SUFFIXES: [(&str, i32, i32); 14] = [
        ("", 0, 0),
        ("m", -3, 0),
        ("k", 3, 0),
        ("M", 6, 0),
        ("G", 9, 0),
        ("T", 12, 0),
        ("P", 15, 0),
        ("E", 18, 0),
        ("Ki", 0, 10),
        ("Mi", 0, 20),
        ("Gi", 0, 30),
        ("Ti", 0, 40),
        ("Pi", 0, 50),
        ("Ei", 0, 60),
    ];
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number_ok = !number.is_empty()
        && number.matches('.').count() <= 1
        && number.bytes().any(|b| b.is_ascii_digit())
        && !number.ends_with('.');
    if !number_ok {
        return None;
    }
    let (_, pow10, pow2) = SUFFIXES.iter().find(|(s, _, _)| *s == suffix)?;
    // Parsing `<number>e<pow10>` rounds once; scaling by a power of 2 is exact.
    let value: f64 = format!("0{number}e{pow10}").parse().ok()?;
    Some(value * 2f64.powi(*pow2))
}

/// `5s`, or `1500ms` when not whole seconds, for `kiln serve`'s duration flags.
/// A duration as `kiln serve` parses it, exactly: `5s`, `250ms` or `1500us`.
fn duration_flag(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros().max(1))
    }
}

/// The documents, each with its file name for `--output`.
fn manifests(spec: &K8sSpec) -> Vec<(&'static str, Value)> {
    let mut docs = vec![
        ("deployment.yaml", deployment(spec)),
        ("service.yaml", service(spec)),
    ];
    if let Scaling::Autoscaled {
        min,
        max,
        target_cpu,
    } = spec.scaling
    {
        docs.push(("hpa.yaml", hpa(spec, min, max, target_cpu)));
    }
    docs
}

fn deployment(spec: &K8sSpec) -> Value {
    let mut args = vec![
        "serve".to_string(),
        spec.reference.clone(),
        "--host".into(),
        "0.0.0.0".into(),
        "--port".into(),
        spec.port.to_string(),
        "--drain-timeout".into(),
        duration_flag(spec.drain_timeout),
    ];
    if let Some(poll) = spec.poll_interval {
        args.push("--poll-interval".into());
        args.push(duration_flag(poll));
    }

    let mut env = vec![spec.store.env(crate::cli::EnvVars::BACKEND_STORE_URI)];
    if let Some(artifacts) = &spec.artifacts {
        env.push(artifacts.env(crate::cli::EnvVars::ARTIFACTS_DESTINATION));
    }

    let requests = json!({"cpu": spec.cpu_request, "memory": spec.memory_request});
    let mut limits = json!({"memory": spec.memory_limit});
    if let (Some(cpu), Some(map)) = (&spec.cpu_limit, limits.as_object_mut()) {
        map.insert("cpu".into(), json!(cpu));
    }

    let probe = |path: &str, period: u32, failures: u32| {
        json!({
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        })
    };

    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})];
    if let Some(claim) = &spec.volume_claim {
        mounts.push(json!({"name": "data", "mountPath": DATA_DIR}));
        volumes.push(json!({"name": "data", "persistentVolumeClaim": {"claimName": claim}}));
    }

    let mut container = json!({
        "name": "kiln-serve",
        "image": spec.image,
        "command": ["kiln"],
        "args": args,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": requests, "limits": limits},
        // The server listens only once the model is loaded: give big models time.
        "startupProbe": probe("/v2/health/live", 2, 60),
        "readinessProbe": probe("/v2/health/ready", 5, 2),
        "livenessProbe": probe("/v2/health/live", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", PRE_STOP_SECS.to_string()]}}},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    });
    if let (Some(secret), Some(map)) = (&spec.aws_secret, container.as_object_mut()) {
        map.insert(
            "envFrom".into(),
            json!([{"secretRef": {"name": secret, "optional": true}}]),
        );
    }

    let grace = spec.drain_timeout.as_secs()
        + u64::from(spec.drain_timeout.subsec_nanos() > 0)
        + PRE_STOP_SECS
        + GRACE_MARGIN_SECS;
    let mut deploy_spec = json!({
        "selector": {"matchLabels": spec.selector()},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {
                "labels": spec.labels(),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": spec.port.to_string(),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": {
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": grace,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": UID,
                    "runAsGroup": UID,
                    "fsGroup": UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "topologySpreadConstraints": [{
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": spec.selector()},
                }],
                "containers": [container],
                "volumes": volumes,
            },
        },
    });
    // Under an HPA the Deployment leaves the count to it, so re-applying does not scale down.
    if let (Scaling::Fixed(n), Some(map)) = (spec.scaling, deploy_spec.as_object_mut()) {
        map.insert("replicas".into(), json!(n));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": spec.metadata(),
        "spec": deploy_spec,
    })
}

fn service(spec: &K8sSpec) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": spec.metadata(),
        "spec": {
            "type": "ClusterIP",
            "selector": spec.selector(),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    })
}

fn hpa(spec: &K8sSpec, min: u32, max: u32, target_cpu: u32) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": spec.metadata(),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": target_cpu},
                },
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_names() {
        assert_eq!(
            dns_label("churn-champion").as_deref(),
            Some("churn-champion")
        );
        assert_eq!(
            dns_label("Churn_Model v2@champion").as_deref(),
            Some("churn-model-v2-champion")
        );
        assert_eq!(dns_label("--a..b--").as_deref(), Some("a-b"));
        assert_eq!(dns_label("3d-model-x").as_deref(), Some("m-3d-model-x"));
        assert_eq!(dns_label("___"), None);
        assert_eq!(dns_label("日本"), None);
        assert_eq!(dns_label("123"), None);
        let long = dns_label(&format!("{}-x", "a".repeat(62))).unwrap_or_default();
        assert_eq!(long.len(), 62, "truncated and trailing `-` trimmed: {long}");
    }

    #[test]
    fn default_names() {
        assert_eq!(
            default_name("churn", "champion").as_deref(),
            Some("churn-champion")
        );
        assert_eq!(
            default_name("Churn_Model", "v3").as_deref(),
            Some("churn-model-v3")
        );
        assert_eq!(default_name("___", "champion"), None);
        assert_eq!(default_name("churn", "@@").as_deref(), Some("churn"));
        let long = "m".repeat(80);
        let a = default_name(&long, "champion").unwrap_or_default();
        let b = default_name(&long, "challenger").unwrap_or_default();
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME);
        assert!(a.ends_with("-champion") && b.ends_with("-challenger"));
    }

    #[test]
    fn quantities() {
        for ok in ["250m", "1", "0.5", "256Mi", "1Gi", "2G", "100k", ".5"] {
            assert!(quantity(ok).is_some(), "{ok}");
        }
        for bad in ["", "m", "1.2.3", "256MB", "-1", "1 Gi", "x", "1."] {
            assert!(quantity(bad).is_none(), "{bad}");
        }
        let q = |text: &str| quantity(text).unwrap_or(f64::NAN);
        assert_eq!(q("1Gi").to_bits(), q("1073741824").to_bits());
        assert_eq!(q("1Ki").to_bits(), q("1.024k").to_bits());
        assert_eq!(q("500m").to_bits(), q("0.5").to_bits());
        assert_eq!(q("100m").to_bits(), q(".1").to_bits());
        assert!(q("2Gi") > q("1Gi") && q("1G") < q("1Gi") && q("1001m") > q("1"));
    }

    #[test]
    fn aliases_follow_the_registry() {
        for ok in [
            "champion",
            "challenger-2",
            "Blue_Green",
            "v",
            "vnext",
            "v1a",
            "latest2",
        ] {
            assert!(check_alias(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "bad alias",
            "a/b",
            "a@b",
            "é",
            "latest",
            "LATEST",
            "v1",
            "v007",
            &long,
        ] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(has_password("postgresql://kiln:secret@db:5432/kiln"));
        assert!(!has_password("postgresql://kiln@db:5432/kiln"));
        assert!(!has_password("sqlite:////var/lib/kiln/kiln.db"));
        assert!(!has_password("postgresql://db/kiln?user=a:b@c"));
        assert!(has_password(
            "postgresql://kiln@db/kiln?sslmode=require&password=x"
        ));
    }

    #[test]
    fn references() {
        assert_eq!(
            model_reference("churn", "champion", None).ok(),
            Some(("models:/churn@champion".into(), "champion".into()))
        );
        assert_eq!(
            model_reference("churn", "champion", Some(3)).ok(),
            Some(("models:/churn/3".into(), "v3".into()))
        );
        assert!(model_reference("a@b", "champion", None).is_err());
        assert!(model_reference("churn", "a/b", None).is_err());
        assert!(model_reference("", "champion", None).is_err());
        assert!(model_reference("churn", "champion", Some(0)).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_flag(Duration::from_secs(30)), "30s");
        assert_eq!(duration_flag(Duration::from_millis(1500)), "1500ms");
    }
}
