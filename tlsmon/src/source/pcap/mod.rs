//! Read pcap and pcapng capture files into [`Segment`]s (and, for QUIC, UDP
//! [`Datagram`]s: [`CaptureFileReader::next_packet`]).
//!
//! The reader streams: it holds one record at a time (at most
//! [`formats::MAX_RECORD_LEN`] bytes), so memory does not grow with file length.
//! It tracks the byte offset of every record itself so that a truncated or corrupt
//! file is reported with the offset where it breaks. Packets that are not TCP are
//! skipped and counted; packets whose headers are garbage are counted as malformed and
//! skipped, and the rest of the file is still read. Nothing in a file can panic it.
//!
//! Link types: Ethernet (with 802.1Q / 802.1ad tags), Linux cooked capture v1 and v2,
//! raw IP (101, 228, 229) and BSD loopback (0, 108). In pcapng every interface has
//! its own link type; packets of an interface with an unsupported one are counted
//! (`unsupported_link`) while a classic pcap of such a type is refused at open.

mod formats;
mod link;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use formats::{ClassicPcap, PcapNg, Record, PCAPNG_PEEK_LEN};
use link::{decode_frame, FrameKind, LinkLayer};

use crate::source::segment::{Datagram, Device, Segment};

/// Why a capture file cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum CaptureFileError {
    /// Reading the file failed.
    #[error("{}: read error at byte offset {offset}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Where reading failed.
        offset: u64,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The file is neither pcap nor pcapng.
    #[error("{}: not a pcap or pcapng file: {reason}", .path.display())]
    NotACapture {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The file breaks at `offset` (truncated, or a header or length that cannot be).
    #[error("{}: corrupt capture at byte offset {offset}: {reason}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the record or header that is broken.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A classic pcap whose link type tlsmon does not read.
    #[error(
        "{}: unsupported link type {link_type} (supported: Ethernet, Linux cooked SLL/SLL2, raw IP, loopback)",
        .path.display()
    )]
    UnsupportedLinkType {
        /// The file.
        path: PathBuf,
        /// Its LINKTYPE number.
        link_type: u32,
    },
}

/// Counts of what a capture file held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureFileStats {
    /// Packet records read.
    pub packets: u64,
    /// TCP segments returned.
    pub tcp_segments: u64,
    /// Packets that parsed but carry no TCP (ARP, UDP, ICMP, other ether types).
    pub non_tcp: u64,
    /// Records or packets whose headers do not parse (skipped).
    pub malformed: u64,
    /// Packets captured shorter than on the wire (their lost TCP bytes become `Segment::cut`).
    pub truncated: u64,
    /// Truncated packets cut before the end of the TCP header (skipped).
    pub headers_cut: u64,
    /// IP fragments (TCP inside fragments is not reassembled; skipped).
    pub ip_fragments: u64,
    /// Packets on a pcapng interface whose link type is not supported (skipped).
    pub unsupported_link: u64,
    /// UDP datagrams returned by [`CaptureFileReader::next_packet`] (also counted
    /// in `non_tcp`).
    pub udp_datagrams: u64,
}

/// One packet a capture file held that the pipeline reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapturedPacket {
    /// A TCP segment.
    Tcp(Segment),
    /// A UDP datagram.
    Udp(Datagram),
}

/// Which format a file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap format (either byte order, micro- or nanosecond timestamps).
    Pcap,
    /// pcapng.
    PcapNg,
}

enum Format {
    Classic(ClassicPcap),
    Ng(PcapNg),
}

/// Streams the TCP segments of one capture file.
pub struct CaptureFileReader {
    path: PathBuf,
    device: Device,
    window: ByteWindow,
    format: Format,
    stats: CaptureFileStats,
    /// Set after the end of the file or an error: later calls return `Ok(None)`.
    done: bool,
}

