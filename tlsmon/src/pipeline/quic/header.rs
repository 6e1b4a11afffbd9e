//! QUIC packet headers (RFC 9000 section 17, RFC 9369 section 3.2): splits a UDP
//! datagram into its coalesced packets and reads each long header.
//!
//! Hand-written because no maintained crate exposes a passive QUIC header decoder
//! (quinn-proto's is internal to its endpoint); the format is small and every read
//! goes through the bounds-checked [`Reader`].

use super::varint::Reader;

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;

/// Longest connection ID QUIC v1 and v2 allow (RFC 9000 section 17.2).
pub const MAX_CID_LEN: usize = 20;

/// The header form bit: set for long headers.
const LONG_FORM: u8 = 0x80;
// The fixed bit (0x40) is not checked: peers that both send the
// grease_quic_bit transport parameter (RFC 9287; quinn does) clear it at random,
// from the server's first Initial on.

/// The versions whose Initial packets tlsmon can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KnownVersion {
    /// QUIC v1.
    V1,
    /// QUIC v2.
    V2,
}

impl KnownVersion {
    /// The version a wire code stands for, if known.
    pub fn of(code: u32) -> Option<Self> {
        match code {
            VERSION_1 => Some(KnownVersion::V1),
            VERSION_2 => Some(KnownVersion::V2),
            _ => None,
        }
    }

    /// The long packet type a header's type bits mean in this version.
    fn packet_type(self, bits: u8) -> LongType {
        match (self, bits & 0x03) {
            (KnownVersion::V1, 0) | (KnownVersion::V2, 1) => LongType::Initial,
            (KnownVersion::V1, 1) | (KnownVersion::V2, 2) => LongType::ZeroRtt,
            (KnownVersion::V1, 2) | (KnownVersion::V2, 3) => LongType::Handshake,
            _ => LongType::Retry,
        }
    }
}

/// How the JSON event names a QUIC version: `v1`, `v2`, or the code in hex.
pub fn version_name(code: u32) -> String {
    match KnownVersion::of(code) {
        Some(KnownVersion::V1) => "v1".to_string(),
        Some(KnownVersion::V2) => "v2".to_string(),
        None => format!("0x{code:08x}"),
    }
}

/// Long header packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongType {
    /// Initial: the first flight, protected with keys derived from the DCID.
    Initial,
    /// 0-RTT data.
    ZeroRtt,
    /// Handshake: protected with keys from the TLS handshake, unreadable here.
    Handshake,
    /// Retry: the server asks for address validation.
    Retry,
}

/// One packet of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A long-header packet of a known version.
    Long(LongPacket<'a>),
    /// A Version Negotiation packet (version 0): the server's list of versions.
    VersionNegotiation {
        /// Destination connection ID (the client's source CID).
        dcid: &'a [u8],
        /// Source connection ID (the client's destination CID).
        scid: &'a [u8],
        /// Versions the server supports.
        versions: Vec<u32>,
    },
    /// A long header of a version tlsmon cannot read (the rest of the datagram).
    UnknownVersion {
        /// Its version code.
        version: u32,
    },
    /// A short-header (1-RTT) packet: only its first bytes matter.
    Short {
        /// Everything after the first byte that was captured (starts with the DCID).
        rest: &'a [u8],
    },
}

/// A long-header packet of v1 or v2.
#[derive(Debug, PartialEq, Eq)]
pub struct LongPacket<'a> {
    /// Version.
    pub version: KnownVersion,
    /// Packet type.
    pub kind: LongType,
    /// Destination connection ID.
    pub dcid: &'a [u8],
    /// Source connection ID.
    pub scid: &'a [u8],
    /// Initial: the token; Retry: the retry token; else empty.
    pub token: &'a [u8],
    /// The whole packet, header included, up to the end its Length field gives
    /// (Retry: to the end of the datagram).
    pub bytes: &'a [u8],
    /// Offset of the (protected) packet number in `bytes` (0 for Retry).
    pub pn_offset: usize,
}

/// Why a datagram (from some packet on) could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A header field runs past the end of the captured bytes.
    #[error("header truncated")]
    Truncated,
    /// The Length field claims more bytes than the datagram holds.
    #[error("length field larger than the datagram")]
    LyingLength,
    /// A connection ID longer than the 20 bytes v1 and v2 allow.
    #[error("connection ID longer than 20 bytes")]
    CidTooLong,
}

/// Splits a datagram into packets, calling `each` for every one in order. A
/// short-header or unknown-version packet ends the datagram (its length is not
/// known); an error ends it too.
pub fn for_each_packet<'a>(
    datagram: &'a [u8],
    mut each: impl FnMut(Packet<'a>),
) -> Result<(), HeaderError> {
    let mut rest = datagram;
    while let Some(&first) = rest.first() {
        if first & LONG_FORM == 0 {
            each(Packet::Short { rest: &rest[1..] });
            return Ok(());
        }
        let (packet, used) = parse_long(rest)?;
        let ends_datagram = !matches!(packet, Packet::Long(ref p) if p.kind != LongType::Retry);
        each(packet);
        if ends_datagram {
            return Ok(());
        }
        rest = &rest[used..];
        // Coalesced packets may be followed by padding zeros (not a valid header).
        if rest.iter().all(|&b| b == 0) {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads one long-header packet at the start of `bytes`; returns it and the bytes
/// it occupies.
fn parse_long(bytes: &[u8]) -> Result<(Packet<'_>, usize), HeaderError> {
    let mut r = Reader::new(bytes);
    let first = r.u8().ok_or(HeaderError::Truncated)?;
    let version = r.u32().ok_or(HeaderError::Truncated)?;
    // Other UDP traffic ends here, before its bytes are read as QUIC fields.
    if version != 0 && KnownVersion::of(version).is_none() {
        return Ok((Packet::UnknownVersion { version }, bytes.len()));
    }
    let dcid = cid(&mut r)?;
    let scid = cid(&mut r)?;
    if version == 0 {
        let mut versions = Vec::new();
        // Bounded by the datagram: at most one entry per four bytes.
        while let Some(v) = r.u32() {
            versions.push(v);
        }
        let packet = Packet::VersionNegotiation {
            dcid,
            scid,
            versions,
        };
        return Ok((packet, bytes.len()));
    }
    let Some(known) = KnownVersion::of(version) else {
        return Ok((Packet::UnknownVersion { version }, bytes.len()));
    };
    let kind = known.packet_type(first >> 4);
    if kind == LongType::Retry {
        let packet = LongPacket {
            version: known,
            kind,
            dcid,
            scid,
            token: r.rest(),
            bytes,
            pn_offset: 0,
        };
        return Ok((Packet::Long(packet), bytes.len()));
    }
    let token = if kind == LongType::Initial {
        r.take_varint_len().ok_or(HeaderError::Truncated)?
    } else {
        &[]
    };
    let length = r.varint().ok_or(HeaderError::Truncated)?;
    let pn_offset = r.pos();
    let length = usize::try_from(length).map_err(|_| HeaderError::LyingLength)?;
    if length > r.remaining() {
        return Err(HeaderError::LyingLength);
    }
    let end = pn_offset + length;
    let packet = LongPacket {
        version: known,
        kind,
        dcid,
        scid,
        token,
        bytes: &bytes[..end],
        pn_offset,
    };
    Ok((Packet::Long(packet), end))
}

fn cid<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], HeaderError> {
    let len = usize::from(r.u8().ok_or(HeaderError::Truncated)?);
    if len > MAX_CID_LEN {
        return Err(HeaderError::CidTooLong);
    }
    r.take(len).ok_or(HeaderError::Truncated)
}
