//! `kiln gc`: permanently remove soft-deleted runs and experiments, their logged models and every
//! artifact they own, on any artifact store. Artifacts go first and metadata last, so an
//! interrupted collection is simply resumed by the next one.

use std::sync::Arc;

use kiln_blob::{BlobPath, BlobStore};
use kiln_store::{GcPlan, TrackingStore};
use serde::Serialize;

use crate::error::error_chain;
use crate::uris;

/// What a collection removed (or would remove, for a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub runs: Vec<String>,
    pub logged_models: Vec<String>,
    pub experiments: Vec<String>,
    /// Artifact store paths removed.
    pub artifact_paths: Vec<String>,
    /// Artifact locations outside the store that were left alone.
    pub skipped_locations: Vec<String>,
    /// Artifact directories left alone because something that stays lives inside them (an
    /// experiment sharing a deleted experiment's location, a model version's source).
    pub shared_locations: Vec<SharedLocation>,
    /// Soft-deleted runs and logged models left in place, with why.
    pub kept: Vec<Kept>,
    /// Leftovers of uploads that never finished (a server killed mid-upload), last written over
    /// [`ABANDONED_AFTER`] ago: removed (or, for a dry run, found).
    pub abandoned_uploads: Vec<String>,
    pub dry_run: bool,
}

/// A soft-deleted object that the collection leaves alone.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub kind: &'static str,
    pub id: String,
    pub reason: String,
}

/// An artifact directory that was not removed because a live location lies inside it.
#[derive(Debug, Clone, Serialize)]
pub struct SharedLocation {
    pub path: String,
    pub in_use_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("Failed to plan the collection")]
    Plan(#[source] kiln_store::StoreError),
    #[error("Failed to delete artifacts at `{path}`: {message}")]
    Artifacts { path: String, message: String },
    #[error("Failed to remove collected metadata")]
    Purge(#[source] kiln_store::StoreError),
    #[error("Store task failed: {0}")]
    Task(String),
}

/// The directory that owns an artifact URI: `<eid>/<run_id>` for `<eid>/<run_id>/artifacts`.
fn owning_dir(uri: &str) -> Option<BlobPath> {
    let path = uris::to_blob_path(uri)?;
    if path.file_name() == Some("artifacts") {
        return path.parent();
    }
    Some(path)
}

/// Whether `inner` is `outer` or lies under it.
fn is_within(inner: &BlobPath, outer: &BlobPath) -> bool {
    let mut inner = inner.segments();
    outer.segments().all(|seg| inner.next() == Some(seg))
}

/// How long an upload's temporary file must have gone unwritten before `kiln gc` takes it for
/// abandoned (an upload in progress writes continuously).
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Plan, delete artifacts, then purge metadata. `older_than_ms` is a cutoff timestamp.
pub async fn collect(
    store: Arc<dyn TrackingStore>,
    blobs: Arc<dyn BlobStore>,
    older_than_ms: Option<i64>,
    dry_run: bool,
) -> Result<GcReport, GcError> {
    let s = store.clone();
    let plan: GcPlan = tokio::task::spawn_blocking(move || s.collectable(older_than_ms))
        .await
        .map_err(|e| GcError::Task(e.to_string()))?
        .map_err(GcError::Plan)?;

    let mut report = GcReport {
        runs: plan.runs.iter().map(|r| r.run_id.clone()).collect(),
        logged_models: plan
            .logged_models
            .iter()
            .map(|m| m.model_id.clone())
            .collect(),
        experiments: plan
            .experiments
            .iter()
            .map(|e| e.experiment_id.clone())
            .collect(),
        kept: plan
            .kept
            .iter()
            .map(|k| Kept {
                kind: k.kind,
                id: k.id.clone(),
                reason: k.reason.clone(),
            })
            .collect(),
        dry_run,
        ..GcReport::default()
    };
    let live: Vec<(BlobPath, &str)> = plan
        .live_locations
        .iter()
        .filter_map(|uri| Some((uris::to_blob_path(uri)?, uri.as_str())))
        .collect();
    let uris = plan
        .runs
        .iter()
        .map(|r| r.artifact_uri.as_str())
        .chain(plan.logged_models.iter().map(|m| m.artifact_uri.as_str()))
        .chain(
            plan.experiments
                .iter()
                .map(|e| e.artifact_location.as_str()),
        );
    let mut paths = Vec::new();
    for uri in uris {
        match owning_dir(uri) {
            Some(p) if !p.is_root() => match live.iter().find(|(l, _)| is_within(l, &p)) {
                Some((_, user)) => report.shared_locations.push(SharedLocation {
                    path: p.to_string(),
                    in_use_by: (*user).to_string(),
                }),
                None => paths.push(p),
            },
            _ => report.skipped_locations.push(uri.to_string()),
        }
    }
    paths.sort();
    paths.dedup();
    report.shared_locations.sort_by(|a, b| a.path.cmp(&b.path));
    report.shared_locations.dedup_by(|a, b| a.path == b.path);
    for path in &paths {
        if !dry_run {
            blobs.delete(path).await.map_err(|e| GcError::Artifacts {
                path: path.to_string(),
                message: error_chain(&e),
            })?;
        }
        report.artifact_paths.push(path.to_string());
    }
    if !dry_run {
        tokio::task::spawn_blocking(move || store.purge(&plan))
            .await
            .map_err(|e| GcError::Task(e.to_string()))?
            .map_err(GcError::Purge)?;
    }
    let cutoff = std::time::SystemTime::now()
        .checked_sub(ABANDONED_AFTER)
        .unwrap_or(std::time::UNIX_EPOCH);
    report.abandoned_uploads =
        blobs
            .sweep_abandoned(cutoff, dry_run)
            .await
            .map_err(|e| GcError::Artifacts {
                path: String::new(),
                message: error_chain(&e),
            })?;
    Ok(report)
}

/// Parse an age such as `30d`, `12h`, `45m`, `90s` or `2w` into milliseconds.
pub fn parse_age(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Some(30 * 86_400_000));
        assert_eq!(parse_age("2h"), Some(7_200_000));
        assert_eq!(parse_age("0s"), Some(0));
        assert_eq!(parse_age("30"), None);
        assert_eq!(parse_age("d"), None);
        assert_eq!(parse_age("5y"), None);
    }

    #[test]
    fn owning_dirs() {
        assert_eq!(
            owning_dir("mlflow-artifacts:/1/abc/artifacts").map(|p| p.to_string()),
            Some("1/abc".into())
        );
        assert_eq!(
            owning_dir("mlflow-artifacts:/1/models/m-1/artifacts").map(|p| p.to_string()),
            Some("1/models/m-1".into())
        );
        assert_eq!(
            owning_dir("mlflow-artifacts:/7").map(|p| p.to_string()),
            Some("7".into())
        );
        assert!(owning_dir("s3://elsewhere/x").is_none());
        assert!(owning_dir("mlflow-artifacts:/../x").is_none());
    }
}
