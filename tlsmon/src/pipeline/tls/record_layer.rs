//! The record layer: one direction's byte stream into records, and handshake records
//! into handshake messages, whatever the chunking of the input.

use tls_parser::{parse_tls_record_header, TlsHandshakeType, TlsRecordType};
use tlsmon_common::client_hello::{is_ssl3_or_tls, sslv2_record_len, MIN_SSLV2_HELLO_LEN};

use super::cert::{leaf_from_prefix, server_key_exchange_group, LeafPrefix};
use super::hello::{parse_client_hello, parse_server_hello, parse_sslv2_client_hello};
use super::{names, ParsedMessage, TlsMessage};

/// Largest record payload accepted: RFC 5246 section 6.2.3's TLSCiphertext bound
/// (2^14 + 2048), the largest any TLS version allows on the wire.
pub const MAX_RECORD_PAYLOAD: usize = 16_384 + 2_048;

/// Largest handshake message held whole (64 KiB of body). Real ClientHellos are a few
/// KiB even with post-quantum key shares; a longer ClientHello or ServerHello ends the
/// stream with [`TlsMessage::Malformed`]. Other messages may be as long as the
/// protocol allows (2^24 - 1 bytes): a Certificate is decided on its leaf (which must
/// fit this bound) and the rest of the chain is skipped, and any other long message is
/// reported by its type and skipped; skipped bytes are never held.
pub const MAX_HANDSHAKE_MESSAGE: usize = 64 * 1024;

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;

/// A record whose payload is not looked at, only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opaque {
    ApplicationData,
    EncryptedHandshake,
    EncryptedAlert,
    /// RFC 6520 heartbeats: legal, but say nothing about the handshake; not reported.
    Heartbeat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Deciding from the first bytes: TLS record, SSLv2 ClientHello, or neither.
    Start,
    /// Collecting a 5-byte record header in `pending`.
    Header,
    /// Collecting the payload of a record whose content is parsed.
    Payload { content_type: u8, len: usize },
    /// Reading the payload of a plaintext handshake record as it comes (`remaining`
    /// bytes to go), so that a message is decided as soon as its bytes are there and
    /// the bytes of a decided message still to come are only counted.
    Handshake { remaining: usize },
    /// Counting down the payload of an opaque record.
    Skip {
        kind: Opaque,
        len: usize,
        remaining: usize,
    },
    /// Collecting an SSLv2-compatible ClientHello of `total` bytes (header included).
    SslV2 { total: usize },
    /// After NotTls or Malformed: bytes are counted, nothing is parsed.
    Stopped,
}

/// What the first bytes of a stream are.
enum FirstBytes {
    Tls,
    SslV2ClientHello,
    NotTls,
}

/// Incremental parser of one direction of a TLS connection's byte stream.
///
/// Feed it the direction's bytes in order, in chunks of any size (one byte at a time
/// works). Buffers at most one record payload ([`MAX_RECORD_PAYLOAD`]) and one
/// handshake message ([`MAX_HANDSHAKE_MESSAGE`]); never panics on any input.
#[derive(Debug)]
pub struct TlsStreamParser {
    offset: u64,
    state: State,
    /// Bytes of the unit being collected: first bytes, record header or payload.
    pending: Vec<u8>,
    /// Stream offset of the current record's header (or SSLv2 record).
    record_start: u64,
    /// Bytes of a decided handshake message still to come, skipped unseen.
    handshake_skip: usize,
    /// Handshake bytes not yet forming a whole message (messages span records).
    handshake: Vec<u8>,
    /// Where the message at the front of `handshake` started (see [`ParsedMessage`]).
    handshake_start: u64,
    /// This direction sent ChangeCipherSpec: its later handshake records are encrypted
    /// (TLS 1.2 and older).
    ccs_seen: bool,
    /// This direction sent a ClientHello offering TLS 1.3.
    offered_tls13: bool,
    /// This direction sent a ServerHello or HelloRetryRequest choosing TLS 1.3, so its
    /// handshake-type records are all plaintext (1.3 encrypts inside type 23).
    chose_tls13: bool,
    /// The cipher suite this direction chose in a ServerHello (for ServerKeyExchange).
    cipher: Option<u16>,
    /// The stream opened with a ClientHello: its first record is a handshake record
    /// whose first byte is the ClientHello type, or an SSLv2-compatible ClientHello.
    opened_with_client_hello: bool,
}

