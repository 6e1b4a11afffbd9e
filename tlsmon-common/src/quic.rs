//! What the kernel and userspace share about QUIC over UDP: the map names and
//! bounds of the kernel's QUIC path, its per-connection state, and the cheap
//! first-bytes tests that pick QUIC long-header packets out of UDP traffic.
//!
//! The kernel copies the datagrams of a QUIC connection that carry long-header
//! packets (Initial, Handshake, Retry, Version Negotiation) in both directions,
//! within a byte budget per direction, and reports the first short-header
//! (1-RTT) packet of each direction by its first byte only; then it forgets the
//! connection. A client's Initial only opens a connection ([`QUIC_OPENINGS_MAP`]);
//! it is tracked ([`QUIC_FLOWS_MAP`]) once the other side answered with a long
//! header, so a flood of spoofed Initials can only churn the openings.

/// LRU hash of answered QUIC connections: [`crate::FlowKey`] -> [`QuicFlow`].
pub const QUIC_FLOWS_MAP: &str = "TLSMON_QUIC_FLOWS";
/// Capacity of [`QUIC_FLOWS_MAP`].
pub const MAX_QUIC_FLOWS: u32 = 16_384;
/// LRU hash of client Initials not answered yet: [`crate::FlowKey`] -> [`QuicFlow`].
pub const QUIC_OPENINGS_MAP: &str = "TLSMON_QUIC_OPENINGS";
/// Capacity of [`QUIC_OPENINGS_MAP`].
pub const MAX_QUIC_OPENINGS: u32 = 4_096;
/// Array of u32 counts: per [`crate::hint_slot`], how many QUIC connections may
/// live there. A short-header packet whose slot counts zero belongs to no
/// tracked QUIC connection and costs this one array read. Never lowered by
/// userspace: a count an LRU eviction left too high costs lookups, never events.
pub const QUIC_HINTS_MAP: &str = "TLSMON_QUIC_HINTS";
/// Per-CPU single-entry array of [`QuicOpeningRate`]: the token bucket that
/// bounds how many new QUIC openings (and so events) unanswered client
/// Initials can cost.
pub const QUIC_RATE_MAP: &str = "TLSMON_QUIC_RATE";
/// Per-CPU working memory of the kernel's QUIC path (its own stack is small).
pub const QUIC_SCRATCH_MAP: &str = "TLSMON_QUIC_SCRATCH";
/// The global BPF function that looks at every UDP datagram (verified once, on
/// its own, rather than on every path of the classifier that leads to it).
pub const QUIC_FUNCTION: &str = "tlsmon_quic_datagram";
/// The global BPF function that looks at one datagram (of a GSO batch).
pub const QUIC_DATAGRAM_FUNCTION: &str = "tlsmon_quic_one";

/// Client datagrams of one opening copied before the server answers: a
/// ClientHello over two Initials, and a retransmission of each.
pub const MAX_UNANSWERED_DATAGRAMS: u32 = 4;
/// New openings per second and CPU, and the burst the bucket holds.
pub const QUIC_OPENINGS_PER_SECOND: u64 = 1_024;
/// A client Initial must fill a UDP payload of at least this many bytes
/// (RFC 9000, 14.1); servers drop smaller ones, so they open nothing.
pub const MIN_INITIAL_DATAGRAM: u32 = 1_200;

/// QUIC version 1 (RFC 9000).
pub const QUIC_V1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const QUIC_V2: u32 = 0x6b33_43cf;
/// The version field of a Version Negotiation packet.
pub const QUIC_VERSION_NEGOTIATION: u32 = 0;

/// [`QuicFlow::short_seen`] bit: the `lo` side sent a short-header packet.
pub const SHORT_FROM_LO: u32 = 1;
/// [`QuicFlow::short_seen`] bit: the `hi` side sent a short-header packet.
pub const SHORT_FROM_HI: u32 = 2;

