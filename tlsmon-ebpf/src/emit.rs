//! Builds RingBuf events in the per-CPU scratch buffer and sends them. The
//! payload of tracked flows goes through `records` (record walk, resume point,
//! budget), which builds its events with [`header`] and [`output`].

use aya_ebpf::{helpers::bpf_skb_load_bytes, programs::TcContext};
use tlsmon_common::{Counter, EventHeader, EventKind, CHUNK_SIZE, TCP_FIN, TCP_RST};

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

/// Fills `h` in place for a payload event of `pkt` at `seq` (no temporary on the
/// stack: the record walk's global functions share the 512-byte stack with the
/// classifier that calls them).
#[inline(always)]
pub fn fill_payload_header(h: &mut EventHeader, sighting: &Sighting, pkt: &Packet, seq: u32) {
    h.ts_ns = sighting.ts_ns;
    h.ifindex = sighting.ifindex;
    h.kind = EventKind::Payload as u16;
    h.direction = sighting.direction;
    h.family = pkt.family;
    h.src_addr = pkt.src;
    h.dst_addr = pkt.dst;
    h.src_port = pkt.src_port;
    h.dst_port = pkt.dst_port;
    h.seq = seq;
    // Payload events carry no FIN/RST: those become their own control event,
    // placed after the data in sequence space.
    h.tcp_flags = pkt.tcp_flags & !(TCP_FIN | TCP_RST);
    h.event_flags = 0;
    h._pad = [0; 2];
    h.payload_len = 0;
    h.cut_len = 0;
    h.ack_seq = pkt.ack_seq;
    h.cgroup_id = sighting.cgroup_id;
}

/// Sends `len` bytes of the scratch record (header plus payload) to the RingBuf.
#[inline(always)]
pub fn output(record: &EventRecord, len: u32) -> bool {
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
