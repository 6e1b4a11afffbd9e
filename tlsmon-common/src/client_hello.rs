//! Recognises the first bytes of a TLS ClientHello, the point where tracking starts.
//!
//! The kernel program decides with [`is_client_hello_start`] whether a connection is
//! tracked at all; userspace builds its own, wider first-bytes check from the same
//! pieces ([`is_ssl3_or_tls`], [`sslv2_record_len`], [`MIN_SSLV2_HELLO_LEN`]). The
//! kernel program is near the verifier's instruction limit: every function here is
//! `#[inline(always)]` and must stay branch-for-branch what the kernel was verified
//! with.

/// Bytes needed to recognise a ClientHello start.
pub const PEEK_LEN: usize = 6;

const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// RFC 8446 5.1: a plaintext record holds at most 2^14 bytes.
const MAX_RECORD_LEN: u16 = 16 * 1024;
/// SSLv2 CLIENT-HELLO body: type, version, three lengths (RFC 5246 E.2).
pub const MIN_SSLV2_HELLO_LEN: u16 = 9;

/// Version bytes SSL 3.0 (0x0300) up to TLS 1.3's legacy values (0x0304).
#[inline(always)]
pub fn is_ssl3_or_tls(major: u8, minor: u8) -> bool {
    major == 3 && minor <= 4
}

/// Body length of an SSLv2 record from its two-byte header (high bit of `h0` set:
/// the header without padding).
#[inline(always)]
pub fn sslv2_record_len(h0: u8, h1: u8) -> u16 {
    u16::from_be_bytes([h0 & 0x7f, h1])
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
        let len = sslv2_record_len(b[0], b[1]);
        return len >= MIN_SSLV2_HELLO_LEN
            && b[2] == HANDSHAKE_CLIENT_HELLO
            && is_ssl3_or_tls(b[3], b[4]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_tls_and_sslv2_client_hello_starts() {
        assert!(is_client_hello_start(&[22, 3, 1, 0x02, 0x00, 1]));
        assert!(is_client_hello_start(&[0x80, 0x2e, 1, 3, 1, 0]));
        // ServerHello, record too long, SSL 2.0 version, HTTP.
        assert!(!is_client_hello_start(&[22, 3, 3, 0x00, 0x7a, 2]));
        assert!(!is_client_hello_start(&[22, 3, 3, 0x40, 0x01, 1]));
        assert!(!is_client_hello_start(&[0x80, 0x2e, 1, 0, 2, 0]));
        assert!(!is_client_hello_start(b"GET / "));
    }
}
