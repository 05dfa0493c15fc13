//! [`S3Store`]: artifacts in an S3-compatible bucket, under an optional key prefix, through the
//! `object_store` crate.
//!
//! Small bodies are sent with one `PUT`; larger ones are streamed as a multipart upload of
//! [`PART_SIZE`] parts with at most [`MAX_PARTS_IN_FLIGHT`] parts uploading at once, so memory
//! stays bounded whatever the object size, and the upload is aborted if the body fails.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ClientConfigKey, ObjectStore, PutPayload, PutPayloadMut};

use crate::{
    BlobEntry, BlobError, BlobObject, BlobPath, BlobStore, ByteRange, ByteStream, RangedObject,
};

/// Size of each part of a multipart upload, and the largest body sent with a single `PUT`.
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;
/// How many parts of one upload may be in flight at once.
pub(crate) const MAX_PARTS_IN_FLIGHT: usize = 4;
/// Region used when the environment names none.
const DEFAULT_REGION: &str = "us-east-1";

/// A [`BlobStore`] in an S3 bucket (`s3://bucket[/prefix]`).
#[derive(Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    /// Validated key prefix without a trailing `/`; empty for the bucket root.
    prefix: String,
}

impl fmt::Debug for S3Store {
    // Not derived: the client's configuration holds credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// The store for `s3://{bucket}/{prefix}`, configured from the usual `AWS_*` environment
    /// variables ([`AmazonS3Builder::from_env`]).
    pub fn new(bucket: &str, prefix: &str) -> Result<Self, BlobError> {
        Self::from_builder(AmazonS3Builder::from_env(), bucket, prefix)
    }

