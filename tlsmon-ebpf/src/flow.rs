//! Flow tracking: which TCP connections are in their handshake phase, and what
//! each packet of such a connection turns into.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    programs::TcContext,
};
use tlsmon_common::{
    Counter, EventKind, FlowKey, FlowState, FIN_FROM_HI, FIN_FROM_LO, TCP_FIN, TCP_RST,
};

use crate::{
    emit::{send_control, send_payload, Sighting},
    hint,
    maps::{byte_budget, count, FLOWS},
    packet::{self, bytes_at, Packet},
    tls::{is_client_hello_start, PEEK_LEN},
};

/// Looks at one packet seen on hook `direction`. Never changes it.
#[inline(always)]
pub fn classify(ctx: &TcContext, direction: u8) {
    count(Counter::PacketsSeen, 1);
    let Some(pkt) = packet::parse(ctx) else {
        return;
    };
    // SAFETY: the context pointer is the program's argument, valid for the run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let slot = hint::slot(&pkt, ifindex);
    if !hint::occupied(slot) {
        // No flow in its handshake phase hashes here: only a ClientHello matters.
        // (A finished flow's entry may linger; a new ClientHello on its 4-tuple
        // is a new connection and replaces it.)
        if starts_client_hello(ctx, &pkt) {
            if let Some(state) = start(&pkt, ifindex, slot, BPF_ANY as u64) {
                follow(ctx, &pkt, ifindex, direction, slot, state);
            }
        }
        return;
    }
    let (key, _) = key_of(&pkt, ifindex);
    let state = match FLOWS.get_ptr_mut(key) {
        Some(state) => state,
        None if starts_client_hello(ctx, &pkt) => {
            match start(&pkt, ifindex, slot, BPF_NOEXIST as u64) {
                Some(state) => state,
                None => return,
            }
        }
        None => return,
    };
    follow(ctx, &pkt, ifindex, direction, slot, state);
}

#[inline(always)]
fn key_of(pkt: &Packet, ifindex: u32) -> (FlowKey, bool) {
    FlowKey::new(
        ifindex,
        pkt.family,
        &pkt.src,
        pkt.src_port,
        &pkt.dst,
        pkt.dst_port,
    )
}

/// One packet of a tracked flow: copy its payload within the budget, report FIN
/// and RST, forget the flow when the connection ends.
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
    let ends = pkt.tcp_flags & TCP_RST != 0;
    if state.done != 0 {
        // Userspace is finished with it: give the hint slot back so the rest of
        // the connection takes the fast path, and forget it when it ends.
        hint::release(slot, &mut state.hint_held);
        if pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            let _ = FLOWS.remove(key);
        }
        return;
    }
    let sighting = Sighting {
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        ifindex,
        direction,
    };
    if pkt.payload_len > 0 {
        let budget = if src_is_lo {
            &mut state.budget_lo_to_hi
        } else {
            &mut state.budget_hi_to_lo
        };
        let used = send_payload(ctx, &sighting, pkt, *budget);
        *budget = budget.saturating_sub(used);
    }
    if ends {
        send_control(&sighting, pkt, EventKind::Rst);
        hint::release(slot, &mut state.hint_held);
        let _ = FLOWS.remove(key);
    } else if pkt.tcp_flags & TCP_FIN != 0 {
        send_control(&sighting, pkt, EventKind::Fin);
        state.fin_seen |= if src_is_lo { FIN_FROM_LO } else { FIN_FROM_HI };
        if state.fin_seen == FIN_FROM_LO | FIN_FROM_HI {
            hint::release(slot, &mut state.hint_held);
            let _ = FLOWS.remove(key);
        }
    }
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

/// Starts tracking `pkt`'s connection (its payload begins a ClientHello) with
/// `flags` (NOEXIST: keep a flow another CPU just started; ANY: replace a
/// finished flow's lingering entry). Returns the stored state.
#[inline(always)]
fn start(pkt: &Packet, ifindex: u32, slot: u32, flags: u64) -> Option<*mut FlowState> {
    let (key, src_is_lo) = key_of(pkt, ifindex);
    let budget = byte_budget();
    let state = FlowState {
        budget_lo_to_hi: budget,
        budget_hi_to_lo: budget,
        done: 0,
        client_is_lo: src_is_lo as u32,
        fin_seen: 0,
        hint_held: 1,
    };
    // Count first, so no packet of the flow can see an empty slot once it exists.
    hint::take(slot);
    if FLOWS.insert(key, state, flags).is_ok() {
        count(Counter::FlowsStarted, 1);
    } else {
        hint::untake(slot);
    }
    FLOWS.get_ptr_mut(key)
}
