//! In-order delivery of one direction of one TCP connection, handshake phase only.
//!
//! Segments arrive in any order, duplicated, overlapping or with holes; the
//! [`StreamReassembler`] hands out the bytes in stream order as [`ReadyChunk`]s.
//!
//! Design:
//! - Sequence numbers are mapped to internal 64-bit positions relative to the next
//!   byte to deliver (`next_pos`/`next_seq`), so u32 wrap-around never matters past
//!   the mapping (`seq - next_seq` as a signed 32-bit distance).
//! - Bytes that continue the stream go straight to the ready list (one copy, no
//!   buffering); bytes ahead of a hole wait in an ordered map, bounded by
//!   [`ReassemblyLimits::max_buffered_bytes`], and what does not fit is dropped and
//!   counted.
//! - Overlaps: the first copy wins. Overlapping bytes are compared with what is
//!   buffered or still undrained; equal bytes count as retransmitted, different ones as
//!   an overlap conflict. Bytes before the delivery point that were already drained
//!   cannot be compared (they are not kept) and count as retransmitted.
//! - Holes: lost bytes (data seen beyond them) and cut bytes (`cut`, known not
//!   captured) block delivery until [`StreamReassembler::skip_gap`] jumps over them.
//! - Start of stream: a SYN fixes it at ISN+1. Without a SYN the first segment with
//!   bytes starts the stream (mid-stream start). Until the first byte is drained, a
//!   later segment that starts at most `max_buffered_bytes` (at least 1) bytes
//!   earlier moves the start back (if that leaves a hole at the front, only when the
//!   bytes already made ready fit in the buffer while they wait): captures often
//!   reorder the first two segments of a ClientHello. Once anything was drained, a
//!   gap was skipped or a SYN was seen, the start is fixed.
//! - Skipping: the reader says up to which stream offset it needs nothing
//!   ([`StreamReassembler::skip_until`]: the rest of a certificate chain, an
//!   encrypted record's payload). Bytes before it are dropped on arrival (counted,
//!   never held), held bytes before it are let go, and holes before it (lost or cut
//!   bytes) are jumped without blocking delivery, so memory stays bounded by
//!   `max_buffered_bytes` however long the skipped stretch. A hole after it still
//!   blocks.
//! - Only the first [`ReassemblyLimits::max_stream_bytes`] bytes are delivered, not
//!   counting skipped stretches; later bytes are counted and ignored.

use std::collections::BTreeMap;

use crate::source::segment::Timestamp;

#[cfg(test)]
mod tests;

/// Internal position of the first stream byte seen, chosen so that a start moved
/// back by a bounded window can never go below zero.
const ANCHOR_POS: u64 = 1 << 32;

/// Bounds on what one direction of a flow may hold and deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Out-of-order bytes held per direction (default 64 KiB); more are dropped and counted.
    pub max_buffered_bytes: usize,
    /// Stop after this many in-order bytes (default 256 KiB); later bytes are counted and ignored.
    pub max_stream_bytes: u64,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_buffered_bytes: 64 * 1024,
            max_stream_bytes: 256 * 1024,
        }
    }
}

/// Counters of what the reassembler saw, dropped and skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Pushes that carried bytes (captured or cut).
    pub segments: u64,
    /// Bytes received again with the same content (or before the delivery point, already drained).
    pub retransmitted_bytes: u64,
    /// Pushes that overlapped held bytes with different content (the first copy was kept).
    pub overlap_conflicts: u64,
    /// Pushes whose first byte lay beyond the next byte to deliver.
    pub out_of_order_segments: u64,
    /// Bytes jumped over by `skip_gap` (lost or cut).
    pub gap_bytes: u64,
    /// Out-of-order bytes dropped because `max_buffered_bytes` was reached.
    pub dropped_over_limit_bytes: u64,
    /// Bytes past `max_stream_bytes`, ignored.
    pub beyond_stream_limit_bytes: u64,
    /// Bytes reported as not captured (`cut`).
    pub cut_bytes: u64,
    /// Captured bytes dropped because the reader did not need them (`skip_until`).
    pub skipped_bytes: u64,
    /// Stream bytes jumped because the reader did not need them, captured or not.
    pub skipped_span: u64,
}

