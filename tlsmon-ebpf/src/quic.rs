//! QUIC over UDP: the datagrams of a QUIC connection that carry long-header
//! packets (Initial, Handshake, Retry, Version Negotiation) are copied in both
//! directions within the flow's byte budget, one chunk per datagram; the first
//! short-header (1-RTT) datagram of each direction is reported by its first byte
//! only, and once both directions did so the connection is forgotten.
//!
//! A client's Initial (a long header of QUIC v1 or v2 of type Initial, in a
//! datagram of at least 1200 bytes) only opens a connection: it is copied and
//! kept in its own LRU map of openings, with at most
//! `MAX_UNANSWERED_DATAGRAMS` client datagrams copied until the other side
//! answers with a long header. Only then is the connection tracked, in a map
//! of its own, so spoofed Initials churn openings and never evict a tracked
//! connection. New openings come from a per-CPU token bucket: a flood of
//! spoofed Initials costs a bounded number of events per second, and what it
//! is refused is counted.
//!
//! Every UDP datagram runs [`tlsmon_quic_datagram`], a global BPF function: the
//! verifier checks it once on its own instead of on every classifier path that
//! leads to it; each datagram of a GSO batch is looked at by a second one,
//! [`tlsmon_quic_one`], checked once too. A long header of an unknown version
//! returns after its first five bytes; a payload whose first bit is clear (a
//! short header, or most plain UDP: the fixed bit cannot tell, since peers may
//! grease it) returns after one read of the QUIC hint table unless a tracked
//! QUIC connection hashes to its slot (or the skb is a GSO batch).

use core::sync::atomic::{AtomicU32, Ordering};

use aya_ebpf::{
    bindings::{__sk_buff, BPF_ANY},
    helpers::{bpf_ktime_get_ns, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
    programs::TcContext,
};
use tlsmon_common::{
    hint_slot,
    quic::{
        quic_head, QuicFlow, QuicHead, QuicOpeningRate, MAX_QUIC_FLOWS, MAX_QUIC_OPENINGS,
        MAX_UNANSWERED_DATAGRAMS, MIN_INITIAL_DATAGRAM, QUIC_OPENINGS_PER_SECOND, SHORT_FROM_HI,
        SHORT_FROM_LO,
    },
    Counter, EventKind, FlowKey, CHUNK_SIZE, DIRECTION_EGRESS, EVENT_OPENS_CONNECTION, FAMILY_IPV4,
    HINT_SLOTS, MAX_CHUNKS_PER_PACKET,
};

use crate::{
    emit::output,
    flow::accepted_by_host,
    maps::{byte_budget, count, HEADER_LEN, SCRATCH},
    packet::{bytes_at, Network},
};

/// Answered QUIC connections (`tlsmon_common::quic::QUIC_FLOWS_MAP`).
#[map(name = "TLSMON_QUIC_FLOWS")]
pub static QUIC_FLOWS: LruHashMap<FlowKey, QuicFlow> =
    LruHashMap::with_max_entries(MAX_QUIC_FLOWS, 0);

/// Client Initials waiting for an answer (`tlsmon_common::quic::QUIC_OPENINGS_MAP`).
#[map(name = "TLSMON_QUIC_OPENINGS")]
pub static QUIC_OPENINGS: LruHashMap<FlowKey, QuicFlow> =
    LruHashMap::with_max_entries(MAX_QUIC_OPENINGS, 0);

/// Per hint slot, QUIC connections that may live there (`QUIC_HINTS_MAP`).
#[map(name = "TLSMON_QUIC_HINTS")]
pub static QUIC_HINTS: Array<u32> = Array::with_max_entries(HINT_SLOTS, 0);

/// This CPU's budget of new openings (`QUIC_RATE_MAP`).
#[map(name = "TLSMON_QUIC_RATE")]
pub static QUIC_RATE: PerCpuArray<QuicOpeningRate> = PerCpuArray::with_max_entries(1, 0);

/// UDP headers further into the packet than this (long IPv6 extension chains)
/// are not looked at: the verifier needs a bound on packet offsets.
const MAX_L4_OFFSET: u32 = 512;
/// Datagram offsets up to this are read directly when in the linear data.
const MAX_DIRECT_OFFSET: u32 = 1024;
const UDP_HLEN: u32 = 8;
/// Nanoseconds between two tokens of the openings bucket.
const NS_PER_OPENING: u64 = 1_000_000_000 / QUIC_OPENINGS_PER_SECOND;

/// Hands a UDP datagram whose network layer `net` parsed to the QUIC path: the
/// first global function reads its headers and says how many datagrams the
/// skb holds (a GSO batch holds several), the second looks at each. Both are
/// called from here, not one from the other, so that the classifier's frame
/// and one of theirs are all the stack ever holds.
#[inline(always)]
pub fn datagram(ctx: &TcContext, direction: u8, net: &Network) {
    let meta = u32::from(direction) | (u32::from(net.family) << 8);
    let datagrams = tlsmon_quic_datagram(
        ctx.skb.skb,
        meta,
        net.l3 as u32,
        net.l4 as u32,
        net.end as u32,
    );
    // The verifier knows nothing of what a global function returns, but LLVM
    // does, and would drop the constant bound below: read it back opaquely.
    // SAFETY: a read of a live local.
    let datagrams = unsafe { core::ptr::read_volatile(&datagrams) };
    let mut i = 0;
    while i < datagrams && i < MAX_CHUNKS_PER_PACKET as i32 {
        tlsmon_quic_one(ctx.skb.skb, i as u32);
        i += 1;
    }
}

/// The first global function (exported by tlsmon/build.rs so that it stays
/// one): `meta` holds the hook's direction (low byte) and the address family.
/// Returns how many datagrams [`tlsmon_quic_one`] is to look at (0 for
/// anything but QUIC).
#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_quic_datagram(
    skb: *mut __sk_buff,
    meta: u32,
    l3: u32,
    l4: u32,
    end: u32,
) -> i32 {
    let ctx = TcContext::new(skb);
    look(&ctx, (meta & 0xff) as u8, (meta >> 8) as u8, l3, l4, end) as i32
}

