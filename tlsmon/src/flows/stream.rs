//! One direction of a tracked connection: reassembly feeding the TLS parser.

use crate::handshake::{ParsedMessage, TlsStreamParser};
use crate::reassembly::{ReadyChunk, ReassemblyLimits, StreamReassembler};
use crate::segment::{PacketDirection, Segment, Timestamp};

/// How many segment start offsets are remembered per direction: enough to count
/// the segments of any sane ClientHello, bounded for hostile ones.
const MAX_REMEMBERED_CHUNK_STARTS: usize = 64;

/// A decoded message with the time its last byte arrived.
pub(crate) struct TimedMessage {
    pub ts: Timestamp,
    pub parsed: ParsedMessage,
}

/// Reassembly and parsing state of one direction.
pub(crate) struct DirectionStream {
    reassembler: StreamReassembler,
    parser: TlsStreamParser,
    /// Stream offsets at which delivered chunks (one per captured segment) began.
    chunk_starts: Vec<u64>,
    /// Sequence number of this direction's FIN, until the stream reaches it.
    pending_fin: Option<u32>,
    /// Hook direction of the first segment seen this way.
    pub packet_direction: PacketDirection,
    ready: Vec<ReadyChunk>,
    /// Scratch for the parser's output, kept to spare an allocation per segment.
    parsed: Vec<ParsedMessage>,
    /// The parser has stopped (NotTls or Malformed): later bytes are not fed.
    parser_stopped: bool,
}

impl DirectionStream {
    pub fn new(limits: ReassemblyLimits, packet_direction: PacketDirection) -> Self {
        DirectionStream {
            reassembler: StreamReassembler::new(limits),
            parser: TlsStreamParser::new(),
            chunk_starts: Vec::new(),
            pending_fin: None,
            packet_direction,
            ready: Vec::new(),
            parsed: Vec::new(),
            parser_stopped: false,
        }
    }

    /// Adds a segment and appends the messages it completed to `out`.
    pub fn push(&mut self, segment: &Segment, out: &mut Vec<TimedMessage>) {
        let syn = segment.flags.syn();
        if syn || !segment.payload.is_empty() || segment.cut > 0 {
            self.reassembler
                .push(segment.seq, &segment.payload, segment.cut, syn, segment.ts);
        }
        if segment.flags.fin() {
            self.pending_fin = Some(segment.end_seq());
        }
        self.deliver(out);
    }

    /// Feeds every newly contiguous chunk to the parser.
    fn deliver(&mut self, out: &mut Vec<TimedMessage>) {
        self.ready.clear();
        if !self.reassembler.drain_ready(&mut self.ready) {
            return;
        }
        for chunk in self.ready.drain(..) {
            if self.chunk_starts.len() < MAX_REMEMBERED_CHUNK_STARTS {
                self.chunk_starts.push(chunk.stream_offset);
            }
            if self.parser_stopped {
                continue;
            }
            self.parser.feed(&chunk.bytes, &mut self.parsed);
            for message in self.parsed.drain(..) {
                self.parser_stopped |= matches!(
                    message.message,
                    crate::handshake::TlsMessage::NotTls
                        | crate::handshake::TlsMessage::Malformed { .. }
                );
                out.push(TimedMessage {
                    ts: chunk.ts,
                    parsed: message,
                });
            }
        }
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

    /// Number of captured segments that carried stream bytes `[start, end)`.
    pub fn segments_spanning(&self, start: u64, end: u64) -> u32 {
        let inner = self
            .chunk_starts
            .iter()
            .filter(|&&s| s > start && s < end)
            .count();
        1 + inner as u32
    }

    /// Out-of-order bytes held.
    pub fn buffered_bytes(&self) -> usize {
        self.reassembler.buffered_bytes()
    }

    /// The reassembler's counters.
    pub fn reassembly_stats(&self) -> &crate::reassembly::ReassemblyStats {
        self.reassembler.stats()
    }
}
