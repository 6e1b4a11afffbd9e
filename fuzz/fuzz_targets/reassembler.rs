//! A sequence of pushes, drains, gap skips and skipped stretches (the reader needs
//! nothing before an offset) decoded from the bytes. Besides never panicking, the
//! reassembler must keep its promises: chunks in increasing, non-overlapping
//! stream order, the holes between them within the skipped gaps and stretches,
//! buffered bytes within the limit, nothing delivered past the stream limit (which
//! skipped stretches do not count against), nothing delivered inside a stretch.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tlsmon::pipeline::reassembly::{ReadyChunk, ReassemblyLimits, StreamReassembler};

/// Reads the fuzz input as a little stream of numbers.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (Some(buffered), Some(stream), Some(base)) = (input.u16(), input.u16(), input.u32()) else {
        return;
    };
    let limits = ReassemblyLimits {
        max_buffered_bytes: usize::from(buffered % 4096),
        max_stream_bytes: u64::from(stream),
    };
    let mut r = StreamReassembler::new(limits);
    let mut delivered_end = 0u64;
    let mut delivered_bytes = 0u64;
    let mut holes = 0u64;
    let mut skipped = 0u64;
    let mut chunks: Vec<ReadyChunk> = Vec::new();
    let mut clock = 0u64;
    // The furthest stream offset the reader said it needs nothing before.
    let mut needed_from = 0u64;
    while let Some(op) = input.byte() {
        match op % 4 {
            3 if op & 0x20 != 0 => {
                // Called between drains, as the flow table does.
                let Some(ahead) = input.u16() else {
                    break;
                };
                chunks.clear();
                r.drain_ready(&mut chunks);
                for chunk in &chunks {
                    holes += chunk.stream_offset - delivered_end;
                    delivered_end = chunk.stream_offset + chunk.bytes.len() as u64;
                    delivered_bytes += chunk.bytes.len() as u64;
                }
                let target = r.next_stream_offset() + u64::from(ahead);
                r.skip_until(target);
                // Before the stream starts there is nothing to skip (and no offsets).
                if r.next_seq().is_some() {
                    needed_from = needed_from.max(target);
                }
            }
            0 | 1 => {
                // A push near `base` (both sides, so overlaps and wrap-around happen).
                let (Some(delta), Some(len), Some(extra)) =
                    (input.u16(), input.byte(), input.byte())
                else {
                    break;
                };
                let seq = base.wrapping_add(u32::from(delta)).wrapping_sub(0x4000);
                let fill = extra;
                let payload = vec![fill; usize::from(len)];
                let cut = if extra & 0x80 != 0 {
                    u32::from(extra & 0x3f)
                } else {
                    0
                };
                let syn = op & 0x40 != 0;
                clock += 1;
                r.push(seq, &payload, cut, syn, Duration::from_micros(clock));
            }
            2 => {
                chunks.clear();
                let moved = r.drain_ready(&mut chunks);
                assert_eq!(moved, !chunks.is_empty());
                for chunk in &chunks {
                    assert!(!chunk.bytes.is_empty());
                    assert!(
                        chunk.stream_offset >= delivered_end,
                        "chunks overlap or go back"
                    );
                    // Everything ready before the last stretch began was drained then.
                    assert!(
                        chunk.stream_offset >= needed_from,
                        "a chunk inside a skipped stretch"
                    );
                    holes += chunk.stream_offset - delivered_end;
                    delivered_end = chunk.stream_offset + chunk.bytes.len() as u64;
                    delivered_bytes += chunk.bytes.len() as u64;
                }
            }
            _ => {
                let had_gap = r.has_gap();
                match r.skip_gap() {
                    Some(gap) => {
                        assert!(had_gap && gap > 0);
                        skipped += gap;
                    }
                    None => assert!(!had_gap),
                }
            }
        }
        assert!(r.buffered_bytes() <= limits.max_buffered_bytes);
    }
    chunks.clear();
    r.drain_ready(&mut chunks);
    for chunk in &chunks {
        assert!(chunk.stream_offset >= delivered_end);
        assert!(chunk.stream_offset >= needed_from);
        holes += chunk.stream_offset - delivered_end;
        delivered_end = chunk.stream_offset + chunk.bytes.len() as u64;
        delivered_bytes += chunk.bytes.len() as u64;
    }
    let span = r.stats().skipped_span;
    assert!(delivered_end <= limits.max_stream_bytes + span);
    assert!(delivered_bytes <= limits.max_stream_bytes);
    assert_eq!(delivered_bytes + holes, delivered_end);
    assert_eq!(r.stats().gap_bytes, skipped);
    // Holes between delivered chunks were all skipped gaps or stretches (a skipped
    // tail may not be followed by a chunk yet).
    assert!(holes <= skipped + span);
});
