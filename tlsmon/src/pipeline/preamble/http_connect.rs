//! HTTP `CONNECT` (RFC 9110 section 9.3.6) to a forward proxy, parsed with
//! `httparse`: the request names the tunnel's target, a 2xx answer opens it.

use super::{Parse, Said};

/// Header lines a request or answer may carry here (httparse needs a bound).
const MAX_HEADERS: usize = 64;

/// `CONNECT host:port HTTP/1.x`, headers, empty line.
pub(super) fn parse_request(held: &[u8]) -> Parse<Said> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(held) {
        Ok(httparse::Status::Partial) => Parse::Incomplete,
        Ok(httparse::Status::Complete(len)) => {
            if request.method != Some("CONNECT") {
                return Parse::Invalid("not a CONNECT request".to_string());
            }
            Parse::Complete {
                len,
                value: Said {
                    source: None,
                    tunnel_target: request.path.map(str::to_string),
                },
            }
        }
        Err(err) => Parse::Invalid(format!("CONNECT request: {err}")),
    }
}

/// The proxy's answer: a 2xx status opens the tunnel; anything else refuses it.
pub(super) fn parse_response(held: &[u8]) -> Parse<()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(held) {
        Ok(httparse::Status::Partial) => Parse::Incomplete,
        Ok(httparse::Status::Complete(len)) => match response.code {
            Some(200..=299) => Parse::Complete { len, value: () },
            code => Parse::Invalid(format!(
                "the proxy refused the CONNECT with status {}",
                code.unwrap_or(0)
            )),
        },
        Err(err) => Parse::Invalid(format!("CONNECT response: {err}")),
    }
}