impl Default for TlsStreamParser {
    fn default() -> Self {
        Self::new()
    }
}

impl TlsStreamParser {
    /// A parser at stream offset 0.
    pub fn new() -> Self {
        TlsStreamParser {
            offset: 0,
            state: State::Start,
            pending: Vec::new(),
            record_start: 0,
            handshake_skip: 0,
            handshake: Vec::new(),
            handshake_start: 0,
            ccs_seen: false,
            offered_tls13: false,
            chose_tls13: false,
            cipher: None,
            opened_with_client_hello: false,
        }
    }

    /// Feed the next in-order bytes of this direction; decoded messages are pushed to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<ParsedMessage>) {
        while !bytes.is_empty() {
            let used = self.step(bytes, out);
            if used == 0 {
                // Every state consumes at least one byte; should one ever not, stop
                // rather than spin.
                let reason = "internal: parser made no progress".to_string();
                self.stop(self.record_start, TlsMessage::Malformed { reason }, out);
                continue;
            }
            bytes = &bytes[used..];
        }
    }

    /// Total bytes fed or skipped so far (stream offset of the next byte).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Stream offset of the next byte this parser needs to see: bytes before it (an
    /// opaque record's payload, the rest of a certificate chain after its leaf) are
    /// only counted, so they may be [`skip`](Self::skip)ped unseen. `u64::MAX` once
    /// stopped.
    pub fn next_needed(&self) -> u64 {
        match self.state {
            State::Stopped => u64::MAX,
            State::Skip { remaining, .. } => self.offset + remaining as u64,
            State::Handshake { remaining } if self.handshake_skip > 0 => {
                self.offset + remaining.min(self.handshake_skip) as u64
            }
            _ => self.offset,
        }
    }

    /// Steps over `n` bytes that were not seen (not captured, or not copied). They
    /// must lie before [`next_needed`](Self::next_needed): returns false, skipping
    /// nothing, if they do not.
    pub fn skip(&mut self, n: u64, out: &mut Vec<ParsedMessage>) -> bool {
        if self.next_needed().saturating_sub(self.offset) < n {
            return false;
        }
        let mut left = n;
        while left > 0 {
            let step = usize::try_from(left).unwrap_or(usize::MAX);
            let used = self.count_unneeded(step, out);
            if used == 0 {
                break;
            }
            left -= used as u64;
        }
        true
    }

    /// True once NotTls or Malformed was emitted: later bytes are only counted.
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// The stream opened with a ClientHello (TLS or SSLv2-compatible): known from its
    /// first payload byte on, before the message is complete (or found malformed).
    pub fn opened_with_client_hello(&self) -> bool {
        self.opened_with_client_hello
    }

    /// Bytes currently held in buffers (partial record and partial handshake message).
    pub fn buffered_bytes(&self) -> usize {
        self.pending.len() + self.handshake.len()
    }

    /// Bytes allocated for the buffers, used or not.
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.pending.capacity() + self.handshake.capacity()
    }

    /// Consumes a prefix of `bytes` (at least one byte) and returns its length.
    fn step(&mut self, bytes: &[u8], out: &mut Vec<ParsedMessage>) -> usize {
        // The first payload byte of the stream's first record.
        let first_payload_byte = self.record_start == 0
            && match self.state {
                State::Payload { .. } => self.pending.is_empty(),
                State::Handshake { .. } => self.offset == RECORD_HEADER_LEN as u64,
                _ => false,
            };
        if first_payload_byte {
            self.opened_with_client_hello = matches!(self.state, State::Handshake { .. })
                && bytes.first() == Some(&TlsHandshakeType::ClientHello.0);
        }
        match self.state {
            State::Handshake { .. } if self.handshake_skip > 0 => {
                self.count_unneeded(bytes.len(), out)
            }
            State::Stopped | State::Skip { .. } => self.count_unneeded(bytes.len(), out),
            State::Handshake { remaining } => {
                let used = remaining.min(bytes.len());
                let chunk_offset = self.offset;
                self.offset += used as u64;
                self.reassemble(&bytes[..used], chunk_offset, out);
                if self.state != State::Stopped {
                    self.handshake_bytes_done(remaining - used);
                }
                used
            }
            State::Start => {
                // One byte at a time: classification needs between 1 and 5 bytes.
                let used = self.collect(bytes, self.pending.len() + 1);
                match classify_first_bytes(&self.pending) {
                    None => {}
                    Some(FirstBytes::Tls) => self.state = State::Header,
                    Some(FirstBytes::NotTls) => self.stop(0, TlsMessage::NotTls, out),
                    Some(FirstBytes::SslV2ClientHello) => self.start_sslv2(out),
                }
                used
            }
            // A whole header or payload in the input is read where it lies: no copy,
            // and no buffer kept between records (a flow that waits holds nothing).
            State::Header if self.pending.is_empty() && bytes.len() >= RECORD_HEADER_LEN => {
                self.offset += RECORD_HEADER_LEN as u64;
                self.on_header(&bytes[..RECORD_HEADER_LEN], out);
                RECORD_HEADER_LEN
            }
            State::Payload { content_type, len }
                if self.pending.is_empty() && bytes.len() >= len =>
            {
                self.offset += len as u64;
                self.on_payload(content_type, &bytes[..len], out);
                len
            }
            State::Header => {
                let used = self.collect(bytes, RECORD_HEADER_LEN);
                self.after_collect(out);
                used
            }
            State::Payload { len, .. } => {
                let used = self.collect(bytes, len);
                self.after_collect(out);
                used
            }
            State::SslV2 { total } => {
                let used = self.collect(bytes, total);
                self.after_collect(out);
                used
            }
        }
    }

    /// Sets up collecting an SSLv2 ClientHello whose first 5 bytes are in `pending`.
    fn start_sslv2(&mut self, out: &mut Vec<ParsedMessage>) {
        let [h0, h1, ..] = self.pending[..] else {
            return;
        };
        let len = sslv2_record_len(h0, h1);
        let total = 2 + usize::from(len);
        if len < MIN_SSLV2_HELLO_LEN {
            let reason = format!("SSLv2 ClientHello of {total} bytes is too short");
            return self.stop(0, TlsMessage::Malformed { reason }, out);
        }
        self.opened_with_client_hello = true;
        self.state = State::SslV2 { total };
    }

    /// In a state that only counts bytes, steps over up to `n` of them (seen or not)
    /// and returns how many; 0 in a state that reads its bytes.
    fn count_unneeded(&mut self, n: usize, out: &mut Vec<ParsedMessage>) -> usize {
        match self.state {
            State::Stopped => {
                self.offset += n as u64;
                n
            }
            State::Skip {
                kind,
                len,
                remaining,
            } => {
                let used = remaining.min(n);
                self.offset += used as u64;
                if used == remaining {
                    self.finish_opaque(kind, len, out);
                } else {
                    self.state = State::Skip {
                        kind,
                        len,
                        remaining: remaining - used,
                    };
                }
                used
            }
            State::Handshake { remaining } if self.handshake_skip > 0 => {
                let used = remaining.min(self.handshake_skip).min(n);
                self.offset += used as u64;
                self.handshake_skip -= used;
                // Whatever comes next begins after the skipped bytes, however they
                // were chunked.
                self.handshake_start = self.offset;
                self.handshake_bytes_done(remaining - used);
                used
            }
            _ => 0,
        }
    }

    /// A handshake record's payload went on: `remaining` bytes of it are left.
    fn handshake_bytes_done(&mut self, remaining: usize) {
        if remaining == 0 {
            self.next_record();
        } else {
            self.state = State::Handshake { remaining };
        }
    }

    /// Moves up to `want - pending.len()` bytes into `pending`; returns how many.
    fn collect(&mut self, bytes: &[u8], want: usize) -> usize {
        let used = want.saturating_sub(self.pending.len()).min(bytes.len());
        self.pending.extend_from_slice(&bytes[..used]);
        self.offset += used as u64;
        used
    }

    /// Acts on `pending` once the unit the state waits for is complete.
    fn after_collect(&mut self, out: &mut Vec<ParsedMessage>) {
        match self.state {
            State::Header if self.pending.len() == RECORD_HEADER_LEN => {
                let header = std::mem::take(&mut self.pending);
                self.on_header(&header, out);
            }
            State::Payload { content_type, len } if self.pending.len() == len => {
                // The buffer goes with the record: most records arrive whole and
                // never need one.
                let payload = std::mem::take(&mut self.pending);
                self.on_payload(content_type, &payload, out);
            }
            State::SslV2 { total } if self.pending.len() == total => {
                let message = match parse_sslv2_client_hello(&self.pending) {
                    Ok(hello) => TlsMessage::ClientHello(hello),
                    Err(reason) => TlsMessage::Malformed { reason },
                };
                self.pending = Vec::new();
                self.emit(self.record_start, message, out);
                self.next_record();
            }
            _ => {}
        }
    }

    fn next_record(&mut self) {
        if self.state != State::Stopped {
            self.state = State::Header;
            self.record_start = self.offset;
        }
    }

    fn on_header(&mut self, header: &[u8], out: &mut Vec<ParsedMessage>) {
        let header = match parse_tls_record_header(header) {
            Ok((_, header)) => header,
            Err(e) => {
                let reason = format!("record header does not parse: {e:?}");
                return self.stop(self.record_start, TlsMessage::Malformed { reason }, out);
            }
        };
        let content_type = header.record_type.0;
        let len = usize::from(header.len);
        if header.version.0 >> 8 != 3 {
            let reason = format!("record version 0x{:04x} is not TLS", header.version.0);
            return self.stop(self.record_start, TlsMessage::Malformed { reason }, out);
        }
        if len > MAX_RECORD_PAYLOAD {
            let reason =
                format!("record length {len} exceeds the TLS maximum {MAX_RECORD_PAYLOAD}");
            return self.stop(self.record_start, TlsMessage::Malformed { reason }, out);
        }
        let opaque = match TlsRecordType(content_type) {
            TlsRecordType::ApplicationData => Some(Opaque::ApplicationData),
            TlsRecordType::Heartbeat => Some(Opaque::Heartbeat),
            TlsRecordType::Alert if len != 2 => Some(Opaque::EncryptedAlert),
            TlsRecordType::Handshake if self.ccs_seen && !self.plaintext_handshake_possible() => {
                Some(Opaque::EncryptedHandshake)
            }
            TlsRecordType::Alert | TlsRecordType::ChangeCipherSpec | TlsRecordType::Handshake => {
                None
            }
            TlsRecordType(other) => {
                let reason = format!("unknown record content type {other}");
                return self.stop(self.record_start, TlsMessage::Malformed { reason }, out);
            }
        };
        match opaque {
            Some(kind) if len == 0 => self.finish_opaque(kind, 0, out),
            Some(kind) => {
                self.state = State::Skip {
                    kind,
                    len,
                    remaining: len,
                }
            }
            None if len == 0 => {
                self.on_payload(content_type, &[], out);
            }
            // Before this direction's ChangeCipherSpec a handshake record is plaintext
            // and read as it comes; after it (a TLS 1.3 client's second hello, or a
            // Finished) it is looked at whole.
            None if content_type == TlsRecordType::Handshake.0 && !self.ccs_seen => {
                self.state = State::Handshake { remaining: len };
            }
            None => self.state = State::Payload { content_type, len },
        }
    }

    /// After this direction's ChangeCipherSpec, may a handshake record still be
    /// plaintext? Only in TLS 1.3, whose middlebox-compatibility CCS can come before
    /// a second hello (after a HelloRetryRequest), or while such a hello continues.
    fn plaintext_handshake_possible(&self) -> bool {
        self.chose_tls13 || self.offered_tls13
    }

    fn finish_opaque(&mut self, kind: Opaque, len: usize, out: &mut Vec<ParsedMessage>) {
        let message = match kind {
            Opaque::ApplicationData => Some(TlsMessage::ApplicationData { len }),
            Opaque::EncryptedHandshake => Some(TlsMessage::EncryptedHandshake { len }),
            Opaque::EncryptedAlert => Some(TlsMessage::EncryptedAlert { len }),
            Opaque::Heartbeat => None,
        };
        if let Some(message) = message {
            self.emit(self.record_start, message, out);
        }
        self.next_record();
    }

    fn on_payload(&mut self, content_type: u8, payload: &[u8], out: &mut Vec<ParsedMessage>) {
        match TlsRecordType(content_type) {
            TlsRecordType::ChangeCipherSpec => {
                if !self.handshake.is_empty() || self.handshake_skip > 0 {
                    let reason = "handshake message cut by a ChangeCipherSpec".to_string();
                    return self.stop(self.handshake_start, TlsMessage::Malformed { reason }, out);
                }
                if payload != [1] {
                    let reason = format!("ChangeCipherSpec payload {payload:02x?} is not [01]");
                    return self.stop(self.record_start, TlsMessage::Malformed { reason }, out);
                }
                self.ccs_seen = true;
                self.emit(self.record_start, TlsMessage::ChangeCipherSpec, out);
            }
            TlsRecordType::Alert => match payload {
                [level, description] => {
                    let message = TlsMessage::Alert {
                        level: *level,
                        description: *description,
                    };
                    self.emit(self.record_start, message, out);
                }
                _ => {
                    let reason = format!("alert record of {} bytes", payload.len());
                    return self.stop(self.record_start, TlsMessage::Malformed { reason }, out);
                }
            },
            _ => {
                if self.ccs_seen
                    && !self.chose_tls13
                    && self.handshake.is_empty()
                    && self.handshake_skip == 0
                    && !looks_like_plaintext_client_hello(payload)
                {
                    // A TLS 1.3-offering client whose server chose TLS 1.2: this is
                    // its encrypted Finished, not a second ClientHello.
                    let message = TlsMessage::EncryptedHandshake { len: payload.len() };
                    self.emit(self.record_start, message, out);
                } else {
                    self.reassemble(payload, self.record_start + RECORD_HEADER_LEN as u64, out);
                }
            }
        }
        self.next_record();
    }

    /// Takes a handshake record's payload and emits every message it completes. Whole
    /// messages are decoded where they lie; only a message that continues in a later
    /// record is buffered, and the buffer is let go once it empties.
    fn reassemble(&mut self, payload: &[u8], payload_offset: u64, out: &mut Vec<ParsedMessage>) {
        if self.handshake.is_empty() {
            // A message that begins its record starts at the record header.
            self.handshake_start = if payload_offset == self.record_start + RECORD_HEADER_LEN as u64
            {
                self.record_start
            } else {
                payload_offset
            };
            if let Some(used) = self.decode_messages(payload, 0, payload_offset, out) {
                self.handshake.extend_from_slice(&payload[used..]);
            }
            return;
        }
        let mut buffer = std::mem::take(&mut self.handshake);
        let from_earlier = buffer.len();
        buffer.extend_from_slice(payload);
        if let Some(used) = self.decode_messages(&buffer, from_earlier, payload_offset, out) {
            if used < buffer.len() {
                buffer.drain(..used);
                self.handshake = buffer;
            }
        }
    }

    /// Decodes the handshake messages at the front of `buffer`, whose first
    /// `from_earlier` bytes came from earlier records and the rest from the record
    /// whose payload (or what is left of it after a skipped tail) starts at stream
    /// offset `payload_offset`. A message is decoded once it is whole, except a
    /// Certificate (decided once its leaf is there) and a message too long to hold
    /// (decided by its type): their bytes still to come are skipped. Returns the
    /// bytes used, or `None` when parsing stopped (a malformed message).
    fn decode_messages(
        &mut self,
        buffer: &[u8],
        mut from_earlier: usize,
        payload_offset: u64,
        out: &mut Vec<ParsedMessage>,
    ) -> Option<usize> {
        let mut used = 0usize;
        let mut used_of_payload = 0usize;
        // Moves `n` more bytes of `buffer` behind us; the stream offset just past them.
        let mut advance = |n: usize, used: &mut usize| {
            let earlier = n.min(from_earlier);
            from_earlier -= earlier;
            used_of_payload += n - earlier;
            *used += n;
            payload_offset + used_of_payload as u64
        };
        while let [msg_type, l0, l1, l2, ..] = buffer[used..] {
            let body_len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            let total = HANDSHAKE_HEADER_LEN + body_len;
            let available = buffer.len() - used;
            let complete = available >= total;
            let message = &buffer[used..used + total.min(available)];
            // What the message is, and how many of its bytes decided it (a function of
            // its bytes only, so that chunking never changes offsets).
            let (decoded, decided_len) = match TlsHandshakeType(msg_type) {
                TlsHandshakeType::Certificate => {
                    let body = &message[HANDSHAKE_HEADER_LEN..];
                    match leaf_from_prefix(body, complete, MAX_HANDSHAKE_MESSAGE) {
                        LeafPrefix::Decided(leaf, n) => {
                            (TlsMessage::Certificate(leaf), HANDSHAKE_HEADER_LEN + n)
                        }
                        LeafPrefix::NeedMore => break,
                    }
                }
                TlsHandshakeType::ClientHello | TlsHandshakeType::ServerHello
                    if body_len > MAX_HANDSHAKE_MESSAGE =>
                {
                    let reason = format!(
                        "handshake message type {msg_type} of {body_len} bytes exceeds the \
                         {MAX_HANDSHAKE_MESSAGE}-byte bound"
                    );
                    (TlsMessage::Malformed { reason }, HANDSHAKE_HEADER_LEN)
                }
                _ if complete => (decode_handshake(message, self.cipher), total),
                _ if body_len <= MAX_HANDSHAKE_MESSAGE => break,
                // Too long to hold: what it is, without its body.
                TlsHandshakeType::ServerKeyExchange => (
                    TlsMessage::ServerKeyExchange { group: None },
                    HANDSHAKE_HEADER_LEN,
                ),
                TlsHandshakeType(msg_type) => (
                    TlsMessage::OtherHandshake { msg_type },
                    HANDSHAKE_HEADER_LEN,
                ),
            };
            let end = advance(decided_len, &mut used);
            self.observe(&decoded);
            let stop = matches!(decoded, TlsMessage::Malformed { .. });
            out.push(ParsedMessage {
                start: self.handshake_start,
                end,
                message: decoded,
            });
            if stop {
                self.halt();
                return None;
            }
            // The rest of a message decided early is skipped: here, and in later
            // records as it comes.
            let rest = total - decided_len;
            let here = rest.min(buffer.len() - used);
            self.handshake_start = advance(here, &mut used);
            self.handshake_skip = rest - here;
        }
        Some(used)
    }

    /// Remembers what later records depend on: versions offered or chosen, cipher.
    fn observe(&mut self, message: &TlsMessage) {
        match message {
            TlsMessage::ClientHello(hello) => {
                // TLS 1.3 drafts and experiment versions behave alike on the wire.
                self.offered_tls13 |= hello
                    .supported_versions
                    .iter()
                    .any(|&v| names::is_tls13_version(v));
            }
            TlsMessage::ServerHello(hello) => {
                self.cipher = Some(hello.cipher_suite);
                self.chose_tls13 |= names::is_tls13_version(hello.selected_version);
            }
            _ => {}
        }
    }

    /// Emits a record-level message spanning `start..offset`.
    fn emit(&mut self, start: u64, message: TlsMessage, out: &mut Vec<ParsedMessage>) {
        self.observe(&message);
        let stop = matches!(message, TlsMessage::Malformed { .. } | TlsMessage::NotTls);
        out.push(ParsedMessage {
            start,
            end: self.offset,
            message,
        });
        if stop {
            self.halt();
        }
    }

    /// Emits a final message and stops parsing.
    fn stop(&mut self, start: u64, message: TlsMessage, out: &mut Vec<ParsedMessage>) {
        out.push(ParsedMessage {
            start,
            end: self.offset,
            message,
        });
        self.halt();
    }

    fn halt(&mut self) {
        self.state = State::Stopped;
        self.pending = Vec::new();
        self.handshake = Vec::new();
    }
}

