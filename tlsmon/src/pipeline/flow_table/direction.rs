//! One direction of a tracked connection: reassembly feeding the TLS parser.

use crate::pipeline::preamble::{Fed, Preamble, PreambleKind, PreambleReader, Role};
use crate::pipeline::reassembly::{ReadyChunk, ReassemblyLimits, StreamReassembler};
use crate::pipeline::tls::{ParsedMessage, TlsMessage, TlsStreamParser};
use crate::source::segment::{PacketDirection, Segment, Timestamp};

/// A decoded message with the time its last byte arrived.
pub(crate) struct TimedMessage {
    pub ts: Timestamp,
    pub parsed: ParsedMessage,
}

/// Buffers a push needs only while it runs, shared by every stream of a table (one
/// set per direction was over a kilobyte per tracked flow).
#[derive(Default)]
pub(crate) struct Scratch {
    ready: Vec<ReadyChunk>,
    parsed: Vec<ParsedMessage>,
}

impl Scratch {
    /// Lets go of buffers a burst made large.
    pub fn shrink(&mut self) {
        if self.ready.capacity() > 64 {
            self.ready = Vec::new();
        }
        if self.parsed.capacity() > 64 {
            self.parsed = Vec::new();
        }
    }
}

/// Reassembly and parsing state of one direction that carried bytes.
pub(crate) struct DirectionStream {
    reassembler: StreamReassembler,
    parser: TlsStreamParser,
    /// Sequence number of this direction's FIN, until the stream reaches it.
    pending_fin: Option<u32>,
    /// Captured segments that carried bytes of the first message, counted until the
    /// parser completes it (a ClientHello, for the client's stream).
    first_message_segments: u32,
    /// The parser has completed its first message (or stopped).
    first_message_done: bool,
    /// The parser has stopped (NotTls or Malformed): later bytes are not fed.
    parser_stopped: bool,
    /// Stream offset of the parser's offset 0 (after any preamble), once it was fed.
    tls_base: Option<u64>,
    /// The last resume point handed out ([`take_resume_point`](Self::take_resume_point)).
    resume_sent: Option<u32>,
    /// Hook direction of the first segment seen this way.
    pub packet_direction: PacketDirection,
    /// Reads a preamble before the TLS bytes, until it is done (then `None`).
    preamble: Option<Box<PreambleReader>>,
    /// The kind of preamble this stream began with, once recognised.
    preamble_kind: Option<PreambleKind>,
    /// This stream is read as a client's (it may carry a client preamble).
    preamble_client: bool,
    /// What the preamble came to, until the flow table takes it.
    preamble_news: Option<Box<PreambleNews>>,
}

/// What a stream's preamble came to, for the flow table.
#[derive(Debug)]
pub(crate) enum PreambleNews {
    /// A client's preamble ended; TLS follows.
    Parsed(Preamble),
    /// The answer to the client's preamble opened the tunnel.
    Answered,
    /// The preamble (or its answer) broke its rules, was refused or too long.
    Failed {
        /// Which preamble.
        kind: PreambleKind,
        /// Why, for humans.
        reason: String,
        /// A server refused a STARTTLS upgrade.
        refused: bool,
    },
}

impl DirectionStream {
    /// A stream for a direction whose SYN carried sequence number `isn`, if seen,
    /// that may begin with a preamble in `preamble` role.
    pub fn new(
        limits: ReassemblyLimits,
        packet_direction: PacketDirection,
        isn: Option<u32>,
        preamble: Option<Role>,
    ) -> Self {
        let mut reassembler = StreamReassembler::new(limits);
        if let Some(isn) = isn {
            reassembler.push(isn, &[], 0, true, Timestamp::ZERO);
        }
        DirectionStream {
            reassembler,
            parser: TlsStreamParser::new(),
            pending_fin: None,
            first_message_segments: 0,
            first_message_done: false,
            parser_stopped: false,
            tls_base: None,
            resume_sent: None,
            packet_direction,
            preamble: preamble.map(|role| Box::new(PreambleReader::new(role))),
            preamble_kind: match preamble {
                Some(Role::Reply(kind)) => Some(kind),
                Some(Role::StarttlsClient(protocol) | Role::StarttlsServer { protocol, .. }) => {
                    Some(protocol.kind())
                }
                _ => None,
            },
            preamble_news: None,
            preamble_client: matches!(preamble, Some(Role::Client | Role::StarttlsClient(_))),
        }
    }

