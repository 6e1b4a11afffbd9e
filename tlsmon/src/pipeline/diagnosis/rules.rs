//! The rules: a failed handshake, what the tracker saw of it, and what the server's
//! profile says, in; one [`Diagnosis`] out. Each rule names the facts it rests on,
//! and says so when a step is an inference rather than something seen.

use crate::event::{
    parse_rfc3339, Diagnosis, DiagnosisCode, FailureReason, HandshakeEvent, Outcome, Side,
};

use super::profiles::{ServerProfile, ServerView};
use super::{HandshakeClues, Knowledge};

/// A ClientHello larger than this (bytes) does not fit one Ethernet segment.
pub const LARGE_CLIENT_HELLO: u32 = 1500;

/// Names listed in one piece of evidence before "and N more".
const LISTED: usize = 6;

/// Alerts a client sends when it refuses the server's certificate.
const CERTIFICATE_ALERTS: &[&str] = &[
    "bad_certificate",
    "unsupported_certificate",
    "certificate_revoked",
    "certificate_expired",
    "certificate_unknown",
    "unknown_ca",
    "bad_certificate_status_response",
];

/// Alerts that say the other side's messages were malformed or out of place.
const PROTOCOL_ALERTS: &[&str] = &[
    "unexpected_message",
    "bad_record_mac",
    "decryption_failed",
    "record_overflow",
    "decompression_failure",
    "illegal_parameter",
    "decode_error",
    "decrypt_error",
    "missing_extension",
    "unsupported_extension",
];

/// Diagnoses a failed handshake; `None` for any other outcome.
pub fn diagnose(
    record: &HandshakeEvent,
    clues: HandshakeClues,
    view: &ServerView<'_>,
    knowledge: Knowledge,
) -> Option<Diagnosis> {
    if record.outcome != Outcome::Failed {
        return None;
    }
    let facts = Facts {
        record,
        clues,
        view,
        knowledge,
    };
    Some(match record.failure_reason {
        Some(FailureReason::NotTls) => facts.not_tls(),
        Some(FailureReason::StarttlsRefused) => facts.starttls_refused(),
        Some(FailureReason::VersionNegotiation) => facts.quic_version_negotiation(),
        Some(FailureReason::ProtocolError) => facts.protocol_error(),
        Some(FailureReason::Alert) => facts.alert(),
        Some(FailureReason::EncryptedAlert) => facts.encrypted_alert(),
        Some(FailureReason::Reset | FailureReason::Closed) => facts.close(),
        Some(FailureReason::Timeout) => facts.timeout(),
        None => facts.unknown(
            "The handshake failed for a reason tlsmon did not record.".to_string(),
            Vec::new(),
        ),
    })
}

/// One failed handshake and what is known around it.
struct Facts<'a> {
    record: &'a HandshakeEvent,
    clues: HandshakeClues,
    view: &'a ServerView<'a>,
    knowledge: Knowledge,
}

