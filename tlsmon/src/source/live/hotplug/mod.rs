//! Follows interfaces as they appear, come up, are renamed and vanish, from the
//! kernel's RTNLGRP_LINK notifications (RTM_NEWLINK / RTM_DELLINK).

use std::io;

use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tokio::io::{unix::AsyncFd, Interest};

use super::{interfaces::Interface, rtnl::parse_datagram, CaptureError};

/// Multicast group bit of link notifications (RTMGRP_LINK).
const RTMGRP_LINK: u32 = 1;

/// A change in the set of interfaces the kernel reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// The interface exists in this state (new, changed or renamed).
    Present(Interface),
    /// The interface with this index is gone.
    Gone(u32),
    /// Notifications were lost (socket buffer overrun): the caller must relist.
    Resync,
}

enum Registration {
    Plain(Socket),
    Registered(AsyncFd<Socket>),
    Switching,
}

/// A netlink socket subscribed to link notifications. Open it before listing the
/// interfaces, so that no change between the listing and the subscription is lost.
pub(crate) struct LinkMonitor {
    socket: Registration,
}

impl LinkMonitor {
    /// Subscribes in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Self, CaptureError> {
        let mut socket = Socket::new(NETLINK_ROUTE)
            .map_err(|e| CaptureError::io("opening a netlink socket for link events", e))?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(|e| CaptureError::io("subscribing to link events", e))?;
        socket
            .set_non_blocking(true)
            .map_err(|e| CaptureError::io("making the link-event socket non-blocking", e))?;
        Ok(LinkMonitor {
            socket: Registration::Plain(socket),
        })
    }

    /// Registers with tokio on first use (needs a runtime; loading does not).
    fn registered(&mut self) -> Result<&mut AsyncFd<Socket>, CaptureError> {
        if let Registration::Plain(_) = self.socket {
            let Registration::Plain(socket) =
                std::mem::replace(&mut self.socket, Registration::Switching)
            else {
                return Err(CaptureError::Netlink(
                    "link monitor in an invalid state".into(),
                ));
            };
            // SAFETY: the Socket owns its fd and keeps it open and unchanged for
            // as long as it lives, which is as long as the AsyncFd.
            match unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) } {
                Ok(fd) => self.socket = Registration::Registered(fd),
                Err(e) => {
                    let (socket, error) = e.into_parts();
                    self.socket = Registration::Plain(socket);
                    return Err(CaptureError::io("registering the link monitor", error));
                }
            }
        }
        match &mut self.socket {
            Registration::Registered(fd) => Ok(fd),
            _ => Err(CaptureError::Netlink(
                "link monitor in an invalid state".into(),
            )),
        }
    }

    /// Waits for link notifications and returns the events they carry (at least
    /// one). Cancel-safe: an unread notification stays in the socket.
    pub(crate) async fn next_events(&mut self) -> Result<Vec<LinkEvent>, CaptureError> {
        let fd = self.registered()?;
        loop {
            let mut guard = fd
                .readable_mut()
                .await
                .map_err(|e| CaptureError::io("waiting for link events", e))?;
            let mut events = Vec::new();
            loop {
                match guard.get_inner().recv_from_full() {
                    Ok((datagram, _)) if datagram.is_empty() => break,
                    Ok((datagram, _)) => events.extend(decode(&datagram)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    // ENOBUFS: the kernel dropped notifications; relist.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        events.push(LinkEvent::Resync);
                    }
                    Err(e) => return Err(CaptureError::io("reading link events", e)),
                }
            }
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}

/// The link events of one notification datagram.
pub(crate) fn decode(datagram: &[u8]) -> Vec<LinkEvent> {
    parse_datagram(datagram)
        .into_iter()
        .filter_map(|message| match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                Interface::from_link_message(&link).map(LinkEvent::Present)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                Some(LinkEvent::Gone(link.header.index))
            }
            NetlinkPayload::Overrun(_) => Some(LinkEvent::Resync),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
