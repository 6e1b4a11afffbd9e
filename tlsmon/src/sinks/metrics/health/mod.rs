//! Capture-health metrics: the kernel's counters, the daemon's own bounds and
//! errors, and which interfaces are attached; and the recent capture loss that
//! `/healthz` reports.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{registered, set_gauge, MetricsError};
use crate::attribution::ResolverStats;
use crate::pipeline::flow_table::FlowStats;
use crate::pipeline::quic::QuicStats;
use crate::source::live::KernelCounters;

/// Capture-health metrics, registered in the [`super::Metrics`] registry.
pub struct CaptureHealth {
    packets_seen: IntCounter,
    flows_started: IntCounter,
    events: IntCounter,
    ringbuf_dropped: IntCounter,
    bytes_cut: IntCounter,
    openings_seen: IntCounter,
    client_hellos_unverified: IntCounter,
    other_host_ignored: IntCounter,
    flows_replaced: IntCounter,
    flows_released: IntCounter,
    preamble_candidates: IntCounter,
    bytes_skipped: IntCounter,
    record_following_stopped: IntCounter,
    quic_openings: IntCounter,
    quic_openings_refused: IntCounter,
    quic_flows_started: IntCounter,
    /// Serialises [`Self::set_kernel_counters`] (it reads then adds, and two
    /// concurrent callers would otherwise both add the same difference), and
    /// keeps the recent history of RingBuf drops.
    kernel_update: Mutex<DropWindow>,
    flows_tracked: IntGauge,
    reassembly_evictions: IntCounter,
    server_profiles_evicted: IntCounter,
    flows_dropped: IntCounterVec,
    quic_connections_dropped: IntCounterVec,
    quic_packets_ignored: IntCounterVec,
    preambles_without_tls: IntCounter,
    parse_errors: IntCounterVec,
    events_file_errors: IntCounter,
    events_file_records_lost: IntCounter,
    http_connections_closed: IntCounterVec,
    interface_attached: IntGaugeVec,
    cgroup_lookups: IntCounterVec,
    cgroup_cache_evictions: IntCounter,
}

/// `reason` of `tlsmon_http_connections_closed_total`: the connection limit was
/// reached and this idle (or oldest) connection made room.
const CLOSED_SHED: &str = "shed";
/// `reason` of `tlsmon_http_connections_closed_total`: no complete request head
/// arrived within the header-read deadline.
const CLOSED_HEADER_TIMEOUT: &str = "header_timeout";

