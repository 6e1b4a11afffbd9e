//! Flow tracking: which TCP connections are in their handshake phase, and what
//! each packet of such a connection turns into.
//!
//! Only real connections are tracked: one whose SYN-ACK was seen on this
//! interface (`opening`) and whose first client payload continues exactly that
//! SYN-ACK and begins a ClientHello, or (TCP Fast Open) whose client's SYN
//! carried the start of a ClientHello that a SYN-ACK then acknowledged. A blind spoofer cannot know the server's
//! sequence number, so single forged packets start nothing; frames the host
//! does not accept (addressed to another host) start nothing either.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_ktime_get_ns, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    programs::TcContext,
};
use tlsmon_common::{
    Counter, DirectionState, EventKind, FlowKey, FlowState, DIRECTION_EGRESS, DIRECTION_INGRESS,
    EVENT_OPENS_CONNECTION, FIN_FROM_HI, FIN_FROM_LO, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};

use crate::{
    diag,
    emit::{send_control, Sighting},
    hint,
    maps::{byte_budget, count, FLOWS},
    opening,
    packet::{self, bytes_at, Packet},
    preamble,
    records::{self, PayloadJob},
    tls::{is_client_hello_start, PEEK_LEN},
};

/// `skb->pkt_type` of a frame addressed to another host's MAC (PACKET_OTHERHOST).
const PACKET_OTHERHOST: u32 = 3;

/// Looks at one packet seen on hook `direction`. Never changes it.
#[inline(always)]
pub fn classify(ctx: &TcContext, direction: u8) {
    count(Counter::PacketsSeen, 1);
    let Some(pkt) = packet::parse(ctx) else {
        return;
    };
    // SAFETY: the context pointer is the program's argument, valid for the run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if pkt.tcp_flags & TCP_SYN != 0 {
        // A SYN-ACK is the evidence that a connection is being set up. A client's
        // SYN matters only when it carries a ClientHello (TCP Fast Open).
        let is_syn_ack = pkt.tcp_flags & TCP_ACK != 0;
        if !is_syn_ack && !starts_client_hello(ctx, &pkt) {
            return;
        }
        if !accepted_by_host(ctx, direction) {
            return;
        }
        let sighting = Sighting {
            // SAFETY: helper without arguments.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            ifindex,
            direction,
            // No flow yet: its first egress packet after the opening fills this in.
            cgroup_id: 0,
        };
        if is_syn_ack {
            opening::record(&pkt, ifindex, &sighting);
        } else {
            opening::record_syn_data(ctx, &pkt, ifindex, &sighting);
        }
        return;
    }
    let slot = hint::slot(&pkt, ifindex);
    let tracked = if hint::occupied(slot) {
        let (key, _) = key_of(&pkt, ifindex);
        FLOWS.get_ptr_mut(&key)
    } else {
        // No tracked flow hashes here: only the start of a new one matters.
        None
    };
    let state = match tracked {
        Some(state) => state,
        None => {
            // A preamble (PROXY header, CONNECT, SOCKS, STARTTLS) may come before
            // the ClientHello: such a connection is followed the same way.
            if !starts_client_hello(ctx, &pkt) && !preamble::starts_preamble(ctx, &pkt, ifindex) {
                return;
            }
            match start(ctx, &pkt, ifindex, direction, slot) {
                Some(state) => state,
                None => return,
            }
        }
    };
    follow(ctx, &pkt, ifindex, direction, slot, state);
}

/// The flow-map key of `pkt`'s connection and whether its sender is the `lo` side.
#[inline(always)]
pub fn key_of(pkt: &Packet, ifindex: u32) -> (FlowKey, bool) {
    FlowKey::new(
        ifindex,
        pkt.family,
        &pkt.src,
        pkt.src_port,
        &pkt.dst,
        pkt.dst_port,
    )
}