impl Facts<'_> {
    fn diagnosis(&self, code: DiagnosisCode, summary: String, evidence: Vec<String>) -> Diagnosis {
        Diagnosis {
            code,
            summary,
            evidence,
        }
    }

    fn unknown(&self, summary: String, evidence: Vec<String>) -> Diagnosis {
        self.diagnosis(DiagnosisCode::Unknown, summary, evidence)
    }

    fn server(&self) -> String {
        let r = self.record;
        let address = std::net::SocketAddr::new(r.server_ip, r.server_port);
        match &r.sni {
            Some(name) => format!("{address}, name {name}"),
            None => format!("{address}, no SNI"),
        }
    }

    /// Where profile knowledge came from, in words ("seen before this one").
    fn when(&self) -> &'static str {
        match self.knowledge {
            Knowledge::Earlier => "seen before this one",
            Knowledge::WholeCapture => "in this capture",
            Knowledge::PartOfCapture => {
                "in the part of this capture read when this failure was diagnosed"
            }
        }
    }

    /// The sentence for an empty profile.
    fn no_profile(&self) -> String {
        match self.knowledge {
            Knowledge::Earlier => format!(
                "no earlier successful handshake with this server ({}) was seen",
                self.server()
            ),
            Knowledge::WholeCapture | Knowledge::PartOfCapture => format!(
                "no successful handshake with this server ({}) is in this capture",
                self.server()
            ),
        }
    }

    /// "this server chose X in N successful handshakes seen before this one".
    fn profile_says(&self, profile: &ServerProfile, what: &str, values: &[String]) -> String {
        format!(
            "this server ({}) {what} {} in {} successful handshake{} {}",
            self.server(),
            list(values),
            profile.successes,
            plural(profile.successes),
            self.when()
        )
    }

    fn offered(&self, what: &str, values: &[String]) -> String {
        if values.is_empty() {
            format!("the client offered no {what}")
        } else {
            format!("the client offered {what} {}", list(values))
        }
    }

    fn alert_evidence(&self) -> String {
        let r = self.record;
        let stage = if r.version.is_some() {
            "after the ServerHello"
        } else {
            "before any ServerHello"
        };
        format!(
            "the {} sent the alert {} {stage}",
            r.alert_sender.map_or("peer", Side::as_str),
            r.alert.as_deref().unwrap_or("?"),
        )
    }

    fn not_tls(&self) -> Diagnosis {
        let detail = self.record.detail.clone().unwrap_or_default();
        let summary = format!(
            "The connection to {} did not speak TLS: {}.",
            std::net::SocketAddr::new(self.record.server_ip, self.record.server_port),
            detail.trim_end_matches('.')
        );
        self.diagnosis(
            DiagnosisCode::NotTls,
            summary,
            vec![detail, format!("server port {}", self.record.server_port)],
        )
    }

    /// QUIC: the server listed its versions and the client had none of them.
    fn quic_version_negotiation(&self) -> Diagnosis {
        let detail = self.record.detail.clone().unwrap_or_default();
        self.diagnosis(
            DiagnosisCode::NoSharedVersion,
            format!(
                "The QUIC server at {} supports none of the QUIC versions the client tried.",
                std::net::SocketAddr::new(self.record.server_ip, self.record.server_port),
            ),
            vec![detail],
        )
    }

    fn starttls_refused(&self) -> Diagnosis {
        let detail = self.record.detail.clone().unwrap_or_default();
        let protocol = self
            .record
            .preamble
            .map(|kind| kind.as_str())
            .unwrap_or("starttls");
        self.diagnosis(
            DiagnosisCode::StarttlsRefused,
            format!(
                "The server at {} turned down the STARTTLS upgrade ({}), so no TLS handshake began.",
                std::net::SocketAddr::new(self.record.server_ip, self.record.server_port),
                detail.trim_end_matches('.')
            ),
            vec![detail, format!("upgrade asked for as {protocol}")],
        )
    }

    fn protocol_error(&self) -> Diagnosis {
        let detail = self.record.detail.clone().unwrap_or_default();
        self.diagnosis(
            DiagnosisCode::ProtocolError,
            format!(
                "The handshake broke off on malformed or unexpected bytes ({}).",
                detail.trim_end_matches('.')
            ),
            vec![detail],
        )
    }

    fn alert(&self) -> Diagnosis {
        let r = self.record;
        let alert = r.alert.as_deref().unwrap_or("");
        let from_server = r.alert_sender == Some(Side::Server);
        match alert {
            "inappropriate_fallback" => self.inappropriate_fallback(),
            "unrecognized_name" if from_server => self.unknown_sni_alert(),
            "protocol_version" => self.no_shared_version_alert(),
            "certificate_required" if from_server => self.certificate_required(vec![
                self.alert_evidence(),
            ]),
            "handshake_failure" | "insufficient_security"
                if from_server && r.version.is_some() && self.clues.certificate_requested =>
            {
                self.certificate_required(vec![
                    "the server asked for a client certificate in this handshake (CertificateRequest)"
                        .to_string(),
                    self.alert_evidence(),
                    "inferred: the server refused the client's reply to that request".to_string(),
                ])
            }
            "handshake_failure" | "insufficient_security" if from_server && r.version.is_none() => {
                self.refused_before_server_hello()
            }
            a if CERTIFICATE_ALERTS.contains(&a) && r.alert_sender == Some(Side::Client) => {
                self.client_rejected_certificate(vec![self.alert_evidence()], a)
            }
            a if CERTIFICATE_ALERTS.contains(&a) && from_server => self.diagnosis(
                DiagnosisCode::ServerRejectedClientCertificate,
                format!("The server rejected the client's certificate ({a})."),
                vec![self.alert_evidence()],
            ),
            a if PROTOCOL_ALERTS.contains(&a) => {
                let sender = r.alert_sender.map_or("peer", Side::as_str);
                self.diagnosis(
                    DiagnosisCode::ProtocolError,
                    format!(
                        "The {sender} found the other side's handshake messages malformed or out of place ({a})."
                    ),
                    vec![self.alert_evidence()],
                )
            }
            a => self.unknown(
                format!(
                    "The {} ended the handshake with the alert {a}, which tlsmon has no rule to explain further.",
                    r.alert_sender.map_or("peer", Side::as_str)
                ),
                vec![self.alert_evidence()],
            ),
        }
    }

    fn inappropriate_fallback(&self) -> Diagnosis {
        let r = self.record;
        let mut evidence = vec![self.alert_evidence()];
        if r.offered_ciphers.iter().any(|c| c == "TLS_FALLBACK_SCSV") {
            evidence.push(
                "the ClientHello carried TLS_FALLBACK_SCSV: it is a retry at a lower version"
                    .to_string(),
            );
        }
        evidence.push(self.offered("versions", &r.offered_versions));
        self.diagnosis(
            DiagnosisCode::InappropriateFallback,
            format!(
                "The client retried at a lower version ({}) after an earlier attempt failed, and the server, which supports a higher one, refused the downgrade.",
                highest(&r.offered_versions).unwrap_or("unknown")
            ),
            evidence,
        )
    }

    fn unknown_sni_alert(&self) -> Diagnosis {
        let r = self.record;
        let mut evidence = vec![self.alert_evidence()];
        evidence.extend(self.other_names_evidence());
        let summary = match &r.sni {
            Some(name) => {
                format!("The server does not serve the name {name} the client asked for.")
            }
            None => "The server needs a server name (SNI), and the client sent none.".to_string(),
        };
        self.diagnosis(DiagnosisCode::UnknownSni, summary, evidence)
    }

    fn other_names_evidence(&self) -> Option<String> {
        let v = self.view;
        (v.other_name_count > 0).then(|| {
            let names: Vec<String> = v
                .other_names
                .iter()
                .map(|n| n.clone().unwrap_or_else(|| "(no SNI)".to_string()))
                .collect();
            let more = v.other_name_count as usize - names.len().min(v.other_name_count as usize);
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!(
                "this address completed handshakes {} with other names: {}{tail}",
                self.when(),
                names.join(", ")
            )
        })
    }

    fn no_shared_version_alert(&self) -> Diagnosis {
        let r = self.record;
        let highest_offered = highest(&r.offered_versions).unwrap_or("unknown");
        let mut evidence = vec![
            self.alert_evidence(),
            self.offered("versions", &r.offered_versions),
        ];
        let summary = if r.alert_sender == Some(Side::Client) {
            format!(
                "The client refused the version the server chose ({}).",
                r.version.as_deref().unwrap_or("unknown")
            )
        } else {
            match self.view.exact.filter(|p| !p.versions.is_empty()) {
                Some(p) => {
                    evidence.push(self.profile_says(p, "negotiated", p.versions.values()));
                    format!(
                        "The client offers at most {highest_offered}, and this server accepts only {}.",
                        list(p.versions.values())
                    )
                }
                None => {
                    evidence.push(self.no_profile());
                    format!(
                        "The server accepts none of the versions the client offered (at most {highest_offered})."
                    )
                }
            }
        };
        self.diagnosis(DiagnosisCode::NoSharedVersion, summary, evidence)
    }

    /// The server said handshake_failure (or insufficient_security) before choosing
    /// anything: what it has accepted before tells which part of the offer it lacked.
    /// Versions first: a client below the server's versions often offers none of its
    /// suites either (TLS 1.2 suites do not exist in TLS 1.1), and the version is
    /// the cause.
    fn refused_before_server_hello(&self) -> Diagnosis {
        let r = self.record;
        let Some(profile) = self.view.exact.filter(|p| p.successes > 0) else {
            if self.view.other_name_count > 0 {
                let mut evidence = vec![self.alert_evidence(), self.no_profile()];
                evidence.extend(self.other_names_evidence());
                evidence.push(
                    "inferred: a server that succeeds with other names but refuses this one before choosing anything may not serve this name"
                        .to_string(),
                );
                return self.diagnosis(
                    DiagnosisCode::UnknownSni,
                    format!(
                        "The server refused the ClientHello for {} before choosing anything, and has only ever succeeded with other names.",
                        r.sni.as_deref().unwrap_or("no server name")
                    ),
                    evidence,
                );
            }
            return self.diagnosis(
                DiagnosisCode::NoSharedCipher,
                format!(
                    "The server refused the ClientHello with {} before choosing anything, which usually means no cipher suite in common.",
                    r.alert.as_deref().unwrap_or("an alert")
                ),
                vec![
                    self.alert_evidence(),
                    self.offered("cipher suites", &r.offered_ciphers),
                    format!(
                        "{}, so which suites it accepts is not known: this is an inference from the alert",
                        self.no_profile()
                    ),
                ],
            );
        };
        if let (Some(offered), Some(lowest)) = (
            highest(&r.offered_versions),
            lowest(profile.versions.values()),
        ) {
            if rank(offered) < rank(lowest) {
                return self.diagnosis(
                    DiagnosisCode::NoSharedVersion,
                    format!(
                        "The client offers at most {offered}, below the lowest version this server has negotiated ({lowest})."
                    ),
                    vec![
                        self.alert_evidence(),
                        self.offered("versions", &r.offered_versions),
                        self.profile_says(profile, "negotiated", profile.versions.values()),
                    ],
                );
            }
        }
        let chosen = profile.ciphers.values();
        if !chosen.is_empty() && !chosen.iter().any(|c| r.offered_ciphers.contains(c)) {
            return self.diagnosis(
                DiagnosisCode::NoSharedCipher,
                format!(
                    "The client offered none of the cipher suites this server has chosen ({}), so the server refused it with {}.",
                    list(chosen),
                    r.alert.as_deref().unwrap_or("an alert")
                ),
                vec![
                    self.alert_evidence(),
                    self.offered("cipher suites", &r.offered_ciphers),
                    self.profile_says(profile, "chose", chosen),
                ],
            );
        }
        let groups = profile.groups.values();
        if !groups.is_empty() && !groups.iter().any(|g| r.offered_groups.contains(g)) {
            return self.diagnosis(
                DiagnosisCode::NoSharedGroup,
                format!(
                    "The client offered none of the key exchange groups this server has used ({}).",
                    list(groups)
                ),
                vec![
                    self.alert_evidence(),
                    self.offered("groups", &r.offered_groups),
                    self.profile_says(profile, "used the groups", groups),
                ],
            );
        }
        let shared: Vec<String> = chosen
            .iter()
            .filter(|c| r.offered_ciphers.contains(c))
            .cloned()
            .collect();
        self.unknown(
            format!(
                "The server refused with {} before choosing anything, although the client offered what it has accepted before; the cause is elsewhere (signature algorithms, an extension, or a changed server configuration).",
                r.alert.as_deref().unwrap_or("an alert")
            ),
            vec![
                self.alert_evidence(),
                format!("the client offered {} which this server chose before", list(&shared)),
                self.profile_says(profile, "negotiated", profile.versions.values()),
            ],
        )
    }

    fn certificate_required(&self, evidence: Vec<String>) -> Diagnosis {
        self.diagnosis(
            DiagnosisCode::ClientCertificateRequired,
            "The server requires a client certificate, and the client did not present one it accepts.".to_string(),
            evidence,
        )
    }

    fn client_rejected_certificate(&self, mut evidence: Vec<String>, alert: &str) -> Diagnosis {
        let r = self.record;
        let what = match alert {
            "unknown_ca" => "it does not trust the issuer",
            "certificate_expired" => "it has expired",
            "certificate_revoked" => "it was revoked",
            "bad_certificate" => "it is invalid (a bad signature or name)",
            _ => "it does not accept it",
        };
        let mut summary = if alert.is_empty() {
            "The client refused the server's handshake, most likely its certificate.".to_string()
        } else {
            format!("The client rejected the server's certificate ({alert}: {what}).")
        };
        match &r.server_cert {
            Some(cert) => {
                evidence.push(format!(
                    "the server's certificate: subject {}, issuer {}, valid until {}",
                    cert.subject, cert.issuer, cert.not_after
                ));
                let expired = parse_rfc3339(&cert.not_after).is_some_and(|end| end < r.ts);
                if expired {
                    evidence.push(
                        "that certificate had expired when the handshake took place".to_string(),
                    );
                    summary = format!(
                        "The client rejected the server's certificate, which expired on {}.",
                        cert.not_after
                    );
                }
            }
            None => evidence
                .push("the server's certificate was not visible (TLS 1.3 encrypts it)".to_string()),
        }
        self.diagnosis(DiagnosisCode::ClientRejectedCertificate, summary, evidence)
    }

    fn encrypted_alert(&self) -> Diagnosis {
        let r = self.record;
        let tls13 = r
            .version
            .as_deref()
            .is_some_and(|v| v.starts_with("TLSv1.3"));
        match (r.alert_sender, tls13) {
            (Some(Side::Client), true) => self.client_rejected_certificate(
                vec![
                    "the client sent a short encrypted record (an alert) where its Finished was due, then the connection closed".to_string(),
                    "inferred: TLS 1.3 hides the alert's name; a client that refuses the server's flight instead of finishing has almost always rejected its certificate".to_string(),
                ],
                "",
            ),
            (Some(Side::Server), true) => {
                let mut evidence = vec![
                    "the server sent a short encrypted record (an alert) right after the client's Finished, then the connection closed".to_string(),
                ];
                match self.view.exact.filter(|p| p.requests_client_cert) {
                    Some(_) => {
                        evidence.push(format!(
                            "this server asked for client certificates in handshakes {}",
                            self.when()
                        ));
                        evidence.push("inferred: TLS 1.3 hides the alert's name".to_string());
                        self.certificate_required(evidence)
                    }
                    None => {
                        evidence.push("TLS 1.3 hides the alert's name, and whether this server asks for client certificates was not seen".to_string());
                        self.unknown(
                            "The server rejected the client's final flight with an encrypted alert; the usual cause is a missing or refused client certificate, but TLS 1.3 hides which.".to_string(),
                            evidence,
                        )
                    }
                }
            }
            (sender, _) => self.unknown(
                format!(
                    "The {} ended the handshake with an encrypted alert, whose name cannot be seen.",
                    sender.map_or("peer", Side::as_str)
                ),
                vec!["an alert record after ChangeCipherSpec, encrypted".to_string()],
            ),
        }
    }

    /// Large-ClientHello evidence, when it applies.
    fn large_hello(&self) -> Option<String> {
        let r = self.record;
        let segments = r.client_hello_segments.unwrap_or(1);
        let bytes = r.client_hello_bytes.unwrap_or(0);
        if segments <= 1 && bytes <= LARGE_CLIENT_HELLO {
            return None;
        }
        let pq = r
            .offered_groups
            .iter()
            .any(|g| g.contains("MLKEM") || g.contains("Kyber"));
        Some(format!(
            "the ClientHello was {bytes} bytes in {segments} TCP segment{}{}: middleboxes that mishandle ClientHellos larger than one segment drop or cut such connections",
            plural(u64::from(segments)),
            if pq { ", large because of its post-quantum key share" } else { "" },
        ))
    }

    /// What the profile says about the server being up, as evidence lines.
    fn server_known_up(&self) -> Vec<String> {
        match self.view.exact.filter(|p| p.successes > 0) {
            Some(p) => vec![format!(
                "this server ({}) completed {} handshake{} {}, so it is up and speaks TLS",
                self.server(),
                p.successes,
                plural(p.successes),
                self.when()
            )],
            None => std::iter::once(self.no_profile())
                .chain(self.other_names_evidence())
                .collect(),
        }
    }

    fn close(&self) -> Diagnosis {
        let r = self.record;
        let reset = r.failure_reason == Some(FailureReason::Reset);
        let verb = if reset { "reset" } else { "closed" };
        let by = r.closed_by.map_or("a side", Side::as_str);
        if !self.clues.server_replied && r.closed_by == Some(Side::Server) {
            let mut evidence = vec![format!(
                "the server {verb} the connection after the ClientHello without sending a byte"
            )];
            let large = self.large_hello();
            evidence.extend(large.clone());
            evidence.extend(self.server_known_up());
            let code = if reset {
                DiagnosisCode::ResetAfterClientHello
            } else {
                DiagnosisCode::SilentCloseAfterClientHello
            };
            let summary = match large {
                Some(_) => format!(
                    "The server, or a middlebox on the way, {verb} the connection right after a ClientHello of {} bytes in {} segments, without answering: a path that mishandles large ClientHellos.",
                    r.client_hello_bytes.unwrap_or(0),
                    r.client_hello_segments.unwrap_or(1)
                ),
                None => format!(
                    "The server, or a middlebox on the way, {verb} the connection right after the ClientHello without answering."
                ),
            };
            return self.diagnosis(code, summary, evidence);
        }
        if !self.clues.server_replied {
            return self.unknown(
                format!(
                    "The {by} {verb} the connection before the server answered the ClientHello."
                ),
                vec![format!(
                    "the {by} {verb} the connection; the server had sent nothing"
                )],
            );
        }
        if r.closed_by == Some(Side::Client) && r.version.is_some() {
            return self.unknown(
                format!("The client {verb} the connection after the server's reply, without an alert."),
                vec![
                    format!("the client {verb} the connection after the server's handshake messages"),
                    "inferred: clients that refuse a certificate or parameter without saying so do this".to_string(),
                ],
            );
        }
        self.unknown(
            format!("The {by} {verb} the connection during the handshake, without an alert."),
            vec![format!(
                "the {by} {verb} the connection after the server had replied"
            )],
        )
    }

    fn timeout(&self) -> Diagnosis {
        let r = self.record;
        let detail = r.detail.clone().unwrap_or_default();
        if !self.clues.server_replied {
            let mut evidence = vec![detail];
            let large = self.large_hello();
            evidence.extend(large.clone());
            evidence.extend(self.server_known_up());
            let summary = match large {
                Some(_) => format!(
                    "The server never answered a ClientHello of {} bytes in {} segments: a path that drops large ClientHellos, or a server that is down.",
                    r.client_hello_bytes.unwrap_or(0),
                    r.client_hello_segments.unwrap_or(1)
                ),
                None => "The server never answered the ClientHello.".to_string(),
            };
            return self.diagnosis(DiagnosisCode::ServerTimeout, summary, evidence);
        }
        self.unknown(
            "The handshake stalled after the server's reply: one side stopped sending.".to_string(),
            vec![detail],
        )
    }
}

/// Protocol version order: SSLv2 < SSLv3 < TLSv1.0 < ... < TLSv1.3 (its drafts
/// included); anything else ranks nowhere.
fn rank(name: &str) -> Option<u8> {
    Some(match name {
        "SSLv2" => 0,
        "SSLv3" => 1,
        "TLSv1.0" => 2,
        "TLSv1.1" => 3,
        "TLSv1.2" => 4,
        n if n.starts_with("TLSv1.3") => 5,
        _ => return None,
    })
}

fn highest(versions: &[String]) -> Option<&str> {
    versions
        .iter()
        .filter(|v| rank(v).is_some())
        .max_by_key(|v| rank(v))
        .map(String::as_str)
}

fn lowest(versions: &[String]) -> Option<&str> {
    versions
        .iter()
        .filter(|v| rank(v).is_some())
        .min_by_key(|v| rank(v))
        .map(String::as_str)
}

/// "a, b, c and 4 more".
pub(crate) fn list(values: &[String]) -> String {
    if values.is_empty() {
        return "nothing".to_string();
    }
    let shown = values[..values.len().min(LISTED)].join(", ");
    match values.len().saturating_sub(LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