impl CaptureHealth {
    pub(super) fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let counter = |name: &str, help: &str| registered(registry, IntCounter::new(name, help));
        let health = CaptureHealth {
            packets_seen: counter(
                "tlsmon_capture_packets_seen_total",
                "Packets the tlsmon kernel program inspected, on all attached interfaces and both directions.",
            )?,
            flows_started: counter(
                "tlsmon_flows_started_total",
                "TCP connections the kernel program started tracking because their first payload was a TLS ClientHello, or a preamble before one (PROXY header, CONNECT, SOCKS, STARTTLS).",
            )?,
            events: counter(
                "tlsmon_capture_events_total",
                "Events (handshake payload chunks, FIN and RST notices) the kernel program handed to the daemon.",
            )?,
            ringbuf_dropped: counter(
                "tlsmon_capture_ringbuf_dropped_total",
                "Events lost because the kernel-to-daemon ring buffer was full; non-zero means some handshakes were not seen completely.",
            )?,
            bytes_cut: counter(
                "tlsmon_capture_bytes_cut_total",
                "Handshake payload bytes the kernel program did not copy (per-flow byte budget, chunk limit or full ring buffer).",
            )?,
            openings_seen: counter(
                "tlsmon_capture_openings_total",
                "SYN-ACKs the kernel program recorded: connections being set up, the only ones whose ClientHello it tracks.",
            )?,
            client_hellos_unverified: counter(
                "tlsmon_capture_client_hellos_unverified_total",
                "Payloads that looked like a ClientHello but continued no connection seen being set up on that interface (spoofed, or set up before tlsmon attached or through another interface): not tracked.",
            )?,
            other_host_ignored: counter(
                "tlsmon_capture_other_host_ignored_total",
                "Frames received for another host's MAC address (promiscuous mode), which the host drops: never tracked.",
            )?,
            flows_replaced: counter(
                "tlsmon_capture_flows_replaced_total",
                "Tracked flows the kernel program ended because a new connection was set up on their address pair.",
            )?,
            flows_released: counter(
                "tlsmon_capture_flows_released_total",
                "Tracked flows the daemon released in the kernel once it had decided their handshake.",
            )?,
            preamble_candidates: counter(
                "tlsmon_capture_preamble_candidates_total",
                "First payloads of untracked connections that began a preamble (PROXY protocol header, HTTP CONNECT, SOCKS request) or went to a STARTTLS port with an opening waiting: followed like a ClientHello when they continue a connection seen being set up.",
            )?,
            bytes_skipped: counter(
                "tlsmon_capture_bytes_skipped_total",
                "Payload bytes of tracked connections the kernel program did not copy on purpose: TLS record bodies past what it copies while following records, and bytes before a point the daemon said it needs.",
            )?,
            record_following_stopped: counter(
                "tlsmon_capture_record_following_stopped_total",
                "Directions of tracked connections whose TLS records the kernel program stopped following (bytes that are no TLS record, such as a preamble; a gap before the hook; too many records in one packet): copied whole since, within the byte budget.",
            )?,
            quic_openings: counter(
                "tlsmon_capture_quic_openings_total",
                "QUIC client Initials of unknown connections the kernel program took as the start of a connection, waiting for the server's answer.",
            )?,
            quic_openings_refused: counter(
                "tlsmon_capture_quic_openings_refused_total",
                "QUIC client Initials of unknown connections the kernel program did not look at because its per-CPU budget of new QUIC connections per second was spent (a flood of Initials).",
            )?,
            quic_flows_started: counter(
                "tlsmon_capture_quic_flows_started_total",
                "QUIC connections the kernel program began copying once the server answered the client's Initial.",
            )?,
            kernel_update: Mutex::new(DropWindow::default()),
            flows_tracked: registered(
                registry,
                IntGauge::new(
                    "tlsmon_flows_tracked",
                    "Connections whose handshake the daemon is currently following.",
                ),
            )?,
            reassembly_evictions: counter(
                "tlsmon_reassembly_evictions_total",
                "Connections the daemon stopped following before their handshake ended because a memory bound was reached.",
            )?,
            server_profiles_evicted: counter(
                "tlsmon_server_profiles_evicted_total",
                "Server profiles (what a server's successful handshakes showed it accepts, used to diagnose failures) dropped, least recently used first, to stay within the bound of 4096 servers.",
            )?,
            flows_dropped: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "tlsmon_flows_dropped_total",
                        "Connections the daemon stopped following, or never followed, to stay within its flow bound, by cause: evicted_opening (no ClientHello yet), evicted_unanswered (a ClientHello the server had not answered), refused (the table was full of answered handshakes).",
                    ),
                    &["cause"],
                ),
            )?,
            quic_connections_dropped: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "tlsmon_quic_connections_dropped_total",
                        "QUIC connections not reported as handshakes, by cause: unanswered (a client Initial no authenticated server Initial answered; UDP sources are free to forge), evicted_unanswered (pushed out of the full QUIC table before its server answered).",
                    ),
                    &["cause"],
                ),
            )?,
            quic_packets_ignored: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "tlsmon_quic_packets_ignored_total",
                        "QUIC packets counted and not trusted, by reason: truncated, lying_length (a Length field past the datagram), cid_too_long (a connection ID over 20 bytes), authentication_failed (an Initial that does not open), malformed_frames, foreign (does not fit the connection it names).",
                    ),
                    &["reason"],
                ),
            )?,
            preambles_without_tls: counter(
                "tlsmon_preambles_without_tls_total",
                "Connections that began with a preamble (PROXY protocol header, HTTP CONNECT, SOCKS, a STARTTLS session) that never led to a ClientHello: broken, refused, longer than its bound, not followed by TLS, or ended first. Not reported as handshakes.",
            )?,
            parse_errors: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "tlsmon_parse_errors_total",
                        "Inputs the daemon could not decode, by pipeline stage (e.g. kernel event, TLS record, handshake message).",
                    ),
                    &["stage"],
                ),
            )?,
            events_file_errors: counter(
                "tlsmon_events_file_write_errors_total",
                "Failed writes to the events file (a record, or reopening it on SIGHUP).",
            )?,
            events_file_records_lost: counter(
                "tlsmon_events_file_records_lost_total",
                "Handshake records that are not in the events file because writing them failed.",
            )?,
            http_connections_closed: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "tlsmon_http_connections_closed_total",
                        "Connections the /metrics endpoint closed itself: shed at the connection limit, or no request head within the deadline.",
                    ),
                    &["reason"],
                ),
            )?,
            interface_attached: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "tlsmon_interface_attached",
                        "1 while tlsmon's kernel program is attached to the interface, 0 after it was detached or vanished.",
                    ),
                    &["device"],
                ),
            )?,
            cgroup_lookups: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "tlsmon_cgroup_lookups_total",
                        "Handshakes whose local socket's cgroup was looked up, by result: cached, found (by walking the cgroup hierarchy), vanished (removed before the lookup), unresolved (no hierarchy, or it could not be read).",
                    ),
                    &["result"],
                ),
            )?,
            cgroup_cache_evictions: counter(
                "tlsmon_cgroup_cache_evictions_total",
                "cgroup ids dropped from the bounded id-to-path cache to make room.",
            )?,
        };
        // Both reasons show from the start, at 0, so that rate() sees the first one.
        for reason in [CLOSED_SHED, CLOSED_HEADER_TIMEOUT] {
            health.count_closed(reason, 0);
        }
        health.set_attribution(&ResolverStats::default());
        Ok(health)
    }

    /// Exports a new snapshot of the kernel counters ([`crate::source::live::Capture::counters`]).
    /// Each counter is moved up
    /// to the snapshot's value; a value lower than the exported one (the kernel
    /// program was reloaded and its counters restarted) restarts the counter,
    /// which Prometheus's `rate()` treats as a counter reset.
    pub fn set_kernel_counters(&self, snapshot: &KernelCounters) {
        // A poisoned lock carries no broken state: the window is valid after
        // every single step.
        let mut drops = self
            .kernel_update
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drops.record(Instant::now(), snapshot.events_dropped);
        set_absolute(&self.packets_seen, snapshot.packets_seen);
        set_absolute(&self.flows_started, snapshot.flows_started);
        set_absolute(&self.events, snapshot.events_sent);
        set_absolute(&self.ringbuf_dropped, snapshot.events_dropped);
        set_absolute(&self.bytes_cut, snapshot.bytes_cut);
        set_absolute(&self.openings_seen, snapshot.openings_seen);
        set_absolute(
            &self.client_hellos_unverified,
            snapshot.client_hellos_unverified,
        );
        set_absolute(&self.other_host_ignored, snapshot.other_host_ignored);
        set_absolute(&self.flows_replaced, snapshot.flows_replaced);
        set_absolute(&self.flows_released, snapshot.flows_released);
        set_absolute(&self.preamble_candidates, snapshot.preamble_candidates);
        set_absolute(&self.bytes_skipped, snapshot.bytes_skipped);
        set_absolute(
            &self.record_following_stopped,
            snapshot.record_following_stopped,
        );
        set_absolute(&self.quic_openings, snapshot.quic_openings);
        set_absolute(&self.quic_openings_refused, snapshot.quic_openings_refused);
        set_absolute(&self.quic_flows_started, snapshot.quic_flows_started);
    }

    /// Sets the number of connections currently followed.
    pub fn set_flows_tracked(&self, flows: u64) {
        self.flows_tracked.set(saturating_i64(flows));
    }

    /// Counts `n` connections evicted by a reassembly bound.
    pub fn add_reassembly_evictions(&self, n: u64) {
        self.reassembly_evictions.inc_by(n);
    }

    /// Moves the flow table's drop counters (evictions by class, refusals) to the
    /// table's totals, as [`Self::set_kernel_counters`] does for the kernel's.
    pub fn set_flows_dropped(&self, flows: &FlowStats) {
        for (cause, total) in [
            ("evicted_opening", flows.evicted_opening),
            ("evicted_unanswered", flows.evicted_unanswered),
            ("refused", flows.flows_refused),
        ] {
            match self.flows_dropped.get_metric_with_label_values(&[cause]) {
                Ok(counter) => set_absolute(&counter, total),
                Err(e) => tracing::error!("metric label mismatch: {e}"),
            }
        }
        set_absolute(&self.preambles_without_tls, flows.preambles_without_tls);
    }

    /// Moves the QUIC table's counters to its totals (absolute values).
    pub fn set_quic(&self, stats: &QuicStats) {
        // An evicted connection whose server had answered is reported as an
        // incomplete handshake; the ones counted here were never reported.
        for (cause, total) in [
            ("unanswered", stats.unanswered),
            ("evicted_unanswered", stats.evicted_unanswered),
        ] {
            match self
                .quic_connections_dropped
                .get_metric_with_label_values(&[cause])
            {
                Ok(counter) => set_absolute(&counter, total),
                Err(e) => tracing::error!("metric label mismatch: {e}"),
            }
        }
        for (reason, total) in [
            ("truncated", stats.truncated_packets),
            ("lying_length", stats.lying_lengths),
            ("cid_too_long", stats.cid_too_long),
            ("authentication_failed", stats.authentication_failures),
            ("malformed_frames", stats.malformed_frames),
            ("foreign", stats.foreign_packets),
        ] {
            match self
                .quic_packets_ignored
                .get_metric_with_label_values(&[reason])
            {
                Ok(counter) => set_absolute(&counter, total),
                Err(e) => tracing::error!("metric label mismatch: {e}"),
            }
        }
    }

    /// Moves `tlsmon_server_profiles_evicted_total` to the diagnosis stage's total.
    pub fn set_server_profiles_evicted(&self, total: u64) {
        set_absolute(&self.server_profiles_evicted, total);
    }

    /// Exports the cgroup resolver's counters (absolute values).
    pub fn set_attribution(&self, stats: &ResolverStats) {
        for (result, total) in [
            ("cached", stats.cache_hits),
            ("found", stats.found),
            ("vanished", stats.vanished),
            ("unresolved", stats.unresolved),
        ] {
            match self.cgroup_lookups.get_metric_with_label_values(&[result]) {
                Ok(counter) => set_absolute(&counter, total),
                Err(e) => tracing::error!("metric label mismatch: {e}"),
            }
        }
        set_absolute(&self.cgroup_cache_evictions, stats.evicted);
    }

    /// Counts `n` inputs that failed to decode at `stage` (a fixed name chosen by
    /// the calling code, so the label stays bounded).
    pub fn add_parse_errors(&self, stage: &'static str, n: u64) {
        match self.parse_errors.get_metric_with_label_values(&[stage]) {
            Ok(counter) => counter.inc_by(n),
            Err(e) => tracing::error!("metric label mismatch: {e}"),
        }
    }

    /// Counts one failed write to the events file.
    pub fn add_events_file_error(&self) {
        self.events_file_errors.inc();
    }

    /// Counts `n` handshake records that did not make it into the events file.
    pub fn add_events_file_records_lost(&self, n: u64) {
        self.events_file_records_lost.inc_by(n);
    }

    /// Counts one connection the HTTP endpoint closed to stay within its
    /// connection limit.
    pub fn add_http_connection_shed(&self) {
        self.count_closed(CLOSED_SHED, 1);
    }

    /// Counts one connection the HTTP endpoint closed because no request head
    /// came in time.
    pub fn add_http_header_timeout(&self) {
        self.count_closed(CLOSED_HEADER_TIMEOUT, 1);
    }

    fn count_closed(&self, reason: &'static str, n: u64) {
        match self
            .http_connections_closed
            .get_metric_with_label_values(&[reason])
        {
            Ok(counter) => counter.inc_by(n),
            Err(e) => tracing::error!("metric label mismatch: {e}"),
        }
    }

    /// How long back [`Self::recent_ringbuf_drops`] looks.
    pub const LOSS_WINDOW: Duration = Duration::from_secs(10);

    /// Events the kernel dropped because the RingBuf was full in the last
    /// [`Self::LOSS_WINDOW`], as far as the snapshots given to
    /// [`Self::set_kernel_counters`] (one per second in the daemon) tell.
    pub fn recent_ringbuf_drops(&self) -> u64 {
        self.kernel_update
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dropped_since(Instant::now(), Self::LOSS_WINDOW)
    }

    /// Marks `device` as attached (1) or detached (0).
    pub(super) fn set_attached(&self, device: &str, attached: bool) {
        set_gauge(&self.interface_attached, &[device], i64::from(attached));
    }
}

