//! Where handshake events go: Prometheus metrics ([`metrics`]) served over HTTP
//! ([`http`]), JSON and text lines ([`lines`]), the events file
//! ([`events_file`]), the ring of recent events ([`recent_events`]), the
//! per-device summary ([`summary`]) and the side-by-side
//! comparison ([`comparison`]). Every string that came off the wire passes
//! [`escape`] before it reaches a terminal or a label. Depends on
//! [`crate::event`] (and the capture's counters for health); never on commands.

pub mod comparison;
pub mod escape;
pub mod events_file;
pub mod http;
pub mod lines;
pub mod metrics;
pub mod recent_events;
pub mod summary;
