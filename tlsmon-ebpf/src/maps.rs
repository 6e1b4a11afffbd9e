//! The maps shared with userspace. Names are the constants of `tlsmon-common`
//! (the macro needs literals; userspace looks them up by those constants, and the
//! BPF_PROG_TEST_RUN tests fail if the two ever disagree).

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use tlsmon_common::{
    Counter, EventHeader, FlowKey, FlowState, KernelConfig, Opening, CHUNK_SIZE, COUNTER_COUNT,
    HINT_SLOTS, MAX_OPENINGS, MAX_TRACKED_FLOWS, RINGBUF_BYTES,
};

use crate::records::PayloadJob;

/// One RingBuf record as built in the scratch buffer: header, then payload bytes.
#[repr(C)]
pub struct EventRecord {
    pub header: EventHeader,
    pub payload: [u8; CHUNK_SIZE],
}

/// Size of the header part of an [`EventRecord`].
pub const HEADER_LEN: u32 = core::mem::size_of::<EventHeader>() as u32;

#[map(name = "TLSMON_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);

#[map(name = "TLSMON_FLOWS")]
pub static FLOWS: LruHashMap<FlowKey, FlowState> =
    LruHashMap::with_max_entries(MAX_TRACKED_FLOWS, 0);

#[map(name = "TLSMON_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map(name = "TLSMON_CONFIG")]
pub static CONFIG: Array<KernelConfig> = Array::with_max_entries(1, 0);

/// Per connection-hash slot: the hint word (see `hint`).
#[map(name = "TLSMON_HINTS")]
pub static HINTS: Array<u64> = Array::with_max_entries(HINT_SLOTS, 0);

/// Connections seen being set up (SYN-ACK), waiting for their first payload.
#[map(name = "TLSMON_OPENINGS")]
pub static OPENINGS: LruHashMap<FlowKey, Opening> = LruHashMap::with_max_entries(MAX_OPENINGS, 0);

/// Events are assembled here, not on the 512-byte stack.
#[map(name = "TLSMON_SCRATCH")]
pub static SCRATCH: PerCpuArray<EventRecord> = PerCpuArray::with_max_entries(1, 0);

/// One packet's record walk (`records::PayloadJob`): here rather than on the
/// classifier's stack, which together with the walk's global functions' frames
/// would exceed the verifier's 512 bytes.
#[map(name = "TLSMON_PAYLOAD_JOB")]
pub static PAYLOAD_JOB: PerCpuArray<PayloadJob> = PerCpuArray::with_max_entries(1, 0);

/// A new flow's state is built here before it is inserted into [`FLOWS`], for the
/// same reason as [`PAYLOAD_JOB`].
#[map(name = "TLSMON_NEW_FLOW")]
pub static NEW_FLOW: PerCpuArray<FlowState> = PerCpuArray::with_max_entries(1, 0);

/// Adds `n` to this CPU's copy of `counter`.
#[inline(always)]
pub fn count(counter: Counter, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot of an array map: valid for the program's run and
        // touched by no other CPU.
        unsafe { *slot += n };
    }
}

/// The per-direction byte budget set by userspace, or the default before it is set.
#[inline(always)]
pub fn byte_budget() -> u32 {
    match CONFIG.get(0) {
        Some(config) if config.byte_budget != 0 => config.byte_budget,
        _ => tlsmon_common::DEFAULT_BYTE_BUDGET,
    }
}
