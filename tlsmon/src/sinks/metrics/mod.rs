//! Prometheus metrics: one [`Metrics`] per daemon (or per `analyze --format
//! metrics` run) owns a registry, turns each [`HandshakeEvent`] into counter and
//! histogram updates, and renders the text exposition format.
//!
//! Naming follows Prometheus conventions: prefix `tlsmon_`, counters end in
//! `_total`, durations in seconds, the interface label is `device` (as
//! node_exporter names it). Every label value is bounded, and none can be taken
//! from one connection by another: enums by construction; registry names
//! (versions, ciphers, groups, alerts) by the registry, each registered name its
//! own value and every other code point `unknown` ([`labels::RegistryLabel`]), with
//! GREASE never counted as offered; devices by a [`labels::LabelCap`]; open-ended
//! values (SNI, fingerprints, peers) are off unless enabled and then capped at
//! `top_k`, and so is the local service (on unless disabled). Capped values are
//! counted in `tlsmon_label_values_folded_total` when they fold, and have control characters escaped ([`crate::sinks::escape`]).

mod forwarding;
mod health;
pub mod labels;

use std::collections::BTreeSet;

use prometheus::{
    core::Collector, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub use health::CaptureHealth;
use labels::{Admission, LabelCap, RegistryLabel};

use crate::{
    event::{DiagnosisCode, HandshakeEvent, Outcome},
    pipeline::tls::names,
};

/// Content type of the text exposition format served on `/metrics`.
pub const TEXT_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Handshake duration buckets, seconds: from a loopback handshake (~0.5 ms) to
/// a client that gave up after several seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// ClientHello size buckets, bytes: classic hellos are 200-600 bytes, post-quantum
/// key shares (X25519MLKEM768) push them past 1500 and into several segments.
pub const CLIENT_HELLO_SIZE_BUCKETS: [f64; 10] = [
    128.0, 256.0, 512.0, 768.0, 1024.0, 1500.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
/// ClientHello segment-count buckets.
pub const CLIENT_HELLO_SEGMENT_BUCKETS: [f64; 7] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0];

/// Distinct interface names kept before folding into `other` (hosts with
/// container churn create veths endlessly).
pub const DEVICE_LIMIT: usize = 256;

/// Errors building or rendering metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The prometheus crate refused a metric definition or failed to encode.
    #[error("prometheus: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// Which open-ended labels are exported, and how many distinct values each keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelOptions {
    /// Export `tlsmon_handshakes_by_sni_total`.
    pub sni: bool,
    /// Export `tlsmon_handshakes_by_ja3_total`.
    pub ja3: bool,
    /// Export `tlsmon_handshakes_by_ja4_total`.
    pub ja4: bool,
    /// Export `tlsmon_handshakes_by_client_ip_total`.
    pub client_ip: bool,
    /// Export `tlsmon_handshakes_by_service_total` (on by default: local services
    /// are few, and their names come from this host, not from the network).
    pub service: bool,
    /// Distinct values each of those labels keeps before folding into `other`.
    pub top_k: usize,
}

/// Default for [`LabelOptions::top_k`].
pub const DEFAULT_TOP_K: usize = 50;

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            sni: false,
            ja3: false,
            ja4: false,
            client_ip: false,
            service: true,
            top_k: DEFAULT_TOP_K,
        }
    }
}

/// The caps of every label whose values are neither a fixed enum nor registry names.
struct LabelCaps {
    device: LabelCap,
    sni: LabelCap,
    ja3: LabelCap,
    ja4: LabelCap,
    client_ip: LabelCap,
    service: LabelCap,
}

/// Counters keyed by one open-ended value, each present only when enabled.
struct OptionalBreakdowns {
    sni: Option<IntCounterVec>,
    ja3: Option<IntCounterVec>,
    ja4: Option<IntCounterVec>,
    client_ip: Option<IntCounterVec>,
    service: Option<IntCounterVec>,
}

