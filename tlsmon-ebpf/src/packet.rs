//! Header parsing by direct packet access: Ethernet, up to two VLAN tags
//! (802.1Q / 802.1ad), IPv4 with options, IPv6 with a bounded number of extension
//! headers, TCP (UDP datagrams are handed to `quic` at the network layer's end).
//! Every read is bounds-checked against `data_end`, which is what the
//! verifier requires and what makes the parse cheap (no helper calls).

use aya_ebpf::programs::TcContext;
use tlsmon_common::{FAMILY_IPV4, FAMILY_IPV6, TCP_FIN, TCP_RST, TCP_SYN};

use crate::diag;

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// IPv6 extension headers skipped before giving up on a packet.
const MAX_IPV6_EXT_HEADERS: usize = 4;

/// What the classifier needs of a TCP packet worth looking at.
pub struct Packet {
    pub family: u8,
    pub tcp_flags: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    /// Acknowledgment number (meaningful when the ACK flag is set).
    pub ack_seq: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Offset of the first TCP payload byte from the start of the packet.
    pub payload_off: u32,
    /// TCP payload bytes (from the IP length, so Ethernet padding is excluded).
    pub payload_len: u32,
}

/// Pointer to `N` bytes at `off`, or `None` when they are past the linear data.
#[inline(always)]
pub(crate) fn bytes_at<const N: usize>(ctx: &TcContext, off: usize) -> Option<&[u8; N]> {
    let start = ctx.data() + off;
    if start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the N bytes at `start` lie inside the packet's linear data, which
    // stays valid and unmodified for the whole program run.
    Some(unsafe { &*(start as *const [u8; N]) })
}

#[inline(always)]
fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

/// Where the network layer ended up and what it said about the transport layer.
pub struct Network {
    pub family: u8,
    /// True for UDP, false for TCP.
    pub udp: bool,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP or UDP header.
    pub l4: usize,
    /// Offset just past the IP payload.
    pub end: usize,
}

/// Parses a TCP packet whose network layer `network` parsed; `None` for anything
/// the classifier has no business with: truncated headers, or a TCP segment with
/// neither payload nor SYN/FIN/RST (the common pure ACK returns here, before any
/// map access).
#[inline(always)]
pub fn parse(ctx: &TcContext, net: Network) -> Option<Packet> {
    let tcp = bytes_at::<20>(ctx, net.l4)?;
    let tcp_flags = tcp[13];
    let data_offset = ((tcp[12] >> 4) as usize) * 4;
    if data_offset < 20 {
        return None;
    }
    let payload_off = net.l4 + data_offset;
    let payload_end = net.end.min(ctx.len() as usize);
    let payload_len = payload_end.saturating_sub(payload_off);
    if payload_len == 0 && tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0 {
        return None;
    }

    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if net.family == FAMILY_IPV4 {
        let ip = bytes_at::<20>(ctx, net.l3)?;
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
    } else {
        let ip = bytes_at::<40>(ctx, net.l3)?;
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
    }
    Some(Packet {
        family: net.family,
        tcp_flags,
        src_port: be16(tcp[0], tcp[1]),
        dst_port: be16(tcp[2], tcp[3]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack_seq: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        src,
        dst,
        payload_off: payload_off as u32,
        payload_len: payload_len as u32,
    })
}

/// Ethernet and VLAN tags, then IPv4 or IPv6 down to a TCP or UDP header; `None`
/// for other protocols, IP fragments and truncated headers.
#[inline(always)]
pub fn network(ctx: &TcContext) -> Option<Network> {
    let eth = bytes_at::<ETH_HLEN>(ctx, 0)?;
    let mut ethertype = be16(eth[12], eth[13]);
    let mut l3 = ETH_HLEN;
    // 802.1Q, and the outer 802.1ad tag of QinQ: at most two tags. (Tags the NIC
    // or veth stripped into skb metadata never appear in the data.)
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag = bytes_at::<4>(ctx, l3)?;
        ethertype = be16(tag[2], tag[3]);
        l3 += 4;
    }
    match ethertype {
        ETH_P_IPV4 => ipv4(ctx, l3),
        ETH_P_IPV6 => ipv6(ctx, l3),
        ETH_P_8021Q | ETH_P_8021AD => {
            diag::too_many_vlan_tags();
            None
        }
        _ => None,
    }
}

#[inline(always)]
fn ipv4(ctx: &TcContext, l3: usize) -> Option<Network> {
    let ip = bytes_at::<20>(ctx, l3)?;
    if ip[0] >> 4 != 4 || (ip[9] != IPPROTO_TCP && ip[9] != IPPROTO_UDP) {
        return None;
    }
    let header_len = ((ip[0] & 0x0f) as usize) * 4;
    // More-fragments flag or a fragment offset: payload is not a whole segment.
    if header_len < 20 || be16(ip[6], ip[7]) & 0x3fff != 0 {
        return None;
    }
    let total_len = be16(ip[2], ip[3]) as usize;
    // A zero total length is a BIG TCP GSO packet: the skb length is the truth.
    let end = if total_len == 0 {
        ctx.len() as usize
    } else {
        l3 + total_len
    };
    Some(Network {
        family: FAMILY_IPV4,
        udp: ip[9] == IPPROTO_UDP,
        l3,
        l4: l3 + header_len,
        end,
    })
}

#[inline(always)]
fn ipv6(ctx: &TcContext, l3: usize) -> Option<Network> {
    let ip = bytes_at::<40>(ctx, l3)?;
    if ip[0] >> 4 != 6 {
        return None;
    }
    let payload_len = be16(ip[4], ip[5]) as usize;
    let mut next = ip[6];
    let mut l4 = l3 + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_TCP | IPPROTO_UDP => break,
            // Hop-by-hop, routing, destination options: length in 8-byte units.
            0 | 43 | 60 => {
                let ext = bytes_at::<2>(ctx, l4)?;
                next = ext[0];
                l4 += (ext[1] as usize + 1) * 8;
            }
            // Authentication header: length in 4-byte units.
            51 => {
                let ext = bytes_at::<2>(ctx, l4)?;
                next = ext[0];
                l4 += (ext[1] as usize + 2) * 4;
            }
            // Fragments (44) and everything else: not a whole segment here.
            _ => return None,
        }
    }
    if next != IPPROTO_TCP && next != IPPROTO_UDP {
        // The loop only ends without TCP or UDP after skipping its maximum.
        diag::too_many_ipv6_extension_headers();
        return None;
    }
    // Zero payload length: jumbogram / BIG TCP; the skb length is the truth.
    let end = if payload_len == 0 {
        ctx.len() as usize
    } else {
        l3 + 40 + payload_len
    };
    Some(Network {
        family: FAMILY_IPV6,
        udp: next == IPPROTO_UDP,
        l3,
        l4,
        end,
    })
}
