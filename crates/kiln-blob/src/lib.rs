//! Object storage for artifacts: a small async [`BlobStore`] core with a local-directory and an
//! S3-compatible implementation, opened from a URI by [`open`]. Every path goes through
//! [`BlobPath`], which confines it to the store's root.
//!
//! Main types:
//! - [`BlobStore`]: the trait every backend implements (`put`/`get`/`list`/`delete`), streaming
//!   bodies as [`ByteStream`]s and returning [`BlobObject`]s and [`BlobEntry`]s;
//! - [`BlobPath`]: a validated relative path (no `..`, absolute, encoded or Windows forms);
//! - [`LocalStore`]: a directory on disk (`file:///dir` or a plain path), atomic writes via a
//!   temporary file and rename, symlinks never followed out of the root;
//! - [`S3Store`]: an S3-compatible bucket (`s3://bucket[/prefix]`) through `object_store`,
//!   multipart uploads with bounded memory;
//! - [`BlobError`]: every failure, with the artifact path it concerns.
//!
//! ```
//! use kiln_blob::BlobPath;
//! assert!(BlobPath::parse("1/abc/artifacts/model.pkl").is_ok());
//! assert!(BlobPath::parse("../etc/passwd").is_err());
//! ```

mod local;
mod path;
mod s3;

pub use local::LocalStore;
pub use object_store::aws::AmazonS3Builder;
pub use path::{BlobPath, MAX_PATH_LEN, MAX_SEGMENT_LEN};
pub use s3::S3Store;

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of bytes in or out of a store.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// One child of a listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// Path relative to the store root.
    pub path: BlobPath,
    pub is_dir: bool,
    /// `None` for directories.
    pub size: Option<u64>,
}

/// An object being read.
pub struct BlobObject {
    pub size: u64,
    pub stream: ByteStream,
}

/// One byte range of an object, as an HTTP `Range: bytes=` header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b`: `a` through `b`, inclusive.
    Bounded(u64, u64),
    /// `bytes=a-`: from `a` to the end.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parse a single-range `Range` header value; `None` for anything else (several ranges,
    /// other units, malformed), which HTTP says to answer with the whole object.
    pub fn parse(header: &str) -> Option<Self> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        match (a.is_empty(), b.is_empty()) {
            (true, false) => Some(Self::Suffix(b.parse().ok()?)),
            (false, true) => Some(Self::From(a.parse().ok()?)),
            (false, false) => {
                let (a, b) = (a.parse().ok()?, b.parse().ok()?);
                (a <= b).then_some(Self::Bounded(a, b))
            }
            (true, true) => None,
        }
    }

    /// The `Range` header value that asks for this range.
    pub fn header_value(self) -> String {
        match self {
            Self::Bounded(a, b) => format!("bytes={a}-{b}"),
            Self::From(a) => format!("bytes={a}-"),
            Self::Suffix(n) => format!("bytes=-{n}"),
        }
    }

    /// The half-open `start..end` this range covers in an object of `size` bytes, or `None`
    /// when it covers nothing (HTTP 416).
    pub fn resolve(self, size: u64) -> Option<std::ops::Range<u64>> {
        let (start, end) = match self {
            Self::Bounded(a, b) => (a, b.saturating_add(1).min(size)),
            Self::From(a) => (a, size),
            Self::Suffix(n) => (size.saturating_sub(n), size),
        };
        (start < end).then_some(start..end)
    }
}

