//! Types shared by the tlsmon kernel program and its userspace daemon.
//!
//! Every struct here crosses the kernel/user boundary, so each one is `#[repr(C)]`,
//! has no implicit padding (explicit `_pad` fields instead) and uses integers rather
//! than `bool`: the verifier and the `Pod` contract both require every byte defined.
#![no_std]

/// Name of the classifier attached to tc ingress. Two entry points share one body
/// because a program cannot otherwise tell which hook runs it.
pub const INGRESS_PROGRAM: &str = "tlsmon_ingress";
/// Name of the classifier attached to tc egress.
pub const EGRESS_PROGRAM: &str = "tlsmon_egress";
/// RingBuf carrying [`EventHeader`] records (with payload bytes after them).
pub const EVENTS_MAP: &str = "TLSMON_EVENTS";
/// LRU hash of tracked flows: [`FlowKey`] -> [`FlowState`].
pub const FLOWS_MAP: &str = "TLSMON_FLOWS";
/// Per-CPU array of u64 counters, indexed by [`Counter`].
pub const COUNTERS_MAP: &str = "TLSMON_COUNTERS";
/// Single-entry array holding the [`Config`] set at load time.
pub const CONFIG_MAP: &str = "TLSMON_CONFIG";
/// Per-CPU scratch buffer in which an event is built before it is output.
pub const SCRATCH_MAP: &str = "TLSMON_SCRATCH";
/// Array of u32 counts: per slot (a hash of the connection), how many tracked
/// flows that userspace has not yet marked done may live there. Zero lets a
/// packet skip the flow lookup entirely.
pub const HINTS_MAP: &str = "TLSMON_HINTS";
/// Slots in [`HINTS_MAP`] (a power of two).
pub const HINT_SLOTS: u32 = 65_536;

/// Maximum payload bytes carried by one event. A power of two, so the kernel can
/// mask a length to it; larger payloads (GSO skbs) are sent as several events.
pub const CHUNK_SIZE: usize = 2048;
/// Upper bound on events emitted for one packet; bytes beyond are counted as cut.
pub const MAX_CHUNKS_PER_PACKET: u32 = 8;
/// Default per-direction byte budget of a tracked flow.
pub const DEFAULT_BYTE_BUDGET: u32 = 16 * 1024;
/// Capacity of the flow LRU hash.
pub const MAX_TRACKED_FLOWS: u32 = 65_536;
/// Size of the events RingBuf in bytes (power of two, multiple of the page size).
pub const RINGBUF_BYTES: u32 = 8 * 1024 * 1024;

/// Kinds of event in the RingBuf.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// TCP payload bytes of a tracked flow.
    Payload = 1,
    /// FIN seen on a tracked flow.
    Fin = 2,
    /// RST seen on a tracked flow.
    Rst = 3,
}

impl EventKind {
    /// Decodes the wire value; `None` for an unknown kind.
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Payload),
            2 => Some(Self::Fin),
            3 => Some(Self::Rst),
            _ => None,
        }
    }
}

/// Which hook saw the packet.
pub const DIRECTION_INGRESS: u8 = 0;
/// Which hook saw the packet.
pub const DIRECTION_EGRESS: u8 = 1;

/// Address family values used in [`EventHeader::family`] and [`FlowKey::family`].
pub const FAMILY_IPV4: u8 = 4;
/// Address family values used in [`EventHeader::family`] and [`FlowKey::family`].
pub const FAMILY_IPV6: u8 = 6;

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub const TCP_FIN: u8 = 0x01;
/// TCP flag bits as they appear in byte 13 of the TCP header.
pub const TCP_SYN: u8 = 0x02;
/// TCP flag bits as they appear in byte 13 of the TCP header.
pub const TCP_RST: u8 = 0x04;
/// TCP flag bits as they appear in byte 13 of the TCP header.
pub const TCP_ACK: u8 = 0x10;

/// Header of every RingBuf record; `payload_len` bytes of TCP payload follow it.
///
/// IPv4 addresses occupy the first four bytes of the 16-byte address fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// `bpf_ktime_get_ns()` when the packet was seen (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Interface the packet was seen on.
    pub ifindex: u32,
    /// An [`EventKind`] value.
    pub kind: u16,
    /// [`DIRECTION_INGRESS`] or [`DIRECTION_EGRESS`].
    pub direction: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Source address of the packet.
    pub src_addr: [u8; 16],
    /// Destination address of the packet.
    pub dst_addr: [u8; 16],
    /// Source TCP port (host byte order).
    pub src_port: u16,
    /// Destination TCP port (host byte order).
    pub dst_port: u16,
    /// TCP sequence number of the first payload byte carried by this event
    /// (the segment's sequence number plus the chunk offset).
    pub seq: u32,
    /// TCP flags of the packet.
    pub tcp_flags: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 3],
    /// Bytes of payload following this header.
    pub payload_len: u32,
    /// Payload bytes of this packet that follow this chunk and were not copied
    /// (budget exhausted or too many chunks). Zero when nothing was cut.
    pub cut_len: u32,
    /// Explicit padding; always zero.
    pub _pad2: u32,
}