/// Where and from whom a datagram came: the same for each one of a GSO batch.
pub struct Sender {
    ifindex: u32,
    src_port: u16,
    dst_port: u16,
    direction: u8,
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// Per-CPU working memory of the QUIC path. The classifier's own frame leaves
/// little of the 512-byte stack to the functions it calls, so what is large
/// lives here.
pub struct QuicScratch {
    sender: Sender,
    /// Offset of the skb's first datagram, of its payload's end, and the
    /// distance between datagrams (gso_size, or the whole payload).
    first: u32,
    end: u32,
    step: u32,
    key: FlowKey,
    flow: QuicFlow,
    head: [u8; 8],
}

/// This CPU's [`QuicScratch`].
#[map(name = "TLSMON_QUIC_SCRATCH")]
pub static QUIC_SCRATCH: PerCpuArray<QuicScratch> = PerCpuArray::with_max_entries(1, 0);

/// The second global function: datagram number `index` of the skb whose
/// headers [`tlsmon_quic_datagram`] read into the scratch. Global so that the
/// verifier checks it once, not once per datagram of a GSO batch.
#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_quic_one(skb: *mut __sk_buff, index: u32) -> i32 {
    let Some(scratch) = QUIC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch slot; nothing else touches it during the run.
    let scratch = unsafe { &mut *scratch };
    if index >= MAX_CHUNKS_PER_PACKET {
        return 0;
    }
    let off = scratch.first.wrapping_add(index.wrapping_mul(scratch.step));
    if off >= scratch.end || off < scratch.first {
        return 0;
    }
    let left = scratch.end - off;
    let len = if left < scratch.step {
        left
    } else {
        scratch.step
    };
    let ctx = TcContext::new(skb);
    one(&ctx, scratch, off, len);
    0
}

