//! Per-connection limits on the proxy listener (`limits:`), enforced at the
//! accept layer because pingora 0.9 has no hook for them:
//!
//! - **A whole-request-header deadline** (`header_timeout`). pingora times
//!   each read of a request header (60 s, or the keep-alive timeout), never
//!   the whole header, so a client sending one header line per second keeps
//!   a connection (and a file descriptor) forever; and its h2c detection
//!   peeks 24 bytes with no timeout at all. [`DeadlineStream`] wraps every
//!   accepted stream: until the end of a request header has been read
//!   ([`HeaderScan`]), reads and peeks fail with `TimedOut` past the deadline,
//!   which pingora answers by closing the connection. The deadline runs from
//!   the connection's start (after the TLS handshake) for its first request,
//!   and from the first byte of each later request on a kept-alive HTTP/1
//!   connection (the wait before it is the idle timeout's). HTTP/2 is framed:
//!   the deadline ends with its connection preface.
//! - **An idle keep-alive timeout** (`idle_timeout`): pingora's HTTP/1
//!   keep-alive (set per request by [`RequestHook`]) and HTTP/2 idle timeout.
//! - **A cap on open connections** (`max_connections`): [`ConnectionLimiter`]
//!   counts connections from the end of the TLS handshake to their close
//!   (`wisp_downstream_connections`) and closes those over the cap at once
//!   (`wisp_downstream_connections_refused_total`).
//!
//! Known limit: the TLS handshake happens before any of this, in pingora's
//! accept loop, with its own fixed 60 s timeout; connections in a handshake
//! are neither counted nor under `header_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::config::LimitsConfig;

/// Finds the end of an HTTP/1 request header (the empty line) in bytes fed
/// piece by piece. Empty lines before the request line are skipped, as
/// HTTP/1.1 parsers skip them (RFC 9112 §2.2), so they cannot end the
/// deadline early; a bare LF ends a line as it does for pingora's parser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderScan {
    /// A byte other than CR/LF was seen (the request line began).
    started: bool,
    /// The current line has no byte other than CR yet.
    at_line_start: bool,
}

impl HeaderScan {
    /// Feeds the next bytes read; true once the header's end is among them.
    ///
    /// Runs on every read of every request header, so it jumps from line end
    /// to line end instead of matching each byte ([`HeaderScan::feed_bytewise`]
    /// is the same rule, byte by byte, for the tests).
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut rest = bytes;
        loop {
            // Only CRs since the last LF (or since the start): the next byte
            // decides whether this line is empty.
            if self.at_line_start || !self.started {
                match rest.split_first() {
                    None => return false,
                    Some((b'\n', _)) if self.started => return true,
                    Some((b'\n', tail)) => {
                        self.at_line_start = true;
                        rest = tail;
                    }
                    Some((b'\r', tail)) => rest = tail,
                    Some((_, tail)) => {
                        self.started = true;
                        self.at_line_start = false;
                        rest = tail;
                    }
                }
                continue;
            }
            match rest.iter().position(|&b| b == b'\n') {
                None => return false,
                Some(end) => {
                    self.at_line_start = true;
                    rest = &rest[end + 1..];
                }
            }
        }
    }

    /// [`HeaderScan::feed`]'s rule one byte at a time: the reference the
    /// property test holds it to.
    #[cfg(test)]
    fn feed_bytewise(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            match byte {
                b'\n' if self.started && self.at_line_start => return true,
                b'\n' => self.at_line_start = true,
                b'\r' => {}
                _ => {
                    self.started = true;
                    self.at_line_start = false;
                }
            }
        }
        false
    }
}

/// Where a connection is in its current request.
#[derive(Debug)]
enum Phase {
    /// Reading a request header, which must be complete by the deadline.
    Header(HeaderScan),
    /// Waiting for the first byte of the next request (idle: pingora's
    /// keep-alive timeout applies).
    AwaitingRequest,
    /// The header was read: body, response, upgraded or HTTP/2 traffic.
    Past,
}

/// A client stream under the header deadline (see the module docs).
pub struct DeadlineStream {
    inner: Stream,
    header_timeout: Duration,
    phase: Phase,
    /// Fires at the current header deadline.
    deadline: Pin<Box<Sleep>>,
    /// Set by [`RequestHook`] when pingora starts reading another request
    /// on this connection.
    next_request: AtomicBool,
}

impl std::fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

fn header_timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "request header not complete within limits.header_timeout",
    )
}

impl DeadlineStream {
    /// Wraps a just-accepted stream: its first request header is due within
    /// `header_timeout` from now.
    pub fn new(inner: Stream, header_timeout: Duration) -> DeadlineStream {
        DeadlineStream {
            inner,
            header_timeout,
            phase: Phase::Header(HeaderScan::default()),
            deadline: Box::pin(tokio::time::sleep(header_timeout)),
            next_request: AtomicBool::new(false),
        }
    }