/// All tlsmon metrics and the registry they live in.
pub struct Metrics {
    registry: Registry,
    caps: LabelCaps,
    handshakes: IntCounterVec,
    failures: IntCounterVec,
    diagnoses: IntCounterVec,
    alerts: IntCounterVec,
    offered_versions: IntCounterVec,
    offered_ciphers: IntCounterVec,
    offered_groups: IntCounterVec,
    negotiated_groups: IntCounterVec,
    preamble_handshakes: IntCounterVec,
    duration: HistogramVec,
    client_hello_size: HistogramVec,
    client_hello_segments: HistogramVec,
    folded: IntCounterVec,
    breakdowns: OptionalBreakdowns,
    health: CaptureHealth,
    forwarding: forwarding::ForwardingMetrics,
}

impl Metrics {
    /// Creates and registers every metric. `tlsmon_build_info` is set to 1.
    pub fn new(options: &LabelOptions) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let counters = |name: &str, help: &str, labels: &[&str]| {
            registered(r, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histograms = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            registered(r, HistogramVec::new(opts, labels))
        };
        let breakdown = |enabled: bool, name: &str, help: &str, label: &str| {
            enabled
                .then(|| counters(name, help, &["device", label, "outcome"]))
                .transpose()
        };

        let build_info = registered(
            r,
            IntGauge::with_opts(
                Opts::new(
                    "tlsmon_build_info",
                    "Always 1; the labels tell which tlsmon version is running.",
                )
                .const_label("version", env!("CARGO_PKG_VERSION")),
            ),
        )?;
        build_info.set(1);

        let metrics = Metrics {
            caps: LabelCaps {
                device: LabelCap::new(DEVICE_LIMIT),
                sni: LabelCap::new(options.top_k),
                ja3: LabelCap::new(options.top_k),
                ja4: LabelCap::new(options.top_k),
                client_ip: LabelCap::new(options.top_k),
                service: LabelCap::new(options.top_k),
            },
            handshakes: counters(
                "tlsmon_handshakes_total",
                "TLS handshakes seen, by interface, direction, transport (tcp, quic), negotiated version and cipher suite (empty when the server never chose one, \"unknown\" for a code point no registry names) and outcome (established, failed, incomplete).",
                &["device", "direction", "transport", "version", "cipher", "outcome"],
            )?,
            failures: counters(
                "tlsmon_handshake_failures_total",
                "Failed TLS handshakes by interface, direction, transport (tcp, quic) and reason (alert, reset, closed, timeout, encrypted_alert, protocol_error, not_tls, starttls_refused, version_negotiation); alert and alert_sender tell which TLS alert ended it and who sent it, closed_by who reset or closed the connection (for QUIC: who sent CONNECTION_CLOSE), stage whether the server had answered with a ServerHello.",
                &["device", "direction", "transport", "reason", "alert", "alert_sender", "closed_by", "stage"],
            )?,
            diagnoses: counters(
                "tlsmon_handshake_diagnoses_total",
                "Failed TLS handshakes by interface, direction and diagnosis: why they failed (no_shared_cipher, no_shared_version, no_shared_group, inappropriate_fallback, unknown_sni, client_rejected_certificate, client_certificate_required, server_rejected_client_certificate, silent_close_after_client_hello, reset_after_client_hello, server_timeout, not_tls, protocol_error, unknown).",
                &["device", "direction", "diagnosis"],
            )?,
            alerts: counters(
                "tlsmon_alerts_total",
                "Plaintext TLS alerts that ended a handshake, by interface, direction, alert name and the side that sent it (client or server).",
                &["device", "direction", "alert", "sender"],
            )?,
            offered_versions: counters(
                "tlsmon_client_hello_offered_versions_total",
                "ClientHellos offering each TLS version (one count per ClientHello per version offered; unregistered code points count once as \"unknown\", GREASE not at all), by interface.",
                &["device", "version"],
            )?,
            offered_ciphers: counters(
                "tlsmon_client_hello_offered_ciphers_total",
                "ClientHellos offering each cipher suite (one count per ClientHello per suite offered; unregistered code points count once as \"unknown\", GREASE not at all), by interface.",
                &["device", "cipher"],
            )?,
            offered_groups: counters(
                "tlsmon_client_hello_offered_groups_total",
                "ClientHellos offering each key exchange group, e.g. X25519MLKEM768 (one count per ClientHello per group offered; unregistered code points count once as \"unknown\", GREASE not at all), by interface.",
                &["device", "group"],
            )?,
            negotiated_groups: counters(
                "tlsmon_handshake_groups_total",
                "Handshakes in which the server chose a key exchange group, by interface, group and outcome.",
                &["device", "group", "outcome"],
            )?,
            preamble_handshakes: counters(
                "tlsmon_preamble_handshakes_total",
                "TLS handshakes that came after a preamble, by interface, preamble (proxy_v1, proxy_v2, http_connect, socks4, socks5, starttls_smtp, starttls_imap, starttls_pop3, starttls_ftp, starttls_xmpp, starttls_postgres, starttls_ldap, starttls_mysql) and outcome; also counted in tlsmon_handshakes_total.",
                &["device", "preamble", "outcome"],
            )?,
            duration: histograms(
                "tlsmon_handshake_duration_seconds",
                "Time from the ClientHello to the end of the handshake (established) or to its failure, by interface and outcome.",
                &["device", "outcome"],
                &DURATION_BUCKETS,
            )?,
            client_hello_size: histograms(
                "tlsmon_client_hello_size_bytes",
                "Size of ClientHello handshake messages in bytes (post-quantum key shares make them large), by interface.",
                &["device"],
                &CLIENT_HELLO_SIZE_BUCKETS,
            )?,
            client_hello_segments: histograms(
                "tlsmon_client_hello_segments",
                "Number of TCP segments a ClientHello was split across, by interface.",
                &["device"],
                &CLIENT_HELLO_SEGMENT_BUCKETS,
            )?,
            folded: counters(
                "tlsmon_label_values_folded_total",
                "Label values replaced by \"other\" because that capped label (device, sni, ja3, ja4, client_ip, service) already had its maximum number of distinct values, by label name.",
                &["label"],
            )?,
            breakdowns: OptionalBreakdowns {
                sni: breakdown(
                    options.sni,
                    "tlsmon_handshakes_by_sni_total",
                    "TLS handshakes by interface, requested server name (first top_k names seen, then \"other\") and outcome.",
                    "sni",
                )?,
                ja3: breakdown(
                    options.ja3,
                    "tlsmon_handshakes_by_ja3_total",
                    "TLS handshakes by interface, JA3 client fingerprint (first top_k seen, then \"other\") and outcome.",
                    "ja3",
                )?,
                ja4: breakdown(
                    options.ja4,
                    "tlsmon_handshakes_by_ja4_total",
                    "TLS handshakes by interface, JA4 client fingerprint (first top_k seen, then \"other\") and outcome.",
                    "ja4",
                )?,
                client_ip: breakdown(
                    options.client_ip,
                    "tlsmon_handshakes_by_client_ip_total",
                    "TLS handshakes by interface, client address (first top_k seen, then \"other\") and outcome.",
                    "client_ip",
                )?,
                // With the negotiated version too (a registry name, so no new
                // bound): "which services still negotiate TLS 1.2" is a query.
                service: options
                    .service
                    .then(|| {
                        counters(
                            "tlsmon_handshakes_by_service_total",
                            "TLS handshakes by interface, local service that owns the socket (systemd unit, container, pod, or cgroup path; first top_k seen, then \"other\"; empty without a local socket, e.g. forwarded traffic), negotiated version (empty if the server never chose one) and outcome.",
                            &["device", "service", "version", "outcome"],
                        )
                    })
                    .transpose()?,
            },
            health: CaptureHealth::register(r)?,
            forwarding: forwarding::ForwardingMetrics::register(r)?,
            registry,
        };
        // Every capped label in use shows its fold count from the start, 0 until
        // something folds, so that "nothing folded" is visible rather than absent.
        let capped_labels = [
            ("device", true),
            ("sni", options.sni),
            ("ja3", options.ja3),
            ("ja4", options.ja4),
            ("client_ip", options.client_ip),
            ("service", options.service),
        ];
        for (label, used) in capped_labels {
            if used {
                touch(&metrics.folded, &[label]);
            }
        }
        Ok(metrics)
    }

