//! Names of TLS code points as the IANA registries and RFCs spell them.
//!
//! Cipher suite names come from tls-parser's copy of the IANA registry. Versions,
//! groups and alerts are tabled here: tls-parser names groups and alerts in Rust
//! CamelCase ("EcdhX25519", "HandshakeFailure") and does not know the post-quantum
//! hybrid groups, while tlsmon reports the registry spelling ("x25519",
//! "X25519MLKEM768", "handshake_failure"). Unknown values print as hex, never panic.
//! The `is_*_name` functions tell registered names from GREASE and hex, for the
//! metrics, which give every registered name a series of its own and fold the rest.

use std::{collections::HashSet, sync::OnceLock};

/// Name every code point of the RFC 8701 GREASE set gets: a reserved value that a
/// client sends to keep peers tolerant, never a real choice.
pub const GREASE: &str = "GREASE";

/// Protocol versions by code point.
const VERSIONS: &[(u16, &str)] = &[
    (0x0002, "SSLv2"),
    (0x0300, "SSLv3"),
    (0x0301, "TLSv1.0"),
    (0x0302, "TLSv1.1"),
    (0x0303, "TLSv1.2"),
    (0x0304, "TLSv1.3"),
    // Pre-standard TLS 1.3 (still in old captures): IETF drafts 14 to 28, and the
    // experiment versions browsers used while middleboxes were being fixed.
    (0x7f0e, "TLSv1.3-draft14"),
    (0x7f0f, "TLSv1.3-draft15"),
    (0x7f10, "TLSv1.3-draft16"),
    (0x7f11, "TLSv1.3-draft17"),
    (0x7f12, "TLSv1.3-draft18"),
    (0x7f13, "TLSv1.3-draft19"),
    (0x7f14, "TLSv1.3-draft20"),
    (0x7f15, "TLSv1.3-draft21"),
    (0x7f16, "TLSv1.3-draft22"),
    (0x7f17, "TLSv1.3-draft23"),
    (0x7f18, "TLSv1.3-draft24"),
    (0x7f19, "TLSv1.3-draft25"),
    (0x7f1a, "TLSv1.3-draft26"),
    (0x7f1b, "TLSv1.3-draft27"),
    (0x7f1c, "TLSv1.3-draft28"),
    (0x7e01, "TLSv1.3-experiment1"),
    (0x7e02, "TLSv1.3-experiment2"),
    (0xfeff, "DTLSv1.0"),
    (0xfefd, "DTLSv1.2"),
    (0xfefc, "DTLSv1.3"),
];

/// Supported groups (IANA "TLS Supported Groups") by code point.
const GROUPS: &[(u16, &str)] = &[
    (1, "sect163k1"),
    (2, "sect163r1"),
    (3, "sect163r2"),
    (4, "sect193r1"),
    (5, "sect193r2"),
    (6, "sect233k1"),
    (7, "sect233r1"),
    (8, "sect239k1"),
    (9, "sect283k1"),
    (10, "sect283r1"),
    (11, "sect409k1"),
    (12, "sect409r1"),
    (13, "sect571k1"),
    (14, "sect571r1"),
    (15, "secp160k1"),
    (16, "secp160r1"),
    (17, "secp160r2"),
    (18, "secp192k1"),
    (19, "secp192r1"),
    (20, "secp224k1"),
    (21, "secp224r1"),
    (22, "secp256k1"),
    (23, "secp256r1"),
    (24, "secp384r1"),
    (25, "secp521r1"),
    (26, "brainpoolP256r1"),
    (27, "brainpoolP384r1"),
    (28, "brainpoolP512r1"),
    (29, "x25519"),
    (30, "x448"),
    (31, "brainpoolP256r1tls13"),
    (32, "brainpoolP384r1tls13"),
    (33, "brainpoolP512r1tls13"),
    (34, "GC256A"),
    (35, "GC256B"),
    (36, "GC256C"),
    (37, "GC256D"),
    (38, "GC512A"),
    (39, "GC512B"),
    (40, "GC512C"),
    (41, "curveSM2"),
    (0x0100, "ffdhe2048"),
    (0x0101, "ffdhe3072"),
    (0x0102, "ffdhe4096"),
    (0x0103, "ffdhe6144"),
    (0x0104, "ffdhe8192"),
    (0x0200, "MLKEM512"),
    (0x0201, "MLKEM768"),
    (0x0202, "MLKEM1024"),
    (0x11eb, "SecP256r1MLKEM768"),
    (0x11ec, "X25519MLKEM768"),
    (0x11ed, "SecP384r1MLKEM1024"),
    // Pre-standard Kyber hybrids still sent by older Chrome and Cloudflare clients.
    (0x6399, "X25519Kyber768Draft00"),
    (0x639a, "SecP256r1Kyber768Draft00"),
    (0xff01, "arbitrary_explicit_prime_curves"),
    (0xff02, "arbitrary_explicit_char2_curves"),
];

