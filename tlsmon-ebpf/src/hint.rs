//! The hint table: per slot of a direction-independent connection hash, a count
//! of tracked flows and of openings (connections between their SYN-ACK and
//! their first payload) that may live there (low 32 bits), and an epoch of
//! flows and openings ever counted there (high 32 bits). Every flow starts from
//! an opening, so a packet whose slot counts zero can neither continue a
//! tracked flow nor start one: it returns after one array read, without the
//! flow key, a hash lookup or a look at its payload. That is the path of bulk
//! data of untracked and finished connections.
//!
//! Counts only err upwards: a flow or opening its map's LRU evicts keeps its
//! count. Userspace heals that ([`heal`]): it reads a slot, counts the flows and
//! openings it finds there, and the kernel lowers the count only if the word is
//! still the one userspace read (a start would have moved the epoch, a release
//! the count).

use core::sync::atomic::{AtomicU64, Ordering};

use tlsmon_common::{hint_slot, HINT_COUNT_MASK, HINT_START};

use crate::{maps::HINTS, packet::Packet};

/// The slot of `pkt`'s connection.
#[inline(always)]
pub fn slot(pkt: &Packet, ifindex: u32) -> u32 {
    hint_slot(ifindex, &pkt.src, pkt.src_port, &pkt.dst, pkt.dst_port)
}

#[inline(always)]
fn word(slot: u32) -> Option<&'static AtomicU64> {
    let ptr = HINTS.get_ptr_mut(slot)?;
    // SAFETY: a live, 8-byte aligned u64 of an array map; shared between CPUs,
    // hence only written through atomics.
    Some(unsafe { AtomicU64::from_ptr(ptr) })
}

/// True when a tracked flow or an opening may live in `slot`.
#[inline(always)]
pub fn occupied(slot: u32) -> bool {
    // A missing slot cannot happen (slot < HINT_SLOTS); err on the safe side.
    let Some(ptr) = HINTS.get_ptr(slot) else {
        return true;
    };
    // READ_ONCE: the BPF backend (cpu v3) has no atomic load instruction, and an
    // aligned 64-bit load is single-copy atomic on every BPF JIT target.
    // SAFETY: a live, aligned u64 of an array map.
    unsafe { core::ptr::read_volatile(ptr) & HINT_COUNT_MASK != 0 }
}

/// Counts a flow or an opening that starts in `slot` (and moves the epoch).
#[inline(always)]
pub fn take(slot: u32) {
    if let Some(w) = word(slot) {
        w.fetch_add(HINT_START, Ordering::Relaxed);
    }
}

/// Gives back the count of the flow or opening whose `held` flag this is,
/// exactly once even when several CPUs race (the flag is swapped atomically).
#[inline(always)]
pub fn release(slot: u32, held: *mut u32) {
    // SAFETY: `held` points into a live flow-map value, naturally aligned.
    let held = unsafe { core::sync::atomic::AtomicU32::from_ptr(held) };
    if held.swap(0, Ordering::Relaxed) != 0 {
        if let Some(w) = word(slot) {
            w.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Gives back one count of `slot` that the caller took itself (an opening's,
/// handed over to the flow it started once the flow holds its own).
#[inline(always)]
pub fn give_back(slot: u32) {
    if let Some(w) = word(slot) {
        w.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lowers `slot`'s count to `count` if its word is still `seen` and that lowers
/// it. Returns true when it did.
#[inline(always)]
pub fn heal(slot: u32, seen: u64, count: u32) -> bool {
    if u64::from(count) >= seen & HINT_COUNT_MASK {
        return false;
    }
    let Some(w) = word(slot) else {
        return false;
    };
    let healed = (seen & !HINT_COUNT_MASK) | u64::from(count);
    w.compare_exchange(seen, healed, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}
