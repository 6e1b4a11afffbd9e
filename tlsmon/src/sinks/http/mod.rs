//! The daemon's HTTP endpoint: `/metrics` (Prometheus text format 0.0.4),
//! `/healthz` and `/api/v1/events` (recent handshakes as JSON lines, [`events`]),
//! on hyper 1 over tokio.
//!
//! [`bind`] claims the address before anything is spawned, so a daemon whose
//! listen address is taken can refuse to start with a clear message.
//!
//! The endpoint stays answerable while hostile clients hold connections open:
//! accepting never waits; a client has [`HEADER_READ_TIMEOUT`] to send each
//! request head (hyper's `header_read_timeout`, which also bounds the wait
//! between keep-alive requests); and at [`MAX_CONNECTIONS`] a new connection
//! makes an idle one close (see `connections`) instead of waiting behind it.
//!
//! With a web config ([`Access`], from `--web.config.file`) the endpoint speaks
//! TLS (the handshake must also finish within [`HEADER_READ_TIMEOUT`]; plain
//! HTTP sent to it gets the connection closed) and asks for basic
//! authentication on every path but `/healthz` (`401` with
//! `WWW-Authenticate: Basic`).

mod connections;
pub mod events;
pub mod web_config;

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use crate::sinks::http::web_config::BasicAuth;
use crate::sinks::metrics::{Metrics, TEXT_CONTENT_TYPE};
use connections::{Activity, ConnectionTable, TrackedBody};

/// Connections open at once; at the limit a new one makes the longest-silent
/// (then the longest-idle, then the oldest) connection close.
pub const MAX_CONNECTIONS: usize = 128;
/// A client must send each request head within this time after connecting (or
/// after its previous response); then the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections the kernel queues for `accept` (the listen(2) backlog): room for
/// bursts, so that a scraper's SYN is not dropped while an attack churns.
pub const LISTEN_BACKLOG: u32 = 1024;
/// Bytes hyper buffers per connection while reading a request (its minimum; a
/// request for `/metrics` is a few hundred bytes). Bounds what slow or silent
/// clients can make the endpoint hold: [`MAX_CONNECTIONS`] times this.
pub const MAX_REQUEST_BUFFER: usize = 8192;
/// Path of the recent events (see [`events`]).
pub const EVENTS_PATH: &str = "/api/v1/events";
/// How long shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What `/healthz` says about capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Capturing, nothing lost recently: `200 ok`.
    Ok,
    /// Capturing, but the kernel dropped events recently (handshakes were seen
    /// incompletely): `200 degraded: N events dropped in the last W s`.
    Degraded {
        /// Events dropped within `window`.
        dropped: u64,
        /// How far back `dropped` counts.
        window: Duration,
    },
    /// Not capturing at all: `503 unhealthy: why`.
    Down(String),
}

impl Health {
    /// The daemon's verdict from the interfaces attached now and the events the
    /// kernel dropped (RingBuf full) within the last `window`.
    pub fn of_capture(
        attached_interfaces: usize,
        recently_dropped: u64,
        window: Duration,
    ) -> Health {
        match (attached_interfaces, recently_dropped) {
            (0, _) => Health::Down("no interface attached".to_owned()),
            (_, 0) => Health::Ok,
            (_, dropped) => Health::Degraded { dropped, window },
        }
    }

    /// Status code and body of `/healthz`.
    pub fn response(&self) -> (StatusCode, String) {
        match self {
            Health::Ok => (StatusCode::OK, "ok\n".to_owned()),
            Health::Degraded { dropped, window } => (
                StatusCode::OK,
                format!(
                    "degraded: {dropped} events dropped in the last {} s\n",
                    window.as_secs()
                ),
            ),
            Health::Down(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {why}\n"),
            ),
        }
    }
}

/// Tells `/healthz` how capture is doing.
pub type HealthCheck = Arc<dyn Fn() -> Health + Send + Sync>;

/// Errors of the HTTP endpoint. Each message carries its OS error once (they
/// have no `source()`, so `{:#}` does not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {error}{hint}", hint = bind_hint(error))]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
    },
    /// Accepting connections failed for good.
    #[error("accepting connections on {addr}: {error}")]
    Accept {
        /// The address being served.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
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
    /// Rendered on `/metrics`; also counts the connections the endpoint closes.
    pub metrics: Arc<Metrics>,
    /// Consulted on `/healthz`.
    pub health: HealthCheck,
    /// TLS and authentication (default: plain HTTP, open).
    pub access: Access,
    /// Served on `/api/v1/events` (404 there when `None`).
    pub events: Option<events::EventsEndpoint>,
}