/// Classifies a stream by its first bytes; `None` while more bytes are needed.
fn classify_first_bytes(prefix: &[u8]) -> Option<FirstBytes> {
    let first = *prefix.first()?;
    if (TlsRecordType::ChangeCipherSpec.0..=TlsRecordType::Heartbeat.0).contains(&first) {
        // A TLS record: content type, then a version whose major byte is 3.
        let major = *prefix.get(1)?;
        return Some(if major == 3 {
            FirstBytes::Tls
        } else {
            FirstBytes::NotTls
        });
    }
    if first & 0x80 != 0 {
        // SSLv2 two-byte record header, msg_type 1 (CLIENT-HELLO), then a version
        // of SSL 2.0 (0x0002) or SSL 3.0 / TLS (0x03xx).
        let [_, _, msg_type, major, minor] = *prefix.get(..5)? else {
            return None;
        };
        // Wider than the kernel's check (tlsmon-common's is_client_hello_start), which
        // does not track SSL 2.0 (0x0002) hellos.
        let version_ok = is_ssl3_or_tls(major, minor) || (major, minor) == (0, 2);
        return Some(if msg_type == 1 && version_ok {
            FirstBytes::SslV2ClientHello
        } else {
            FirstBytes::NotTls
        });
    }
    Some(FirstBytes::NotTls)
}

