//! Captures built in memory with pcap-file's writers, read back through the reader.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
use pcap_file::pcapng::blocks::unknown::UnknownBlock;
use pcap_file::pcapng::{Block, PcapNgWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use super::*;
use crate::source::segment::{PacketDirection, TcpFlags};

pub(super) const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub(super) const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// An IPv4/TCP packet (no link header) from 10.0.0.1:40000 to 10.0.0.2:443.
pub(super) fn ipv4_tcp(seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 443, seq, 1024)
        .ack(7)
        .psh()
        .write(&mut out, payload)
        .unwrap();
    out
}

/// An IPv6/TCP packet (no link header) from [fd00::1]:40000 to [fd00::2]:443.
pub(super) fn ipv6_tcp(seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(v6(1), v6(2), 64)
        .tcp(40000, 443, seq, 1024)
        .syn()
        .write(&mut out, payload)
        .unwrap();
    out
}

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}

/// Ethernet II around `ip` with the given VLAN tags (TPID, TCI) outermost first.
pub(super) fn ethernet(tags: &[(u16, u16)], ether_type: u16, ip: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&MAC_B);
    frame.extend_from_slice(&MAC_A);
    for (tpid, tci) in tags {
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&tci.to_be_bytes());
    }
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame.extend_from_slice(ip);
    frame
}

