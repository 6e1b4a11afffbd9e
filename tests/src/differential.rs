//! Differential testing (issue 15, "live equals offline"): `tlsmon run` with
//! `--events-file` and tcpdump watch the same interfaces while a scenario makes
//! its traffic; afterwards every record the daemon wrote is compared with what
//! `tlsmon analyze --format json` reports for the capture, connection by
//! connection.
//!
//! A connection is identified by its client and server address and port, and,
//! for a 4-tuple used more than once, by its place among that 4-tuple's
//! handshakes in time order. Compared is every field of the event schema except
//! those in [`NOT_COMPARED`] (when and where it was seen, and how long it took,
//! which the two clocks measure differently) and, by [`segments_comparable`],
//! `client_hello_segments` of ClientHellos larger than one kernel chunk.
//!
//! What the kernel cannot show the daemon is left out by rule, not by case:
//! [`kernel_can_see`] drops the capture's records of connections whose opening
//! the capture does not show or whose first client bytes were not a
//! ClientHello (the kernel starts tracking a connection only from its SYN-ACK
//! and a ClientHello), and [`Openings`] finds the connections that carried
//! more payload in one direction than the kernel's byte budget
//! ([`BYTE_BUDGET`], passed to the daemon): the kernel may have cut bytes the
//! offline decision used, so such a handshake is compared on its existence only
//! (it must be on both sides), not on its fields. The scenarios stay far below
//! the budget; the failure report counts what the rule set aside.
//!
//! A capture with packets dropped by the kernel proves nothing, so it fails the
//! test as invalid ([`Invalid`]) instead of being compared.

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{Map, Value};

use crate::{
    exposition::Scrape,
    http_get::get,
    netns::Netns,
    process::{poll, run_checked, Background},
};

/// Event fields not compared: the time and the interface name (a capture file's
/// name stands in for it offline), the direction (unknown in captures), the
/// duration (kernel timestamps live, capture timestamps offline), `forwarded`
/// (linking a ClientHello across two interfaces needs both hooks, which only a
/// live daemon on both has; a capture file is one interface), the diagnosis
/// (live it knows the servers' earlier handshakes, offline the whole file), and
/// the local service (only the kernel sees sockets).
pub const NOT_COMPARED: &[&str] = &[
    "ts",
    "device",
    "direction",
    "duration_ms",
    "forwarded",
    "diagnosis",
    "cgroup",
    "service",
];

/// Payload the kernel hands over per event (`CHUNK_SIZE` of the kernel program):
/// a larger skb becomes several events, each counted as a segment live.
pub const KERNEL_CHUNK_BYTES: u64 = 2048;

/// The kernel's per-direction copy budget the daemon runs with (`--byte-budget`,
/// passed explicitly: 16 KiB, as much as the kernel copies of record bodies).
pub const BYTE_BUDGET: u64 = 16_384;

/// Mismatches printed in a failure; the rest are only counted.
pub const MAX_SHOWN: usize = 20;

/// Longest wait for the daemon's records to settle after the traffic.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// How long the events file and `/metrics` must stay unchanged, with nothing
/// tracked, before the records count as settled: two daemon ticks.
pub const QUIET_WHEN_DECIDED: Duration = Duration::from_secs(2);

/// When the kernel started more flows than the daemon decided, how long the
/// numbers must stay unchanged before the harness stops waiting and compares
/// (the missing handshakes are then what the comparison shows).
pub const QUIET_WHEN_UNDECIDED: Duration = Duration::from_secs(5);

/// Longest `tlsmon analyze` of one capture may take.
pub const ANALYZE_LIMIT: Duration = Duration::from_secs(180);

/// Address of the daemon's `/metrics` inside the namespace it runs in.
pub const METRICS_LISTEN: &str = "127.0.0.1:9808";

/// The test could not observe what it needs (a capture that dropped packets):
/// nothing can be concluded either way.
#[derive(Debug, thiserror::Error)]
#[error("invalid test: {0}")]
pub struct Invalid(pub String);

/// A TCP connection as the event schema names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Connection {
    /// Side that sent the ClientHello.
    pub client_ip: String,
    /// Its port.
    pub client_port: u16,
    /// The other side.
    pub server_ip: String,
    /// Its port.
    pub server_port: u16,
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} -> {}:{}",
            self.client_ip, self.client_port, self.server_ip, self.server_port
        )
    }
}

/// One handshake record (a JSON event line).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The connection it belongs to.
    pub connection: Connection,
    /// `ts`: when its ClientHello was seen (since the Unix epoch).
    pub ts: Duration,
    /// The whole event.
    pub fields: Map<String, Value>,
}

impl Record {
    /// Parses one JSON event line.
    pub fn parse(line: &str) -> Result<Record> {
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON event: {line}"))?;
        let Value::Object(fields) = value else {
            bail!("not a JSON object: {line}");
        };
        let text = |name: &str| -> Result<String> {
            fields
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("no string {name:?} in {line}"))
        };
        let port = |name: &str| -> Result<u16> {
            fields
                .get(name)
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .with_context(|| format!("no port {name:?} in {line}"))
        };
        Ok(Record {
            connection: Connection {
                client_ip: text("client_ip")?,
                client_port: port("client_port")?,
                server_ip: text("server_ip")?,
                server_port: port("server_port")?,
            },
            ts: text("ts").and_then(|ts| {
                tlsmon::event::parse_rfc3339(&ts).with_context(|| format!("bad ts {ts:?}"))
            })?,
            fields,
        })
    }

    /// The TCP connection the record was seen on: behind a PROXY protocol header
    /// the record names the original client, and `peer_ip`/`peer_port` the
    /// connection's own client (the load balancer).
    pub fn tcp_connection(&self) -> Connection {
        let peer_port = self
            .fields
            .get("peer_port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        match (self.text("peer_ip"), peer_port) {
            (Some(ip), Some(port)) => Connection {
                client_ip: ip.to_owned(),
                client_port: port,
                ..self.connection.clone()
            },
            _ => self.connection.clone(),
        }
    }

    /// A string field, or `None` when it is null or missing.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// The record as one JSON line (for failure messages).
    pub fn line(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }
}

