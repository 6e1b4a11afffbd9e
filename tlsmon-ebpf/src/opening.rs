//! Connections seen being set up: a SYN-ACK records the sequence numbers the
//! client's first payload must carry, so that tracking starts only on real
//! connections (and a 4-tuple reused by a new connection is recognised as new).
//!
//! A SYN-ACK's opening is counted in its hint slot until the connection's first
//! payload (or FIN, or RST) passes from either side: only then can tracking
//! start, so every other packet of a slot that counts nothing returns at once.
//!
//! TCP Fast Open puts the ClientHello in the client's SYN, before any SYN-ACK.
//! Its bytes are copied then (the SYN is the only packet that carries them) and
//! the SYN is recorded; tracking starts when a SYN-ACK acknowledges those bytes,
//! and that SYN-ACK is reported too, so userspace, which holds the bytes until
//! then, knows they were accepted. A SYN nobody accepts starts nothing.

use core::sync::atomic::{AtomicU32, Ordering};

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
    let slot = hint::slot(pkt, ifindex);
    if let Some(state) = FLOWS.get_ptr_mut(&key) {
        // SAFETY: a live value of the flow map.
        let state = unsafe { &mut *state };
        // A retransmitted SYN-ACK of the tracked connection acknowledges the
        // same client sequence number: its opening was used already, and a new
        // one would hold the slot with nothing left to start. Anything else is
        // a new connection.
        if state.client_seq == pkt.ack_seq {
            return;
        }
        forget(&key, slot, state);
        count(Counter::FlowsReplaced, 1);
    }
    let opening = Opening {
        client_seq: pkt.ack_seq,
        server_seq: pkt.seq.wrapping_add(1),
        server_is_lo: server_is_lo as u32,
        syn_data_len: 0,
        hint_held: 1,
    };
    // Count first, so that no payload can find the slot empty once the opening
    // exists; the opening this one replaces (a retransmitted SYN-ACK, an older
    // connection on the 4-tuple) gives its count back.
    hint::take(slot);
    if let Some(old) = OPENINGS.get_ptr_mut(&key) {
        // SAFETY: a live value of the openings map.
        hint::release(slot, unsafe { &mut (*old).hint_held });
    }
    if OPENINGS.insert(&key, &opening, BPF_ANY as u64).is_ok() {
        count(Counter::OpeningsSeen, 1);
    } else {
        let mut held = 1u32;
        hint::release(slot, &mut held);
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
        // Not counted in the hint table: its flow starts at a SYN-ACK, which
        // is looked at whatever the slot counts.
        hint_held: 0,
    };
    // Not counted as an opening (that counter is of SYN-ACKs): its SYN-ACK is.
    if OPENINGS.insert(&key, &opening, BPF_ANY as u64).is_ok() {
        send_first_chunk(ctx, sighting, pkt, byte_budget());
    }
}

/// True when `pkt` (sent by the `lo` side if `src_is_lo`) is the first client
/// payload of a connection whose SYN-ACK was recorded; the opening is consumed,
/// and its hint count is then the caller's to give back (`hint::give_back`)
/// once the flow holds its own: `held` says whether it had one.
#[inline(always)]
pub fn continued_by(key: &FlowKey, pkt: &Packet, src_is_lo: bool, held: &mut u32) -> bool {
    let Some(opening) = OPENINGS.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: a live value of the openings map; a concurrent update can only make
    // the comparison fail, and the removal below decides which CPU wins.
    let opening = unsafe { &mut *opening };
    let from_client = (opening.server_is_lo != 0) != src_is_lo;
    let continues = from_client
        && opening.syn_data_len == 0
        && pkt.tcp_flags & tlsmon_common::TCP_ACK != 0
        && pkt.seq == opening.client_seq
        && pkt.ack_seq == opening.server_seq;
    if !continues {
        return false;
    }
    // Taken out of the value before the removal: a removed LRU element may be
    // reused at once by another CPU's insert.
    // SAFETY: `hint_held` is a naturally aligned u32 of the live value.
    *held = unsafe { AtomicU32::from_ptr(&mut opening.hint_held) }.swap(0, Ordering::Relaxed);
    if OPENINGS.remove(key).is_ok() {
        return true;
    }
    // Another CPU consumed it first; the count is still given back once.
    if *held != 0 {
        hint::give_back(hint::slot(pkt, key.ifindex));
        *held = 0;
    }
    false
}

/// `pkt`, of an untracked connection in a slot that counts something, started
/// nothing. If it is the first payload, FIN or RST of either side of a recorded
/// opening (exactly where that side's bytes begin), no later packet of the
/// connection can start tracking: the opening is consumed and its count given
/// back, so the connection's further packets return at the hint read.
#[inline(always)]
pub fn passed(pkt: &Packet, ifindex: u32, slot: u32) {
    let (key, src_is_lo) = key_of(pkt, ifindex);
    let Some(opening) = OPENINGS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: a live value of the openings map; a concurrent update can at worst
    // make the comparison fail.
    let opening = unsafe { &mut *opening };
    if opening.syn_data_len != 0 {
        return;
    }
    let from_client = (opening.server_is_lo != 0) != src_is_lo;
    let (seq, ack) = if from_client {
        (opening.client_seq, opening.server_seq)
    } else {
        (opening.server_seq, opening.client_seq)
    };
    // A blind spoofer knows neither number; a RST need not acknowledge.
    let acks = pkt.tcp_flags & tlsmon_common::TCP_ACK == 0 || pkt.ack_seq == ack;
    if pkt.seq == seq && acks {
        hint::release(slot, &mut opening.hint_held);
        let _ = OPENINGS.remove(&key);
    }
}
