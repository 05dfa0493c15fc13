//! Behaviour every [`BlobStore`] must have, run against each backend by [`blob_store_suite!`].

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::{stream, StreamExt};
use kiln_blob::{BlobEntry, BlobError, BlobPath, BlobStore, ByteStream};

/// A store under test plus whatever must outlive it (a temporary directory, ...).
pub struct Fixture {
    pub store: Arc<dyn BlobStore>,
    pub guard: Box<dyn std::any::Any + Send>,
}

/// Generate one `#[tokio::test]` per suite case. `$make` is an async fn returning
/// `Option<Fixture>` (`None`: the backend is unavailable and the test is skipped).
#[macro_export]
macro_rules! blob_store_suite {
    ($make:path) => {
        $crate::blob_store_suite!(@cases $make;
            roundtrip, overwrite, nested_list_with_sizes, list_missing_or_file_is_empty,
            delete_file, delete_dir_recursively, delete_missing_is_ok, get_missing_is_not_found,
            large_streamed_upload, failing_body_leaves_nothing, failing_large_body_leaves_nothing,
            invalid_writes_are_refused, byte_ranges);
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $make().await else { return };
                common::$case(&*fixture.store).await;
                // Clearing the root cleans up, and exercises whole-store deletion.
                fixture.store.delete(&kiln_blob::BlobPath::root()).await.unwrap();
                assert_eq!(fixture.store.list(&kiln_blob::BlobPath::root()).await.unwrap(), vec![]);
                drop(fixture.guard);
            }
        )*
    };
}

pub fn p(raw: &str) -> BlobPath {
    BlobPath::parse(raw).unwrap_or_else(|e| panic!("bad test path {raw:?}: {e}"))
}

/// A body delivered in the given chunks.
pub fn body(chunks: &[&[u8]]) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks).boxed()
}

pub fn bytes_body(data: &[u8]) -> ByteStream {
    body(&[data])
}

pub async fn put(store: &dyn BlobStore, path: &str, data: &[u8]) {
    let n = store.put(&p(path), bytes_body(data)).await.unwrap();
    assert_eq!(n, data.len() as u64);
}

pub async fn read(store: &dyn BlobStore, path: &str) -> Vec<u8> {
    let obj = store.get(&p(path)).await.unwrap();
    let mut out = Vec::new();
    let mut s = obj.stream;
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(obj.size, out.len() as u64, "size of {path}");
    out
}

pub fn file(path: &str, size: u64) -> BlobEntry {
    BlobEntry {
        path: p(path),
        is_dir: false,
        size: Some(size),
    }
}

pub fn dir(path: &str) -> BlobEntry {
    BlobEntry {
        path: p(path),
        is_dir: true,
        size: None,
    }
}

fn assert_not_found<T>(result: Result<T, BlobError>, what: &str) {
    match result {
        Err(BlobError::NotFound(_)) => {}
        Err(e) => panic!("{what}: expected NotFound, got {e:?}"),
        Ok(_) => panic!("{what}: expected NotFound, got a value"),
    }
}

