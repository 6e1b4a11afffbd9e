use std::time::Duration;

use super::*;

fn ts(ms: u64) -> Timestamp {
    Duration::from_millis(ms)
}

fn limits(buffered: usize, stream: u64) -> ReassemblyLimits {
    ReassemblyLimits {
        max_buffered_bytes: buffered,
        max_stream_bytes: stream,
    }
}

/// Drain and return (offset, ts, bytes) triples.
fn drain(r: &mut StreamReassembler) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    r.drain_ready(&mut out);
    out.into_iter()
        .map(|c| (c.stream_offset, c.ts.as_millis() as u64, c.bytes))
        .collect()
}

/// Drain and concatenate, checking that chunks are contiguous from `from`.
fn drain_bytes(r: &mut StreamReassembler, from: u64) -> Vec<u8> {
    let mut expected = from;
    let mut all = Vec::new();
    for (offset, _, bytes) in drain(r) {
        assert_eq!(offset, expected, "chunks must be contiguous");
        expected += bytes.len() as u64;
        all.extend_from_slice(&bytes);
    }
    all
}

#[test]
fn in_order_after_syn_is_delivered_with_offsets_and_times() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(1000, &[], 0, true, ts(1));
    r.push(1001, b"hello", 0, false, ts(2));
    r.push(1006, b" world", 0, false, ts(3));
    assert_eq!(
        drain(&mut r),
        vec![(0, 2, b"hello".to_vec()), (5, 3, b" world".to_vec())]
    );
    assert!(!r.has_gap());
    assert_eq!(r.buffered_bytes(), 0);
    assert_eq!(r.stats().segments, 2);
    assert_eq!(r.stats().out_of_order_segments, 0);
    let mut out = Vec::new();
    assert!(!r.drain_ready(&mut out));
    assert!(out.is_empty());
}

#[test]
fn reordered_segments_wait_behind_the_hole_then_flow() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(99, &[], 0, true, ts(0));
    r.push(100, b"AAAA", 0, false, ts(1));
    r.push(108, b"CCCC", 0, false, ts(2));
    r.push(112, b"DD", 0, false, ts(3));
    assert_eq!(drain_bytes(&mut r, 0), b"AAAA");
    assert!(r.has_gap());
    assert_eq!(r.buffered_bytes(), 6);
    r.push(104, b"BBBB", 0, false, ts(4));
    assert_eq!(
        drain(&mut r),
        vec![
            (4, 4, b"BBBB".to_vec()),
            (8, 2, b"CCCC".to_vec()),
            (12, 3, b"DD".to_vec())
        ]
    );
    assert!(!r.has_gap());
    assert_eq!(r.buffered_bytes(), 0);
    assert_eq!(r.stats().out_of_order_segments, 2);
    assert_eq!(r.stats().segments, 4);
}

#[test]
fn exact_duplicates_count_as_retransmitted() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(0, &[], 0, true, ts(0));
    r.push(1, b"abcdef", 0, false, ts(1));
    // Undrained: compared with the ready bytes.
    r.push(1, b"abcdef", 0, false, ts(2));
    assert_eq!(drain_bytes(&mut r, 0), b"abcdef");
    // Drained: cannot be compared, counted as retransmitted all the same.
    r.push(4, b"def", 0, false, ts(3));
    // Out of order, duplicated while waiting.
    r.push(20, b"xyz", 0, false, ts(4));
    r.push(20, b"xyz", 0, false, ts(5));
    assert_eq!(r.stats().retransmitted_bytes, 6 + 3 + 3);
    assert_eq!(r.stats().overlap_conflicts, 0);
    assert_eq!(r.buffered_bytes(), 3);
    let mut out = Vec::new();
    assert!(!r.drain_ready(&mut out));
}

