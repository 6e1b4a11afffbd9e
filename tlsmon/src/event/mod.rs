//! One record per handshake attempt: the public JSON event schema.
//!
//! Field names are a public interface (README, "JSON events"): keep them stable.
//! Every field is always present; unknown values are `null`, lists may be empty.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{format_description::well_known::Rfc3339, OffsetDateTime, UtcDateTime};

pub use crate::pipeline::preamble::PreambleKind;
use crate::source::segment::Timestamp;

/// Which way the handshake crossed the device, from this host's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A remote client connected to a server on this host (ClientHello on ingress).
    Inbound,
    /// A client on this host connected out (ClientHello on egress).
    Outbound,
    /// Not known (capture files).
    Unknown,
}

impl Direction {
    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Unknown => "unknown",
        }
    }
}

/// How a handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Both sides finished the handshake.
    Established,
    /// The handshake failed; see [`FailureReason`].
    Failed,
    /// The capture ended (or the flow was evicted) before the handshake did.
    Incomplete,
}

impl Outcome {
    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::Failed => "failed",
            Outcome::Incomplete => "incomplete",
        }
    }
}

/// Why a handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// A plaintext alert was sent (see `alert`, `alert_sender`).
    Alert,
    /// A side reset the connection before the handshake completed (`closed_by`).
    Reset,
    /// A side closed (FIN) before the handshake completed (`closed_by`).
    Closed,
    /// No reply within the configured time.
    Timeout,
    /// Inferred: TLS 1.3, a short encrypted record then a close from the same side.
    EncryptedAlert,
    /// The handshake bytes were malformed.
    ProtocolError,
    /// The client's first bytes were not a TLS ClientHello.
    NotTls,
    /// The server refused a STARTTLS upgrade (SMTP `454`, PostgreSQL `N`, ...).
    StarttlsRefused,
    /// QUIC: the server answered with Version Negotiation (no version in common)
    /// and the client did not try again.
    VersionNegotiation,
}

impl FailureReason {
    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Alert => "alert",
            FailureReason::Reset => "reset",
            FailureReason::Closed => "closed",
            FailureReason::Timeout => "timeout",
            FailureReason::EncryptedAlert => "encrypted_alert",
            FailureReason::ProtocolError => "protocol_error",
            FailureReason::NotTls => "not_tls",
            FailureReason::StarttlsRefused => "starttls_refused",
            FailureReason::VersionNegotiation => "version_negotiation",
        }
    }
}

/// One side of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The side that sent the ClientHello.
    Client,
    /// The other side.
    Server,
}

impl Side {
    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// What a TLS 1.2-or-older Certificate message showed of the server's leaf certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCert {
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// Issuer distinguished name, RFC 4514 style.
    pub issuer: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
}

/// The same ClientHello (same `random`) seen arriving on one device and leaving on
/// another: a host that routes or proxies the handshake (README, "Forwarded handshakes").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    /// Where the ClientHello arrived (ingress).
    pub in_device: String,
    /// Where it left (egress); `null` when it arrived on a path that forwarded
    /// before and did not leave within the linking window.
    pub out_device: Option<String>,
    /// What differs between the ClientHello that arrived and the one that left, in
    /// plain words ("cipher suite TLS_AES_256_GCM_SHA384 removed"); empty if nothing.
    pub changes: Vec<String>,
}

/// What tlsmon concluded about why a handshake failed (see [`crate::pipeline::diagnosis`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisCode {
    /// No cipher suite in common (or the server refused before its ServerHello).
    NoSharedCipher,
    /// No protocol version in common.
    NoSharedVersion,
    /// No key exchange group in common.
    NoSharedGroup,
    /// The server refused a downgraded retry (TLS_FALLBACK_SCSV).
    InappropriateFallback,
    /// The server does not serve the name the client asked for.
    UnknownSni,
    /// The client refused the server's certificate.
    ClientRejectedCertificate,
    /// The server wants a client certificate the client did not give.
    ClientCertificateRequired,
    /// The server refused the certificate the client gave.
    ServerRejectedClientCertificate,
    /// The server (or something on the path) closed after the ClientHello without a reply.
    SilentCloseAfterClientHello,
    /// The server (or something on the path) reset after the ClientHello without a reply.
    ResetAfterClientHello,
    /// The server never answered the ClientHello.
    ServerTimeout,
    /// One side did not speak TLS.
    NotTls,
    /// The server turned down a STARTTLS upgrade, so no TLS handshake began.
    StarttlsRefused,
    /// Malformed or unexpected handshake bytes.
    ProtocolError,
    /// The evidence does not allow more.
    Unknown,
}

