//! The HTTP server's own limits, proved with raw TCP clients: header read and idle timeouts,
//! the connection cap, the request timeout and the bounded graceful shutdown.
//!
//! Timeouts are set to a second or two so the tests are quick; the bounds asserted are loose
//! enough for a loaded two-core machine (closed within timeout + 3 s) and, where it matters,
//! also check the connection was *not* closed well before its timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wxunion::app::Application;
use wxunion::clock::OffsetClock;

use crate::helpers::*;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: wxunion\r\n\r\n";
/// The start of a request whose head never ends.
const PARTIAL: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: wxunion\r\n";
/// Slack for a busy machine on top of a timeout.
const SLACK: Duration = Duration::from_secs(3);
/// How much earlier than its timeout a close still counts as "on time".
const EARLY: Duration = Duration::from_millis(300);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

async fn spawn(extra: &str) -> TestApp {
    spawn_with(Options {
        extra: extra.to_owned(),
        ..Default::default()
    })
    .await
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Reads one whole response (head and `Content-Length` body) and returns it as text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("no response within 10 s")
            .expect("read failed");
        assert!(
            n > 0,
            "closed before the response ended: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf).into_owned();
            }
        }
    }
}

/// Sends `GET /healthz` and asserts a 200 with body `ok`.
async fn healthz_on(stream: &mut TcpStream) {
    stream.write_all(HEALTHZ).await.unwrap();
    let resp = read_response(stream).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok"), "{resp}");
}

