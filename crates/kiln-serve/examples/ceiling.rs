//! The ceiling for any HTTP model server on this machine (bench/serve): an axum endpoint that
//! parses the same JSON body as `kiln serve` (into a `serde_json::Value`) and answers a
//! constant prediction. Same runtime, TCP_NODELAY and shutdown path as `kiln serve`.
//!
//! With `--raw` it is the machine's floor instead: a blocking `std::net` responder, one thread
//! per connection, no async runtime, no HTTP library and no JSON parsing, that answers every
//! request with the same bytes. Its round trip at concurrency 1 is what the machine (loopback
//! TCP, thread wake-ups, the hypervisor) costs before any server does any work.
//!
//! Both busy-poll before they sleep, as `kiln server` and `kiln serve` do by default
//! (`--busy-poll`, microseconds, default 100; 0 turns it off): the ceiling through the same
//! `kiln_http::busy_poll` runtime hook, the floor by reading its socket without blocking for
//! that long before it blocks. Without it, a server that polls would beat the "floor".
//!
//! ```sh
//! cargo run --release -p kiln-serve --example ceiling -- 127.0.0.1:0
//! cargo run --release -p kiln-serve --example ceiling -- --raw 127.0.0.1:0
//! cargo run --release -p kiln-serve --example ceiling -- --raw --busy-poll 0 127.0.0.1:0
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

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
fn raw_connection(stream: TcpStream, busy_poll: Duration) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    if !busy_poll.is_zero() {
        stream.set_nonblocking(true)?;
    }
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        ANSWER.len()
    )
    .into_bytes();
    reply.extend_from_slice(ANSWER);
    let mut writer = Spin {
        stream: stream.try_clone()?,
        budget: busy_poll,
    };
    let mut reader = BufReader::new(Spin {
        stream,
        budget: busy_poll,
    });
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

/// A socket that, with a budget, is non-blocking: a read that finds no data retries (yielding
/// the CPU in between) for up to the budget before it blocks.
struct Spin {
    stream: TcpStream,
    budget: Duration,
}

impl Read for Spin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.budget.is_zero() {
            return self.stream.read(buf);
        }
        let start = Instant::now();
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() >= self.budget {
                        self.stream.set_nonblocking(false)?;
                        let read = self.stream.read(buf);
                        self.stream.set_nonblocking(true)?;
                        return read;
                    }
                    std::thread::yield_now();
                }
                other => return other,
            }
        }
    }
}

impl Write for Spin {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.stream.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

fn raw(addr: &str, busy_poll: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    eprintln!("raw floor listening on http://{}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            let _ = raw_connection(stream, busy_poll);
        });
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let mut raw_mode = false;
    let mut busy_poll = Duration::from_micros(100);
    let mut addr = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--raw" => raw_mode = true,
            "--busy-poll" => {
                let us = args.next().and_then(|v| v.parse().ok()).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "--busy-poll takes microseconds, e.g. 100 (0: off)",
                    )
                })?;
                busy_poll = Duration::from_micros(us);
            }
            _ => addr = arg,
        }
    }
    if raw_mode {
        return raw(&addr, busy_poll);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    kiln_http::busy_poll::install(&mut builder, busy_poll)?;
    let rt = builder.build()?;
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
