//! Types shared by the tlsmon kernel program and its userspace daemon.
//!
//! Every struct here crosses the kernel/user boundary, so each one is `#[repr(C)]`,
//! has no implicit padding (explicit `_pad` fields instead) and uses integers rather
//! than `bool`: the verifier and the `Pod` contract both require every byte defined.
#![no_std]

pub mod client_hello;
pub mod preamble;

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
/// Single-entry array holding the [`KernelConfig`] set at load time.
pub const CONFIG_MAP: &str = "TLSMON_CONFIG";
/// Per-CPU scratch buffer in which an event is built before it is output.
pub const SCRATCH_MAP: &str = "TLSMON_SCRATCH";
/// Array of u64 hint words: per slot (a hash of the connection), in the low 32
/// bits how many tracked flows may live there, in the high 32 bits how many flows
/// ever started there (an epoch, so that userspace can correct a count that an
/// LRU eviction left too high without racing a new flow). A zero count lets a
/// packet skip the flow lookup entirely.
pub const HINTS_MAP: &str = "TLSMON_HINTS";
/// Slots in [`HINTS_MAP`] (a power of two).
pub const HINT_SLOTS: u32 = 65_536;
/// LRU hash of connections whose SYN-ACK was seen: [`FlowKey`] -> [`Opening`].
/// A ClientHello starts tracking only when it continues one of these exactly.
pub const OPENINGS_MAP: &str = "TLSMON_OPENINGS";
/// Capacity of [`OPENINGS_MAP`]: connections between SYN-ACK and first payload.
pub const MAX_OPENINGS: u32 = 65_536;
/// A classifier that is never attached: userspace runs it with
/// `BPF_PROG_TEST_RUN` on a [`ControlCommand`] to change flow and hint state
/// atomically, which map syscalls alone cannot do.
pub const CONTROL_PROGRAM: &str = "tlsmon_control";

/// Maximum payload bytes carried by one event. A power of two, so the kernel can
/// mask a length to it; larger payloads (GSO skbs) are sent as several events.
pub const CHUNK_SIZE: usize = 2048;
/// Upper bound on events emitted for one packet; bytes beyond are counted as cut.
pub const MAX_CHUNKS_PER_PACKET: u32 = 8;
/// Default per-direction byte budget of a tracked flow: a safety bound on the
/// bytes copied per direction, not what decides what is seen. While the kernel
/// follows TLS records (see [`DirectionState`]) a handshake copies its record
/// headers, small records and [`RECORD_BODY_ALLOWANCE`] bytes of larger record
/// bodies, far below this; it is reached only by directions copied whole (a
/// preamble before the ClientHello, TCP Fast Open, records lost track of).
pub const DEFAULT_BYTE_BUDGET: u32 = 128 * 1024;
/// Bytes of record bodies a direction copies in full while the kernel follows its
/// TLS records, before larger records are cut to their header: the ClientHello,
/// the ServerHello and the start of the Certificate message (the leaf
/// certificate) of a server flight, as much as the old 16 KiB budget saw.
pub const RECORD_BODY_ALLOWANCE: u32 = 16 * 1024;
/// A record whose body is at most this long is copied whole while the kernel
/// follows records, also once the body allowance is spent: ServerKeyExchange,
/// ServerHelloDone, ChangeCipherSpec, Finished and alerts, but not the 16 KiB
/// records of a long certificate chain or of bulk data.
pub const SMALL_RECORD_MAX: u32 = 1024;
/// Records the kernel walks in one packet; a packet holding more makes the
/// direction stop following records (it is copied whole, within the budget).
pub const MAX_RECORDS_PER_PACKET: u32 = 8;
/// Length of a TLS record header (type, version, length).
pub const RECORD_HEADER_LEN: u32 = 5;
/// Longest record body the kernel accepts while following (TLSCiphertext:
/// 2^14 + 2048); a longer length means the bytes are not TLS records.
pub const MAX_RECORD_BODY: u32 = 16 * 1024 + 2048;
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
    /// A SYN-ACK that accepted the ClientHello a client's SYN carried (TCP Fast
    /// Open), or another SYN-ACK of such a connection: no payload, its sequence
    /// and acknowledgment numbers.
    SynAck = 4,
}

