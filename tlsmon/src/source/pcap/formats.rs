//! The two capture file formats, one record at a time.
//!
//! pcap-file parses headers, records and blocks. The reader (mod.rs) hands each
//! function here one complete record; the length of that record is peeked here first
//! (`record_len`) because pcap-file, given a length it has not seen the end of, only
//! answers "need more bytes": peeking the length bounds memory and lets a corrupt
//! length be reported at its byte offset instead of read as far as the file goes.

use std::time::Duration;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, PACKET_BLOCK, SECTION_HEADER_BLOCK,
    SIMPLE_PACKET_BLOCK,
};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{Endianness, TsResolution};

use super::link::{Frame, LinkLayer};

/// Largest record or block accepted. Real packets are at most 256 KiB (libpcap's
/// largest snap length); pcapng blocks without packets are small.
pub(crate) const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;
/// Packet records longer than this and than the snap length are corrupt (libpcap's rule).
const MAX_PACKET_LEN: u32 = 256 * 1024;
/// Interfaces per pcapng section; real files have a handful. Bounds memory (pcap-file's
/// parser keeps its own list too).
const MAX_INTERFACES: usize = 4096;

/// What one record was.
pub(crate) enum Record<'a> {
    /// A captured frame.
    Packet(Frame<'a>),
    /// A record whose framing is fine but whose content is not (bad timestamp,
    /// unknown interface, a block body pcap-file rejects): skipped and counted.
    Malformed,
    /// Anything else (statistics, name resolution, unknown blocks).
    Other,
}

/// The u32 at `at` in the given byte order (the caller checked the length).
fn read_u32(bytes: &[u8], at: usize, order: Endianness) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(match order {
        Endianness::Big => u32::from_be_bytes(word),
        Endianness::Little => u32::from_le_bytes(word),
    })
}

/// Classic pcap: a 24-byte file header, then 16-byte record headers and packet bytes.
pub(crate) struct ClassicPcap {
    parser: PcapParser,
    link: LinkLayer,
}

impl ClassicPcap {
    /// Length of the file header.
    pub(crate) const FILE_HEADER_LEN: usize = 24;
    /// Length of a record header.
    pub(crate) const RECORD_HEADER_LEN: usize = 16;

    /// Parse the file header (`bytes` holds at least [`Self::FILE_HEADER_LEN`] bytes).
    pub(crate) fn new(bytes: &[u8]) -> Result<Self, String> {
        let (_, parser) = PcapParser::new(bytes).map_err(|e| e.to_string())?;
        let link = LinkLayer::of(parser.header().datalink);
        Ok(ClassicPcap { parser, link })
    }

    /// The link layer of every packet in the file.
    pub(crate) fn link(&self) -> LinkLayer {
        self.link
    }

    /// Length of the record whose 16-byte header starts `header`.
    pub(crate) fn record_len(&self, header: &[u8]) -> Result<usize, String> {
        let file_header = self.parser.header();
        let captured = read_u32(header, 8, file_header.endianness)
            .ok_or_else(|| "record header shorter than 16 bytes".to_string())?;
        let limit = file_header.snaplen.max(MAX_PACKET_LEN);
        if captured > limit || captured as usize > MAX_RECORD_LEN {
            return Err(format!(
                "packet record claims {captured} captured bytes, more than the snap length {}",
                file_header.snaplen
            ));
        }
        Ok(Self::RECORD_HEADER_LEN + captured as usize)
    }

    /// Decode one complete record.
    pub(crate) fn decode<'a>(&self, record: &'a [u8]) -> Result<Record<'a>, String> {
        let (_, raw) = self
            .parser
            .next_raw_packet(record)
            .map_err(|e| e.to_string())?;
        // The raw record is used, not pcap-file's validated `PcapPacket`: that one
        // rejects `orig_len > snaplen`, which every file captured with a short snap
        // length has. The timestamp is checked here instead.
        let nanos = match self.parser.header().ts_resolution {
            TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1000,
            TsResolution::NanoSecond => u64::from(raw.ts_frac),
        };
        if nanos >= 1_000_000_000 {
            return Ok(Record::Malformed);
        }
        let data = &record[Self::RECORD_HEADER_LEN..];
        Ok(Record::Packet(Frame {
            link: self.link,
            ts: Duration::new(u64::from(raw.ts_sec), nanos as u32),
            data,
            wire_len: raw.orig_len.max(data.len() as u32),
        }))
    }
}