impl DiagnosisCode {
    /// Every code, in the order the README explains them.
    pub const ALL: [DiagnosisCode; 15] = [
        DiagnosisCode::NoSharedCipher,
        DiagnosisCode::NoSharedVersion,
        DiagnosisCode::NoSharedGroup,
        DiagnosisCode::InappropriateFallback,
        DiagnosisCode::UnknownSni,
        DiagnosisCode::ClientRejectedCertificate,
        DiagnosisCode::ClientCertificateRequired,
        DiagnosisCode::ServerRejectedClientCertificate,
        DiagnosisCode::SilentCloseAfterClientHello,
        DiagnosisCode::ResetAfterClientHello,
        DiagnosisCode::ServerTimeout,
        DiagnosisCode::NotTls,
        DiagnosisCode::StarttlsRefused,
        DiagnosisCode::ProtocolError,
        DiagnosisCode::Unknown,
    ];

    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosisCode::NoSharedCipher => "no_shared_cipher",
            DiagnosisCode::NoSharedVersion => "no_shared_version",
            DiagnosisCode::NoSharedGroup => "no_shared_group",
            DiagnosisCode::InappropriateFallback => "inappropriate_fallback",
            DiagnosisCode::UnknownSni => "unknown_sni",
            DiagnosisCode::ClientRejectedCertificate => "client_rejected_certificate",
            DiagnosisCode::ClientCertificateRequired => "client_certificate_required",
            DiagnosisCode::ServerRejectedClientCertificate => "server_rejected_client_certificate",
            DiagnosisCode::SilentCloseAfterClientHello => "silent_close_after_client_hello",
            DiagnosisCode::ResetAfterClientHello => "reset_after_client_hello",
            DiagnosisCode::ServerTimeout => "server_timeout",
            DiagnosisCode::NotTls => "not_tls",
            DiagnosisCode::StarttlsRefused => "starttls_refused",
            DiagnosisCode::ProtocolError => "protocol_error",
            DiagnosisCode::Unknown => "unknown",
        }
    }
}

/// Why a failed handshake failed: a code, one plain sentence, and what it rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The bounded code (also the metric label).
    pub code: DiagnosisCode,
    /// One sentence a stranger understands.
    pub summary: String,
    /// The facts the sentence rests on, each in plain words; inferences say so.
    pub evidence: Vec<String>,
}