/// TLS and basic authentication of the endpoint, from a web config file.
#[derive(Clone, Default)]
pub struct Access {
    /// Serve HTTPS with this configuration (plain HTTP when `None`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Require a user and password on every path but `/healthz`.
    pub basic_auth: Option<BasicAuth>,
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
    let bind_error = |error| HttpError::Bind { addr, error };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    // As std and tokio's own bind do: a restart need not wait out TIME_WAIT.
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
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
                error: io::Error::other(format!("server task ended abnormally: {e}")),
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
        let graceful = GracefulShutdown::new();
        let table = ConnectionTable::new(MAX_CONNECTIONS);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
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
                    Err(error) => break Err(HttpError::Accept { addr: self.addr, error }),
                },
            };
            // Reap finished connection tasks so the set stays small.
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(
                stream,
                &table,
                endpoints.clone(),
                &graceful,
            ));
            // Let the new connection read its request before the next accept
            // (which may shed the oldest fresh connection) runs.
            tokio::task::yield_now().await;
        };
        drop(self.listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "metrics endpoint: dropping connections still open after {SHUTDOWN_GRACE:?}"
            );
        }
        connections.shutdown().await;
        result
    }
}

/// Admits `stream` into `table` (shedding another connection at the limit) and
/// returns the task that serves it until it ends, is shed, or shutdown drains it.
fn serve_connection(
    stream: TcpStream,
    table: &Arc<ConnectionTable>,
    endpoints: Endpoints,
    graceful: &GracefulShutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let admission = table.admit();
    if admission.shed_other.is_some() {
        endpoints.metrics.health().add_http_connection_shed();
    }
    let watcher = graceful.watcher();
    async move {
        let slot = Arc::new(admission.slot);
        let shed = admission.shed;
        tokio::pin!(shed);
        match endpoints.access.tls.clone() {
            None => serve_http(stream, slot, endpoints, watcher, shed).await,
            Some(tls) => {
                // The handshake counts as the request head's time: a client that
                // stays silent, or speaks plain HTTP, is closed like one that
                // sends no request.
                let handshake = tokio::time::timeout(
                    HEADER_READ_TIMEOUT,
                    tokio_rustls::TlsAcceptor::from(tls).accept(stream),
                );
                let tls_stream = tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(tls_stream)) => tls_stream,
                        Ok(Err(e)) => {
                            tracing::debug!("metrics endpoint: TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            endpoints.metrics.health().add_http_header_timeout();
                            tracing::debug!("metrics endpoint: TLS handshake timed out");
                            return;
                        }
                    },
                    _ = &mut shed => return,
                };
                serve_http(tls_stream, slot, endpoints, watcher, shed).await
            }
        }
    }
}

/// Serves HTTP/1.1 on `io` (a TCP or TLS stream) until the connection ends, is
/// shed, or shutdown drains it.
async fn serve_http<I, S>(
    io: I,
    slot: Arc<connections::Slot>,
    endpoints: Endpoints,
    watcher: hyper_util::server::graceful::Watcher,
    shed: std::pin::Pin<&mut S>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Future,
{
    let service_slot = slot.clone();
    let service_endpoints = endpoints.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let busy = service_slot.busy();
        let endpoints = service_endpoints.clone();
        async move {
            let mut response = if authorized(&endpoints.access, &req).await {
                respond(&endpoints, &req)
            } else {
                unauthorized()
            };
            // An events response holds its read permit until its body is gone.
            let permit = response.extensions_mut().remove::<events::ReadPermit>();
            Ok::<_, std::convert::Infallible>(
                response.map(|body| TrackedBody::new(body, busy).holding(permit)),
            )
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BUFFER)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        res = watcher.watch(conn) => {
            if let Err(e) = res {
                // A deadline missed before any request is a silent or slow
                // client; between keep-alive requests it is an idle close.
                if e.is_timeout() && slot.activity() == Some(Activity::Fresh) {
                    endpoints.metrics.health().add_http_header_timeout();
                }
                log_connection_end(e);
            }
        }
        // Shed: dropping the connection closes it.
        _ = shed => {}
    }
}

/// Whether `req` may be answered: always for `/healthz` and without users;
/// otherwise with a user and password of the web config.
async fn authorized(access: &Access, req: &Request<Incoming>) -> bool {
    let Some(auth) = &access.basic_auth else {
        return true;
    };
    if req.uri().path() == "/healthz" {
        return true;
    }
    auth.allows(req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes))
        .await
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut resp = plain(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"tlsmon\""),
    );
    resp
}

fn log_connection_end(e: hyper::Error) {
    tracing::debug!("metrics endpoint: connection ended: {e}");
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
    let events = endpoints.events.as_ref().filter(|_| path == EVENTS_PATH);
    if path != "/metrics" && path != "/healthz" && events.is_none() {
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
        let (status, body) = (endpoints.health)().response();
        return plain(status, body);
    }
    if let Some(events) = events {
        return events.respond(req.uri().query());
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