impl CaptureFileReader {
    /// Open a file; detects pcap (both byte orders, micro/nanoseconds) or pcapng by its magic.
    pub fn open(path: &Path) -> Result<Self, CaptureFileError> {
        let file = File::open(path).map_err(|source| CaptureFileError::Io {
            path: path.to_path_buf(),
            offset: 0,
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::start(path.to_path_buf(), &name, Box::new(file))
    }

    /// Read a capture from any reader; `name` stands for the file in segments and errors.
    pub fn from_reader<R: Read + 'static>(name: &str, r: R) -> Result<Self, CaptureFileError> {
        Self::start(PathBuf::from(name), name, Box::new(r))
    }

    fn start(path: PathBuf, name: &str, reader: Box<dyn Read>) -> Result<Self, CaptureFileError> {
        let mut window = ByteWindow::new(reader);
        let io_error = |path: &Path, source| CaptureFileError::Io {
            path: path.to_path_buf(),
            offset: 0,
            source,
        };
        let corrupt = |path: &Path, reason: String| CaptureFileError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason,
        };
        window.fill_to(4).map_err(|e| io_error(&path, e))?;
        let magic = match window.available().get(..4) {
            Some(magic) => [magic[0], magic[1], magic[2], magic[3]],
            None => {
                let reason = match window.available().len() {
                    0 => "the file is empty".to_string(),
                    n => format!("the file is only {n} bytes long"),
                };
                return Err(CaptureFileError::NotACapture { path, reason });
            }
        };
        let format = match u32::from_be_bytes(magic) {
            0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1 => {
                let len = ClassicPcap::FILE_HEADER_LEN;
                if !window.fill_to(len).map_err(|e| io_error(&path, e))? {
                    let have = window.available().len();
                    return Err(corrupt(
                        &path,
                        format!("file ends inside the {len}-byte pcap file header ({have} bytes)"),
                    ));
                }
                let classic =
                    ClassicPcap::new(window.available()).map_err(|r| corrupt(&path, r))?;
                if let LinkLayer::Unsupported(link_type) = classic.link() {
                    return Err(CaptureFileError::UnsupportedLinkType { path, link_type });
                }
                window.consume(len);
                Format::Classic(classic)
            }
            0x0A0D_0D0A => {
                if !window
                    .fill_to(PCAPNG_PEEK_LEN)
                    .map_err(|e| io_error(&path, e))?
                {
                    let have = window.available().len();
                    return Err(corrupt(
                        &path,
                        format!("file ends inside the first pcapng block header ({have} bytes)"),
                    ));
                }
                let len = formats::block_len(window.available(), None)
                    .map_err(|r| corrupt(&path, format!("section header: {r}")))?;
                if !window.fill_to(len).map_err(|e| io_error(&path, e))? {
                    let have = window.available().len();
                    return Err(corrupt(
                        &path,
                        format!("section header block of {len} bytes cut short at {have} bytes"),
                    ));
                }
                let ng = PcapNg::new(&window.available()[..len])
                    .map_err(|r| corrupt(&path, format!("section header: {r}")))?;
                window.consume(len);
                Format::Ng(ng)
            }
            other => {
                return Err(CaptureFileError::NotACapture {
                    path,
                    reason: format!("unknown magic number {other:#010x} at byte offset 0"),
                })
            }
        };
        Ok(CaptureFileReader {
            path,
            device: Device::new(name),
            window,
            format,
            stats: CaptureFileStats::default(),
            done: false,
        })
    }