#[test]
fn conflicting_overlap_keeps_the_first_copy_and_fills_around_it() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(0, &[], 0, true, ts(0));
    r.push(5, b"XXX", 0, false, ts(1)); // offsets 4..7
    r.push(1, b"abcdefghij", 0, false, ts(2)); // offsets 0..10, conflicts at 4..7
    assert_eq!(r.stats().overlap_conflicts, 1);
    assert_eq!(r.stats().retransmitted_bytes, 0);
    assert_eq!(
        drain(&mut r),
        vec![
            (0, 2, b"abcd".to_vec()),
            (4, 1, b"XXX".to_vec()),
            (7, 2, b"hij".to_vec())
        ]
    );
    // Overlap with undrained ready bytes that differ.
    r.push(11, b"klm", 0, false, ts(3));
    r.push(11, b"kZm", 0, false, ts(4));
    assert_eq!(r.stats().overlap_conflicts, 2);
    assert_eq!(drain_bytes(&mut r, 10), b"klm");
}

#[test]
fn partial_overlap_with_equal_bytes_extends_the_stream() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(0, &[], 0, true, ts(0));
    r.push(1, b"abcd", 0, false, ts(1));
    r.push(3, b"cdef", 0, false, ts(2));
    assert_eq!(drain_bytes(&mut r, 0), b"abcdef");
    assert_eq!(r.stats().retransmitted_bytes, 2);
    assert_eq!(r.stats().overlap_conflicts, 0);
}

#[test]
fn a_lost_segment_is_a_gap_that_skip_gap_jumps() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(0, &[], 0, true, ts(0));
    r.push(1, b"abc", 0, false, ts(1));
    r.push(10, b"jkl", 0, false, ts(2));
    assert_eq!(drain_bytes(&mut r, 0), b"abc");
    assert!(r.has_gap());
    assert_eq!(r.skip_gap(), Some(6));
    assert!(!r.has_gap());
    assert_eq!(r.skip_gap(), None);
    assert_eq!(drain(&mut r), vec![(9, 2, b"jkl".to_vec())]);
    assert_eq!(r.stats().gap_bytes, 6);
    // The lost bytes arriving late are before the delivery point: ignored.
    r.push(4, b"def", 0, false, ts(3));
    assert!(drain(&mut r).is_empty());
}

#[test]
fn cut_bytes_are_a_known_hole_even_with_nothing_after_them() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(0, &[], 0, true, ts(0));
    r.push(1, b"abcd", 6, false, ts(1));
    assert_eq!(drain_bytes(&mut r, 0), b"abcd");
    assert!(r.has_gap());
    assert_eq!(r.stats().cut_bytes, 6);
    // The next segment after the cut waits until the gap is skipped.
    r.push(11, b"next", 0, false, ts(2));
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.skip_gap(), Some(6));
    assert_eq!(drain(&mut r), vec![(10, 2, b"next".to_vec())]);
    assert_eq!(r.stats().gap_bytes, 6);
    assert_eq!(r.next_stream_offset(), 14);

    // A cut at the tail with nothing after it: skip_gap jumps to its end.
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(0, b"xy", 100, false, ts(0));
    assert_eq!(drain_bytes(&mut r, 0), b"xy");
    assert_eq!(r.skip_gap(), Some(100));
    assert_eq!(r.next_stream_offset(), 102);
}

#[test]
fn cut_hole_can_be_filled_by_a_later_copy() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(0, &[], 0, true, ts(0));
    r.push(1, b"ab", 3, false, ts(1));
    r.push(1, b"abcde", 0, false, ts(2));
    assert_eq!(drain_bytes(&mut r, 0), b"abcde");
    assert!(!r.has_gap());
}

#[test]
fn sequence_numbers_wrap_around_2_pow_32() {
    let isn = u32::MAX - 3; // data starts at MAX-2
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(isn, &[], 0, true, ts(0));
    r.push(u32::MAX - 2, b"abc", 0, false, ts(1)); // MAX-2, MAX-1, MAX
    r.push(3, b"ghi", 0, false, ts(2)); // after a hole 0..3 (wrapped)
    r.push(0, b"def", 0, false, ts(3));
    assert_eq!(drain_bytes(&mut r, 0), b"abcdefghi");
    assert_eq!(r.stats().out_of_order_segments, 1);
    assert!(!r.has_gap());

    // A segment that itself straddles the wrap.
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(u32::MAX - 1, b"0123", 0, false, ts(0));
    r.push(2, b"45", 0, false, ts(1));
    assert_eq!(drain_bytes(&mut r, 0), b"012345");

    // A SYN at u32::MAX: data starts at 0.
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(u32::MAX, &[], 0, true, ts(0));
    r.push(0, b"z", 0, false, ts(1));
    assert_eq!(drain(&mut r), vec![(0, 1, b"z".to_vec())]);
}

