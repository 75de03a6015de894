//! The HTTP server loop: hyper's HTTP/1 connection driver over a tokio listener, with the
//! limits `axum::serve` lacks.
//!
//! What hyper (1.12) does, and what is added here:
//!
//! - hyper parses HTTP/1, keeps connections alive, and on `graceful_shutdown` closes a
//!   connection that waits for a request (a fresh one included) or lets the request in progress
//!   finish and answers it with `Connection: close`; a half-sent request head it waits for
//!   without end. Its `header_read_timeout` (needs a timer) is restarted whenever the
//!   connection waits for a request head, the idle wait between kept-alive requests included,
//!   so it cannot give an idle timeout longer than the header timeout, and it has no idle
//!   timeout of its own. Its header timer is therefore switched off and both timeouts are kept
//!   here.
//! - Every connection's socket is wrapped to note when bytes move, and its service to note when
//!   a request is in flight. A watchdog per connection closes it when
//!   * a request head is not complete `header_read_timeout` after the connection was accepted
//!     (first request) or after the first byte of a later request (slowloris, silent clients);
//!   * no request is in flight and no byte has moved for `idle_timeout` (a kept-alive connection
//!     nobody uses, or a client that stopped reading its answer).
//! - A semaphore caps open connections. At the cap the connection idle the longest (no request
//!   in flight, no partial request) is closed to make room; when none is idle the new connection
//!   is closed at once (it never waits in the accept queue behind a flood). The cap is lowered
//!   to what the open-file limit leaves after the database pool and a reserve.
//! - On the stop signal the listener is closed, idle connections are closed at once, the others
//!   finish their request (and hear `Connection: close`), and whatever is still open after
//!   `shutdown_grace` is dropped, so a stalled client cannot hold the process.
//! - The request timeout is [`timed`], run by the router's metrics middleware around the
//!   handler (so its 503s are counted): handling a request, body included, that takes longer than
//!   `http_request_timeout_seconds` is dropped and answered 503 (the server failed to answer in
//!   time, as opposed to 408, which blames the client and which some clients retry blindly).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::config::Config;

/// File descriptors kept back from client connections for everything else: the listener,
/// Redis, WeChat calls, log files (the database pool is added on top).
const FD_RESERVE: u64 = 128;
/// How long a new connection at the cap waits for the idle connection asked to make room.
const EVICTION_WAIT: Duration = Duration::from_millis(250);
/// Pause after an accept error that is not about one connection (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The connection-level limits, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Already fitted to the open-file limit.
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The configured limits, with the connection cap lowered (and a warning logged) when the
    /// process may not open that many files.
    pub fn from_config(config: &Config) -> Limits {
        let reserve = FD_RESERVE + u64::from(config.database_max_connections);
        let max_connections =
            fit_to_fd_limit(config.http_max_connections, open_file_limit(), reserve);
        if max_connections < config.http_max_connections {
            tracing::warn!(
                configured = config.http_max_connections,
                serving = max_connections,
                open_file_limit = open_file_limit(),
                "http_max_connections does not fit the open-file limit; lowered (raise LimitNOFILE / ulimit -n)"
            );
        }
        Limits {
            header_read_timeout: Duration::from_secs(config.http_header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(config.http_idle_timeout_seconds),
            max_connections,
            shutdown_grace: Duration::from_secs(config.shutdown_grace_seconds),
        }
    }
}

