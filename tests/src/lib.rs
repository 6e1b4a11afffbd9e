//! Shared helpers for tlsmon end-to-end tests: recorded corpus, tshark oracle,
//! synthetic frames and TLS payloads, namespaces, polling with deadlines, and for
//! the two-path scenario: background processes with logs, a test PKI, a reset
//! server, an HTTP client and a Prometheus text-format parser; and the differential
//! harness that compares the daemon's records with an offline analysis of a capture.

pub mod attached;
pub mod binary;
pub mod certificate_names;
pub mod corpus;
pub mod differential;
pub mod exposition;
pub mod flood;
pub mod frames;
pub mod hostile;
pub mod http_get;
pub mod netns;
pub mod pki;
pub mod poll;
pub mod process;
pub mod reset_server;
pub mod syn_ack_rewrite;
pub mod topology;
pub mod tshark;
pub mod two_path_scenario;

/// True when the tests run as root (the end-to-end tests need it: namespaces, BPF).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
