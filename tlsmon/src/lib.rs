//! tlsmon: an eBPF TLS handshake monitor.
//!
//! Data flows capture (eBPF or pcap) -> [`segment::Segment`] -> reassembly ->
//! handshake parsing -> outcome -> metrics / JSON events / live view.

pub mod analyze;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod config;
pub mod daemon;
pub mod escape;
pub mod flows;
pub mod handshake;
pub mod http;
pub mod metrics;
pub mod outcome;
pub mod output;
pub mod pcap;
pub mod reassembly;
pub mod record;
pub mod segment;
pub mod web_config;
