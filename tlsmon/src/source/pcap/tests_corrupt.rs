//! Files that are not captures, or break part way: errors name the file and offset.

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
    assert!(matches!(err, CaptureFileError::Corrupt { offset, .. } if offset == second_epb as u64));
    assert!(err.to_string().contains("bad block length"), "{err}");

    // Leading and trailing lengths disagree.
    let mut bytes = good.clone();
    let next = offsets[7];
    bytes[next - 4] ^= 0x40;
    let (_, err) = read_until_error(open_bytes("trailer.pcapng", bytes).unwrap());
    let err = err.unwrap();
    assert!(matches!(err, CaptureFileError::Corrupt { offset, .. } if offset == second_epb as u64));
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