/// Parses JSON lines (blank lines are not allowed: the writers never make them).
pub fn parse_lines(text: &str) -> Result<Vec<Record>> {
    text.lines()
        .enumerate()
        .map(|(i, line)| Record::parse(line).with_context(|| format!("line {}", i + 1)))
        .collect()
}

/// Rule: live, the kernel starts following a connection only when it saw the
/// connection being set up (it records the SYN-ACK) and the first client payload
/// that continues it begins a ClientHello (README, "What the kernel tracks"). A
/// capture record has no live counterpart, and is not compared, when the capture
/// does not show its connection's SYN-ACK, or when the client never sent a
/// ClientHello (`not_tls` on a TLS port). A ClientHello in the client's SYN (TCP
/// Fast Open) is tracked from the SYN-ACK that accepts it.
pub fn kernel_can_see(record: &Record, openings: &Openings) -> bool {
    let no_client_hello = record
        .fields
        .get("client_hello_bytes")
        .is_none_or(Value::is_null);
    let not_tls = record.text("failure_reason") == Some("not_tls") && no_client_hello;
    !not_tls && openings.of(record).is_some_and(|o| o.set_up)
}

/// Rule: `client_hello_segments` is compared when the ClientHello record (5-byte
/// header plus the message) fits in one kernel chunk; a larger one arrives live
/// as several chunk events per skb, and the README says the live count is then
/// what the host saw, not what crossed the wire.
pub fn segments_comparable(live: &Record, offline: &Record) -> bool {
    let fits = |r: &Record| {
        r.fields
            .get("client_hello_bytes")
            .and_then(Value::as_u64)
            .is_some_and(|bytes| bytes + 5 <= KERNEL_CHUNK_BYTES)
    };
    fits(live) && fits(offline)
}

/// One disagreement between the daemon and the capture.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// The capture shows a handshake the daemon did not record.
    MissingLive {
        /// The connection and its occurrence (1-based) on that 4-tuple.
        connection: Connection,
        /// Which handshake of the 4-tuple, in time order, from 1.
        occurrence: usize,
        /// What the capture says.
        offline: Box<Record>,
    },
    /// The daemon recorded a handshake the capture does not show.
    MissingOffline {
        /// The connection.
        connection: Connection,
        /// Which handshake of the 4-tuple, in time order, from 1.
        occurrence: usize,
        /// What the daemon wrote.
        live: Box<Record>,
    },
    /// Both recorded it, with different values.
    Differs {
        /// The connection.
        connection: Connection,
        /// Which handshake of the 4-tuple, in time order, from 1.
        occurrence: usize,
        /// Field names whose values differ.
        fields: Vec<String>,
        /// What the daemon wrote.
        live: Box<Record>,
        /// What the capture says.
        offline: Box<Record>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::MissingLive {
                connection,
                occurrence,
                offline,
            } => write!(
                f,
                "{connection} #{occurrence}: not recorded live\n    capture: {}",
                offline.line()
            ),
            Mismatch::MissingOffline {
                connection,
                occurrence,
                live,
            } => write!(
                f,
                "{connection} #{occurrence}: not in the capture\n    live:    {}",
                live.line()
            ),
            Mismatch::Differs {
                connection,
                occurrence,
                fields,
                live,
                offline,
            } => {
                write!(f, "{connection} #{occurrence}: differs in")?;
                for name in fields {
                    let show = |r: &Record| {
                        r.fields
                            .get(name)
                            .map_or("absent".into(), |v| v.to_string())
                    };
                    write!(
                        f,
                        " {name} (live {}, capture {})",
                        show(live),
                        show(offline)
                    )?;
                }
                write!(
                    f,
                    "\n    live:    {}\n    capture: {}",
                    live.line(),
                    offline.line()
                )
            }
        }
    }
}

/// The result of comparing one interface's records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Records the daemon wrote.
    pub live: usize,
    /// Capture records compared (those [`kernel_can_see`] lets through).
    pub offline: usize,
    /// Capture records left out by [`kernel_can_see`].
    pub excluded: usize,
    /// Pairs compared on their existence only: the connection carried more
    /// than [`BYTE_BUDGET`] bytes in a direction.
    pub over_budget: usize,
    /// Pairs that agree.
    pub agreeing: usize,
    /// Everything else, in connection order.
    pub mismatches: Vec<Mismatch>,
}

impl Comparison {
    /// Counts of the three kinds of mismatch: (not live, not in capture, differing).
    pub fn kinds(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for m in &self.mismatches {
            match m {
                Mismatch::MissingLive { .. } => counts.0 += 1,
                Mismatch::MissingOffline { .. } => counts.1 += 1,
                Mismatch::Differs { .. } => counts.2 += 1,
            }
        }
        counts
    }
}

/// Groups records by connection, each group in time order.
fn by_connection(records: &[Record]) -> BTreeMap<&Connection, Vec<&Record>> {
    let mut groups: BTreeMap<&Connection, Vec<&Record>> = BTreeMap::new();
    for r in records {
        groups.entry(&r.connection).or_default().push(r);
    }
    for group in groups.values_mut() {
        // Stable: records of one 4-tuple with the same timestamp keep file order.
        group.sort_by_key(|r| r.ts);
    }
    groups
}

/// Names of the compared fields whose values differ.
fn differing_fields(live: &Record, offline: &Record) -> Vec<String> {
    let mut names: Vec<&String> = live.fields.keys().chain(offline.fields.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| !NOT_COMPARED.contains(&name.as_str()))
        .filter(|name| *name != "client_hello_segments" || segments_comparable(live, offline))
        .filter(|name| live.fields.get(*name) != offline.fields.get(*name))
        .cloned()
        .collect()
}