#[inline(always)]
fn look(ctx: &TcContext, direction: u8, family: u8, l3: u32, l4: u32, end: u32) -> u32 {
    if l4 > MAX_L4_OFFSET || l3 >= l4 {
        return 0;
    }
    let Some(udp) = bytes_at::<8>(ctx, l4 as usize) else {
        return 0;
    };
    let payload_off = l4 + UDP_HLEN;
    let payload_end = if end < ctx.len() { end } else { ctx.len() };
    if payload_end < payload_off + 5 {
        return 0;
    }
    let Some(scratch) = QUIC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch slot; nothing else touches it during the run.
    let scratch = unsafe { &mut *scratch };
    // A long header of another version ends here; other plain UDP after one
    // read of the hint table (below).
    let Some(first) = head(ctx, payload_off, &mut scratch.head) else {
        return 0;
    };
    if quic_head(&first) == QuicHead::Other {
        return 0;
    }
    // Addresses read into the stack first: the packet pointers are then done
    // with before the scratch is written.
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if family == FAMILY_IPV4 {
        let Some(ip) = bytes_at::<20>(ctx, l3 as usize) else {
            return 0;
        };
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
    } else {
        let Some(ip) = bytes_at::<40>(ctx, l3 as usize) else {
            return 0;
        };
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
    }
    // SAFETY: the context pointer is valid for the run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let src_port = u16::from_be_bytes([udp[0], udp[1]]);
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    // A GSO skb (QUIC stacks send their flights that way) holds several
    // datagrams of gso_size bytes each, the last one maybe shorter.
    // SAFETY: the context pointer is valid for the run.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
    if gso_size == 0 && first[0] & 0x80 == 0 {
        // One datagram with a short header, or plain UDP: it matters only to a
        // tracked QUIC connection, and none hashes to an empty hint slot.
        let slot = hint_slot(ifindex, &src, src_port, &dst, dst_port) & (HINT_SLOTS - 1);
        if QUIC_HINTS.get(slot).is_none_or(|held| *held == 0) {
            return 0;
        }
    }
    let sender = &mut scratch.sender;
    sender.ifindex = ifindex;
    sender.src_port = src_port;
    sender.dst_port = dst_port;
    sender.direction = direction;
    sender.family = family;
    sender.src = src;
    sender.dst = dst;
    let whole = payload_end - payload_off;
    let step = if gso_size != 0 && gso_size < whole {
        gso_size
    } else {
        whole
    };
    if step == 0 {
        return 0;
    }
    scratch.first = payload_off;
    scratch.end = payload_end;
    scratch.step = step;
    let datagrams = whole.div_ceil(step);
    if datagrams > MAX_CHUNKS_PER_PACKET {
        // More datagrams in one skb than are looked at: only their count matters
        // (they may not even belong to a tracked connection), so they are cut.
        let looked_at = step * MAX_CHUNKS_PER_PACKET;
        count(Counter::BytesCut, u64::from(whole - looked_at));
        return MAX_CHUNKS_PER_PACKET;
    }
    datagrams
}

/// The first five bytes of the datagram at `off`: read directly when they are
/// in the linear data, else through the helper into `buf` (egress data sits in
/// fragments).
#[inline(always)]
fn head(ctx: &TcContext, off: u32, buf: &mut [u8; 8]) -> Option<[u8; 5]> {
    if off <= MAX_DIRECT_OFFSET {
        if let Some(bytes) = bytes_at::<5>(ctx, off as usize) {
            return Some(*bytes);
        }
    }
    // SAFETY: a 5-byte load into an 8-byte buffer; the helper checks the
    // packet bounds.
    let loaded =
        unsafe { bpf_skb_load_bytes(ctx.skb.skb as *const _, off, buf.as_mut_ptr() as *mut _, 5) };
    (loaded == 0).then(|| [buf[0], buf[1], buf[2], buf[3], buf[4]])
}

/// One datagram of `len` bytes at `off`.
#[inline(always)]
fn one(ctx: &TcContext, scratch: &mut QuicScratch, off: u32, len: u32) {
    if len < 5 {
        return;
    }
    let Some(first) = head(ctx, off, &mut scratch.head) else {
        return;
    };
    match quic_head(&first) {
        QuicHead::Other => {}
        QuicHead::Short => short_header(ctx, scratch, off, len),
        QuicHead::VersionNegotiation => long_header(ctx, scratch, off, len, false),
        QuicHead::Long { opens } => long_header(ctx, scratch, off, len, opens),
    }
}

/// Fills the scratch's key with the sender's connection; true when the
/// sender is its `lo` side.
#[inline(always)]
fn fill_key(scratch: &mut QuicScratch) -> bool {
    let sender = &scratch.sender;
    let (key, src_is_lo) = FlowKey::new(
        sender.ifindex,
        sender.family,
        &sender.src,
        sender.src_port,
        &sender.dst,
        sender.dst_port,
    );
    scratch.key = key;
    src_is_lo
}

#[inline(always)]
fn slot_of(sender: &Sender) -> u32 {
    hint_slot(
        sender.ifindex,
        &sender.src,
        sender.src_port,
        &sender.dst,
        sender.dst_port,
    ) & (HINT_SLOTS - 1)
}

