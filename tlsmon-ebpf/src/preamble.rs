//! Preamble candidates: a connection whose first client payload begins a PROXY
//! protocol header, an HTTP `CONNECT` or a SOCKS request is tracked like one that
//! begins a ClientHello (same opening check, same byte budget), so that userspace
//! can find the ClientHello behind the preamble. The byte tests live in
//! `tlsmon_common::preamble`; this file only reads the bytes and counts.

use aya_ebpf::{helpers::bpf_skb_load_bytes, programs::TcContext};
use tlsmon_common::{
    preamble::{is_preamble_start, is_socks5_greeting, PREAMBLE_PEEK_LEN},
    Counter,
};

use crate::{maps::count, packet::Packet};

/// True when `pkt`'s payload begins a preamble; counted as a candidate.
/// Only runs for payloads that are not a ClientHello start of an untracked flow.
#[inline(always)]
pub fn starts_preamble(ctx: &TcContext, pkt: &Packet) -> bool {
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