/// Compares the daemon's records of one interface with the capture's, pairing
/// the n-th handshake of each 4-tuple on one side with the n-th on the other;
/// `openings` (of the same capture) serve the rules [`kernel_can_see`] and the
/// byte budget.
pub fn compare(live: &[Record], offline: &[Record], openings: &Openings) -> Comparison {
    let (visible, hidden): (Vec<Record>, Vec<Record>) = offline
        .iter()
        .cloned()
        .partition(|r| kernel_can_see(r, openings));
    let mut result = Comparison {
        live: live.len(),
        offline: visible.len(),
        excluded: hidden.len(),
        ..Comparison::default()
    };
    let live_groups = by_connection(live);
    let offline_groups = by_connection(&visible);
    let mut connections: Vec<&Connection> = live_groups
        .keys()
        .chain(offline_groups.keys())
        .copied()
        .collect();
    connections.sort();
    connections.dedup();
    for connection in connections {
        let none = Vec::new();
        let l = live_groups.get(connection).unwrap_or(&none);
        let o = offline_groups.get(connection).unwrap_or(&none);
        for i in 0..l.len().max(o.len()) {
            let occurrence = i + 1;
            let connection = connection.clone();
            let mismatch = match (l.get(i), o.get(i)) {
                (Some(_), Some(offline))
                    if openings
                        .of(offline)
                        .is_some_and(|o| o.carried_over(BYTE_BUDGET)) =>
                {
                    result.over_budget += 1;
                    continue;
                }
                (Some(live), Some(offline)) => {
                    let fields = differing_fields(live, offline);
                    if fields.is_empty() {
                        result.agreeing += 1;
                        continue;
                    }
                    Mismatch::Differs {
                        connection,
                        occurrence,
                        fields,
                        live: Box::new((*live).clone()),
                        offline: Box::new((*offline).clone()),
                    }
                }
                (None, Some(offline)) => Mismatch::MissingLive {
                    connection,
                    occurrence,
                    offline: Box::new((*offline).clone()),
                },
                (Some(live), None) => Mismatch::MissingOffline {
                    connection,
                    occurrence,
                    live: Box::new((*live).clone()),
                },
                (None, None) => continue,
            };
            result.mismatches.push(mismatch);
        }
    }
    result
}

/// Connections and distinct client ports among `records`: fewer ports than
/// connections proves ports were reused.
pub fn port_reuse(records: &[Record]) -> (usize, usize) {
    let mut ports: Vec<u16> = records.iter().map(|r| r.connection.client_port).collect();
    ports.sort_unstable();
    ports.dedup();
    (records.len(), ports.len())
}

/// One TCP connection as a capture shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opening {
    /// Capture time of its (first) SYN.
    pub syn_at: Duration,
    /// The server's SYN-ACK is in the capture.
    pub set_up: bool,
    /// The client's SYN carried payload (TCP Fast Open).
    pub data_in_syn: bool,
    /// Payload bytes carried [client to server, server to client]: an upper
    /// bound of what the kernel had to copy of its handshake.
    pub bytes: [u64; 2],
}

impl Opening {
    /// True when it carried more than `budget` payload bytes in a direction.
    pub fn carried_over(&self, budget: u64) -> bool {
        self.bytes.iter().any(|b| *b > budget)
    }
}

/// Every TCP connection of a capture, by 4-tuple (oriented by the SYN), in
/// time order: a new SYN on a 4-tuple opens the next connection. Read with
/// pcap-file and etherparse, independently of tlsmon's own capture reader.
#[derive(Debug, Default)]
pub struct Openings {
    connections: BTreeMap<Connection, Vec<Opening>>,
}

impl Openings {
    /// Reads a pcap file of Ethernet frames (what tcpdump writes here).
    pub fn read(pcap: &Path) -> Result<Openings> {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        let file = File::open(pcap).with_context(|| format!("opening {}", pcap.display()))?;
        let mut reader = pcap_file::pcap::PcapReader::new(std::io::BufReader::new(file))
            .with_context(|| format!("reading {}", pcap.display()))?;
        ensure!(
            reader.header().datalink == pcap_file::DataLink::ETHERNET,
            "{}: not an Ethernet capture",
            pcap.display()
        );
        let mut openings = Openings::default();
        // Per 4-tuple (either orientation): the connection it carries now and
        // the sequence number of that connection's SYN (to spot retransmissions).
        let mut current: BTreeMap<(String, u16, String, u16), (Connection, u32)> = BTreeMap::new();
        let mut index = 0u64;
        while let Some(packet) = reader.next_packet() {
            index += 1;
            let packet = packet.with_context(|| format!("{} packet {index}", pcap.display()))?;
            let sliced = SlicedPacket::from_ethernet(&packet.data)
                .with_context(|| format!("{} packet {index}", pcap.display()))?;
            let (src, dst) = match &sliced.net {
                Some(NetSlice::Ipv4(ip)) => (
                    ip.header().source_addr().to_string(),
                    ip.header().destination_addr().to_string(),
                ),
                Some(NetSlice::Ipv6(ip)) => (
                    ip.header().source_addr().to_string(),
                    ip.header().destination_addr().to_string(),
                ),
                _ => continue,
            };
            let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
                continue;
            };
            let (sport, dport) = (tcp.source_port(), tcp.destination_port());
            let pair = if (src.as_str(), sport) <= (dst.as_str(), dport) {
                (src.clone(), sport, dst.clone(), dport)
            } else {
                (dst.clone(), dport, src.clone(), sport)
            };
            if tcp.syn() && !tcp.ack() {
                let seq = tcp.sequence_number();
                if current.get(&pair).is_none_or(|(_, syn)| *syn != seq) {
                    let connection = Connection {
                        client_ip: src.clone(),
                        client_port: sport,
                        server_ip: dst.clone(),
                        server_port: dport,
                    };
                    openings
                        .connections
                        .entry(connection.clone())
                        .or_default()
                        .push(Opening {
                            syn_at: packet.timestamp,
                            ..Opening::default()
                        });
                    current.insert(pair.clone(), (connection, seq));
                }
            }
            // Packets of a connection opened before the capture began have no
            // entry (the harness starts tcpdump before any traffic).
            let Some((connection, _)) = current.get(&pair) else {
                continue;
            };
            let Some(opening) = openings
                .connections
                .get_mut(connection)
                .and_then(|list| list.last_mut())
            else {
                continue;
            };
            let from_client = connection.client_ip == src && connection.client_port == sport;
            if tcp.syn() && tcp.ack() && !from_client {
                opening.set_up = true;
            }
            if tcp.syn() && !tcp.ack() && from_client && !tcp.payload().is_empty() {
                opening.data_in_syn = true;
            }
            opening.bytes[usize::from(!from_client)] += tcp.payload().len() as u64;
        }
        Ok(openings)
    }

    /// The connection a capture record belongs to: the last one opened on its
    /// 4-tuple at or before its ClientHello (both times from the same capture).
    pub fn of(&self, record: &Record) -> Option<&Opening> {
        self.connections
            .get(&record.tcp_connection())?
            .iter()
            .rev()
            .find(|o| o.syn_at <= record.ts)
    }

    /// Openings as if the capture showed each record's connection set up just
    /// before its ClientHello, carrying nothing (for tests of the comparison).
    #[cfg(test)]
    fn set_up_for(records: &[Record]) -> Openings {
        let mut openings = Openings::default();
        for r in records {
            openings
                .connections
                .entry(r.connection.clone())
                .or_default()
                .push(Opening {
                    syn_at: r.ts,
                    set_up: true,
                    ..Opening::default()
                });
        }
        for list in openings.connections.values_mut() {
            list.sort_by_key(|o| o.syn_at);
        }
        openings
    }
}

