//! The ceiling for any HTTP model server on this machine (bench/serve): an axum endpoint that
//! parses the same JSON body as `kiln serve` (into a `serde_json::Value`) and answers a
//! constant prediction. Same runtime, TCP_NODELAY and shutdown path as `kiln serve`.
//!
//! ```sh
//! cargo run --release -p kiln-serve --example ceiling -- 127.0.0.1:0
//! ```

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

const ANSWER: &[u8] = br#"{"predictions":[0],"probabilities":[[0.75,0.25]]}"#;

async fn invocations(body: Bytes) -> Response {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.get("dataframe_split").is_some() || v.get("inputs").is_some() => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            ANSWER,
        )
            .into_response(),
        Ok(_) => (StatusCode::BAD_REQUEST, "expected dataframe_split").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("ceiling listening on http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/invocations", post(invocations))
            .route("/ping", get(|| async { "\n" }));
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        kiln_serve::serve(listener, app, shutdown, Duration::from_secs(5)).await
    })
}
