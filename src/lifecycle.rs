//! Process lifecycle: draining on SIGTERM/SIGINT and counting requests in
//! flight, so a rollout never drops a request (README, "Stopping, draining
//! and reloading"; `shutdown_grace`).
//!
//! ```text
//! SIGTERM/SIGINT ─▶ draining: /readyz 503, every response says `Connection: close`,
//!                   the listener keeps accepting             (drain_delay)
//!                ─▶ pingora stops accepting (listeners closed); requests in
//!                   flight, WebSockets included, run on      (≤ shutdown_grace)
//!                ─▶ exit 0 as soon as none is in flight, or at the end of the
//!                   grace, when pingora drops what is left (each such request
//!                   is logged as cut by the shutdown)
//! ```
//!
//! pingora's own SIGTERM handling sleeps its whole grace period whatever is in
//! flight; wisp hands pingora the signal only after `drain_delay`
//! ([`DrainingSignal`]) and ends the process early once the last request has
//! finished ([`Lifecycle::exit_when_idle`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use prometheus::IntGauge;
use tokio::sync::Notify;

/// Whether wisp is draining and how many requests are in flight.
#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: InFlightShards,
    idle: Notify,
    draining_gauge: IntGauge,
}

/// Requests in flight, counted in per-thread shards: starting and ending a
/// request writes a cache line of its own thread's, never one that every
/// worker thread bumps. The total is only summed when asked (a scrape, the
/// drain).
#[derive(Debug, Default)]
struct InFlightShards([Shard; SHARDS]);

const SHARDS: usize = 16;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicUsize);

thread_local! {
    /// This thread's shard, assigned round-robin on first use.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl InFlightShards {
    /// Counts one more on this thread's shard; returns the shard to count
    /// down on (the request may end on another thread).
    fn add(&self) -> usize {
        let shard = SHARD.with(|shard| *shard);
        self.0[shard].0.fetch_add(1, Ordering::SeqCst);
        shard
    }

    fn remove(&self, shard: usize) {
        self.0[shard].0.fetch_sub(1, Ordering::SeqCst);
    }

    fn total(&self) -> usize {
        self.0.iter().map(|s| s.0.load(Ordering::SeqCst)).sum()
    }
}

impl Lifecycle {
    /// A running (not draining) process with nothing in flight; the gauge
    /// is `wisp_draining`.
    pub fn new(draining_gauge: IntGauge) -> Arc<Lifecycle> {
        Arc::new(Lifecycle {
            draining: AtomicBool::new(false),
            in_flight: InFlightShards::default(),
            idle: Notify::new(),
            draining_gauge,
        })
    }

    /// Whether a shutdown signal has arrived (`/readyz` answers 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts draining; returns whether this call started it.
    pub fn start_draining(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::SeqCst);
        if first {
            self.draining_gauge.set(1);
        }
        first
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        let shard = self.in_flight.add();
        InFlight {
            lifecycle: Arc::clone(self),
            shard,
        }
    }

    /// Requests in flight now (`wisp_in_flight_requests`).
    pub fn in_flight(&self) -> usize {
        self.in_flight.total()
    }

    /// Resolves once no request is in flight (meant for a draining process:
    /// only then do finishing requests wake it).
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up between the check and
            // the await is not lost.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// After pingora's shutdown broadcast (`shutdown` turns true): waits for
    /// the requests in flight, then ends the process with status 0 instead of
    /// sleeping out the rest of the grace. Past the grace pingora drops what is
    /// left and exits by itself.
    pub async fn exit_when_idle(&self, mut shutdown: pingora::server::ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        self.idle().await;
        tracing::info!("drained: no request in flight, exiting");
        std::process::exit(0);
    }
}

/// One request in flight (see [`Lifecycle::request_started`]).
#[derive(Debug)]
pub struct InFlight {
    lifecycle: Arc<Lifecycle>,
    shard: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let lifecycle = &self.lifecycle;
        lifecycle.in_flight.remove(self.shard);
        if lifecycle.is_draining() && lifecycle.in_flight() == 0 {
            lifecycle.idle.notify_waiters();
        }
    }
}

/// pingora's shutdown signal, delayed: on SIGTERM or SIGINT wisp starts
/// draining at once and tells pingora to stop accepting only after
/// `drain_delay` (read when the signal arrives, so a reload can change it).
pub struct DrainingSignal {
    /// The lifecycle to mark draining.
    pub lifecycle: Arc<Lifecycle>,
    /// The current `drain_delay`.
    pub drain_delay: Box<dyn Fn() -> Duration + Send + Sync>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignal {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            // Without signal handlers there is nothing to wait for; the
            // process can still be killed.
            tracing::error!("cannot install SIGTERM/SIGINT handlers");
            return std::future::pending().await;
        };
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        self.lifecycle.start_draining();
        let delay = (self.drain_delay)();
        tracing::info!(
            signal = name,
            drain_delay_ms = delay.as_millis() as u64,
            in_flight = self.lifecycle.in_flight(),
            "draining: /readyz answers 503; still accepting until the drain delay ends"
        );
        // A second signal ends the drain delay early (an impatient operator).
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = terminate.recv() => tracing::info!("second signal: drain delay cut short"),
            _ = interrupt.recv() => tracing::info!("second signal: drain delay cut short"),
        }
        tracing::info!(
            in_flight = self.lifecycle.in_flight(),
            "drain delay over: no longer accepting; waiting for requests in flight"
        );
        ShutdownSignal::GracefulTerminate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle() -> Arc<Lifecycle> {
        Lifecycle::new(IntGauge::new("d", "d").unwrap())
    }

    #[tokio::test]
    async fn idle_waits_for_the_last_request_in_flight() {
        let lifecycle = lifecycle();
        lifecycle.start_draining();
        let first = lifecycle.request_started();
        // Ended on another thread than it started on.
        let second =
            std::thread::scope(|scope| scope.spawn(|| lifecycle.request_started()).join().unwrap());
        assert_eq!(lifecycle.in_flight(), 2);
        let waiter = tokio::spawn({
            let lifecycle = Arc::clone(&lifecycle);
            async move { lifecycle.idle().await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one request is still in flight");
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("idle after the last request")
            .unwrap();
        assert_eq!(lifecycle.in_flight(), 0);
    }

    #[test]
    fn draining_starts_once_and_sets_the_gauge() {
        let lifecycle = lifecycle();
        assert!(!lifecycle.is_draining());
        assert!(lifecycle.start_draining());
        assert!(!lifecycle.start_draining());
        assert!(lifecycle.is_draining());
        assert_eq!(lifecycle.draining_gauge.get(), 1);
    }
}