/// A scratch directory for one scenario: removed when the scenario passed, kept
/// (and its path printed) when it failed, for the pcaps and logs.
pub struct Scratch {
    path: PathBuf,
    passed: bool,
}

impl Scratch {
    /// Creates `$TMPDIR/tlsmon-diff-<name>-<pid>` (emptied first).
    pub fn new(name: &str) -> Result<Scratch> {
        let path = std::env::temp_dir().join(format!("tlsmon-diff-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch {
            path,
            passed: false,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks the scenario as passed: the directory goes away on drop.
    pub fn passed(&mut self) {
        self.passed = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.passed && !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!(
                "differential: captures and logs kept in {}",
                self.path.display()
            );
        }
    }
}

/// tcpdump writing every TCP packet of one interface to a pcap file.
pub struct Tcpdump {
    process: Background,
    interface: String,
    pcap: PathBuf,
}

/// tcpdump's buffer (`-B`, KiB): large, so a burst does not overflow it.
pub const TCPDUMP_BUFFER_KIB: u32 = 65_536;

impl Tcpdump {
    /// Starts tcpdump on `interface` inside `ns` (`-s 0`, `-B` large, pcap into
    /// `dir`) and returns once it is capturing.
    pub fn start(ns: &Netns, interface: &str, dir: &Path) -> Result<Tcpdump> {
        let pcap = dir.join(format!("{interface}.pcap"));
        let mut cmd = ns.command("tcpdump");
        cmd.args(["-i", interface, "-s", "0", "-B"])
            .arg(TCPDUMP_BUFFER_KIB.to_string())
            .arg("-w")
            .arg(&pcap)
            .arg("tcp");
        let mut process = Background::spawn(&format!("tcpdump-{interface}"), cmd, dir)?;
        poll(
            &format!("tcpdump capturing on {interface}"),
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                process.check_running()?;
                Ok(process.log().contains("listening on").then_some(()))
            },
        )?;
        Ok(Tcpdump {
            process,
            interface: interface.to_owned(),
            pcap,
        })
    }

    /// Stops tcpdump (SIGTERM: it writes out what it holds and prints its
    /// statistics) and returns the capture; packets dropped by the kernel make
    /// the test [`Invalid`].
    pub fn stop(mut self) -> Result<PathBuf> {
        let status = self.process.stop()?;
        let log = self.process.log();
        ensure!(
            status.success(),
            "tcpdump on {} ended with {status}: {log}",
            self.interface
        );
        let dropped = stat(&log, "packets dropped by kernel").with_context(|| {
            format!("tcpdump on {} printed no drop count: {log}", self.interface)
        })?;
        if dropped != 0 {
            return Err(Invalid(format!(
                "tcpdump on {} lost {dropped} packets in the kernel (its output: {})",
                self.interface,
                log.trim()
            ))
            .into());
        }
        // Newer tcpdump also reports drops at the interface; an older one does not.
        if let Some(n) = stat(&log, "packets dropped by interface").filter(|n| *n != 0) {
            return Err(Invalid(format!(
                "tcpdump on {}: {n} packets dropped by the interface",
                self.interface
            ))
            .into());
        }
        Ok(self.pcap)
    }
}

/// The number before `what` on a line of tcpdump's closing statistics.
fn stat(log: &str, what: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.trim().strip_suffix(what))
        .and_then(|n| n.trim().parse().ok())
}

/// The daemon's counters that say whether every flow was decided.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// `tlsmon_flows_started_total`: connections the kernel started tracking.
    pub flows_started: f64,
    /// Sum of `tlsmon_handshakes_total`: handshakes the daemon decided.
    pub handshakes: f64,
    /// `tlsmon_flows_tracked`: handshakes still open in the daemon.
    pub flows_tracked: f64,
    /// `tlsmon_capture_ringbuf_dropped_total`.
    pub ringbuf_dropped: f64,
    /// `tlsmon_capture_bytes_cut_total`.
    pub bytes_cut: f64,
    /// `tlsmon_reassembly_evictions_total`.
    pub evictions: f64,
    /// `tlsmon_events_file_write_errors_total`.
    pub events_file_errors: f64,
    /// Lines in the events file.
    pub event_lines: usize,
}

impl Counters {
    fn from_scrape(s: &Scrape, event_lines: usize) -> Counters {
        Counters {
            flows_started: s.sum("tlsmon_flows_started_total", &[]),
            handshakes: s.sum("tlsmon_handshakes_total", &[]),
            flows_tracked: s.sum("tlsmon_flows_tracked", &[]),
            ringbuf_dropped: s.sum("tlsmon_capture_ringbuf_dropped_total", &[]),
            bytes_cut: s.sum("tlsmon_capture_bytes_cut_total", &[]),
            evictions: s.sum("tlsmon_reassembly_evictions_total", &[]),
            events_file_errors: s.sum("tlsmon_events_file_write_errors_total", &[]),
            event_lines,
        }
    }

