//! Flood captures: many TLS connections that open and send a ClientHello which is
//! never answered, each on its own 4-tuple, written as a classic pcap file. Used to
//! hold `tlsmon analyze` and `tlsmon run` (through tcpreplay) to their memory bounds.
//!
//! The ClientHello is the one OpenSSL sent in the corpus capture `tls13-ok.pcap`, so
//! every flood connection offers what a real client offers (about 250 bytes).

use std::fs::File;
use std::io::BufWriter;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use tlsmon::pcap::CaptureFileReader;

use crate::corpus::corpus_dir;
use crate::frames::{self, ACK, PSH, SYN};

/// Server port of every flood connection (a TLS port).
pub const FLOOD_SERVER_PORT: u16 = 443;

/// What a flood capture holds.
#[derive(Clone, Copy, Debug)]
pub struct FloodShape {
    /// Connections, each on its own 4-tuple.
    pub connections: u32,
    /// Index of the first connection: floods with different offsets share no
    /// 4-tuple.
    pub first: u32,
    /// Each connection opens with SYN, SYN-ACK and ACK before its ClientHello; without
    /// them the capture holds only bare ClientHellos (as a spoofer sends them).
    pub tcp_opening: bool,
    /// Capture time between the starts of two connections.
    pub spacing: Duration,
}

/// The ClientHello record (TLS record header included) OpenSSL sent in the corpus.
pub fn corpus_client_hello() -> Result<Vec<u8>> {
    let path = corpus_dir().join("tls13-ok.pcap");
    let mut reader =
        CaptureFileReader::open(&path).with_context(|| format!("opening {}", path.display()))?;
    while let Some(segment) = reader.next_segment()? {
        // Handshake record whose first message is a ClientHello (type 1).
        if segment.payload.len() > 5 && segment.payload[0] == 22 && segment.payload[5] == 1 {
            return Ok(segment.payload);
        }
    }
    bail!("no ClientHello in {}", path.display())
}

/// Client and server of connection `i`: clients 10.128.0.0/9 (one address per
/// connection, so every 4-tuple differs), servers 10.77.0.1 to 10.77.0.250.
pub fn endpoints(i: u32) -> (SocketAddr, SocketAddr) {
    let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i + 1);
    let server = Ipv4Addr::new(10, 77, 0, (i % 250) as u8 + 1);
    (
        SocketAddr::V4(SocketAddrV4::new(client, 40_000 + (i % 20_000) as u16)),
        SocketAddr::V4(SocketAddrV4::new(server, FLOOD_SERVER_PORT)),
    )
}

/// Writes the flood to `path` as an Ethernet pcap; returns the number of packets.
pub fn write_flood(path: &Path, shape: FloodShape) -> Result<u64> {
    let hello = corpus_client_hello()?;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(BufWriter::new(file), header)
        .with_context(|| format!("writing {}", path.display()))?;
    let start = Duration::from_secs(1_700_000_000);
    let mut packets = 0u64;
    for n in 0..shape.connections {
        let i = shape.first + n;
        let (client, server) = endpoints(i);
        let client_isn = i.wrapping_mul(2_654_435_761);
        let server_isn = client_isn ^ 0x5a5a_5a5a;
        let mut frames_of_connection = Vec::with_capacity(4);
        // The numbers a real connection carries: the kernel tracks a ClientHello
        // only when it continues the SYN-ACK it saw.
        let acking_server = frames::Shape {
            ack_number: Some(server_isn.wrapping_add(1)),
            ..frames::Shape::default()
        };
        if shape.tcp_opening {
            frames_of_connection.push(frames::tcp(client, server, client_isn, SYN, &[]));
            frames_of_connection.push(frames::syn_ack(
                server,
                client,
                server_isn,
                client_isn.wrapping_add(1),
                frames::Shape::default(),
            ));
            frames_of_connection.push(frames::tcp_shaped(
                client,
                server,
                client_isn.wrapping_add(1),
                ACK,
                &[],
                acking_server,
            ));
        }
        frames_of_connection.push(frames::tcp_shaped(
            client,
            server,
            client_isn.wrapping_add(1),
            PSH | ACK,
            &hello,
            acking_server,
        ));
        let base = start + shape.spacing * n;
        for (k, frame) in frames_of_connection.iter().enumerate() {
            let ts = base + Duration::from_micros(k as u64);
            writer
                .write_packet(&PcapPacket::new(ts, frame.len() as u32, frame))
                .with_context(|| format!("writing {}", path.display()))?;
            packets += 1;
        }
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_reads_back_with_one_client_hello_per_connection() {
        let dir = std::env::temp_dir().join(crate::netns::unique_name("tlsmon-flood-"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flood.pcap");
        let shape = FloodShape {
            connections: 300,
            first: 0,
            tcp_opening: true,
            spacing: Duration::from_micros(10),
        };
        assert_eq!(write_flood(&path, shape).unwrap(), 1_200);
        let mut reader = CaptureFileReader::open(&path).unwrap();
        let mut hellos = std::collections::HashSet::new();
        while let Some(segment) = reader.next_segment().unwrap() {
            if !segment.payload.is_empty() {
                assert!(
                    hellos.insert((segment.src, segment.dst)),
                    "distinct 4-tuples"
                );
            }
        }
        assert_eq!(hellos.len(), 300);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
