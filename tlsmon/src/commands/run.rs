//! `tlsmon run`, the daemon: settings (config file and flags), start-up checks,
//! and what it does with a decided handshake (metrics, the events file).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;

use crate::attribution::ResolverStats;
use crate::cli::RunArgs;
use crate::config::{Config, LabelsConfig, Settings};
use crate::event::HandshakeEvent;
use crate::pipeline::diagnosis::DiagnosisStats;
use crate::pipeline::flow_table::FlowStats;
use crate::pipeline::forwarding::ForwardingStats;
use crate::pipeline::quic::QuicStats;
use crate::sinks::http::{self, Endpoints, Health};
use crate::sinks::lines::EventsFile;
use crate::sinks::metrics::{CaptureHealth, Metrics};
use crate::sinks::recent_events::RecentEvents;
use crate::source::live::{InterfaceChange, InterfaceLocking, KernelCounters};

use super::events_sink::EventsSink;
use super::live_loop::{self, capture_flags, flow_options, start_capture, LiveObserver};
use super::logging::{self, DropLog};
use crate::pipeline::drive::Pipeline;

/// Runs the daemon until SIGINT/SIGTERM.
pub async fn run(args: &RunArgs) -> anyhow::Result<()> {
    let settings = run_settings(args)?;
    logging::init(&settings.log_level, settings.log_format)?;
    // A bad web config stops the daemon before it listens or touches the kernel.
    let access = match &settings.web_config_file {
        Some(path) => web_access(path)?,
        None => http::Access::default(),
    };
    // Refuse to start before touching the kernel if the port is taken.
    let server = http::bind(settings.listen).await?;
    let metrics = Arc::new(Metrics::new(&settings.labels)?);
    let events_file = match &settings.events_file {
        Some(path) => Some(EventsSink::new(EventsFile::open(path)?)),
        None => None,
    };
    let locking = if settings.allow_shared_interface {
        InterfaceLocking::Shared
    } else {
        InterfaceLocking::Exclusive
    };
    let signals = live_loop::StopSignals::install()?;
    let (mut capture, attached) = start_capture(&settings, locking)?;
    let attached_count = Arc::new(AtomicUsize::new(0));
    let recent = Arc::new(RecentEvents::new(settings.recent_events));
    let mut observer = DaemonObserver {
        metrics: metrics.clone(),
        recent: recent.clone(),
        events_file,
        last_flow_stats: FlowStats::default(),
        attached_count: attached_count.clone(),
        drops: DropLog::default(),
    };
    observer.interfaces_changed(&capture.take_interface_changes());
    let health_count = attached_count.clone();
    let health_metrics = metrics.clone();
    let (tls_on, auth_on) = (access.tls.is_some(), access.basic_auth.is_some());
    let running = server.spawn(Endpoints {
        metrics: metrics.clone(),
        health: Arc::new(move || {
            Health::of_capture(
                health_count.load(Ordering::Relaxed),
                health_metrics.health().recent_ringbuf_drops(),
                CaptureHealth::LOSS_WINDOW,
            )
        }),
        access,
        events: Some(http::events::EventsEndpoint::new(recent)),
    });
    tracing::info!(
        listen = %running.local_addr(),
        interfaces = ?attached,
        tls = tls_on,
        basic_auth = auth_on,
        "tlsmon running: /metrics, /healthz and /api/v1/events"
    );
    let table = Pipeline::new(flow_options(&settings))
        .with_forwarding()
        .with_workers(
            args.capture
                .workers
                .unwrap_or(crate::pipeline::shards::LIVE_DEFAULT_WORKERS),
        );
    let result = live_loop::run_until_signal(capture, table, signals, &mut observer).await;
    let served = running.shutdown().await.context("metrics endpoint");
    result.and(served)
}

/// The endpoint's TLS and authentication from the web config file at `path`
/// (certificates read and checked now, so a bad one stops the start).
fn web_access(path: &std::path::Path) -> anyhow::Result<http::Access> {
    let config = crate::sinks::http::web_config::WebConfig::load(path)?;
    Ok(http::Access {
        tls: config.tls_server_config()?,
        basic_auth: config.basic_auth(),
    })
}

