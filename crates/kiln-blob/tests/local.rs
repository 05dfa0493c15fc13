//! The shared suite and local-only behaviour (symbolic links, temporary files, URIs) for
//! [`LocalStore`].

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{bytes_body, p, put, read, Fixture};
use kiln_blob::{open, BlobError, BlobPath, BlobStore, LocalStore};

async fn make_local() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("artifacts")).unwrap();
    Some(Fixture {
        store: Arc::new(store),
        guard: Box::new(dir),
    })
}

blob_store_suite!(make_local);

fn is_invalid_path<T>(result: &Result<T, BlobError>) -> bool {
    matches!(result, Err(BlobError::InvalidPath { .. }))
}

/// A root with `root/out` → `outside/` (outside the root) holding `secret`, and
/// `root/inner` → `root/real` (inside the root).
fn setup_links() -> (tempfile::TempDir, LocalStore, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("real")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"top secret").unwrap();
    std::fs::write(root.join("real/f"), b"inner").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), root.join("secret-link")).unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("inner")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), root.join("dangling")).unwrap();
    let store = LocalStore::new(&root).unwrap();
    (tmp, store, outside)
}

#[tokio::test]
async fn symlinks_never_lead_out_of_the_root() {
    let (_tmp, store, outside) = setup_links();
    let outside_entries = || {
        let mut names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };

    // Writes through the link are refused and create nothing outside.
    assert!(is_invalid_path(
        &store.put(&p("out/x"), bytes_body(b"pwned")).await
    ));
    assert!(is_invalid_path(
        &store.put(&p("out/new/deep/x"), bytes_body(b"pwned")).await
    ));
    assert!(is_invalid_path(
        &store.put(&p("out/secret"), bytes_body(b"pwned")).await
    ));
    assert!(store
        .put(&p("dangling/x"), bytes_body(b"pwned"))
        .await
        .is_err());
    assert_eq!(outside_entries(), ["secret"]);
    assert_eq!(
        std::fs::read(outside.join("secret")).unwrap(),
        b"top secret"
    );

    // Reads through either kind of link are refused.
    assert!(is_invalid_path(&store.get(&p("out/secret")).await));
    assert!(is_invalid_path(&store.get(&p("secret-link")).await));
    assert!(is_invalid_path(&store.list(&p("out")).await));

    // Deleting through the link is refused; deleting the link removes only the link.
    assert!(is_invalid_path(&store.delete(&p("out/secret")).await));
    assert_eq!(outside_entries(), ["secret"]);
    store.delete(&p("out")).await.unwrap();
    store.delete(&p("secret-link")).await.unwrap();
    assert_eq!(outside_entries(), ["secret"]);
    assert!(store
        .list(&BlobPath::root())
        .await
        .unwrap()
        .iter()
        .all(|e| e.path != p("out")));

    // Clearing the whole store leaves the outside alone.
    store.delete(&BlobPath::root()).await.unwrap();
    assert_eq!(outside_entries(), ["secret"]);
    assert_eq!(
        std::fs::read(outside.join("secret")).unwrap(),
        b"top secret"
    );
}

#[tokio::test]
async fn listing_hides_escaping_links_and_follows_inner_ones() {
    let (_tmp, store, _outside) = setup_links();
    let listed: Vec<_> = store
        .list(&BlobPath::root())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.path.as_str().to_owned(), e.is_dir))
        .collect();
    assert_eq!(
        listed,
        [("inner".to_owned(), true), ("real".to_owned(), true)]
    );
    // Links that stay inside the root work like the directories they point to.
    assert_eq!(read(&store, "inner/f").await, b"inner");
    put(&store, "inner/g", b"g").await;
    assert_eq!(read(&store, "real/g").await, b"g");
}

#[tokio::test]
async fn failed_upload_leaves_no_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::new(tmp.path()).unwrap();
    put(&store, "d/keep", b"k").await;
    let failed = store
        .put(&p("d/bad"), common::generated(3 << 20, 1 << 16, true))
        .await;
    assert!(
        matches!(failed, Err(BlobError::Upload { .. })),
        "{failed:?}"
    );
    let names: Vec<_> = std::fs::read_dir(tmp.path().join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
}

