//! kiln's tracking server: MLflow's REST API ([`create_app`]) over any [`TrackingStore`], and the
//! artifact proxy over any [`BlobStore`]. Handlers are thin: parse the request, make one store
//! call on a blocking thread, render MLflow's JSON. [`gc`] permanently removes deleted runs and
//! experiments with their artifacts.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn kiln_store::TrackingStore>, blobs: std::sync::Arc<dyn kiln_blob::BlobStore>) {
//! let app = kiln_server::create_app(kiln_server::AppState::new(store, blobs));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await.unwrap();
//! kiln_server::serve(listener, app, std::future::pending()).await.unwrap();
//! # }
//! ```

mod error;
pub mod gc;
mod routes;
pub mod uris;

use std::sync::Arc;

use kiln_blob::BlobStore;
use kiln_store::TrackingStore;

pub use error::{ApiResult, ServerError};
pub use routes::create_app;

/// Everything a handler needs, built once by the binary.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn TrackingStore>,
    pub blobs: Arc<dyn BlobStore>,
}

impl AppState {
    pub fn new(store: Arc<dyn TrackingStore>, blobs: Arc<dyn BlobStore>) -> Self {
        Self { store, blobs }
    }
}

/// Serve `app` on `listener` with TCP_NODELAY (the MLflow client reuses keep-alive connections,
/// and Nagle's algorithm would stall every small response) until `shutdown` resolves, then let
/// in-flight requests finish. The accept loop is [`kiln_http::serve`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    kiln_http::serve(listener, app, shutdown, None).await
}