    /// Marks the start of another request on this connection: its header
    /// deadline starts with its first byte. No effect before the current
    /// request's header is complete.
    pub fn expect_next_request(&self) {
        self.next_request.store(true, Ordering::Relaxed);
    }

    fn update_phase(&mut self) {
        if self.next_request.swap(false, Ordering::Relaxed) && matches!(self.phase, Phase::Past) {
            self.phase = Phase::AwaitingRequest;
        }
    }

    /// Whether the header deadline has passed (and applies).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.phase, Phase::Header(_)) && self.deadline.as_mut().poll(cx).is_ready()
    }

    /// Moves the phase on with `bytes`, just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::AwaitingRequest) {
            let at = Instant::now() + self.header_timeout;
            self.deadline.as_mut().reset(at);
            self.phase = Phase::Header(HeaderScan::default());
        }
        if let Phase::Header(scan) = &mut self.phase {
            if scan.feed(bytes) {
                self.phase = Phase::Past;
            }
        }
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        this.update_phase();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(buf.filled().get(before..).unwrap_or_default());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if this.poll_expired(cx) => Poll::Ready(Err(header_timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    /// pingora peeks for the h2c preface before reading anything: under the
    /// header deadline too (it waits for 24 bytes with no timeout of its own).
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.update_phase();
        if !matches!(self.phase, Phase::Header(_)) {
            return self.inner.try_peek(buf).await;
        }
        let deadline = self.deadline.deadline();
        tokio::time::timeout_at(deadline, self.inner.try_peek(buf))
            .await
            .unwrap_or_else(|_| Err(header_timed_out()))
    }
}

/// The open-connection count, capped.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    gauge: prometheus::IntGauge,
    refused: prometheus::IntCounter,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<Connections>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

impl Connections {
    /// At most `max` open at once; `gauge` mirrors the count, `refused`
    /// counts the connections turned away.
    pub fn new(
        max: usize,
        gauge: prometheus::IntGauge,
        refused: prometheus::IntCounter,
    ) -> Arc<Connections> {
        Arc::new(Connections {
            open: AtomicUsize::new(0),
            max,
            gauge,
            refused,
        })
    }

    /// Counts a new connection, or `None` (counted as refused) when `max`
    /// are open.
    pub fn try_open(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        if admitted {
            self.gauge.inc();
            Some(ConnectionPermit(Arc::clone(self)))
        } else {
            self.refused.inc();
            None
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// The proxy's pingora app with the limits around it: counts and caps
/// connections and puts each one under the header deadline, then hands it to
/// the HTTP app (`H`, pingora's `HttpProxy`) through [`RequestHook`].
pub struct ConnectionLimiter<H> {
    inner: Arc<RequestHook<H>>,
    connections: Arc<Connections>,
    header_timeout: Duration,
}

impl<H> ConnectionLimiter<H> {
    /// Wraps `app` with `limits`, counting connections in `connections`.
    pub fn new(app: H, limits: &LimitsConfig, connections: Arc<Connections>) -> Self {
        ConnectionLimiter {
            inner: Arc::new(RequestHook {
                inner: Arc::new(app),
                idle_timeout_secs: limits.idle_timeout.as_secs().max(1),
            }),
            connections,
            header_timeout: limits.header_timeout,
        }
    }
}

#[async_trait]
impl<H: HttpServerApp + Send + Sync + 'static> ServerApp for ConnectionLimiter<H> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Dropping the stream closes the connection.
        let _permit = self.connections.try_open()?;
        let stream: Stream = Box::new(DeadlineStream::new(stream, self.header_timeout));
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.inner).await;
    }
}

/// Per request (pingora's HTTP layer calls it for each request of a
/// connection): starts the next request's header deadline and sets the
/// HTTP/1 keep-alive to `idle_timeout`.
pub struct RequestHook<H> {
    inner: Arc<H>,
    idle_timeout_secs: u64,
}

