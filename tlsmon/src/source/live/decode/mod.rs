//! Turns RingBuf records (an [`EventHeader`] and payload bytes) into [`Segment`]s,
//! and those of QUIC's kernel path into [`Datagram`]s.

use std::{
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use thiserror::Error;
use tlsmon_common::{
    EventHeader, EventKind, DIRECTION_EGRESS, DIRECTION_INGRESS, EVENT_OPENS_CONNECTION,
    FAMILY_IPV4, FAMILY_IPV6, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};

use super::clock::WallClock;
use crate::source::segment::{Datagram, Device, PacketDirection, Segment, TcpFlags};

/// Why a RingBuf record could not be decoded (a kernel/user version mismatch or a
/// bug: never expected, but counted rather than trusted).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header.
    #[error("record of {0} bytes is shorter than an event header")]
    Short(usize),
    /// The header announces more payload than the record holds.
    #[error("record announces {announced} payload bytes but holds {held}")]
    PayloadLength {
        /// `payload_len` in the header.
        announced: u32,
        /// Bytes after the header.
        held: usize,
    },
    /// Unknown event kind.
    #[error("unknown event kind {0}")]
    Kind(u16),
    /// Unknown address family.
    #[error("unknown address family {0}")]
    Family(u8),
    /// A UDP (QUIC) record where a TCP one was expected, or the other way round.
    #[error("event kind {0} is not of this transport")]
    Transport(u16),
}

/// Size of the header at the start of every record.
pub(crate) const HEADER_LEN: usize = size_of::<EventHeader>();

/// Reads the header of a record.
pub(crate) fn header(record: &[u8]) -> Result<EventHeader, DecodeError> {
    if record.len() < HEADER_LEN {
        return Err(DecodeError::Short(record.len()));
    }
    // SAFETY: at least HEADER_LEN bytes are readable; EventHeader is plain data
    // for which every bit pattern is valid (aya::Pod); read_unaligned copes with
    // any alignment of the RingBuf slice.
    Ok(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<EventHeader>()) })
}

fn address(family: u8, bytes: &[u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        FAMILY_IPV4 => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        FAMILY_IPV6 => Ok(IpAddr::V6(Ipv6Addr::from(*bytes))),
        other => Err(DecodeError::Family(other)),
    }
}

/// The record's header, once the payload it announces is known to be held.
fn header_with_payload(record: &[u8]) -> Result<EventHeader, DecodeError> {
    let h = header(record)?;
    let held = record.len() - HEADER_LEN;
    if h.payload_len as usize > held {
        return Err(DecodeError::PayloadLength {
            announced: h.payload_len,
            held,
        });
    }
    Ok(h)
}

/// Decodes one record into a segment seen on `device`.
///
/// Payload events become segments with their bytes; FIN, RST and SYN-ACK events
/// become zero-payload segments whose flags carry FIN, RST or SYN and ACK.
pub(crate) fn segment(
    record: &[u8],
    clock: WallClock,
    device: Device,
) -> Result<Segment, DecodeError> {
    let h = header_with_payload(record)?;
    let kind = EventKind::from_u16(h.kind).ok_or(DecodeError::Kind(h.kind))?;
    let flags = match kind {
        EventKind::Payload => h.tcp_flags & !(TCP_FIN | TCP_RST),
        EventKind::Fin => (h.tcp_flags & !TCP_RST) | TCP_FIN,
        EventKind::Rst => h.tcp_flags | TCP_RST,
        EventKind::SynAck => (h.tcp_flags & !(TCP_FIN | TCP_RST)) | TCP_SYN | TCP_ACK,
        EventKind::QuicDatagram | EventKind::QuicShortHeader => {
            return Err(DecodeError::Transport(h.kind))
        }
    };
    let payload = match kind {
        EventKind::Payload => record[HEADER_LEN..HEADER_LEN + h.payload_len as usize].to_vec(),
        _ => Vec::new(),
    };
    Ok(Segment {
        ts: clock.to_unix(h.ts_ns),
        device,
        direction: direction(&h),
        src: SocketAddr::new(address(h.family, &h.src_addr)?, h.src_port),
        dst: SocketAddr::new(address(h.family, &h.dst_addr)?, h.dst_port),
        seq: h.seq,
        ack: h.ack_seq,
        flags: TcpFlags(flags),
        payload,
        cut: h.cut_len,
        cgroup_id: (h.cgroup_id != 0).then_some(h.cgroup_id),
    })
}

fn direction(h: &EventHeader) -> PacketDirection {
    match h.direction {
        DIRECTION_INGRESS => PacketDirection::Ingress,
        DIRECTION_EGRESS => PacketDirection::Egress,
        _ => PacketDirection::Unknown,
    }
}

/// True when the record comes from the kernel's QUIC path (a [`Datagram`]).
pub(crate) fn is_datagram(header: &EventHeader) -> bool {
    matches!(
        EventKind::from_u16(header.kind),
        Some(EventKind::QuicDatagram | EventKind::QuicShortHeader)
    )
}

/// Decodes one record of the QUIC path into a datagram seen on `device`: the
/// bytes the kernel copied, and the rest of the datagram as `cut` (for a
/// short-header sighting, everything after its first byte).
pub(crate) fn datagram(
    record: &[u8],
    clock: WallClock,
    device: Device,
) -> Result<Datagram, DecodeError> {
    let h = header_with_payload(record)?;
    match EventKind::from_u16(h.kind) {
        Some(EventKind::QuicDatagram | EventKind::QuicShortHeader) => {}
        Some(_) => return Err(DecodeError::Transport(h.kind)),
        None => return Err(DecodeError::Kind(h.kind)),
    }
    Ok(Datagram {
        ts: clock.to_unix(h.ts_ns),
        device,
        direction: direction(&h),
        src: SocketAddr::new(address(h.family, &h.src_addr)?, h.src_port),
        dst: SocketAddr::new(address(h.family, &h.dst_addr)?, h.dst_port),
        payload: record[HEADER_LEN..HEADER_LEN + h.payload_len as usize].to_vec(),
        cut: h.cut_len,
        cgroup_id: (h.cgroup_id != 0).then_some(h.cgroup_id),
    })
}

/// True when the record is the first payload of a connection the kernel saw
/// being set up ([`EVENT_OPENS_CONNECTION`]).
pub(crate) fn opens_connection(header: &EventHeader) -> bool {
    header.event_flags & EVENT_OPENS_CONNECTION != 0
}

/// The client's SYN that the first payload of a connection seen being set up
/// stands for: one sequence number before it, no bytes. Handed to the pipeline
/// before that payload, exactly as a capture file shows the SYN, so that a
/// reused 4-tuple is a new connection alike live and offline.
pub(crate) fn client_syn(first_payload: &Segment) -> Segment {
    Segment {
        ts: first_payload.ts,
        device: first_payload.device.clone(),
        direction: first_payload.direction,
        src: first_payload.src,
        dst: first_payload.dst,
        seq: first_payload.seq.wrapping_sub(1),
        ack: 0,
        flags: TcpFlags(TCP_SYN),
        payload: Vec::new(),
        cut: 0,
        cgroup_id: first_payload.cgroup_id,
    }
}

#[cfg(test)]
mod tests;