/// What an interface description says about the packets of that interface.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkLayer,
    snaplen: u32,
    /// Timestamp units per second (`if_tsresol`, default microseconds).
    ts_units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    ts_offset_secs: u64,
}

impl Interface {
    /// An interface whose description could not be read: its packets are malformed.
    const UNREADABLE: Interface = Interface {
        link: LinkLayer::Unreadable,
        snaplen: 0,
        ts_units_per_sec: 1_000_000,
        ts_offset_secs: 0,
    };

    fn from_block(block: &InterfaceDescriptionBlock<'_>) -> Self {
        let mut interface = Interface {
            link: LinkLayer::of(block.linktype),
            snaplen: block.snaplen,
            ..Interface::UNREADABLE
        };
        for option in &block.options {
            match option {
                InterfaceDescriptionOption::IfTsResol(resolution) => {
                    // High bit set: a power of two, else a power of ten.
                    let exponent = u32::from(resolution & 0x7f);
                    let units = if resolution & 0x80 != 0 {
                        1u64.checked_shl(exponent)
                    } else {
                        10u64.checked_pow(exponent)
                    };
                    match units {
                        Some(units) if units > 0 => interface.ts_units_per_sec = units,
                        _ => interface.link = LinkLayer::Unreadable,
                    }
                }
                InterfaceDescriptionOption::IfTsOffset(offset) => {
                    interface.ts_offset_secs = *offset;
                }
                _ => {}
            }
        }
        interface
    }

    /// The time of a packet timestamp in this interface's units.
    fn timestamp(&self, units: u64) -> Duration {
        let per_sec = self.ts_units_per_sec;
        let secs = (units / per_sec).saturating_add(self.ts_offset_secs);
        let nanos = (u128::from(units % per_sec) * 1_000_000_000 / u128::from(per_sec)) as u32;
        Duration::new(secs, nanos)
    }
}

/// pcapng: a sequence of blocks in sections; each section lists its interfaces.
pub(crate) struct PcapNg {
    parser: PcapNgParser,
    interfaces: Vec<Interface>,
    /// Timestamp of the last packet, given to Simple Packet Blocks (which have none).
    last_ts: Duration,
}

/// Length of a block's fixed head: type, length, and the byte-order magic of a section header.
pub(crate) const PCAPNG_PEEK_LEN: usize = 12;

impl PcapNg {
    /// Start with the first section header block (complete in `block`).
    pub(crate) fn new(block: &[u8]) -> Result<Self, String> {
        let (_, parser) = PcapNgParser::new(block).map_err(|e| e.to_string())?;
        check_version(parser.section().major_version)?;
        Ok(PcapNg {
            parser,
            interfaces: Vec::new(),
            last_ts: Duration::ZERO,
        })
    }

    /// Length of the block starting `head` ([`PCAPNG_PEEK_LEN`] bytes), in the current
    /// section's byte order or, for a section header, in its own.
    pub(crate) fn record_len(&self, head: &[u8]) -> Result<usize, String> {
        block_len(head, Some(self.parser.section().endianness))
    }

