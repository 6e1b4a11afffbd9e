//! Recognises the first bytes of a TLS ClientHello, the point where tracking starts.

/// Bytes needed to recognise a ClientHello start.
pub const PEEK_LEN: usize = 6;

const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// RFC 8446 5.1: a plaintext record holds at most 2^14 bytes.
const MAX_RECORD_LEN: u16 = 16 * 1024;
/// SSLv2 CLIENT-HELLO body: type, version, three lengths (RFC 5246 E.2).
const MIN_SSLV2_HELLO_LEN: u16 = 9;

/// Version bytes SSL 3.0 (0x0300) up to TLS 1.3's legacy values (0x0304).
#[inline(always)]
fn is_ssl3_or_tls(major: u8, minor: u8) -> bool {
    major == 3 && minor <= 4
}

/// True when `b` begins a TLS handshake record carrying a ClientHello, or an
/// SSLv2-compatible ClientHello (RFC 5246 appendix E.2).
#[inline(always)]
pub fn is_client_hello_start(b: &[u8; PEEK_LEN]) -> bool {
    if b[0] == CONTENT_TYPE_HANDSHAKE {
        let record_len = u16::from_be_bytes([b[3], b[4]]);
        return is_ssl3_or_tls(b[1], b[2])
            && (4..=MAX_RECORD_LEN).contains(&record_len)
            && b[5] == HANDSHAKE_CLIENT_HELLO;
    }
    if b[0] & 0x80 != 0 {
        let len = u16::from_be_bytes([b[0] & 0x7f, b[1]]);
        return len >= MIN_SSLV2_HELLO_LEN
            && b[2] == HANDSHAKE_CLIENT_HELLO
            && is_ssl3_or_tls(b[3], b[4]);
    }
    false
}