impl EventKind {
    /// Decodes the wire value; `None` for an unknown kind.
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Payload),
            2 => Some(Self::Fin),
            3 => Some(Self::Rst),
            4 => Some(Self::SynAck),
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
    /// [`EVENT_OPENS_CONNECTION`] or zero.
    pub event_flags: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 2],
    /// Bytes of payload following this header.
    pub payload_len: u32,
    /// Payload bytes of this packet that follow this chunk and were not copied
    /// because a bound cut them (budget exhausted or too many chunks): a loss.
    /// Zero when nothing was cut. Bytes skipped on purpose are never in it (they
    /// are announced by [`EVENT_AFTER_SKIP`] on the direction's next event).
    pub cut_len: u32,
    /// TCP acknowledgment number of the packet (meaningful with the ACK flag).
    pub ack_seq: u32,
    /// cgroup v2 id of the local socket of the flow, from its first egress packet
    /// that had one ([`FlowState::cgroup_id`]); zero while unknown, and for
    /// forwarded traffic (no local socket).
    pub cgroup_id: u64,
}

/// [`EventHeader::event_flags`] bit: this payload is the first of a connection
/// that was seen being set up (its SYN-ACK matched) and starts being tracked.
/// Userspace treats it as the client's SYN: any earlier connection on the same
/// 4-tuple is over.
pub const EVENT_OPENS_CONNECTION: u8 = 1;
/// [`EventHeader::event_flags`] bit on a payload event: the kernel skipped bytes
/// of this direction on purpose between the last byte it copied before this
/// event and this event's `seq` (record bodies past the allowance, bytes before
/// a resume point, see [`DirectionState`]). The gap `seq - expected` is then no
/// loss: userspace treats those bytes as known to exist and not needed. A gap
/// before an event without this bit is a loss (see [`EventHeader::cut_len`] and
/// [`Counter::EventsDropped`]). Bytes a packet repeats (retransmissions of bytes
/// the kernel already walked past) are not copied again and set no bit.
pub const EVENT_AFTER_SKIP: u8 = 2;

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

/// What the kernel copies of one direction of a tracked flow, and where it is in
/// that direction's TLS records.
///
/// The event contract (ARCHITECTURE.md, "Following records in the kernel"):
///
/// - **Following records** ([`DIR_FOLLOWING`]): the kernel knows where the next
///   TLS record header is (`cursor`, with `header_have` bytes of it already seen,
///   or `record_left` body bytes before it). A flow started by its ClientHello
///   follows both directions from their first payload byte (the client's at
///   [`FlowState::client_seq`], the server's at the sequence number the
///   ClientHello acknowledged). It copies every record header (also when split
///   over packets), every body of a record of at most [`SMALL_RECORD_MAX`] bytes,
///   and of larger records as much of the body as [`RECORD_BODY_ALLOWANCE`]
///   (`body_allowance`, shared by the direction) still covers, from the record's
///   start. Body bytes beyond are skipped: counted in [`Counter::BytesSkipped`],
///   announced by [`EVENT_AFTER_SKIP`] on the direction's next event. With
///   [`DIR_COPY_ALL`] set, every byte is copied while the kernel keeps following.
/// - **Copying whole** (no [`DIR_FOLLOWING`]): every byte is copied, within the
///   budget. A direction stops following, counted in
///   [`Counter::RecordFollowingStopped`], when its bytes are no TLS record header
///   (a preamble: PROXY, CONNECT, SOCKS, STARTTLS), when a packet starts after
///   the byte the kernel expects next (a loss or reordering before the hook), or
///   when one packet holds more than [`MAX_RECORDS_PER_PACKET`] records. Flows
///   started by TCP Fast Open copy their client direction whole.
/// - **Resume point** ([`DIR_RESUME`]): bytes before `resume_seq` are skipped
///   (counted, announced), whatever the mode; set by userspace with
///   [`CONTROL_RESUME`].
/// - **Budget**: every copied byte (headers too) counts against `budget`; bytes
///   beyond it are cut ([`Counter::BytesCut`], `cut_len`), as before.
///
/// Sequence comparisons are modulo 2^32 (RFC 1982 style), so all of this holds
/// across sequence wrap-around.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectionState {
    /// Bytes still to copy (safety bound).
    pub budget: u32,
    /// Bytes of large record bodies still copied while following records.
    pub body_allowance: u32,
    /// With [`DIR_RESUME`]: the first sequence number copied; bytes before it
    /// are skipped.
    pub resume_seq: u32,
    /// With [`DIR_FOLLOWING`]: sequence number of the next byte the record walk
    /// has not passed. With [`DIR_SEEN`] and not following: the end of the
    /// furthest payload seen (for [`CONTROL_RESUME`]'s lateness check).
    pub cursor: u32,
    /// Following: body bytes of the current record from `cursor` on; zero when
    /// `cursor` is at (or inside) a record header.
    pub record_left: u32,
    /// Following: of `record_left`, the bytes still to copy.
    pub record_copy: u32,
    /// Following: bytes of the record header at `cursor - header_have` already
    /// seen (0 to 4): a header split over packets.
    pub header_have: u32,
    /// Following: the seen header bytes, big-endian in the low bytes.
    pub header_bytes: u32,
    /// [`DIR_FOLLOWING`], [`DIR_COPY_ALL`], [`DIR_RESUME`], [`DIR_SKIPPED`],
    /// [`DIR_SEEN`] bits.
    pub flags: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