/// The cap that leaves `reserve` descriptors free under a soft open-file limit of `soft`.
fn fit_to_fd_limit(configured: usize, soft: Option<u64>, reserve: u64) -> usize {
    match soft {
        Some(soft) => {
            let room = usize::try_from(soft.saturating_sub(reserve)).unwrap_or(usize::MAX);
            configured.min(room.max(1))
        }
        None => configured,
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Answers 503 when handling a request takes longer than the limit (the handler is dropped).
/// Run by the router's metrics middleware (`super::Track`).
pub async fn timed(
    limit: Duration,
    uri: &Uri,
    handling: impl Future<Output = Response>,
) -> Response {
    match tokio::time::timeout(limit, handling).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                path = uri.path(),
                limit_seconds = limit.as_secs_f64(),
                "request timed out"
            );
            (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response()
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains within the grace.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut open: HashMap<Id, Arc<Conn>> = HashMap::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                forget(&mut open, done);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(permit) = admit(&slots, &open).await else {
                        tracing::debug!("connection cap reached and none idle; closing the new connection");
                        closed("over_capacity", 1);
                        continue;
                    };
                    let conn = Arc::new(Conn::new());
                    let handle = tasks.spawn(serve_connection(
                        stream,
                        peer,
                        conn.clone(),
                        app.clone(),
                        limits,
                        stop_rx.clone(),
                        permit,
                    ));
                    open.insert(handle.id(), conn);
                    metrics::gauge!("wxunion_http_connections_open").set(open.len() as f64);
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors, most likely: give one back and retry shortly.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    evict_longest_idle(&open);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(
        connections = tasks.len(),
        grace_seconds = limits.shutdown_grace.as_secs_f64(),
        "stopped accepting; closing idle connections, finishing requests in flight"
    );
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while let Some(done) = tasks.join_next_with_id().await {
            forget(&mut open, done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown grace over; dropping the connections still open"
        );
        closed("shutdown_aborted", tasks.len() as u64);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    metrics::gauge!("wxunion_http_connections_open").set(0.0);
}

/// A slot for a new connection: a free one, or the one an idle connection gives up.
async fn admit(
    slots: &Arc<Semaphore>,
    open: &HashMap<Id, Arc<Conn>>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    if !evict_longest_idle(open) {
        return None;
    }
    tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// The idle connection that has waited longest, asked to close (and so not chosen again).
fn evict_longest_idle(open: &HashMap<Id, Arc<Conn>>) -> bool {
    let victim = open
        .values()
        .filter(|c| c.is_idle() && !c.leaving.load(SeqCst))
        .min_by_key(|c| c.idle_since());
    match victim {
        Some(victim) => {
            victim.leaving.store(true, SeqCst);
            victim.evict.notify_one();
            true
        }
        None => false,
    }
}

fn forget(open: &mut HashMap<Id, Arc<Conn>>, done: Result<(Id, ()), JoinError>) {
    let id = match done {
        Ok((id, ())) => id,
        Err(e) => {
            if e.is_panic() {
                tracing::error!(error = %e, "a connection task panicked");
            }
            e.id()
        }
    };
    open.remove(&id);
    metrics::gauge!("wxunion_http_connections_open").set(open.len() as f64);
}

/// Errors about one connection that went away before it was accepted.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn closed(reason: &'static str, n: u64) {
    metrics::counter!("wxunion_http_connections_closed_total", "reason" => reason).increment(n);
}

/// Drives one connection until hyper is done with it, a timeout closes it, it is asked to
/// make room, or the shutdown drops it.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let io = TokioIo::new(Tracked {
        io: stream,
        conn: conn.clone(),
    });
    let tracker = conn.clone();
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        // Handlers read the peer as axum's `ConnectInfo` (the GraphQL handler: the client
        // address of the login rate limits).
        req.extensions_mut().insert(ConnectInfo(peer));
        let in_flight = tracker.begin_request();
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(in_flight);
            response
        }
    });
    let mut http = pin!(
        http1::Builder::new()
            // Kept here instead (see the module comment); without this hyper would also
            // warn on every connection that its 30 s default has no timer.
            .header_read_timeout(None)
            .serve_connection(io, service)
    );
    let mut stopping = false;
    let reason = loop {
        tokio::select! {
            done = http.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break "closed";
            }
            why = watchdog(&conn, &limits) => break why,
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                if conn.is_idle() {
                    break "shutdown_idle";
                }
                http.as_mut().graceful_shutdown();
            }
            () = conn.evict.notified() => {
                if conn.is_idle() {
                    break "evicted";
                }
                conn.leaving.store(false, SeqCst);
            }
        }
    };
    conn.leaving.store(true, SeqCst);
    if reason != "closed" {
        tracing::debug!(reason, "closing a connection");
    }
    closed(reason, 1);
}

/// Resolves with the reason once the connection has outstayed a timeout.
async fn watchdog(conn: &Conn, limits: &Limits) -> &'static str {
    loop {
        let moved = conn.wake.notified();
        match conn.deadline(limits) {
            Some((at, why)) if at <= Instant::now() => return why,
            Some((at, _)) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = moved => {}
                }
            }
            None => moved.await,
        }
    }
}

/// "Not set" for the millisecond marks of [`Conn`].
const UNSET: u64 = u64::MAX;

