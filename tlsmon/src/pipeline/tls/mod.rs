//! TLS handshake parsing: one direction of a connection's bytes in, messages out.
//!
//! [`TlsStreamParser`] takes the in-order bytes of one direction (as reassembly delivers
//! them, in chunks of any size) and emits [`ParsedMessage`]s: ClientHello, ServerHello
//! (and HelloRetryRequest), the TLS 1.2-and-older Certificate and ServerKeyExchange,
//! other plaintext handshake messages, alerts, ChangeCipherSpec, encrypted records and
//! application data. Record headers, handshake messages and extensions are parsed with
//! `tls-parser`; certificates with `x509-parser`. [`names`] turns code points into IANA
//! names and [`fingerprint`] computes JA3, JA3S and JA4.
//!
//! Memory is bounded per direction: at most one record payload
//! ([`MAX_RECORD_PAYLOAD`]) plus one handshake message ([`MAX_HANDSHAKE_MESSAGE`])
//! are buffered. Bytes the parser does not need are counted, never held: opaque
//! record payloads, and a certificate chain after its leaf (a Certificate message is
//! decided on its first bytes, whatever the chain's size). The parser says where it
//! next needs bytes ([`TlsStreamParser::next_needed`]), so that reassembly and the
//! kernel can skip the rest ([`TlsStreamParser::skip`]); outcomes come from record
//! headers, which are always needed.

mod cert;
pub mod fingerprint;
mod hello;
pub mod names;
mod record_layer;

#[cfg(test)]
mod tests;

pub use crate::event::ServerCert;
pub use hello::OfferedHello;
/// QUIC's CRYPTO frames carry handshake messages without records.
pub(crate) use record_layer::decode_handshake;
pub use record_layer::{TlsStreamParser, MAX_HANDSHAKE_MESSAGE, MAX_RECORD_PAYLOAD};

/// One decoded message and where in the direction's byte stream it was carried.
///
/// `start` is the stream offset of the record header that carried the message's first
/// byte when the message begins its record, otherwise the offset of its first byte;
/// `end` is the offset just past its last byte (for a message decided before its end,
/// a Certificate on its leaf or a message too long to hold, just past the bytes that
/// decided it). Record-level messages (alerts,
/// ChangeCipherSpec, encrypted records, application data) span their whole record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedMessage {
    /// Stream offset where the bytes that carried this message begin.
    pub start: u64,
    /// Stream offset just past the last byte of this message.
    pub end: u64,
    /// What was decoded.
    pub message: TlsMessage,
}

/// What one direction of a TLS connection said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMessage {
    /// A ClientHello (TLS record or SSLv2-compatible).
    ClientHello(ClientHello),
    /// A ServerHello; `is_hello_retry_request` marks a TLS 1.3 HelloRetryRequest.
    ServerHello(ServerHello),
    /// A TLS 1.2-and-older Certificate message: its first (leaf) certificate, `None`
    /// when the chain is empty or the certificate does not parse.
    Certificate(Option<ServerCert>),
    /// A ServerKeyExchange; `group` is the named curve of an ECDHE exchange.
    ServerKeyExchange {
        /// ECDHE named group, when the cipher suite is ECDHE and the curve is named.
        group: Option<u16>,
    },
    /// Any other plaintext handshake message (ServerHelloDone, CertificateRequest, ...).
    OtherHandshake {
        /// Handshake message type (RFC 8446 section 4).
        msg_type: u8,
    },
    /// A handshake record sent after this direction's ChangeCipherSpec (TLS 1.2
    /// Finished and friends), which is encrypted.
    EncryptedHandshake {
        /// Record payload length.
        len: usize,
    },
    /// A plaintext alert (record of length 2).
    Alert {
        /// 1 warning, 2 fatal.
        level: u8,
        /// Alert description code (see [`names::alert_name`]).
        description: u8,
    },
    /// An alert record whose length is not 2: encrypted.
    EncryptedAlert {
        /// Record payload length.
        len: usize,
    },
    /// A ChangeCipherSpec record (also TLS 1.3's middlebox-compatibility one).
    ChangeCipherSpec,
    /// An application-data record (in TLS 1.3 this also carries the encrypted handshake).
    ApplicationData {
        /// Record payload length.
        len: usize,
    },
    /// The first bytes of the stream are neither a TLS record nor an SSLv2 ClientHello.
    NotTls,
    /// Anything else broken; the parser consumes nothing more after it.
    Malformed {
        /// What was wrong, for humans.
        reason: String,
    },
}

/// What a ClientHello offered. Every `Vec<u16>` list has GREASE (RFC 8701) removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version` field (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    /// The client's `random`, which identifies this ClientHello wherever it is seen
    /// (an SSLv2 challenge right-justified with leading zeros, RFC 5246 E.2).
    pub random: [u8; 32],
    /// Sent as an SSLv2-compatible ClientHello (RFC 5246 appendix E.2).
    pub sslv2_compat: bool,
    /// supported_versions extension, in the client's order.
    pub supported_versions: Vec<u16>,
    /// Cipher suites, in the client's order.
    pub cipher_suites: Vec<u16>,
    /// Extension types, in the client's order.
    pub extensions: Vec<u16>,
    /// First host_name of the server_name extension.
    pub sni: Option<String>,
    /// ALPN protocol names, in the client's order.
    pub alpn: Vec<String>,
    /// supported_groups extension, in the client's order.
    pub supported_groups: Vec<u16>,
    /// Groups of the key_share extension's entries.
    pub key_share_groups: Vec<u16>,
    /// signature_algorithms extension, in the client's order.
    pub signature_algorithms: Vec<u16>,
    /// ec_point_formats extension.
    pub ec_point_formats: Vec<u8>,
    /// Length of the legacy session id.
    pub session_id_len: u8,
    /// A non-empty session_ticket extension was sent (TLS 1.2 resumption attempt).
    pub session_ticket_offered: bool,
    /// A pre_shared_key extension was sent (TLS 1.3 resumption attempt).
    pub psk_offered: bool,
    /// Size of the handshake message including its 4-byte header (for SSLv2: the
    /// record including its 2-byte header).
    pub message_len: u32,
    /// JA3 fingerprint (MD5 hex).
    pub ja3: String,
    /// JA4 fingerprint.
    pub ja4: String,
}

/// What a ServerHello (or HelloRetryRequest) chose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// `legacy_version` field.
    pub legacy_version: u16,
    /// The negotiated version: the supported_versions extension if present, else
    /// `legacy_version`.
    pub selected_version: u16,
    /// The chosen cipher suite.
    pub cipher_suite: u16,
    /// Extension types, in the server's order, GREASE removed.
    pub extensions: Vec<u16>,
    /// Group of the key_share extension (the requested group in a HelloRetryRequest).
    pub key_share_group: Option<u16>,
    /// The chosen application protocol.
    pub alpn: Option<String>,
    /// The legacy session id (echoed by the server on TLS 1.2 resumption).
    pub session_id: Vec<u8>,
    /// The server accepted a pre-shared key (TLS 1.3 resumption).
    pub psk_selected: bool,
    /// This is a TLS 1.3 HelloRetryRequest (RFC 8446 section 4.1.3).
    pub is_hello_retry_request: bool,
    /// JA3S fingerprint (MD5 hex).
    pub ja3s: String,
}