/// A classic pcap with the given header fields and (timestamp, wire length, bytes) records.
pub(super) fn classic_pcap(
    datalink: DataLink,
    endianness: Endianness,
    ts_resolution: TsResolution,
    packets: &[(Duration, u32, Vec<u8>)],
) -> Vec<u8> {
    let header = PcapHeader {
        datalink,
        endianness,
        ts_resolution,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (ts, wire_len, data) in packets {
        writer
            .write_packet(&PcapPacket::new(*ts, *wire_len, data))
            .unwrap();
    }
    writer.into_writer()
}

/// Records with full capture (wire length = captured length).
pub(super) fn full(packets: Vec<(Duration, Vec<u8>)>) -> Vec<(Duration, u32, Vec<u8>)> {
    packets
        .into_iter()
        .map(|(ts, data)| (ts, data.len() as u32, data))
        .collect()
}

pub(super) fn read_all(name: &str, bytes: Vec<u8>) -> (Vec<Segment>, CaptureFileStats) {
    let mut reader = CaptureFileReader::from_reader(name, io::Cursor::new(bytes)).unwrap();
    let mut segments = Vec::new();
    while let Some(segment) = reader.next_segment().unwrap() {
        segments.push(segment);
    }
    (segments, *reader.stats())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const PSH_ACK: TcpFlags = TcpFlags(0x18);

#[test]
fn ethernet_ipv4_little_endian_microseconds() {
    let ts = Duration::new(1_700_000_000, 123_456_000);
    let mut udp = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(53, 53)
        .write(&mut udp, b"dns")
        .unwrap();
    let bytes = classic_pcap(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::MicroSecond,
        &full(vec![
            (ts, ethernet(&[], 0x0800, &ipv4_tcp(1000, b"hello"))),
            (ts, ethernet(&[], 0x0800, &udp)),
            (ts, ethernet(&[], 0x0806, &[0u8; 28])),
        ]),
    );
    let (segments, stats) = read_all("eth.pcap", bytes);
    assert_eq!(
        segments,
        vec![Segment {
            ts,
            device: Device::new("eth.pcap"),
            direction: PacketDirection::Unknown,
            src: addr("10.0.0.1:40000"),
            dst: addr("10.0.0.2:443"),
            seq: 1000,
            ack: 7,
            flags: PSH_ACK,
            payload: b"hello".to_vec(),
            cut: 0,
            cgroup_id: None,
        }]
    );
    assert_eq!(
        stats,
        CaptureFileStats {
            packets: 3,
            tcp_segments: 1,
            non_tcp: 2,
            ..Default::default()
        }
    );
}

#[test]
fn vlan_tags_single_and_double_with_ipv6() {
    let bytes = classic_pcap(
        DataLink::ETHERNET,
        Endianness::Big,
        TsResolution::MicroSecond,
        &full(vec![
            (
                Duration::from_secs(1),
                ethernet(&[(0x8100, 100)], 0x86DD, &ipv6_tcp(5, b"a")),
            ),
            (
                Duration::from_secs(2),
                ethernet(&[(0x88A8, 10), (0x8100, 20)], 0x0800, &ipv4_tcp(6, b"b")),
            ),
        ]),
    );
    let (segments, stats) = read_all("vlan.pcap", bytes);
    assert_eq!(segments.len(), 2);
    assert_eq!(segments[0].src, addr("[fd00::1]:40000"));
    assert_eq!(segments[0].dst, addr("[fd00::2]:443"));
    assert_eq!(segments[0].flags, TcpFlags(TcpFlags::SYN));
    assert_eq!(segments[0].payload, b"a");
    assert_eq!(segments[1].src, addr("10.0.0.1:40000"));
    assert_eq!(segments[1].seq, 6);
    assert_eq!(segments[1].payload, b"b");
    assert_eq!(segments[1].ts, Duration::from_secs(2));
    assert_eq!(stats.tcp_segments, 2);
    assert_eq!(stats.malformed, 0);
}

/// IPv4 with 4 bytes of options (two NOPs and an end-of-list, padded).
fn ipv4_with_options(seq: u32, payload: &[u8]) -> Vec<u8> {
    let plain = ipv4_tcp(seq, payload);
    let mut ip = plain[..20].to_vec();
    ip[0] = 0x46; // version 4, IHL 6
    let total = (plain.len() + 4) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[1, 1, 0, 0]);
    ip.extend_from_slice(&plain[20..]);
    ip
}

#[test]
fn linux_cooked_v1_with_ipv4_options() {
    let ip = ipv4_with_options(77, b"sll");
    let mut frame = vec![0, 0, 0, 1, 0, 6]; // incoming, ARPHRD_ETHER, 6-byte address
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(&ip);
    let bytes = classic_pcap(
        DataLink::LINUX_SLL,
        Endianness::Little,
        TsResolution::MicroSecond,
        &full(vec![(Duration::from_secs(3), frame)]),
    );
    let (segments, stats) = read_all("sll.pcap", bytes);
    assert_eq!(stats.tcp_segments, 1, "{stats:?}");
    assert_eq!(segments[0].seq, 77);
    assert_eq!(segments[0].payload, b"sll");
    assert_eq!(segments[0].dst, addr("10.0.0.2:443"));
}

/// IPv6 with a hop-by-hop options header (8 bytes of PadN) before TCP.
fn ipv6_with_hop_by_hop(seq: u32, payload: &[u8]) -> Vec<u8> {
    let plain = ipv6_tcp(seq, payload);
    let mut ip = plain[..40].to_vec();
    let payload_len = (plain.len() - 40 + 8) as u16;
    ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
    ip[6] = 0; // next header: hop-by-hop
    ip.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next: TCP; PadN of 4
    ip.extend_from_slice(&plain[40..]);
    ip
}

fn sll2(ether_type: u16, arphrd: u16, ip: &[u8]) -> Vec<u8> {
    let mut frame = ether_type.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 0]); // reserved
    frame.extend_from_slice(&3u32.to_be_bytes()); // ifindex
    frame.extend_from_slice(&arphrd.to_be_bytes());
    frame.extend_from_slice(&[4, 6]); // outgoing, 6-byte address
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
    frame.extend_from_slice(ip);
    frame
}

#[test]
fn linux_cooked_v2_with_ipv6_extension_header() {
    let bytes = classic_pcap(
        DataLink::LINUX_SLL2,
        Endianness::Little,
        TsResolution::MicroSecond,
        &full(vec![
            (
                Duration::from_secs(4),
                sll2(0x86DD, 1, &ipv6_with_hop_by_hop(9, b"v6ext")),
            ),
            (Duration::from_secs(5), sll2(0x0800, 824, &[0u8; 20])),
        ]),
    );
    let (segments, stats) = read_all("sll2.pcap", bytes);
    assert_eq!(stats.tcp_segments, 1, "{stats:?}");
    assert_eq!(stats.non_tcp, 1);
    assert_eq!(segments[0].seq, 9);
    assert_eq!(segments[0].payload, b"v6ext");
    assert_eq!(segments[0].src, addr("[fd00::1]:40000"));
}

