//! [`BlobPath`]: a validated, relative, `/`-separated artifact path that cannot leave the root
//! of the store it is used with.
//!
//! Paths arrive from HTTP clients, so the rules are deliberately strict: anything that a
//! filesystem, an URL parser or a later decoding step could read as "somewhere else" is refused
//! rather than normalised.

use std::fmt;

use crate::BlobError;

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest accepted path segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

/// Whether `rest` (starting at a `%`) begins with `%XX`, two hex digits.
fn looks_percent_encoded(rest: &str) -> bool {
    let b = rest.as_bytes();
    b.len() >= 3 && b[1].is_ascii_hexdigit() && b[2].is_ascii_hexdigit()
}

/// A validated, relative, `/`-separated path inside a store. The empty path is the root.
///
/// Built only by [`BlobPath::parse`], [`BlobPath::root`] and [`BlobPath::join`], so every value
/// satisfies the confinement rules listed on [`BlobPath::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobPath(String);

impl BlobPath {
    /// Validate an untrusted path (already percent-decoded once by the caller).
    ///
    /// `""` is the root, one trailing `/` is ignored and `.` segments are dropped (`./a/.` is
    /// `a`, as MLflow's server reads it). Rejected with [`BlobError::InvalidPath`]:
    /// - absolute paths (leading `/`) and a leading `~`;
    /// - empty segments (`a//b`) and `..` segments;
    /// - Windows forms: any `\`, and drive prefixes such as `C:`;
    /// - NUL and other control characters;
    /// - `%` followed by two hex digits, which reads as percent-encoding (no second round of
    ///   decoding: `%2e%2e` stays refused; `acc_95%.png` is a name), `#` and `?`
    ///   (fragment/query tricks);
    /// - paths over 1024 bytes and segments over 255 bytes.
    pub fn parse(raw: &str) -> Result<Self, BlobError> {
        let invalid = |reason: &'static str| BlobError::InvalidPath {
            path: printable(raw),
            reason,
        };

        if raw.is_empty() {
            return Ok(Self::root());
        }
        if raw.len() > MAX_PATH_LEN {
            return Err(invalid("path is longer than 1024 bytes"));
        }
        for (i, c) in raw.char_indices() {
            let reason = match c {
                '\0' => "NUL characters are not allowed",
                c if c.is_control() => "control characters are not allowed",
                '\\' => "backslashes are not allowed",
                '%' if looks_percent_encoded(&raw[i..]) => {
                    "`%XX` is not allowed (paths must not be percent-encoded twice)"
                }
                '#' => "`#` is not allowed",
                '?' => "`?` is not allowed",
                _ => continue,
            };
            return Err(invalid(reason));
        }
        if raw.starts_with('/') {
            return Err(invalid("absolute paths are not allowed"));
        }

        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        let mut kept: Vec<&str> = Vec::new();
        for segment in trimmed.split('/') {
            let reason = match segment {
                "." => continue,
                "" => "empty path segments are not allowed",
                ".." => "`..` segments are not allowed",
                s if s.len() > MAX_SEGMENT_LEN => "path segment is longer than 255 bytes",
                s if is_drive_prefix(s) => "Windows drive prefixes are not allowed",
                s => {
                    kept.push(s);
                    continue;
                }
            };
            return Err(invalid(reason));
        }
        if kept.first().is_some_and(|s| s.starts_with('~')) {
            return Err(invalid("paths must not start with `~`"));
        }
        Ok(Self(kept.join("/")))
    }

    /// The store root (the empty path).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// The path as a `/`-separated string; empty for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the root (empty) path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `self/child`, where `child` is validated too.
    pub fn join(&self, child: &str) -> Result<Self, BlobError> {
        let child = Self::parse(child)?;
        if self.is_root() {
            return Ok(child);
        }
        if child.is_root() {
            return Ok(self.clone());
        }
        let joined = format!("{}/{}", self.0, child.0);
        if joined.len() > MAX_PATH_LEN {
            return Err(BlobError::InvalidPath {
                path: printable(&joined),
                reason: "path is longer than 1024 bytes",
            });
        }
        Ok(Self(joined))
    }

    /// The path's segments, in order; none for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((parent, _)) => Self(parent.to_owned()),
            None => Self::root(),
        })
    }
}

impl fmt::Display for BlobPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BlobPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `C:`, `c:foo`: a segment a Windows path parser would read as a drive.
fn is_drive_prefix(segment: &str) -> bool {
    let b = segment.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// The rejected path for an error message: control characters escaped, length bounded, so that
/// hostile input cannot forge log lines or flood them.
fn printable(raw: &str) -> String {
    const MAX_SHOWN: usize = 200;
    let mut out = String::new();
    for (i, c) in raw.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_paths() {
        for p in [
            "a",
            "a/b",
            "1/abc/artifacts/model.pkl",
            "a b/c-d_e.f",
            "é/ü",
            "a~b",
            ".hidden",
        ] {
            assert_eq!(
                BlobPath::parse(p).map(|p| p.0).ok(),
                Some(p.to_owned()),
                "{p}"
            );
        }
        assert_eq!(
            BlobPath::parse("a/b/").ok().map(|p| p.0),
            Some("a/b".into())
        );
        assert!(BlobPath::parse("").is_ok_and(|p| p.is_root()));
    }

    #[test]
    fn helpers() {
        let p = BlobPath::parse("a/b/c").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.file_name(), Some("c"));
        assert_eq!(p.parent().map(|p| p.0), Some("a/b".into()));
        assert_eq!(p.segments().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(
            BlobPath::parse("a").ok().and_then(|p| p.parent()),
            Some(BlobPath::root())
        );
        assert_eq!(BlobPath::root().parent(), None);
        assert_eq!(BlobPath::root().segments().count(), 0);
    }
}
