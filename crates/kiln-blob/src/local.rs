//! [`LocalStore`]: artifacts in a directory on the local filesystem.
//!
//! Writes go to a temporary file next to the destination (`.<name>.kiln-tmp-<uuid>`), which is
//! renamed over it once complete, so readers never see a partial file and a failed upload leaves
//! nothing behind. Every operation resolves symbolic links and refuses to act on anything that
//! ends up outside the (canonicalised) root.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use fs_err::tokio as afs;
use futures::StreamExt;
use percent_encoding::{AsciiSet, CONTROLS};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::{
    BlobEntry, BlobError, BlobObject, BlobPath, BlobStore, ByteRange, ByteStream, RangedObject,
};

/// Marker in the names of in-progress uploads; such files are hidden from listings.
const TMP_MARKER: &str = ".kiln-tmp-";
/// How much of the destination name is kept in a temporary file's name.
const TMP_NAME_KEEP: usize = 100;
/// Read buffer for streaming a file out.
const READ_CHUNK: usize = 64 * 1024;
/// Characters escaped in the `file://` URI of a store.
const URI_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Reason given when a symbolic link would lead outside the store root.
const ESCAPES_ROOT: &str = "path leads outside the artifact root through a symbolic link";

/// A [`BlobStore`] rooted at a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// Canonical (absolute, symlink-free) root directory.
    root: PathBuf,
}