#[test]
fn raw_ip_link_types_and_bsd_loopback() {
    for datalink in [DataLink::RAW, DataLink::IPV4, DataLink::IPV6] {
        let bytes = classic_pcap(
            datalink,
            Endianness::Little,
            TsResolution::MicroSecond,
            &full(vec![
                (Duration::from_secs(1), ipv4_tcp(1, b"4")),
                (Duration::from_secs(2), ipv6_tcp(2, b"6")),
            ]),
        );
        let (segments, stats) = read_all("raw.pcap", bytes);
        assert_eq!(stats.tcp_segments, 2, "{datalink:?}");
        assert_eq!(segments[0].payload, b"4");
        assert_eq!(segments[1].payload, b"6");
    }
    let mut v4 = 2u32.to_le_bytes().to_vec(); // AF_INET in the capturing host's order
    v4.extend_from_slice(&ipv4_tcp(3, b"lo"));
    let mut v6 = 30u32.to_be_bytes().to_vec(); // AF_INET6 on macOS, LOOP byte order
    v6.extend_from_slice(&ipv6_tcp(4, b"lo6"));
    for datalink in [DataLink::NULL, DataLink::LOOP] {
        let bytes = classic_pcap(
            datalink,
            Endianness::Big,
            TsResolution::MicroSecond,
            &full(vec![
                (Duration::from_secs(1), v4.clone()),
                (Duration::from_secs(1), v6.clone()),
            ]),
        );
        let (segments, stats) = read_all("lo.pcap", bytes);
        assert_eq!(stats.tcp_segments, 2, "{datalink:?}");
        assert_eq!(segments[0].payload, b"lo");
        assert_eq!(segments[1].payload, b"lo6");
    }
}

#[test]
fn nanosecond_big_endian_pcap_keeps_nanoseconds() {
    let ts = Duration::new(1_600_000_000, 987_654_321);
    let bytes = classic_pcap(
        DataLink::ETHERNET,
        Endianness::Big,
        TsResolution::NanoSecond,
        &full(vec![(ts, ethernet(&[], 0x0800, &ipv4_tcp(1, b"ns")))]),
    );
    assert_eq!(&bytes[..4], &[0xA1, 0xB2, 0x3C, 0x4D]);
    let (segments, _) = read_all("ns.pcap", bytes);
    assert_eq!(segments[0].ts, ts);
}

#[test]
fn truncated_capture_turns_lost_bytes_into_cut() {
    let payload = vec![0x16u8; 1000];
    let frame = ethernet(&[], 0x0800, &ipv4_tcp(500, &payload));
    let wire_len = frame.len() as u32; // 14 + 20 + 20 + 1000
    let captured = frame[..100].to_vec(); // 46 payload bytes kept
    let header_cut = frame[..40].to_vec(); // ends inside the TCP header
    let bytes = classic_pcap(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::MicroSecond,
        &[
            (Duration::from_secs(1), wire_len, captured),
            (Duration::from_secs(2), wire_len, header_cut),
        ],
    );
    let (segments, stats) = read_all("snap.pcap", bytes);
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].payload, vec![0x16u8; 46]);
    assert_eq!(segments[0].cut, 954);
    assert_eq!(segments[0].end_seq(), 1500);
    assert_eq!(
        stats,
        CaptureFileStats {
            packets: 2,
            tcp_segments: 1,
            truncated: 2,
            headers_cut: 1,
            ..Default::default()
        }
    );
}

#[test]
fn garbage_packets_are_counted_and_the_rest_is_read() {
    let mut bad_ip = ipv4_tcp(1, b"x");
    bad_ip[0] = 0x42; // IHL 2: shorter than any IPv4 header
    let mut lying_ip = ipv4_tcp(1, b"y");
    lying_ip[2..4].copy_from_slice(&1500u16.to_be_bytes()); // claims more than the wire had
    let bytes = classic_pcap(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::MicroSecond,
        &full(vec![
            (
                Duration::from_secs(1),
                ethernet(&[], 0x0800, &ipv4_tcp(1, b"first")),
            ),
            (Duration::from_secs(2), ethernet(&[], 0x0800, &bad_ip)),
            (Duration::from_secs(3), vec![1, 2, 3, 4, 5]),
            (Duration::from_secs(4), ethernet(&[], 0x0800, &lying_ip)),
            (
                Duration::from_secs(5),
                ethernet(&[], 0x0800, &ipv4_tcp(6, b"last")),
            ),
        ]),
    );
    let (segments, stats) = read_all("garbage.pcap", bytes);
    let payloads: Vec<&[u8]> = segments.iter().map(|s| &s.payload[..]).collect();
    assert_eq!(payloads, vec![&b"first"[..], &b"last"[..]]);
    assert_eq!(stats.packets, 5);
    assert_eq!(stats.malformed, 3);
    assert_eq!(stats.tcp_segments, 2);
}

