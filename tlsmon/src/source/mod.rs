//! Where segments come from: the kernel program on live interfaces ([`live`]) and
//! pcap/pcapng files ([`pcap`]). Both yield the same [`segment::Segment`]s, the
//! seam at which everything after capture is shared. May depend on the pipeline's
//! types only through `segment`; never on sinks or commands. [`daemon_events`]
//! reads finished events from a running daemon instead (for `compare --from`).

pub mod daemon_events;
pub mod live;
pub mod pcap;
pub mod segment;