#[async_trait]
impl<H: HttpServerApp + Send + Sync + 'static> HttpServerApp for RequestHook<H> {
    /// Not `async`: the hook's work is synchronous, so this hands back the
    /// inner app's future itself. An `async` wrapper would box a second
    /// future per request and copy the session into it (measured: ~2,400
    /// instructions per request, mostly `memcpy`).
    fn process_new_http<'life0, 'life1, 'async_trait>(
        self: &'life0 Arc<Self>,
        mut session: ServerSession,
        shutdown: &'life1 ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        if let Some(stream) = session
            .stream()
            .and_then(|stream| (**stream).as_any().downcast_ref::<DeadlineStream>())
        {
            stream.expect_next_request();
        }
        // `None` means the connection closes after this request (shutdown,
        // `Connection: close`): kept so.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.idle_timeout_secs));
        }
        self.inner.process_new_http(session, shutdown)
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await;
    }

    async fn process_custom_session(
        self: Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        Arc::clone(&self.inner)
            .process_custom_session(stream, shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    proptest! {
        /// The line-skipping scan answers exactly as the byte-by-byte rule,
        /// read after read, however the bytes are split.
        #[test]
        fn the_fast_scan_agrees_with_the_bytewise_rule(
            text in "[a\r\n:]{0,40}",
            cuts in proptest::collection::vec(0usize..40, 0..6),
        ) {
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let (mut fast, mut slow) = (HeaderScan::default(), HeaderScan::default());
            let mut from = 0;
            for cut in cuts {
                let piece = &bytes[from..cut];
                let (ended_fast, ended_slow) = (fast.feed(piece), slow.feed_bytewise(piece));
                prop_assert_eq!(ended_fast, ended_slow, "{:?} at {}", text, cut);
                if ended_fast {
                    break;
                }
                prop_assert_eq!(fast, slow, "{:?} at {}", text, cut);
                from = cut;
            }
        }
    }

    #[test]
    fn the_scan_ends_at_the_first_empty_line_after_the_request_line() {
        for (pieces, end) in [
            (&["GET / HTTP/1.1\r\nHost: a\r\n\r\n"][..], Some(0)),
            (&["GET / HTTP/1.1\r\n", "Host: a\r\n", "\r", "\n"], Some(3)),
            (&["GET / HTTP/1.1\nHost: a\n\n"], Some(0)),
            (&["GET / HTTP/1.1\r\nHost: a\r\n\r"], None),
            (&["\r\n\r\n\r\n", "GET / HTTP/1.1\r\n", "X: y\r\n"], None),
            (&["\r\n\r\n", "GET / HTTP/1.1\r\n\r\n"], Some(1)),
            (&["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], Some(0)),
            (&["GET / HTTP/1.1\r\nX: a\r\n", " folded\r\n"], None),
        ] {
            let mut scan = HeaderScan::default();
            let got = pieces.iter().position(|piece| scan.feed(piece.as_bytes()));
            assert_eq!(got, end, "{pieces:?}");
        }
    }

    fn metrics() -> (prometheus::IntGauge, prometheus::IntCounter) {
        (
            prometheus::IntGauge::new("open", "open").unwrap(),
            prometheus::IntCounter::new("refused", "refused").unwrap(),
        )
    }

    #[test]
    fn connections_over_the_cap_are_refused_and_counted() {
        let (gauge, refused) = metrics();
        let connections = Connections::new(2, gauge.clone(), refused.clone());
        let first = connections.try_open().unwrap();
        let second = connections.try_open().unwrap();
        assert!(connections.try_open().is_none());
        assert_eq!((connections.open(), gauge.get(), refused.get()), (2, 2, 1));
        drop(first);
        let third = connections.try_open().unwrap();
        assert_eq!((connections.open(), gauge.get()), (2, 2));
        drop((second, third));
        assert_eq!((connections.open(), gauge.get(), refused.get()), (0, 0, 1));
    }

    /// A wrapped in-memory connection and the client's end.
    fn pair(timeout: Duration) -> (DeadlineStream, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(1024);
        (DeadlineStream::new(Box::new(server), timeout), client)
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_trickled_past_the_deadline_fails_the_read() {
        let (mut stream, mut client) = pair(Duration::from_secs(10));
        let mut buf = [0; 64];
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 16);
        for _ in 0..9 {
            tokio::time::advance(Duration::from_secs(1)).await;
            client.write_all(b"X: y\r\n").await.unwrap();
            assert_eq!(stream.read(&mut buf).await.unwrap(), 6);
        }
        let error = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_header_reads_wait_and_the_next_request_starts_a_new_deadline() {
        let (mut stream, mut client) = pair(Duration::from_secs(10));
        let mut buf = [0; 64];
        client.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 19);
        // A slow body is not the header deadline's business.
        tokio::time::advance(Duration::from_secs(60)).await;
        client.write_all(b"body").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 4);

        // Idle before the next request: not timed here (keep-alive is).
        stream.expect_next_request();
        tokio::time::advance(Duration::from_secs(60)).await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 16);
        tokio::time::advance(Duration::from_secs(11)).await;
        let error = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_times_out_even_in_a_peek() {
        let (mut stream, _client) = pair(Duration::from_secs(10));
        let mut buf = [0; 24];
        // A duplex stream cannot peek (Ok(false)); a silent one still waits.
        let _ = stream.try_peek(&mut buf).await;
        let error = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }
}
