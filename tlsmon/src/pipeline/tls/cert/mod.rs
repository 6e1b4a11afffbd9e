//! Certificate and ServerKeyExchange bodies (TLS 1.2 and older, where they are plaintext).

use tls_parser::{parse_ec_parameters, ECParametersContent, TlsCipherKx, TlsCipherSuite};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ServerCert;
use crate::event::rfc3339_seconds;
use distinguished_name::rfc4514;

mod distinguished_name;

/// Bytes before the leaf's DER in a Certificate body: the chain's 3-byte length,
/// then the leaf's 3-byte length.
const LEAF_DER_OFFSET: usize = 6;

/// What the first bytes of a Certificate handshake body say about its leaf.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LeafPrefix {
    /// The leaf is not complete yet.
    NeedMore,
    /// Decided by the body's first `usize` bytes: the leaf certificate, or `None`
    /// when the chain is empty, its lengths do not hold together, the leaf is longer
    /// than allowed or does not parse.
    Decided(Option<ServerCert>, usize),
}

/// The leaf (first) certificate of a Certificate handshake body, from its first
/// bytes only: the rest of the chain (intermediates, of any size) is never needed.
/// `complete` says `body` is the whole body, so nothing more will come; a leaf
/// longer than `max_leaf` bytes is not decoded. The bytes that decide depend on the
/// body alone, never on how much of it is there.
///
/// The two 24-bit lengths are read here because tls-parser's Certificate parser
/// wants the whole chain; the certificate itself is parsed by x509-parser.
pub(super) fn leaf_from_prefix(body: &[u8], complete: bool, max_leaf: usize) -> LeafPrefix {
    let u24 = |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
    if body.len() >= 3 && u24(body) == 0 {
        // An empty chain: a client without a certificate.
        return LeafPrefix::Decided(None, 3);
    }
    let Some(header) = body.get(..LEAF_DER_OFFSET) else {
        return if complete {
            LeafPrefix::Decided(None, body.len())
        } else {
            LeafPrefix::NeedMore
        };
    };
    let (chain_len, leaf_len) = (u24(&header[..3]), u24(&header[3..]));
    if chain_len < 3 + leaf_len || leaf_len > max_leaf {
        return LeafPrefix::Decided(None, LEAF_DER_OFFSET);
    }
    let needed = LEAF_DER_OFFSET + leaf_len;
    match body.get(LEAF_DER_OFFSET..needed) {
        Some(der) => LeafPrefix::Decided(server_cert(der), needed),
        None if complete => LeafPrefix::Decided(None, body.len()),
        None => LeafPrefix::NeedMore,
    }
}

/// The fields of one DER certificate; `None` when it does not parse.
fn server_cert(der: &[u8]) -> Option<ServerCert> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    // A GeneralizedTime may carry an offset; the event says UTC. Past year 9999 in
    // UTC it is written as the last instant of that year, like event timestamps.
    let not_after = (cert.validity().not_after.to_datetime().checked_to_utc())
        .unwrap_or(time::UtcDateTime::MAX);
    Some(ServerCert {
        subject: rfc4514(cert.subject()),
        issuer: rfc4514(cert.issuer()),
        not_after: format!("{}Z", rfc3339_seconds(not_after)),
    })
}

/// The named group of a ServerKeyExchange body, when `cipher` (the suite the same
/// server chose in its ServerHello) uses ECDHE and the parameters name a curve.
/// The body's layout depends on the key exchange, which only the cipher suite tells.
pub(super) fn server_key_exchange_group(body: &[u8], cipher: Option<u16>) -> Option<u16> {
    let suite = TlsCipherSuite::from_id(cipher?)?;
    if !matches!(suite.kx, TlsCipherKx::Ecdhe | TlsCipherKx::Aecdh) {
        return None;
    }
    match parse_ec_parameters(body).ok()?.1.params_content {
        ECParametersContent::NamedGroup(group) => Some(group.0),
        ECParametersContent::ExplicitPrime(_) => None,
    }
}

#[cfg(test)]
mod tests;