fn idb(linktype: DataLink, options: Vec<InterfaceDescriptionOption<'static>>) -> Block<'static> {
    Block::InterfaceDescription(InterfaceDescriptionBlock {
        linktype,
        snaplen: 0xFFFF,
        options,
    })
}

/// An EPB; `units` is the raw timestamp in the interface's resolution (pcap-file
/// writes the Duration's nanosecond count as the raw value).
fn epb(interface_id: u32, units: u64, data: &[u8]) -> Block<'_> {
    Block::EnhancedPacket(EnhancedPacketBlock {
        interface_id,
        timestamp: Duration::from_nanos(units),
        original_len: data.len() as u32,
        data: Cow::Borrowed(data),
        options: vec![],
    })
}

pub(super) fn two_interface_pcapng(endianness: Endianness) -> Vec<u8> {
    let eth = ethernet(&[], 0x0800, &ipv4_tcp(10, b"eth0"));
    let cooked = sll2(0x86DD, 1, &ipv6_tcp(20, b"any"));
    let spb_frame = ethernet(&[], 0x0800, &ipv4_tcp(30, b"simple"));
    let mut writer = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
    writer
        .write_block(&idb(
            DataLink::ETHERNET,
            vec![InterfaceDescriptionOption::IfTsResol(9)],
        ))
        .unwrap();
    writer
        .write_block(&idb(DataLink::LINUX_SLL2, vec![]))
        .unwrap();
    writer
        .write_block(&idb(DataLink::USB_LINUX, vec![]))
        .unwrap();
    writer
        .write_block(&epb(0, 1_700_000_000_123_456_789, &eth))
        .unwrap();
    writer
        .write_block(&Block::Unknown(UnknownBlock::new(
            0x0BAD,
            16,
            &[1, 2, 3, 4],
        )))
        .unwrap();
    writer
        .write_block(&epb(1, 1_700_000_001_000_002, &cooked))
        .unwrap();
    writer
        .write_block(&epb(2, 1_700_000_001_500_000, &[0u8; 64]))
        .unwrap();
    writer
        .write_block(&Block::SimplePacket(SimplePacketBlock {
            original_len: spb_frame.len() as u32,
            data: Cow::Borrowed(&spb_frame),
        }))
        .unwrap();
    writer.into_inner()
}

#[test]
fn pcapng_with_interfaces_of_different_link_types_and_resolutions() {
    for endianness in [Endianness::Little, Endianness::Big] {
        let (segments, stats) = read_all("two.pcapng", two_interface_pcapng(endianness));
        assert_eq!(segments.len(), 3, "{endianness:?} {stats:?}");
        assert_eq!(segments[0].payload, b"eth0");
        assert_eq!(segments[0].ts, Duration::new(1_700_000_000, 123_456_789));
        assert_eq!(segments[1].payload, b"any");
        assert_eq!(segments[1].src, addr("[fd00::1]:40000"));
        assert_eq!(segments[1].ts, Duration::new(1_700_000_001, 2_000));
        // A simple packet block has no timestamp: it gets the previous packet's
        // (here the USB one, skipped).
        assert_eq!(segments[2].payload, b"simple");
        assert_eq!(segments[2].ts, Duration::new(1_700_000_001, 500_000_000));
        assert_eq!(
            stats,
            CaptureFileStats {
                packets: 4,
                tcp_segments: 3,
                unsupported_link: 1,
                ..Default::default()
            }
        );
    }
}

