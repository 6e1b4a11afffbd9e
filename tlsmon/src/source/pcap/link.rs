//! From one captured frame (link layer first) to the TCP segment or UDP datagram
//! it carries.
//!
//! Header parsing is etherparse's (lax mode, so a frame cut by the snap length still
//! yields its TCP header and the captured part of the payload). Two link headers are
//! read here by hand because etherparse 0.21 has no parser for them: Linux cooked
//! capture v2 (SLL2, 20 bytes, protocol type first) and BSD loopback (4 bytes of
//! address family); in both only the fixed-size header is skipped and etherparse takes
//! over at the IP or Ethernet-type layer.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    EtherType, LaxNetSlice, LaxSlicedPacket, LinuxSllProtocolType, LinuxSllSlice, TransportSlice,
};
use pcap_file::DataLink;

use crate::source::segment::{Datagram, Device, PacketDirection, Segment, TcpFlags, Timestamp};

/// Length of a Linux cooked capture v2 header.
const SLL2_HEADER_LEN: usize = 20;
/// ARPHRD_NETLINK: SLL/SLL2 frames of this hardware type carry netlink, not Ethernet types.
const ARPHRD_NETLINK: u16 = 824;
/// Length of the BSD loopback (DLT_NULL / DLT_LOOP) address-family header.
const NULL_HEADER_LEN: usize = 4;

/// The link layers tlsmon reads; anything else is unsupported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkLayer {
    /// Ethernet II, with up to three 802.1Q / 802.1ad tags.
    Ethernet,
    /// Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 113).
    LinuxSll,
    /// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 276).
    LinuxSll2,
    /// Raw IPv4 or IPv6 (LINKTYPE_RAW 101, LINKTYPE_IPV4 228, LINKTYPE_IPV6 229).
    RawIp,
    /// BSD loopback (LINKTYPE_NULL 0, LINKTYPE_LOOP 108): 4 bytes of address family.
    Loopback,
    /// Any other link type (its LINKTYPE number).
    Unsupported(u32),
    /// A pcapng interface whose description could not be read.
    Unreadable,
}

impl LinkLayer {
    /// The link layer of a pcap / pcapng link type.
    pub(crate) fn of(link: DataLink) -> Self {
        match link {
            DataLink::ETHERNET => LinkLayer::Ethernet,
            DataLink::LINUX_SLL => LinkLayer::LinuxSll,
            DataLink::LINUX_SLL2 => LinkLayer::LinuxSll2,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => LinkLayer::RawIp,
            DataLink::NULL | DataLink::LOOP => LinkLayer::Loopback,
            other => LinkLayer::Unsupported(u32::from(other)),
        }
    }
}

/// What one frame turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A TCP segment.
    Tcp(Segment),
    /// A UDP datagram (QUIC's unit; the reader hands it out only when asked to).
    Udp(Datagram),
    /// Something else that parsed fine (ARP, UDP, ICMP, other ether types).
    NotTcp,
    /// An IP fragment (TCP in fragments is not reassembled).
    IpFragment,
    /// Headers that do not parse.
    Malformed,
    /// Cut by the snap length before the end of the TCP header.
    HeadersCut,
    /// A link type tlsmon does not read.
    UnsupportedLink,
}

/// One captured frame with what the capture record says about it.
pub(crate) struct Frame<'a> {
    pub link: LinkLayer,
    pub ts: Timestamp,
    pub data: &'a [u8],
    /// Length on the wire; more than `data.len()` when the snap length cut the frame.
    pub wire_len: u32,
}

impl Frame<'_> {
    /// True when the capture kept less than the wire length.
    pub(crate) fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.wire_len)
    }
}

