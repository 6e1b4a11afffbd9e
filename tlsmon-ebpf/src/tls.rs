//! Recognises the first bytes of a TLS ClientHello, the point where tracking starts.
//! The check lives in tlsmon-common so that userspace shares its framing rules.

pub use tlsmon_common::client_hello::{is_client_hello_start, PEEK_LEN};