    /// The store for `s3://{bucket}/{prefix}` using an explicitly configured `builder`. The
    /// bucket is set on it, the region defaults to `us-east-1`, plain HTTP is allowed when the
    /// endpoint is `http://…`, and requests use path style (`{endpoint}/{bucket}/{key}`) so
    /// that local S3-compatible servers work.
    pub fn from_builder(
        builder: AmazonS3Builder,
        bucket: &str,
        prefix: &str,
    ) -> Result<Self, BlobError> {
        let uri = format!("s3://{bucket}/{prefix}");
        let invalid = |reason: String| BlobError::InvalidUri {
            uri: uri.clone(),
            reason,
        };
        validate_bucket(bucket).map_err(|r| invalid(r.into()))?;
        let prefix = BlobPath::parse(prefix)
            .map_err(|e| invalid(format!("invalid key prefix: {e}")))?
            .as_str()
            .to_owned();

        let mut builder = builder
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false);
        if builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .is_none()
        {
            builder = builder.with_region(DEFAULT_REGION);
        }
        let plain_http = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|e| {
                e.get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
            });
        if plain_http {
            builder = builder.with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp),
                "true",
            );
        }
        let store = builder
            .build()
            .map_err(|e| invalid(format!("cannot configure the S3 client: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (no leading or trailing `/`); empty for the bucket root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of `path`; `None` for the root of a store without prefix.
    fn key(&self, path: &BlobPath) -> Result<Option<ObjectPath>, BlobError> {
        let raw = match (self.prefix.is_empty(), path.is_root()) {
            (true, true) => return Ok(None),
            (true, false) => path.as_str().to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{}", self.prefix, path.as_str()),
        };
        ObjectPath::parse(raw)
            .map(Some)
            .map_err(|_| BlobError::InvalidPath {
                path: path.to_string(),
                reason: "not a valid object key",
            })
    }

    /// The object key of a non-root `path`.
    fn object_key(&self, path: &BlobPath) -> Result<ObjectPath, BlobError> {
        self.key(path)?.ok_or_else(|| BlobError::InvalidPath {
            path: String::new(),
            reason: "the store root is not an object",
        })
    }

    /// The store path of a listed key, if it lies under the prefix and is a valid path.
    fn blob_path(&self, location: &ObjectPath) -> Option<BlobPath> {
        let raw = location.as_ref();
        let rel = if self.prefix.is_empty() {
            raw
        } else {
            raw.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        match BlobPath::parse(rel) {
            Ok(path) if !path.is_root() => Some(path),
            _ => {
                tracing::debug!(
                    key = raw,
                    "skipping object key that is not a valid artifact path"
                );
                None
            }
        }
    }

    /// Stream the rest of `body` after `head` into a multipart upload: parts of at least
    /// [`PART_SIZE`], at most [`MAX_PARTS_IN_FLIGHT`] uploading at once. Any failure (the body,
    /// a part, the last part included, or completing) aborts the upload, so no incomplete
    /// multipart upload is left in the bucket.
    async fn put_multipart(
        &self,
        path: &BlobPath,
        key: &ObjectPath,
        head: Vec<Bytes>,
        mut written: u64,
        mut body: ByteStream,
    ) -> Result<u64, BlobError> {
        let mut upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| store_error(path, e))?;
        let streamed: Result<(), BlobError> = async {
            let mut parts: FuturesUnordered<object_store::UploadPart> = FuturesUnordered::new();
            let mut part = PutPayloadMut::new();
            for chunk in head {
                part.push(chunk);
            }
            loop {
                let next = body.next().await;
                let end = next.is_none();
                if let Some(chunk) = next {
                    let chunk = chunk.map_err(|err| BlobError::Upload {
                        path: path.to_string(),
                        err,
                    })?;
                    written += chunk.len() as u64;
                    part.push(chunk);
                }
                if part.content_length() >= PART_SIZE || (end && part.content_length() > 0) {
                    while parts.len() >= MAX_PARTS_IN_FLIGHT {
                        if let Some(done) = parts.next().await {
                            done.map_err(|e| store_error(path, e))?;
                        }
                    }
                    let full = std::mem::replace(&mut part, PutPayloadMut::new());
                    parts.push(upload.put_part(full.freeze()));
                }
                if end {
                    break;
                }
            }
            while let Some(done) = parts.next().await {
                done.map_err(|e| store_error(path, e))?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = streamed {
            if let Err(abort_err) = upload.abort().await {
                tracing::warn!(artifact = %path, error = %abort_err, "could not abort multipart upload");
            }
            return Err(err);
        }
        if let Err(e) = upload.complete().await {
            if let Err(abort_err) = upload.abort().await {
                tracing::warn!(artifact = %path, error = %abort_err, "could not abort multipart upload");
            }
            return Err(store_error(path, e));
        }
        Ok(written)
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put(&self, path: &BlobPath, mut body: ByteStream) -> Result<u64, BlobError> {
        if path.is_root() {
            return Err(BlobError::InvalidPath {
                path: String::new(),
                reason: "cannot write an object at the store root",
            });
        }
        let key = self.object_key(path)?;

        // Buffer up to one part: bodies that end within it go in a single PUT.
        let mut head = Vec::new();
        let mut buffered = 0usize;
        while buffered < PART_SIZE {
            match body.next().await {
                Some(Ok(chunk)) => {
                    buffered += chunk.len();
                    head.push(chunk);
                }
                Some(Err(err)) => {
                    return Err(BlobError::Upload {
                        path: path.to_string(),
                        err,
                    })
                }
                None => {
                    self.store
                        .put(&key, PutPayload::from_iter(head))
                        .await
                        .map_err(|e| store_error(path, e))?;
                    return Ok(buffered as u64);
                }
            }
        }
        self.put_multipart(path, &key, head, buffered as u64, body)
            .await
    }

    async fn get(&self, path: &BlobPath) -> Result<BlobObject, BlobError> {
        if path.is_root() {
            return Err(BlobError::NotFound(String::new()));
        }
        let key = self.object_key(path)?;
        let result = self
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(path, e))?;
        Ok(BlobObject {
            size: result.meta.size,
            stream: result.into_stream().map_err(std::io::Error::other).boxed(),
        })
    }

    async fn get_range(
        &self,
        path: &BlobPath,
        range: ByteRange,
    ) -> Result<Result<RangedObject, u64>, BlobError> {
        if path.is_root() {
            return Err(BlobError::NotFound(String::new()));
        }
        let key = self.object_key(path)?;
        let total = self
            .store
            .head(&key)
            .await
            .map_err(|e| store_error(path, e))?
            .size;
        let Some(want) = range.resolve(total) else {
            return Ok(Err(total));
        };
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(want.clone())),
            ..object_store::GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&key, options)
            .await
            .map_err(|e| store_error(path, e))?;
        Ok(Ok(RangedObject {
            range: want,
            total,
            stream: result.into_stream().map_err(std::io::Error::other).boxed(),
        }))
    }

    async fn list(&self, dir: &BlobPath) -> Result<Vec<BlobEntry>, BlobError> {
        let key = self.key(dir)?;
        let listing = match self.store.list_with_delimiter(key.as_ref()).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(dir, e)),
        };
        let dirs = listing
            .common_prefixes
            .iter()
            .filter_map(|p| self.blob_path(p))
            .map(|path| BlobEntry {
                path,
                is_dir: true,
                size: None,
            });
        let files = listing
            .objects
            .iter()
            // A "directory marker" object (`dir/`) comes back as `dir` itself.
            .filter(|meta| Some(&meta.location) != key.as_ref())
            .filter_map(|meta| {
                self.blob_path(&meta.location).map(|path| BlobEntry {
                    path,
                    is_dir: false,
                    size: Some(meta.size),
                })
            });
        let mut out: Vec<BlobEntry> = dirs.chain(files).collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn delete(&self, path: &BlobPath) -> Result<(), BlobError> {
        let key = self.key(path)?;
        if let (Some(key), false) = (&key, path.is_root()) {
            match self.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(path, e)),
            }
        }
        // Everything under `key/` (the whole prefix for the root).
        let locations = self
            .store
            .list(key.as_ref())
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(path, e)),
            }
        }
        Ok(())
    }

    fn uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

fn store_error(path: &BlobPath, err: object_store::Error) -> BlobError {
    match err {
        object_store::Error::NotFound { .. } => BlobError::NotFound(path.to_string()),
        err => BlobError::ObjectStore {
            path: path.to_string(),
            err,
        },
    }
}

/// Loose S3 bucket-name check: enough to refuse URIs that are clearly not a bucket (empty, with
/// credentials, ports or odd characters), while accepting what S3-compatible servers allow.
fn validate_bucket(bucket: &str) -> Result<(), &'static str> {
    if bucket.is_empty() {
        return Err("the bucket name is empty");
    }
    if bucket.len() > 255 {
        return Err("the bucket name is too long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("the bucket name may only contain letters, digits, `.`, `-` and `_`");
    }
    Ok(())
}