/// A part of an object: bytes `range` of `total`.
pub struct RangedObject {
    pub range: std::ops::Range<u64>,
    pub total: u64,
    pub stream: ByteStream,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("Invalid artifact path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("Artifact `{0}` not found")]
    NotFound(String),
    #[error("Invalid artifact store URI `{uri}`: {reason}")]
    InvalidUri { uri: String, reason: String },
    /// The client's upload body failed (it disconnected, or sent a malformed body).
    #[error("Reading the upload of `{path}` failed")]
    Upload {
        path: String,
        #[source]
        err: std::io::Error,
    },
    /// A file where a directory is needed, or a directory where a file would go.
    #[error("Cannot write artifact `{path}`: {reason}")]
    Conflict { path: String, reason: String },
    #[error("Failed to access artifact `{path}`")]
    Io {
        path: String,
        #[source]
        err: std::io::Error,
    },
    #[error("Object store request for `{path}` failed")]
    ObjectStore {
        path: String,
        #[source]
        err: object_store::Error,
    },
}

/// The small core every artifact backend implements.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stream `body` into `path`, replacing what was there; returns the bytes written. The body is
    /// never held in memory whole, and a failed upload leaves no partial object behind.
    async fn put(&self, path: &BlobPath, body: ByteStream) -> Result<u64, BlobError>;
    /// Stream the object at `path`; [`BlobError::NotFound`] if there is none.
    async fn get(&self, path: &BlobPath) -> Result<BlobObject, BlobError>;
    /// Immediate children of `dir`, sorted by path; empty when `dir` is missing or a file.
    async fn list(&self, dir: &BlobPath) -> Result<Vec<BlobEntry>, BlobError>;
    /// Stream part of the object at `path`: `Ok(Err(total))` when `range` covers none of its
    /// `total` bytes. Only the part is read.
    async fn get_range(
        &self,
        path: &BlobPath,
        range: ByteRange,
    ) -> Result<Result<RangedObject, u64>, BlobError>;
    /// Remove the object at `path`, or everything under it when it is a directory/prefix.
    /// Removing nothing is not an error.
    async fn delete(&self, path: &BlobPath) -> Result<(), BlobError>;
    /// The store's URI, e.g. `file:///srv/artifacts` or `s3://bucket/prefix`.
    fn uri(&self) -> String;
    /// Remove what uploads that never finished left behind (their hidden temporary files, for a
    /// local store) when last written before `before`; with `dry_run`, only find them. Returns
    /// their paths (relative to the root). Uploads in progress write continuously, so a cutoff
    /// an hour back leaves them alone. Stores with nothing to sweep return nothing.
    async fn sweep_abandoned(
        &self,
        before: std::time::SystemTime,
        dry_run: bool,
    ) -> Result<Vec<String>, BlobError> {
        let _ = (before, dry_run);
        Ok(Vec::new())
    }
}