    /// Next TCP segment; `Ok(None)` at the end of the file (and after an error).
    /// UDP datagrams are skipped (counted in `non_tcp`).
    pub fn next_segment(&mut self) -> Result<Option<Segment>, CaptureFileError> {
        loop {
            match self.next_any(false)? {
                Some(CapturedPacket::Tcp(segment)) => return Ok(Some(segment)),
                Some(CapturedPacket::Udp(_)) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Next TCP segment or UDP datagram; `Ok(None)` at the end of the file (and
    /// after an error).
    pub fn next_packet(&mut self) -> Result<Option<CapturedPacket>, CaptureFileError> {
        self.next_any(true)
    }

    fn next_any(&mut self, udp: bool) -> Result<Option<CapturedPacket>, CaptureFileError> {
        if self.done {
            return Ok(None);
        }
        let next = self.read_next(udp);
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next
    }

    /// What the file held so far.
    pub fn stats(&self) -> &CaptureFileStats {
        &self.stats
    }

    /// The format of the file.
    pub fn format(&self) -> CaptureFormat {
        match self.format {
            Format::Classic(_) => CaptureFormat::Pcap,
            Format::Ng(_) => CaptureFormat::PcapNg,
        }
    }

    /// The device name given to segments (the file name).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Byte offset of the next record to read.
    pub fn offset(&self) -> u64 {
        self.window.offset
    }

    fn read_next(&mut self, udp: bool) -> Result<Option<CapturedPacket>, CaptureFileError> {
        loop {
            let offset = self.window.offset;
            let head_len = match self.format {
                Format::Classic(_) => ClassicPcap::RECORD_HEADER_LEN,
                Format::Ng(_) => PCAPNG_PEEK_LEN,
            };
            if !self.window.fill_to(head_len).map_err(|e| self.io(e))? {
                return match self.window.available().len() {
                    0 => Ok(None),
                    have => Err(self.corrupt(
                        offset,
                        format!("file ends {have} bytes into a {head_len}-byte record header"),
                    )),
                };
            }
            let head = self.window.available();
            let len = match &self.format {
                Format::Classic(classic) => classic.record_len(head),
                Format::Ng(ng) => ng.record_len(head),
            }
            .map_err(|reason| self.corrupt(offset, reason))?;
            if !self.window.fill_to(len).map_err(|e| self.io(e))? {
                let have = self.window.available().len();
                return Err(self.corrupt(
                    offset,
                    format!("record of {len} bytes cut short: the file ends after {have} of them"),
                ));
            }
            let record = &self.window.available()[..len];
            let decoded = match &mut self.format {
                Format::Classic(classic) => classic.decode(record),
                Format::Ng(ng) => ng.decode(record),
            };
            let segment = match decoded {
                Err(reason) => {
                    let path = self.path.clone();
                    return Err(CaptureFileError::Corrupt {
                        path,
                        offset,
                        reason,
                    });
                }
                Ok(Record::Other) => None,
                Ok(Record::Malformed) => {
                    self.stats.malformed += 1;
                    None
                }
                Ok(Record::Packet(frame)) => {
                    let stats = &mut self.stats;
                    stats.packets += 1;
                    if frame.is_truncated() {
                        stats.truncated += 1;
                    }
                    match decode_frame(&frame, &self.device) {
                        FrameKind::Tcp(segment) => {
                            stats.tcp_segments += 1;
                            Some(CapturedPacket::Tcp(segment))
                        }
                        FrameKind::Udp(datagram) if udp => {
                            stats.non_tcp += 1;
                            stats.udp_datagrams += 1;
                            Some(CapturedPacket::Udp(datagram))
                        }
                        FrameKind::Udp(_) | FrameKind::NotTcp => {
                            stats.non_tcp += 1;
                            None
                        }
                        FrameKind::IpFragment => {
                            stats.ip_fragments += 1;
                            None
                        }
                        FrameKind::Malformed => {
                            stats.malformed += 1;
                            None
                        }
                        FrameKind::HeadersCut => {
                            stats.headers_cut += 1;
                            None
                        }
                        FrameKind::UnsupportedLink => {
                            stats.unsupported_link += 1;
                            None
                        }
                    }
                }
            };
            self.window.consume(len);
            if segment.is_some() {
                return Ok(segment);
            }
        }
    }

    fn io(&self, source: io::Error) -> CaptureFileError {
        CaptureFileError::Io {
            path: self.path.clone(),
            offset: self.window.offset + self.window.available().len() as u64,
            source,
        }
    }

    fn corrupt(&self, offset: u64, reason: String) -> CaptureFileError {
        CaptureFileError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }
}

/// A sliding window over the file: holds the current record and read-ahead.
struct ByteWindow {
    reader: Box<dyn Read>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

impl ByteWindow {
    /// Read-ahead size; grows only for a record longer than this.
    const READ_AHEAD: usize = 256 * 1024;

    fn new(reader: Box<dyn Read>) -> Self {
        ByteWindow {
            reader,
            buf: vec![0; Self::READ_AHEAD],
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Make at least `n` bytes available; false if the file ends first.
    fn fill_to(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if self.eof {
                return Ok(false);
            }
            if self.buf.len() - self.start < n || self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < n {
                    self.buf.resize(n, 0);
                }
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(read) => self.end += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }
}