/// Decode `frame` down to TCP.
pub(crate) fn decode_frame(frame: &Frame<'_>, device: &Device) -> FrameKind {
    let sliced = match frame.link {
        LinkLayer::Ethernet => match LaxSlicedPacket::from_ethernet(frame.data) {
            Ok(sliced) => sliced,
            Err(_) => return cut_or_malformed(frame),
        },
        LinkLayer::LinuxSll => match LinuxSllSlice::from_slice(frame.data) {
            Ok(sll) => match sll.protocol_type() {
                LinuxSllProtocolType::EtherType(ether_type) => {
                    LaxSlicedPacket::from_ether_type(ether_type, sll.payload_slice())
                }
                _ => return FrameKind::NotTcp,
            },
            Err(_) => return cut_or_malformed(frame),
        },
        LinkLayer::LinuxSll2 => {
            // SLL2: protocol type (2, big endian), reserved (2), ifindex (4),
            // ARPHRD type (2), packet type (1), address length (1), address (8).
            let Some(header) = frame.data.get(..SLL2_HEADER_LEN) else {
                return cut_or_malformed(frame);
            };
            let protocol = u16::from_be_bytes([header[0], header[1]]);
            let hardware = u16::from_be_bytes([header[8], header[9]]);
            if hardware == ARPHRD_NETLINK {
                return FrameKind::NotTcp;
            }
            LaxSlicedPacket::from_ether_type(EtherType(protocol), &frame.data[SLL2_HEADER_LEN..])
        }
        LinkLayer::RawIp => match LaxSlicedPacket::from_ip(frame.data) {
            Ok(sliced) => sliced,
            Err(_) => return cut_or_malformed(frame),
        },
        LinkLayer::Loopback => {
            // The family is in the capturing host's byte order (NULL) or big endian
            // (LOOP) and AF_INET6 differs between systems; the IP version nibble
            // tells the same thing reliably.
            let Some(ip) = frame.data.get(NULL_HEADER_LEN..) else {
                return cut_or_malformed(frame);
            };
            match LaxSlicedPacket::from_ip(ip) {
                Ok(sliced) => sliced,
                Err(_) => return cut_or_malformed(frame),
            }
        }
        LinkLayer::Unsupported(_) => return FrameKind::UnsupportedLink,
        LinkLayer::Unreadable => return FrameKind::Malformed,
    };
    tcp_segment(&sliced, frame, device)
}

fn cut_or_malformed(frame: &Frame<'_>) -> FrameKind {
    if frame.is_truncated() {
        FrameKind::HeadersCut
    } else {
        FrameKind::Malformed
    }
}

fn tcp_segment(sliced: &LaxSlicedPacket<'_>, frame: &Frame<'_>, device: &Device) -> FrameKind {
    let Some(net) = &sliced.net else {
        return if sliced.stop_err.is_some() {
            cut_or_malformed(frame)
        } else {
            FrameKind::NotTcp
        };
    };
    let (src_ip, dst_ip, ip_start, ip_total_len, payload) = match net {
        LaxNetSlice::Ipv4(ip) => {
            let header = ip.header();
            (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
                offset_in(frame.data, header.slice()),
                usize::from(header.total_len()),
                ip.payload(),
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            let header = ip.header();
            (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
                offset_in(frame.data, header.slice()),
                usize::from(header.payload_length()) + header.slice().len(),
                ip.payload(),
            )
        }
        LaxNetSlice::Arp(_) => return FrameKind::NotTcp,
    };
    if payload.fragmented {
        return FrameKind::IpFragment;
    }
    let is_udp = payload.ip_number == etherparse::ip_number::UDP;
    if payload.ip_number != etherparse::ip_number::TCP && !is_udp {
        return FrameKind::NotTcp;
    }
    let mut cut = 0u32;
    if payload.incomplete {
        if !frame.is_truncated() {
            // The IP header claims more bytes than the wire carried: garbage.
            return FrameKind::Malformed;
        }
        // Bytes of this IP packet that the snap length cut, never more than the
        // record says were lost.
        let declared_end = ip_start.saturating_add(ip_total_len);
        let missing = declared_end.saturating_sub(frame.data.len()) as u64;
        let lost_on_record = u64::from(frame.wire_len) - frame.data.len() as u64;
        cut = missing.min(lost_on_record).min(u64::from(u32::MAX)) as u32;
    }
    if is_udp {
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            return cut_or_malformed(frame);
        };
        return FrameKind::Udp(Datagram {
            ts: frame.ts,
            device: device.clone(),
            direction: PacketDirection::Unknown,
            src: SocketAddr::new(src_ip, udp.source_port()),
            dst: SocketAddr::new(dst_ip, udp.destination_port()),
            payload: udp.payload().to_vec(),
            cut,
            cgroup_id: None,
        });
    }
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return cut_or_malformed(frame);
    };
    FrameKind::Tcp(Segment {
        ts: frame.ts,
        device: device.clone(),
        direction: PacketDirection::Unknown,
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: tcp_flags(tcp),
        payload: tcp.payload().to_vec(),
        cut,
        cgroup_id: None,
    })
}

/// TCP flag bits as they sit in the header's flags byte.
fn tcp_flags(tcp: &etherparse::TcpSlice<'_>) -> TcpFlags {
    let bits = [
        (tcp.fin(), 0x01),
        (tcp.syn(), 0x02),
        (tcp.rst(), 0x04),
        (tcp.psh(), 0x08),
        (tcp.ack(), 0x10),
        (tcp.urg(), 0x20),
        (tcp.ece(), 0x40),
        (tcp.cwr(), 0x80),
    ];
    TcpFlags(
        bits.iter()
            .filter(|(set, _)| *set)
            .fold(0u8, |acc, (_, bit)| acc | bit),
    )
}

/// Byte offset of `inner` (a sub-slice) within `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}
