//! The unit every capture source produces and every later stage consumes.
//!
//! The eBPF capture and the pcap reader both turn what they see into [`Segment`]s,
//! so reassembly, handshake parsing and outcomes run identically on live traffic
//! and on recorded files.

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

/// Wall-clock time as a duration since the Unix epoch.
pub type Timestamp = Duration;

/// Which way a packet crossed the interface it was seen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketDirection {
    /// Received by this host on the interface (tc ingress).
    Ingress,
    /// Sent by this host on the interface (tc egress).
    Egress,
    /// Not known (captures from files).
    Unknown,
}

/// TCP flags of a segment (bits as in the TCP header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN bit.
    pub const FIN: u8 = 0x01;
    /// SYN bit.
    pub const SYN: u8 = 0x02;
    /// RST bit.
    pub const RST: u8 = 0x04;
    /// ACK bit.
    pub const ACK: u8 = 0x10;

    /// True when the FIN bit is set.
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// True when the SYN bit is set.
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// True when the RST bit is set.
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// True when the ACK bit is set.
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// The interface a segment was seen on. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Device(pub Arc<str>);

impl Device {
    /// A device with the given name.
    pub fn new(name: &str) -> Self {
        Device(Arc::from(name))
    }
    /// The interface name ("eth0"), or the file name for captures.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One TCP segment (or a chunk of one) as captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// When it was seen.
    pub ts: Timestamp,
    /// Interface (or capture) it was seen on.
    pub device: Device,
    /// Which way it crossed that interface.
    pub direction: PacketDirection,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// TCP sequence number of the segment: of the first byte of `payload`, or for
    /// a SYN (whose payload, with TCP Fast Open, starts one later) its ISN.
    pub seq: u32,
    /// TCP acknowledgment number; meaningful only when the ACK flag is set.
    pub ack: u32,
    /// TCP flags.
    pub flags: TcpFlags,
    /// Captured payload bytes.
    pub payload: Vec<u8>,
    /// Payload bytes that directly follow `payload` in this segment but were not
    /// captured (kernel budget, chunk limit, snap length). Reassembly treats them
    /// as a hole of known size.
    pub cut: u32,
    /// cgroup v2 id of the local socket the connection belongs to, once the kernel
    /// saw it on egress; `None` while unknown, for forwarded traffic and in captures.
    pub cgroup_id: Option<u64>,
}

impl Segment {
    /// Sequence number just after the last byte this segment occupies (captured or cut).
    pub fn end_seq(&self) -> u32 {
        self.seq
            .wrapping_add(self.payload.len() as u32)
            .wrapping_add(self.cut)
    }
}

/// One UDP datagram (or its first bytes) as captured: QUIC's unit, as [`Segment`]
/// is TCP's. Live capture and the pcap reader both produce it.
///
/// A QUIC short-header packet matters only as the fact that it was seen (the
/// connection reached 1-RTT keys); live capture then carries just its first byte
/// in `payload`, with the rest counted in `cut`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// When it was seen.
    pub ts: Timestamp,
    /// Interface (or capture) it was seen on.
    pub device: Device,
    /// Which way it crossed that interface.
    pub direction: PacketDirection,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Captured UDP payload bytes, from the first.
    pub payload: Vec<u8>,
    /// UDP payload bytes after `payload` that were not captured.
    pub cut: u32,
    /// cgroup v2 id of the local socket, when the kernel saw one on egress; `None`
    /// while unknown, for forwarded traffic and in captures.
    pub cgroup_id: Option<u64>,
}

/// Identity of a TCP connection on one device, the same for both directions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    /// Device it is seen on: the same connection on two NICs is two flows.
    pub device: Device,
    /// The lower endpoint.
    pub lo: SocketAddr,
    /// The higher endpoint.
    pub hi: SocketAddr,
}

impl ConnectionKey {
    /// The key of the connection `segment` belongs to.
    pub fn of(segment: &Segment) -> Self {
        let (lo, hi) = if segment.src <= segment.dst {
            (segment.src, segment.dst)
        } else {
            (segment.dst, segment.src)
        };
        ConnectionKey {
            device: segment.device.clone(),
            lo,
            hi,
        }
    }
}

#[cfg(test)]
mod tests;