/// What one connection's watchdog, the cap and the shutdown need to know about it.
struct Conn {
    origin: Instant,
    /// Requests handed to the router and not yet answered (at most one in HTTP/1).
    in_flight: AtomicUsize,
    /// Milliseconds after `origin` of the last byte read or written, or the last answer.
    last_activity: AtomicU64,
    /// Milliseconds after `origin` when the current request head began: the accept for the
    /// first request, its first byte for a later one; `UNSET` while a request is in flight or
    /// the connection waits, idle, for the next one.
    head_started: AtomicU64,
    /// Whether bytes of a request head that is not complete yet have arrived.
    head_partial: AtomicBool,
    /// Wakes the watchdog when a deadline may have moved earlier.
    wake: Notify,
    /// Asks the connection to close if it is idle (the cap needs room).
    evict: Notify,
    /// Set while an eviction request is pending, and for good once the connection is gone:
    /// such a connection is not asked again.
    leaving: AtomicBool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_activity: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            head_partial: AtomicBool::new(false),
            wake: Notify::new(),
            evict: Notify::new(),
            leaving: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(UNSET - 1)
    }

    fn on_read(&self) {
        let now = self.now_ms();
        self.last_activity.store(now, SeqCst);
        if self.in_flight.load(SeqCst) == 0 {
            self.head_partial.store(true, SeqCst);
            if self
                .head_started
                .compare_exchange(UNSET, now, SeqCst, SeqCst)
                .is_ok()
            {
                self.wake.notify_one();
            }
        }
    }

    fn on_write(&self) {
        self.last_activity.store(self.now_ms(), SeqCst);
    }

    fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, SeqCst);
        self.head_started.store(UNSET, SeqCst);
        self.head_partial.store(false, SeqCst);
        InFlight(self.clone())
    }

    /// No request in flight and no partial one: closing it loses nothing a client would miss.
    fn is_idle(&self) -> bool {
        self.in_flight.load(SeqCst) == 0 && !self.head_partial.load(SeqCst)
    }

    fn idle_since(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_activity.load(SeqCst))
    }

    /// When the connection must be closed, and why; `None` while a request is in flight (the
    /// request timeout bounds that).
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        if self.in_flight.load(SeqCst) > 0 {
            return None;
        }
        match self.head_started.load(SeqCst) {
            UNSET => Some((self.idle_since() + limits.idle_timeout, "idle_timeout")),
            started => Some((
                self.origin + Duration::from_millis(started) + limits.header_read_timeout,
                "header_timeout",
            )),
        }
    }
}

/// A request in flight on a connection; dropped when the router has answered (or the
/// connection is gone).
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.last_activity.store(conn.now_ms(), SeqCst);
        conn.in_flight.fetch_sub(1, SeqCst);
        conn.wake.notify_one();
    }
}

/// The client socket, noting every byte that moves.
struct Tracked {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::middleware::{self, Next};
    use axum::routing::get;

    fn with_timeout(limit: Duration) -> Router {
        Router::new()
            .route("/fast", get(|| async { "fast" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "slow"
                }),
            )
            .layer(middleware::from_fn_with_state(
                limit,
                |State(limit): State<Duration>, req: Request, next: Next| async move {
                    let uri = req.uri().clone();
                    timed(limit, &uri, next.run(req)).await
                },
            ))
    }

    fn get_req(path: &str) -> Request {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_handler_slower_than_the_request_timeout_answers_503() {
        let started = std::time::Instant::now();
        let resp = with_timeout(Duration::from_millis(100))
            .oneshot(get_req("/slow"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_handler_within_the_request_timeout_answers_normally() {
        let resp = with_timeout(Duration::from_secs(5))
            .oneshot(get_req("/fast"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[test]
    fn the_cap_leaves_room_under_the_open_file_limit() {
        assert_eq!(fit_to_fd_limit(1024, None, 144), 1024);
        assert_eq!(fit_to_fd_limit(1024, Some(20_000), 144), 1024);
        assert_eq!(fit_to_fd_limit(1024, Some(1024), 144), 880);
        assert_eq!(fit_to_fd_limit(1024, Some(100), 144), 1);
    }

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 8,
            shutdown_grace: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_new_connection_has_the_header_deadline_and_is_idle() {
        let conn = Arc::new(Conn::new());
        let (at, why) = conn.deadline(&limits()).unwrap();
        assert_eq!(why, "header_timeout");
        assert_eq!(at, conn.origin + Duration::from_secs(10));
        assert!(conn.is_idle());
        conn.on_read();
        assert!(!conn.is_idle(), "a partial head is not idle");
        assert_eq!(
            conn.deadline(&limits()).unwrap().0,
            at,
            "bytes do not extend it"
        );
    }

    #[tokio::test]
    async fn between_requests_the_idle_deadline_applies_until_a_byte_arrives() {
        let conn = Arc::new(Conn::new());
        let in_flight = conn.begin_request();
        assert_eq!(conn.deadline(&limits()), None);
        assert!(!conn.is_idle());
        drop(in_flight);
        let (at, why) = conn.deadline(&limits()).unwrap();
        assert_eq!(why, "idle_timeout");
        assert!(at >= conn.origin + Duration::from_secs(60));
        assert!(conn.is_idle());
        conn.on_read();
        let (_, why) = conn.deadline(&limits()).unwrap();
        assert_eq!(why, "header_timeout");
        assert!(!conn.is_idle());
    }
}
