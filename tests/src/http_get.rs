//! A minimal blocking HTTP GET for talking to tlsmon and Prometheus in tests.
//!
//! HTTP/1.0 on purpose: the server then sends the body as-is (no chunked
//! encoding) and closes, so reading to the end is the whole protocol.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{bail, Context, Result};

/// Status code and body of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// GETs `path_and_query` from `addr`, with a 10-second limit on every step.
pub fn get(addr: SocketAddr, path_and_query: &str) -> Result<Response> {
    let limit = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, limit)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response from {addr}"))?;
    let raw = String::from_utf8(raw).context("response is not UTF-8")?;
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!("malformed response from {addr}: {raw:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
pub fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_promql() {
        assert_eq!(
            encode_query_value(r#"sum by (device) (x{a="b"})"#),
            "sum%20by%20%28device%29%20%28x%7Ba%3D%22b%22%7D%29"
        );
    }
}
