//! SOCKS4/4a and SOCKS5 (RFC 1928, username/password RFC 1929) as seen from the
//! wire: the client's request names the tunnel's target, the server's reply
//! opens it. Written here because the SOCKS crates are clients and servers that
//! own a socket; this needs only to find where each side's bytes end, from
//! bytes captured in order, a few dozen lines of byte counting.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Parse, Said};

const SOCKS4_CONNECT: u8 = 1;
const SOCKS4_GRANTED: u8 = 0x5a;
const SOCKS5_CONNECT: u8 = 1;
const SOCKS5_USERPASS: u8 = 2;
const SOCKS5_NO_METHOD: u8 = 0xff;
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Reads what a byte slice holds, position by position; `None` once it ran out.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn port(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    /// Bytes up to (not including) a NUL, which is consumed; at most `max`.
    fn until_nul(&mut self, max: usize) -> Option<Result<&'a [u8], String>> {
        let rest = &self.bytes[self.at..];
        match rest.iter().take(max + 1).position(|&b| b == 0) {
            Some(end) => {
                self.at += end + 1;
                Some(Ok(&rest[..end]))
            }
            None if rest.len() > max => Some(Err(format!("field longer than {max} bytes"))),
            None => None,
        }
    }
}

/// Longest SOCKS4 user id or SOCKS4a host name followed.
const MAX_SOCKS4_FIELD: usize = 255;

/// `4, 1 (CONNECT), port, IPv4, user id, NUL` and for SOCKS4a (address
/// 0.0.0.x, x non-zero) the host name and a NUL.
pub(super) fn parse_socks4_request(held: &[u8]) -> Parse<Said> {
    let mut c = Cursor::new(held);
    let result = (|| {
        let (version, command) = (c.byte()?, c.byte()?);
        if version != 4 || command != SOCKS4_CONNECT {
            return Some(Err("not a SOCKS4 CONNECT".to_string()));
        }
        let port = c.port()?;
        let ip = c.take(4)?;
        if let Err(e) = c.until_nul(MAX_SOCKS4_FIELD)? {
            return Some(Err(format!("SOCKS4 user id: {e}")));
        }
        let target = if ip[..3] == [0, 0, 0] && ip[3] != 0 {
            let host = match c.until_nul(MAX_SOCKS4_FIELD)? {
                Ok(host) => host,
                Err(e) => return Some(Err(format!("SOCKS4a host name: {e}"))),
            };
            format!("{}:{port}", String::from_utf8_lossy(host))
        } else {
            format!("{}:{port}", Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
        };
        Some(Ok(target))
    })();
    finish(result, c.at, |target| Said {
        source: None,
        tunnel_target: Some(target),
    })
}

/// `0, status, port, address`: status 0x5a grants the request.
pub(super) fn parse_socks4_reply(held: &[u8]) -> Parse<()> {
    let Some(reply) = held.get(..8) else {
        return Parse::Incomplete;
    };
    if reply[0] != 0 {
        return Parse::Invalid(format!("SOCKS4 reply version {}", reply[0]));
    }
    if reply[1] != SOCKS4_GRANTED {
        return Parse::Invalid(format!(
            "the SOCKS4 server refused with status {:#x}",
            reply[1]
        ));
    }
    Parse::Complete { len: 8, value: () }
}

/// The greeting (`5, n, n methods`), a username/password exchange if the
/// client's next byte starts one, then `5, 1 (CONNECT), 0, address, port`.
pub(super) fn parse_socks5_request(held: &[u8]) -> Parse<Said> {
    let mut c = Cursor::new(held);
    let result = (|| {
        let (version, methods) = (c.byte()?, c.byte()?);
        if version != 5 || methods == 0 {
            return Some(Err("not a SOCKS5 greeting".to_string()));
        }
        c.take(methods as usize)?;
        // RFC 1929: version 1, user name, password.
        if *held.get(c.at)? == 1 {
            c.byte()?;
            let user_len = c.byte()? as usize;
            c.take(user_len)?;
            let pass_len = c.byte()? as usize;
            c.take(pass_len)?;
        }
        let (version, command, _reserved) = (c.byte()?, c.byte()?, c.byte()?);
        if version != 5 || command != SOCKS5_CONNECT {
            return Some(Err(format!(
                "SOCKS5 request version {version} command {command}, not a CONNECT"
            )));
        }
        address(&mut c)
    })();
    finish(result, c.at, |target| Said {
        source: None,
        tunnel_target: Some(target),
    })
}

/// `5, method`, the username/password status if that method was chosen, then
/// `5, reply, 0, address, port`: reply 0 opens the tunnel.
pub(super) fn parse_socks5_reply(held: &[u8]) -> Parse<()> {
    let mut c = Cursor::new(held);
    let result = (|| {
        let (version, method) = (c.byte()?, c.byte()?);
        if version != 5 {
            return Some(Err(format!("SOCKS5 reply version {version}")));
        }
        if method == SOCKS5_NO_METHOD {
            return Some(Err("the SOCKS5 server accepted no method".to_string()));
        }
        if method == SOCKS5_USERPASS {
            let (_, status) = (c.byte()?, c.byte()?);
            if status != 0 {
                return Some(Err("the SOCKS5 server refused the credentials".to_string()));
            }
        }
        let (version, reply, _reserved) = (c.byte()?, c.byte()?, c.byte()?);
        if version != 5 {
            return Some(Err(format!("SOCKS5 reply version {version}")));
        }
        if reply != 0 {
            return Some(Err(format!("the SOCKS5 server refused with reply {reply}")));
        }
        Some(address(&mut c)?.map(|_| ()))
    })();
    finish(result, c.at, |()| ())
}

/// A SOCKS5 address and port as `host:port` (IPv6 in brackets).
fn address(c: &mut Cursor<'_>) -> Option<Result<String, String>> {
    let target = match c.byte()? {
        ATYP_IPV4 => {
            let ip = c.take(4)?;
            let port = c.port()?;
            format!("{}:{port}", Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
        }
        ATYP_DOMAIN => {
            let len = c.byte()? as usize;
            let host = c.take(len)?;
            let port = c.port()?;
            format!("{}:{port}", String::from_utf8_lossy(host))
        }
        ATYP_IPV6 => {
            let ip: [u8; 16] = c.take(16)?.try_into().ok()?;
            let port = c.port()?;
            format!("[{}]:{port}", Ipv6Addr::from(ip))
        }
        other => return Some(Err(format!("SOCKS5 address type {other}"))),
    };
    Some(Ok(target))
}

/// `None` from a step means the bytes ran out: incomplete.
fn finish<T, U>(
    result: Option<Result<T, String>>,
    len: usize,
    value: impl FnOnce(T) -> U,
) -> Parse<U> {
    match result {
        None => Parse::Incomplete,
        Some(Err(reason)) => Parse::Invalid(reason),
        Some(Ok(v)) => Parse::Complete {
            len,
            value: value(v),
        },
    }
}
