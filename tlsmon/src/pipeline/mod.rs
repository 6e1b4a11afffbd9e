//! Segments in, one handshake event per handshake out, with no I/O: the flow
//! table ([`flow_table`]) keeps per-connection state, [`reassembly`] orders each
//! direction's bytes, [`preamble`] finds where TLS starts behind a PROXY header,
//! CONNECT, SOCKS or STARTTLS, [`tls`] parses records and handshake messages,
//! [`outcome`] decides how the handshake ended, [`event_builder`] fills the public
//! [`crate::event::HandshakeEvent`], [`forwarding`] links the same ClientHello seen
//! on two devices, and [`diagnosis`] says why a failed one failed; [`quic`] does the
//! same for QUIC's UDP datagrams; [`drive::Pipeline`]
//! is the loop every command runs. Depends on [`crate::source::segment`] and
//! [`crate::event`] only.

pub mod diagnosis;
pub mod drive;
pub mod event_builder;
pub mod flow_table;
pub mod forwarding;
pub mod outcome;
pub mod preamble;
pub mod quic;
pub mod reassembly;
pub mod shards;
pub mod tls;