#[test]
fn mid_stream_start_moves_back_before_the_first_drain_only() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(5000, b"second", 0, false, ts(2));
    r.push(4994, b"first-", 0, false, ts(1));
    assert_eq!(
        drain(&mut r),
        vec![(0, 1, b"first-".to_vec()), (6, 2, b"second".to_vec())]
    );
    // After a drain, earlier bytes are before the stream: counted, not delivered.
    r.push(4990, b"zzzz", 0, false, ts(3));
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.stats().retransmitted_bytes, 4);

    // Earlier by more than the window: not part of the stream.
    let mut r = StreamReassembler::new(limits(100, 1 << 20));
    r.push(5000, b"b", 0, false, ts(1));
    r.push(4000, b"a", 0, false, ts(0));
    assert_eq!(drain(&mut r), vec![(0, 1, b"b".to_vec())]);

    // Earlier with a hole between: the start moves, and the hole blocks.
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(5000, b"cd", 0, false, ts(1));
    r.push(4990, b"ab", 0, false, ts(0));
    assert_eq!(drain(&mut r), vec![(0, 0, b"ab".to_vec())]);
    assert!(r.has_gap());
    assert_eq!(r.skip_gap(), Some(8));
    assert_eq!(drain(&mut r), vec![(10, 1, b"cd".to_vec())]);
}

#[test]
fn late_syn_moves_a_tentative_start_to_isn_plus_one() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(11, b"bc", 0, false, ts(2));
    r.push(9, &[], 0, true, ts(0));
    r.push(10, b"a", 0, false, ts(1));
    assert_eq!(drain_bytes(&mut r, 0), b"abc");
    // A retransmitted SYN changes nothing.
    r.push(9, &[], 0, true, ts(3));
    r.push(13, b"d", 0, false, ts(4));
    assert_eq!(drain(&mut r), vec![(3, 4, b"d".to_vec())]);
}

#[test]
fn syn_with_data_starts_at_isn_plus_one() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(41, b"tfo", 0, true, ts(0));
    r.push(45, b"!", 0, false, ts(1));
    assert_eq!(drain_bytes(&mut r, 0), b"tfo!");
}

#[test]
fn out_of_order_bytes_over_the_buffer_limit_are_dropped_and_counted() {
    let mut r = StreamReassembler::new(limits(10, 1 << 20));
    r.push(0, &[], 0, true, ts(0));
    r.push(101, b"0123456789", 0, false, ts(1)); // fills the buffer
    r.push(201, b"abcde", 0, false, ts(2)); // no room
    assert_eq!(r.buffered_bytes(), 10);
    assert_eq!(r.stats().dropped_over_limit_bytes, 5);
    // A partly fitting segment keeps its head.
    let mut r = StreamReassembler::new(limits(10, 1 << 20));
    r.push(0, &[], 0, true, ts(0));
    r.push(101, b"0123456", 0, false, ts(1));
    r.push(201, b"abcdef", 0, false, ts(2));
    assert_eq!(r.buffered_bytes(), 10);
    assert_eq!(r.stats().dropped_over_limit_bytes, 3);
    // In-order bytes never count against the buffer.
    r.push(1, &[7u8; 100], 0, false, ts(3));
    assert_eq!(r.buffered_bytes(), 3);
    assert_eq!(drain_bytes(&mut r, 0).len(), 107);
}

