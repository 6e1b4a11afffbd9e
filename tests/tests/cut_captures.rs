//! Real handshakes (OpenSSL, from the corpus) made hard to read: a capture cut short
//! by a small snap length, and a ClientHello whose bytes were damaged. Each still
//! gets its record, as README's outcome rules promise, instead of vanishing.

use std::fs::File;
use std::path::{Path, PathBuf};

use etherparse::SlicedPacket;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use tlsmon::analyze::{analyze_file, AnalyzeOptions};
use tlsmon::record::{FailureReason, Outcome};
use tlsmon_tests::corpus::corpus_dir;
use tlsmon_tests::netns::unique_name;

/// Copies a corpus capture through `edit`, which may change each packet's bytes.
fn rewrite(
    corpus_file: &str,
    name: &str,
    snaplen: Option<u32>,
    mut edit: impl FnMut(&mut Vec<u8>),
) -> PathBuf {
    let reader = PcapReader::new(File::open(corpus_dir().join(corpus_file)).unwrap()).unwrap();
    let mut header: PcapHeader = reader.header();
    if let Some(snaplen) = snaplen {
        header.snaplen = snaplen;
    }
    let dir = std::env::temp_dir().join(unique_name("tlsmon-cut-"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut writer = PcapWriter::with_header(File::create(&path).unwrap(), header).unwrap();
    let mut reader = reader;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        let mut data = packet.data.into_owned();
        edit(&mut data);
        if let Some(snaplen) = snaplen {
            data.truncate(snaplen as usize);
        }
        let out = PcapPacket::new(packet.timestamp, packet.orig_len, &data);
        writer.write_packet(&out).unwrap();
    }
    path
}

fn remove(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn handshakes_cut_short_by_the_snap_length_are_incomplete() {
    // 96 bytes: Ethernet, IPv4, TCP with options, and the first ~30 payload bytes.
    let path = rewrite("tls13-ok.pcap", "snap96.pcap", Some(96), |_| {});
    let (records, summary) = analyze_file(&path, &AnalyzeOptions::default()).unwrap();
    remove(&path);
    assert!(summary.truncated_packets > 0);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Incomplete);
    assert_eq!(
        r.detail.as_deref(),
        Some("bytes missing from the capture before the ClientHello was complete")
    );
    assert_eq!((r.client_port, r.server_port), (59380, 443));
    assert_eq!(r.client_ip.to_string(), "198.18.0.1");
}

/// Offset in `frame` of a TCP payload that starts with a ClientHello record.
fn client_hello_offset(frame: &[u8]) -> Option<usize> {
    let sliced = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
        return None;
    };
    let payload = tcp.payload();
    let is_hello = payload.len() >= 50 && payload[0] == 22 && payload[5] == 1;
    is_hello.then(|| frame.len() - payload.len())
}

#[test]
fn a_damaged_client_hello_on_a_tls_port_is_a_protocol_error() {
    let mut damaged = 0;
    let path = rewrite("tls13-ok.pcap", "damaged.pcap", None, |frame| {
        let Some(at) = client_hello_offset(frame) else {
            return;
        };
        // After record (5) and handshake (4) headers, version (2), random (32):
        // the session id, then the 2-byte cipher suites length, made odd.
        let sid_len = usize::from(frame[at + 43]);
        let len_at = at + 44 + sid_len;
        frame[len_at + 1] |= 1;
        damaged += 1;
    });
    let (records, summary) = analyze_file(&path, &AnalyzeOptions::default()).unwrap();
    remove(&path);
    assert_eq!(damaged, 1);
    assert_eq!(summary.flows.parse_errors, 1);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.failure_reason, Some(FailureReason::ProtocolError));
    let detail = r.detail.as_deref().unwrap_or_default();
    assert!(
        detail.starts_with("client: ClientHello does not parse"),
        "{detail}"
    );
    assert_eq!((r.client_port, r.server_port), (59380, 443));
}