impl LocalStore {
    /// Open the store at directory `root`, creating it (and its parents) if missing.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, BlobError> {
        let root = root.as_ref();
        let shown = root.display().to_string();
        let io_err = |err| BlobError::Io {
            path: shown.clone(),
            err,
        };
        fs_err::create_dir_all(root).map_err(io_err)?;
        let root = fs_err::canonicalize(root).map_err(io_err)?;
        if !fs_err::metadata(&root).map_err(io_err)?.is_dir() {
            return Err(BlobError::InvalidUri {
                uri: shown,
                reason: "the artifact root is not a directory".into(),
            });
        }
        Ok(Self { root })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` lives on disk (not yet checked against symbolic links).
    fn fs_path(&self, path: &BlobPath) -> PathBuf {
        let mut full = self.root.clone();
        full.extend(path.segments());
        full
    }

    /// `Ok` when the canonical `resolved` path is inside the root.
    fn confined(&self, path: &BlobPath, resolved: &Path) -> Result<(), BlobError> {
        if resolved.starts_with(&self.root) {
            Ok(())
        } else {
            tracing::warn!(artifact = %path, resolved = %resolved.display(), "refused artifact path escaping the root");
            Err(BlobError::InvalidPath {
                path: path.to_string(),
                reason: ESCAPES_ROOT,
            })
        }
    }

    /// Canonicalise `fs` and check it stays inside the root; `Ok(None)` when it does not exist
    /// (or a component of it is a file).
    async fn resolve_existing(
        &self,
        path: &BlobPath,
        fs: &Path,
    ) -> Result<Option<PathBuf>, BlobError> {
        match afs::canonicalize(fs).await {
            Ok(resolved) => {
                self.confined(path, &resolved)?;
                Ok(Some(resolved))
            }
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(io_error(path, err)),
        }
    }

    /// Check that the deepest existing ancestor of `dir` (itself included) resolves inside the
    /// root, so that creating the missing rest cannot happen outside it.
    async fn check_ancestors(&self, path: &BlobPath, dir: &Path) -> Result<(), BlobError> {
        for ancestor in dir.ancestors() {
            match afs::symlink_metadata(ancestor).await {
                Ok(_) => {
                    // Exists (possibly as a link, possibly dangling): it must resolve inside.
                    let resolved = afs::canonicalize(ancestor).await.map_err(|err| {
                        if is_missing(&err) {
                            BlobError::InvalidPath {
                                path: path.to_string(),
                                reason: "path goes through a dangling symbolic link",
                            }
                        } else {
                            io_error(path, err)
                        }
                    })?;
                    return self.confined(path, &resolved);
                }
                Err(err) if is_missing(&err) => {}
                Err(err) => return Err(io_error(path, err)),
            }
            if ancestor == self.root {
                break;
            }
        }
        Ok(())
    }

    /// Write `body` to `tmp`, returning the number of bytes written.
    async fn write_tmp(
        &self,
        path: &BlobPath,
        tmp: &Path,
        mut body: ByteStream,
    ) -> Result<u64, BlobError> {
        let mut file = afs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .await
            .map_err(|err| io_error(path, err))?;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| BlobError::Upload {
                path: path.to_string(),
                err,
            })?;
            file.write_all(&chunk)
                .await
                .map_err(|err| io_error(path, err))?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(|err| io_error(path, err))?;
        file.sync_all().await.map_err(|err| io_error(path, err))?;
        Ok(written)
    }

    /// The regular file at `path` (checked against symbolic links) and its size; `NotFound` for
    /// the root, a missing path or a directory.
    async fn open_file(&self, path: &BlobPath) -> Result<(afs::File, u64), BlobError> {
        let not_found = || BlobError::NotFound(path.to_string());
        if path.is_root() {
            return Err(not_found());
        }
        let Some(resolved) = self.resolve_existing(path, &self.fs_path(path)).await? else {
            return Err(not_found());
        };
        let file = match afs::File::open(&resolved).await {
            Ok(file) => file,
            Err(err) if is_missing(&err) => return Err(not_found()),
            Err(err) => return Err(io_error(path, err)),
        };
        let meta = file.metadata().await.map_err(|err| io_error(path, err))?;
        if !meta.is_file() {
            return Err(not_found());
        }
        Ok((file, meta.len()))
    }

    /// Remove everything inside the root, keeping the root itself.
    async fn clear_root(&self) -> Result<(), BlobError> {
        let root = BlobPath::root();
        let mut entries = afs::read_dir(&self.root)
            .await
            .map_err(|err| io_error(&root, err))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|err| io_error(&root, err))?
        {
            remove_entry(&root, &entry.path()).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn put(&self, path: &BlobPath, body: ByteStream) -> Result<u64, BlobError> {
        let Some(name) = path.file_name() else {
            return Err(BlobError::InvalidPath {
                path: String::new(),
                reason: "cannot write an object at the store root",
            });
        };
        let full = self.fs_path(path);
        let parent = full.parent().unwrap_or(&self.root).to_path_buf();

        self.check_ancestors(path, &parent).await?;
        afs::create_dir_all(&parent).await.map_err(|err| {
            if matches!(
                err.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory
            ) {
                BlobError::Conflict {
                    path: path.to_string(),
                    reason: "a file is stored where one of its parent directories would go".into(),
                }
            } else {
                io_error(path, err)
            }
        })?;
        let parent = afs::canonicalize(&parent)
            .await
            .map_err(|err| io_error(path, err))?;
        self.confined(path, &parent)?;

        let dest = parent.join(name);
        let tmp = parent.join(tmp_name(name));
        let result = async {
            let written = self.write_tmp(path, &tmp, body).await?;
            afs::rename(&tmp, &dest).await.map_err(|err| {
                if err.kind() == io::ErrorKind::IsADirectory || dest.is_dir() {
                    BlobError::Conflict {
                        path: path.to_string(),
                        reason: "a directory of artifacts is stored at this path".into(),
                    }
                } else {
                    io_error(path, err)
                }
            })?;
            sync_dir(&parent).await.map_err(|err| io_error(path, err))?;
            Ok(written)
        }
        .await;
        if result.is_err() {
            if let Err(err) = afs::remove_file(&tmp).await {
                if !is_missing(&err) {
                    tracing::warn!(error = %err, "could not remove temporary upload file");
                }
            }
        }
        result
    }

    async fn get(&self, path: &BlobPath) -> Result<BlobObject, BlobError> {
        let (file, size) = self.open_file(path).await?;
        Ok(BlobObject {
            size,
            stream: ReaderStream::with_capacity(file, READ_CHUNK).boxed(),
        })
    }

    async fn get_range(
        &self,
        path: &BlobPath,
        range: ByteRange,
    ) -> Result<Result<RangedObject, u64>, BlobError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let (mut file, total) = self.open_file(path).await?;
        let Some(want) = range.resolve(total) else {
            return Ok(Err(total));
        };
        file.seek(std::io::SeekFrom::Start(want.start))
            .await
            .map_err(|err| io_error(path, err))?;
        let part = file.take(want.end - want.start);
        Ok(Ok(RangedObject {
            range: want,
            total,
            stream: ReaderStream::with_capacity(part, READ_CHUNK).boxed(),
        }))
    }

    async fn list(&self, dir: &BlobPath) -> Result<Vec<BlobEntry>, BlobError> {
        let Some(resolved) = self.resolve_existing(dir, &self.fs_path(dir)).await? else {
            return Ok(Vec::new());
        };
        let mut entries = match afs::read_dir(&resolved).await {
            Ok(entries) => entries,
            Err(err) if is_missing(&err) => return Ok(Vec::new()),
            Err(err) => return Err(io_error(dir, err)),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|err| io_error(dir, err))?
        {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                tracing::debug!(dir = %dir, name = ?file_name, "skipping non-UTF-8 file name");
                continue;
            };
            if is_tmp_name(name) {
                continue;
            }
            let Ok(child) = dir.join(name) else {
                tracing::debug!(dir = %dir, name, "skipping file name that is not a valid artifact path");
                continue;
            };
            let file_type = entry
                .file_type()
                .await
                .map_err(|err| io_error(&child, err))?;
            let meta = if file_type.is_symlink() {
                // Follow links only when they stay inside the root.
                match afs::canonicalize(entry.path()).await {
                    Ok(target) if target.starts_with(&self.root) => {
                        match afs::metadata(&target).await {
                            Ok(meta) => meta,
                            Err(_) => continue,
                        }
                    }
                    _ => continue,
                }
            } else {
                match entry.metadata().await {
                    Ok(meta) => meta,
                    // Removed while listing.
                    Err(err) if is_missing(&err) => continue,
                    Err(err) => return Err(io_error(&child, err)),
                }
            };
            if meta.is_dir() {
                out.push(BlobEntry {
                    path: child,
                    is_dir: true,
                    size: None,
                });
            } else if meta.is_file() {
                out.push(BlobEntry {
                    path: child,
                    is_dir: false,
                    size: Some(meta.len()),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn sweep_abandoned(
        &self,
        before: std::time::SystemTime,
        dry_run: bool,
    ) -> Result<Vec<String>, BlobError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sweep_tmp_files(&root, before, dry_run))
            .await
            .map_err(|e| BlobError::Io {
                path: String::new(),
                err: io::Error::other(e.to_string()),
            })?
    }

    async fn delete(&self, path: &BlobPath) -> Result<(), BlobError> {
        let (Some(name), Some(parent)) = (path.file_name(), path.parent()) else {
            return self.clear_root().await;
        };
        // Resolve the parent only: the target itself, if a link, is removed as a link.
        let Some(parent_fs) = self.resolve_existing(path, &self.fs_path(&parent)).await? else {
            return Ok(());
        };
        remove_entry(path, &parent_fs.join(name)).await
    }

    fn uri(&self) -> String {
        let root = self.root.to_string_lossy();
        format!(
            "file://{}",
            percent_encoding::utf8_percent_encode(&root, URI_ESCAPE)
        )
    }
}

/// Make a rename into `dir` durable: the file's data is synced before the rename, the directory
/// entry that names it only once the directory itself is synced.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    afs::File::open(dir).await?.sync_all().await?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Remove a file, a link (not its target) or a directory tree; missing is fine.
async fn remove_entry(path: &BlobPath, target: &Path) -> Result<(), BlobError> {
    let meta = match afs::symlink_metadata(target).await {
        Ok(meta) => meta,
        Err(err) if is_missing(&err) => return Ok(()),
        Err(err) => return Err(io_error(path, err)),
    };
    let result = if meta.is_dir() {
        afs::remove_dir_all(target).await
    } else {
        afs::remove_file(target).await
    };
    match result {
        Ok(()) => Ok(()),
        Err(err) if is_missing(&err) => Ok(()),
        Err(err) => Err(io_error(path, err)),
    }
}

fn io_error(path: &BlobPath, err: io::Error) -> BlobError {
    BlobError::Io {
        path: path.to_string(),
        err,
    }
}

/// Whether an I/O error means "there is nothing there" (including a file where a directory was
/// expected along the way).
fn is_missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// `.<name>.kiln-tmp-<uuid>`, with `name` shortened so the result stays a valid file name.
fn tmp_name(name: &str) -> String {
    let mut keep = name.len().min(TMP_NAME_KEEP);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(
        ".{}{TMP_MARKER}{}",
        name.get(..keep).unwrap_or_default(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Walk `root` (not following symbolic links) for temporary upload files last written before
/// `before`, removing them unless `dry_run`; their paths relative to `root`, sorted.
fn sweep_tmp_files(
    root: &Path,
    before: std::time::SystemTime,
    dry_run: bool,
) -> Result<Vec<String>, BlobError> {
    let io_err = |dir: &Path, err: io::Error| BlobError::Io {
        path: dir.strip_prefix(root).unwrap_or(dir).display().to_string(),
        err,
    };
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if is_missing(&err) => continue,
            Err(err) => return Err(io_err(&dir, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|err| io_err(&dir, err))?;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = entry.file_name();
            if !kind.is_file() || !name.to_str().is_some_and(is_tmp_name) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < before);
            if !stale {
                continue;
            }
            if !dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if is_missing(&err) => continue,
                    Err(err) => return Err(io_err(&path, err)),
                }
            }
            found.push(
                path.strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            );
        }
    }
    found.sort();
    Ok(found)
}

/// Whether `name` was made by [`tmp_name`].
fn is_tmp_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(TMP_MARKER).is_some_and(|(_, id)| {
            id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_are_recognised() {
        let long = "x".repeat(255);
        for name in ["model.pkl", "é", long.as_str()] {
            let tmp = tmp_name(name);
            assert!(is_tmp_name(&tmp), "{tmp}");
            assert!(tmp.len() <= 255, "{tmp}");
        }
        assert!(!is_tmp_name("model.pkl"));
        assert!(!is_tmp_name(".kiln-tmp-notahexid"));
    }
}
