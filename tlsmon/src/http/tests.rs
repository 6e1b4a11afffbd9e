use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::metrics::LabelOptions;

fn endpoints(healthy: Arc<AtomicBool>) -> Endpoints {
    Endpoints {
        metrics: Arc::new(Metrics::new(&LabelOptions::default()).unwrap()),
        health: Arc::new(move || {
            if healthy.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("no interface attached".into())
            }
        }),
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
    ep.metrics.observe(&crate::metrics::tests::alert_failure());
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
        "tlsmon_handshake_failures_total{alert=\"handshake_failure\",alert_sender=\"server\",closed_by=\"\",device=\"eth1\",direction=\"inbound\",reason=\"alert\",stage=\"before_server_hello\"} 1\n"
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
        matches!(&err, HttpError::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on {addr}: Address already in use (os error 98) (another process already listens there; stop it or choose another --listen address)"
        )
    );
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
