//! Artifact URIs as the MLflow client sees them (`mlflow-artifacts:/<path>`) mapped to confined
//! [`BlobPath`]s, and validation of client-supplied locations and sources.

use kiln_api::ApiError;
use kiln_blob::BlobPath;

pub const SCHEME: &str = kiln_blob::ARTIFACT_URI_SCHEME;

/// The store path of an artifact URI the server handed out, `None` if it points elsewhere.
pub fn to_blob_path(uri: &str) -> Option<BlobPath> {
    kiln_blob::artifact_uri_path(uri)
}

fn rejects(what: &str, value: &str, why: &str) -> ApiError {
    ApiError::invalid(format!("Invalid {what} '{value}': {why}"))
}

/// Normalise an experiment's `artifact_location`: it must stay inside the server's artifact root,
/// given as `mlflow-artifacts:/<path>` or as the root's own URI plus a path.
pub fn validate_artifact_location(location: &str, root_uri: &str) -> Result<String, ApiError> {
    let path = location_path(location, root_uri).ok_or_else(|| {
        rejects(
            "artifact_location",
            location,
            "artifacts must stay inside the server's artifact root",
        )
    })?;
    if path.as_str().is_empty() {
        return Err(rejects(
            "artifact_location",
            location,
            "the artifact root itself cannot be an experiment location",
        ));
    }
    Ok(format!("{SCHEME}/{}", path.as_str()))
}

fn location_path(location: &str, root_uri: &str) -> Option<BlobPath> {
    if location.starts_with(SCHEME) {
        return to_blob_path(location);
    }
    let root = root_uri.trim_end_matches('/');
    let rest = location.strip_prefix(root)?;
    let rest = rest.strip_prefix('/')?;
    BlobPath::parse(rest.trim_end_matches('/')).ok()
}

/// Validate a model version `source`: a logged model (`models:/m-…`), another version
/// (`models:/<name>/<version>`, what `copy_model_version` sends), a run artifact
/// (`runs:/<run_id>/<path>`) or a location inside the artifact root.
pub fn validate_source(source: &str, root_uri: &str) -> Result<(), ApiError> {
    if let Some(id) = source.strip_prefix("models:/") {
        if kiln_types::is_valid_model_id(id.trim_end_matches('/')) {
            return Ok(());
        }
        if let Some((name, version)) = id.rsplit_once('/') {
            if !name.is_empty()
                && !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit())
            {
                return Ok(());
            }
        }
        return Err(rejects(
            "source",
            source,
            "expected models:/m-<id> or models:/<name>/<version>",
        ));
    }
    if let Some(rest) = source.strip_prefix("runs:/") {
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        if kiln_types::is_valid_run_id(run_id)
            && BlobPath::parse(path.trim_end_matches('/')).is_ok()
        {
            return Ok(());
        }
        return Err(rejects(
            "source",
            source,
            "expected runs:/<run_id>/<relative path>",
        ));
    }
    if location_path(source, root_uri).is_some() {
        return Ok(());
    }
    // A model kept in another bucket (`mlflow.register_model("s3://team-models/churn", …)`):
    // recorded as MLflow records it, and handed back as it is by get-download-uri for the
    // client to fetch with its own credentials. The server never reads or writes it.
    if external_object_uri(source) && !same_bucket(source, root_uri) {
        return Ok(());
    }
    Err(rejects(
        "source",
        source,
        "model sources must be a logged model, a run artifact, a path inside the artifact root or an object-store URI (s3://bucket/key, gs://, wasbs://, abfss://, hdfs://)",
    ))
}

/// Whether `source` names the bucket of the server's own artifact root (then only a place
/// inside the root will do: a sibling prefix there is another tenant's, or a prefix trick).
fn same_bucket(source: &str, root_uri: &str) -> bool {
    let bucket_of = |uri: &str| {
        uri.split_once("://").map(|(scheme, rest)| {
            (
                scheme.to_string(),
                rest.split('/').next().unwrap_or("").to_string(),
            )
        })
    };
    matches!((bucket_of(source), bucket_of(root_uri)), (Some(a), Some(b)) if a == b)
}

/// An object-store URI outside this server: a known remote scheme, a bucket (host), and a
/// plain key — no `..` or `.` segment, no percent-escapes, query, fragment, backslash or
/// control character, so nothing in it can be read as a path trick.
fn external_object_uri(source: &str) -> bool {
    const SCHEMES: [&str; 6] = ["s3", "s3a", "gs", "wasbs", "abfss", "hdfs"];
    let Some((scheme, rest)) = source.split_once("://") else {
        return false;
    };
    if !SCHEMES.contains(&scheme) {
        return false;
    }
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let clean = |s: &str| {
        !s.chars()
            .any(|c| c.is_control() || matches!(c, '%' | '?' | '#' | '\\'))
    };
    !bucket.is_empty()
        && clean(bucket)
        && clean(key)
        && key.split('/').all(|seg| seg != ".." && seg != ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris() {
        assert_eq!(
            to_blob_path("mlflow-artifacts:/1/a").map(|p| p.to_string()),
            Some("1/a".into())
        );
        assert_eq!(
            to_blob_path("mlflow-artifacts:///1/a").map(|p| p.to_string()),
            Some("1/a".into())
        );
        assert!(to_blob_path("mlflow-artifacts://evil.example:80/x").is_none());
        assert!(to_blob_path("mlflow-artifacts:/../x").is_none());
        assert!(to_blob_path("s3://b/x").is_none());
    }

    #[test]
    fn external_object_store_sources() {
        let root = "file:///srv/artifacts";
        for good in ["s3://team-models/churn/1", "gs://b/m", "s3://b"] {
            assert!(validate_source(good, root).is_ok(), "{good}");
        }
        for bad in [
            "s3:///x",
            "s3://b/../x",
            "s3://b/a/./x",
            "s3://b/%2e%2e/x",
            "s3://b/x?versionId=1",
            "s3://b/x#frag",
            "s3://b/a\\b",
            "ftp://b/x",
            "file://b/x",
        ] {
            assert!(validate_source(bad, root).is_err(), "{bad}");
        }
    }

    #[test]
    fn locations_stay_inside_the_root() {
        let root = "file:///srv/artifacts";
        assert_eq!(
            validate_artifact_location("mlflow-artifacts:/team/a", root).ok(),
            Some("mlflow-artifacts:/team/a".into())
        );
        assert_eq!(
            validate_artifact_location("file:///srv/artifacts/x", root).ok(),
            Some("mlflow-artifacts:/x".into())
        );
        for bad in [
            "file:///etc",
            "/etc",
            "../x",
            "s3://other/x",
            "file:///srv/artifacts/../x",
            "file:///srv/artifacts2/x",
            "mlflow-artifacts:/",
        ] {
            assert!(validate_artifact_location(bad, root).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources() {
        let root = "s3://bucket/kiln";
        assert!(validate_source("models:/m-0123456789abcdef0123456789abcdef", root).is_ok());
        assert!(validate_source("runs:/0123456789abcdef0123456789abcdef/model", root).is_ok());
        assert!(validate_source("s3://bucket/kiln/1/x/artifacts/model", root).is_ok());
        for bad in [
            "/etc/passwd",
            "file:///etc",
            "../../x",
            "mlflow-artifacts:/../x",
            "runs:/abc/../../x",
            "models:/../x",
            "s3://bucket/kilnx/y",
        ] {
            assert!(validate_source(bad, root).is_err(), "{bad}");
        }
    }
}