#[test]
fn open_names_segments_after_the_file_not_its_path() {
    let dir = std::env::temp_dir().join(format!("tlsmon-pcap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("capture.pcapng");
    std::fs::write(&path, two_interface_pcapng(Endianness::Little)).unwrap();
    let mut reader = CaptureFileReader::open(&path).unwrap();
    assert_eq!(reader.format(), CaptureFormat::PcapNg);
    let segment = reader.next_segment().unwrap().unwrap();
    assert_eq!(segment.device.name(), "capture.pcapng");
    std::fs::remove_dir_all(&dir).unwrap();

    let missing = dir.join("missing.pcap");
    let err = CaptureFileReader::open(&missing).err().unwrap();
    assert!(matches!(err, CaptureFileError::Io { offset: 0, .. }));
    assert!(err.to_string().contains("missing.pcap"), "{err}");
}

/// Captures recorded by tcpdump on loopback (fuzz/record_seeds.sh); the figures were
/// read with tshark: 30 TCP packets, 2839 payload bytes on the wire, 11 of the packets
/// cut by the 96-byte snap length copy.
#[test]
fn real_tcpdump_captures_match_tshark() {
    let files: [(&str, &[u8]); 3] = [
        (
            "real.pcap",
            include_bytes!("../../../../fuzz/corpus/capture_file/real-openssl-tls13-tls12.pcap"),
        ),
        (
            "real.pcapng",
            include_bytes!("../../../../fuzz/corpus/capture_file/real-openssl-tls13-tls12.pcapng"),
        ),
        (
            "snap96.pcap",
            include_bytes!("../../../../fuzz/corpus/capture_file/real-openssl-snap96.pcap"),
        ),
    ];
    for (name, bytes) in files {
        let (segments, stats) = read_all(name, bytes.to_vec());
        assert_eq!(stats.packets, 30, "{name}");
        assert_eq!(stats.tcp_segments, 30, "{name}");
        let wire_payload: u64 = segments
            .iter()
            .map(|s| s.payload.len() as u64 + u64::from(s.cut))
            .sum();
        assert_eq!(wire_payload, 2839, "{name}");
        let first = &segments[0];
        assert_eq!(
            first.ts,
            Duration::new(1_795_734_218, 618_347_000),
            "{name}"
        );
        assert_eq!(first.src.port(), 52054);
        assert_eq!(first.seq, 1_203_633_830);
        assert_eq!(first.flags, TcpFlags(TcpFlags::SYN));
        let client_hello = &segments[3];
        assert_eq!(client_hello.seq, 1_203_633_831);
        assert_eq!(client_hello.payload.len() as u32 + client_hello.cut, 243);
        if name == "snap96.pcap" {
            assert_eq!(stats.truncated, 11);
            // 96 - 14 (Ethernet) - 20 (IPv4) - 32 (TCP with timestamps) = 30 kept.
            assert_eq!(client_hello.payload.len(), 30);
            assert_eq!(client_hello.cut, 213);
        } else {
            assert_eq!(stats.truncated, 0);
            assert_eq!(client_hello.payload[..3], [0x16, 0x03, 0x01]);
        }
    }
}

// Files that are not captures, or break part way: errors name the file and offset.
mod corrupt {

    use std::time::Duration;

    use pcap_file::{DataLink, Endianness, TsResolution};

    use super::tests::{classic_pcap, ethernet, full, ipv4_tcp, two_interface_pcapng};
    use super::*;

    fn open_bytes(name: &str, bytes: Vec<u8>) -> Result<CaptureFileReader, CaptureFileError> {
        CaptureFileReader::from_reader(name, io::Cursor::new(bytes))
    }

    /// Read to the end; returns the payloads read before the error (if any).
    fn read_until_error(mut reader: CaptureFileReader) -> (Vec<Vec<u8>>, Option<CaptureFileError>) {
        let mut payloads = Vec::new();
        loop {
            match reader.next_segment() {
                Ok(Some(segment)) => payloads.push(segment.payload),
                Ok(None) => return (payloads, None),
                Err(err) => {
                    // After an error the reader is finished.
                    assert!(matches!(reader.next_segment(), Ok(None)));
                    return (payloads, Some(err));
                }
            }
        }
    }

    fn three_packet_pcap() -> Vec<u8> {
        classic_pcap(
            DataLink::ETHERNET,
            Endianness::Little,
            TsResolution::MicroSecond,
            &full(vec![
                (
                    Duration::from_secs(1),
                    ethernet(&[], 0x0800, &ipv4_tcp(1, b"one")),
                ),
                (
                    Duration::from_secs(2),
                    ethernet(&[], 0x0800, &ipv4_tcp(4, b"two")),
                ),
                (
                    Duration::from_secs(3),
                    ethernet(&[], 0x0800, &ipv4_tcp(7, b"three")),
                ),
            ]),
        )
    }

    /// Offset of the third record: file header + two records of 16 + 57 bytes.
    const THIRD_RECORD: u64 = 24 + 2 * (16 + 14 + 20 + 20 + 3);

    #[test]
    fn empty_and_foreign_files_are_not_captures() {
        let err = open_bytes("empty.pcap", Vec::new()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "empty.pcap: not a pcap or pcapng file: the file is empty"
        );
        let err = open_bytes("short.pcap", vec![0xd4, 0xc3]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "short.pcap: not a pcap or pcapng file: the file is only 2 bytes long"
        );
        let err = open_bytes("page.html", b"<html><body>".to_vec())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "page.html: not a pcap or pcapng file: unknown magic number 0x3c68746d at byte offset 0"
        );
    }

    #[test]
    fn truncated_file_header_is_corrupt_at_offset_zero() {
        let mut bytes = three_packet_pcap();
        bytes.truncate(10);
        let err = open_bytes("head.pcap", bytes).err().unwrap();
        assert!(matches!(err, CaptureFileError::Corrupt { offset: 0, .. }));
        assert_eq!(
            err.to_string(),
            "head.pcap: corrupt capture at byte offset 0: file ends inside the 24-byte pcap file header (10 bytes)"
        );
    }

    #[test]
    fn file_cut_inside_a_record_reports_that_records_offset_after_the_good_ones() {
        let mut bytes = three_packet_pcap();
        bytes.truncate(bytes.len() - 10);
        let (payloads, err) = read_until_error(open_bytes("cut.pcap", bytes).unwrap());
        assert_eq!(payloads, vec![b"one".to_vec(), b"two".to_vec()]);
        let err = err.unwrap();
        assert!(
            matches!(err, CaptureFileError::Corrupt { offset, .. } if offset == THIRD_RECORD),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cut.pcap: corrupt capture at byte offset {THIRD_RECORD}: record of 75 bytes cut short: the file ends after 65 of them"
            )
        );

        // Cut inside the 16-byte record header.
        let mut bytes = three_packet_pcap();
        bytes.truncate(THIRD_RECORD as usize + 5);
        let (_, err) = read_until_error(open_bytes("cut2.pcap", bytes).unwrap());
        assert_eq!(
            err.unwrap().to_string(),
            format!("cut2.pcap: corrupt capture at byte offset {THIRD_RECORD}: file ends 5 bytes into a 16-byte record header")
        );
    }

    #[test]
    fn impossible_record_length_is_corrupt_without_reading_on() {
        let mut bytes = three_packet_pcap();
        let at = THIRD_RECORD as usize + 8;
        bytes[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let (payloads, err) = read_until_error(open_bytes("len.pcap", bytes).unwrap());
        assert_eq!(payloads.len(), 2);
        assert_eq!(
            err.unwrap().to_string(),
            format!("len.pcap: corrupt capture at byte offset {THIRD_RECORD}: packet record claims 4294967280 captured bytes, more than the snap length 65535")
        );
    }

    #[test]
    fn unsupported_classic_link_type_is_refused_at_open() {
        let bytes = classic_pcap(
            DataLink::IEEE802_11,
            Endianness::Little,
            TsResolution::MicroSecond,
            &[],
        );
        let err = open_bytes("wifi.pcap", bytes).err().unwrap();
        assert!(matches!(
            err,
            CaptureFileError::UnsupportedLinkType { link_type: 105, .. }
        ));
        assert!(err
            .to_string()
            .starts_with("wifi.pcap: unsupported link type 105"));
    }

    /// Offsets of the blocks of a little-endian pcapng, found by walking their lengths.
    fn block_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut offsets = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            offsets.push(at);
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            at += len;
        }
        offsets
    }

    #[test]
    fn pcapng_bad_block_lengths_are_corrupt_at_the_block() {
        let good = two_interface_pcapng(Endianness::Little);
        let offsets = block_offsets(&good);
        // Blocks: SHB, 3 IDB, EPB, unknown, EPB, EPB, SPB.
        assert_eq!(offsets.len(), 9);
        let second_epb = offsets[6];

        // Not a multiple of 4.
        let mut bytes = good.clone();
        bytes[second_epb + 4] += 1;
        let (payloads, err) = read_until_error(open_bytes("len.pcapng", bytes).unwrap());
        assert_eq!(payloads, vec![b"eth0".to_vec()]);
        let err = err.unwrap();
        assert!(
            matches!(err, CaptureFileError::Corrupt { offset, .. } if offset == second_epb as u64)
        );
        assert!(err.to_string().contains("bad block length"), "{err}");

        // Leading and trailing lengths disagree.
        let mut bytes = good.clone();
        let next = offsets[7];
        bytes[next - 4] ^= 0x40;
        let (_, err) = read_until_error(open_bytes("trailer.pcapng", bytes).unwrap());
        let err = err.unwrap();
        assert!(
            matches!(err, CaptureFileError::Corrupt { offset, .. } if offset == second_epb as u64)
        );
        assert!(err.to_string().contains("at its start but"), "{err}");

        // A file cut inside a block.
        let mut bytes = good.clone();
        bytes.truncate(second_epb + 30);
        let (_, err) = read_until_error(open_bytes("short.pcapng", bytes).unwrap());
        assert!(
            matches!(err.unwrap(), CaptureFileError::Corrupt { offset, .. } if offset == second_epb as u64)
        );

        // A broken section header.
        let mut bytes = good;
        bytes[8] = 0x99;
        let err = open_bytes("shb.pcapng", bytes).err().unwrap();
        assert!(
            matches!(err, CaptureFileError::Corrupt { offset: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn pcapng_packet_on_an_undeclared_interface_is_malformed_and_skipped() {
        let mut bytes = two_interface_pcapng(Endianness::Little);
        let first_epb = block_offsets(&bytes)[4];
        bytes[first_epb + 8..first_epb + 12].copy_from_slice(&9u32.to_le_bytes());
        let mut reader = open_bytes("iface.pcapng", bytes).unwrap();
        let mut payloads = Vec::new();
        while let Some(segment) = reader.next_segment().unwrap() {
            payloads.push(segment.payload);
        }
        assert_eq!(payloads, vec![b"any".to_vec(), b"simple".to_vec()]);
        assert_eq!(reader.stats().malformed, 1);
    }
}

// Memory stays bounded by the largest record, however long the file is.
mod streaming {

    use std::borrow::Cow;
    use std::time::Duration;

    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::blocks::unknown::UnknownBlock;
    use pcap_file::pcapng::{Block, PcapNgWriter};
    use pcap_file::{DataLink, Endianness, TsResolution};

    use super::tests::{classic_pcap, ethernet, full, ipv4_tcp};
    use super::*;

    /// A pcap of `count` copies of one record, produced as it is read (never whole in memory).
    struct RepeatedRecords {
        header: Vec<u8>,
        record: Vec<u8>,
        count: u64,
        /// Position in the virtual file.
        pos: u64,
    }

    impl RepeatedRecords {
        fn len(&self) -> u64 {
            self.header.len() as u64 + self.count * self.record.len() as u64
        }
    }

    impl Read for RepeatedRecords {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut written = 0;
            while written < buf.len() && self.pos < self.len() {
                let (source, at) = match self.pos.checked_sub(self.header.len() as u64) {
                    None => (&self.header, self.pos as usize),
                    Some(in_records) => (
                        &self.record,
                        (in_records % self.record.len() as u64) as usize,
                    ),
                };
                let n = (source.len() - at).min(buf.len() - written);
                buf[written..written + n].copy_from_slice(&source[at..at + n]);
                written += n;
                self.pos += n as u64;
            }
            Ok(written)
        }
    }

    #[test]
    fn a_long_file_is_read_with_a_fixed_window() {
        let file = classic_pcap(
            DataLink::ETHERNET,
            Endianness::Little,
            TsResolution::MicroSecond,
            &full(vec![(
                Duration::from_secs(1),
                ethernet(&[], 0x0800, &ipv4_tcp(1, &[0x17; 1400])),
            )]),
        );
        let (header, record) = file.split_at(24);
        let source = RepeatedRecords {
            header: header.to_vec(),
            record: record.to_vec(),
            count: 40_000, // about 58 MB
            pos: 0,
        };
        let total = source.len();
        let mut reader = CaptureFileReader::from_reader("long.pcap", source).unwrap();
        let mut segments = 0u64;
        while let Some(segment) = reader.next_segment().unwrap() {
            assert_eq!(segment.payload.len(), 1400);
            segments += 1;
        }
        assert_eq!(segments, 40_000);
        assert_eq!(reader.offset(), total);
        assert_eq!(reader.window.buf.len(), ByteWindow::READ_AHEAD);
    }

    #[test]
    fn a_block_larger_than_the_window_grows_it_once_and_is_skipped() {
        let frame = ethernet(&[], 0x0800, &ipv4_tcp(9, b"after"));
        let big = vec![0xAB; 300 * 1024];
        let mut writer = PcapNgWriter::with_endianness(Vec::new(), Endianness::Little).unwrap();
        writer
            .write_block(&Block::InterfaceDescription(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 0,
                options: vec![],
            }))
            .unwrap();
        writer
            .write_block(&Block::Unknown(UnknownBlock::new(
                0x4000_0001,
                big.len() as u32 + 12,
                &big,
            )))
            .unwrap();
        writer
            .write_block(&Block::EnhancedPacket(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(5),
                original_len: frame.len() as u32,
                data: Cow::Borrowed(&frame),
                options: vec![],
            }))
            .unwrap();
        let mut reader =
            CaptureFileReader::from_reader("big.pcapng", io::Cursor::new(writer.into_inner()))
                .unwrap();
        let segment = reader.next_segment().unwrap().unwrap();
        assert_eq!(segment.payload, b"after");
        assert!(reader.next_segment().unwrap().is_none());
        assert_eq!(reader.window.buf.len(), 300 * 1024 + 12);
    }
}