/// Normalised key of a tracked flow: the lower (address, port) pair comes first,
/// so both directions of a connection map to the same key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Interface the flow is seen on (one entry per NIC, so a proxy path and a
    /// direct path are tracked separately).
    pub ifindex: u32,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 3],
    /// Lower address of the pair.
    pub addr_lo: [u8; 16],
    /// Higher address of the pair.
    pub addr_hi: [u8; 16],
    /// Port belonging to `addr_lo`.
    pub port_lo: u16,
    /// Port belonging to `addr_hi`.
    pub port_hi: u16,
}

impl FlowKey {
    /// The normalised key of the connection between `(src, src_port)` and
    /// `(dst, dst_port)` on `ifindex`, and whether `src` is the `lo` side.
    ///
    /// Order: address bytes compared lexicographically, then the port. The kernel
    /// and userspace both call this, so they always agree on the key.
    #[inline(always)]
    pub fn new(
        ifindex: u32,
        family: u8,
        src: &[u8; 16],
        src_port: u16,
        dst: &[u8; 16],
        dst_port: u16,
    ) -> (FlowKey, bool) {
        let src_is_lo = endpoint_le(src, src_port, dst, dst_port);
        let (lo, lo_port, hi, hi_port) = if src_is_lo {
            (src, src_port, dst, dst_port)
        } else {
            (dst, dst_port, src, src_port)
        };
        let key = FlowKey {
            ifindex,
            family,
            _pad: [0; 3],
            addr_lo: *lo,
            addr_hi: *hi,
            port_lo: lo_port,
            port_hi: hi_port,
        };
        (key, src_is_lo)
    }
}

/// `(a, a_port) <= (b, b_port)`; written as a bounded byte loop because slice
/// comparison would call `memcmp`, which a BPF program cannot link.
#[inline(always)]
fn endpoint_le(a: &[u8; 16], a_port: u16, b: &[u8; 16], b_port: u16) -> bool {
    let mut i = 0;
    while i < 16 {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a_port <= b_port
}

/// Per-flow state kept by the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowState {
    /// Bytes still to copy from the (lo -> hi) direction.
    pub budget_lo_to_hi: u32,
    /// Bytes still to copy from the (hi -> lo) direction.
    pub budget_hi_to_lo: u32,
    /// Non-zero once userspace has finished with the flow: copy nothing more.
    pub done: u32,
    /// Non-zero when the client (ClientHello sender) is the `lo` side.
    pub client_is_lo: u32,
    /// [`FIN_FROM_LO`] / [`FIN_FROM_HI`] bits: which sides have sent a FIN. The
    /// entry is deleted once both have (or on RST), so a reused 4-tuple starts afresh.
    pub fin_seen: u32,
    /// 1 while this flow is counted in its [`HINTS_MAP`] slot; swapped to 0
    /// atomically when the count is given back (flow done or deleted).
    pub hint_held: u32,
}

/// [`FlowState::fin_seen`] bit: the `lo` side sent a FIN.
pub const FIN_FROM_LO: u32 = 1;
/// [`FlowState::fin_seen`] bit: the `hi` side sent a FIN.
pub const FIN_FROM_HI: u32 = 2;

/// Load-time configuration of the kernel program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Per-direction byte budget of a tracked flow.
    pub byte_budget: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

/// Indexes of the per-CPU counters in [`COUNTERS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Packets the classifier ran on.
    PacketsSeen = 0,
    /// Flows that started tracking at a ClientHello.
    FlowsStarted = 1,
    /// Events written to the RingBuf.
    EventsSent = 2,
    /// Events lost because the RingBuf was full.
    EventsDropped = 3,
    /// Payload bytes of tracked flows not copied (budget, chunk limit, RingBuf full).
    BytesCut = 4,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::PacketsSeen,
        Counter::FlowsStarted,
        Counter::EventsSent,
        Counter::EventsDropped,
        Counter::BytesCut,
    ];
}

/// Number of counters in [`COUNTERS_MAP`].
pub const COUNTER_COUNT: u32 = 5;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all these types are `#[repr(C)]`, `Copy`, made only of integers and
    // integer arrays, and have no implicit padding, so every bit pattern is valid.
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowState {}
    unsafe impl aya::Pod for super::Config {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn flow_key_is_the_same_for_both_directions() {
        let a = [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b = [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let (k1, a_is_lo) = FlowKey::new(3, FAMILY_IPV4, &a, 50000, &b, 443);
        let (k2, b_is_lo) = FlowKey::new(3, FAMILY_IPV4, &b, 443, &a, 50000);
        assert_eq!(k1, k2);
        assert!(a_is_lo);
        assert!(!b_is_lo);
        assert_eq!(k1.addr_lo, a);
        assert_eq!(k1.port_lo, 50000);
        // Same address: the port decides.
        let (k3, lo) = FlowKey::new(1, FAMILY_IPV4, &a, 443, &a, 80);
        assert!(!lo);
        assert_eq!((k3.port_lo, k3.port_hi), (80, 443));
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(
            size_of::<EventHeader>(),
            8 + 4 + 2 + 1 + 1 + 16 + 16 + 2 + 2 + 4 + 1 + 3 + 4 + 4 + 4
        );
        assert_eq!(size_of::<EventHeader>() % 8, 0);
        assert_eq!(size_of::<FlowKey>(), 4 + 1 + 3 + 16 + 16 + 2 + 2);
        assert_eq!(size_of::<FlowState>(), 24);
        assert_eq!(size_of::<Config>(), 8);
    }
}
