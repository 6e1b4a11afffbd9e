//! Connections seen being set up: a SYN-ACK records the sequence numbers the
//! client's first payload must carry, so that tracking starts only on real
//! connections (and a 4-tuple reused by a new connection is recognised as new).

use aya_ebpf::bindings::BPF_ANY;
use tlsmon_common::{Counter, Opening};

use crate::{
    flow::{forget, key_of},
    hint,
    maps::{count, FLOWS, OPENINGS},
    packet::Packet,
};

/// Records the SYN-ACK `pkt`. A tracked flow on the same 4-tuple that belongs to
/// another connection is over: forget it.
#[inline(always)]
pub fn record(pkt: &Packet, ifindex: u32) {
    let (key, server_is_lo) = key_of(pkt, ifindex);
    let opening = Opening {
        client_seq: pkt.ack_seq,
        server_seq: pkt.seq.wrapping_add(1),
        server_is_lo: server_is_lo as u32,
        _pad: 0,
    };
    if OPENINGS.insert(&key, &opening, BPF_ANY as u64).is_ok() {
        count(Counter::OpeningsSeen, 1);
    }
    if let Some(state) = FLOWS.get_ptr_mut(&key) {
        // SAFETY: a live value of the flow map.
        let state = unsafe { &mut *state };
        // A retransmitted SYN-ACK of the tracked connection acknowledges the
        // same client sequence number; anything else is a new connection.
        if state.client_seq != pkt.ack_seq {
            forget(&key, hint::slot(pkt, ifindex), state);
            count(Counter::FlowsReplaced, 1);
        }
    }
}

/// True when `pkt` (sent by the `lo` side if `src_is_lo`) is the first client
/// payload of a connection whose SYN-ACK was recorded; the opening is consumed.
#[inline(always)]
pub fn continued_by(key: &tlsmon_common::FlowKey, pkt: &Packet, src_is_lo: bool) -> bool {
    // SAFETY: the value is copied out at once; a concurrent update can only make
    // the comparison fail, and the removal below decides which CPU wins.
    let Some(opening) = (unsafe { OPENINGS.get(key) }).copied() else {
        return false;
    };
    let from_client = (opening.server_is_lo != 0) != src_is_lo;
    let continues = from_client
        && pkt.tcp_flags & tlsmon_common::TCP_ACK != 0
        && pkt.seq == opening.client_seq
        && pkt.ack_seq == opening.server_seq;
    continues && OPENINGS.remove(key).is_ok()
}
