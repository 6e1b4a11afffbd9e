//! What a tracked flow's payload turns into: the walk of a direction's TLS
//! records (headers always copied, small records whole, larger ones as far as the
//! body allowance reaches, the rest skipped), the resume point userspace set, the
//! byte budget as a safety bound. The contract is `DirectionState` in
//! tlsmon-common.
//!
//! Both functions are global BPF functions (exported, never inlined): the
//! verifier checks each once on its own instead of on every path of the
//! classifier that copies payload, which keeps the loops here (records per packet,
//! chunks per range) off the per-path bill.

use aya_ebpf::{bindings::__sk_buff, helpers::bpf_skb_load_bytes};
use tlsmon_common::{
    seq_before, Counter, DirectionState, CHUNK_SIZE, DIR_COPY_ALL, DIR_FOLLOWING, DIR_RESUME,
    DIR_SEEN, DIR_SKIPPED, EVENT_AFTER_SKIP, MAX_CHUNKS_PER_PACKET, MAX_RECORDS_PER_PACKET,
    MAX_RECORD_BODY, RECORD_HEADER_LEN, SMALL_RECORD_MAX,
};

use crate::{
    diag,
    emit::{fill_payload_header, output, Sighting},
    maps::{count, HEADER_LEN, SCRATCH},
    packet::Packet,
};

/// One payload packet of a tracked flow, as the copy functions need it, and the
/// walk's position in it.
pub struct PayloadJob {
    pub pkt: Packet,
    pub sighting: Sighting,
    /// Event flags for the packet's first event (`EVENT_OPENS_CONNECTION`);
    /// cleared once an event carried them.
    pub first_flags: u32,
    /// Walk: payload offset of the next byte to look at.
    pub pos: u32,
    /// Walk step's result: a range to take first (offset, length | WANT_COPY).
    pub first_off: u32,
    pub first_len: u32,
    /// Walk step's result: a range to take after `first` (length 0: none).
    pub then_off: u32,
    pub then_len: u32,
    /// Bytes to copy not sent yet (offset, length): adjacent copies (a record
    /// header and its body) become one event.
    pub pending_off: u32,
    pub pending_len: u32,
}

impl PayloadJob {
    /// A job for `pkt` seen at `sighting`, its first event carrying `first_flags`.
    #[inline(always)]
    pub fn new(pkt: &Packet, sighting: &Sighting, first_flags: u8) -> Self {
        PayloadJob {
            pkt: Packet { ..*pkt },
            sighting: Sighting { ..*sighting },
            first_flags: first_flags as u32,
            pos: POS_UNSTARTED,
            first_off: 0,
            first_len: 0,
            then_off: 0,
            then_len: 0,
            pending_off: 0,
            pending_len: 0,
        }
    }
}

/// `take`'s `len_want` bit: copy the range (else skip it).
const WANT_COPY: u32 = 1 << 31;
/// `take`'s `len_want` bit: send the pending copy (the packet is walked).
const FLUSH: u32 = 1 << 30;
/// `take`'s `len_want` bits holding the length.
const LEN_MASK: u32 = FLUSH - 1;

/// Steps of the walk in one packet: a body remainder and a header per record.
const MAX_WALK_STEPS: u32 = 2 * MAX_RECORDS_PER_PACKET + 1;

/// [`tlsmon_walk_step`] results.
const STEP_GO_ON: i32 = 0;
const STEP_DONE: i32 = 1;

/// `PayloadJob::pos` before the walk has looked at the packet.
const POS_UNSTARTED: u32 = u32::MAX;

/// Copies what the direction `dir` wants of `job`'s payload (see the module
/// doc): the walk's steps and the takes they ask for. Inlined into the
/// classifier, so that the global functions it calls nest only one deep (the
/// classifier's own stack leaves little of the 512 bytes).
#[inline(always)]
pub fn copy_payload(skb: *mut __sk_buff, job: &mut PayloadJob, dir: *mut DirectionState) {
    let job: *mut PayloadJob = job;
    let mut step: u32 = 0;
    while step <= MAX_WALK_STEPS {
        let result = tlsmon_walk_step(skb, job, dir, (step == MAX_WALK_STEPS) as u32);
        // SAFETY: the caller's job, alive for the call; only read here.
        let (first_off, first_len, then_off, then_len) = unsafe {
            let j = &*job;
            (j.first_off, j.first_len, j.then_off, j.then_len)
        };
        if first_len & LEN_MASK != 0 {
            tlsmon_take(skb, job, dir, first_off, first_len);
        }
        if then_len & LEN_MASK != 0 {
            tlsmon_take(skb, job, dir, then_off, then_len);
        }
        if result != STEP_GO_ON {
            break;
        }
        step += 1;
    }
    tlsmon_take(skb, job, dir, 0, FLUSH);
}