/// Deterministic, non-periodic test data: the byte at `offset`.
pub fn pattern(offset: u64) -> u8 {
    let x = offset ^ (offset >> 13) ^ (offset >> 29);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// `total` bytes of [`pattern`] in `chunk`-sized pieces, generated lazily, then optionally an
/// error instead of the end of the stream.
pub fn generated(total: u64, chunk: usize, fail_at_end: bool) -> ByteStream {
    let chunks = stream::unfold(0u64, move |offset| async move {
        if offset >= total {
            return None;
        }
        let len = (total - offset).min(chunk as u64);
        let data: Vec<u8> = (offset..offset + len).map(pattern).collect();
        Some((Ok(Bytes::from(data)), offset + len))
    });
    let tail = stream::iter(fail_at_end.then(|| Err(io::Error::other("client went away"))));
    chunks.chain(tail).boxed()
}

pub async fn roundtrip(store: &dyn BlobStore) {
    let n = store
        .put(&p("a/b/c.txt"), body(&[b"hel", b"", b"lo"]))
        .await
        .unwrap();
    assert_eq!(n, 5);
    assert_eq!(read(store, "a/b/c.txt").await, b"hello");
    // Empty objects too.
    put(store, "a/empty", b"").await;
    assert_eq!(read(store, "a/empty").await, b"");
    // Names with spaces, unicode and punctuation.
    put(store, "a/we ird+na=me[1]é.txt", b"x").await;
    assert_eq!(read(store, "a/we ird+na=me[1]é.txt").await, b"x");
}

pub async fn overwrite(store: &dyn BlobStore) {
    put(store, "o/x", b"the first, longer content").await;
    put(store, "o/x", b"2").await;
    assert_eq!(read(store, "o/x").await, b"2");
    assert_eq!(store.list(&p("o")).await.unwrap(), vec![file("o/x", 1)]);
}

pub async fn nested_list_with_sizes(store: &dyn BlobStore) {
    put(store, "d/x.txt", b"abc").await;
    put(store, "d/sub/y.bin", b"12345").await;
    put(store, "d/sub/deeper/z", b"z").await;
    put(store, "d/a", b"").await;
    put(store, "top", b"t").await;
    assert_eq!(
        store.list(&p("d")).await.unwrap(),
        vec![file("d/a", 0), dir("d/sub"), file("d/x.txt", 3)]
    );
    assert_eq!(
        store.list(&p("d/sub")).await.unwrap(),
        vec![dir("d/sub/deeper"), file("d/sub/y.bin", 5)]
    );
    assert_eq!(store.list(&p("d/sub/")).await.unwrap().len(), 2);
    assert_eq!(
        store.list(&BlobPath::root()).await.unwrap(),
        vec![dir("d"), file("top", 1)]
    );
}

pub async fn list_missing_or_file_is_empty(store: &dyn BlobStore) {
    assert_eq!(store.list(&p("nope")).await.unwrap(), vec![]);
    assert_eq!(store.list(&p("nope/deeper")).await.unwrap(), vec![]);
    put(store, "l/f.txt", b"abc").await;
    assert_eq!(store.list(&p("l/f.txt")).await.unwrap(), vec![]);
    assert_eq!(store.list(&p("l/f.txt/under")).await.unwrap(), vec![]);
    // A sibling sharing a name prefix is not listed as a child.
    put(store, "l/fx/g", b"g").await;
    assert_eq!(store.list(&p("l/f")).await.unwrap(), vec![]);
}

pub async fn delete_file(store: &dyn BlobStore) {
    put(store, "del/one", b"1").await;
    put(store, "del/two", b"22").await;
    store.delete(&p("del/one")).await.unwrap();
    assert_not_found(store.get(&p("del/one")).await, "deleted file");
    assert_eq!(
        store.list(&p("del")).await.unwrap(),
        vec![file("del/two", 2)]
    );
}

pub async fn delete_dir_recursively(store: &dyn BlobStore) {
    put(store, "r/keep.txt", b"k").await;
    put(store, "r/sub/a", b"a").await;
    put(store, "r/sub/b/c", b"c").await;
    put(store, "r/sub/b/d/e", b"e").await;
    put(store, "r/sub2/f", b"f").await; // shares the name prefix `r/sub`
    store.delete(&p("r/sub")).await.unwrap();
    assert_eq!(
        store.list(&p("r")).await.unwrap(),
        vec![file("r/keep.txt", 1), dir("r/sub2")]
    );
    assert_not_found(store.get(&p("r/sub/b/c")).await, "file in deleted dir");
    assert_eq!(store.list(&p("r/sub")).await.unwrap(), vec![]);
    assert_eq!(read(store, "r/sub2/f").await, b"f");
}

pub async fn delete_missing_is_ok(store: &dyn BlobStore) {
    store.delete(&p("never/was")).await.unwrap();
    store.delete(&p("never")).await.unwrap();
    put(store, "m/f", b"f").await;
    store.delete(&p("m/f/under")).await.unwrap();
    assert_eq!(read(store, "m/f").await, b"f");
}

pub async fn get_missing_is_not_found(store: &dyn BlobStore) {
    assert_not_found(store.get(&p("missing")).await, "missing file");
    assert_not_found(
        store.get(&p("missing/deeper/file")).await,
        "missing nested file",
    );
    put(store, "g/f", b"f").await;
    assert_not_found(store.get(&p("g")).await, "a directory");
    assert_not_found(store.get(&p("g/f/x")).await, "under a file");
    assert_not_found(store.get(&BlobPath::root()).await, "the root");
}

pub async fn large_streamed_upload(store: &dyn BlobStore) {
    const TOTAL: u64 = 64 * 1024 * 1024;
    // Odd chunk size so chunk and part boundaries never line up.
    let n = store
        .put(&p("big/blob.bin"), generated(TOTAL, 1_000_003, false))
        .await
        .unwrap();
    assert_eq!(n, TOTAL);
    assert_eq!(
        store.list(&p("big")).await.unwrap(),
        vec![file("big/blob.bin", TOTAL)]
    );

    let obj = store.get(&p("big/blob.bin")).await.unwrap();
    assert_eq!(obj.size, TOTAL);
    let mut offset = 0u64;
    let mut s = obj.stream;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap();
        for (i, b) in chunk.iter().enumerate() {
            let at = offset + i as u64;
            assert_eq!(*b, pattern(at), "byte {at}");
        }
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, TOTAL);
}