    /// Every flow the kernel started was decided and written.
    pub fn all_decided(&self) -> bool {
        self.flows_tracked == 0.0
            && self.handshakes == self.flows_started
            && self.event_lines as f64 == self.handshakes
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel started {} flows; daemon decided {} handshakes, wrote {} lines, tracks {}; \
             ringbuf dropped {}, bytes cut {}, evictions {}, events-file errors {}",
            self.flows_started,
            self.handshakes,
            self.event_lines,
            self.flows_tracked,
            self.ringbuf_dropped,
            self.bytes_cut,
            self.evictions,
            self.events_file_errors
        )
    }
}

/// `tlsmon run` on some interfaces of a namespace, writing an events file.
pub struct Daemon<'a> {
    process: Background,
    ns: &'a Netns,
    events: PathBuf,
}

impl<'a> Daemon<'a> {
    /// Starts the daemon and returns once every interface is attached.
    pub fn start(tlsmon: &Path, ns: &'a Netns, interfaces: &[&str], dir: &Path) -> Result<Self> {
        let events = dir.join("events.jsonl");
        let mut cmd = ns.command(&tlsmon.display().to_string());
        cmd.args(["run", "--listen", METRICS_LISTEN, "--byte-budget"])
            .arg(BYTE_BUDGET.to_string())
            .arg("--events-file")
            .arg(&events);
        for interface in interfaces {
            cmd.args(["--interface", interface]);
        }
        let mut daemon = Daemon {
            process: Background::spawn("tlsmon", cmd, dir)?,
            ns,
            events,
        };
        let attached = poll(
            "tlsmon attached",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                daemon.process.check_running()?;
                let s = scrape(daemon.ns)?;
                Ok(interfaces
                    .iter()
                    .all(|i| s.value("tlsmon_interface_attached", &[("device", i)]) == Some(1.0))
                    .then_some(()))
            },
        );
        attached.with_context(|| format!("tlsmon output:\n{}", daemon.process.log()))?;
        Ok(daemon)
    }

    /// Waits until the records stop changing: the events file and `/metrics`
    /// unchanged for [`QUIET_WHEN_DECIDED`] with every kernel flow decided, or,
    /// when the kernel started flows the daemon never decided, unchanged with
    /// nothing tracked for [`QUIET_WHEN_UNDECIDED`]. Returns the last counters.
    pub fn settle(&mut self) -> Result<Counters> {
        let mut last: Option<Counters> = None;
        let mut quiet_since = Instant::now();
        let settled = poll(
            "the daemon's records to settle",
            SETTLE_LIMIT,
            Duration::from_millis(250),
            || {
                self.process.check_running()?;
                let lines = count_lines(&self.events)?;
                let now = Counters::from_scrape(&scrape(self.ns)?, lines);
                if last != Some(now) {
                    last = Some(now);
                    quiet_since = Instant::now();
                    return Ok(None);
                }
                let quiet = quiet_since.elapsed();
                let done = (now.all_decided() && quiet >= QUIET_WHEN_DECIDED)
                    || (now.flows_tracked == 0.0 && quiet >= QUIET_WHEN_UNDECIDED);
                Ok(done.then_some(now))
            },
        );
        settled.with_context(|| format!("tlsmon output:\n{}", self.process.log()))
    }

    /// Stops the daemon with SIGTERM (it detaches and flushes) and returns its
    /// records.
    pub fn stop(mut self) -> Result<Vec<Record>> {
        let status = self.process.stop()?;
        ensure!(
            status.success(),
            "tlsmon ended with {status} on SIGTERM:\n{}",
            self.process.log()
        );
        let text = std::fs::read_to_string(&self.events)
            .with_context(|| format!("reading {}", self.events.display()))?;
        parse_lines(&text).with_context(|| format!("in {}", self.events.display()))
    }
}

fn scrape(ns: &Netns) -> Result<Scrape> {
    let addr: SocketAddr = METRICS_LISTEN.parse()?;
    let response = ns.run_inside(move || get(addr, "/metrics"))?;
    ensure!(
        response.status == 200,
        "/metrics answered {}",
        response.status
    );
    Ok(Scrape::parse(&response.body)?)
}

fn count_lines(path: &Path) -> Result<usize> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes.iter().filter(|b| **b == b'\n').count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `tlsmon analyze --format json` of one capture, bounded by [`ANALYZE_LIMIT`].
pub fn analyze(tlsmon: &Path, pcap: &Path, dir: &Path) -> Result<Vec<Record>> {
    let stem = pcap
        .file_stem()
        .map_or("capture".into(), |s| s.to_string_lossy().into_owned());
    let json = dir.join(format!("{stem}.analyze.jsonl"));
    let log = dir.join(format!("{stem}.analyze.log"));
    let mut child = Command::new(tlsmon)
        .args(["analyze", "--format", "json"])
        .arg(pcap)
        .stdin(Stdio::null())
        .stdout(File::create(&json)?)
        .stderr(File::create(&log)?)
        .spawn()
        .context("starting tlsmon analyze")?;
    let deadline = Instant::now() + ANALYZE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "tlsmon analyze {} took longer than {ANALYZE_LIMIT:?}",
                pcap.display()
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        status.success(),
        "tlsmon analyze {} failed ({status}): {stderr}",
        pcap.display()
    );
    parse_lines(&std::fs::read_to_string(&json)?).with_context(|| format!("in {}", json.display()))
}

/// What one interface showed, both ways.
#[derive(Debug)]
pub struct DeviceView {
    /// The daemon's records of this interface.
    pub live: Vec<Record>,
    /// The capture's records.
    pub offline: Vec<Record>,
    /// Their comparison.
    pub comparison: Comparison,
}

/// Everything a differential run saw.
#[derive(Debug)]
pub struct Observation {
    /// Per interface.
    pub devices: BTreeMap<String, DeviceView>,
    /// The daemon's counters once its records settled.
    pub counters: Counters,
}