#[test]
fn bytes_past_the_stream_limit_are_ignored_and_counted() {
    let mut r = StreamReassembler::new(limits(1000, 8));
    r.push(0, &[], 0, true, ts(0));
    r.push(1, b"abcdef", 0, false, ts(1));
    assert!(!r.at_stream_limit());
    r.push(7, b"ghijkl", 0, false, ts(2));
    assert!(r.at_stream_limit());
    r.push(13, b"mn", 0, false, ts(3));
    r.push(100, b"far", 9, false, ts(4));
    assert_eq!(drain_bytes(&mut r, 0), b"abcdefgh");
    assert_eq!(r.stats().beyond_stream_limit_bytes, 4 + 2 + 3);
    assert!(!r.has_gap());
    assert_eq!(r.buffered_bytes(), 0);
}

#[test]
fn pure_acks_do_not_start_the_stream() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(77, &[], 0, false, ts(0));
    r.push(500, b"x", 0, false, ts(1));
    assert_eq!(drain(&mut r), vec![(0, 1, b"x".to_vec())]);
    assert_eq!(r.stats().segments, 1);
}

#[test]
fn one_segment_covering_several_waiting_pieces_fills_between_them() {
    let mut r = StreamReassembler::new(ReassemblyLimits::default());
    r.push(0, &[], 0, true, ts(0));
    r.push(3, b"c", 0, false, ts(1));
    r.push(6, b"f", 0, false, ts(2));
    r.push(2, b"bcdefgh", 0, false, ts(3)); // offsets 1..8, hole at 0 remains
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.buffered_bytes(), 7);
    assert_eq!(r.stats().retransmitted_bytes, 2);
    r.push(1, b"a", 0, false, ts(4));
    assert_eq!(drain_bytes(&mut r, 0), b"abcdefgh");
    assert_eq!(r.buffered_bytes(), 0);
}

#[test]
fn moving_the_start_back_keeps_the_stream_limit_and_the_buffer_bound() {
    // The start moves back 4 bytes, so the 8-byte limit now ends 4 bytes earlier.
    let mut r = StreamReassembler::new(limits(100, 8));
    r.push(104, b"efghijkl", 0, false, ts(1));
    r.push(100, b"abcd", 0, false, ts(0));
    assert_eq!(drain_bytes(&mut r, 0), b"abcdefgh");
    assert_eq!(r.stats().beyond_stream_limit_bytes, 4);
    assert!(!r.has_gap());

    // A move that would leave a hole needs the ready bytes to fit in the buffer:
    // here 20 ready bytes do not fit in 10, so the earlier segment is not taken.
    let mut r = StreamReassembler::new(limits(10, 1000));
    r.push(100, &[1u8; 20], 0, false, ts(1));
    r.push(95, b"ab", 0, false, ts(0));
    assert!(r.buffered_bytes() <= 10);
    assert_eq!(drain(&mut r), vec![(0, 1, vec![1u8; 20])]);
    assert_eq!(r.stats().retransmitted_bytes, 2);

    // Without a hole the move is always fine (the bytes flow on at once).
    let mut r = StreamReassembler::new(limits(10, 1000));
    r.push(100, &[1u8; 20], 0, false, ts(1));
    r.push(95, b"abcde", 0, false, ts(0));
    assert_eq!(r.buffered_bytes(), 0);
    let mut expected = b"abcde".to_vec();
    expected.extend_from_slice(&[1u8; 20]);
    assert_eq!(drain_bytes(&mut r, 0), expected);
}