/// [`DirectionState::flags`]: the kernel follows this direction's TLS records.
pub const DIR_FOLLOWING: u32 = 1;
/// [`DirectionState::flags`]: copy every byte even while following records.
pub const DIR_COPY_ALL: u32 = 2;
/// [`DirectionState::flags`]: `resume_seq` is set; bytes before it are skipped.
pub const DIR_RESUME: u32 = 4;
/// [`DirectionState::flags`]: bytes were skipped since the last copied byte; the
/// next payload event carries [`EVENT_AFTER_SKIP`].
pub const DIR_SKIPPED: u32 = 8;
/// [`DirectionState::flags`]: `cursor` holds a position (a payload was seen).
pub const DIR_SEEN: u32 = 16;

impl DirectionState {
    /// A direction that starts with `budget`; following its records from
    /// `first_seq` when `follow`, else copying whole.
    pub const fn new(budget: u32, follow: bool, first_seq: u32) -> Self {
        DirectionState {
            budget,
            body_allowance: RECORD_BODY_ALLOWANCE,
            resume_seq: 0,
            cursor: first_seq,
            record_left: 0,
            record_copy: 0,
            header_have: 0,
            header_bytes: 0,
            flags: if follow { DIR_FOLLOWING | DIR_SEEN } else { 0 },
            _pad: 0,
        }
    }
}

/// Per-flow state kept by the kernel. The entry is deleted when userspace has
/// decided the handshake ([`CONTROL_RELEASE_FLOW`]), on RST, or once both sides
/// sent a FIN, so a reused 4-tuple always starts afresh.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowState {
    /// What is copied of the (lo -> hi) direction.
    pub lo_to_hi: DirectionState,
    /// What is copied of the (hi -> lo) direction.
    pub hi_to_lo: DirectionState,
    /// Sequence number of the client's first payload byte (its ISN + 1): which
    /// connection on this 4-tuple the entry belongs to.
    pub client_seq: u32,
    /// Zero until the flow's first payload event was sent: that event carries
    /// [`EVENT_OPENS_CONNECTION`].
    pub announced: u32,
    /// [`FIN_FROM_LO`] / [`FIN_FROM_HI`] bits: which sides have sent a FIN.
    pub fin_seen: u32,
    /// 1 while this flow is counted in its [`HINTS_MAP`] slot; swapped to 0
    /// atomically when the count is given back (flow released or deleted).
    pub hint_held: u32,
    /// cgroup v2 id (`bpf_skb_cgroup_id`) of the local socket, taken from the
    /// flow's first egress packet that belongs to one; zero until then, and for
    /// forwarded traffic, which has no local socket.
    pub cgroup_id: u64,
}

/// A connection seen being set up: its SYN-ACK, and so the sequence numbers its
/// first client payload must carry. Blind spoofers cannot guess the server's.
///
/// Or, with TCP Fast Open, a client's SYN that carried the start of a ClientHello
/// (`syn_data_len` non-zero): its bytes were copied to userspace, which holds them
/// until a SYN-ACK acknowledges them; that SYN-ACK starts tracking.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    /// The client's next sequence number (the SYN-ACK's acknowledgment number);
    /// for a SYN with data, where its data starts (the SYN's sequence number + 1).
    pub client_seq: u32,
    /// The server's next sequence number (the SYN-ACK's sequence number + 1):
    /// what the client's first payload acknowledges. For a SYN with data: zero
    /// until a SYN-ACK accepted its bytes and its flow started, then non-zero.
    pub server_seq: u32,
    /// Non-zero when the server (SYN-ACK sender) is the `lo` side of the key.
    pub server_is_lo: u32,
    /// Bytes a client's SYN carried (TCP Fast Open); zero for a SYN-ACK's opening.
    /// A SYN-ACK accepts them when it acknowledges `client_seq + syn_data_len`.
    pub syn_data_len: u32,
}

