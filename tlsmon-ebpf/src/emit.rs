//! Builds RingBuf events in the per-CPU scratch buffer and sends them.

use aya_ebpf::{helpers::bpf_skb_load_bytes, programs::TcContext};
use tlsmon_common::{
    Counter, EventHeader, EventKind, CHUNK_SIZE, MAX_CHUNKS_PER_PACKET, TCP_FIN, TCP_RST,
};

use crate::{
    diag,
    maps::{count, EventRecord, EVENTS, HEADER_LEN, SCRATCH},
    packet::Packet,
};

/// Where and when a packet was seen: the same for every event it produces.
pub struct Sighting {
    pub ts_ns: u64,
    pub ifindex: u32,
    pub direction: u8,
    /// The flow's [`tlsmon_common::FlowState::cgroup_id`] (0 while unknown).
    pub cgroup_id: u64,
}

#[inline(always)]
fn header(sighting: &Sighting, pkt: &Packet, kind: EventKind, seq: u32, flags: u8) -> EventHeader {
    EventHeader {
        ts_ns: sighting.ts_ns,
        ifindex: sighting.ifindex,
        kind: kind as u16,
        direction: sighting.direction,
        family: pkt.family,
        src_addr: pkt.src,
        dst_addr: pkt.dst,
        src_port: pkt.src_port,
        dst_port: pkt.dst_port,
        seq,
        tcp_flags: flags,
        event_flags: 0,
        _pad: [0; 2],
        payload_len: 0,
        cut_len: 0,
        ack_seq: pkt.ack_seq,
        cgroup_id: sighting.cgroup_id,
    }
}

/// Sends `len` bytes of the scratch record (header plus payload) to the RingBuf.
#[inline(always)]
pub(crate) fn output(record: &EventRecord, len: u32) -> bool {
    // SAFETY: `len` never exceeds size_of::<EventRecord>() (callers mask the
    // payload length to CHUNK_SIZE), and the record is a live per-CPU map value.
    let bytes = unsafe {
        core::slice::from_raw_parts(record as *const EventRecord as *const u8, len as usize)
    };
    if EVENTS.output::<[u8]>(bytes, 0).is_ok() {
        count(Counter::EventsSent, 1);
        true
    } else {
        count(Counter::EventsDropped, 1);
        diag::ringbuf_full();
        false
    }
}

/// Copies up to `allowed` payload bytes of `pkt` to the RingBuf in chunks of at
/// most CHUNK_SIZE (GSO skbs span several chunks). Returns the bytes consumed from
/// the budget; bytes beyond the budget or the chunk limit, and bytes of events the
/// full RingBuf refused, are counted as cut. `first_flags` go on the first chunk.
#[inline(always)]
pub fn send_payload(
    ctx: &TcContext,
    sighting: &Sighting,
    pkt: &Packet,
    allowed: u32,
    first_flags: u8,
) -> u32 {
    let wanted = if pkt.payload_len < allowed {
        pkt.payload_len
    } else {
        allowed
    };
    let Some(record) = SCRATCH.get_ptr_mut(0) else {
        count(Counter::BytesCut, pkt.payload_len as u64);
        return 0;
    };
    // SAFETY: this CPU's scratch slot; nothing else touches it during the run.
    let record = unsafe { &mut *record };
    // Payload events carry no FIN/RST: those become their own control event,
    // placed after the data in sequence space.
    let flags = pkt.tcp_flags & !(TCP_FIN | TCP_RST);
    let mut sent: u32 = 0;
    let mut chunk: u32 = 0;
    while chunk < MAX_CHUNKS_PER_PACKET && sent < wanted {
        let remaining = wanted - sent;
        // Mask to a constant bound so the verifier sees 1..=CHUNK_SIZE; equal to
        // min(remaining, CHUNK_SIZE) because remaining >= 1.
        let len = if remaining < CHUNK_SIZE as u32 {
            remaining
        } else {
            CHUNK_SIZE as u32
        };
        let len = ((len - 1) & (CHUNK_SIZE as u32 - 1)) + 1;
        let last = sent + len >= wanted || chunk + 1 == MAX_CHUNKS_PER_PACKET;
        let mut h = header(
            sighting,
            pkt,
            EventKind::Payload,
            pkt.seq.wrapping_add(sent),
            flags,
        );
        h.payload_len = len;
        h.event_flags = if chunk == 0 { first_flags } else { 0 };
        h.cut_len = if last {
            pkt.payload_len - sent - len
        } else {
            0
        };
        record.header = h;
        // SAFETY: the destination is the record's CHUNK_SIZE payload array and
        // `len` is at most CHUNK_SIZE; the helper checks the packet offset itself.
        let loaded = unsafe {
            bpf_skb_load_bytes(
                ctx.skb.skb as *const _,
                pkt.payload_off + sent,
                record.payload.as_mut_ptr() as *mut _,
                len,
            )
        };
        // Counted here rather than summed: a sum that differs between the two
        // branches would keep the verifier from merging them, and it explores
        // every chunk's branches anew.
        if loaded != 0 || !output(record, HEADER_LEN + len) {
            count(Counter::BytesCut, len as u64);
        }
        sent += len;
        chunk += 1;
    }
    let beyond = pkt.payload_len - sent;
    if beyond != 0 {
        count(Counter::BytesCut, beyond as u64);
        // Copied something and still cut: the budget ran out in this packet
        // (later packets of the direction copy nothing), or the chunk limit.
        if diag::enabled() && sent != 0 {
            diag::cut(beyond);
        }
    }
    sent
}

