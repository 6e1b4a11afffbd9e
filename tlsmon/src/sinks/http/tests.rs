use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::sinks::metrics::LabelOptions;

fn endpoints(healthy: Arc<AtomicBool>) -> Endpoints {
    Endpoints {
        metrics: Arc::new(Metrics::new(&LabelOptions::default()).unwrap()),
        health: Arc::new(move || {
            if healthy.load(Ordering::SeqCst) {
                Health::Ok
            } else {
                Health::Down("no interface attached".into())
            }
        }),
        access: Access::default(),
        events: None,
    }
}

/// Sends one HTTP/1.1 request over a fresh TCP connection; returns status line,
/// headers (lowercased names) and body.
async fn request(addr: SocketAddr, method: &str, path: &str) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn serves_metrics_health_and_404() {
    let healthy = Arc::new(AtomicBool::new(true));
    let ep = endpoints(healthy.clone());
    ep.metrics
        .observe(&crate::sinks::metrics::tests::alert_failure());
    let server = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let running = server.spawn(ep);

    let (status, headers, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(body.contains(
        "tlsmon_handshake_failures_total{alert=\"handshake_failure\",alert_sender=\"server\",closed_by=\"\",device=\"eth1\",direction=\"inbound\",reason=\"alert\",stage=\"before_server_hello\",transport=\"tcp\"} 1\n"
    ), "{body}");

    let (status, _, body) = request(addr, "GET", "/healthz").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    healthy.store(false, Ordering::SeqCst);
    let (status, _, body) = request(addr, "GET", "/healthz").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        (
            "HTTP/1.1 503 Service Unavailable",
            "unhealthy: no interface attached\n"
        )
    );

    let (status, _, _) = request(addr, "GET", "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = request(addr, "POST", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("allow: get, head"), "{headers}");
    let (status, _, body) = request(addr, "HEAD", "/metrics").await;
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", ""));

    running.shutdown().await.unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused,
        "the listener must be closed after shutdown"
    );
}

#[tokio::test]
async fn taken_address_fails_with_a_clear_message() {
    let first = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = first.local_addr();
    let err = bind(addr).await.unwrap_err();
    assert!(
        matches!(&err, HttpError::Bind { error, .. } if error.kind() == io::ErrorKind::AddrInUse)
    );
    let said = format!(
        "cannot listen on {addr}: Address already in use (os error 98) (another process already listens there; stop it or choose another --listen address)"
    );
    assert_eq!(err.to_string(), said);
    // As the binary prints it (`tlsmon: {err:#}`, the cause chain): the cause once.
    assert_eq!(format!("{:#}", anyhow::Error::from(err)), said);
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections() {
    let server = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let running = server.spawn(endpoints(Arc::new(AtomicBool::new(true))));
    // A keep-alive client that completed one request and then idles.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));

    tokio::time::timeout(SHUTDOWN_GRACE / 2, running.shutdown())
        .await
        .expect("an idle connection must not hold up shutdown")
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the server closes the idle connection");
}

#[test]
fn health_contract() {
    let window = Duration::from_secs(10);
    let cases = [
        (Health::of_capture(2, 0, window), 200, "ok\n"),
        (
            Health::of_capture(1, 37, window),
            200,
            "degraded: 37 events dropped in the last 10 s\n",
        ),
        (
            Health::of_capture(0, 0, window),
            503,
            "unhealthy: no interface attached\n",
        ),
        // Not capturing at all outranks losing some of it.
        (
            Health::of_capture(0, 5, window),
            503,
            "unhealthy: no interface attached\n",
        ),
    ];
    for (health, status, body) in cases {
        let (got_status, got_body) = health.response();
        assert_eq!((got_status.as_u16(), got_body.as_str()), (status, body));
    }
}

#[tokio::test]
async fn healthz_serves_degraded_as_200_with_the_drop_count() {
    let ep = Endpoints {
        metrics: Arc::new(Metrics::new(&LabelOptions::default()).unwrap()),
        health: Arc::new(|| Health::of_capture(1, 3, Duration::from_secs(10))),
        access: Access::default(),
        events: None,
    };
    let server = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let running = server.spawn(ep);
    let (status, _, body) = request(addr, "GET", "/healthz").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        (
            "HTTP/1.1 200 OK",
            "degraded: 3 events dropped in the last 10 s\n"
        )
    );
    running.shutdown().await.unwrap();
}