/// False for a frame received for another host (promiscuous mode, a flooded
/// switch port): the host drops it, so it is no evidence of a connection.
#[inline(always)]
fn accepted_by_host(ctx: &TcContext, direction: u8) -> bool {
    if direction != DIRECTION_INGRESS {
        return true;
    }
    // SAFETY: the context pointer is the program's argument, valid for the run.
    let pkt_type = unsafe { (*ctx.skb.skb).pkt_type };
    if pkt_type == PACKET_OTHERHOST {
        count(Counter::OtherHostIgnored, 1);
        return false;
    }
    true
}

/// One packet of a tracked flow: copy what its direction wants of its payload
/// (`records`; the flow's first payload event announcing the connection),
/// report FIN and RST, forget the flow when the connection ends.
#[inline(always)]
fn follow(
    ctx: &TcContext,
    pkt: &Packet,
    ifindex: u32,
    direction: u8,
    slot: u32,
    state: *mut FlowState,
) {
    // SAFETY: a live value of the flow map; concurrent updates from another CPU
    // can at worst make a budget slightly off, never unsafe.
    let state = unsafe { &mut *state };
    let (key, src_is_lo) = key_of(pkt, ifindex);
    // `direction` is a constant of each entry point, so only the egress program
    // has this branch. A packet of a local socket carries that socket's cgroup;
    // a forwarded one has no socket and gives 0, so the next one tries again.
    if direction == DIRECTION_EGRESS && state.cgroup_id == 0 {
        // SAFETY: the context's skb is valid for the run; the helper only reads it.
        state.cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    }
    let sighting = Sighting {
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        ifindex,
        direction,
        // Read back from the flow, not kept from the branch above, so that both
        // paths carry the same kind of value and the verifier merges them.
        cgroup_id: state.cgroup_id,
    };
    if pkt.payload_len > 0 {
        // Read from the flow, not passed down as a constant by whoever started
        // it: the verifier can then merge the started and the tracked paths.
        let first_flags = if state.announced == 0 {
            EVENT_OPENS_CONNECTION
        } else {
            0
        };
        state.announced = 1;
        let dir = if src_is_lo {
            &mut state.lo_to_hi as *mut DirectionState
        } else {
            &mut state.hi_to_lo as *mut DirectionState
        };
        let mut job = PayloadJob::new(pkt, &sighting, first_flags);
        records::copy_payload(ctx.skb.skb, &mut job, dir);
    }
    if pkt.tcp_flags & TCP_RST != 0 {
        send_control(&sighting, pkt, EventKind::Rst);
        forget(&key, slot, state);
    } else if pkt.tcp_flags & TCP_FIN != 0 {
        send_control(&sighting, pkt, EventKind::Fin);
        state.fin_seen |= if src_is_lo { FIN_FROM_LO } else { FIN_FROM_HI };
        if state.fin_seen == FIN_FROM_LO | FIN_FROM_HI {
            forget(&key, slot, state);
        }
    }
}

/// Stops tracking a flow: its hint count is given back exactly once, however
/// many CPUs (or a userspace release) race to do it.
#[inline(always)]
pub fn forget(key: &FlowKey, slot: u32, state: &mut FlowState) {
    hint::release(slot, &mut state.hint_held);
    let _ = FLOWS.remove(key);
}

/// Payload offsets beyond this (huge IPv6 extension chains) use the helper.
const MAX_DIRECT_PEEK_OFFSET: usize = 1024;

/// True when the payload begins a ClientHello. Reads the bytes directly when they
/// are in the linear data, else through the helper (egress payload often sits in
/// page fragments).
#[inline(always)]
fn starts_client_hello(ctx: &TcContext, pkt: &Packet) -> bool {
    if (pkt.payload_len as usize) < PEEK_LEN {
        return false;
    }
    // The verifier accepts a variable packet offset only with a known bound.
    let off = pkt.payload_off as usize;
    if off <= MAX_DIRECT_PEEK_OFFSET {
        if let Some(head) = bytes_at::<PEEK_LEN>(ctx, off) {
            return is_client_hello_start(head);
        }
    }
    let mut head = [0u8; PEEK_LEN];
    // SAFETY: fixed-size load into a stack array of that size; the helper checks
    // the packet bounds (payload_len >= PEEK_LEN was checked above).
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            pkt.payload_off,
            head.as_mut_ptr() as *mut _,
            PEEK_LEN as u32,
        )
    };
    loaded == 0 && is_client_hello_start(&head)
}

