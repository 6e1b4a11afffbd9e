//! Recognises the first bytes of a preamble that a TLS handshake may follow: a
//! PROXY protocol header (v1 text, v2 binary), an HTTP `CONNECT` request, or a
//! SOCKS4/SOCKS5 request. A connection whose first client payload starts like
//! this becomes a candidate: the kernel follows it (within the flow's byte
//! budget) and userspace parses the preamble and looks for the ClientHello after
//! it. The check is a cheap filter, not a parse: userspace decides.
//!
//! Like `client_hello`, every function is `#[inline(always)]` and small: the
//! kernel program runs it on the first payload of every untracked connection.

/// Array of u32 words, a bitmap of the server ports whose sessions upgrade to
/// TLS in-band (STARTTLS), set by userspace at load time.
pub const STARTTLS_PORTS_MAP: &str = "TLSMON_STARTTLS_PORTS";
/// Words in [`STARTTLS_PORTS_MAP`]: one bit per port.
pub const STARTTLS_PORT_WORDS: u32 = 65_536 / 32;

/// The word and bit of `port` in [`STARTTLS_PORTS_MAP`].
#[inline(always)]
pub fn starttls_port_bit(port: u16) -> (u32, u32) {
    (u32::from(port >> 5), 1 << (port & 31))
}

/// Bytes needed to recognise every preamble but the short SOCKS5 greeting.
pub const PREAMBLE_PEEK_LEN: usize = 8;

/// The first eight of the twelve bytes of the PROXY protocol v2 signature.
pub const PROXY_V2_SIGNATURE_START: [u8; 8] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51];

/// SOCKS5 greetings list at most this many authentication methods here (the
/// protocol allows 255; real clients offer one to three).
const MAX_SOCKS5_METHODS: u8 = 8;

/// True when `b`, the first [`PREAMBLE_PEEK_LEN`] bytes of a payload, begin a
/// PROXY v1 or v2 header, an HTTP `CONNECT` request or a SOCKS4 `CONNECT` request.
#[inline(always)]
pub fn is_preamble_start(b: &[u8; PREAMBLE_PEEK_LEN]) -> bool {
    // "PROXY " (v1), compared as one word so the kernel needs few instructions.
    let first6 = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0]);
    let all8 = u64::from_le_bytes(*b);
    first6 == u64::from_le_bytes(*b"PROXY \0\0")
        || all8 == u64::from_le_bytes(PROXY_V2_SIGNATURE_START)
        || all8 == u64::from_le_bytes(*b"CONNECT ")
        // SOCKS4/4a CONNECT: version 4, command 1, port, address, user id.
        || (b[0] == 4 && b[1] == 1)
}

/// True when a payload of `payload_len` bytes beginning with `b0`, `b1` is a
/// whole SOCKS5 greeting: version 5, the method count, then that many methods.
#[inline(always)]
pub fn is_socks5_greeting(b0: u8, b1: u8, payload_len: u32) -> bool {
    b0 == 5 && b1 != 0 && b1 <= MAX_SOCKS5_METHODS && payload_len == 2 + b1 as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_preamble_and_nothing_else() {
        assert!(is_preamble_start(b"PROXY TC"));
        assert!(is_preamble_start(b"PROXY UN"));
        assert!(is_preamble_start(&PROXY_V2_SIGNATURE_START));
        assert!(is_preamble_start(b"CONNECT "));
        assert!(is_preamble_start(&[4, 1, 1, 187, 10, 0, 0, 1]));
        assert!(!is_preamble_start(b"GET / HT"));
        assert!(!is_preamble_start(b"PROXYxTC"));
        assert!(!is_preamble_start(b"CONNECTx"));
        assert!(!is_preamble_start(&[22, 3, 1, 2, 0, 1, 0, 1]));
        // SOCKS4 BIND is not followed.
        assert!(!is_preamble_start(&[4, 2, 1, 187, 10, 0, 0, 1]));
    }

    #[test]
    fn a_socks5_greeting_is_exactly_its_methods_long() {
        assert!(is_socks5_greeting(5, 1, 3));
        assert!(is_socks5_greeting(5, 2, 4));
        assert!(!is_socks5_greeting(5, 1, 4));
        assert!(!is_socks5_greeting(5, 0, 2));
        assert!(!is_socks5_greeting(4, 1, 3));
        assert!(!is_socks5_greeting(5, 9, 11));
    }
}