/// Snapshots of the kernel's absolute RingBuf drop counter, enough of them to
/// tell how many drops happened within the last [`CaptureHealth::LOSS_WINDOW`].
#[derive(Debug, Default)]
struct DropWindow {
    /// (when, counter value), oldest first; the first one is the newest sample
    /// at least a window old, when there is one.
    samples: VecDeque<(Instant, u64)>,
    /// The counter value before the oldest kept sample (0: since the program
    /// was loaded, or since its counters restarted).
    floor: u64,
}

/// Samples kept at most (the daemon takes one per second; 64 covers the window
/// even if ticks come faster for a while).
const MAX_DROP_SAMPLES: usize = 64;

impl DropWindow {
    fn record(&mut self, now: Instant, total: u64) {
        if self.samples.back().is_some_and(|&(_, last)| total < last) {
            // The kernel program was reloaded and its counters restarted.
            self.samples.clear();
            self.floor = 0;
        }
        self.samples.push_back((now, total));
        let window_start = now.checked_sub(CaptureHealth::LOSS_WINDOW);
        while self.samples.len() > MAX_DROP_SAMPLES
            || (self.samples.len() >= 2
                && window_start.is_some_and(|start| self.samples[1].0 <= start))
        {
            if let Some((_, value)) = self.samples.pop_front() {
                self.floor = value;
            }
        }
    }

    /// Drops counted after the newest sample taken at least `window` before
    /// `now` (or after the floor when every sample is younger).
    fn dropped_since(&self, now: Instant, window: Duration) -> u64 {
        let Some(&(_, latest)) = self.samples.back() else {
            return 0;
        };
        let baseline = now
            .checked_sub(window)
            .and_then(|start| self.samples.iter().rev().find(|(t, _)| *t <= start))
            .map_or(self.floor, |&(_, value)| value);
        latest.saturating_sub(baseline)
    }
}

/// Moves `counter` to `value` (see [`CaptureHealth::set_kernel_counters`]).
fn set_absolute(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value >= current {
        counter.inc_by(value - current);
    } else {
        counter.reset();
        counter.inc_by(value);
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
