//! Preamble candidates: a connection whose first client payload begins a PROXY
//! protocol header, an HTTP `CONNECT` or a SOCKS request is tracked like one that
//! begins a ClientHello (same opening check, same byte budget), so that userspace
//! can find the ClientHello behind the preamble. The byte tests live in
//! `tlsmon_common::preamble`; this file only reads the bytes and counts.
//!
//! On a STARTTLS port (a bitmap set by userspace) the client's first payload
//! starts the flow whatever it holds. When the server speaks first (SMTP, IMAP,
//! POP3, FTP, MySQL), its greeting moves the connection's opening on by the
//! greeting's length, so that the client's first payload, which acknowledges
//! the greeting, still continues it exactly.

use aya_ebpf::{helpers::bpf_skb_load_bytes, macros::map, maps::Array, programs::TcContext};
use tlsmon_common::{
    preamble::{
        is_preamble_start, is_socks5_greeting, starttls_port_bit, PREAMBLE_PEEK_LEN,
        STARTTLS_PORT_WORDS,
    },
    Counter,
};

use crate::{
    flow::key_of,
    maps::{count, OPENINGS},
    packet::Packet,
};

/// Bitmap of STARTTLS server ports (`tlsmon_common::preamble::STARTTLS_PORTS_MAP`).
#[map(name = "TLSMON_STARTTLS_PORTS")]
pub static STARTTLS_PORTS: Array<u32> = Array::with_max_entries(STARTTLS_PORT_WORDS, 0);

#[inline(always)]
fn is_starttls_port(port: u16) -> bool {
    let (word, bit) = starttls_port_bit(port);
    STARTTLS_PORTS.get(word).is_some_and(|w| w & bit != 0)
}

/// True when `pkt`'s payload begins a preamble, or is a client's first payload
/// to a STARTTLS port; counted as a candidate. Only runs for payloads of an
/// untracked flow that do not start a ClientHello, in a hint slot that counts
/// an opening or a flow (elsewhere nothing could start).
#[inline(always)]
pub fn starts_preamble(ctx: &TcContext, pkt: &Packet, ifindex: u32) -> bool {
    if is_starttls_port(pkt.dst_port) {
        // Only a payload with an opening waiting can start a flow: later packets
        // of a long session cost one lookup and count nothing.
        let (key, _) = key_of(pkt, ifindex);
        // SAFETY: only tests whether the entry exists.
        let waiting = unsafe { OPENINGS.get(&key) }.is_some();
        if waiting {
            count(Counter::PreambleCandidates, 1);
        }
        return waiting;
    }
    if is_starttls_port(pkt.src_port) {
        server_speaks_first(pkt, ifindex);
        return false;
    }
    let found = if pkt.payload_len >= PREAMBLE_PEEK_LEN as u32 {
        let mut head = [0u8; PREAMBLE_PEEK_LEN];
        load(ctx, pkt, &mut head) && is_preamble_start(&head)
    } else if pkt.payload_len >= 3 {
        // A SOCKS5 greeting is three to ten bytes, a packet of its own.
        let mut head = [0u8; 2];
        load(ctx, pkt, &mut head) && is_socks5_greeting(head[0], head[1], pkt.payload_len)
    } else {
        false
    };
    if found {
        count(Counter::PreambleCandidates, 1);
    }
    found
}

/// A STARTTLS server's payload before the client's first: if it continues the
/// opening exactly, the client's first payload will acknowledge it too.
#[inline(always)]
fn server_speaks_first(pkt: &Packet, ifindex: u32) {
    let (key, src_is_lo) = key_of(pkt, ifindex);
    let Some(opening) = OPENINGS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: a live value of the openings map; a concurrent update can at worst
    // make the comparison fail.
    let opening = unsafe { &mut *opening };
    let from_server = (opening.server_is_lo != 0) == src_is_lo;
    if from_server && pkt.seq == opening.server_seq && pkt.ack_seq == opening.client_seq {
        opening.server_seq = opening.server_seq.wrapping_add(pkt.payload_len);
    }
}

/// Copies the first `N` payload bytes (checked to exist by the caller) through
/// the helper, which copes with payload in page fragments (egress).
#[inline(always)]
fn load<const N: usize>(ctx: &TcContext, pkt: &Packet, out: &mut [u8; N]) -> bool {
    // SAFETY: fixed-size load into a stack array of that size; the helper checks
    // the packet bounds itself.
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            pkt.payload_off,
            out.as_mut_ptr() as *mut _,
            N as u32,
        )
    };
    loaded == 0
}