    /// Counts one finished handshake.
    pub fn observe(&self, record: &HandshakeEvent) {
        let device = self.capped("device", &self.caps.device, &record.device);
        let direction = record.direction.as_str();
        let transport = record.transport.as_str();
        let outcome = record.outcome.as_str();
        let version = registry_value(RegistryLabel::Version, &record.version);
        let cipher = registry_value(RegistryLabel::Cipher, &record.cipher);
        inc(
            &self.handshakes,
            &[&device, direction, transport, version, cipher, outcome],
        );

        if let Some(preamble) = record.preamble {
            inc(
                &self.preamble_handshakes,
                &[&device, preamble.as_str(), outcome],
            );
        }

        if record.outcome == Outcome::Failed {
            let reason = record.failure_reason.map_or("", |r| r.as_str());
            let alert = registry_value(RegistryLabel::Alert, &record.alert);
            let alert_sender = record.alert_sender.map_or("", |s| s.as_str());
            let closed_by = record.closed_by.map_or("", |s| s.as_str());
            // A negotiated version can only come from a ServerHello.
            let stage = if record.version.is_some() {
                "after_server_hello"
            } else {
                "before_server_hello"
            };
            inc(
                &self.failures,
                &[
                    &device,
                    direction,
                    transport,
                    reason,
                    alert,
                    alert_sender,
                    closed_by,
                    stage,
                ],
            );
            // The codes are a fixed set; a failure read back without one is `unknown`.
            let diagnosis = record
                .diagnosis
                .as_ref()
                .map_or(DiagnosisCode::Unknown, |d| d.code);
            inc(&self.diagnoses, &[&device, direction, diagnosis.as_str()]);
        }

        if let Some(alert) = &record.alert {
            let alert = RegistryLabel::Alert.value(alert);
            let sender = record.alert_sender.map_or("", |s| s.as_str());
            inc(&self.alerts, &[&device, direction, alert, sender]);
        }

        count_offered(
            &self.offered_versions,
            &device,
            RegistryLabel::Version,
            &record.offered_versions,
        );
        count_offered(
            &self.offered_ciphers,
            &device,
            RegistryLabel::Cipher,
            &record.offered_ciphers,
        );
        count_offered(
            &self.offered_groups,
            &device,
            RegistryLabel::Group,
            &record.offered_groups,
        );
        if let Some(group) = &record.group {
            let group = RegistryLabel::Group.value(group);
            inc(&self.negotiated_groups, &[&device, group, outcome]);
        }

        if let Some(ms) = record.duration_ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
            observe(&self.duration, &[&device, outcome], ms / 1000.0);
        }
        if let Some(bytes) = record.client_hello_bytes {
            observe(&self.client_hello_size, &[&device], f64::from(bytes));
        }
        if let Some(segments) = record.client_hello_segments {
            observe(&self.client_hello_segments, &[&device], f64::from(segments));
        }

