//! Rare events, reported through aya-log for the daemon's debug log: the RingBuf
//! was full, the flow table refused a flow, a packet could not be parsed past a
//! bound, a flow was cut (its byte budget ran out).
//!
//! Two things keep the reports off the verifier's bill, which the classifier
//! runs close to (1,000,000 instructions processed):
//!
//! - Each report is behind [`enabled`], aya-log's level: a global in `.rodata`
//!   that the daemon sets when it loads the program (0, off, unless its log shows
//!   `tlsmon::kernel` at debug level). The kernel freezes `.rodata`, so with
//!   reports off the verifier sees a constant and explores no report: a packet
//!   pays for nothing but that check, and only on the rare branches below.
//! - The reports themselves are global BPF functions (exported, not inlined),
//!   which the verifier checks once each, on their own, instead of once for
//!   every path that leads to a call.

use aya_log_ebpf::{
    debug,
    macro_support::{level_enabled, Level},
};

/// Whether reports are on. Checked before every call, and before any condition
/// that only a report needs, so that with reports off those are removed too.
#[inline(always)]
pub fn enabled() -> bool {
    level_enabled(Level::Debug)
}

/// The RingBuf refused an event. No arguments: anything passed would have to be
/// kept live through the copy loop around the call, and the verifier would pay
/// for it on every packet even with reports off.
#[inline(always)]
pub fn ringbuf_full() {
    if enabled() {
        tlsmon_diag_ringbuf_full();
    }
}

/// The flow table refused to store a new flow.
#[inline(always)]
pub fn flow_table_full(ifindex: u32, client_port: u16, server_port: u16) {
    if enabled() {
        tlsmon_diag_flow_table_full(ifindex, client_port.into(), server_port.into());
    }
}

/// A packet carried more VLAN tags than the parser follows.
#[inline(always)]
pub fn too_many_vlan_tags() {
    if enabled() {
        tlsmon_diag_parse_bound(PARSE_BOUND_VLAN);
    }
}

/// An IPv6 packet carried more extension headers than the parser follows.
#[inline(always)]
pub fn too_many_ipv6_extension_headers() {
    if enabled() {
        tlsmon_diag_parse_bound(PARSE_BOUND_IPV6_EXT);
    }
}

/// A packet that copied bytes was cut after them: `cut` bytes were not copied
/// because the flow's byte budget ran out in it (later packets of that
/// direction copy nothing), or past the chunk limit of one packet.
#[inline(always)]
pub fn cut(cut: u32) {
    tlsmon_diag_cut(cut);
}

const PARSE_BOUND_VLAN: u32 = 0;
const PARSE_BOUND_IPV6_EXT: u32 = 1;

// The global functions: `#[no_mangle]` and exported by bpf-linker (tlsmon/build.rs)
// so that they stay global in the object; scalar arguments and an int result,
// as the verifier requires of a global function.

#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_diag_ringbuf_full() -> i32 {
    debug!((), "ring buffer full: an event was dropped");
    0
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_diag_flow_table_full(
    ifindex: u32,
    client_port: u32,
    server_port: u32,
) -> i32 {
    debug!(
        (),
        "flow table full: connection from port {} to port {} on ifindex {} is not tracked",
        client_port,
        server_port,
        ifindex
    );
    0
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_diag_parse_bound(which: u32) -> i32 {
    if which == PARSE_BOUND_VLAN {
        debug!((), "packet not parsed: more than 2 VLAN tags");
    } else {
        debug!((), "packet not parsed: more than 4 IPv6 extension headers");
    }
    0
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn tlsmon_diag_cut(cut: u32) -> i32 {
    debug!(
        (),
        "flow cut: {} bytes of a packet not copied (byte budget spent, or the chunk limit)", cut
    );
    0
}