/// Alert descriptions (IANA "TLS Alerts") by code point.
const ALERTS: &[(u8, &str)] = &[
    (0, "close_notify"),
    (10, "unexpected_message"),
    (20, "bad_record_mac"),
    (21, "decryption_failed"),
    (22, "record_overflow"),
    (30, "decompression_failure"),
    (40, "handshake_failure"),
    (41, "no_certificate"),
    (42, "bad_certificate"),
    (43, "unsupported_certificate"),
    (44, "certificate_revoked"),
    (45, "certificate_expired"),
    (46, "certificate_unknown"),
    (47, "illegal_parameter"),
    (48, "unknown_ca"),
    (49, "access_denied"),
    (50, "decode_error"),
    (51, "decrypt_error"),
    (52, "too_many_cids_requested"),
    (60, "export_restriction"),
    (70, "protocol_version"),
    (71, "insufficient_security"),
    (80, "internal_error"),
    (86, "inappropriate_fallback"),
    (90, "user_canceled"),
    (100, "no_renegotiation"),
    (109, "missing_extension"),
    (110, "unsupported_extension"),
    (111, "certificate_unobtainable"),
    (112, "unrecognized_name"),
    (113, "bad_certificate_status_response"),
    (114, "bad_certificate_hash_value"),
    (115, "unknown_psk_identity"),
    (116, "certificate_required"),
    (120, "no_application_protocol"),
    (121, "ech_required"),
];

/// Name of a protocol version: "SSLv2", "SSLv3", "TLSv1.0" .. "TLSv1.3", "DTLSv1.2";
/// TLS 1.3 drafts as "TLSv1.3-draft23" (the code point on the wire, named);
/// GREASE as "GREASE", unknown values as hex ("0x7f1d").
pub fn version_name(v: u16) -> String {
    if is_grease(v) {
        return GREASE.to_string();
    }
    match lookup(VERSIONS, v) {
        Some(name) => name.to_string(),
        None => format!("0x{v:04x}"),
    }
}

/// True for TLS 1.3 and its pre-standard versions (drafts 14-28: 0x7f0e-0x7f1c, and
/// the experiment versions 0x7e01/0x7e02), whose handshakes run the TLS 1.3 way.
pub fn is_tls13_version(v: u16) -> bool {
    v == 0x0304 || (0x7f0e..=0x7f1c).contains(&v) || v == 0x7e01 || v == 0x7e02
}

/// IANA name of a cipher suite ("TLS_AES_128_GCM_SHA256"); GREASE as "GREASE",
/// unknown values as hex.
pub fn cipher_name(id: u16) -> String {
    if is_grease(id) {
        return GREASE.to_string();
    }
    match tls_parser::TlsCipherSuite::from_id(id) {
        Some(suite) => suite.name.to_string(),
        None => format!("0x{id:04x}"),
    }
}

/// IANA name of a supported group ("x25519", "secp256r1", "X25519MLKEM768");
/// GREASE as "GREASE", unknown values as hex.
pub fn group_name(id: u16) -> String {
    if is_grease(id) {
        return GREASE.to_string();
    }
    match lookup(GROUPS, id) {
        Some(name) => name.to_string(),
        None => format!("0x{id:04x}"),
    }
}

/// RFC 8446 / IANA name of an alert description ("handshake_failure"); unknown values
/// as hex ("0x63").
pub fn alert_name(desc: u8) -> String {
    match lookup(ALERTS, desc) {
        Some(name) => name.to_string(),
        None => format!("0x{desc:02x}"),
    }
}

