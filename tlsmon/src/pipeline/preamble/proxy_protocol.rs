//! PROXY protocol headers (HAProxy's specification, versions 1 and 2), parsed
//! with the `ppp` crate: the original client's address and where TLS starts.

use std::net::SocketAddr;

use ppp::{v1, v2, PartialResult};

use super::{Parse, Said};

/// The twelve-byte signature that opens a version 2 header.
pub(super) const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 header, CRLF included (specification, section 2.1).
const V1_MAX_LEN: usize = 107;

/// A version 1 header: `PROXY TCP4|TCP6|UNKNOWN ...\r\n`, at most 107 bytes.
pub(super) fn parse_v1(held: &[u8]) -> Parse<Said> {
    // The specification has the receiver wait for the CRLF (within 107 bytes)
    // before parsing; ppp takes a port cut short ("44" of "443") for a whole one.
    let line = &held[..held.len().min(V1_MAX_LEN)];
    let Some(line_end) = line.windows(2).position(|w| w == b"\r\n") else {
        return if held.len() >= V1_MAX_LEN {
            Parse::Invalid(format!(
                "PROXY v1 header without CRLF in {V1_MAX_LEN} bytes"
            ))
        } else {
            Parse::Incomplete
        };
    };
    let result = v1::Header::try_from(&held[..line_end + 2]);
    if result.is_incomplete() {
        return Parse::Incomplete;
    }
    match result {
        Ok(header) => {
            let source = match header.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Parse::Complete {
                len: header.header.len(),
                value: Said {
                    source,
                    tunnel_target: None,
                },
            }
        }
        Err(err) => Parse::Invalid(format!("PROXY v1 header: {err}")),
    }
}

/// A version 2 header: signature, version and command, family, length, the
/// addresses and TLVs. A `LOCAL` command (health checks) carries no client.
pub(super) fn parse_v2(held: &[u8]) -> Parse<Said> {
    let result = v2::Header::try_from(held);
    if result.is_incomplete() {
        return Parse::Incomplete;
    }
    match result {
        Ok(header) => {
            let source = match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Parse::Complete {
                len: header.header.len(),
                value: Said {
                    source,
                    tunnel_target: None,
                },
            }
        }
        Err(err) => Parse::Invalid(format!("PROXY v2 header: {err}")),
    }
}