/// One handshake attempt and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandshakeEvent {
    /// When the ClientHello was seen (RFC 3339 UTC).
    #[serde(serialize_with = "serialize_ts", deserialize_with = "deserialize_ts")]
    pub ts: Timestamp,
    /// Interface name (or capture file name).
    pub device: String,
    /// Inbound, outbound or unknown.
    pub direction: Direction,
    /// Address of the side that sent the ClientHello; behind a PROXY protocol
    /// header, the original client the header names.
    pub client_ip: IpAddr,
    /// Port of the side that sent the ClientHello (or the header's client port).
    pub client_port: u16,
    /// When a PROXY protocol header named the client: the address of the
    /// connection's own client (the load balancer). Otherwise null.
    pub peer_ip: Option<IpAddr>,
    /// Port of that peer, with `peer_ip`.
    pub peer_port: Option<u16>,
    /// What came before the ClientHello (PROXY header, CONNECT, SOCKS), or null.
    pub preamble: Option<PreambleKind>,
    /// The `host:port` a CONNECT or SOCKS request asked the proxy for, or null.
    pub tunnel_target: Option<String>,
    /// Address of the other side.
    pub server_ip: IpAddr,
    /// Port of the other side.
    pub server_port: u16,
    /// cgroup v2 path of the local socket ("/system.slice/nginx.service"); null
    /// when the connection has no local socket (forwarded traffic, captures) or
    /// its cgroup could not be resolved. Absent in event files of older versions.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// The service derived from `cgroup` ("nginx.service", "docker:3b9e1d54a7c2",
    /// "pod:<uid>/containerd:<id>", or the path), "(vanished)" when the cgroup was
    /// removed before tlsmon looked it up, "(unresolved)" when it could not look;
    /// null without a local socket.
    #[serde(default)]
    pub service: Option<String>,
    /// established, failed or incomplete.
    pub outcome: Outcome,
    /// Why it failed (only when `outcome` is failed).
    pub failure_reason: Option<FailureReason>,
    /// Alert description name ("handshake_failure"), when an alert ended it.
    pub alert: Option<String>,
    /// Who sent that alert.
    pub alert_sender: Option<Side>,
    /// Who closed or reset the connection when a close ended the handshake: for
    /// `reset` and `closed`, and for the close after an inferred `encrypted_alert`
    /// or a warning alert.
    pub closed_by: Option<Side>,
    /// Human-readable detail for protocol errors and the like.
    pub detail: Option<String>,
    /// Negotiated version ("TLSv1.3"), when the server chose one.
    pub version: Option<String>,
    /// Negotiated cipher suite (IANA name).
    pub cipher: Option<String>,
    /// Negotiated key exchange group (IANA name).
    pub group: Option<String>,
    /// Server name the client asked for.
    pub sni: Option<String>,
    /// Application protocol the server chose.
    pub alpn: Option<String>,
    /// Versions the client offered, most preferred first, GREASE removed.
    pub offered_versions: Vec<String>,
    /// Cipher suites the client offered, GREASE removed.
    pub offered_ciphers: Vec<String>,
    /// Groups the client offered (supported_groups), GREASE removed.
    pub offered_groups: Vec<String>,
    /// Application protocols the client offered.
    pub offered_alpn: Vec<String>,
    /// Size of the ClientHello handshake message in bytes (header included).
    pub client_hello_bytes: Option<u32>,
    /// TCP segments the ClientHello was carried in.
    pub client_hello_segments: Option<u32>,
    /// The server answered with a HelloRetryRequest.
    pub hello_retry: bool,
    /// The session was resumed (TLS 1.2 session id/ticket, or TLS 1.3 PSK accepted).
    pub resumed: bool,
    /// JA3 fingerprint of the ClientHello (MD5 hex).
    pub ja3: Option<String>,
    /// JA3S fingerprint of the ServerHello (MD5 hex).
    pub ja3s: Option<String>,
    /// JA4 fingerprint of the ClientHello.
    pub ja4: Option<String>,
    /// Milliseconds from ClientHello to the end of the handshake (or its failure).
    pub duration_ms: Option<f64>,
    /// Server leaf certificate, when visible (TLS 1.2 and older).
    pub server_cert: Option<ServerCert>,
    /// The same ClientHello on two devices (`null` when not seen twice). Absent in
    /// event files of older versions, read as `null`.
    #[serde(default)]
    pub forwarded: Option<Forwarded>,
    /// Why it failed, when it failed; `None` otherwise. Event files written before
    /// this field existed read as `None`.
    #[serde(default)]
    pub diagnosis: Option<Diagnosis>,
    /// What carried the handshake: TLS over TCP, or QUIC's CRYPTO frames. Event
    /// files of older versions read as `tcp`.
    #[serde(default)]
    pub transport: Transport,
    /// The QUIC version of the handshake's Initial packets ("v1", "v2", or the
    /// code in hex); null over TCP.
    #[serde(default)]
    pub quic_version: Option<String>,
    /// The QUIC server asked for address validation with a Retry before it
    /// answered; false over TCP.
    #[serde(default)]
    pub quic_retry: bool,
}

/// What carried a handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TLS records over a TCP connection.
    #[default]
    Tcp,
    /// TLS handshake messages in QUIC CRYPTO frames (RFC 9001).
    Quic,
}

impl Transport {
    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }
}

fn serialize_ts<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ts))
}

fn deserialize_ts<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let text = String::deserialize(d)?;
    parse_rfc3339(&text).ok_or_else(|| serde::de::Error::custom(format!("bad timestamp {text:?}")))
}

/// Parses an RFC 3339 timestamp, such as [`format_rfc3339`] writes, into time since
/// the Unix epoch; `None` when it does not parse or is before 1970.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Timestamp::try_from(at - OffsetDateTime::UNIX_EPOCH).ok()
}

/// Formats a Unix timestamp as RFC 3339 UTC with microseconds (truncated) and "Z".
/// RFC 3339 years have four digits: a timestamp past the end of year 9999 (only a
/// corrupt capture file can carry one) is written as the last instant of that year.
pub fn format_rfc3339(ts: Timestamp) -> String {
    let at = time::Duration::try_from(ts)
        .ok()
        .and_then(|since_epoch| UtcDateTime::UNIX_EPOCH.checked_add(since_epoch))
        .unwrap_or(UtcDateTime::MAX);
    format!("{}.{:06}Z", rfc3339_seconds(at), at.microsecond())
}

/// `at` as RFC 3339 date and time to the second, without fraction or offset. The
/// certificate's `not_after` uses it too, so both are written one way.
pub(crate) fn rfc3339_seconds(at: UtcDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests;
