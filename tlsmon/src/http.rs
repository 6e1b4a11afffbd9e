//! The daemon's HTTP endpoint: `/metrics` (Prometheus text format 0.0.4) and
//! `/healthz`, on hyper 1 over tokio.
//!
//! [`bind`] claims the address before anything is spawned, so a daemon whose
//! listen address is taken can refuse to start with a clear message.

use std::{convert::Infallible, future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, ALLOW, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
    task::{JoinHandle, JoinSet},
};

use crate::metrics::{Metrics, TEXT_CONTENT_TYPE};

/// Connections served at once; further ones wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Says whether capture is healthy: `Ok(())`, or why not.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}{hint}", hint = bind_hint(source))]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// Accepting connections failed for good.
    #[error("accepting connections on {addr}: {source}")]
    Accept {
        /// The address being served.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
}

fn bind_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            " (another process already listens there; stop it or choose another --listen address)"
        }
        io::ErrorKind::PermissionDenied => " (ports below 1024 need CAP_NET_BIND_SERVICE)",
        io::ErrorKind::AddrNotAvailable => " (no local interface has that address)",
        _ => "",
    }
}

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoints {
    /// Rendered on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Consulted on `/healthz`.
    pub health: HealthCheck,
}

/// A bound, not yet serving, metrics listener.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

/// Binds `addr`. Fails at once (with a message saying what to do) when the
/// address is taken, so the caller can refuse to start.
pub async fn bind(addr: SocketAddr) -> Result<MetricsServer, HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok(MetricsServer { listener, addr })
}

/// A server running on a tokio task; [`RunningServer::shutdown`] stops it.
pub struct RunningServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), HttpError>>,
}

impl RunningServer {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (up to [`SHUTDOWN_GRACE`])
    /// and returns how serving ended.
    pub async fn shutdown(self) -> Result<(), HttpError> {
        // The receiver lives in the task; if the task already ended, there is
        // nobody to tell and the join below reports how it ended.
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Waits until the server ends by itself (only on an accept error).
    pub async fn join(self) -> Result<(), HttpError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(HttpError::Accept {
                addr: self.addr,
                source: io::Error::other(format!("server task ended abnormally: {e}")),
            }),
        }
    }
}

impl MetricsServer {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves on a new task until [`RunningServer::shutdown`].
    pub fn spawn(self, endpoints: Endpoints) -> RunningServer {
        let (stop, mut stopped) = watch::channel(false);
        let addr = self.addr;
        let task = tokio::spawn(async move {
            self.serve(endpoints, async move {
                // An error means the sender was dropped: treat as shutdown too.
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
        });
        RunningServer { addr, stop, task }
    }

    /// Serves until `shutdown` completes, then drains connections gracefully.
    pub async fn serve(
        self,
        endpoints: Endpoints,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), HttpError> {
        let (drain_tx, drain_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
            // Wait for a free slot first, so excess clients queue in the kernel.
            let permit = tokio::select! {
                _ = &mut shutdown => break Ok(()),
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    // The semaphore is never closed; this arm only satisfies the type.
                    Err(_) => break Ok(()),
                },
            };
            let stream = tokio::select! {
                _ = &mut shutdown => break Ok(()),
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) if is_transient_accept_error(&e) => {
                        tracing::warn!("metrics endpoint: accept failed: {e}");
                        // Back off briefly so fd exhaustion does not spin the loop.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(source) => break Err(HttpError::Accept { addr: self.addr, source }),
                },
            };
            // Reap finished connection tasks so the set stays small.
            while connections.try_join_next().is_some() {}
            let endpoints = endpoints.clone();
            let mut drain = drain_rx.clone();
            connections.spawn(async move {
                let _permit = permit;
                let service = service_fn(move |req| {
                    let endpoints = endpoints.clone();
                    async move { Ok::<_, Infallible>(respond(&endpoints, &req)) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                let draining = async move {
                    // Only the wake-up matters, not the watch value (whose guard
                    // must not be held across the await below).
                    let _ = drain.wait_for(|d| *d).await;
                };
                tokio::select! {
                    res = conn.as_mut() => log_connection_end(res),
                    () = draining => {
                        conn.as_mut().graceful_shutdown();
                        log_connection_end(conn.await);
                    }
                }
            });
        };
        drop(self.listener);
        let _ = drain_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "metrics endpoint: dropping connections still open after {SHUTDOWN_GRACE:?}"
            );
            connections.shutdown().await;
        }
        result
    }
}

fn log_connection_end(res: Result<(), hyper::Error>) {
    if let Err(e) = res {
        tracing::debug!("metrics endpoint: connection ended: {e}");
    }
}

/// Accept errors that concern one connection or a passing resource shortage.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Builds the response to one request.
fn respond(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/metrics" && path != "/healthz" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if path == "/healthz" {
        return match (endpoints.health)() {
            Ok(()) => plain(StatusCode::OK, "ok\n"),
            Err(why) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {why}\n"),
            ),
        };
    }
    match endpoints.metrics.encode_text() {
        Ok(text) => with_type(StatusCode::OK, TEXT_CONTENT_TYPE, text),
        Err(e) => {
            tracing::error!("encoding metrics: {e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding metrics: {e}\n"),
            )
        }
    }
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body)
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests;