    /// True when this stream began with a client's preamble.
    pub fn began_with_client_preamble(&self) -> bool {
        self.preamble_client && self.preamble_kind.is_some()
    }

    /// The preamble this stream began with, once recognised.
    pub fn preamble_kind(&self) -> Option<PreambleKind> {
        self.preamble_kind
    }

    /// The client asked for a STARTTLS upgrade: this (server) stream's next
    /// answer decides.
    pub fn arm_starttls(&mut self) {
        if let Some(reader) = self.preamble.as_mut() {
            reader.arm();
        }
    }

    /// What the preamble came to, once (then `None`).
    pub fn take_preamble_news(&mut self) -> Option<PreambleNews> {
        self.preamble_news.take().map(|news| *news)
    }

    /// Adds a segment and appends the messages it completed to `out`.
    pub fn push(&mut self, segment: &Segment, scratch: &mut Scratch, out: &mut Vec<TimedMessage>) {
        let syn = segment.flags.syn();
        if syn || !segment.payload.is_empty() || segment.cut > 0 {
            self.reassembler
                .push(segment.seq, &segment.payload, segment.cut, syn, segment.ts);
        }
        if segment.flags.fin() {
            self.pending_fin = Some(segment.end_seq());
            // Bytes before the FIN that were skipped on purpose (the kernel names
            // no hole it skipped) are a hole too, which the parser may not need.
            self.reassembler.extend_to(segment.seq);
        }
        // Skipping may let held bytes through: a few rounds at most (each one moves
        // the delivery point on), bounded anyway.
        for _ in 0..16 {
            if !self.deliver(segment.ts, scratch, out) {
                break;
            }
        }
    }

    /// Feeds every newly contiguous chunk to the parser, then tells reassembly where
    /// the parser next needs bytes; true if that made more bytes ready.
    fn deliver(
        &mut self,
        ts: Timestamp,
        scratch: &mut Scratch,
        out: &mut Vec<TimedMessage>,
    ) -> bool {
        let mut ready = std::mem::take(&mut scratch.ready);
        ready.clear();
        self.reassembler.drain_ready(&mut ready);
        for chunk in ready.drain(..) {
            self.catch_up(chunk.stream_offset, chunk.ts, scratch, out);
            if self.parser_stopped {
                continue;
            }
            if self
                .preamble
                .as_ref()
                .is_some_and(|reader| reader.passes_through(&chunk.bytes))
            {
                self.preamble = None;
            }
            let tls_bytes = match self.preamble.as_mut() {
                None => None,
                Some(reader) => match reader.feed(&chunk.bytes) {
                    Fed::Held => {
                        self.preamble_kind = reader.kind();
                        continue;
                    }
                    Fed::Through(bytes) => {
                        self.preamble = None;
                        Some(bytes)
                    }
                    Fed::Finished { preamble, rest } => {
                        self.preamble_kind = reader.kind();
                        self.preamble = None;
                        self.preamble_news = Some(Box::new(match preamble {
                            Some(said) => PreambleNews::Parsed(said),
                            None => PreambleNews::Answered,
                        }));
                        // The ClientHello's segments are counted from here.
                        self.first_message_segments = 0;
                        if rest.is_empty() {
                            continue;
                        }
                        Some(rest)
                    }
                    Fed::Failed {
                        kind,
                        reason,
                        refused,
                    } => {
                        self.preamble_kind = Some(kind);
                        self.preamble = None;
                        self.parser_stopped = true;
                        self.preamble_news = Some(Box::new(PreambleNews::Failed {
                            kind,
                            reason,
                            refused,
                        }));
                        continue;
                    }
                },
            };
            let bytes = tls_bytes.as_deref().unwrap_or(&chunk.bytes);
            if self.tls_base.is_none() {
                // TLS starts where the preamble's bytes end (those it held included).
                let chunk_end = chunk.stream_offset + chunk.bytes.len() as u64;
                self.tls_base = Some(chunk_end.saturating_sub(bytes.len() as u64));
            }
            if !self.first_message_done {
                self.first_message_segments = self.first_message_segments.saturating_add(1);
            }
            scratch.parsed.clear();
            self.parser.feed(bytes, &mut scratch.parsed);
            self.take_parsed(chunk.ts, scratch, out);
        }
        scratch.ready = ready;
        // Holes and dropped bytes the parser did not need.
        self.catch_up(self.reassembler.next_stream_offset(), ts, scratch, out);
        let Some(base) = self.tls_base.filter(|_| self.preamble.is_none()) else {
            return false;
        };
        self.reassembler
            .skip_until(base.saturating_add(self.parser.next_needed()));
        self.reassembler.has_ready()
    }