/// TLS extensions (IANA "TLS ExtensionType Values") by code point, plus two that are
/// common on the wire without a registration (NPN, ALPS).
const EXTENSIONS: &[(u16, &str)] = &[
    (0, "server_name"),
    (1, "max_fragment_length"),
    (2, "client_certificate_url"),
    (3, "trusted_ca_keys"),
    (4, "truncated_hmac"),
    (5, "status_request"),
    (6, "user_mapping"),
    (7, "client_authz"),
    (8, "server_authz"),
    (9, "cert_type"),
    (10, "supported_groups"),
    (11, "ec_point_formats"),
    (12, "srp"),
    (13, "signature_algorithms"),
    (14, "use_srtp"),
    (15, "heartbeat"),
    (16, "application_layer_protocol_negotiation"),
    (17, "status_request_v2"),
    (18, "signed_certificate_timestamp"),
    (19, "client_certificate_type"),
    (20, "server_certificate_type"),
    (21, "padding"),
    (22, "encrypt_then_mac"),
    (23, "extended_master_secret"),
    (24, "token_binding"),
    (25, "cached_info"),
    (26, "tls_lts"),
    (27, "compress_certificate"),
    (28, "record_size_limit"),
    (29, "pwd_protect"),
    (30, "pwd_clear"),
    (31, "password_salt"),
    (32, "ticket_pinning"),
    (33, "tls_cert_with_extern_psk"),
    (34, "delegated_credential"),
    (35, "session_ticket"),
    (41, "pre_shared_key"),
    (42, "early_data"),
    (43, "supported_versions"),
    (44, "cookie"),
    (45, "psk_key_exchange_modes"),
    (47, "certificate_authorities"),
    (48, "oid_filters"),
    (49, "post_handshake_auth"),
    (50, "signature_algorithms_cert"),
    (51, "key_share"),
    (52, "transparency_info"),
    (54, "connection_id"),
    (55, "external_id_hash"),
    (56, "external_session_id"),
    (57, "quic_transport_parameters"),
    (58, "ticket_request"),
    (59, "dnssec_chain"),
    (13172, "next_protocol_negotiation"),
    (17513, "application_settings"),
    (0xfe0d, "encrypted_client_hello"),
    (0xff01, "renegotiation_info"),
];

/// IANA name of a TLS extension ("supported_versions", "key_share"); GREASE as
/// "GREASE", unknown values as hex ("0x4469").
pub fn extension_name(id: u16) -> String {
    if is_grease(id) {
        return GREASE.to_string();
    }
    match lookup(EXTENSIONS, id) {
        Some(name) => name.to_string(),
        None => format!("0x{id:04x}"),
    }
}

/// True when `name` is what [`version_name`] returns for a registered version (not
/// GREASE, not hex).
pub fn is_version_name(name: &str) -> bool {
    VERSIONS.iter().any(|&(_, n)| n == name)
}

/// True when `name` is what [`cipher_name`] returns for a suite in tls-parser's copy
/// of the IANA registry (not GREASE, not hex).
pub fn is_cipher_name(name: &str) -> bool {
    // About 350 names, asked about for every offered suite: a set, built once.
    static NAMES: OnceLock<HashSet<&'static str>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            tls_parser::CIPHERS
                .values()
                .map(|suite| suite.name)
                .collect()
        })
        .contains(name)
}

/// True when `name` is what [`group_name`] returns for a registered group (not
/// GREASE, not hex).
pub fn is_group_name(name: &str) -> bool {
    GROUPS.iter().any(|&(_, n)| n == name)
}

/// True when `name` is what [`alert_name`] returns for a registered alert (not hex).
pub fn is_alert_name(name: &str) -> bool {
    ALERTS.iter().any(|&(_, n)| n == name)
}

/// The name of `code` in `table`.
fn lookup<T: PartialEq + Copy>(table: &[(T, &'static str)], code: T) -> Option<&'static str> {
    table
        .iter()
        .find(|&&(c, _)| c == code)
        .map(|&(_, name)| name)
}

/// True for the RFC 8701 GREASE values 0x0a0a, 0x1a1a, .. 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

#[cfg(test)]
mod tests;
