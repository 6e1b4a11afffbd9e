//! Segments in, one handshake event per handshake out, with no I/O: the flow
//! table ([`flow_table`]) keeps per-connection state, [`reassembly`] orders each
//! direction's bytes, [`preamble`] finds where TLS starts behind a PROXY header,
//! CONNECT or SOCKS, [`tls`] parses records and handshake messages, [`outcome`]
//! decides how the handshake ended, and [`event_builder`] fills the public
//! [`crate::event::HandshakeEvent`]; [`drive::Pipeline`] is the loop every
//! command runs. Depends on [`crate::source::segment`] and [`crate::event`] only.

pub mod drive;
pub mod event_builder;
pub mod flow_table;
pub mod outcome;
pub mod preamble;
pub mod reassembly;
pub mod tls;