    /// Steps the parser over stream bytes before `stream_offset` that reassembly
    /// skipped (the parser said it did not need them).
    fn catch_up(
        &mut self,
        stream_offset: u64,
        ts: Timestamp,
        scratch: &mut Scratch,
        out: &mut Vec<TimedMessage>,
    ) {
        let Some(base) = self.tls_base.filter(|_| self.preamble.is_none()) else {
            return;
        };
        let at = base.saturating_add(self.parser.offset());
        if stream_offset <= at {
            return;
        }
        scratch.parsed.clear();
        let skipped = self.parser.skip(stream_offset - at, &mut scratch.parsed);
        // Reassembly skips only what the parser said it does not need.
        debug_assert!(skipped, "skipped bytes the parser needed");
        self.take_parsed(ts, scratch, out);
    }

    /// Moves what the parser decoded to `out`.
    fn take_parsed(&mut self, ts: Timestamp, scratch: &mut Scratch, out: &mut Vec<TimedMessage>) {
        self.first_message_done |= !scratch.parsed.is_empty();
        for message in scratch.parsed.drain(..) {
            self.parser_stopped |= matches!(
                message.message,
                TlsMessage::NotTls | TlsMessage::Malformed { .. }
            );
            out.push(TimedMessage {
                ts,
                parsed: message,
            });
        }
    }

    /// Where this direction's next needed byte is, when it lies ahead of every byte
    /// seen so far and differs from the point handed out last: the kernel may skip
    /// the bytes before it. One per need (a new record to skip, a chain's tail),
    /// never per packet.
    pub fn take_resume_point(&mut self) -> Option<u32> {
        let wanted = self.reassembler.wanted_seq_ahead()?;
        if self.resume_sent == Some(wanted) {
            return None;
        }
        self.resume_sent = Some(wanted);
        Some(wanted)
    }

    /// True once this direction's FIN has been reached in stream order.
    pub fn fin_reached(&self) -> bool {
        match (self.pending_fin, self.reassembler.next_seq()) {
            (Some(fin), Some(next)) => fin.wrapping_sub(next) as i32 <= 0,
            // FIN on a direction that never carried data.
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// A FIN was seen but bytes before it are missing.
    pub fn fin_blocked(&self) -> bool {
        self.pending_fin.is_some() && !self.fin_reached()
    }

    /// Bytes are missing (lost or cut) before data that was captured.
    pub fn has_gap(&self) -> bool {
        self.reassembler.has_gap()
    }

    /// Captured segments that carried the first message of this direction (its
    /// ClientHello, for the client), once the parser completed it: a segment-count
    /// of the bytes from the stream's start up to the message's end.
    pub fn first_message_segments(&self) -> u32 {
        self.first_message_segments
    }

    /// The stream's first bytes begin a ClientHello (TLS or SSLv2-compatible).
    pub fn opened_with_client_hello(&self) -> bool {
        self.parser.opened_with_client_hello()
    }

    /// The stream began a ClientHello that is not complete yet.
    pub fn client_hello_unfinished(&self) -> bool {
        !self.first_message_done && !self.parser_stopped && self.opened_with_client_hello()
    }

    /// Out-of-order bytes held.
    pub fn buffered_bytes(&self) -> usize {
        self.reassembler.buffered_bytes()
    }

    /// The reassembler's counters.
    pub fn reassembly_stats(&self) -> &crate::pipeline::reassembly::ReassemblyStats {
        self.reassembler.stats()
    }
}
