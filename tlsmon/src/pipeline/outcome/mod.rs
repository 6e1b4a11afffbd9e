//! Decides how one handshake ended, from the TLS messages and TCP closes of its flow.
//!
//! [`HandshakeTracker`] is a pure state machine: the flow table feeds it messages in
//! stream order per side, closes (FIN at its sequence position, RST at once) and the
//! passing of time, and it answers with a [`Verdict`] once the handshake is decided.
//!
//! What "established" means per version:
//! - TLS 1.2 and older: both sides sent ChangeCipherSpec followed by their (encrypted)
//!   Finished.
//! - TLS 1.3: the client's Finished is encrypted, so it is recognised by size: the
//!   client's first encrypted record after the server's flight is larger than an
//!   encrypted alert could be. Because a server may still reject the client after that
//!   (certificate_required, bad client certificate), the handshake counts as
//!   established only when the server then sends a record too large to be an alert
//!   (NewSessionTicket or application data), or nothing goes wrong for
//!   [`CONFIRM_WINDOW`], or the capture ends.
//!
//! The TLS 1.3 encrypted-alert heuristic: an encrypted alert is 2 bytes of alert, 1 of
//! content type and the AEAD tag (16 bytes for every TLS 1.3 suite but CCM_8, which
//! has 8), so its record is at most [`MAX_ENCRYPTED_ALERT_LEN`] bytes, padding aside.
//! When a side's last encrypted record before its FIN or RST is that small, and it is
//! where a Finished or a first reply was due, the failure is `encrypted_alert` sent
//! by that side. Limits: padded alerts (RFC 8446 §5.4 allows padding) are not
//! recognised and show as `closed`/`reset`; the alert's description is never known.

use std::time::Duration;

use tls_parser::{TlsAlertDescription, TlsAlertSeverity};

use crate::event::{FailureReason, ServerCert, Side};
use crate::pipeline::tls::{names, ClientHello, OfferedHello, ServerHello, TlsMessage};
use crate::source::segment::Timestamp;

/// Largest encrypted record taken for an alert: 2 (alert) + 1 (type) + 16 (tag) + 5
/// bytes of slack for implementations that pad a little.
pub const MAX_ENCRYPTED_ALERT_LEN: usize = 24;

/// How long a TLS 1.3 handshake whose client Finished was seen waits for the server
/// to object before it counts as established.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(1);

/// Handshake message type of a CertificateRequest (RFC 5246 section 7.4).
const CERTIFICATE_REQUEST: u8 = 13;

/// How a TCP connection was closed by one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// An orderly FIN.
    Fin,
    /// A RST.
    Rst,
}

/// The decision about a handshake.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The handshake completed.
    Established {
        /// When it was decided.
        at: Timestamp,
    },
    /// The handshake failed.
    Failed(Failure),
    /// The capture ended (or the flow was evicted) before anything was decided.
    Incomplete {
        /// Why it could not be decided ("capture ended", "evicted", "capture gap").
        detail: String,
    },
}

/// Why and how a handshake failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The reason class.
    pub reason: FailureReason,
    /// Alert description, for alert failures.
    pub alert: Option<u8>,
    /// Who sent the alert (also set for inferred encrypted alerts).
    pub alert_sender: Option<Side>,
    /// Who closed or reset the connection.
    pub closed_by: Option<Side>,
    /// Free-text detail (protocol errors, timeouts).
    pub detail: Option<String>,
    /// When it was decided.
    pub at: Timestamp,
}

impl Failure {
    /// A failure for `reason` at `at`, with nothing else known yet.
    pub fn new(reason: FailureReason, at: Timestamp) -> Self {
        Failure {
            reason,
            alert: None,
            alert_sender: None,
            closed_by: None,
            detail: None,
            at,
        }
    }
}

/// Per-side progress of the handshake.
#[derive(Clone, Debug, Default)]
struct SideProgress {
    /// Sent ChangeCipherSpec.
    ccs: bool,
    /// Sent its Finished (TLS <= 1.2: encrypted handshake after CCS).
    finished: bool,
    /// Encrypted (type 23) records sent after the ServerHello.
    encrypted_records: u32,
    /// Length of the last encrypted record it sent (records are at most 18,432
    /// bytes: u16 keeps the tracker small).
    last_encrypted_len: Option<u16>,
    /// Sent any bytes at all (after the ClientHello, for the client).
    spoke: bool,
}

