//! tlsmon: an eBPF TLS handshake monitor.
//!
//! The folders are the data flow (ARCHITECTURE.md at the repository's root is the
//! map): [`source`] yields [`source::segment::Segment`]s, from the kernel program
//! or from capture files; [`pipeline`] turns them into one
//! [`event::HandshakeEvent`] per handshake, without I/O; [`sinks`] take events to
//! Prometheus, JSON lines, the terminal and reports; [`commands`] is the glue of
//! `run`, `watch`, `analyze` and `compare`; [`attribution`] names the local service
//! of a live handshake from its socket's cgroup. Nothing depends upward: sources and
//! sinks know the pipeline's types, the pipeline knows neither.

pub mod attribution;
pub mod cli;
pub mod commands;
pub mod config;
pub mod event;
pub mod pipeline;
pub mod sinks;
pub mod source;