/// Bytes ready in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyChunk {
    /// Offset in the stream (0 = first byte after the SYN, or first byte seen) of `bytes[0]`.
    pub stream_offset: u64,
    /// Arrival time of the segment that carried these bytes.
    pub ts: Timestamp,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Bytes held at an internal position (ready or waiting behind a hole).
#[derive(Debug)]
struct HeldBytes {
    ts: Timestamp,
    bytes: Vec<u8>,
}

/// How the start of the stream is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamStart {
    /// Nothing seen yet.
    Unknown,
    /// Set by the first segment seen; may still move back (see module docs).
    Tentative,
    /// Fixed by a SYN, a drain or a skipped gap.
    Fixed,
}

/// Reassembles one direction of one TCP connection.
#[derive(Debug)]
pub struct StreamReassembler {
    limits: ReassemblyLimits,
    start: StreamStart,
    /// Internal position of stream offset 0.
    start_pos: u64,
    /// Internal position of the next byte to make ready, and its sequence number.
    next_pos: u64,
    next_seq: u32,
    /// Furthest internal position known to belong to the stream (data, holes, cut bytes).
    known_end: u64,
    /// Contiguous bytes from the last drain up to `next_pos`, keyed by position.
    ready: Vec<(u64, HeldBytes)>,
    /// Bytes beyond `next_pos`, keyed by position; entries never overlap.
    waiting: BTreeMap<u64, HeldBytes>,
    waiting_bytes: usize,
    /// Internal position before which the reader needs no bytes (0: none skipped).
    skip_until_pos: u64,
    stats: ReassemblyStats,
}