#[test]
fn a_segment_spanning_held_bytes_and_beyond_is_kept_whole() {
    // Small buffer: the tail beyond the held bytes must flow straight through
    // rather than be counted against the buffer.
    let mut r = StreamReassembler::new(limits(4, 1000));
    r.push(0, &[], 0, true, ts(0));
    r.push(3, b"cd", 0, false, ts(1)); // held at offsets 2..4
    r.push(1, b"abcdefghijkl", 0, false, ts(2));
    assert_eq!(r.stats().dropped_over_limit_bytes, 0);
    assert_eq!(r.stats().retransmitted_bytes, 2);
    assert_eq!(drain_bytes(&mut r, 0), b"abcdefghijkl");

    // The same through a moved start (3 bytes back, within the 4-byte window): the
    // earlier segment covers the old start and runs past everything seen.
    let mut r = StreamReassembler::new(limits(4, 1000));
    r.push(10, b"kl", 0, false, ts(1));
    r.push(7, b"hijklmnop", 0, false, ts(2));
    assert_eq!(r.stats().dropped_over_limit_bytes, 0);
    assert_eq!(drain_bytes(&mut r, 0), b"hijklmnop");
    // 5 bytes back is outside the window: not part of the stream.
    let mut r = StreamReassembler::new(limits(4, 1000));
    r.push(10, b"kl", 0, false, ts(1));
    r.push(5, b"fghijklmnop", 0, false, ts(2));
    assert_eq!(drain_bytes(&mut r, 0), b"klmnop");
}

#[test]
fn skipped_stretches_are_dropped_jumped_and_not_held() {
    let mut r = StreamReassembler::new(limits(8, 64));
    r.push(0xffff_fff0, &[], 0, true, ts(0));
    r.push(0xffff_fff1, b"head", 0, false, ts(1));
    assert_eq!(drain_bytes(&mut r, 0), b"head");
    // The reader needs nothing before offset 100 (the stream wraps its sequence
    // numbers on the way).
    r.skip_until(100);
    // In-order bytes in the stretch are dropped on arrival; a cut hole is jumped.
    r.push(0xffff_fff5, &[7; 30], 20, false, ts(2));
    assert!(!r.has_gap());
    assert_eq!(r.next_stream_offset(), 54);
    // Bytes after a hole in the stretch are not held, whatever the buffer bound,
    // and the hole (lost bytes nobody needs) is jumped.
    r.push(0xffff_fff1u32.wrapping_add(70), &[8; 20], 0, false, ts(3));
    assert_eq!(r.buffered_bytes(), 0);
    assert_eq!(r.next_stream_offset(), 90);
    // Bytes straddling the end of the stretch: the part after it is delivered, and
    // the lost bytes before it no longer block.
    r.push(
        0xffff_fff1u32.wrapping_add(96),
        b"abcdTAIL",
        0,
        false,
        ts(4),
    );
    assert!(!r.has_gap());
    assert_eq!(drain(&mut r), vec![(100, 4, b"TAIL".to_vec())]);
    assert_eq!(r.stats().skipped_bytes, 30 + 20 + 4);
    assert_eq!(r.stats().skipped_span, 96);
    assert_eq!(r.stats().gap_bytes, 0);
    // Skipped bytes do not count against the stream bound: 64 bytes were needed, 8
    // so far, so 56 more pass.
    r.push(0xffff_fff1u32.wrapping_add(104), &[9; 60], 0, false, ts(5));
    assert_eq!(drain_bytes(&mut r, 104), vec![9; 56]);
    assert_eq!(r.stats().beyond_stream_limit_bytes, 4);
}

#[test]
fn held_bytes_in_a_skipped_stretch_are_let_go() {
    let mut r = StreamReassembler::new(limits(64, 1024));
    r.push(9, &[], 0, true, ts(0));
    r.push(10, b"ab", 0, false, ts(1));
    r.push(20, b"0123456789", 0, false, ts(2));
    assert_eq!(r.buffered_bytes(), 10);
    assert_eq!(drain_bytes(&mut r, 0), b"ab");
    // Needed again from offset 15: the hole before it and the held bytes before it go.
    r.skip_until(15);
    assert_eq!(r.buffered_bytes(), 0);
    assert_eq!(drain(&mut r), vec![(15, 2, b"56789".to_vec())]);
    assert_eq!(r.stats().skipped_bytes, 5);
    // A hole after the stretch still blocks.
    r.push(40, b"x", 0, false, ts(3));
    assert!(r.has_gap());
    // An offset already passed changes nothing.
    r.skip_until(3);
    assert!(r.has_gap());
    assert_eq!(r.next_stream_offset(), 20);
}