/// One step of the walk over `job`'s payload: on the first call, where the
/// packet stands against the direction (copied whole when not followed, a gap,
/// a retransmission); then the rest of the current record's body in the packet,
/// or (part of) the next header. Sets the ranges to take in `job` and moves
/// `job.pos` and the direction's cursor. [`STEP_DONE`] when the packet is
/// walked or the direction stopped following; with `last` non-zero (the walk's
/// bound reached) the rest of the packet is copied whole and following stops.
#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_walk_step(
    skb: *mut __sk_buff,
    job: *mut PayloadJob,
    dir: *mut DirectionState,
    last: u32,
) -> i32 {
    if job.is_null() || dir.is_null() {
        return STEP_DONE;
    }
    // SAFETY: a stack value of the classifier and a flow-map value, alive for
    // the call; checked non-null above.
    let (j, d) = unsafe { (&mut *job, &mut *dir) };
    j.first_len = 0;
    j.then_len = 0;
    let len = j.pkt.payload_len;
    let seq = j.pkt.seq;
    if j.pos == POS_UNSTARTED {
        if d.flags & DIR_FOLLOWING == 0 {
            let end = seq.wrapping_add(len);
            if d.flags & DIR_SEEN == 0 || seq_before(d.cursor, end) {
                d.cursor = end;
            }
            d.flags |= DIR_SEEN;
            j.first_off = 0;
            j.first_len = len | WANT_COPY;
            return STEP_DONE;
        }
        if seq_before(d.cursor, seq) {
            // The packet starts past the byte expected next: a loss or
            // reordering before the hook. Where records are is unknown now.
            stop_following(d);
            j.first_off = 0;
            j.first_len = len | WANT_COPY;
            return STEP_DONE;
        }
        let behind = d.cursor.wrapping_sub(seq);
        if behind >= len {
            // Bytes walked past already (a retransmission): nothing new.
            count(Counter::BytesSkipped, len as u64);
            return STEP_DONE;
        }
        if behind != 0 {
            count(Counter::BytesSkipped, behind as u64);
        }
        j.pos = behind;
    }
    let pos = j.pos;
    if pos >= len {
        return STEP_DONE;
    }
    let avail = len - pos;
    if last != 0 {
        // More records in this packet than are walked: the rest whole.
        stop_following(d);
        j.first_off = pos;
        j.first_len = avail | WANT_COPY;
        return STEP_DONE;
    }
    if d.record_left != 0 {
        let run = if d.record_left < avail {
            d.record_left
        } else {
            avail
        };
        let copy = if d.flags & DIR_COPY_ALL != 0 {
            run
        } else if d.record_copy < run {
            d.record_copy
        } else {
            run
        };
        d.record_left -= run;
        d.record_copy = d.record_copy.saturating_sub(copy);
        d.cursor = d.cursor.wrapping_add(run);
        j.first_off = pos;
        j.first_len = copy | WANT_COPY;
        j.then_off = pos + copy;
        j.then_len = run - copy;
        j.pos = pos + run;
        return STEP_GO_ON;
    }
    let need = RECORD_HEADER_LEN - d.header_have;
    let got = if need < avail { need } else { avail };
    if !read_header(skb, j.pkt.payload_off + pos, got, d) {
        stop_following(d);
        j.first_off = pos;
        j.first_len = avail | WANT_COPY;
        return STEP_DONE;
    }
    d.cursor = d.cursor.wrapping_add(got);
    j.first_off = pos;
    j.first_len = got | WANT_COPY;
    j.pos = pos + got;
    if d.header_have == RECORD_HEADER_LEN && !start_record(d) {
        stop_following(d);
        j.then_off = pos + got;
        j.then_len = (avail - got) | WANT_COPY;
        return STEP_DONE;
    }
    STEP_GO_ON
}

