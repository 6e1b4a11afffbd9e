//! Memory stays bounded by the largest record, however long the file is.

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
        CaptureFileReader::from_reader("big.pcapng", io::Cursor::new(writer.into_inner())).unwrap();
    let segment = reader.next_segment().unwrap().unwrap();
    assert_eq!(segment.payload, b"after");
    assert!(reader.next_segment().unwrap().is_none());
    assert_eq!(reader.window.buf.len(), 300 * 1024 + 12);
}