    /// Decode one complete block.
    pub(crate) fn decode<'a>(&mut self, block: &'a [u8]) -> Result<Record<'a>, String> {
        let order = self.parser.section().endianness;
        let block_type = read_u32(block, 0, order).unwrap_or(0);
        if block_type != SECTION_HEADER_BLOCK {
            // Framing errors are fatal (nothing after can be found); pcap-file reports
            // them only mixed with body errors, which merely spoil one block.
            let len = block.len();
            let trailer = read_u32(block, len.saturating_sub(4), order).unwrap_or(0);
            if trailer as usize != len {
                return Err(format!(
                    "block length {len} at its start but {trailer} at its end"
                ));
            }
        }
        match block_type {
            SECTION_HEADER_BLOCK => {
                // A new section: new byte order, new interfaces. Unreadable means
                // nothing after it can be trusted.
                let (_, parsed) = self.parser.next_block(block).map_err(|e| e.to_string())?;
                if let Block::SectionHeader(section) = parsed {
                    check_version(section.major_version)?;
                }
                self.interfaces.clear();
                Ok(Record::Other)
            }
            INTERFACE_DESCRIPTION_BLOCK if self.interfaces.len() >= MAX_INTERFACES => Err(format!(
                "more than {MAX_INTERFACES} interface descriptions in one section"
            )),
            INTERFACE_DESCRIPTION_BLOCK => match self.parser.next_block(block) {
                Ok((_, Block::InterfaceDescription(description))) => {
                    self.interfaces.push(Interface::from_block(&description));
                    Ok(Record::Other)
                }
                // Keep interface numbers aligned; its packets will count as malformed.
                _ => {
                    self.interfaces.push(Interface::UNREADABLE);
                    Ok(Record::Malformed)
                }
            },
            ENHANCED_PACKET_BLOCK | SIMPLE_PACKET_BLOCK | PACKET_BLOCK => {
                Ok(self.packet(block).unwrap_or(Record::Malformed))
            }
            _ => Ok(Record::Other),
        }
    }

    /// The frame of a packet block, or `None` if it is unusable.
    fn packet<'a>(&mut self, block: &'a [u8]) -> Option<Record<'a>> {
        let (_, parsed) = self.parser.next_block(block).ok()?;
        let (interface, units, data, wire_len) = match parsed {
            Block::EnhancedPacket(epb) => (
                *self.interfaces.get(epb.interface_id as usize)?,
                // pcap-file stores the raw timestamp units as nanoseconds.
                Some(epb.timestamp.as_nanos() as u64),
                cow_slice(epb.data)?,
                epb.original_len,
            ),
            Block::Packet(pb) => (
                *self.interfaces.get(usize::from(pb.interface_id))?,
                Some(pb.timestamp),
                cow_slice(pb.data)?,
                pb.original_len,
            ),
            Block::SimplePacket(spb) => {
                let interface = *self.interfaces.first()?;
                // The body is padded to 32 bits: the captured length is the smaller
                // of the original length and the snap length.
                let mut data = cow_slice(spb.data)?;
                let mut captured = spb.original_len as usize;
                if interface.snaplen != 0 {
                    captured = captured.min(interface.snaplen as usize);
                }
                data = &data[..captured.min(data.len())];
                (interface, None, data, spb.original_len)
            }
            _ => return None,
        };
        if interface.link == LinkLayer::Unreadable {
            return None;
        }
        let ts = match units {
            Some(units) => interface.timestamp(units),
            None => self.last_ts,
        };
        self.last_ts = ts;
        Some(Record::Packet(Frame {
            link: interface.link,
            ts,
            data,
            wire_len: wire_len.max(data.len() as u32),
        }))
    }
}

/// The borrowed bytes of a block parsed from a borrowed slice (always borrowed there).
fn cow_slice(data: std::borrow::Cow<'_, [u8]>) -> Option<&[u8]> {
    match data {
        std::borrow::Cow::Borrowed(bytes) => Some(bytes),
        std::borrow::Cow::Owned(_) => None,
    }
}

fn check_version(major: u16) -> Result<(), String> {
    if major == 1 {
        Ok(())
    } else {
        Err(format!("unsupported pcapng major version {major}"))
    }
}

/// Length of the block starting `head`; `order` is the section's byte order (`None`
/// before the first section header).
pub(crate) fn block_len(head: &[u8], order: Option<Endianness>) -> Result<usize, String> {
    let short = || "block header shorter than 12 bytes".to_string();
    let is_section = head.get(..4).ok_or_else(short)? == SECTION_HEADER_BLOCK.to_be_bytes();
    let order = if is_section {
        match read_u32(head, 8, Endianness::Big).ok_or_else(short)? {
            0x1A2B_3C4D => Endianness::Big,
            0x4D3C_2B1A => Endianness::Little,
            magic => {
                return Err(format!(
                    "section header with bad byte-order magic {magic:#010x}"
                ))
            }
        }
    } else {
        order.ok_or_else(|| "first block is not a section header".to_string())?
    };
    let len = read_u32(head, 4, order).ok_or_else(short)? as usize;
    if len < PCAPNG_PEEK_LEN || !len.is_multiple_of(4) || len > MAX_RECORD_LEN {
        return Err(format!("bad block length {len}"));
    }
    Ok(len)
}