/// [`ControlCommand::op`]: forget a flow userspace has decided, if it is still
/// the connection userspace means ([`ControlCommand::client_seq`]).
pub const CONTROL_RELEASE_FLOW: u32 = 1;
/// [`ControlCommand::op`]: lower a hint count that LRU evictions left too high,
/// only if the slot has not changed since userspace read it.
pub const CONTROL_HEAL_HINT: u32 = 2;
/// [`ControlCommand::op`]: tell the kernel where userspace needs the bytes of one
/// direction of a flow (the one sent by the `lo` side of the key if
/// [`ControlCommand::sender_is_lo`] is non-zero), if it is still the connection
/// of [`ControlCommand::client_seq`]. From [`ControlCommand::resume_seq`] `S`
/// on, by [`ControlCommand::resume_mode`]:
///
/// - [`RESUME_SKIP_TO`]: only skip the bytes before `S`; what is copied from `S`
///   on stays as it was.
/// - [`RESUME_COPY_ALL`]: skip the bytes before `S`, copy every byte from `S`.
/// - [`RESUME_RECORDS`]: `S` is the first byte of a TLS record header: skip the
///   bytes before it and follow records from it (see [`DirectionState`]).
///
/// The control program returns 1 when the command came in time (no byte at or
/// after `S` has passed the kernel yet), 2 when it came late but took effect for
/// the bytes still to come (bytes from `S` up to the kernel's position were
/// treated as before), 0 when it took no effect (flow gone, another connection,
/// or [`RESUME_RECORDS`] late on a direction the kernel does not follow: it
/// cannot know where records are in bytes it did not walk; those bytes were
/// copied whole, so userspace names a later record start), -1 when malformed.
pub const CONTROL_RESUME: u32 = 3;
/// [`ControlCommand::resume_mode`]: skip before the point, change nothing else.
pub const RESUME_SKIP_TO: u32 = 0;
/// [`ControlCommand::resume_mode`]: skip before the point, copy all from it.
pub const RESUME_COPY_ALL: u32 = 1;
/// [`ControlCommand::resume_mode`]: skip before the point, follow TLS records
/// from it (it is the first byte of a record header).
pub const RESUME_RECORDS: u32 = 2;
/// Offset of the [`ControlCommand`] in the frame given to [`CONTROL_PROGRAM`]
/// (test runs of a tc program need at least an Ethernet header's worth).
pub const CONTROL_OFFSET: usize = 16;

/// What userspace asks [`CONTROL_PROGRAM`] to do.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlCommand {
    /// [`CONTROL_RELEASE_FLOW`], [`CONTROL_HEAL_HINT`] or [`CONTROL_RESUME`].
    pub op: u32,
    /// Heal: the slot to correct.
    pub slot: u32,
    /// Release, resume: the flow.
    pub key: FlowKey,
    /// Release, resume: [`FlowState::client_seq`] of the connection meant.
    pub client_seq: u32,
    /// Heal: flows userspace found in the slot.
    pub count: u32,
    /// Resume: the sequence number of the next byte userspace needs.
    pub resume_seq: u32,
    /// Heal: the whole hint word as userspace read it before counting.
    pub seen: u64,
    /// Resume: [`RESUME_SKIP_TO`], [`RESUME_COPY_ALL`] or [`RESUME_RECORDS`].
    pub resume_mode: u32,
    /// Resume: non-zero for the direction sent by the key's `lo` side.
    pub sender_is_lo: u32,
}

impl ControlCommand {
    /// The frame to hand to a test run of [`CONTROL_PROGRAM`].
    pub fn to_frame(&self) -> [u8; CONTROL_OFFSET + core::mem::size_of::<ControlCommand>()] {
        let mut frame = [0u8; CONTROL_OFFSET + core::mem::size_of::<ControlCommand>()];
        // SAFETY: ControlCommand is repr(C) plain integers without padding, so
        // its bytes are all initialised.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                self as *const ControlCommand as *const u8,
                core::mem::size_of::<ControlCommand>(),
            )
        };
        frame[CONTROL_OFFSET..].copy_from_slice(bytes);
        frame
    }
}

/// Low half of a hint word: flows counted in the slot.
pub const HINT_COUNT_MASK: u64 = 0xffff_ffff;
/// What starting a flow adds to its hint word: one to the count, one to the epoch.
pub const HINT_START: u64 = (1 << 32) | 1;

/// The [`HINTS_MAP`] slot of a connection, the same from both ends (XOR) and
/// computed alike by the kernel (from a packet) and userspace (from a key).
#[inline(always)]
pub fn hint_slot(ifindex: u32, a: &[u8; 16], a_port: u16, b: &[u8; 16], b_port: u16) -> u32 {
    let mixed = fold(a) ^ fold(b) ^ (a_port ^ b_port) as u32 ^ ifindex;
    // Fibonacci hashing: the top bits of the product are the well-mixed ones.
    mixed.wrapping_mul(0x9e37_79b1) >> (32 - HINT_SLOTS.trailing_zeros())
}