/// Open a store from `file:///dir`, a plain directory path, or `s3://bucket[/prefix]`.
/// S3 settings come from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_SESSION_TOKEN`) plus `AWS_ALLOW_HTTP` for loopback endpoints.
///
/// Local forms: `file:///dir`, `file://localhost/dir`, `file:/dir`, `file:dir` (percent-decoded)
/// and plain paths; the directory is created if missing. The region defaults to `us-east-1`,
/// an `http://` endpoint allows plain HTTP, and requests are path-style (see
/// [`S3Store::from_builder`]). Any other scheme is [`BlobError::InvalidUri`].
pub fn open(uri: &str) -> Result<Arc<dyn BlobStore>, BlobError> {
    let invalid = |reason: String| BlobError::InvalidUri {
        uri: uri.to_owned(),
        reason,
    };
    if uri.is_empty() {
        return Err(invalid("the URI is empty".into()));
    }
    if let Some(rest) = strip_scheme(uri, "file") {
        let path = file_uri_path(rest).map_err(invalid)?;
        return Ok(Arc::new(LocalStore::new(path)?));
    }
    if let Some(rest) = strip_scheme(uri, "s3") {
        let Some(rest) = rest.strip_prefix("//") else {
            return Err(invalid("expected `s3://bucket[/prefix]`".into()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        return Ok(Arc::new(S3Store::new(bucket, prefix)?));
    }
    if let Some(scheme) = uri_scheme(uri) {
        return Err(invalid(format!(
            "unsupported scheme `{scheme}` (supported: `file://`, `s3://`, or a plain directory path)"
        )));
    }
    Ok(Arc::new(LocalStore::new(uri)?))
}

/// `uri` without its `scheme:` (case-insensitive), when it has that scheme.
fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    let (head, rest) = uri.split_at_checked(scheme.len())?;
    if head.eq_ignore_ascii_case(scheme) {
        rest.strip_prefix(':')
    } else {
        None
    }
}

/// The scheme of `uri` if it looks like `scheme:...` (RFC 3986). One-letter schemes are not
/// schemes: they are Windows drive letters (`C:\data`).
fn uri_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && scheme.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// The local path of a `file:` URI, given what follows `file:`: `///dir`, `//localhost/dir`,
/// `/dir` or `dir`, percent-decoded.
fn file_uri_path(rest: &str) -> Result<std::path::PathBuf, String> {
    let path = match rest.strip_prefix("//") {
        Some(after) if after.starts_with('/') || after.is_empty() => after,
        Some(after) => match after.split_once('/') {
            Some((host, _)) if host.eq_ignore_ascii_case("localhost") => {
                after.get(host.len()..).unwrap_or_default()
            }
            _ => return Err("file URIs must name a local path (`file:///dir`)".into()),
        },
        None => rest,
    };
    decode_file_path(path)
}

fn decode_file_path(path: &str) -> Result<std::path::PathBuf, String> {
    if path.is_empty() {
        return Err("the file URI has no path".into());
    }
    if path.contains(['?', '#']) {
        return Err("file URIs must not have a query or fragment".into());
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "the file URI path is not valid UTF-8 once decoded".to_string())?;
    if decoded.contains('\0') {
        return Err("the file URI path contains NUL".into());
    }
    Ok(std::path::PathBuf::from(decoded.into_owned()))
}

/// The URI scheme the tracking server hands to clients for artifacts in its store.
pub const ARTIFACT_URI_SCHEME: &str = "mlflow-artifacts:";

/// The store path of a host-less `mlflow-artifacts:/<path>` URI (also `mlflow-artifacts:///<path>`);
/// `None` for any other URI, for a URI with a host (`mlflow-artifacts://host/…`, which would send
/// clients elsewhere), and for paths that fail [`BlobPath::parse`].
pub fn artifact_uri_path(uri: &str) -> Option<BlobPath> {
    let rest = uri.strip_prefix(ARTIFACT_URI_SCHEME)?;
    let rest = match rest.strip_prefix("///") {
        Some(r) => r,
        None if rest.starts_with("//") => return None,
        None => rest.strip_prefix('/').unwrap_or(rest),
    };
    BlobPath::parse(rest.trim_end_matches('/')).ok()
}

/// The bytes `want` of a stream of a whole object (for a source that cannot seek, such as a
/// server that ignored a `Range` header); stops reading once past them.
pub fn slice_stream(stream: ByteStream, want: std::ops::Range<u64>) -> ByteStream {
    use futures::StreamExt as _;
    let end = want.end;
    stream
        .scan(0u64, move |offset, chunk| {
            if *offset >= end {
                return std::future::ready(None);
            }
            let out = chunk.map(|bytes| {
                let at = *offset;
                *offset += bytes.len() as u64;
                let len = bytes.len() as u64;
                let lo = want.start.saturating_sub(at).min(len);
                let hi = want.end.saturating_sub(at).min(len);
                #[allow(clippy::cast_possible_truncation)]
                bytes.slice(lo as usize..hi as usize)
            });
            std::future::ready(Some(out))
        })
        .filter(|chunk| std::future::ready(!matches!(chunk, Ok(b) if b.is_empty())))
        .boxed()
}

#[cfg(test)]
mod range_tests {
    use super::ByteRange;

    #[tokio::test]
    async fn slicing_a_stream_keeps_only_the_range() {
        use futures::StreamExt as _;
        let chunks = || {
            futures::stream::iter(
                [&b"0123"[..], b"4567", b"89"]
                    .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from_static(c))),
            )
            .boxed()
        };
        for (want, expect) in [
            (0..10, &b"0123456789"[..]),
            (3..6, b"345"),
            (8..10, b"89"),
            (4..8, b"4567"),
        ] {
            let got: Vec<u8> = super::slice_stream(chunks(), want)
                .map(|c| c.unwrap().to_vec())
                .concat()
                .await;
            assert_eq!(got, expect);
        }
    }

    #[test]
    fn range_headers() {
        assert_eq!(
            ByteRange::parse("bytes=0-99"),
            Some(ByteRange::Bounded(0, 99))
        );
        assert_eq!(ByteRange::parse("bytes=100-"), Some(ByteRange::From(100)));
        assert_eq!(ByteRange::parse("bytes=-5"), Some(ByteRange::Suffix(5)));
        for bad in [
            "bytes=5-1",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=-",
            "bytes=a-b",
            "",
        ] {
            assert_eq!(ByteRange::parse(bad), None, "{bad}");
        }
        assert_eq!(ByteRange::Bounded(5, 9).resolve(7), Some(5..7));
        assert_eq!(ByteRange::From(7).resolve(7), None);
        assert_eq!(ByteRange::Suffix(0).resolve(7), None);
        assert_eq!(ByteRange::Suffix(3).resolve(0), None);
    }
}
