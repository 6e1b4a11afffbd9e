//! Metrics of handshakes seen on two devices (`pipeline::forwarding`): the linked
//! ones from their events, what the linker could not link from its counters.

use prometheus::{IntCounterVec, Opts, Registry};

use super::{inc, registered, MetricsError};
use crate::event::{Direction, HandshakeEvent};
use crate::pipeline::forwarding::ForwardingStats;

/// `cause` values of `tlsmon_forwarding_unlinked_total`, in the order of
/// [`ForwardingMetrics::set_stats`].
const UNLINKED_CAUSES: [&str; 4] = ["random_reused", "window_full", "marks_full", "hold_full"];

/// The forwarding metrics, registered in the [`super::Metrics`] registry.
pub(super) struct ForwardingMetrics {
    forwarded: IntCounterVec,
    not_forwarded: IntCounterVec,
    unlinked: IntCounterVec,
}

impl ForwardingMetrics {
    pub(super) fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let metrics = ForwardingMetrics {
            forwarded: counters(
                "tlsmon_forwarded_handshakes_total",
                "Handshakes whose ClientHello (the same random) arrived on in_device and left on out_device (a router, bridge or proxy on this host), by whether the ClientHello that left differs (changed=\"true\": versions, cipher suites, groups, extensions or SNI removed or added).",
                &["in_device", "out_device", "changed"],
            )?,
            not_forwarded: counters(
                "tlsmon_handshakes_not_forwarded_total",
                "ClientHellos that arrived on a device and server address through which this host forwarded handshakes before, and did not leave within the linking window.",
                &["device"],
            )?,
            unlinked: counters(
                "tlsmon_forwarding_unlinked_total",
                "ClientHellos not linked across devices by cause: random_reused (the random was already waiting or linked: a replay or a duplicate), window_full, marks_full, hold_full (a bound of the linker).",
                &["cause"],
            )?,
        };
        for cause in UNLINKED_CAUSES {
            metrics.unlinked.with_label_values(&[cause]);
        }
        Ok(metrics)
    }

    /// Counts a linked handshake once, on the event of the ClientHello that left, and
    /// a ClientHello that never left on its arrival's event. `device` is the event's
    /// device label (capped), `cap` caps another device name.
    pub(super) fn observe(
        &self,
        record: &HandshakeEvent,
        device: &str,
        cap: &dyn Fn(&str) -> String,
    ) {
        let Some(forwarded) = &record.forwarded else {
            return;
        };
        match &forwarded.out_device {
            Some(out) if record.direction == Direction::Outbound && *out == record.device => {
                let changed = if forwarded.changes.is_empty() {
                    "false"
                } else {
                    "true"
                };
                inc(
                    &self.forwarded,
                    &[&cap(&forwarded.in_device), device, changed],
                );
            }
            None => inc(&self.not_forwarded, &[device]),
            Some(_) => {}
        }
    }

    /// Brings the unlinked counters up to the linker's totals.
    pub(super) fn set_stats(&self, stats: &ForwardingStats) {
        let totals = [
            stats.random_reused,
            stats.waiting_evicted,
            stats.marks_full,
            stats.hold_full,
        ];
        for (cause, total) in UNLINKED_CAUSES.into_iter().zip(totals) {
            let counter = self.unlinked.with_label_values(&[cause]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }
}