async fn check_failed_upload(store: &dyn BlobStore, size: u64) {
    put(store, "f/ok", b"original").await;
    let err = store.put(&p("f/bad"), generated(size, 1 << 20, true)).await;
    // The client's body failed: the client's error, not the store's.
    assert!(matches!(err, Err(BlobError::Upload { .. })), "{err:?}");
    assert_not_found(store.get(&p("f/bad")).await, "failed upload");
    // Overwriting with a failing body keeps the old object.
    assert!(store
        .put(&p("f/ok"), generated(size, 1 << 20, true))
        .await
        .is_err());
    assert_eq!(read(store, "f/ok").await, b"original");
    // A failing body into a new directory.
    assert!(store
        .put(&p("f/new/x"), generated(size, 1 << 20, true))
        .await
        .is_err());
    assert_not_found(store.get(&p("f/new/x")).await, "failed upload in new dir");
    // Nothing partial or temporary is listed.
    let listed = store.list(&p("f")).await.unwrap();
    assert!(
        listed == vec![file("f/ok", 8)] || listed == vec![dir("f/new"), file("f/ok", 8)],
        "{listed:?}"
    );
    assert_eq!(store.list(&p("f/new")).await.unwrap(), vec![]);
}

/// Parts of an object, as HTTP `Range` headers ask for them; a range past the end gives the size.
pub async fn byte_ranges(store: &dyn BlobStore) {
    use kiln_blob::ByteRange;
    // Larger than one read chunk, so a range crosses chunk boundaries.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    put(store, "r/blob", &data).await;
    for (range, want) in [
        (ByteRange::Bounded(0, 0), 0..1),
        (ByteRange::Bounded(70_000, 140_000), 70_000..140_001),
        (ByteRange::Bounded(199_990, 500_000), 199_990..200_000),
        (ByteRange::From(123_456), 123_456..200_000),
        (ByteRange::Suffix(10), 199_990..200_000),
        (ByteRange::Suffix(1_000_000), 0..200_000),
    ] {
        let part = store
            .get_range(&p("r/blob"), range)
            .await
            .unwrap()
            .unwrap_or_else(|total| panic!("{range:?} unsatisfiable for {total} bytes"));
        assert_eq!(part.range, want.start as u64..want.end as u64, "{range:?}");
        assert_eq!(part.total, 200_000);
        let got: Vec<u8> = part.stream.map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(got, &data[want.clone()], "{range:?}");
    }
    for range in [
        ByteRange::From(200_000),
        ByteRange::Bounded(300_000, 300_010),
    ] {
        assert!(matches!(
            store.get_range(&p("r/blob"), range).await,
            Ok(Err(200_000))
        ));
    }
    assert!(matches!(
        store.get_range(&p("r/missing"), ByteRange::From(0)).await,
        Err(BlobError::NotFound(_))
    ));
}

pub async fn failing_body_leaves_nothing(store: &dyn BlobStore) {
    check_failed_upload(store, 100_000).await;
}

/// Large enough to start a multipart upload before failing.
pub async fn failing_large_body_leaves_nothing(store: &dyn BlobStore) {
    check_failed_upload(store, 20 * 1024 * 1024).await;
}

pub async fn invalid_writes_are_refused(store: &dyn BlobStore) {
    assert!(matches!(
        store.put(&BlobPath::root(), bytes_body(b"x")).await,
        Err(BlobError::InvalidPath { .. })
    ));
}
