//! Capture-health metrics: the kernel's counters, the daemon's own bounds and
//! errors, and which interfaces are attached.

use std::sync::{Mutex, PoisonError};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{registered, set_gauge, MetricsError};
use crate::capture::KernelCounters;
use crate::flows::FlowStats;

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
    /// Serialises [`Self::set_kernel_counters`]: it reads then adds, and two
    /// concurrent callers would otherwise both add the same difference.
    kernel_update: Mutex<()>,
    flows_tracked: IntGauge,
    reassembly_evictions: IntCounter,
    flows_dropped: IntCounterVec,
    parse_errors: IntCounterVec,
    events_file_errors: IntCounter,
    interface_attached: IntGaugeVec,
}

impl CaptureHealth {
    pub(super) fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let counter = |name: &str, help: &str| registered(registry, IntCounter::new(name, help));
        Ok(CaptureHealth {
            packets_seen: counter(
                "tlsmon_capture_packets_seen_total",
                "Packets the tlsmon kernel program inspected, on all attached interfaces and both directions.",
            )?,
            flows_started: counter(
                "tlsmon_flows_started_total",
                "TCP connections the kernel program started tracking because their first payload was a TLS ClientHello.",
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
            kernel_update: Mutex::new(()),
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
                "JSON events that could not be written to the events file.",
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
        })
    }

    /// Exports a new snapshot of the kernel counters ([`crate::capture::Capture::counters`]).
    /// Each counter is moved up
    /// to the snapshot's value; a value lower than the exported one (the kernel
    /// program was reloaded and its counters restarted) restarts the counter,
    /// which Prometheus's `rate()` treats as a counter reset.
    pub fn set_kernel_counters(&self, snapshot: &KernelCounters) {
        // The guarded data is `()`: a poisoned lock carries no broken state.
        let _guard = self
            .kernel_update
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
    }

    /// Counts `n` inputs that failed to decode at `stage` (a fixed name chosen by
    /// the calling code, so the label stays bounded).
    pub fn add_parse_errors(&self, stage: &'static str, n: u64) {
        match self.parse_errors.get_metric_with_label_values(&[stage]) {
            Ok(counter) => counter.inc_by(n),
            Err(e) => tracing::error!("metric label mismatch: {e}"),
        }
    }

    /// Counts one JSON event that could not be written to the events file.
    pub fn add_events_file_error(&self) {
        self.events_file_errors.inc();
    }

    /// Marks `device` as attached (1) or detached (0).
    pub(super) fn set_attached(&self, device: &str, attached: bool) {
        set_gauge(&self.interface_attached, &[device], i64::from(attached));
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