/// A datagram starting with a long header: copied for a tracked connection or
/// an opening; the answer to an opening starts tracking; a client Initial of an
/// unknown connection opens one.
#[inline(always)]
fn long_header(ctx: &TcContext, scratch: &mut QuicScratch, off: u32, len: u32, opens: bool) {
    let src_is_lo = fill_key(scratch);
    if let Some(flow) = QUIC_FLOWS.get_ptr_mut(&scratch.key) {
        // SAFETY: a live value of the flow map; a concurrent update from another
        // CPU can at worst make a budget slightly off.
        let flow = unsafe { &mut *flow };
        copy(ctx, &scratch.sender, flow, src_is_lo, off, len, 0);
        return;
    }
    if let Some(opening) = QUIC_OPENINGS.get_ptr_mut(&scratch.key) {
        // SAFETY: a live value of the openings map.
        let opening = unsafe { &mut *opening };
        if (opening.client_is_lo != 0) == src_is_lo {
            if opening.unanswered >= MAX_UNANSWERED_DATAGRAMS {
                count(Counter::BytesCut, u64::from(len));
                return;
            }
            opening.unanswered += 1;
            copy(ctx, &scratch.sender, opening, src_is_lo, off, len, 0);
        } else {
            scratch.flow = *opening;
            answered(ctx, scratch, src_is_lo, off, len);
        }
        return;
    }
    if !opens || len < MIN_INITIAL_DATAGRAM {
        return;
    }
    if !accepted_by_host(ctx, scratch.sender.direction) {
        return;
    }
    if !take_opening_token() {
        count(Counter::QuicOpeningsRefused, 1);
        return;
    }
    let budget = byte_budget();
    let opening = &mut scratch.flow;
    opening.budget_lo_to_hi = budget;
    opening.budget_hi_to_lo = budget;
    opening.client_is_lo = src_is_lo as u32;
    opening.short_seen = 0;
    opening.unanswered = 1;
    opening.hint_held = 0;
    opening.cgroup_id = 0;
    if QUIC_OPENINGS
        .insert(&scratch.key, &scratch.flow, BPF_ANY as u64)
        .is_err()
    {
        return;
    }
    count(Counter::QuicOpenings, 1);
    if let Some(opening) = QUIC_OPENINGS.get_ptr_mut(&scratch.key) {
        // SAFETY: a live value of the openings map.
        let opening = unsafe { &mut *opening };
        copy(
            ctx,
            &scratch.sender,
            opening,
            src_is_lo,
            off,
            len,
            EVENT_OPENS_CONNECTION,
        );
    }
}

