//! Busy polling before a worker sleeps: a bounded slice of CPU after each burst of work, so
//! that the next request does not pay for waking a sleeping CPU.
//!
//! On virtual machines whose kernel does not poll before it halts an idle vCPU (guest
//! halt-polling off, as on the Firecracker VMs kiln is benchmarked on), every time a worker
//! thread sleeps the vCPU exits to the hypervisor, and every wake-up comes back through it. At
//! one keep-alive connection that happens on every request and costs more than the request
//! itself: there a do-nothing responder answers about 11,000 requests/s, and 42,000 once the
//! kernel's halt-polling is turned on.
//!
//! With a budget installed, a tokio worker about to park first watches the server's sockets
//! (an epoll set of its own, level-triggered: only unread data counts) for up to that long. As
//! soon as one is readable, or work lands in the runtime's global queue (a blocking task or
//! another thread woke a task), it parks, and the runtime's own poll returns at once instead of
//! halting. One worker spins at a time, and between checks it yields its CPU to any other thread
//! that wants it, the way the kernel's halt-polling only polls an otherwise idle CPU. An idle
//! server spends one budget after its last request, then sleeps as before. Timers that fall due
//! while a worker spins wait for it, which is why the budget is kept short.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

static BUSY_POLL: OnceLock<BusyPoll> = OnceLock::new();

/// How spins ended, since the process started (see [`stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// A watched socket became readable: the wake-up this exists to save.
    pub ready: u64,
    /// Work arrived in the runtime's global queue.
    pub work: u64,
    /// The budget ran out; the worker slept as it would have anyway.
    pub expired: u64,
}

struct BusyPoll {
    #[cfg(target_os = "linux")]
    epoll: std::os::fd::OwnedFd,
    #[cfg(target_os = "linux")]
    budget: Duration,
    #[cfg(target_os = "linux")]
    spinning: std::sync::atomic::AtomicBool,
    ready: AtomicU64,
    work: AtomicU64,
    expired: AtomicU64,
}

/// Make `builder`'s workers busy-poll the sockets that [`crate::serve`] listens on and accepts
/// for up to `budget` before they sleep. A zero budget, or a platform other than Linux, changes
/// nothing. The first budget installed in a process is the one used.
pub fn install(builder: &mut tokio::runtime::Builder, budget: Duration) -> std::io::Result<()> {
    if budget.is_zero() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::event::epoll;
        if BUSY_POLL.get().is_none() {
            let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            let _ = BUSY_POLL.set(BusyPoll {
                epoll,
                budget,
                spinning: std::sync::atomic::AtomicBool::new(false),
                ready: AtomicU64::new(0),
                work: AtomicU64::new(0),
                expired: AtomicU64::new(0),
            });
        }
        builder.on_thread_park(|| {
            if let Some(bp) = BUSY_POLL.get() {
                bp.spin();
            }
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = builder;
    Ok(())
}

/// Whether busy polling is on in this process.
pub fn enabled() -> bool {
    BUSY_POLL.get().is_some()
}

/// How the spins so far ended (all zero when busy polling is off).
pub fn stats() -> Stats {
    BUSY_POLL.get().map_or_else(Stats::default, |bp| Stats {
        ready: bp.ready.load(Ordering::Relaxed),
        work: bp.work.load(Ordering::Relaxed),
        expired: bp.expired.load(Ordering::Relaxed),
    })
}

/// Watch a listener or an accepted connection while spinning; closing the socket removes it.
#[cfg(unix)]
pub(crate) fn watch(fd: std::os::fd::BorrowedFd<'_>) {
    #[cfg(target_os = "linux")]
    if let Some(bp) = BUSY_POLL.get() {
        use rustix::event::epoll;
        if let Err(err) = epoll::add(
            &bp.epoll,
            fd,
            epoll::EventData::new_u64(0),
            epoll::EventFlags::IN,
        ) {
            tracing::debug!(%err, "Busy polling cannot watch a socket.");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

#[cfg(target_os = "linux")]
impl BusyPoll {
    fn spin(&self) {
        use rustix::event::epoll;
        if self.spinning.swap(true, Ordering::Acquire) {
            return;
        }
        // Work woken from outside the runtime (a blocking task, the micro-batcher) lands in
        // the global queue; this worker should go and run it rather than watch sockets.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let start = std::time::Instant::now();
        let mut events = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 1];
        let outcome = loop {
            match epoll::wait(&self.epoll, &mut events, Some(&zero)) {
                Ok(([], _)) => {}
                // Readable (or the poll failed): sleep now, the runtime takes it from here.
                _ => break &self.ready,
            }
            if runtime
                .as_ref()
                .is_some_and(|rt| rt.metrics().global_queue_depth() > 0)
            {
                break &self.work;
            }
            if start.elapsed() >= self.budget {
                break &self.expired;
            }
            std::thread::yield_now();
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        self.spinning.store(false, Ordering::Release);
    }
}
