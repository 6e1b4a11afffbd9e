//! Rewrites a recorded capture so that each connection's server answers twice:
//! after its SYN-ACK comes a second one with another initial sequence number, the
//! client acknowledges the second, and the server's bytes follow that numbering.
//! That is what a passive monitor sees when a SYN-ACK is retransmitted by a
//! middlebox or the server answers a retransmitted SYN anew; recording it from
//! real stacks is not possible on demand.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etherparse::{NetSlice, SlicedPacket, TcpHeaderSlice, TransportSlice};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

/// Where a TCP segment's fields sit in its frame.
struct TcpAt {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    /// Offsets of the IPv4 and the TCP header in the frame.
    ip_offset: usize,
    offset: usize,
    syn: bool,
    ack: bool,
}

/// Copies the IPv4 Ethernet capture `input` to `output`, adding to every
/// connection a second SYN-ACK whose ISN is the first one's plus `shift`, and
/// moving by `shift` the sequence numbers of the server's later segments and the
/// acknowledgment numbers of the client's. Returns how many SYN-ACKs were doubled.
pub fn second_syn_ack(input: &Path, output: &Path, shift: u32) -> Result<usize> {
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut reader = PcapReader::new(BufReader::new(file))?;
    let header = reader.header();
    let out = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut writer = PcapWriter::with_header(out, header)?;
    // Per connection (keyed by its server's endpoint and its client's): whether
    // its SYN-ACK was doubled, so later segments follow the new numbering.
    let mut shifted: HashMap<(SocketAddrV4, SocketAddrV4), bool> = HashMap::new();
    let mut doubled = 0;
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let mut data = packet.data.to_vec();
        let Some(tcp) = tcp_at(&data)? else {
            writer.write_packet(&packet)?;
            continue;
        };
        if tcp.syn && tcp.ack {
            writer.write_packet(&packet)?;
            add_to(&mut data, &tcp, 4, shift)?;
            let again = PcapPacket::new(
                packet.timestamp + Duration::from_micros(1),
                packet.orig_len,
                &data,
            );
            writer.write_packet(&again)?;
            shifted.insert((tcp.src, tcp.dst), true);
            doubled += 1;
            continue;
        }
        if shifted.contains_key(&(tcp.src, tcp.dst)) {
            add_to(&mut data, &tcp, 4, shift)?;
        } else if tcp.ack && shifted.contains_key(&(tcp.dst, tcp.src)) {
            add_to(&mut data, &tcp, 8, shift)?;
        }
        writer.write_packet(&PcapPacket::new(packet.timestamp, packet.orig_len, &data))?;
    }
    Ok(doubled)
}

/// The TCP segment of an IPv4 Ethernet frame, if it is one.
fn tcp_at(frame: &[u8]) -> Result<Option<TcpAt>> {
    let sliced = SlicedPacket::from_ethernet(frame).context("not an Ethernet frame")?;
    let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) =
        (&sliced.net, &sliced.transport)
    else {
        return Ok(None);
    };
    let start = frame.as_ptr() as usize;
    let ip_offset = ip.header().slice().as_ptr() as usize - start;
    let offset = tcp.header_slice().as_ptr() as usize - start;
    Ok(Some(TcpAt {
        src: SocketAddrV4::new(ip.header().source_addr(), tcp.source_port()),
        dst: SocketAddrV4::new(ip.header().destination_addr(), tcp.destination_port()),
        ip_offset,
        offset,
        syn: tcp.syn(),
        ack: tcp.ack(),
    }))
}

/// Adds `shift` to the 32-bit field at `field` (4: sequence, 8: acknowledgment
/// number) of the TCP header and recomputes its checksum.
fn add_to(frame: &mut [u8], tcp: &TcpAt, field: usize, shift: u32) -> Result<()> {
    let at = tcp.offset + field;
    let value = u32::from_be_bytes(frame[at..at + 4].try_into()?).wrapping_add(shift);
    frame[at..at + 4].copy_from_slice(&value.to_be_bytes());
    let header = TcpHeaderSlice::from_slice(&frame[tcp.offset..])
        .context("TCP header")?
        .to_header();
    let payload_start = tcp.offset + header.header_len();
    // The IPv4 total length bounds the payload (Ethernet padding excluded).
    let ip_start = tcp.ip_offset;
    let total = usize::from(u16::from_be_bytes([
        frame[ip_start + 2],
        frame[ip_start + 3],
    ]));
    let payload_end = ip_start + total;
    if payload_end < payload_start || payload_end > frame.len() {
        bail!("IPv4 length {total} does not fit the frame");
    }
    let checksum = header.calc_checksum_ipv4_raw(
        tcp.src.ip().octets(),
        tcp.dst.ip().octets(),
        &frame[payload_start..payload_end],
    )?;
    frame[tcp.offset + 16..tcp.offset + 18].copy_from_slice(&checksum.to_be_bytes());
    Ok(())
}
