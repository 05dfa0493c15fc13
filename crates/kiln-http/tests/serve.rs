//! `kiln_http::serve` end to end over real sockets: bodies arrive whole over a keep-alive
//! connection, and shutdown lets an in-flight request finish before `serve` returns.

use std::time::Duration;

use axum::routing::post;
use axum::Router;

fn app() -> Router {
    Router::new()
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/slow",
            post(|body: String| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                body
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_posts_then_graceful_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kiln_http::serve(
        listener,
        app(),
        async move {
            let _ = stop_rx.await;
        },
        None,
    ));

    let client = reqwest::Client::new();
    for i in 0..50 {
        let body = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 100));
        let got = client
            .post(format!("{url}/echo"))
            .body(body.clone())
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text");
        assert_eq!(got, body);
    }

    // A request in flight when the shutdown comes still gets its answer.
    let slow = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.post(format!("{url}/slow")).body("late").send().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_tx.send(()).expect("server running");
    let resp = slow
        .await
        .expect("join")
        .expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("text"), "late");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after the drain")
        .expect("join")
        .expect("serve");
    // No longer accepting.
    assert!(client
        .post(format!("{url}/echo"))
        .body("x")
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_bounds_the_wait() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(kiln_http::serve(
        listener,
        Router::new().route(
            "/hang",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "never"
            }),
        ),
        tokio::time::sleep(Duration::from_millis(200)),
        Some(Duration::from_millis(200)),
    ));
    let hung = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/hang"))
            .send()
            .await
    });
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve gives up after the drain deadline")
        .expect("join")
        .expect("serve");
    hung.abort();
}