/// Reads `got` (1 to 5) header bytes at packet offset `off` into `d`'s partial
/// header. False when the packet could not be read.
#[inline(always)]
fn read_header(skb: *mut __sk_buff, off: u32, got: u32, d: &mut DirectionState) -> bool {
    let mut bytes = [0u8; RECORD_HEADER_LEN as usize];
    if d.header_have == 0 && got == RECORD_HEADER_LEN {
        // The common case: a whole header in the packet, one load.
        // SAFETY: fixed-size load into a stack array of that size; the helper
        // checks the packet bounds.
        let loaded = unsafe {
            bpf_skb_load_bytes(
                skb as *const _,
                off,
                bytes.as_mut_ptr() as *mut _,
                RECORD_HEADER_LEN,
            )
        };
        if loaded != 0 {
            return false;
        }
        d.header_bytes = header_word(0, bytes[0])
            | header_word(1, bytes[1])
            | header_word(3, bytes[3])
            | header_word(4, bytes[4]);
        d.header_have = RECORD_HEADER_LEN;
        return true;
    }
    // A header split over packets: byte by byte, at most five.
    let mut i: u32 = 0;
    while i < RECORD_HEADER_LEN {
        if i >= got {
            break;
        }
        let mut byte = [0u8; 1];
        // SAFETY: one-byte load into a one-byte stack array.
        let loaded =
            unsafe { bpf_skb_load_bytes(skb as *const _, off + i, byte.as_mut_ptr() as *mut _, 1) };
        if loaded != 0 {
            return false;
        }
        let index = d.header_have;
        d.header_bytes |= header_word(index, byte[0]);
        d.header_have = index + 1;
        i += 1;
    }
    true
}

/// Where header byte `index` goes in `DirectionState::header_bytes`: type in
/// bits 24..32, major version in 16..24, length in 0..16 (the minor version is
/// not kept).
#[inline(always)]
fn header_word(index: u32, byte: u8) -> u32 {
    let b = byte as u32;
    match index {
        0 => b << 24,
        1 => b << 16,
        3 => b << 8,
        4 => b,
        _ => 0,
    }
}

/// A complete header was read: checks it and sets up its body. False when it is
/// no TLS record header.
#[inline(always)]
fn start_record(d: &mut DirectionState) -> bool {
    let word = d.header_bytes;
    d.header_have = 0;
    d.header_bytes = 0;
    let content_type = word >> 24;
    let major = (word >> 16) & 0xff;
    let body = word & 0xffff;
    // ChangeCipherSpec, alert, handshake, application data, heartbeat.
    if !(20..=24).contains(&content_type) || major != 3 || body > MAX_RECORD_BODY {
        return false;
    }
    let copy = if body <= SMALL_RECORD_MAX {
        body
    } else {
        let c = if body < d.body_allowance {
            body
        } else {
            d.body_allowance
        };
        d.body_allowance -= c;
        c
    };
    d.record_left = body;
    d.record_copy = copy;
    true
}

/// The direction no longer follows records: copied whole from here on.
#[inline(always)]
fn stop_following(d: &mut DirectionState) {
    d.flags &= !DIR_FOLLOWING;
    d.record_left = 0;
    d.record_copy = 0;
    d.header_have = 0;
    d.header_bytes = 0;
    count(Counter::RecordFollowingStopped, 1);
}

/// Copies (with [`WANT_COPY`] in `len_want`) or skips the payload range at
/// offset `off` of `len_want & LEN_MASK` bytes: bytes before the resume point
/// are skipped whatever is wanted. A copy is held back while the next one may
/// continue it, and sent on a skip, a gap or [`FLUSH`]: bounded by the budget
/// and MAX_CHUNKS_PER_PACKET chunks (the rest is cut and counted).
#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_take(
    skb: *mut __sk_buff,
    job: *mut PayloadJob,
    dir: *mut DirectionState,
    off: u32,
    len_want: u32,
) -> i32 {
    if job.is_null() || dir.is_null() {
        return 0;
    }
    // SAFETY: a stack value of the classifier and a flow-map value, alive for
    // the call; checked non-null above.
    let (job, d) = unsafe { (&mut *job, &mut *dir) };
    let len = len_want & LEN_MASK;
    // What of the range is skipped (before the resume point, or all of it when
    // not wanted), and what is copied after that.
    let mut skip = 0;
    if len_want & WANT_COPY == 0 {
        skip = len;
    } else if d.flags & DIR_RESUME != 0 {
        let start = job.pkt.seq.wrapping_add(off);
        if seq_before(start, d.resume_seq) {
            let before = d.resume_seq.wrapping_sub(start);
            skip = if before < len { before } else { len };
        }
    }
    let copy_off = off + skip;
    let copy = len - skip;
    let continues = job.pending_len != 0 && job.pending_off + job.pending_len == copy_off;
    // One place sends the pending copy: a flush, a skip, or a copy that does
    // not continue it.
    if len_want & FLUSH != 0 || skip != 0 || (copy != 0 && !continues) {
        flush(skb, job, d);
    }
    if skip != 0 {
        count(Counter::BytesSkipped, skip as u64);
        d.flags |= DIR_SKIPPED;
    }
    if copy != 0 {
        if continues && skip == 0 {
            job.pending_len += copy;
        } else {
            job.pending_off = copy_off;
            job.pending_len = copy;
        }
    }
    0
}