#[inline(always)]
fn fold(addr: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    w(0) ^ w(4) ^ w(8) ^ w(12)
}

/// True when TCP sequence number `a` comes before `b`, modulo 2^32 (within half
/// the sequence space, as TCP itself compares them): holds across wrap-around.
#[inline(always)]
pub fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// [`FlowState::fin_seen`] bit: the `lo` side sent a FIN.
pub const FIN_FROM_LO: u32 = 1;
/// [`FlowState::fin_seen`] bit: the `hi` side sent a FIN.
pub const FIN_FROM_HI: u32 = 2;

/// Load-time configuration of the kernel program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
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
    /// SYN-ACKs recorded as connections being set up.
    OpeningsSeen = 5,
    /// Payloads that looked like a ClientHello but continue no connection seen
    /// being set up (no matching SYN-ACK on this interface): not tracked.
    ClientHellosUnverified = 6,
    /// Packets received for another host (pkt_type other-host), which the host
    /// drops: never tracked.
    OtherHostIgnored = 7,
    /// Tracked flows ended because a new connection took their 4-tuple.
    FlowsReplaced = 8,
    /// Tracked flows released by userspace once it decided the handshake.
    FlowsReleased = 9,
    /// First payloads of untracked connections that begin a preamble (PROXY
    /// header, HTTP CONNECT, SOCKS) or go to a STARTTLS port with an opening
    /// waiting: candidates, tracked if they continue a connection seen being set
    /// up (then also counted in `FlowsStarted`).
    PreambleCandidates = 10,
    /// Payload bytes of tracked flows not copied on purpose: record bodies past
    /// the allowance while following records, bytes before a resume point
    /// (see [`DirectionState`]).
    BytesSkipped = 11,
    /// Directions of tracked flows whose TLS records the kernel stopped
    /// following (no record header where one was due, a packet past the byte
    /// expected next, too many records in one packet): copied whole since.
    RecordFollowingStopped = 12,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::PacketsSeen,
        Counter::FlowsStarted,
        Counter::EventsSent,
        Counter::EventsDropped,
        Counter::BytesCut,
        Counter::OpeningsSeen,
        Counter::ClientHellosUnverified,
        Counter::OtherHostIgnored,
        Counter::FlowsReplaced,
        Counter::FlowsReleased,
        Counter::PreambleCandidates,
        Counter::BytesSkipped,
        Counter::RecordFollowingStopped,
    ];
}

/// Number of counters in [`COUNTERS_MAP`].
pub const COUNTER_COUNT: u32 = 13;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all these types are `#[repr(C)]`, `Copy`, made only of integers and
    // integer arrays, and have no implicit padding, so every bit pattern is valid.
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowState {}
    unsafe impl aya::Pod for super::KernelConfig {}
    unsafe impl aya::Pod for super::Opening {}
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
            8 + 4 + 2 + 1 + 1 + 16 + 16 + 2 + 2 + 4 + 1 + 1 + 2 + 4 + 4 + 4 + 8
        );
        assert_eq!(size_of::<EventHeader>() % 8, 0);
        assert_eq!(size_of::<FlowKey>(), 4 + 1 + 3 + 16 + 16 + 2 + 2);
        assert_eq!(size_of::<DirectionState>(), 40);
        assert_eq!(size_of::<FlowState>(), 2 * 40 + 24);
        assert_eq!(size_of::<Opening>(), 16);
        assert_eq!(
            size_of::<ControlCommand>(),
            4 + 4 + 44 + 4 + 4 + 4 + 8 + 4 + 4
        );
        assert_eq!(size_of::<KernelConfig>(), 8);
    }

    #[test]
    fn sequence_order_holds_across_wrap_around() {
        assert!(seq_before(1, 2));
        assert!(!seq_before(2, 1));
        assert!(!seq_before(5, 5));
        assert!(seq_before(0xffff_fff0, 0x10));
        assert!(!seq_before(0x10, 0xffff_fff0));
    }

    #[test]
    fn a_hint_slot_is_the_same_from_both_ends_and_in_range() {
        let a = [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b = [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let s = hint_slot(3, &a, 50000, &b, 443);
        assert_eq!(s, hint_slot(3, &b, 443, &a, 50000));
        assert!(s < HINT_SLOTS);
        assert_ne!(s, hint_slot(3, &a, 50001, &b, 443));
    }
}
