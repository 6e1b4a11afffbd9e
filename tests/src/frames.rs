//! Synthetic Ethernet frames (built with etherparse) and TLS record payloads for
//! BPF_PROG_TEST_RUN tests of the classifier.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header,
    Ipv6RawExtHeader, PacketBuilder, VlanId,
};

/// TCP flag bits.
pub const FIN: u8 = 0x01;
/// TCP flag bits.
pub const SYN: u8 = 0x02;
/// TCP flag bits.
pub const RST: u8 = 0x04;
/// TCP flag bits.
pub const PSH: u8 = 0x08;
/// TCP flag bits.
pub const ACK: u8 = 0x10;

/// Extra headers to put in a frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shape {
    /// 802.1Q tags (one, or two for QinQ) before the IP header.
    pub vlans: &'static [u16],
    /// IPv4 options bytes (multiple of 4, at most 40).
    pub ipv4_options: &'static [u8],
    /// An IPv6 hop-by-hop options header before TCP.
    pub ipv6_hop_by_hop: bool,
    /// Acknowledgment number when the ACK flag is set (`None`: 1).
    pub ack_number: Option<u32>,
    /// Address the frame to another host's MAC. By default frames go to
    /// 00:00:00:00:00:00, the address of the loopback device that
    /// BPF_PROG_TEST_RUN runs them on, so the kernel sees them as for this host.
    pub to_other_host: bool,
}

/// The server's SYN-ACK of a connection: its initial sequence number is
/// `server_isn` and it acknowledges the client's SYN, so the client's first
/// payload byte is `client_next`.
pub fn syn_ack(
    server: SocketAddr,
    client: SocketAddr,
    server_isn: u32,
    client_next: u32,
    shape: Shape,
) -> Vec<u8> {
    let shape = Shape {
        ack_number: Some(client_next),
        ..shape
    };
    tcp_shaped(server, client, server_isn, SYN | ACK, &[], shape)
}

/// One TCP segment as an Ethernet frame.
pub fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_shaped(src, dst, seq, flags, payload, Shape::default())
}

/// One TCP segment as an Ethernet frame with extra headers.
pub fn tcp_shaped(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    flags: u8,
    payload: &[u8],
    shape: Shape,
) -> Vec<u8> {
    let destination = if shape.to_other_host {
        [2, 0, 0, 0, 0, 2]
    } else {
        [0; 6]
    };
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], destination);
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(0, 64, IpNumber::TCP, s.octets(), d.octets()).unwrap();
            h.options = shape.ipv4_options.try_into().unwrap();
            IpHeaders::Ipv4(h, Ipv4Extensions::default())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 0,
                next_header: IpNumber::TCP,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
            };
            let mut ext = Ipv6Extensions::default();
            if shape.ipv6_hop_by_hop {
                // PadN option filling the 6 bytes after next-header and length.
                ext.hop_by_hop_options =
                    Some(Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap());
            }
            IpHeaders::Ipv6(h, ext)
        }
        _ => panic!("mixed address families"),
    };
    let l3 = match shape.vlans {
        [] => eth.ip(ip),
        [one] => eth.single_vlan(VlanId::try_new(*one).unwrap()).ip(ip),
        [outer, inner] => eth
            .double_vlan(
                VlanId::try_new(*outer).unwrap(),
                VlanId::try_new(*inner).unwrap(),
            )
            .ip(ip),
        _ => panic!("at most two VLAN tags"),
    };
    let mut step = l3.tcp(src.port(), dst.port(), seq, 64240);
    if flags & FIN != 0 {
        step = step.fin();
    }
    if flags & SYN != 0 {
        step = step.syn();
    }
    if flags & RST != 0 {
        step = step.rst();
    }
    if flags & PSH != 0 {
        step = step.psh();
    }
    if flags & ACK != 0 {
        step = step.ack(shape.ack_number.unwrap_or(1));
    }
    let mut out = Vec::with_capacity(step.size(payload.len()));
    step.write(&mut out, payload).unwrap();
    out
}

