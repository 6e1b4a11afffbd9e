//! A running daemon's recent handshake events, read from its `/api/v1/events`
//! (for `tlsmon compare --from http://HOST:PORT`).
//!
//! Plain HTTP/1.1 with hyper's client; `http://USER:PASSWORD@HOST:PORT` sends basic
//! authentication. The whole exchange is bounded in time ([`FETCH_TIMEOUT`]) and the
//! body in size ([`MAX_BODY_BYTES`], above what the daemon's ring can hold).

use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{
    body::Bytes,
    header::{AUTHORIZATION, HOST},
    Request, StatusCode, Uri,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::event::HandshakeEvent;

/// Path of the daemon's recent events.
pub const EVENTS_PATH: &str = "/api/v1/events";
/// Longest the whole fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted (the daemon's ring holds at most 32 MiB).
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// Why the events could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DaemonEventsError {
    /// The URL is not `http://HOST:PORT[/api/v1/events]`.
    #[error("{url}: {why}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// Connecting, sending or receiving failed.
    #[error("{url}: {why}")]
    Http {
        /// The URL asked.
        url: String,
        /// What failed.
        why: String,
    },
    /// The daemon answered, but not with events.
    #[error("{url}: the daemon answered {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// Its status.
        status: StatusCode,
        /// The start of its body.
        body: String,
    },
    /// A line of the body is not an event.
    #[error("{url}: line {line} is not a tlsmon event: {why}")]
    NotAnEvent {
        /// The URL asked.
        url: String,
        /// 1-based line number.
        line: usize,
        /// What serde said.
        why: String,
    },
}

/// Where to connect and what to send.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    authority: String,
    path_and_query: String,
    basic_auth: Option<String>,
}

/// Checks `url` and works out the request: `http://` only, a host and port, the
/// events path added when the URL has none.
fn target(url: &str) -> Result<Target, DaemonEventsError> {
    let bad = |why: &str| DaemonEventsError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported by --from; read the daemon over plain http (e.g. through an SSH tunnel)",
            ))
        }
        _ => return Err(bad("expected http://HOST:PORT")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let (basic_auth, host_port) = match authority.as_str().rsplit_once('@') {
        Some((userinfo, host_port)) => (
            Some(base64::engine::general_purpose::STANDARD.encode(userinfo)),
            host_port,
        ),
        None => (None, authority.as_str()),
    };
    if authority.port_u16().is_none() {
        return Err(bad("no port (the daemon listens on 9808 by default)"));
    }
    let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("/") | Some("") => EVENTS_PATH.to_string(),
        Some(p) if p.starts_with(EVENTS_PATH) => p.to_string(),
        Some(p) => return Err(bad(&format!("expected no path or {EVENTS_PATH}, not {p}"))),
    };
    Ok(Target {
        authority: host_port.to_string(),
        path_and_query,
        basic_auth,
    })
}

/// Reads the daemon's recent events.
pub async fn fetch(url: &str) -> Result<Vec<HandshakeEvent>, DaemonEventsError> {
    let target = target(url)?;
    let http = |why: String| DaemonEventsError::Http {
        url: url.to_string(),
        why,
    };
    let body = tokio::time::timeout(FETCH_TIMEOUT, get(&target))
        .await
        .map_err(|_| http(format!("no complete answer within {FETCH_TIMEOUT:?}")))?
        .map_err(http)?;
    let (status, body) = body;
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim_end()
            .to_string();
        return Err(DaemonEventsError::Status {
            url: url.to_string(),
            status,
            body: text,
        });
    }
    let mut events = Vec::new();
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event = serde_json::from_slice(line).map_err(|e| DaemonEventsError::NotAnEvent {
            url: url.to_string(),
            line: index + 1,
            why: e.to_string(),
        })?;
        events.push(event);
    }
    Ok(events)
}

/// One GET; the status and the body.
async fn get(target: &Target) -> Result<(StatusCode, Bytes), String> {
    let stream = TcpStream::connect(&target.authority)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let mut request = Request::get(target.path_and_query.as_str())
        .header(HOST, target.authority.as_str())
        .header("accept", "application/x-ndjson");
    if let Some(auth) = &target.basic_auth {
        request = request.header(AUTHORIZATION, format!("Basic {auth}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer (at most {MAX_BODY_BYTES} bytes): {e}"))?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

#[cfg(test)]
mod tests;