/// Copies the first chunk of `pkt`'s payload (at most CHUNK_SIZE bytes, and at
/// most `allowed`) to the RingBuf in one event; the rest is counted as cut. For a
/// packet outside any flow (a SYN carrying data): no loop, so the verifier's
/// bill stays small on a path every SYN may take.
#[inline(always)]
pub fn send_first_chunk(ctx: &TcContext, sighting: &Sighting, pkt: &Packet, allowed: u32) {
    let wanted = if pkt.payload_len < allowed {
        pkt.payload_len
    } else {
        allowed
    };
    if wanted == 0 {
        count(Counter::BytesCut, pkt.payload_len as u64);
        return;
    }
    let Some(record) = SCRATCH.get_ptr_mut(0) else {
        count(Counter::BytesCut, pkt.payload_len as u64);
        return;
    };
    // SAFETY: this CPU's scratch slot; nothing else touches it during the run.
    let record = unsafe { &mut *record };
    let len = if wanted < CHUNK_SIZE as u32 {
        wanted
    } else {
        CHUNK_SIZE as u32
    };
    // Masked to 1..=CHUNK_SIZE for the verifier; equal to `len` since len >= 1.
    let len = ((len - 1) & (CHUNK_SIZE as u32 - 1)) + 1;
    let flags = pkt.tcp_flags & !(TCP_FIN | TCP_RST);
    let mut h = header(sighting, pkt, EventKind::Payload, pkt.seq, flags);
    h.payload_len = len;
    h.cut_len = pkt.payload_len - len;
    record.header = h;
    // SAFETY: the destination is the record's CHUNK_SIZE payload array and `len`
    // is at most CHUNK_SIZE; the helper checks the packet offset itself.
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            pkt.payload_off,
            record.payload.as_mut_ptr() as *mut _,
            len,
        )
    };
    if loaded != 0 || !output(record, HEADER_LEN + len) {
        count(Counter::BytesCut, len as u64);
    }
    count(Counter::BytesCut, (pkt.payload_len - len) as u64);
}

/// Sends a FIN or RST control event. Its sequence number is the one the flag
/// occupies: just after the segment's payload.
#[inline(always)]
pub fn send_control(sighting: &Sighting, pkt: &Packet, kind: EventKind) {
    let Some(record) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; nothing else touches it during the run.
    let record = unsafe { &mut *record };
    let seq = pkt.seq.wrapping_add(pkt.payload_len);
    record.header = header(sighting, pkt, kind, seq, pkt.tcp_flags);
    output(record, HEADER_LEN);
}