/// A TLS 1.2-style ClientHello record (content type 22, record version 0x0301)
/// of exactly `total_len` bytes (at least 64), padded with a padding extension.
pub fn client_hello(total_len: usize) -> Vec<u8> {
    assert!(total_len >= 64);
    let mut body = Vec::new();
    body.extend_from_slice(&[3, 3]); // client_version TLS 1.2
    body.extend((0..32u8).map(|i| i.wrapping_mul(7))); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]); // two cipher suites
    body.extend_from_slice(&[1, 0]); // null compression
                                     // Extensions: one padding extension (type 21) filling the rest.
    let fixed = 5 + 4 + body.len() + 2 + 4;
    let pad = total_len - fixed;
    body.extend_from_slice(&((4 + pad) as u16).to_be_bytes());
    body.extend_from_slice(&[0, 21]);
    body.extend_from_slice(&(pad as u16).to_be_bytes());
    body.extend(std::iter::repeat_n(0u8, pad));
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    assert_eq!(record.len(), total_len);
    record
}

/// An SSLv2-compatible ClientHello (RFC 5246 appendix E.2) offering TLS 1.0.
pub fn sslv2_client_hello() -> Vec<u8> {
    let mut body = vec![1, 3, 1]; // msg_type CLIENT-HELLO, version 3.1
    body.extend_from_slice(&[0, 3, 0, 0, 0, 16]); // cipher specs, session id, challenge lengths
    body.extend_from_slice(&[0x00, 0x00, 0x2f]);
    body.extend((0..16u8).map(|i| i ^ 0x5a));
    let mut record = vec![0x80 | (body.len() >> 8) as u8, body.len() as u8];
    record.extend_from_slice(&body);
    record
}

/// A ServerHello-looking handshake record of `total_len` bytes.
pub fn server_hello(total_len: usize) -> Vec<u8> {
    let mut record = vec![22, 3, 3];
    record.extend_from_slice(&((total_len - 5) as u16).to_be_bytes());
    record.push(2);
    record.resize(total_len, 0x42);
    record
}

/// One UDP datagram as an Ethernet frame (to this host, no extra headers).
pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0; 6]);
    let step = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    }
    .udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(step.size(payload.len()));
    step.write(&mut out, payload).unwrap();
    out
}

/// A QUIC long-header packet of `version` whose first byte is `first` (type
/// bits included), with an 8-byte Destination Connection ID, padded with
/// arbitrary protected bytes to `total_len` (at least 32). Only its header is
/// real: the kernel looks at nothing else.
pub fn quic_long(first: u8, version: u32, total_len: usize) -> Vec<u8> {
    assert!(total_len >= 32);
    let mut p = vec![first];
    p.extend_from_slice(&version.to_be_bytes());
    p.push(8);
    p.extend_from_slice(&[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08]);
    p.push(0); // SCID length
    p.push(0); // token length (Initial)
    let rest = total_len - p.len() - 2;
    p.extend_from_slice(&(0x4000u16 | rest as u16).to_be_bytes());
    p.extend((0..rest).map(|i| (i * 7 + 3) as u8));
    p
}

/// A QUIC v1 client or server Initial of `total_len` bytes.
pub fn quic_initial(total_len: usize) -> Vec<u8> {
    quic_long(0xc3, 0x0000_0001, total_len)
}

/// A QUIC short-header (1-RTT) packet of `total_len` bytes (at least 2).
pub fn quic_short(total_len: usize) -> Vec<u8> {
    let mut p = vec![0x43];
    p.extend((1..total_len).map(|i| (i * 13) as u8));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn payload_of(frame: &[u8]) -> (Vec<u8>, u16) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let vlans = p.link_exts.len() as u16;
        match p.transport {
            Some(TransportSlice::Tcp(t)) => (t.payload().to_vec(), vlans),
            _ => panic!("no tcp"),
        }
    }

    #[test]
    fn frames_parse_back_with_their_payload() {
        let ch = client_hello(300);
        let v4 = tcp_shaped(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:443".parse().unwrap(),
            7,
            ACK | PSH,
            &ch,
            Shape {
                vlans: &[100, 200],
                ipv4_options: &[1, 1, 1, 0],
                ..Shape::default()
            },
        );
        assert_eq!(payload_of(&v4), (ch.clone(), 2));
        let v6 = tcp_shaped(
            "[fd00::1]:40000".parse().unwrap(),
            "[fd00::2]:443".parse().unwrap(),
            7,
            ACK,
            &ch,
            Shape {
                ipv6_hop_by_hop: true,
                ..Shape::default()
            },
        );
        let p = SlicedPacket::from_ethernet(&v6).unwrap();
        assert!(
            matches!(p.net, Some(NetSlice::Ipv6(ref s)) if s.extensions().first_header().is_some())
        );
        assert_eq!(payload_of(&v6).0, ch);
    }
}
