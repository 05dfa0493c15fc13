//! The ceiling for any HTTP model server on this machine (bench/serve): an axum endpoint that
//! parses the same JSON body as `kiln serve` (into a `serde_json::Value`) and answers a
//! constant prediction. Same runtime, TCP_NODELAY and shutdown path as `kiln serve`.
//!
//! With `--raw` it is the machine's floor instead: a blocking `std::net` responder, one thread
//! per connection, no async runtime, no HTTP library and no JSON parsing, that answers every
//! request with the same bytes. Its round trip at concurrency 1 is what the machine (loopback
//! TCP, thread wake-ups, the hypervisor) costs before any server does any work.
//!
//! ```sh
//! cargo run --release -p kiln-serve --example ceiling -- 127.0.0.1:0
//! cargo run --release -p kiln-serve --example ceiling -- --raw 127.0.0.1:0
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
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

/// The largest request body the raw floor reads (the bench sends a few hundred bytes); a bigger
/// Content-Length closes the connection instead of allocating it.
const MAX_BODY: usize = 1 << 20;

/// Answer keep-alive HTTP/1.1 requests on one connection until the client closes it.
fn raw_connection(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        ANSWER.len()
    )
    .into_bytes();
    reply.extend_from_slice(ANSWER);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        // Request line and headers; only Content-Length matters.
        let mut length = 0usize;
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" || line == "\n" {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        if length > MAX_BODY {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("Content-Length {length} is over {MAX_BODY} bytes"),
            ));
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        writer.write_all(&reply)?;
    }
}

fn raw(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    eprintln!("raw floor listening on http://{}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            let _ = raw_connection(stream);
        });
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let raw_mode = args.first().is_some_and(|a| a == "--raw");
    if raw_mode {
        args.remove(0);
    }
    let addr = args
        .into_iter()
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    if raw_mode {
        return raw(&addr);
    }
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
