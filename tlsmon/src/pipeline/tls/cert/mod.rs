//! Certificate and ServerKeyExchange bodies (TLS 1.2 and older, where they are plaintext).

use tls_parser::{
    parse_ec_parameters, parse_tls_handshake_msg_certificate, ECParametersContent, TlsCipherKx,
    TlsCipherSuite, TlsMessageHandshake,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ServerCert;
use crate::event::rfc3339_seconds;
use distinguished_name::rfc4514;

mod distinguished_name;

/// The leaf (first) certificate of a Certificate handshake body; `None` when the chain
/// is empty (a client without a certificate) or the certificate does not parse.
pub(super) fn leaf_certificate(body: &[u8]) -> Option<ServerCert> {
    let Ok((_, TlsMessageHandshake::Certificate(chain))) =
        parse_tls_handshake_msg_certificate(body)
    else {
        return None;
    };
    let leaf = chain.cert_chain.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.data).ok()?;
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