impl StreamReassembler {
    /// A reassembler with nothing seen yet.
    pub fn new(limits: ReassemblyLimits) -> Self {
        StreamReassembler {
            limits,
            start: StreamStart::Unknown,
            start_pos: ANCHOR_POS,
            next_pos: ANCHOR_POS,
            next_seq: 0,
            known_end: ANCHOR_POS,
            ready: Vec::new(),
            waiting: BTreeMap::new(),
            waiting_bytes: 0,
            skip_until_pos: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Add a segment's bytes: `payload` starts at `seq`, `cut` bytes after it were not
    /// captured. `syn` marks a SYN whose `seq` is the ISN (data starts at ISN+1).
    pub fn push(&mut self, seq: u32, payload: &[u8], cut: u32, syn: bool, ts: Timestamp) {
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        if syn {
            self.apply_syn(data_seq);
        }
        if payload.is_empty() && cut == 0 {
            return;
        }
        self.stats.segments += 1;
        self.stats.cut_bytes += u64::from(cut);
        if self.start == StreamStart::Unknown {
            self.set_start(data_seq);
            self.start = StreamStart::Tentative;
        }
        let Some(mut pos) = self.position_of(data_seq) else {
            // Before the internal origin: far older than anything kept.
            self.stats.retransmitted_bytes += payload.len() as u64;
            return;
        };
        if pos < self.start_pos && self.start == StreamStart::Tentative {
            self.try_move_start_back(pos, pos + payload.len() as u64);
        }
        let mut payload = payload;
        let mut cut = u64::from(cut);

        // Bytes before the stream start are not part of the stream.
        if pos < self.start_pos {
            let skip = self.start_pos - pos;
            let skip_data = skip.min(payload.len() as u64);
            self.stats.retransmitted_bytes += skip_data;
            payload = &payload[skip_data as usize..];
            cut = cut.saturating_sub(skip - skip_data);
            pos = self.start_pos;
        }

        // Bytes past the stream limit are ignored.
        let limit_pos = self.limit_pos();
        let data_end = pos + payload.len() as u64;
        if data_end > limit_pos {
            let keep = limit_pos.saturating_sub(pos).min(payload.len() as u64);
            self.stats.beyond_stream_limit_bytes += payload.len() as u64 - keep;
            payload = &payload[..keep as usize];
            cut = 0;
        }
        let end = (pos + payload.len() as u64 + cut).min(limit_pos);
        self.known_end = self.known_end.max(end);

        if pos > self.next_pos {
            self.stats.out_of_order_segments += 1;
        }
        // Bytes before the delivery point were already made ready.
        if pos < self.next_pos && !payload.is_empty() {
            let already = (self.next_pos - pos).min(payload.len() as u64) as usize;
            self.compare_with_ready(pos, &payload[..already]);
            payload = &payload[already..];
            pos += already as u64;
        }
        // Bytes the reader does not need are dropped on arrival.
        if pos < self.skip_until_pos && !payload.is_empty() {
            let drop = (self.skip_until_pos - pos).min(payload.len() as u64);
            self.stats.skipped_bytes += drop;
            payload = &payload[drop as usize..];
            pos += drop;
        }
        if payload.is_empty() {
            self.advance_over_skip();
            return;
        }
        let first_waiting = self.waiting.keys().next().copied();
        if pos == self.next_pos && first_waiting.is_none_or(|w| w >= pos + payload.len() as u64) {
            // Fast path: continues the stream and overlaps nothing held.
            self.make_ready(pos, payload.to_vec(), ts);
        } else {
            self.insert_waiting(pos, payload, ts);
        }
        self.promote_waiting();
        self.advance_over_skip();
    }

    /// The reader needs no bytes before `stream_offset`: they are dropped when they
    /// come, and holes before it no longer block delivery. Call between drains (what
    /// was made ready is not taken back); an offset at or before the next byte to
    /// deliver changes nothing but fixing the stream's start.
    pub fn skip_until(&mut self, stream_offset: u64) {
        if self.start == StreamStart::Unknown {
            return;
        }
        // Offsets are only meaningful from a start that no longer moves.
        self.start = StreamStart::Fixed;
        let target = self.start_pos.saturating_add(stream_offset);
        if target > self.skip_until_pos {
            self.skip_until_pos = target;
            self.advance_over_skip();
        }
    }

    /// Moves the delivery point over what is known of the skipped stretch (up to the
    /// furthest byte known to belong to the stream), letting go of held bytes in it.
    fn advance_over_skip(&mut self) {
        let target = self.skip_until_pos.min(self.known_end);
        if target <= self.next_pos {
            return;
        }
        while let Some(entry) = self.waiting.first_entry() {
            let pos = *entry.key();
            if pos >= target {
                break;
            }
            let held = entry.remove();
            self.waiting_bytes -= held.bytes.len();
            let drop = ((target - pos) as usize).min(held.bytes.len());
            self.stats.skipped_bytes += drop as u64;
            if drop < held.bytes.len() {
                let rest = held.bytes[drop..].to_vec();
                self.waiting_bytes += rest.len();
                let held = HeldBytes {
                    ts: held.ts,
                    bytes: rest,
                };
                self.waiting.insert(target, held);
                break;
            }
        }
        if self.waiting.is_empty() {
            self.waiting = BTreeMap::new();
        }
        let jumped = target - self.next_pos;
        self.stats.skipped_span += jumped;
        self.next_seq = self.next_seq.wrapping_add(jumped as u32);
        self.next_pos = target;
        self.start = StreamStart::Fixed;
        self.promote_waiting();
    }

    /// Move the bytes now contiguous, in order, to `out`; true if anything was moved.
    pub fn drain_ready(&mut self, out: &mut Vec<ReadyChunk>) -> bool {
        if self.ready.is_empty() {
            return false;
        }
        self.start = StreamStart::Fixed;
        let start_pos = self.start_pos;
        // The list goes with its bytes: a stream that waits for more holds no buffer.
        out.extend(
            std::mem::take(&mut self.ready)
                .into_iter()
                .map(|(pos, held)| ReadyChunk {
                    stream_offset: pos - start_pos,
                    ts: held.ts,
                    bytes: held.bytes,
                }),
        );
        true
    }

    /// Sequence number of the next byte the reader needs, when it lies past every
    /// byte known to belong to the stream: the bytes before it, not seen yet, need
    /// not be captured at all. `None` otherwise, or when the reader needs nothing
    /// more (a point further than half the sequence space names no byte).
    pub fn wanted_seq_ahead(&self) -> Option<u32> {
        if self.start == StreamStart::Unknown || self.skip_until_pos <= self.known_end {
            return None;
        }
        let ahead = self.skip_until_pos - self.next_pos;
        (ahead < 1 << 31).then(|| self.next_seq.wrapping_add(ahead as u32))
    }

    /// Tells that the stream reaches at least up to `seq` (a FIN's sequence number):
    /// bytes before it that were never seen are a hole, which a skipped stretch may
    /// cover, rather than bytes of unknown extent.
    pub fn extend_to(&mut self, seq: u32) {
        if self.start == StreamStart::Unknown {
            return;
        }
        let Some(pos) = self.position_of(seq) else {
            return;
        };
        let end = pos.min(self.limit_pos());
        if end > self.known_end {
            self.known_end = end;
            self.advance_over_skip();
        }
    }

    /// True if bytes were made ready and not drained yet.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// True if a hole (lost or cut bytes) blocks delivery of bytes known to follow it.
    pub fn has_gap(&self) -> bool {
        self.next_pos < self.known_end
    }

    /// Jump over the first hole; returns its size, or `None` if there is no hole.
    pub fn skip_gap(&mut self) -> Option<u64> {
        if !self.has_gap() {
            return None;
        }
        let target = self
            .waiting
            .keys()
            .next()
            .copied()
            .unwrap_or(self.known_end);
        let gap = target - self.next_pos;
        self.stats.gap_bytes += gap;
        self.next_seq = self.next_seq.wrapping_add(gap as u32);
        self.next_pos = target;
        self.start = StreamStart::Fixed;
        self.promote_waiting();
        Some(gap)
    }

    /// Out-of-order bytes held behind a hole.
    pub fn buffered_bytes(&self) -> usize {
        self.waiting_bytes
    }

    /// True once `max_stream_bytes` bytes were made ready: nothing more will be.
    pub fn at_stream_limit(&self) -> bool {
        self.start != StreamStart::Unknown && self.next_pos >= self.limit_pos()
    }

    /// Stream offset of the next byte to be made ready (bytes made ready or skipped so far).
    pub fn next_stream_offset(&self) -> u64 {
        self.next_pos - self.start_pos
    }

    /// Sequence number of the next byte to be made ready; `None` before the stream
    /// started. The flow table compares it with a FIN's sequence number.
    pub fn next_seq(&self) -> Option<u32> {
        (self.start != StreamStart::Unknown).then_some(self.next_seq)
    }

    /// What was seen, dropped and skipped.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    fn rebase_window(&self) -> u64 {
        self.limits.max_buffered_bytes.max(1) as u64
    }

    /// Internal position past which bytes are ignored: the stream bound, not
    /// counting what was skipped.
    fn limit_pos(&self) -> u64 {
        self.start_pos
            .saturating_add(self.limits.max_stream_bytes)
            .saturating_add(self.stats.skipped_span)
    }

    fn set_start(&mut self, seq: u32) {
        self.start_pos = ANCHOR_POS;
        self.next_pos = ANCHOR_POS;
        self.known_end = ANCHOR_POS;
        self.next_seq = seq;
    }

    /// Internal position of `seq`, taken as the nearest one to the delivery point.
    fn position_of(&self, seq: u32) -> Option<u64> {
        let distance = i64::from(seq.wrapping_sub(self.next_seq) as i32);
        self.next_pos.checked_add_signed(distance)
    }

    fn apply_syn(&mut self, data_seq: u32) {
        match self.start {
            StreamStart::Unknown => {
                self.set_start(data_seq);
            }
            StreamStart::Tentative => {
                if let Some(pos) = self.position_of(data_seq) {
                    if pos < self.start_pos {
                        self.try_move_start_back(pos, pos);
                    }
                }
            }
            // A retransmitted SYN, or one too late to matter.
            StreamStart::Fixed => return,
        }
        self.start = StreamStart::Fixed;
    }

    /// Move the stream start back to `pos` (the new bytes reach `data_end`) before
    /// anything was drained, if it is at most the rebase window earlier and the bytes
    /// made ready so far fit in the buffer while they wait behind a new hole at the
    /// front (or no hole is left: `data_end` reaches the current start).
    fn try_move_start_back(&mut self, pos: u64, data_end: u64) {
        if self.start_pos - pos > self.rebase_window() {
            return;
        }
        let ready_bytes: usize = self.ready.iter().map(|(_, held)| held.bytes.len()).sum();
        let leaves_hole = data_end < self.start_pos;
        if leaves_hole && self.waiting_bytes + ready_bytes > self.limits.max_buffered_bytes {
            return;
        }
        for (ready_pos, held) in self.ready.drain(..) {
            self.waiting_bytes += held.bytes.len();
            self.waiting.insert(ready_pos, held);
        }
        let back = self.next_pos - pos;
        self.next_seq = self.next_seq.wrapping_sub(back as u32);
        self.next_pos = pos;
        self.start_pos = pos;
        self.trim_to_stream_limit();
    }

    /// Drop held bytes past the stream limit (it moved back with the start).
    fn trim_to_stream_limit(&mut self) {
        let limit_pos = self.limit_pos();
        let beyond = self.waiting.split_off(&limit_pos);
        for held in beyond.values() {
            self.waiting_bytes -= held.bytes.len();
            self.stats.beyond_stream_limit_bytes += held.bytes.len() as u64;
        }
        if let Some(mut last) = self.waiting.last_entry() {
            let keep = (limit_pos - *last.key()) as usize;
            let held = last.get_mut();
            if held.bytes.len() > keep {
                let cut = held.bytes.len() - keep;
                held.bytes.truncate(keep);
                self.waiting_bytes -= cut;
                self.stats.beyond_stream_limit_bytes += cut as u64;
            }
        }
        self.known_end = self.known_end.min(limit_pos);
    }

    fn make_ready(&mut self, pos: u64, bytes: Vec<u8>, ts: Timestamp) {
        let len = bytes.len() as u64;
        self.ready.push((pos, HeldBytes { ts, bytes }));
        self.next_pos = pos + len;
        self.next_seq = self.next_seq.wrapping_add(len as u32);
        self.known_end = self.known_end.max(self.next_pos);
    }

    /// Move waiting entries that now continue the stream to the ready list.
    fn promote_waiting(&mut self) {
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > self.next_pos {
                break;
            }
            let pos = *entry.key();
            let held = entry.remove();
            self.waiting_bytes -= held.bytes.len();
            if self.waiting.is_empty() {
                // An emptied BTreeMap keeps its root node; let it go.
                self.waiting = BTreeMap::new();
            }
            // Entries never start before next_pos except after a start was moved back;
            // cut any stale head defensively.
            let skip = (self.next_pos - pos) as usize;
            if skip >= held.bytes.len() {
                continue;
            }
            let bytes = if skip == 0 {
                held.bytes
            } else {
                held.bytes[skip..].to_vec()
            };
            self.make_ready(self.next_pos, bytes, held.ts);
        }
    }

