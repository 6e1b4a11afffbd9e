//! Connections seen being set up: a SYN-ACK records the sequence numbers the
//! client's first payload must carry, so that tracking starts only on real
//! connections (and a 4-tuple reused by a new connection is recognised as new).
//!
//! TCP Fast Open puts the ClientHello in the client's SYN, before any SYN-ACK.
//! Its bytes are copied then (the SYN is the only packet that carries them) and
//! the SYN is recorded; tracking starts when a SYN-ACK acknowledges those bytes,
//! and that SYN-ACK is reported too, so userspace, which holds the bytes until
//! then, knows they were accepted. A SYN nobody accepts starts nothing.

use aya_ebpf::{bindings::BPF_ANY, programs::TcContext};
use tlsmon_common::{Counter, EventKind, FlowKey, Opening};

use crate::{
    emit::{send_control, send_first_chunk, Sighting},
    flow::{forget, key_of, track},
    hint,
    maps::{byte_budget, count, FLOWS, OPENINGS},
    packet::Packet,
};

/// [`Opening::server_seq`] of a SYN with data once a SYN-ACK accepted it and its
/// flow started (zero before).
const SYN_DATA_STARTED: u32 = 1;

/// Records the SYN-ACK `pkt`. A tracked flow on the same 4-tuple that belongs to
/// another connection is over: forget it. A SYN-ACK that accepts the bytes of a
/// recorded SYN (TCP Fast Open) starts tracking that connection instead.
#[inline(always)]
pub fn record(pkt: &Packet, ifindex: u32, sighting: &Sighting) {
    let (key, server_is_lo) = key_of(pkt, ifindex);
    // SAFETY: the value is copied out at once; a concurrent update can only make
    // the comparison below fail.
    if let Some(syn) = unsafe { OPENINGS.get(&key) }.copied() {
        let accepts_syn_data = syn.syn_data_len != 0
            && (syn.server_is_lo != 0) == server_is_lo
            && pkt.ack_seq == syn.client_seq.wrapping_add(syn.syn_data_len);
        if accepts_syn_data {
            // The SYN's opening stays: a second SYN-ACK of this connection (with
            // another ISN) is recognised and reported as well.
            syn_data_accepted(pkt, ifindex, &key, &syn, sighting);
            return;
        }
    }
    let opening = Opening {
        client_seq: pkt.ack_seq,
        server_seq: pkt.seq.wrapping_add(1),
        server_is_lo: server_is_lo as u32,
        syn_data_len: 0,
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

/// A SYN-ACK accepted the ClientHello bytes of the client's SYN `syn`: track the
/// connection (unless this is a second SYN-ACK of it) and report the SYN-ACK.
#[inline(always)]
fn syn_data_accepted(
    pkt: &Packet,
    ifindex: u32,
    key: &FlowKey,
    syn: &Opening,
    sighting: &Sighting,
) {
    let slot = hint::slot(pkt, ifindex);
    let tracked = match FLOWS.get_ptr_mut(key) {
        // SAFETY: a live value of the flow map.
        Some(state) => unsafe {
            if (*state).client_seq == syn.client_seq {
                true
            } else {
                forget(key, slot, &mut *state);
                count(Counter::FlowsReplaced, 1);
                false
            }
        },
        None => false,
    };
    if !tracked {
        if syn.server_seq != 0 {
            // Its flow started and has ended: a late duplicate starts nothing.
            return;
        }
        // The SYN's bytes went out as they passed; the flow needs no announcing
        // event (userspace saw the SYN itself).
        if track(key, slot, syn.client_seq, 1, ifindex, pkt).is_none() {
            return;
        }
        if let Some(opening) = OPENINGS.get_ptr_mut(key) {
            // SAFETY: a live value of the openings map.
            unsafe { (*opening).server_seq = SYN_DATA_STARTED };
        }
    }
    send_control(sighting, pkt, EventKind::SynAck);
}

/// The client's SYN `pkt` carries the start of a ClientHello (TCP Fast Open):
/// copy its bytes (one event; a SYN's payload fits one chunk) and record it, so
/// that the SYN-ACK that accepts them starts tracking.
#[inline(always)]
pub fn record_syn_data(ctx: &TcContext, pkt: &Packet, ifindex: u32, sighting: &Sighting) {
    let (key, client_is_lo) = key_of(pkt, ifindex);
    let opening = Opening {
        client_seq: pkt.seq.wrapping_add(1),
        server_seq: 0,
        server_is_lo: (!client_is_lo) as u32,
        syn_data_len: pkt.payload_len,
    };
    // Not counted as an opening (that counter is of SYN-ACKs): its SYN-ACK is.
    if OPENINGS.insert(&key, &opening, BPF_ANY as u64).is_ok() {
        send_first_chunk(ctx, sighting, pkt, byte_budget());
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
        && opening.syn_data_len == 0
        && pkt.tcp_flags & tlsmon_common::TCP_ACK != 0
        && pkt.seq == opening.client_seq
        && pkt.ack_seq == opening.server_seq;
    continues && OPENINGS.remove(key).is_ok()
}