/// After a TLS 1.3-offering client's ChangeCipherSpec, a handshake record is either
/// its second ClientHello (after a HelloRetryRequest) or, if the server chose TLS 1.2,
/// its encrypted Finished. A plaintext ClientHello starts with type 1, a length that
/// fills at least this record and legacy_version 0x0303; random ciphertext matches
/// these 5 bytes about once in 2^40.
fn looks_like_plaintext_client_hello(payload: &[u8]) -> bool {
    let [msg_type, l0, l1, l2, major, minor, ..] = *payload else {
        return false;
    };
    let body_len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
    msg_type == TlsHandshakeType::ClientHello.0
        && (major, minor) == (3, 3)
        && body_len + HANDSHAKE_HEADER_LEN >= payload.len()
        && body_len <= MAX_HANDSHAKE_MESSAGE
}

/// Decodes one whole handshake message (4-byte header included).
pub(crate) fn decode_handshake(message: &[u8], cipher: Option<u16>) -> TlsMessage {
    let (Some(&msg_type), Some(body)) = (message.first(), message.get(HANDSHAKE_HEADER_LEN..))
    else {
        let reason = "handshake message shorter than its header".to_string();
        return TlsMessage::Malformed { reason };
    };
    match TlsHandshakeType(msg_type) {
        TlsHandshakeType::ClientHello => match parse_client_hello(body, message.len() as u32) {
            Ok(hello) => TlsMessage::ClientHello(hello),
            Err(reason) => TlsMessage::Malformed { reason },
        },
        TlsHandshakeType::ServerHello => match parse_server_hello(body) {
            Ok(hello) => TlsMessage::ServerHello(hello),
            Err(reason) => TlsMessage::Malformed { reason },
        },
        TlsHandshakeType::Certificate => {
            match leaf_from_prefix(body, true, MAX_HANDSHAKE_MESSAGE) {
                LeafPrefix::Decided(leaf, _) => TlsMessage::Certificate(leaf),
                LeafPrefix::NeedMore => TlsMessage::Certificate(None),
            }
        }
        TlsHandshakeType::ServerKeyExchange => TlsMessage::ServerKeyExchange {
            group: server_key_exchange_group(body, cipher),
        },
        TlsHandshakeType(msg_type) => TlsMessage::OtherHandshake { msg_type },
    }
}