/// `tlsmon_http_connections_closed_total{reason}` as the endpoint counts it.
fn closed(ep: &Endpoints, reason: &str) -> String {
    let text = ep.metrics.encode_text().unwrap();
    let prefix = format!("tlsmon_http_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or("absent")
        .to_owned()
}

#[tokio::test]
async fn at_the_connection_limit_a_new_client_is_served_and_a_silent_one_shed() {
    let ep = endpoints(Arc::new(AtomicBool::new(true)));
    let server = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let running = server.spawn(ep.clone());
    assert_eq!(closed(&ep, "shed"), "0", "both reasons show from the start");
    assert_eq!(closed(&ep, "header_timeout"), "0");

    // Fill every slot with connections that never send a byte.
    let mut silent = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // One more client is answered at once; the oldest silent one made room.
    let started = std::time::Instant::now();
    let (status, _, body) = request(addr, "GET", "/healthz").await;
    let took = started.elapsed();
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(1), silent[0].read(&mut buf))
        .await
        .expect("the oldest silent connection is closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(closed(&ep, "shed"), "1");
    drop(silent);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_sends_no_request_head_in_time_is_closed_and_counted() {
    let ep = endpoints(Arc::new(AtomicBool::new(true)));
    let server = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let running = server.spawn(ep.clone());
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    // hyper answers a header timeout by closing (no response), after the deadline.
    let n = tokio::time::timeout(HEADER_READ_TIMEOUT * 3, async {
        loop {
            // Keep trickling header lines: the deadline covers the whole head.
            tokio::select! {
                read = slow.read(&mut buf) => break read.unwrap_or(0),
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let _ = slow.write_all(b"X-Slow: 1\r\n").await;
                }
            }
        }
    })
    .await
    .expect("closed within three deadlines");
    let took = started.elapsed();
    assert_eq!(n, 0, "closed without a response");
    assert!(
        took >= HEADER_READ_TIMEOUT - Duration::from_millis(100),
        "closed after {took:?}"
    );
    assert_eq!(closed(&ep, "header_timeout"), "1");
    assert_eq!(closed(&ep, "shed"), "0");

    // A keep-alive client that idles after its request is closed after the same
    // deadline, without counting as a header timeout.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut response = vec![0u8; 4096];
    let n = idle.read(&mut response).await.unwrap();
    assert!(response[..n].starts_with(b"HTTP/1.1 200 OK"));
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(HEADER_READ_TIMEOUT * 3, idle.read(&mut response))
        .await
        .expect("an idle keep-alive connection is closed within three deadlines")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_millis(100));
    assert_eq!(closed(&ep, "header_timeout"), "1");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_not_buffered() {
    let ep = endpoints(Arc::new(AtomicBool::new(true)));
    let server = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let running = server.spawn(ep);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    head.resize(head.len() + 4 * MAX_REQUEST_BUFFER, b'a');
    // The server may close before everything is written; that is the point.
    let _ = stream.write_all(&head).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server ends the connection");
    assert!(
        raw.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn serves_recent_events_as_json_lines_with_filters() {
    use crate::sinks::recent_events::RecentEvents;
    let ring = Arc::new(RecentEvents::new(100));
    ring.push(&crate::sinks::metrics::tests::record());
    ring.push(&crate::sinks::metrics::tests::alert_failure());
    let ep = Endpoints {
        events: Some(events::EventsEndpoint::new(ring)),
        ..endpoints(Arc::new(AtomicBool::new(true)))
    };
    let server = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let running = server.spawn(ep);

    let (status, headers, body) = request(addr, "GET", "/api/v1/events").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: application/x-ndjson"),
        "{headers}"
    );
    assert_eq!(body.lines().count(), 2);
    let (_, _, body) = request(addr, "GET", "/api/v1/events?failed=true").await;
    let only: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
    assert_eq!(only["outcome"], "failed");
    let (_, _, body) = request(addr, "GET", "/api/v1/events?limit=1").await;
    assert_eq!(body.lines().count(), 1);
    let (status, _, body) = request(addr, "GET", "/api/v1/events?limit=x").await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert!(
        body.contains("limit must be a number from 1 to 100"),
        "{body}"
    );
    let (status, _, _) = request(addr, "POST", "/api/v1/events").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    running.shutdown().await.unwrap();
}