/// Waits until the server closes the connection (read gives EOF or an error); the time it
/// took, or `None` if it was still open after `bound`. Any bytes the server sends are skipped.
async fn time_until_closed(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    timeout(bound, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// Whether the server still holds the connection open (no EOF within a short look).
async fn still_open(stream: &mut TcpStream) -> bool {
    time_until_closed(stream, Duration::from_millis(200))
        .await
        .is_none()
}

/// Sends a request head one byte every 200 ms, never finishing it, until the server closes
/// the connection; returns how long that took and how many bytes were sent.
async fn trickle_until_closed(stream: TcpStream, bound: Duration) -> Option<(Duration, usize)> {
    let started = Instant::now();
    let (mut rd, mut wr) = stream.into_split();
    let mut sent = 0usize;
    let bytes = PARTIAL.iter().chain(b"X-Slow: y\r\n".iter().cycle());
    let writer = async {
        for b in bytes {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let reader = async {
        let mut chunk = [0u8; 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let closed = timeout(bound, async {
        tokio::select! {
            () = writer => {}
            () = reader => {}
        }
    })
    .await;
    closed.ok().map(|()| (started.elapsed(), sent))
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_after_the_header_read_timeout() {
    let app = spawn("http_header_read_timeout_seconds = 1\nhttp_idle_timeout_seconds = 30").await;
    let stream = connect(app.addr).await;
    let (took, sent) = trickle_until_closed(stream, secs(1.0) + SLACK)
        .await
        .expect("a slowloris client was not closed within the header timeout + 3 s");
    assert!(
        took >= secs(1.0) - EARLY,
        "closed after {took:?}, before the timeout"
    );
    // It kept sending all along: bytes trickling in do not extend the deadline.
    assert!(sent >= 4, "only {sent} bytes sent");
}

#[tokio::test]
async fn a_connection_that_never_sends_anything_is_closed_after_the_header_read_timeout() {
    let app = spawn("http_header_read_timeout_seconds = 1\nhttp_idle_timeout_seconds = 30").await;
    let mut stream = connect(app.addr).await;
    let took = time_until_closed(&mut stream, secs(1.0) + SLACK)
        .await
        .expect("a silent connection was not closed within the header timeout + 3 s");
    assert!(
        took >= secs(1.0) - EARLY,
        "closed after {took:?}, before the timeout"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_the_header_timeout() {
    // hyper's own header timer would close this connection after 1 s; the idle timeout is 2 s.
    let app = spawn("http_header_read_timeout_seconds = 1\nhttp_idle_timeout_seconds = 2").await;
    let mut stream = connect(app.addr).await;
    healthz_on(&mut stream).await;
    let took = time_until_closed(&mut stream, secs(2.0) + SLACK)
        .await
        .expect("an idle keep-alive connection was not closed within the idle timeout + 3 s");
    assert!(
        took >= secs(2.0) - EARLY,
        "closed after {took:?}, before the idle timeout"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_still_serves_a_second_request_before_the_idle_timeout() {
    let app = spawn("http_header_read_timeout_seconds = 1\nhttp_idle_timeout_seconds = 3").await;
    let mut stream = connect(app.addr).await;
    healthz_on(&mut stream).await;
    tokio::time::sleep(secs(1.5)).await; // longer than the header timeout
    healthz_on(&mut stream).await;
}

#[tokio::test]
async fn a_request_trickled_on_a_kept_alive_connection_is_cut_at_the_header_timeout() {
    let app = spawn("http_header_read_timeout_seconds = 1\nhttp_idle_timeout_seconds = 30").await;
    let mut stream = connect(app.addr).await;
    healthz_on(&mut stream).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (took, _) = trickle_until_closed(stream, secs(1.0) + SLACK)
        .await
        .expect("a trickled second request was not cut within the header timeout + 3 s");
    assert!(
        took >= secs(1.0) - EARLY,
        "closed after {took:?}, before the timeout"
    );
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_are_closed_until_a_slot_frees() {
    let app = spawn("http_max_connections = 3\nhttp_header_read_timeout_seconds = 30").await;
    // Three clients in the middle of a request head: busy, so none of them may be evicted.
    let mut holders = Vec::new();
    for _ in 0..3 {
        let mut s = connect(app.addr).await;
        s.write_all(PARTIAL).await.unwrap();
        holders.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A fourth is accepted by the kernel but closed by wxunion at once, unanswered.
    let mut extra = connect(app.addr).await;
    let _ = extra.write_all(HEALTHZ).await;
    let mut got = Vec::new();
    let closed = timeout(SLACK, extra.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "a connection over the cap was left open");
    assert!(
        got.is_empty(),
        "over the cap, yet answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    for h in &mut holders {
        assert!(still_open(h).await, "a busy connection was closed");
    }

    // One client leaves: its slot serves /healthz again.
    drop(holders.pop());
    let started = Instant::now();
    loop {
        let mut s = connect(app.addr).await;
        s.write_all(HEALTHZ).await.unwrap();
        let mut buf = vec![0u8; 1024];
        if let Ok(Ok(n)) = timeout(Duration::from_secs(1), s.read(&mut buf)).await
            && n > 0
        {
            let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
            break;
        }
        assert!(
            started.elapsed() < SLACK,
            "no /healthz within 3 s of a slot freeing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn at_the_connection_cap_the_longest_idle_connection_makes_room() {
    let app = spawn(
        "http_max_connections = 3\nhttp_header_read_timeout_seconds = 30\nhttp_idle_timeout_seconds = 30",
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = connect(app.addr).await;
        healthz_on(&mut s).await;
        idle.push(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new client is served at once...
    let mut newcomer = connect(app.addr).await;
    healthz_on(&mut newcomer).await;
    // ...because the connection idle the longest was closed for it, and only that one.
    let took = time_until_closed(&mut idle[0], SLACK).await;
    assert!(took.is_some(), "the longest-idle connection was not closed");
    healthz_on(&mut idle[2]).await;
}

// Several worker threads, as in production: connection tasks end while the accept loop runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_beyond_the_cap_does_not_block_healthz() {
    let app = spawn("http_max_connections = 20\nhttp_header_read_timeout_seconds = 30").await;
    // 400 clients connect and say nothing, then one asks /healthz.
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..400 {
        flood.push(connect(app.addr).await);
    }
    let mut s = connect(app.addr).await;
    healthz_on(&mut s).await;
    let took = started.elapsed();
    // Typically tens of milliseconds for the whole flood and the answer.
    assert!(
        took < secs(2.0),
        "/healthz answered {took:?} after the flood began"
    );
    // The oldest were closed to make room; the cap holds.
    let looks = futures::future::join_all(flood.iter_mut().map(still_open)).await;
    let open = looks.into_iter().filter(|open| *open).count();
    assert!(open <= 19, "{open} flood connections open with a cap of 20");
}

#[tokio::test]
async fn a_request_slower_than_the_request_timeout_answers_503() {
    let app = spawn("http_request_timeout_seconds = 1").await;
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "delay_ms": 4000 }),
    )
    .await;
    let open_id = app.sim.state.open_id(OA, "slow");
    let started = Instant::now();
    let resp = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(API_KEY)
        .json(&json!({ "query": RESOLVE, "variables": { "appId": OA, "openId": open_id } }))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert!(
        took >= secs(1.0) - EARLY && took < secs(1.0) + SLACK,
        "answered after {took:?}"
    );
    // The metrics middleware saw it.
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wxunion_http_requests_total")
                && l.contains("route=\"/graphql\"")
                && l.contains("status=\"503\"")),
        "no 503 for /graphql in the metrics"
    );
}

/// A wxunion whose stop signal the test holds.
struct Stoppable {
    addr: SocketAddr,
    app: TestApp,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Like `spawn_with`, but with a stop signal instead of an endless future. The `TestApp`
/// returned (database, simulator, HTTP client) belongs to another, idle instance.
async fn spawn_stoppable(extra: &str) -> Stoppable {
    let app = spawn(extra).await;
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nredis_url = \"redis://127.0.0.1:6379\"\n\
         redis_prefix = \"{}\"\nwechat_api_base = \"{}\"\n{extra}\n{APPS_TOML}",
        app.database_url,
        app.redis_prefix,
        app.sim.base_url()
    );
    let config = load_config(tmp.path(), &text);
    let built = Application::build_with_clock(config, Arc::new(OffsetClock::default()))
        .await
        .unwrap();
    let addr = built.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(built.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Stoppable {
        addr,
        app,
        stop,
        server,
    }
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once() {
    let s = spawn_stoppable("shutdown_grace_seconds = 10\nhttp_idle_timeout_seconds = 30").await;
    let mut kept_alive = connect(s.addr).await;
    healthz_on(&mut kept_alive).await;
    let mut silent = connect(s.addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    s.stop.send(()).unwrap();
    timeout(secs(2.0), s.server)
        .await
        .expect("shutdown with only idle connections took more than 2 s of a 10 s grace")
        .unwrap()
        .unwrap();
    assert!(
        time_until_closed(&mut kept_alive, secs(1.0))
            .await
            .is_some()
    );
    assert!(time_until_closed(&mut silent, secs(1.0)).await.is_some());
    assert!(started.elapsed() < secs(3.0));
    drop(s.app);
}

#[tokio::test]
async fn shutdown_finishes_within_the_grace_despite_a_stalled_client_and_completes_requests_in_flight()
 {
    let s = spawn_stoppable(
        "shutdown_grace_seconds = 3\nhttp_header_read_timeout_seconds = 30\nhttp_idle_timeout_seconds = 30",
    )
    .await;
    // A client that started a request and stalled.
    let mut stalled = connect(s.addr).await;
    stalled.write_all(PARTIAL).await.unwrap();
    // A request in flight that needs a second more: user/info is slow.
    s.app
        .sim_post(
            "/sim/faults",
            json!({ "api": "cgi-bin/user/info", "delay_ms": 1500 }),
        )
        .await;
    let open_id = s.app.sim.state.open_id(OA, "late");
    let url = format!("http://{}/graphql", s.addr);
    let in_flight = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(API_KEY)
            .json(&json!({ "query": RESOLVE, "variables": { "appId": OA, "openId": open_id } }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        (status, body, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    s.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(s.addr).await.is_err(),
        "still accepting after the stop signal"
    );

    let (status, body, answered) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        body["data"]["resolveOpenId"]["identity"]["openId"],
        json!(s.app.sim.state.open_id(OA, "late"))
    );
    assert!(answered.duration_since(started) < secs(3.0));

    timeout(secs(3.0) + SLACK, s.server)
        .await
        .expect("shutdown took longer than the grace + 3 s")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= secs(3.0) - EARLY,
        "stopped after {took:?}: the stalled client was dropped before the grace ended"
    );
    assert!(
        time_until_closed(&mut stalled, secs(1.0)).await.is_some(),
        "the stalled client's connection is still open"
    );
}
