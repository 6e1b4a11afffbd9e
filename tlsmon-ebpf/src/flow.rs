//! Flow tracking: which TCP connections are in their handshake phase, and what
//! each packet of such a connection turns into.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    programs::TcContext,
};
use tlsmon_common::{
    Counter, EventKind, FlowKey, FlowState, FIN_FROM_HI, FIN_FROM_LO, TCP_FIN, TCP_RST,
};

use crate::{
    emit::{send_control, send_payload, Sighting},
    maps::{byte_budget, count, FLOWS},
    packet::{self, Packet},
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
    let (key, src_is_lo) = FlowKey::new(
        ifindex,
        pkt.family,
        &pkt.src,
        pkt.src_port,
        &pkt.dst,
        pkt.dst_port,
    );
    let state = match FLOWS.get_ptr_mut(key) {
        Some(state) => state,
        None => match start(ctx, &pkt, &key, src_is_lo) {
            Some(state) => state,
            None => return,
        },
    };
    // SAFETY: a live value of the flow map; concurrent updates from another CPU
    // can at worst make a budget slightly off, never unsafe.
    let state = unsafe { &mut *state };
    let ends_flow = pkt.tcp_flags & TCP_RST != 0;
    if state.done != 0 {
        // Userspace is finished with it; forget it when the connection ends so a
        // reused 4-tuple can start again.
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
        let used = send_payload(ctx, &sighting, &pkt, *budget);
        *budget = budget.saturating_sub(used);
    }
    if ends_flow {
        send_control(&sighting, &pkt, EventKind::Rst);
        let _ = FLOWS.remove(key);
    } else if pkt.tcp_flags & TCP_FIN != 0 {
        send_control(&sighting, &pkt, EventKind::Fin);
        state.fin_seen |= if src_is_lo { FIN_FROM_LO } else { FIN_FROM_HI };
        if state.fin_seen == FIN_FROM_LO | FIN_FROM_HI {
            let _ = FLOWS.remove(key);
        }
    }
}

/// Starts tracking when `pkt`'s payload begins a ClientHello; returns the new state.
#[inline(always)]
fn start(ctx: &TcContext, pkt: &Packet, key: &FlowKey, src_is_lo: bool) -> Option<*mut FlowState> {
    if (pkt.payload_len as usize) < PEEK_LEN {
        return None;
    }
    let mut head = [0u8; PEEK_LEN];
    // SAFETY: fixed-size load into a stack array of that size; the helper checks
    // the packet bounds (payload_len >= PEEK_LEN was checked above). A helper
    // rather than direct access because egress payload often lives in page frags.
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            pkt.payload_off,
            head.as_mut_ptr() as *mut _,
            PEEK_LEN as u32,
        )
    };
    if loaded != 0 || !is_client_hello_start(&head) {
        return None;
    }
    let budget = byte_budget();
    let state = FlowState {
        budget_lo_to_hi: budget,
        budget_hi_to_lo: budget,
        done: 0,
        client_is_lo: src_is_lo as u32,
        fin_seen: 0,
    };
    // NOEXIST: if another CPU started the same flow meanwhile, keep its state.
    if FLOWS.insert(key, state, BPF_NOEXIST as u64).is_ok() {
        count(Counter::FlowsStarted, 1);
    }
    FLOWS.get_ptr_mut(key)
}
