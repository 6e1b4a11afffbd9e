//! Reading the RingBuf: registration with tokio on first use, and draining
//! records into segments (TCP) and datagrams (QUIC).
//!
//! Wake-ups are coalesced: the kernel writes events without waking the daemon
//! until the unread bytes pass a sixteenth of the ring (`tlsmon-ebpf/src/emit.rs`,
//! `output`), and the daemon drains the ring every [`DRAIN_INTERVAL`] as well as
//! when woken. A burst of handshakes then costs one wake-up, not one per event;
//! an event waits at most one interval before it is read.

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

use super::{clock::WallClock, decode, devices::DeviceTable, CaptureError};
use crate::source::segment::{Datagram, Device, Segment};

/// Records drained per wake-up at most, so one busy RingBuf cannot starve the
/// caller's other work; the rest is read on the next call.
pub(crate) const MAX_RECORDS_PER_READ: usize = 4096;

/// How often the RingBuf is drained without a wake-up from the kernel: the
/// longest an event waits while the ring is below the kernel's wake-up threshold.
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The RingBuf, registered with tokio on first use (registration needs a
/// runtime, loading does not).
pub(crate) enum EventSource {
    Plain(RingBuf<MapData>),
    Registered(Registered),
    /// Only while switching from one state to the other.
    Switching,
}

/// The RingBuf registered with tokio, and the timer that drains it.
pub(crate) struct Registered {
    fd: AsyncFd<RingBuf<MapData>>,
    drain_timer: tokio::time::Interval,
}

/// Datagrams kept for the caller at most (taken with
/// [`Capture::drain_datagrams`](super::Capture::drain_datagrams)); more are
/// dropped and counted.
pub(crate) const MAX_PENDING_DATAGRAMS: usize = 65_536;

/// What reading the RingBuf needs besides the RingBuf itself.
pub(crate) struct Decoder<'a> {
    pub(crate) devices: &'a DeviceTable,
    pub(crate) undecodable: &'a mut u64,
    /// QUIC datagrams decoded, until the caller takes them.
    pub(crate) datagrams: &'a mut Vec<Datagram>,
    /// Datagrams dropped because the caller left too many untaken.
    pub(crate) datagrams_dropped: &'a mut u64,
}

impl EventSource {
    /// The RingBuf, whichever state it is in.
    pub(crate) fn ring(&mut self) -> Option<&mut RingBuf<MapData>> {
        match self {
            EventSource::Plain(ring) => Some(ring),
            EventSource::Registered(registered) => Some(registered.fd.get_mut()),
            EventSource::Switching => None,
        }
    }

    /// The tokio registration, made now if needed.
    pub(crate) fn registered(&mut self) -> Result<&mut Registered, CaptureError> {
        if let EventSource::Plain(_) = self {
            // Registering without a runtime would panic: say so instead.
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(CaptureError::io(
                    "reading kernel events",
                    std::io::Error::other("must be called inside a tokio runtime"),
                ));
            }
            let EventSource::Plain(ring) = std::mem::replace(self, EventSource::Switching) else {
                return Err(CaptureError::Load(
                    "event source in an invalid state".into(),
                ));
            };
            // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
            // for as long as it lives, which is as long as the AsyncFd.
            match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
                Ok(fd) => {
                    let mut drain_timer = tokio::time::interval(DRAIN_INTERVAL);
                    drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    *self = EventSource::Registered(Registered { fd, drain_timer })
                }
                Err(e) => {
                    let (ring, error) = e.into_parts();
                    *self = EventSource::Plain(ring);
                    return Err(CaptureError::io(
                        "registering the RingBuf with tokio",
                        error,
                    ));
                }
            }
        }
        match self {
            EventSource::Registered(registered) => Ok(registered),
            _ => Err(CaptureError::Load(
                "event source in an invalid state".into(),
            )),
        }
    }
}

/// Waits until records arrive (woken by the kernel, or found on the drain
/// timer), then reads them (segments to `out`, datagrams to the decoder's);
/// returns how many records it read. Cancel-safe: records are only taken after
/// a wait completed.
pub(crate) async fn read(
    registered: &mut Registered,
    decoder: &mut Decoder<'_>,
    out: &mut Vec<Segment>,
) -> Result<usize, CaptureError> {
    let Registered { fd, drain_timer } = registered;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard =
                    guard.map_err(|e| CaptureError::io("waiting for RingBuf events", e))?;
                let appended = drain(guard.get_inner_mut(), decoder, out);
                // Only a RingBuf read to empty may lose its readiness; a capped
                // read leaves it set so the next call does not wait.
                if appended < MAX_RECORDS_PER_READ {
                    guard.clear_ready();
                }
                if appended > 0 {
                    return Ok(appended);
                }
            }
            _ = drain_timer.tick() => {
                let appended = drain(fd.get_mut(), decoder, out);
                if appended > 0 {
                    return Ok(appended);
                }
            }
        }
    }
}

/// Reads up to MAX_RECORDS_PER_READ records from `ring` into `out` (segments)
/// and the decoder's datagrams; returns how many records it read (a record may
/// become two segments: see [`decode::client_syn`]).
pub(crate) fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &mut Decoder<'_>,
    out: &mut Vec<Segment>,
) -> usize {
    let clock = WallClock::now();
    let mut records = 0;
    while records < MAX_RECORDS_PER_READ {
        let Some(record) = ring.next() else {
            break;
        };
        let (device, opens) = match decode::header(&record) {
            Ok(h) => (
                decoder.devices.device(h.ifindex),
                decode::opens_connection(&h),
            ),
            Err(_) => (Device::new("unknown"), false),
        };
        records += 1;
        if decode::header(&record).is_ok_and(|h| decode::is_datagram(&h)) {
            match decode::datagram(&record, clock, device) {
                Ok(_) if decoder.datagrams.len() >= MAX_PENDING_DATAGRAMS => {
                    *decoder.datagrams_dropped += 1;
                }
                Ok(datagram) => decoder.datagrams.push(datagram),
                Err(e) => {
                    *decoder.undecodable += 1;
                    tracing::warn!("undecodable kernel event: {e}");
                }
            }
            continue;
        }
        match decode::segment(&record, clock, device) {
            Ok(segment) => {
                if opens {
                    out.push(decode::client_syn(&segment));
                }
                out.push(segment);
            }
            Err(e) => {
                *decoder.undecodable += 1;
                tracing::warn!("undecodable kernel event: {e}");
            }
        }
    }
    records
}