/// Everything seen of one handshake so far, and the logic that decides it.
///
/// Sized for the common tracked flow, a ClientHello waiting for its answer: the
/// ClientHello is kept compactly, the server's parts are boxed until they come.
#[derive(Clone, Debug)]
pub struct HandshakeTracker {
    started: Timestamp,
    last_activity: Timestamp,
    client_hello: OfferedHello,
    server_hello: Option<Box<ServerHello>>,
    hello_retry: bool,
    key_exchange_group: Option<u16>,
    server_cert: Option<Box<ServerCert>>,
    /// The server sent Certificate / ServerKeyExchange / other handshake messages
    /// after its ServerHello: a full (not abbreviated) TLS 1.2 handshake.
    full_handshake: bool,
    client: SideProgress,
    server: SideProgress,
    /// A warning alert that did not end the handshake by itself.
    warning_alert: Option<(u8, Side)>,
    /// TLS 1.3: the client's Finished was seen at this time; waiting for confirmation.
    client_finished_at: Option<Timestamp>,
    /// TLS 1.3: length of the server's last encrypted record after the client's Finished.
    server_reply_after_client_finished: Option<u16>,
    /// TLS 1.2 and older: the server sent a CertificateRequest (plaintext there).
    certificate_requested: bool,
}

impl HandshakeTracker {
    /// Starts tracking at a ClientHello seen at `ts`.
    pub fn new(client_hello: &ClientHello, ts: Timestamp) -> Self {
        HandshakeTracker {
            started: ts,
            last_activity: ts,
            client_hello: OfferedHello::of(client_hello),
            server_hello: None,
            hello_retry: false,
            key_exchange_group: None,
            server_cert: None,
            full_handshake: false,
            client: SideProgress::default(),
            server: SideProgress::default(),
            warning_alert: None,
            client_finished_at: None,
            server_reply_after_client_finished: None,
            certificate_requested: false,
        }
    }

    /// What the first ClientHello of the handshake offered.
    pub fn client_hello(&self) -> &OfferedHello {
        &self.client_hello
    }