    /// Hold `payload` at `pos` (not before `next_pos`): the parts not yet held are
    /// stored, overlapping parts are compared with what is held (first copy wins).
    fn insert_waiting(&mut self, pos: u64, payload: &[u8], ts: Timestamp) {
        let end = pos + payload.len() as u64;
        let mut cursor = pos;
        let mut conflict = false;
        // The entry starting before `pos` may overlap its head.
        let overlapping: Vec<u64> = {
            let before = self.waiting.range(..pos).next_back().map(|(k, _)| *k);
            before
                .into_iter()
                .chain(self.waiting.range(pos..end).map(|(k, _)| *k))
                .collect()
        };
        let mut new_parts: Vec<(u64, u64)> = Vec::new();
        for held_pos in overlapping {
            let Some(held) = self.waiting.get(&held_pos) else {
                continue;
            };
            let held_end = held_pos + held.bytes.len() as u64;
            if held_end <= cursor {
                continue;
            }
            if held_pos > cursor {
                new_parts.push((cursor, held_pos.min(end)));
            }
            let overlap_start = held_pos.max(cursor);
            let overlap_end = held_end.min(end);
            if overlap_start < overlap_end {
                let mine = &payload[(overlap_start - pos) as usize..(overlap_end - pos) as usize];
                let theirs = &held.bytes
                    [(overlap_start - held_pos) as usize..(overlap_end - held_pos) as usize];
                if mine == theirs {
                    self.stats.retransmitted_bytes += mine.len() as u64;
                } else {
                    conflict = true;
                }
            }
            cursor = cursor.max(overlap_end);
        }
        if cursor < end {
            new_parts.push((cursor, end));
        }
        if conflict {
            self.stats.overlap_conflicts += 1;
        }
        for (part_start, part_end) in new_parts {
            let part = &payload[(part_start - pos) as usize..(part_end - pos) as usize];
            if part_start == self.next_pos {
                // Continues the stream: ready at once, never counted against the buffer;
                // held bytes it now reaches follow, so later parts may continue too.
                self.make_ready(part_start, part.to_vec(), ts);
                self.promote_waiting();
                continue;
            }
            let room = self
                .limits
                .max_buffered_bytes
                .saturating_sub(self.waiting_bytes);
            let keep = part.len().min(room);
            self.stats.dropped_over_limit_bytes += (part.len() - keep) as u64;
            if keep > 0 {
                self.waiting_bytes += keep;
                self.waiting.insert(
                    part_start,
                    HeldBytes {
                        ts,
                        bytes: part[..keep].to_vec(),
                    },
                );
            }
        }
    }