        self.count_breakdowns(record, &device, outcome);
        self.forwarding.observe(record, &device, &|name: &str| {
            self.capped("device", &self.caps.device, name)
        });
    }

    /// Brings `tlsmon_forwarding_unlinked_total` up to the linker's counters.
    pub fn set_forwarding_stats(&self, stats: &crate::pipeline::forwarding::ForwardingStats) {
        self.forwarding.set_stats(stats);
    }

    /// Marks an interface attached (1) or detached (0) in `tlsmon_interface_attached`.
    pub fn set_attached(&self, device: &str, attached: bool) {
        let device = self.capped("device", &self.caps.device, device);
        self.health.set_attached(&device, attached);
    }

    /// Capture-health setters (kernel counters, flows tracked, errors).
    pub fn health(&self) -> &CaptureHealth {
        &self.health
    }

    /// The registry, for callers that add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text exposition format 0.0.4.
    pub fn encode_text(&self) -> Result<String, MetricsError> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }

    fn count_breakdowns(&self, record: &HandshakeEvent, device: &str, outcome: &str) {
        let b = &self.breakdowns;
        let client_ip = record.client_ip.to_string();
        let wanted = [
            (&b.sni, "sni", &self.caps.sni, record.sni.as_deref()),
            (&b.ja3, "ja3", &self.caps.ja3, record.ja3.as_deref()),
            (&b.ja4, "ja4", &self.caps.ja4, record.ja4.as_deref()),
            (
                &b.client_ip,
                "client_ip",
                &self.caps.client_ip,
                Some(client_ip.as_str()),
            ),
        ];
        for (vec, label, cap, value) in wanted {
            if let Some(vec) = vec {
                let value = self.capped(label, cap, value.unwrap_or(""));
                inc(vec, &[device, &value, outcome]);
            }
        }
        if let Some(vec) = &b.service {
            let service = self.capped(
                "service",
                &self.caps.service,
                record.service.as_deref().unwrap_or(""),
            );
            let version = registry_value(RegistryLabel::Version, &record.version);
            inc(vec, &[device, &service, version, outcome]);
        }
    }

    /// The exported value of `value` for `label`, counting a fold into `other`.
    fn capped(&self, label: &str, cap: &LabelCap, value: &str) -> String {
        match cap.admit(value) {
            Admission::Kept(v) => v,
            Admission::Folded => {
                inc(&self.folded, &[label]);
                labels::OTHER.to_owned()
            }
        }
    }
}