/// The other side of an opening (its state copied to the scratch's `flow`)
/// sent a long header: the connection is real, track it with what the opening
/// had left of its budgets, and copy the answer.
#[inline(always)]
fn answered(ctx: &TcContext, scratch: &mut QuicScratch, src_is_lo: bool, off: u32, len: u32) {
    scratch.flow.hint_held = 1;
    let _ = QUIC_OPENINGS.remove(&scratch.key);
    let slot = slot_of(&scratch.sender);
    let Some(word) = hint_word(slot) else {
        return;
    };
    // Count first, so no packet of the flow can see an empty slot once it exists.
    word.fetch_add(1, Ordering::Relaxed);
    if QUIC_FLOWS
        .insert(&scratch.key, &scratch.flow, BPF_ANY as u64)
        .is_err()
    {
        word.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    count(Counter::QuicFlowsStarted, 1);
    if let Some(flow) = QUIC_FLOWS.get_ptr_mut(&scratch.key) {
        // SAFETY: a live value of the flow map.
        let flow = unsafe { &mut *flow };
        copy(ctx, &scratch.sender, flow, src_is_lo, off, len, 0);
    }
}

/// A short-header datagram: the first of each direction of a tracked connection
/// is reported (first byte only); after both, the connection is forgotten.
#[inline(always)]
fn short_header(ctx: &TcContext, scratch: &mut QuicScratch, off: u32, len: u32) {
    let slot = slot_of(&scratch.sender);
    let Some(held) = QUIC_HINTS.get(slot) else {
        return;
    };
    if *held == 0 {
        return;
    }
    let src_is_lo = fill_key(scratch);
    let Some(flow) = QUIC_FLOWS.get_ptr_mut(&scratch.key) else {
        return;
    };
    // SAFETY: a live value of the flow map.
    let flow = unsafe { &mut *flow };
    let bit = if src_is_lo {
        SHORT_FROM_LO
    } else {
        SHORT_FROM_HI
    };
    if flow.short_seen & bit != 0 {
        return;
    }
    flow.short_seen |= bit;
    note_cgroup(ctx, &scratch.sender, flow);
    send(
        ctx,
        &scratch.sender,
        EventKind::QuicShortHeader,
        off,
        1,
        len - 1,
        0,
        flow.cgroup_id,
    );
    if flow.short_seen == SHORT_FROM_LO | SHORT_FROM_HI {
        // SAFETY: `hint_held` lies in a live flow-map value, naturally aligned.
        let held = unsafe { AtomicU32::from_ptr(&mut flow.hint_held) };
        if held.swap(0, Ordering::Relaxed) != 0 {
            if let Some(word) = hint_word(slot) {
                word.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let _ = QUIC_FLOWS.remove(&scratch.key);
    }
}
#[inline(always)]
fn hint_word(slot: u32) -> Option<&'static AtomicU32> {
    let ptr = QUIC_HINTS.get_ptr_mut(slot)?;
    // SAFETY: a live, aligned u32 of an array map, shared between CPUs and so
    // only written through atomics.
    Some(unsafe { AtomicU32::from_ptr(ptr) })
}

/// Takes one token from this CPU's bucket of openings, refilled with time.
#[inline(always)]
fn take_opening_token() -> bool {
    let Some(rate) = QUIC_RATE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot of a per-CPU array: no other CPU touches it.
    let rate = unsafe { &mut *rate };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let earned = now.wrapping_sub(rate.refilled_ns) / NS_PER_OPENING;
    if earned != 0 {
        let tokens = rate.tokens.saturating_add(earned);
        rate.tokens = if tokens < QUIC_OPENINGS_PER_SECOND {
            tokens
        } else {
            QUIC_OPENINGS_PER_SECOND
        };
        rate.refilled_ns = now;
    }
    if rate.tokens == 0 {
        return false;
    }
    rate.tokens -= 1;
    true
}

/// The local socket's cgroup, from the first egress datagram that has one.
#[inline(always)]
fn note_cgroup(ctx: &TcContext, sender: &Sender, flow: &mut QuicFlow) {
    if sender.direction == DIRECTION_EGRESS && flow.cgroup_id == 0 {
        // SAFETY: the context's skb is valid for the run; the helper only reads it.
        flow.cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    }
}

/// Copies the first bytes of a datagram of `flow` within its sender's budget
/// (one chunk at most); what is not copied is counted as cut.
#[inline(always)]
fn copy(
    ctx: &TcContext,
    sender: &Sender,
    flow: &mut QuicFlow,
    src_is_lo: bool,
    off: u32,
    len: u32,
    flags: u8,
) {
    note_cgroup(ctx, sender, flow);
    let budget = if src_is_lo {
        &mut flow.budget_lo_to_hi
    } else {
        &mut flow.budget_hi_to_lo
    };
    let mut allowed = if len < *budget { len } else { *budget };
    if allowed > CHUNK_SIZE as u32 {
        allowed = CHUNK_SIZE as u32;
    }
    if allowed == 0 {
        count(Counter::BytesCut, u64::from(len));
        return;
    }
    *budget -= allowed;
    let cut = len - allowed;
    if cut != 0 {
        count(Counter::BytesCut, u64::from(cut));
    }
    send(
        ctx,
        sender,
        EventKind::QuicDatagram,
        off,
        allowed,
        cut,
        flags,
        flow.cgroup_id,
    );
}

/// Sends one event of `kind` with the `len` (1..=CHUNK_SIZE) bytes at `off`,
/// announcing `cut` more bytes of the datagram that were not copied.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn send(
    ctx: &TcContext,
    sender: &Sender,
    kind: EventKind,
    off: u32,
    len: u32,
    cut: u32,
    flags: u8,
    cgroup_id: u64,
) {
    let Some(record) = SCRATCH.get_ptr_mut(0) else {
        count(Counter::BytesCut, u64::from(len));
        return;
    };
    // SAFETY: this CPU's scratch slot; nothing else touches it during the run.
    let record = unsafe { &mut *record };
    // Masked to 1..=CHUNK_SIZE for the verifier; equal to `len` for those.
    let len = ((len.wrapping_sub(1)) & (CHUNK_SIZE as u32 - 1)) + 1;
    // Field by field, into the map value: a whole EventHeader built first
    // would take stack this path does not have.
    let h = &mut record.header;
    // SAFETY: helper without arguments.
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    h.ifindex = sender.ifindex;
    h.kind = kind as u16;
    h.direction = sender.direction;
    h.family = sender.family;
    h.src_addr = sender.src;
    h.dst_addr = sender.dst;
    h.src_port = sender.src_port;
    h.dst_port = sender.dst_port;
    h.seq = 0;
    h.tcp_flags = 0;
    h.event_flags = flags;
    h._pad = [0; 2];
    h.payload_len = len;
    h.cut_len = cut;
    h.ack_seq = 0;
    h.cgroup_id = cgroup_id;
    // SAFETY: the destination is the record's CHUNK_SIZE payload array and `len`
    // is at most CHUNK_SIZE; the helper checks the packet offset itself.
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            off,
            record.payload.as_mut_ptr() as *mut _,
            len,
        )
    };
    if loaded != 0 || !output(record, HEADER_LEN + len) {
        count(Counter::BytesCut, u64::from(len));
    }
}
