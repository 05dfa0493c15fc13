//! The shared suite against an S3-compatible server (e.g. moto), for [`S3Store`].
//!
//! Environment:
//! - `KILN_TEST_S3_ENDPOINT`: the server, e.g. `http://127.0.0.1:5000`. Unset: the tests are
//!   skipped with a notice, unless `KILN_REQUIRE_SERVICES=1`, which makes them fail.
//! - `KILN_TEST_S3_BUCKET`: the bucket (default `kiln-test`), created by the tests with an
//!   unsigned `PUT {endpoint}/{bucket}` (accepted by moto).
//! - `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`: credentials (default `testing`).
//!
//! Every test works under its own random key prefix, so they run in parallel.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{bytes_body, p, read, Fixture};
use kiln_blob::{open, AmazonS3Builder, BlobStore, S3Store};

struct S3Env {
    endpoint: String,
    bucket: String,
}

/// The test server, or `None` (after a notice) when the tests should be skipped.
fn s3_env() -> Option<S3Env> {
    let endpoint = std::env::var("KILN_TEST_S3_ENDPOINT").unwrap_or_default();
    if endpoint.trim().is_empty() {
        if std::env::var("KILN_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!(
                "KILN_REQUIRE_SERVICES=1 but KILN_TEST_S3_ENDPOINT is not set: start an \
                 S3-compatible server (e.g. `moto_server -H 127.0.0.1 -p 5000`) and set \
                 KILN_TEST_S3_ENDPOINT=http://127.0.0.1:5000"
            );
        }
        eprintln!("skipping S3 test: KILN_TEST_S3_ENDPOINT is not set");
        return None;
    }
    let bucket = std::env::var("KILN_TEST_S3_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "kiln-test".to_owned());
    let endpoint = endpoint.trim().trim_end_matches('/').to_owned();
    static CREATED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = CREATED.get_or_init(|| create_bucket(&endpoint, &bucket)) {
        panic!("cannot create test bucket `{bucket}` at {endpoint}: {e}");
    }
    Some(S3Env { endpoint, bucket })
}

/// `PUT /{bucket}` without authentication over plain HTTP/1.1; "already exists" is fine.
fn create_bucket(endpoint: &str, bucket: &str) -> Result<(), String> {
    let host = endpoint
        .strip_prefix("http://")
        .ok_or("KILN_TEST_S3_ENDPOINT must be an http:// URL")?;
    let host = host.split('/').next().unwrap_or(host);
    let mut conn = TcpStream::connect(host).map_err(|e| format!("connect to {host}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    conn.read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') || status == "409" {
        Ok(())
    } else {
        Err(format!(
            "unexpected response: {}",
            response.lines().next().unwrap_or("")
        ))
    }
}

fn credential(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "testing".to_owned())
}

fn unique_prefix() -> String {
    format!("kiln-test-{}", uuid::Uuid::new_v4().simple())
}

fn store_at(env: &S3Env, prefix: &str) -> S3Store {
    let builder = AmazonS3Builder::new()
        .with_endpoint(&env.endpoint)
        .with_access_key_id(credential("AWS_ACCESS_KEY_ID"))
        .with_secret_access_key(credential("AWS_SECRET_ACCESS_KEY"));
    S3Store::from_builder(builder, &env.bucket, prefix).unwrap()
}

async fn make_s3() -> Option<Fixture> {
    let env = s3_env()?;
    let store = store_at(&env, &unique_prefix());
    Some(Fixture {
        store: Arc::new(store),
        guard: Box::new(()),
    })
}

blob_store_suite!(make_s3);

#[tokio::test]
async fn prefixes_are_isolated() {
    let Some(env) = s3_env() else { return };
    let base = unique_prefix();
    let a = store_at(&env, &format!("{base}/a"));
    let ab = store_at(&env, &format!("{base}/ab"));
    let parent = store_at(&env, &base);
    common::put(&a, "x", b"from a").await;
    common::put(&ab, "x", b"from ab").await;
    assert_eq!(read(&a, "x").await, b"from a");
    assert_eq!(
        a.list(&kiln_blob::BlobPath::root()).await.unwrap(),
        vec![common::file("x", 6)]
    );
    assert_eq!(
        parent.list(&kiln_blob::BlobPath::root()).await.unwrap(),
        vec![common::dir("a"), common::dir("ab")]
    );
    // Clearing one store leaves its neighbour with a longer prefix alone.
    a.delete(&kiln_blob::BlobPath::root()).await.unwrap();
    assert_eq!(read(&ab, "x").await, b"from ab");
    assert_eq!(a.uri(), format!("s3://{}/{base}/a", env.bucket));
    parent.delete(&kiln_blob::BlobPath::root()).await.unwrap();
}

/// `open("s3://…")` configured purely from the environment; runs when `AWS_ENDPOINT_URL` (or
/// `AWS_ENDPOINT`) points at the test server.
#[tokio::test]
async fn open_from_environment() {
    let Some(env) = s3_env() else { return };
    let configured = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .unwrap_or_default();
    if configured.trim_end_matches('/') != env.endpoint {
        eprintln!("skipping open_from_environment: AWS_ENDPOINT_URL is not KILN_TEST_S3_ENDPOINT");
        return;
    }
    let prefix = unique_prefix();
    let store = open(&format!("s3://{}/{prefix}", env.bucket)).unwrap();
    store.put(&p("m/x"), bytes_body(b"via env")).await.unwrap();
    assert_eq!(read(&*store, "m/x").await, b"via env");
    store.delete(&kiln_blob::BlobPath::root()).await.unwrap();
}