    /// Compare bytes at `pos` (all before `next_pos`) with undrained ready bytes.
    fn compare_with_ready(&mut self, pos: u64, bytes: &[u8]) {
        let end = pos + bytes.len() as u64;
        let mut compared = 0u64;
        let mut conflict = false;
        let first = self
            .ready
            .partition_point(|(p, held)| p + held.bytes.len() as u64 <= pos);
        for (held_pos, held) in &self.ready[first..] {
            if *held_pos >= end {
                break;
            }
            let held_end = held_pos + held.bytes.len() as u64;
            let overlap_start = (*held_pos).max(pos);
            let overlap_end = held_end.min(end);
            let mine = &bytes[(overlap_start - pos) as usize..(overlap_end - pos) as usize];
            let theirs =
                &held.bytes[(overlap_start - held_pos) as usize..(overlap_end - held_pos) as usize];
            if mine == theirs {
                self.stats.retransmitted_bytes += mine.len() as u64;
            } else {
                conflict = true;
            }
            compared += mine.len() as u64;
        }
        if conflict {
            self.stats.overlap_conflicts += 1;
        }
        // Drained bytes are gone: assume the rest was a plain retransmission.
        let conflicting_or_equal = compared;
        self.stats.retransmitted_bytes += bytes.len() as u64 - conflicting_or_equal;
    }
}