/// The config file (if any) with the command-line flags on top.
fn run_settings(args: &RunArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let flag = |set: bool| set.then_some(true);
    let flags = Config {
        listen: args.listen,
        events_file: args.events_file.clone(),
        labels: Some(LabelsConfig {
            sni: flag(args.label_sni),
            ja3: flag(args.label_ja3),
            ja4: flag(args.label_ja4),
            client_ip: flag(args.label_client_ip),
            service: None,
            top_k: args.top_k,
        }),
        log_level: args.log_level.clone(),
        allow_shared_interface: flag(args.allow_shared_interface),
        log_format: args.log_format,
        web_config_file: args.web_config_file.clone(),
        recent_events: args.recent_events,
        ..capture_flags(&args.capture)
    };
    Ok(file.merge(flags).resolve())
}

/// The daemon's handling of records: metrics and the optional events file.
struct DaemonObserver {
    metrics: Arc<Metrics>,
    /// The newest events, for `/api/v1/events`.
    recent: Arc<RecentEvents>,
    events_file: Option<EventsSink>,
    last_flow_stats: FlowStats,
    /// Interfaces attached now, for /healthz.
    attached_count: Arc<AtomicUsize>,
    /// When the kernel started and stopped dropping events, for the log.
    drops: DropLog,
}

impl LiveObserver for DaemonObserver {
    fn interfaces_changed(&mut self, changes: &[InterfaceChange]) {
        for change in changes {
            match change {
                InterfaceChange::Attached(device) => {
                    self.metrics.set_attached(device, true);
                    self.attached_count.fetch_add(1, Ordering::Relaxed);
                }
                InterfaceChange::Detached(device) => {
                    self.metrics.set_attached(device, false);
                    // Saturating: a detach is only reported for an attach we counted.
                    let _ = self.attached_count.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    );
                }
                InterfaceChange::AttachFailed { interface, error } => {
                    self.metrics.set_attached(interface, false);
                    tracing::warn!(interface, "not watched: {error}");
                }
            }
        }
    }

    fn record(&mut self, record: &HandshakeEvent) {
        self.metrics.observe(record);
        self.recent.push(record);
        if let Some(sink) = &mut self.events_file {
            sink.write(record, &self.metrics);
        }
    }

    fn forwarding(&mut self, stats: &ForwardingStats) {
        self.metrics.set_forwarding_stats(stats);
    }

    fn attribution(&mut self, stats: &ResolverStats) {
        self.metrics.health().set_attribution(stats);
    }

    fn reopen(&mut self) {
        if let Some(sink) = &mut self.events_file {
            sink.reopen(&self.metrics);
        }
    }

    fn tick(&mut self, kernel: Option<&KernelCounters>, flows: &FlowStats, tracked: usize) {
        let health = self.metrics.health();
        if let Some(counters) = kernel {
            health.set_kernel_counters(counters);
            let change = self.drops.update(
                std::time::Instant::now(),
                health.recent_ringbuf_drops(),
                counters.events_dropped,
            );
            DropLog::log(&change, CaptureHealth::LOSS_WINDOW);
        }
        health.set_flows_tracked(tracked as u64);
        health.add_reassembly_evictions(flows.flows_evicted - self.last_flow_stats.flows_evicted);
        health.set_flows_dropped(flows);
        health.add_parse_errors(
            "handshake",
            flows.parse_errors - self.last_flow_stats.parse_errors,
        );
        self.last_flow_stats = flows.clone();
    }

    fn diagnosis_tick(&mut self, stats: DiagnosisStats) {
        self.metrics
            .health()
            .set_server_profiles_evicted(stats.profiles_evicted);
    }

    fn quic_tick(&mut self, stats: &QuicStats) {
        self.metrics.health().set_quic(stats);
    }
}
