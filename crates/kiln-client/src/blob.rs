//! [`HttpBlobStore`]: kiln's artifact store trait over a tracking server's artifact proxy
//! (`/api/2.0/mlflow-artifacts/artifacts/<path>`), the counterpart of [`crate::RestStore`]:
//! artifacts of runs made through a server go where the server keeps them, streamed both ways.

use futures::StreamExt;
use kiln_blob::{
    BlobEntry, BlobError, BlobObject, BlobPath, BlobStore, ByteRange, ByteStream, RangedObject,
};

use crate::encode_segment;

const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// The artifact proxy of the server at `base`.
#[derive(Debug, Clone)]
pub struct HttpBlobStore {
    base: String,
    http: reqwest::Client,
}

impl HttpBlobStore {
    pub fn new(base: &str) -> Result<Self, BlobError> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| io_err(base, e))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    fn url(&self, path: &BlobPath) -> String {
        let encoded: Vec<String> = path.as_str().split('/').map(encode_segment).collect();
        format!("{}{ARTIFACTS}/{}", self.base, encoded.join("/"))
    }
}

fn io_err(path: &str, e: impl std::error::Error + Send + Sync + 'static) -> BlobError {
    BlobError::Io {
        path: path.to_string(),
        err: std::io::Error::other(e),
    }
}

/// A non-2xx answer as an error naming the artifact (404 is [`BlobError::NotFound`]).
async fn check(path: &BlobPath, resp: reqwest::Response) -> Result<reqwest::Response, BlobError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(BlobError::NotFound(path.to_string()));
    }
    let body = resp.text().await.unwrap_or_default();
    Err(BlobError::Io {
        path: path.to_string(),
        err: std::io::Error::other(format!(
            "the tracking server answered HTTP {status}: {}",
            body.chars().take(300).collect::<String>()
        )),
    })
}

#[async_trait::async_trait]
impl BlobStore for HttpBlobStore {
    async fn put(&self, path: &BlobPath, body: ByteStream) -> Result<u64, BlobError> {
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = written.clone();
        let counted = body.map(move |chunk| {
            if let Ok(c) = &chunk {
                counter.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            chunk
        });
        let resp = self
            .http
            .put(self.url(path))
            .body(reqwest::Body::wrap_stream(counted))
            .send()
            .await
            .map_err(|e| io_err(path.as_str(), e))?;
        check(path, resp).await?;
        Ok(written.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn get(&self, path: &BlobPath) -> Result<BlobObject, BlobError> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| io_err(path.as_str(), e))?;
        let resp = check(path, resp).await?;
        let size = resp.content_length().unwrap_or(0);
        let stream = resp
            .bytes_stream()
            .map(|c| c.map_err(std::io::Error::other))
            .boxed();
        Ok(BlobObject { size, stream })
    }

    /// A `Range` request: a 206 is the part, a 416 names the size, and a server that ignores
    /// the header (a 200 with the whole object) is sliced here.
    async fn get_range(
        &self,
        path: &BlobPath,
        range: ByteRange,
    ) -> Result<Result<RangedObject, u64>, BlobError> {
        let resp = self
            .http
            .get(self.url(path))
            .header(reqwest::header::RANGE, range.header_value())
            .send()
            .await
            .map_err(|e| io_err(path.as_str(), e))?;
        // `bytes a-b/total` or `bytes */total`.
        let content_range = |resp: &reqwest::Response| -> Option<(Option<(u64, u64)>, u64)> {
            let v = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)?
                .to_str()
                .ok()?;
            let (span, total) = v.strip_prefix("bytes ")?.split_once('/')?;
            let total = total.trim().parse().ok()?;
            if span.trim() == "*" {
                return Some((None, total));
            }
            let (a, b) = span.split_once('-')?;
            Some((
                Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                total,
            ))
        };
        if resp.status() == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            let total = content_range(&resp).map_or(0, |(_, t)| t);
            return Ok(Err(total));
        }
        if resp.status() == reqwest::StatusCode::PARTIAL_CONTENT {
            let Some((Some((a, b)), total)) = content_range(&resp) else {
                return Err(io_err(
                    path.as_str(),
                    std::io::Error::other("a 206 answer without a valid Content-Range"),
                ));
            };
            let stream = resp
                .bytes_stream()
                .map(|c| c.map_err(std::io::Error::other))
                .boxed();
            return Ok(Ok(RangedObject {
                range: a..b.saturating_add(1),
                total,
                stream,
            }));
        }
        let resp = check(path, resp).await?;
        let total = resp.content_length().unwrap_or(0);
        let Some(want) = range.resolve(total) else {
            return Ok(Err(total));
        };
        let whole = resp
            .bytes_stream()
            .map(|c| c.map_err(std::io::Error::other))
            .boxed();
        Ok(Ok(RangedObject {
            range: want.clone(),
            total,
            stream: kiln_blob::slice_stream(whole, want),
        }))
    }

    async fn list(&self, dir: &BlobPath) -> Result<Vec<BlobEntry>, BlobError> {
        let resp = self
            .http
            .get(format!("{}{ARTIFACTS}", self.base))
            .query(&[("path", dir.as_str())])
            .send()
            .await
            .map_err(|e| io_err(dir.as_str(), e))?;
        let v: serde_json::Value = check(dir, resp)
            .await?
            .json()
            .await
            .map_err(|e| io_err(dir.as_str(), e))?;
        let mut out = Vec::new();
        for f in v
            .get("files")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = f.get("path").and_then(serde_json::Value::as_str) else {
                continue;
            };
            let is_dir = f
                .get("is_dir")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            out.push(BlobEntry {
                path: dir.join(name)?,
                is_dir,
                size: if is_dir {
                    None
                } else {
                    f.get("file_size").and_then(serde_json::Value::as_u64)
                },
            });
        }
        out.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        Ok(out)
    }

    async fn delete(&self, path: &BlobPath) -> Result<(), BlobError> {
        let resp = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .map_err(|e| io_err(path.as_str(), e))?;
        match check(path, resp).await {
            Ok(_) | Err(BlobError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn uri(&self) -> String {
        format!("{}{ARTIFACTS}", self.base)
    }
}