    /// The final ServerHello (not a HelloRetryRequest), if seen.
    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.server_hello
            .as_deref()
            .filter(|sh| !sh.is_hello_retry_request)
    }

    /// The server's latest ServerHello, HelloRetryRequest included.
    pub fn latest_server_hello(&self) -> Option<&ServerHello> {
        self.server_hello.as_deref()
    }

    /// When the ClientHello was seen.
    pub fn started(&self) -> Timestamp {
        self.started
    }

    /// The server answered with a HelloRetryRequest.
    pub fn hello_retry(&self) -> bool {
        self.hello_retry
    }

    /// The server's leaf certificate, if it was sent in the clear.
    pub fn server_cert(&self) -> Option<&ServerCert> {
        self.server_cert.as_deref()
    }

    /// The negotiated version, once the server chose one.
    pub fn negotiated_version(&self) -> Option<u16> {
        self.server_hello().map(|sh| sh.selected_version)
    }

    /// The negotiated key exchange group: the ServerHello key_share (TLS 1.3) or the
    /// ServerKeyExchange curve (TLS 1.2 ECDHE).
    pub fn negotiated_group(&self) -> Option<u16> {
        self.server_hello()
            .and_then(|sh| sh.key_share_group)
            .or(self.key_exchange_group)
    }

    /// The session was resumed: TLS 1.3 PSK accepted, or an abbreviated TLS 1.2
    /// handshake (the server's ChangeCipherSpec came right after its ServerHello).
    pub fn resumed(&self) -> bool {
        match self.server_hello() {
            Some(sh) if self.is_tls13() => sh.psk_selected,
            Some(_) => self.server.ccs && !self.full_handshake,
            None => false,
        }
    }

    /// The server sent any bytes after the ClientHello.
    pub fn server_replied(&self) -> bool {
        self.server.spoke
    }

    /// The server asked for a client certificate (visible in TLS 1.2 and older only).
    pub fn certificate_requested(&self) -> bool {
        self.certificate_requested
    }

    /// TLS 1.3, or one of its drafts or experiment versions: their records behave alike.
    fn is_tls13(&self) -> bool {
        self.negotiated_version()
            .is_some_and(names::is_tls13_version)
    }

    fn progress(&mut self, side: Side) -> &mut SideProgress {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// A message sent by `side`, in stream order.
    pub fn on_message(
        &mut self,
        side: Side,
        message: TlsMessage,
        ts: Timestamp,
    ) -> Option<Verdict> {
        self.last_activity = ts;
        self.progress(side).spoke = true;
        match message {
            TlsMessage::ClientHello(_) => None, // the second ClientHello after an HRR
            TlsMessage::ServerHello(sh) => {
                if side == Side::Server {
                    if sh.is_hello_retry_request {
                        self.hello_retry = true;
                    }
                    self.server_hello = Some(Box::new(sh));
                }
                None
            }
            TlsMessage::Certificate(cert) => {
                if side == Side::Server {
                    self.full_handshake = true;
                    if self.server_cert.is_none() {
                        self.server_cert = cert.map(Box::new);
                    }
                }
                None
            }
            TlsMessage::ServerKeyExchange { group } => {
                if side == Side::Server {
                    self.full_handshake = true;
                    self.key_exchange_group = self.key_exchange_group.or(group);
                }
                None
            }
            TlsMessage::OtherHandshake { msg_type } => {
                if side == Side::Server {
                    self.full_handshake = true;
                    self.certificate_requested |= msg_type == CERTIFICATE_REQUEST;
                }
                None
            }
            TlsMessage::ChangeCipherSpec => {
                self.progress(side).ccs = true;
                None
            }
            TlsMessage::EncryptedHandshake { .. } => {
                let progress = self.progress(side);
                if progress.ccs {
                    progress.finished = true;
                }
                self.check_tls12_established(ts)
            }
            TlsMessage::ApplicationData { len } => self.on_encrypted_record(side, len, ts),
            TlsMessage::Alert { level, description } => self.on_alert(side, level, description, ts),
            TlsMessage::EncryptedAlert { .. } => {
                let mut failure = Failure::new(FailureReason::EncryptedAlert, ts);
                failure.alert_sender = Some(side);
                Some(Verdict::Failed(failure))
            }
            TlsMessage::NotTls => {
                let mut failure = Failure::new(FailureReason::NotTls, ts);
                failure.detail = Some(format!("{} sent bytes that are not TLS", side.as_str()));
                Some(Verdict::Failed(failure))
            }
            TlsMessage::Malformed { reason } => {
                let mut failure = Failure::new(FailureReason::ProtocolError, ts);
                failure.detail = Some(format!("{}: {reason}", side.as_str()));
                Some(Verdict::Failed(failure))
            }
        }
    }

    fn check_tls12_established(&self, ts: Timestamp) -> Option<Verdict> {
        (self.client.finished && self.server.finished).then_some(Verdict::Established { at: ts })
    }

    fn on_encrypted_record(&mut self, side: Side, len: usize, ts: Timestamp) -> Option<Verdict> {
        let after_server_hello = self.server_hello().is_some();
        let progress = self.progress(side);
        if after_server_hello {
            progress.encrypted_records = progress.encrypted_records.saturating_add(1);
            progress.last_encrypted_len = Some(record_len(len));
        }
        if !self.is_tls13() {
            // TLS <= 1.2: application data from a side that finished, once the other
            // side finished too, confirms the handshake even if a Finished was cut.
            let other_finished = match side {
                Side::Client => self.server.finished,
                Side::Server => self.client.finished,
            };
            if self.progress(side).finished && other_finished {
                return Some(Verdict::Established { at: ts });
            }
            return None;
        }
        match side {
            Side::Client if self.client_finished_at.is_none() && len > MAX_ENCRYPTED_ALERT_LEN => {
                self.client.finished = true;
                self.client_finished_at = Some(ts);
                None
            }
            Side::Server if self.client_finished_at.is_some() => {
                self.server_reply_after_client_finished = Some(record_len(len));
                (len > MAX_ENCRYPTED_ALERT_LEN).then_some(Verdict::Established { at: ts })
            }
            _ => None,
        }
    }

    fn on_alert(
        &mut self,
        side: Side,
        level: u8,
        description: u8,
        ts: Timestamp,
    ) -> Option<Verdict> {
        let closure_or_benign = matches!(
            TlsAlertDescription(description),
            TlsAlertDescription::CloseNotify
                | TlsAlertDescription::UserCancelled
                | TlsAlertDescription::NoRenegotiation
                | TlsAlertDescription::UnrecognizedName
        );
        if level == TlsAlertSeverity::Fatal.0
            || !closure_or_benign
            || description == TlsAlertDescription::CloseNotify.0
        {
            let mut failure = Failure::new(FailureReason::Alert, ts);
            failure.alert = Some(description);
            failure.alert_sender = Some(side);
            return Some(Verdict::Failed(failure));
        }
        // A warning (say unrecognized_name in TLS 1.2) lets the handshake go on; it
        // becomes the reason only if the connection then closes.
        self.warning_alert.get_or_insert((description, side));
        None
    }

    /// `side` closed the connection (FIN at its place in the stream, or RST).
    pub fn on_close(&mut self, side: Side, close: Close, ts: Timestamp) -> Verdict {
        if self.is_tls13() {
            if let Some(verdict) = self.tls13_close(side, ts) {
                return verdict;
            }
        }
        if let Some((description, sender)) = self.warning_alert {
            let mut failure = Failure::new(FailureReason::Alert, ts);
            failure.alert = Some(description);
            failure.alert_sender = Some(sender);
            failure.closed_by = Some(side);
            return Verdict::Failed(failure);
        }
        let reason = match close {
            Close::Fin => FailureReason::Closed,
            Close::Rst => FailureReason::Reset,
        };
        let mut failure = Failure::new(reason, ts);
        failure.closed_by = Some(side);
        if !self.server.spoke {
            failure.detail = Some("before any reply from the server".to_string());
        }
        Verdict::Failed(failure)
    }

    /// TLS 1.3 closes that the encrypted records explain (see the module docs).
    fn tls13_close(&self, side: Side, ts: Timestamp) -> Option<Verdict> {
        let is_short =
            |len: Option<u16>| len.is_some_and(|len| usize::from(len) <= MAX_ENCRYPTED_ALERT_LEN);
        let encrypted_alert = |sender: Side| {
            let mut failure = Failure::new(FailureReason::EncryptedAlert, ts);
            failure.alert_sender = Some(sender);
            failure.closed_by = Some(side);
            Verdict::Failed(failure)
        };
        // A short record where the client's Finished was due: it refused the server
        // (say, its certificate). Either side may close first after that.
        let client_refused = !self.client.finished
            && self.client.encrypted_records >= 1
            && is_short(self.client.last_encrypted_len);
        if client_refused {
            return Some(encrypted_alert(Side::Client));
        }
        if is_short(self.server_reply_after_client_finished) {
            return Some(encrypted_alert(Side::Server));
        }
        // The client finished and left on its own: it was satisfied.
        match side {
            Side::Client => self
                .client_finished_at
                .map(|at| Verdict::Established { at }),
            Side::Server => None,
        }
    }

    /// Time passed with no new bytes; decides if the handshake waited too long.
    pub fn on_idle(&mut self, now: Timestamp, timeout: Duration) -> Option<Verdict> {
        if let Some(finished_at) = self.confirmable_finish() {
            if now.saturating_sub(finished_at) >= CONFIRM_WINDOW
                && now.saturating_sub(self.last_activity) >= CONFIRM_WINDOW
            {
                return Some(Verdict::Established { at: finished_at });
            }
        }
        if now.saturating_sub(self.last_activity) < timeout {
            return None;
        }
        let mut failure = Failure::new(FailureReason::Timeout, now);
        failure.detail = Some(if self.server.spoke {
            format!("handshake stalled for {} s", timeout.as_secs_f64())
        } else {
            format!(
                "no reply from the server within {} s",
                timeout.as_secs_f64()
            )
        });
        Some(Verdict::Failed(failure))
    }

    /// The earliest time at which [`on_idle`](Self::on_idle) could decide something.
    pub fn idle_deadline(&self, timeout: Duration) -> Timestamp {
        let stalled = self.last_activity + timeout;
        match self.confirmable_finish() {
            Some(_) => stalled.min(self.last_activity + CONFIRM_WINDOW),
            None => stalled,
        }
    }

    /// TLS 1.3: when the client finished, unless the server answered with what looks
    /// like an alert.
    fn confirmable_finish(&self) -> Option<Timestamp> {
        let objected = self
            .server_reply_after_client_finished
            .is_some_and(|len| usize::from(len) <= MAX_ENCRYPTED_ALERT_LEN);
        self.client_finished_at.filter(|_| !objected)
    }

    /// The capture ended (or the flow had to go): decide with what was seen.
    pub fn on_end(&self, detail: &str) -> Verdict {
        match self.confirmable_finish() {
            Some(at) => Verdict::Established { at },
            None => Verdict::Incomplete {
                detail: detail.to_string(),
            },
        }
    }
}

/// A record length as the tracker keeps it (lengths past u16 cannot occur: the parser
/// rejects records over 18,432 bytes; they would saturate, still "not an alert").
fn record_len(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests;