/// Sends the job's pending copy, within the budget.
#[inline(always)]
fn flush(skb: *mut __sk_buff, job: &mut PayloadJob, d: &mut DirectionState) {
    let len = job.pending_len;
    if len == 0 {
        return;
    }
    job.pending_len = 0;
    let wanted = if len < d.budget { len } else { d.budget };
    let sent = copy_range(skb, job, d, job.pending_off, wanted, len);
    d.budget -= sent;
}

/// Sends `wanted` bytes from payload offset `off` in chunks; `len - sent` bytes
/// of the range are cut (budget, chunk limit). Returns the bytes sent.
#[inline(always)]
fn copy_range(
    skb: *mut __sk_buff,
    job: &mut PayloadJob,
    d: &mut DirectionState,
    off: u32,
    wanted: u32,
    len: u32,
) -> u32 {
    if d.flags & DIR_SKIPPED != 0 && wanted != 0 {
        // The first event of this range is the first copied since a skip.
        job.first_flags |= EVENT_AFTER_SKIP as u32;
        d.flags &= !DIR_SKIPPED;
    }
    let job: *mut PayloadJob = job;
    let mut sent: u32 = 0;
    let mut chunk: u32 = 0;
    while chunk < MAX_CHUNKS_PER_PACKET && sent < wanted {
        let remaining = wanted - sent;
        let n = if remaining < CHUNK_SIZE as u32 {
            remaining
        } else {
            CHUNK_SIZE as u32
        };
        let last = sent + n >= wanted || chunk + 1 == MAX_CHUNKS_PER_PACKET;
        let cut = if last { len - sent - n } else { 0 };
        tlsmon_emit_chunk(skb, job, off + sent, n, cut);
        sent += n;
        chunk += 1;
    }
    let beyond = len - sent;
    if beyond != 0 {
        count(Counter::BytesCut, beyond as u64);
        if diag::enabled() && sent != 0 {
            diag::cut(beyond);
        }
    }
    sent
}

/// Sends one event of `n` (1 to CHUNK_SIZE) payload bytes from offset `off`,
/// `cut` bytes cut after them; the job's first flags go on it (then cleared).
/// Bytes it could not send are counted as cut.
#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_emit_chunk(
    skb: *mut __sk_buff,
    job: *mut PayloadJob,
    off: u32,
    n: u32,
    cut: u32,
) -> i32 {
    if job.is_null() {
        return 0;
    }
    // SAFETY: a stack value of the classifier, alive for the call.
    let job = unsafe { &mut *job };
    if n == 0 {
        return 0;
    }
    let Some(record) = SCRATCH.get_ptr_mut(0) else {
        count(Counter::BytesCut, n as u64);
        return 0;
    };
    // SAFETY: this CPU's scratch slot; nothing else touches it during the run.
    let record = unsafe { &mut *record };
    // Masked to 1..=CHUNK_SIZE for the verifier; equal when n <= CHUNK_SIZE.
    let n = ((n - 1) & (CHUNK_SIZE as u32 - 1)) + 1;
    let pkt = &job.pkt;
    fill_payload_header(
        &mut record.header,
        &job.sighting,
        pkt,
        pkt.seq.wrapping_add(off),
    );
    record.header.payload_len = n;
    record.header.cut_len = cut;
    record.header.event_flags = job.first_flags as u8;
    // SAFETY: the destination is the record's CHUNK_SIZE payload array and `n`
    // is at most CHUNK_SIZE; the helper checks the packet offset itself.
    let loaded = unsafe {
        bpf_skb_load_bytes(
            skb as *const _,
            pkt.payload_off + off,
            record.payload.as_mut_ptr() as *mut _,
            n,
        )
    };
    if loaded != 0 || !output(record, HEADER_LEN + n) {
        count(Counter::BytesCut, n as u64);
        return 0;
    }
    job.first_flags = 0;
    1
}
