//! Busy polling through `kiln_http::serve` over real sockets (its own test binary: the budget
//! is process-wide). Requests on a keep-alive connection are caught by a spinning worker, and
//! work that does not arrive on a socket (a blocking task, a timer) is still served.

use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;

fn app() -> Router {
    Router::new()
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/blocking",
            get(|| async {
                tokio::task::spawn_blocking(|| "from the blocking pool")
                    .await
                    .unwrap_or("join failed")
            }),
        )
        .route(
            "/timer",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                "slept"
            }),
        )
}

#[test]
fn spinning_workers_serve_keep_alive_requests_blocking_tasks_and_timers() {
    assert!(!kiln_http::busy_poll::enabled());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    kiln_http::busy_poll::install(&mut builder, Duration::from_micros(500)).expect("install");
    assert!(kiln_http::busy_poll::enabled());
    let rt = builder.build().expect("runtime");

    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(kiln_http::serve(
        listener,
        app(),
        async move {
            let _ = stop_rx.await;
        },
        None,
    ));

    // The client runs on this thread, outside the server's runtime, so its workers go idle
    // (and spin) between requests.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    for i in 0..300 {
        let body = format!("{{\"n\":{i}}}");
        let got = client
            .post(format!("{url}/echo"))
            .body(body.clone())
            .send()
            .and_then(|r| r.text())
            .expect("echo");
        assert_eq!(got, body);
    }
    for _ in 0..50 {
        for (path, want) in [("blocking", "from the blocking pool"), ("timer", "slept")] {
            let got = client
                .get(format!("{url}/{path}"))
                .send()
                .and_then(|r| r.text())
                .expect(path);
            assert_eq!(got, want);
        }
    }

    let stats = kiln_http::busy_poll::stats();
    // About 380 of these 400 requests arrive during a spin on an idle machine; without the
    // connections in the watched set, one or two (the listener's) would.
    assert!(
        stats.ready >= 40,
        "spins rarely saw a request arrive on a watched socket: {stats:?}"
    );

    stop_tx.send(()).expect("server running");
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
        .expect("serve returns")
        .expect("join")
        .expect("serve");
}
