//! The HTTP/1.1 accept loop shared by `kiln server` and `kiln serve`: TCP_NODELAY on every
//! connection, graceful shutdown with an optional drain deadline, and one connection task per
//! client that keeps its request on the thread that read it ([`InlineWakes`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let app = axum::Router::new().route("/health", axum::routing::get(|| async { "OK" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! kiln_http::serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }, None).await
//! # }
//! ```
//!
//! Why not `axum::serve`: it spawns each connection's future as it is, and on tokio's
//! multi-threaded runtime that costs a thread hand-off on every request that has a body (see
//! [`InlineWakes`]). This loop is the same as axum's otherwise: hyper's HTTP/1 connection over
//! the axum `Router`, keep-alive on, and a [header read timeout](set_header_read_timeout).

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

pub mod busy_poll;

/// Raise this process's soft limit on open files to its hard limit, as Go's runtime does: a
/// server holds one descriptor per connection, and the usual soft limit of 1024 would refuse
/// connections long before the machine runs out of anything. Returns the limit now in force
/// (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        let soft = limit.current?;
        if limit.maximum.is_none_or(|hard| hard > soft) {
            // No hard limit: a generous fixed number (the kernel's nr_open caps it anyway).
            limit.current = Some(limit.maximum.unwrap_or(1 << 20));
            if let Err(err) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!(%err, "Could not raise the open-file limit.");
                return Some(soft);
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The default of [`set_header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(75);

/// [`set_header_read_timeout`]'s value in milliseconds.
static HEADER_READ_TIMEOUT_MS: AtomicU64 = AtomicU64::new(75_000);

/// How long a connection of this process's servers may wait for a request's headers (set once
/// at startup; default [`DEFAULT_HEADER_READ_TIMEOUT`]): a client that opens connections and
/// never finishes a request (slowloris) cannot hold them, and their file descriptors, for
/// ever. In hyper this clock also runs while a keep-alive connection is idle between
/// requests, so an idle connection is closed after this long (as nginx's `keepalive_timeout`
/// does); HTTP clients reconnect on their own. Zero is taken as one millisecond.
pub fn set_header_read_timeout(timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    HEADER_READ_TIMEOUT_MS.store(ms, Ordering::Relaxed);
}

fn header_read_timeout() -> Duration {
    Duration::from_millis(HEADER_READ_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting, let the open
/// connections finish their in-flight requests, and return. With `drain`, give up waiting
/// for them after that long (their tasks are left to the runtime's own shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Option<Duration>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    #[cfg(unix)]
    busy_poll::watch(std::os::fd::AsFd::as_fd(&listener));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The MLflow client and load balancers reuse keep-alive connections; Nagle's
        // algorithm would hold every small response back for the peer's delayed ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "Failed to set TCP_NODELAY.");
        }
        #[cfg(unix)]
        busy_poll::watch(std::os::fd::AsFd::as_fd(&stream));
        let service = TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout())
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(InlineWakes::new(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "Connection ended with an error.");
            }
        }));
    }
    drop(listener);
    match drain {
        None => graceful.shutdown().await,
        Some(limit) => {
            if tokio::time::timeout(limit, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(drain = ?limit, "Drain deadline passed; closing the remaining connections.");
            }
        }
    }
    Ok(())
}

/// A failed `accept`: a connection the peer gave up on is nothing; anything else (out of file
/// descriptors, say) is logged and retried after a pause instead of spinning.
async fn accept_error(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%err, "Accepting a connection failed; retrying in 1 s.");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// How many times in a row [`InlineWakes`] repolls a future that woke itself before it leaves
/// the wake to the scheduler (so a future that always wakes itself still yields).
const MAX_INLINE_REPOLLS: usize = 4;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const POLLING_WOKEN: u8 = 2;

/// Runs a future whose wakes that arrive *while it is being polled* are served by polling it
/// again at once, instead of being handed to the scheduler.
///
/// hyper's HTTP/1 dispatcher polls the handler before it hands over the request body, so the
/// body channel wakes the connection task from inside the task's own poll. tokio's
/// multi-threaded scheduler treats such a wake as a yield: the task goes to the back of the run
/// queue and a parked worker is woken to steal it. At one keep-alive connection that is a futex
/// wake and the I/O driver moving to the other worker on every request: measured on
/// `POST /api/2.0/mlflow/runs/log-metric`, 2.4 context switches per request instead of 1.0.
/// Repolling here keeps the request on the thread that read it. Wakes that come after the poll
/// returned `Pending` go to the task's own waker as usual.
pub struct InlineWakes<F> {
    inner: Pin<Box<F>>,
    shared: Arc<Shared>,
    waker: Waker,
}

struct Shared {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self.state.compare_exchange(
            POLLING,
            POLLING_WOKEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // Being polled: the poll loop sees the flag and polls again.
            Ok(_) | Err(POLLING_WOKEN) => {}
            Err(_) => self.task.wake(),
        }
    }
}

impl<F: Future> InlineWakes<F> {
    pub fn new(inner: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&shared));
        Self {
            inner: Box::pin(inner),
            shared,
            waker,
        }
    }
}

impl<F: Future> Future for InlineWakes<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.shared.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_INLINE_REPOLLS {
            this.shared.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(out) = this.inner.as_mut().poll(&mut inner_cx) {
                this.shared.state.store(IDLE, Ordering::Release);
                return Poll::Ready(out);
            }
            if this
                .shared
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
        }
        // Still waking itself: let the scheduler run others first.
        this.shared.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wakes that reach the task.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes itself on each of its first `self_wakes` polls, then completes.
    struct SelfWaking {
        self_wakes: usize,
        polls: usize,
    }

    impl Future for SelfWaking {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.self_wakes {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        (count, waker)
    }

    #[test]
    fn a_wake_during_the_poll_repolls_at_once() {
        let (count, waker) = counting();
        let mut fut = InlineWakes::new(SelfWaking {
            self_wakes: 2,
            polls: 0,
        });
        let mut cx = Context::from_waker(&waker);
        assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Ready(3));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "no wake reached the task"
        );
    }

    #[test]
    fn a_future_that_keeps_waking_itself_still_yields() {
        let (count, waker) = counting();
        let mut fut = InlineWakes::new(SelfWaking {
            self_wakes: 100,
            polls: 0,
        });
        let mut cx = Context::from_waker(&waker);
        assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Pending);
        assert_eq!(fut.inner.polls, MAX_INLINE_REPOLLS);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the task was rescheduled"
        );
    }

    #[test]
    fn a_wake_after_the_poll_reaches_the_task() {
        let (count, waker) = counting();
        let stored: Arc<std::sync::Mutex<Option<Waker>>> = Arc::default();
        let slot = Arc::clone(&stored);
        let mut fut = InlineWakes::new(futures::future::poll_fn(move |cx| {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            Poll::<()>::Pending
        }));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Pending);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        let later = stored.lock().unwrap_or_else(|p| p.into_inner()).take();
        later.expect("the future kept its waker").wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