#[tokio::test]
async fn leftover_temporary_files_are_not_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::new(tmp.path()).unwrap();
    put(&store, "d/keep", b"k").await;
    std::fs::write(
        tmp.path()
            .join("d/.model.pkl.kiln-tmp-0123456789abcdef0123456789abcdef"),
        b"partial",
    )
    .unwrap();
    std::fs::write(tmp.path().join("d/.hidden"), b"h").unwrap();
    let listed: Vec<_> = store
        .list(&p("d"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(listed, [p("d/.hidden"), p("d/keep")]);
}

#[tokio::test]
async fn writing_over_a_directory_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::new(tmp.path()).unwrap();
    put(&store, "d/sub/f", b"f").await;
    // Both clashes are the client's mistake (a 400), not a server fault.
    let err = store.put(&p("d/sub"), bytes_body(b"x")).await.unwrap_err();
    assert!(matches!(err, BlobError::Conflict { .. }), "{err:?}");
    let err = store
        .put(&p("d/sub/f/under"), bytes_body(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::Conflict { .. }), "{err:?}");
    assert!(
        !err.to_string().contains(tmp.path().to_str().unwrap()),
        "{err}"
    );
    assert_eq!(read(&store, "d/sub/f").await, b"f");
    assert_eq!(store.list(&p("d/sub")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn open_accepts_file_uris_and_plain_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let base_str = base.to_str().unwrap();
    let cases = [
        (format!("file://{base_str}/a"), base.join("a")),
        (format!("file:{base_str}/b"), base.join("b")),
        (format!("FILE://localhost{base_str}/c"), base.join("c")),
        (
            format!("file://{base_str}/with%20space"),
            base.join("with space"),
        ),
        (
            format!("{base_str}/plain/nested"),
            base.join("plain/nested"),
        ),
    ];
    for (uri, expected) in cases {
        let store = open(&uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert!(
            expected.is_dir(),
            "{uri} should create {}",
            expected.display()
        );
        store.put(&p("x"), bytes_body(b"1")).await.unwrap();
        assert_eq!(std::fs::read(expected.join("x")).unwrap(), b"1", "{uri}");
        // The store's own URI opens the same directory.
        let again = open(&store.uri()).unwrap();
        assert_eq!(read(&*again, "x").await, b"1", "{}", store.uri());
    }
}

#[test]
fn open_rejects_unsupported_uris() {
    for (uri, needle) in [
        ("gs://bucket/x", "`gs`"),
        ("hdfs://nn/x", "`hdfs`"),
        ("mlflow-artifacts:/x", "`mlflow-artifacts`"),
        ("", "empty"),
        ("file://otherhost/x", "local path"),
        ("file://", "no path"),
        ("s3://", "bucket name is empty"),
        ("s3:bucket", "s3://bucket"),
        ("s3://bucket/a/../b", "prefix"),
        ("s3://user:pw@bucket/x", "bucket name"),
    ] {
        match open(uri) {
            Err(e @ BlobError::InvalidUri { .. }) => {
                let msg = format!("{e}");
                let full = format!("{e:?}");
                assert!(
                    msg.contains(needle) || full.contains(needle),
                    "{uri}: {msg}"
                );
                if needle.starts_with('`') {
                    assert!(msg.contains("s3://") && msg.contains("file://"), "{msg}");
                }
            }
            other => panic!("{uri}: expected InvalidUri, got {other:?}"),
        }
    }
}

#[test]
fn open_s3_uri_builds_without_network() {
    let store = open("s3://my-bucket/some/prefix/").unwrap();
    assert_eq!(store.uri(), "s3://my-bucket/some/prefix");
    let store = open("s3://my-bucket").unwrap();
    assert_eq!(store.uri(), "s3://my-bucket");
}

#[tokio::test]
async fn sweep_removes_only_abandoned_upload_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::new(tmp.path()).unwrap();
    put(&store, "d/keep", b"k").await;
    let dir = tmp.path().join("d");
    let old = dir.join(".f.bin.kiln-tmp-0123456789abcdef0123456789abcdef");
    let fresh = dir.join(".g.bin.kiln-tmp-fedcba9876543210fedcba9876543210");
    let lookalike = dir.join(".h.kiln-tmp-not-an-id");
    for f in [&old, &fresh, &lookalike] {
        std::fs::write(f, b"partial").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for f in [&old, &lookalike] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    let cutoff = std::time::SystemTime::now() - Duration::from_secs(3600);
    let dry = store.sweep_abandoned(cutoff, true).await.unwrap();
    assert_eq!(
        dry,
        vec!["d/.f.bin.kiln-tmp-0123456789abcdef0123456789abcdef"]
    );
    assert!(old.exists(), "a dry run removes nothing");
    let swept = store.sweep_abandoned(cutoff, false).await.unwrap();
    assert_eq!(swept, dry);
    assert!(!old.exists());
    assert!(
        fresh.exists(),
        "an upload written within the hour may still be in progress"
    );
    assert!(
        lookalike.exists(),
        "only kiln's own temporary names are swept"
    );
    assert_eq!(read(&store, "d/keep").await, b"k");
}
