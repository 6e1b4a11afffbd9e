//! `tlsmon run` (the daemon) and `tlsmon watch` (the live view): settings, start-up
//! checks, and what each does with a decided handshake.

mod events_sink;
mod live;
mod logging;

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;

use crate::capture::{
    list_interfaces, Capture, CaptureOptions, InterfaceChange, InterfaceLocking, InterfaceSelector,
    KernelCounters,
};
use crate::cli::{CaptureArgs, RunArgs, WatchArgs};
use crate::config::{Config, LabelsConfig, Settings};
use crate::flows::{FlowStats, FlowTable, FlowTableOptions};
use crate::http::{self, Endpoints, Health};
use crate::metrics::{CaptureHealth, Metrics};
use crate::output::{self, EventsFile};
use crate::record::{HandshakeRecord, Outcome};

use events_sink::EventsSink;
use live::LiveObserver;
use logging::DropLog;

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
    let signals = live::StopSignals::install()?;
    let (mut capture, attached) = start_capture(&settings, locking)?;
    let attached_count = Arc::new(AtomicUsize::new(0));
    let mut observer = DaemonObserver {
        metrics: metrics.clone(),
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
    });
    tracing::info!(
        listen = %running.local_addr(),
        interfaces = ?attached,
        tls = tls_on,
        basic_auth = auth_on,
        "tlsmon running: /metrics and /healthz"
    );
    let table = FlowTable::new(flow_options(&settings));
    let result = live::run_until_signal(capture, table, signals, &mut observer).await;
    let served = running.shutdown().await.context("metrics endpoint");
    result.and(served)
}

/// Prints handshakes as they complete until SIGINT/SIGTERM.
pub async fn watch(args: &WatchArgs) -> anyhow::Result<()> {
    logging::init("warn", crate::config::LogFormat::Text)?;
    let settings = capture_flags(&args.capture).resolve();
    // watch holds no interface lock: it runs next to the daemon, and only looks
    // whether one is attached (so that its clsact filters are not removed as stale).
    let signals = live::StopSignals::install()?;
    let (mut capture, attached) = start_capture(&settings, InterfaceLocking::Observe)?;
    // The initial attachments are announced here, later ones as they happen.
    let _ = capture.take_interface_changes();
    eprintln!("watching {} (Ctrl-C to stop)", attached.join(", "));
    let table = FlowTable::new(flow_options(&settings));
    let color = crate::commands::use_color(args.color);
    let mut observer = WatchObserver {
        json: args.json,
        failures_only: args.failures_only,
        color,
    };
    live::run_until_signal(capture, table, signals, &mut observer).await
}

/// The endpoint's TLS and authentication from the web config file at `path`
/// (certificates read and checked now, so a bad one stops the start).
fn web_access(path: &std::path::Path) -> anyhow::Result<http::Access> {
    let config = crate::web_config::WebConfig::load(path)?;
    Ok(http::Access {
        tls: config.tls_server_config()?,
        basic_auth: config.basic_auth(),
    })
}

/// The capture flags as a config layer (`None` where not given).
fn capture_flags(args: &CaptureArgs) -> Config {
    Config {
        interfaces: (!args.interfaces.is_empty()).then(|| args.interfaces.clone()),
        byte_budget: args.byte_budget,
        handshake_timeout_secs: args.handshake_timeout,
        max_flows: args.max_flows,
        ..Config::default()
    }
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
            top_k: args.top_k,
        }),
        log_level: args.log_level.clone(),
        allow_shared_interface: flag(args.allow_shared_interface),
        log_format: args.log_format,
        web_config_file: args.web_config_file.clone(),
        ..capture_flags(&args.capture)
    };
    Ok(file.merge(flags).resolve())
}

fn flow_options(settings: &Settings) -> FlowTableOptions {
    FlowTableOptions {
        handshake_timeout: settings.handshake_timeout,
        max_flows: settings.max_flows,
        ..FlowTableOptions::default()
    }
}

/// Loads the kernel program and attaches it where the settings' patterns say,
/// taking each interface's lock as `locking` says.
fn start_capture(
    settings: &Settings,
    locking: InterfaceLocking,
) -> anyhow::Result<(Capture, Vec<String>)> {
    let patterns = &settings.interfaces;
    let selector = InterfaceSelector::new(patterns)?;
    // Checked before loading anything, so a typo fails fast, without root, and
    // before the kernel is touched.
    if selector.select(&list_interfaces()?)?.is_empty() {
        anyhow::bail!(
            "no interface matches {} (see `ip link`; loopback is only watched when named)",
            if patterns.is_empty() {
                "the default selection: every interface that is up".to_string()
            } else {
                patterns.join(", ")
            }
        );
    }
    let mut capture = Capture::load(CaptureOptions {
        byte_budget: settings.byte_budget,
        interface_lock: locking,
        kernel_diagnostics: crate::capture::kernel_log_wanted(),
        ..CaptureOptions::default()
    })?;
    if let Some(kernel_log) = capture.take_kernel_log() {
        tokio::spawn(kernel_log.run());
    }
    // Following: interfaces that appear or come up later and match are attached too.
    let attached = capture.follow_interfaces(selector)?;
    Ok((capture, attached))
}

/// The daemon's handling of records: metrics and the optional events file.
struct DaemonObserver {
    metrics: Arc<Metrics>,
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

    fn record(&mut self, record: &HandshakeRecord) {
        self.metrics.observe(record);
        if let Some(sink) = &mut self.events_file {
            sink.write(record, &self.metrics);
        }
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
}

/// `watch`'s handling of records: one line each on standard output.
struct WatchObserver {
    json: bool,
    failures_only: bool,
    color: bool,
}

impl LiveObserver for WatchObserver {
    fn interfaces_changed(&mut self, changes: &[InterfaceChange]) {
        for change in changes {
            match change {
                InterfaceChange::Attached(device) => eprintln!("watching {device}"),
                InterfaceChange::Detached(device) => eprintln!("stopped watching {device}"),
                InterfaceChange::AttachFailed { interface, error } => {
                    eprintln!("cannot watch {interface}: {error}")
                }
            }
        }
    }

    fn record(&mut self, record: &HandshakeRecord) {
        if self.failures_only && record.outcome != Outcome::Failed {
            return;
        }
        let line = if self.json {
            output::json_line(record)
        } else {
            output::text_line(record, self.color)
        };
        let mut stdout = io::stdout().lock();
        // A closed pipe ends nothing here: the loop stops on signals only.
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}
