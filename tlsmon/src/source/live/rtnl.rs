//! A small synchronous NETLINK_ROUTE client: send one request, collect the replies.
//! Messages are built and parsed with netlink-packet-route; only the framing loop
//! (one datagram can hold several messages) is written here.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::CaptureError;

/// One NETLINK_ROUTE socket used for request/response exchanges.
pub(crate) struct Rtnl {
    socket: Socket,
    sequence: u32,
}

/// Splits a datagram into the netlink messages it holds. A message that does not
/// parse ends the walk (its length cannot be trusted); the caller gets the rest.
pub(crate) fn parse_datagram(datagram: &[u8]) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[offset..])
        else {
            break;
        };
        let len = message.header.length as usize;
        messages.push(message);
        if len == 0 {
            break;
        }
        offset += (len + 3) & !3;
    }
    messages
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Self, CaptureError> {
        let mut socket = Socket::new(NETLINK_ROUTE)
            .map_err(|e| CaptureError::io("opening a NETLINK_ROUTE socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| CaptureError::io("binding a NETLINK_ROUTE socket", e))?;
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    /// Sends a dump request and returns every message of the dump.
    pub(crate) fn dump(
        &mut self,
        request: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, CaptureError> {
        self.exchange(request, NLM_F_REQUEST | NLM_F_DUMP)
    }

    /// Sends a request that changes something and waits for the kernel's ack.
    pub(crate) fn execute(&mut self, request: RouteNetlinkMessage) -> Result<(), CaptureError> {
        self.exchange(request, NLM_F_REQUEST | NLM_F_ACK).map(drop)
    }

    fn exchange(
        &mut self,
        request: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, CaptureError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
        message.finalize();
        let mut buffer = vec![0u8; message.buffer_len()];
        message.serialize(&mut buffer);
        self.socket
            .send_to(&buffer, &SocketAddr::new(0, 0), 0)
            .map_err(|e| CaptureError::io("sending a netlink request", e))?;

        let mut replies = Vec::new();
        loop {
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| CaptureError::io("receiving a netlink reply", e))?;
            if datagram.is_empty() {
                return Err(CaptureError::Netlink("empty reply".into()));
            }
            for reply in parse_datagram(&datagram) {
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(replies),
                            Some(code) => Err(CaptureError::io(
                                "netlink request",
                                std::io::Error::from_raw_os_error(-code.get()),
                            )),
                        };
                    }
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => {}
                    _ => {}
                }
            }
        }
    }
}