/// The label value of an optional registry name ("" when there is none).
fn registry_value(label: RegistryLabel, name: &Option<String>) -> &str {
    label.value(name.as_deref().unwrap_or(""))
}

/// One increment per ClientHello per distinct offered value: each registered name,
/// and `unknown` once however many unknown code points it offered. GREASE is not an
/// offer (a client sends it so that peers keep ignoring what they do not know) and
/// is not counted.
fn count_offered(vec: &IntCounterVec, device: &str, label: RegistryLabel, offered: &[String]) {
    let distinct: BTreeSet<&str> = offered
        .iter()
        .filter(|name| name.as_str() != names::GREASE)
        .map(|name| label.value(name))
        .collect();
    for value in distinct {
        inc(vec, &[device, value]);
    }
}

/// Registers `metric` (or passes on its construction error).
fn registered<C>(registry: &Registry, metric: prometheus::Result<C>) -> Result<C, MetricsError>
where
    C: Collector + Clone + 'static,
{
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

// The label slices below always have the length the vector was declared with,
// so the lookups cannot fail; they are still handled, not unwrapped, and a
// failure is logged rather than taking the daemon down.

fn inc(vec: &IntCounterVec, labels: &[&str]) {
    match vec.get_metric_with_label_values(labels) {
        Ok(counter) => counter.inc(),
        Err(e) => tracing::error!("metric label mismatch: {e}"),
    }
}

/// Creates the series at 0 (a no-op when it exists).
fn touch(vec: &IntCounterVec, labels: &[&str]) {
    if let Err(e) = vec.get_metric_with_label_values(labels) {
        tracing::error!("metric label mismatch: {e}");
    }
}

fn observe(vec: &HistogramVec, labels: &[&str], value: f64) {
    match vec.get_metric_with_label_values(labels) {
        Ok(histogram) => Histogram::observe(&histogram, value),
        Err(e) => tracing::error!("metric label mismatch: {e}"),
    }
}

fn set_gauge(vec: &IntGaugeVec, labels: &[&str], value: i64) {
    match vec.get_metric_with_label_values(labels) {
        Ok(gauge) => gauge.set(value),
        Err(e) => tracing::error!("metric label mismatch: {e}"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