/// Starts tracking `pkt`'s connection: its payload begins a ClientHello, and it
/// must continue a connection seen being set up. Returns the stored state.
#[inline(always)]
fn start(
    ctx: &TcContext,
    pkt: &Packet,
    ifindex: u32,
    direction: u8,
    slot: u32,
) -> Option<*mut FlowState> {
    if !accepted_by_host(ctx, direction) {
        return None;
    }
    let (key, src_is_lo) = key_of(pkt, ifindex);
    // Exactly one packet (and one CPU) consumes an opening: a retransmitted
    // ClientHello after the flow ended starts nothing.
    if !opening::continued_by(&key, pkt, src_is_lo) {
        count(Counter::ClientHellosUnverified, 1);
        return None;
    }
    // An older connection on this 4-tuple was forgotten when this one's SYN-ACK
    // passed (`opening::record`); the insert replaces whatever raced in since.
    track(&key, slot, pkt.seq, 0, ifindex, pkt)
}

/// True when `pkt` was sent by the `lo` side of `key` (its normalised key).
#[inline(always)]
fn sent_by_lo(key: &FlowKey, pkt: &Packet) -> bool {
    let half = |a: &[u8; 16], i: usize| {
        u64::from_ne_bytes([
            a[i],
            a[i + 1],
            a[i + 2],
            a[i + 3],
            a[i + 4],
            a[i + 5],
            a[i + 6],
            a[i + 7],
        ])
    };
    key.port_lo == pkt.src_port
        && half(&key.addr_lo, 0) == half(&pkt.src, 0)
        && half(&key.addr_lo, 8) == half(&pkt.src, 8)
}

/// Stores a new flow whose client payload starts at `client_seq`, counted in hint
/// `slot`; `announced` 1 when its first payload event needs no
/// [`EVENT_OPENS_CONNECTION`] (userspace saw its SYN). Returns the stored state.
#[inline(always)]
pub fn track(
    key: &FlowKey,
    slot: u32,
    client_seq: u32,
    announced: u32,
    ifindex: u32,
    pkt: &Packet,
) -> Option<*mut FlowState> {
    let budget = byte_budget();
    // Started by a SYN-ACK (TCP Fast Open): the client's SYN bytes were copied
    // outside the flow, so its direction is copied whole; the server's records
    // start after the SYN-ACK. Started by the client's first payload: both
    // directions' records start at their first payload byte (the server's is
    // what that payload acknowledges).
    let by_syn_ack = pkt.tcp_flags & TCP_SYN != 0;
    let server_first = if by_syn_ack {
        pkt.seq.wrapping_add(1)
    } else {
        pkt.ack_seq
    };
    let client = DirectionState::new(budget, !by_syn_ack, client_seq);
    let server = DirectionState::new(budget, true, server_first);
    let client_is_lo = sent_by_lo(key, pkt) != by_syn_ack;
    let (lo_to_hi, hi_to_lo) = if client_is_lo {
        (client, server)
    } else {
        (server, client)
    };
    let state = FlowState {
        lo_to_hi,
        hi_to_lo,
        client_seq,
        announced,
        fin_seen: 0,
        hint_held: 1,
        cgroup_id: 0,
    };
    // Count first, so no packet of the flow can see an empty slot once it exists.
    hint::take(slot);
    if FLOWS.insert(key, &state, BPF_ANY as u64).is_err() {
        let mut held = 1u32;
        hint::release(slot, &mut held);
        diag::flow_table_full(ifindex, pkt.src_port, pkt.dst_port);
        return None;
    }
    count(Counter::FlowsStarted, 1);
    FLOWS.get_ptr_mut(key)
}