/// Watches `interfaces` of `ns` with the daemon and with tcpdump while `traffic`
/// runs, then compares. Everything started here is stopped even when something
/// fails (guards); a capture that dropped packets fails with [`Invalid`].
pub fn observe<T>(
    tlsmon: &Path,
    ns: &Netns,
    interfaces: &[&str],
    dir: &Path,
    traffic: impl FnOnce() -> Result<T>,
) -> Result<(Observation, T)> {
    let captures = interfaces
        .iter()
        .map(|i| Tcpdump::start(ns, i, dir))
        .collect::<Result<Vec<_>>>()?;
    let mut daemon = Daemon::start(tlsmon, ns, interfaces, dir)?;
    let made = traffic().context("making the traffic")?;
    let counters = daemon.settle()?;
    let live = daemon.stop()?;
    let mut pcaps = Vec::new();
    for capture in captures {
        pcaps.push(capture.stop()?);
    }
    let mut by_device: BTreeMap<String, Vec<Record>> = interfaces
        .iter()
        .map(|i| ((*i).to_owned(), Vec::new()))
        .collect();
    for record in live {
        let device = record.text("device").unwrap_or_default().to_owned();
        match by_device.get_mut(&device) {
            Some(list) => list.push(record),
            None => bail!(
                "a live record on an interface not watched: {}",
                record.line()
            ),
        }
    }
    let mut devices = BTreeMap::new();
    for (interface, pcap) in interfaces.iter().zip(&pcaps) {
        let offline = analyze(tlsmon, pcap, dir)?;
        let openings = Openings::read(pcap)?;
        let live = by_device.remove(*interface).unwrap_or_default();
        let comparison = compare(&live, &offline, &openings);
        devices.insert(
            (*interface).to_owned(),
            DeviceView {
                live,
                offline,
                comparison,
            },
        );
    }
    Ok((Observation { devices, counters }, made))
}

impl Observation {
    /// The view of one interface.
    pub fn device(&self, interface: &str) -> Result<&DeviceView> {
        self.devices
            .get(interface)
            .with_context(|| format!("{interface} was not watched"))
    }

    /// One line per interface: expected, capture, daemon, mismatches.
    pub fn summary(&self, scenario: &str, expected: &[(&str, usize)]) -> String {
        let mut s = String::new();
        for (interface, want) in expected {
            match self.devices.get(*interface) {
                Some(view) => {
                    let c = &view.comparison;
                    let (not_live, not_offline, differing) = c.kinds();
                    let _ = writeln!(
                        s,
                        "{scenario} on {interface}: {want} handshakes made; capture {} \
                         ({} excluded by rule), daemon {}; {} agree, {} over the byte \
                         budget (compared on existence only), {} mismatches \
                         ({not_live} not recorded live, {not_offline} not in the capture, \
                         {differing} differing)",
                        c.offline,
                        c.excluded,
                        c.live,
                        c.agreeing,
                        c.over_budget,
                        c.mismatches.len()
                    );
                }
                None => {
                    let _ = writeln!(s, "{scenario} on {interface}: not watched");
                }
            }
        }
        let _ = write!(s, "{scenario}: {}", self.counters);
        s
    }

    /// Fails, naming every problem, unless each interface saw exactly the
    /// expected number of handshakes both live and in the capture, with no
    /// mismatch and nothing lost to a full ring buffer.
    pub fn check(&self, scenario: &str, expected: &[(&str, usize)]) -> Result<()> {
        let summary = self.summary(scenario, expected);
        eprintln!("{summary}");
        let mut problems = Vec::new();
        for (interface, want) in expected {
            let Some(view) = self.devices.get(*interface) else {
                problems.push(format!("{interface}: not watched"));
                continue;
            };
            let c = &view.comparison;
            if c.offline != *want {
                problems.push(format!(
                    "{interface}: the capture shows {} handshakes, {want} were made",
                    c.offline
                ));
            }
            if c.live != *want {
                problems.push(format!(
                    "{interface}: the daemon recorded {} handshakes, {want} were made",
                    c.live
                ));
            }
            if !c.mismatches.is_empty() {
                let mut text = format!(
                    "{interface}: {} mismatches between live and offline (first {} shown):",
                    c.mismatches.len(),
                    c.mismatches.len().min(MAX_SHOWN)
                );
                for m in c.mismatches.iter().take(MAX_SHOWN) {
                    let _ = write!(text, "\n  {m}");
                }
                problems.push(text);
            }
        }
        if self.counters.ringbuf_dropped != 0.0 {
            problems.push(format!(
                "the kernel dropped {} events on a full ring buffer",
                self.counters.ringbuf_dropped
            ));
        }
        if !problems.is_empty() {
            bail!("{summary}\n{}", problems.join("\n"));
        }
        Ok(())
    }
}

/// Restricts the ephemeral ports of `ns` to `first..=last`, so that many
/// connections must reuse few ports.
pub fn restrict_ports(ns: &Netns, first: u16, last: u16) -> Result<()> {
    run_checked(ns.command("sysctl").args([
        "-qw",
        &format!("net.ipv4.ip_local_port_range={first} {last}"),
    ]))?;
    Ok(())
}

/// What `openssl s_time` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct STime {
    /// Connections it counted in its timed loop.
    pub connections: usize,
    /// Of those, how many resumed a session (`r` in its progress line).
    pub resumed: usize,
}

/// Parses s_time's output: the progress line (one character per connection,
/// `r` for a resumed one) and "`N connections in ...`".
pub fn parse_s_time(output: &str) -> Result<STime> {
    let connections = output
        .lines()
        .find_map(|l| l.split_once(" connections in ").map(|(n, _)| n.trim()))
        .with_context(|| format!("no connection count in s_time's output: {output}"))?;
    let connections: usize = connections
        .parse()
        .with_context(|| format!("bad connection count {connections:?}"))?;
    let progress = output
        .lines()
        .find(|l| !l.is_empty() && l.chars().all(|c| matches!(c, '*' | 'r' | 't' | '3')))
        .unwrap_or("");
    ensure!(
        progress.len() == connections,
        "s_time printed {} progress marks for {connections} connections",
        progress.len()
    );
    Ok(STime {
        connections,
        resumed: progress.chars().filter(|c| *c == 'r').count(),
    })
}