/// UDP over IPv4, and over IPv6 behind a VLAN tag, with a TCP segment between.
fn udp_capture() -> Vec<u8> {
    let mut udp4 = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(50000, 443)
        .write(&mut udp4, b"quic4")
        .unwrap();
    let mut udp6 = Vec::new();
    PacketBuilder::ipv6(v6(1), v6(2), 64)
        .udp(50001, 443)
        .write(&mut udp6, b"quic6")
        .unwrap();
    // The IPv6 datagram cut by the snap length: 2 payload bytes lost.
    let cut6 = ethernet(&[(0x8100, 7)], 0x86DD, &udp6);
    let cut6_len = cut6.len() as u32;
    let ts = Duration::from_secs(1_700_000_000);
    let mut packets = full(vec![
        (ts, ethernet(&[], 0x0800, &udp4)),
        (ts, ethernet(&[], 0x0800, &ipv4_tcp(1, b"tcp"))),
    ]);
    packets.push((ts, cut6_len, cut6[..cut6.len() - 2].to_vec()));
    classic_pcap(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::MicroSecond,
        &packets,
    )
}

#[test]
fn udp_datagrams_come_out_of_next_packet_over_ipv4_and_vlan_ipv6() {
    let mut reader =
        CaptureFileReader::from_reader("udp.pcap", io::Cursor::new(udp_capture())).unwrap();
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet().unwrap() {
        packets.push(packet);
    }
    let datagrams: Vec<(SocketAddr, Vec<u8>, u32)> = packets
        .iter()
        .filter_map(|p| match p {
            CapturedPacket::Udp(d) => Some((d.src, d.payload.clone(), d.cut)),
            CapturedPacket::Tcp(_) => None,
        })
        .collect();
    assert_eq!(
        datagrams,
        vec![
            (addr("10.0.0.1:50000"), b"quic4".to_vec(), 0),
            (addr("[fd00::1]:50001"), b"qui".to_vec(), 2),
        ]
    );
    assert!(matches!(packets[1], CapturedPacket::Tcp(ref s) if s.payload == b"tcp"));
    let stats = reader.stats();
    assert_eq!(
        (stats.udp_datagrams, stats.non_tcp, stats.tcp_segments),
        (2, 2, 1)
    );
}

#[test]
fn next_segment_still_skips_udp_and_counts_it_as_before() {
    let (segments, stats) = read_all("udp.pcap", udp_capture());
    assert_eq!(segments.len(), 1);
    assert_eq!(
        (stats.udp_datagrams, stats.non_tcp, stats.tcp_segments),
        (0, 2, 1)
    );
}
