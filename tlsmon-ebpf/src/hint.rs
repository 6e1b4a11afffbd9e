//! The hint table: a count, per slot of a direction-independent connection hash,
//! of tracked flows that userspace has not marked done. A packet whose slot
//! holds zero cannot belong to such a flow, so it skips building the flow key and
//! the LRU lookup: bulk traffic of untracked and finished connections costs an
//! array read. Counts only err upwards (an LRU eviction keeps its count), which
//! costs a lookup, never a missed packet.

use core::sync::atomic::{AtomicU32, Ordering};

use tlsmon_common::HINT_SLOTS;

use crate::{maps::HINTS, packet::Packet};

#[inline(always)]
fn fold(addr: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    w(0) ^ w(4) ^ w(8) ^ w(12)
}

/// The slot of `pkt`'s connection: XOR makes it the same for both directions.
#[inline(always)]
pub fn slot(pkt: &Packet, ifindex: u32) -> u32 {
    let mixed = fold(&pkt.src) ^ fold(&pkt.dst) ^ (pkt.src_port ^ pkt.dst_port) as u32 ^ ifindex;
    // Fibonacci hashing: the top bits of the product are the well-mixed ones.
    mixed.wrapping_mul(0x9e37_79b1) >> (32 - HINT_SLOTS.trailing_zeros())
}

#[inline(always)]
fn counter(slot: u32) -> Option<&'static AtomicU32> {
    let ptr = HINTS.get_ptr_mut(slot)?;
    // SAFETY: a live u32 of an array map, naturally aligned; shared between CPUs,
    // hence only touched through atomics.
    Some(unsafe { AtomicU32::from_ptr(ptr) })
}

/// True when a tracked, not-done flow may live in `slot`.
#[inline(always)]
pub fn occupied(slot: u32) -> bool {
    // A missing slot cannot happen (slot < HINT_SLOTS); err on the safe side.
    let Some(ptr) = HINTS.get_ptr(slot) else {
        return true;
    };
    // READ_ONCE: the BPF backend (cpu v3) has no atomic load instruction, and an
    // aligned 32-bit load is single-copy atomic on every BPF JIT target.
    // SAFETY: a live, aligned u32 of an array map.
    unsafe { core::ptr::read_volatile(ptr) != 0 }
}

/// Counts a flow that starts tracking in `slot`.
#[inline(always)]
pub fn take(slot: u32) {
    if let Some(c) = counter(slot) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Gives back the count of the flow whose `held` flag this is, exactly once even
/// when several CPUs race (the flag is swapped atomically).
#[inline(always)]
pub fn release(slot: u32, held: *mut u32) {
    // SAFETY: `held` points into a live flow-map value, naturally aligned.
    let held = unsafe { AtomicU32::from_ptr(held) };
    if held.swap(0, Ordering::Relaxed) != 0 {
        if let Some(c) = counter(slot) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Gives back a count taken by [`take`] for a flow that was never stored.
#[inline(always)]
pub fn untake(slot: u32) {
    if let Some(c) = counter(slot) {
        c.fetch_sub(1, Ordering::Relaxed);
    }
}