/// Runs `openssl s_time` in `ns` against `target` for `seconds` with `extra`
/// flags; it must succeed.
pub fn s_time(ns: &Netns, target: SocketAddr, seconds: u32, extra: &[&str]) -> Result<STime> {
    let mut cmd = ns.command("openssl");
    cmd.args(["s_time", "-connect", &target.to_string(), "-time"])
        .arg(seconds.to_string())
        .args(extra);
    let limit = Duration::from_secs(u64::from(seconds) + 60);
    let (status, output) = crate::process::run_bounded(cmd, limit)?;
    ensure!(status.success(), "s_time failed ({status}): {output}");
    parse_s_time(&output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(port: u16, ts: &str, outcome: &str, version: &str) -> Record {
        Record::parse(
            &serde_json::json!({
                "ts": ts, "device": "x", "direction": "inbound",
                "client_ip": "10.0.0.2", "client_port": port,
                "server_ip": "10.0.0.1", "server_port": 4433,
                "outcome": outcome, "failure_reason": null, "version": version,
                "client_hello_bytes": 300, "client_hello_segments": 1,
                "duration_ms": 1.0,
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn the_nth_handshake_of_a_reused_4_tuple_pairs_with_the_nth() {
        let a1 = event(
            40000,
            "2024-01-01T00:00:01.000000Z",
            "established",
            "TLSv1.3",
        );
        let a2 = event(
            40000,
            "2024-01-01T00:00:02.000000Z",
            "established",
            "TLSv1.2",
        );
        // The daemon wrote them in another order; time order decides.
        let live = vec![a2.clone(), a1.clone()];
        let mut offline = vec![a1.clone(), a2.clone()];
        // Offline durations differ: not compared.
        offline[0].fields.insert("duration_ms".into(), 9.0.into());
        offline[0].fields.insert("device".into(), "x.pcap".into());
        let c = compare(&live, &offline, &Openings::set_up_for(&offline));
        assert_eq!((c.agreeing, c.mismatches.len()), (2, 0), "{c:?}");
    }

    #[test]
    fn a_later_handshake_missing_live_is_named_with_its_occurrence() {
        let a1 = event(
            40000,
            "2024-01-01T00:00:01.000000Z",
            "established",
            "TLSv1.3",
        );
        let a2 = event(
            40000,
            "2024-01-01T00:00:02.000000Z",
            "established",
            "TLSv1.3",
        );
        let c = compare(
            std::slice::from_ref(&a1),
            &[a1.clone(), a2.clone()],
            &Openings::set_up_for(&[a1.clone(), a2.clone()]),
        );
        assert_eq!(c.agreeing, 1);
        assert_eq!(c.kinds(), (1, 0, 0));
        let text = c.mismatches[0].to_string();
        assert!(
            text.starts_with("10.0.0.2:40000 -> 10.0.0.1:4433 #2: not recorded live"),
            "{text}"
        );
        assert!(text.contains("2024-01-01T00:00:02"), "{text}");
    }

    #[test]
    fn differing_fields_are_named_with_both_values() {
        let live = event(1, "2024-01-01T00:00:01.000000Z", "failed", "TLSv1.2");
        let offline = event(1, "2024-01-01T00:00:01.000001Z", "established", "TLSv1.2");
        let openings = Openings::set_up_for(std::slice::from_ref(&offline));
        let c = compare(&[live], &[offline], &openings);
        assert_eq!(c.kinds(), (0, 0, 1));
        let text = c.mismatches[0].to_string();
        assert!(
            text.contains("differs in outcome (live \"failed\", capture \"established\")"),
            "{text}"
        );
    }

    #[test]
    fn a_handshake_only_live_is_a_mismatch() {
        let live = event(7, "2024-01-01T00:00:01.000000Z", "established", "TLSv1.3");
        let c = compare(&[live], &[], &Openings::default());
        assert_eq!(c.kinds(), (0, 1, 0));
    }

    #[test]
    fn not_tls_without_a_client_hello_is_excluded_by_rule() {
        let mut plain = event(9, "2024-01-01T00:00:01.000000Z", "failed", "");
        plain
            .fields
            .insert("failure_reason".into(), "not_tls".into());
        plain
            .fields
            .insert("client_hello_bytes".into(), Value::Null);
        let openings = Openings::set_up_for(std::slice::from_ref(&plain));
        let c = compare(&[], std::slice::from_ref(&plain), &openings);
        assert_eq!((c.excluded, c.offline, c.mismatches.len()), (1, 0, 0));
        // A server answering a ClientHello with non-TLS bytes is visible live.
        plain.fields.insert("client_hello_bytes".into(), 300.into());
        let c = compare(&[], &[plain], &openings);
        assert_eq!((c.excluded, c.mismatches.len()), (0, 1));
    }

    #[test]
    fn segments_count_only_when_the_client_hello_fits_one_chunk() {
        let live = event(1, "2024-01-01T00:00:01.000000Z", "established", "TLSv1.3");
        let mut offline = live.clone();
        offline
            .fields
            .insert("client_hello_segments".into(), 2.into());
        assert_eq!(
            compare(
                std::slice::from_ref(&live),
                std::slice::from_ref(&offline),
                &Openings::set_up_for(std::slice::from_ref(&offline))
            )
            .kinds(),
            (0, 0, 1)
        );
        let mut big_live = live;
        big_live
            .fields
            .insert("client_hello_bytes".into(), 3000.into());
        offline
            .fields
            .insert("client_hello_bytes".into(), 3000.into());
        let openings = Openings::set_up_for(std::slice::from_ref(&offline));
        assert_eq!(
            compare(&[big_live], &[offline], &openings).kinds(),
            (0, 0, 0)
        );
    }

    #[test]
    fn s_time_output_gives_connections_and_resumptions() {
        let out = "Collecting connection statistics for 2 seconds\n*rrr\n\n\
                   4 connections in 0.01s; 400.00 connections/user sec, bytes read 0\n\
                   4 connections in 3 real seconds, 0 bytes read per connection\n";
        assert_eq!(
            parse_s_time(out).unwrap(),
            STime {
                connections: 4,
                resumed: 3
            }
        );
        assert!(parse_s_time("*\n\n2 connections in 1s;\n").is_err());
    }

    #[test]
    fn tcpdump_statistics_are_read() {
        let log = "tcpdump: listening on x\n12 packets captured\n12 packets received by filter\n3 packets dropped by kernel\n";
        assert_eq!(stat(log, "packets dropped by kernel"), Some(3));
        assert_eq!(stat(log, "packets dropped by interface"), None);
    }

    /// Which TCP flags a test frame carries.
    #[derive(Clone, Copy)]
    enum Flags {
        Syn,
        SynAck,
        Ack,
    }

    /// An Ethernet/IPv4/TCP frame between 10.0.0.2 (client) and 10.0.0.1:4433.
    fn frame(sport: u16, dport: u16, flags: Flags, seq: u32, payload: &[u8]) -> Vec<u8> {
        let (a, b) = if sport == 4433 {
            ([10, 0, 0, 1], [10, 0, 0, 2])
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1])
        };
        let builder = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(a, b, 64)
            .tcp(sport, dport, seq, 1000);
        let builder = match flags {
            Flags::Syn => builder.syn(),
            Flags::SynAck => builder.syn().ack(1),
            Flags::Ack => builder.ack(1),
        };
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    /// 2024-01-01T00:00:00Z plus `ms` milliseconds.
    fn at(ms: u64) -> Duration {
        Duration::from_secs(1_704_067_200) + Duration::from_millis(ms)
    }

    #[test]
    fn openings_follow_each_connection_of_a_4_tuple_and_drive_the_rules() {
        use Flags::*;
        let path =
            std::env::temp_dir().join(format!("tlsmon-openings-{}.pcap", std::process::id()));
        let header = pcap_file::pcap::PcapHeader {
            datalink: pcap_file::DataLink::ETHERNET,
            ..Default::default()
        };
        let file = File::create(&path).unwrap();
        let mut writer = pcap_file::pcap::PcapWriter::with_header(file, header).unwrap();
        let big = vec![0u8; 1400];
        // (ms, frame): port 40000 carries two connections, the second one over
        // the budget; port 40002 was never set up (no SYN-ACK in the capture).
        let mut frames = vec![
            (0, frame(40000, 4433, Syn, 1, &[])),
            (1, frame(40000, 4433, Syn, 1, &[])), // a retransmitted SYN
            (2, frame(4433, 40000, SynAck, 7, &[])),
            (1000, frame(40000, 4433, Ack, 2, &[1; 300])),
            (1001, frame(4433, 40000, Ack, 9, &[2; 1000])),
            (1500, frame(40000, 4433, Syn, 5000, &[])),
            (1501, frame(4433, 40000, SynAck, 70, &[])),
            (3000, frame(40002, 4433, Syn, 1, &[])),
            (3100, frame(40004, 4433, Syn, 1, &[3; 200])), // TCP Fast Open
            (3101, frame(4433, 40004, SynAck, 1, &[])),
        ];
        frames.extend((0..12).map(|i| (2000 + i, frame(4433, 40000, Ack, 80, &big))));
        frames.sort_by_key(|(ms, _)| *ms);
        for (ms, f) in &frames {
            let packet = pcap_file::pcap::PcapPacket::new(at(*ms), f.len() as u32, f);
            writer.write_packet(&packet).unwrap();
        }
        drop(writer);
        let openings = Openings::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);

        let first = event(
            40000,
            "2024-01-01T00:00:01.000000Z",
            "established",
            "TLSv1.3",
        );
        let second = event(
            40000,
            "2024-01-01T00:00:02.000000Z",
            "established",
            "TLSv1.3",
        );
        let unset = event(
            40002,
            "2024-01-01T00:00:03.500000Z",
            "established",
            "TLSv1.3",
        );
        let fast_open = event(
            40004,
            "2024-01-01T00:00:03.100000Z",
            "established",
            "TLSv1.3",
        );
        let expect = |syn_ms, set_up, bytes| Opening {
            syn_at: at(syn_ms),
            set_up,
            data_in_syn: false,
            bytes,
        };
        assert_eq!(openings.of(&first), Some(&expect(0, true, [300, 1000])));
        assert_eq!(
            openings.of(&second),
            Some(&expect(1500, true, [0, 12 * 1400]))
        );
        assert_eq!(openings.of(&unset), Some(&expect(3000, false, [0, 0])));
        assert!(openings.of(&fast_open).is_some_and(|o| o.data_in_syn));
        assert!(kernel_can_see(&first, &openings));
        assert!(!kernel_can_see(&unset, &openings), "never set up: not live");
        assert!(kernel_can_see(&fast_open, &openings), "TFO: live too");

        // The second handshake differs, but it carried more than the budget:
        // compared on existence only. The one never set up is excluded.
        let mut second_live = second.clone();
        second_live.fields.insert("outcome".into(), "failed".into());
        let offline = [first.clone(), second.clone(), unset];
        let c = compare(&[first.clone(), second_live], &offline, &openings);
        assert_eq!((c.agreeing, c.over_budget, c.excluded), (1, 1, 1));
        assert!(c.mismatches.is_empty(), "{:?}", c.mismatches);
        // Existence still counts: a missing one is a mismatch.
        let c = compare(std::slice::from_ref(&first), &offline, &openings);
        assert_eq!(c.kinds(), (1, 0, 0));
    }

    #[test]
    fn port_reuse_counts_distinct_client_ports() {
        let a = event(1, "2024-01-01T00:00:01.000000Z", "established", "TLSv1.3");
        let b = event(1, "2024-01-01T00:00:02.000000Z", "established", "TLSv1.3");
        let c = event(2, "2024-01-01T00:00:03.000000Z", "established", "TLSv1.3");
        assert_eq!(port_reuse(&[a, b, c]), (3, 2));
    }
}