/// State of one QUIC connection in [`QUIC_OPENINGS_MAP`] or [`QUIC_FLOWS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuicFlow {
    /// Bytes still to copy from the (lo -> hi) direction.
    pub budget_lo_to_hi: u32,
    /// Bytes still to copy from the (hi -> lo) direction.
    pub budget_hi_to_lo: u32,
    /// Non-zero when the client (the sender of the first Initial) is the `lo` side.
    pub client_is_lo: u32,
    /// [`SHORT_FROM_LO`] / [`SHORT_FROM_HI`] bits: short headers reported.
    pub short_seen: u32,
    /// Client datagrams copied while the connection was an opening.
    pub unanswered: u32,
    /// 1 while counted in its [`QUIC_HINTS_MAP`] slot (flows only).
    pub hint_held: u32,
    /// cgroup v2 id of the local socket, from the first egress datagram that had
    /// one; zero until then and for forwarded traffic.
    pub cgroup_id: u64,
}

/// A CPU's token bucket of QUIC openings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuicOpeningRate {
    /// Openings still allowed now.
    pub tokens: u64,
    /// `bpf_ktime_get_ns()` of the last refill.
    pub refilled_ns: u64,
}

/// What the first byte and the version of a UDP payload say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuicHead {
    /// Not a QUIC packet tlsmon follows (a long header of another version).
    Other,
    /// A long-header packet of QUIC v1 or v2; `opens` for an Initial packet
    /// with its fixed bit set, as a client's first Initial always has it.
    Long {
        /// The packet type is Initial (0b00 in v1, 0b01 in v2), fixed bit set.
        opens: bool,
    },
    /// A Version Negotiation packet (long header, version 0).
    VersionNegotiation,
    /// A short-header (1-RTT) packet, of any connection, or any other UDP
    /// payload whose first bit is clear: only a tracked connection tells.
    Short,
}

/// Classifies a UDP payload by its first byte and, for a long header, the four
/// version bytes after it (`head`, the payload's first five bytes).
///
/// The fixed bit (0x40) is not required: peers that agreed to grease it (RFC
/// 9287; quinn does) clear it at random in every packet after the client's
/// first flight. Only a client's first Initial, which opens a connection, is
/// sent before that agreement and so always has it.
#[inline(always)]
pub fn quic_head(head: &[u8; 5]) -> QuicHead {
    let first = head[0];
    if first & 0x80 == 0 {
        return QuicHead::Short;
    }
    let version = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let fixed = first & 0x40 != 0;
    let packet_type = (first >> 4) & 0x03;
    match version {
        QUIC_VERSION_NEGOTIATION => QuicHead::VersionNegotiation,
        QUIC_V1 => QuicHead::Long {
            opens: fixed && packet_type == 0,
        },
        QUIC_V2 => QuicHead::Long {
            opens: fixed && packet_type == 1,
        },
        _ => QuicHead::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_headers_of_known_versions_are_recognised_with_their_initial_type() {
        assert_eq!(
            quic_head(&[0xc3, 0, 0, 0, 1]),
            QuicHead::Long { opens: true }
        );
        assert_eq!(
            quic_head(&[0xe3, 0, 0, 0, 1]),
            QuicHead::Long { opens: false }
        );
        // A greased fixed bit: followed, but opens nothing.
        assert_eq!(
            quic_head(&[0x83, 0, 0, 0, 1]),
            QuicHead::Long { opens: false }
        );
        // v2 numbers its types differently: 0b01 is Initial, 0b00 is Retry.
        assert_eq!(
            quic_head(&[0xd3, 0x6b, 0x33, 0x43, 0xcf]),
            QuicHead::Long { opens: true }
        );
        assert_eq!(
            quic_head(&[0xc3, 0x6b, 0x33, 0x43, 0xcf]),
            QuicHead::Long { opens: false }
        );
    }

    #[test]
    fn version_negotiation_short_headers_and_other_versions_are_told_apart() {
        assert_eq!(quic_head(&[0x80, 0, 0, 0, 0]), QuicHead::VersionNegotiation);
        assert_eq!(quic_head(&[0x41, 1, 2, 3, 4]), QuicHead::Short);
        // A greased short header, or any plain UDP payload with its first bit
        // clear: only a tracked connection can tell them apart.
        assert_eq!(quic_head(&[0x12, 0x34, 1, 0, 0]), QuicHead::Short);
        // An unknown version is not followed.
        assert_eq!(quic_head(&[0xc3, 0xff, 0, 0, 0x1d]), QuicHead::Other);
    }
}
