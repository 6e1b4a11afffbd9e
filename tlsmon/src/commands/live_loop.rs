//! The live glue shared by `run` and `watch`: start-up (logging, capture), and the
//! loop: kernel segments through the flow table (QUIC datagrams through its own), each record named with its local
//! service ([`crate::attribution`]), to a record sink, with timeouts on the wall
//! clock and a clean stop on signals.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::attribution::{Attributor, ResolverStats};
use crate::cli::CaptureArgs;
use crate::config::{Config, Settings};
use crate::event::HandshakeEvent;
use crate::pipeline::diagnosis::DiagnosisStats;
use crate::pipeline::drive::Pipeline;
use crate::pipeline::flow_table::FlowTableOptions;
use crate::pipeline::flow_table::{Decided, FlowStats, ResumeRequest};
use crate::pipeline::forwarding::ForwardingStats;
use crate::pipeline::quic::QuicStats;
use crate::source::live::{list_interfaces, CaptureOptions, InterfaceLocking, InterfaceSelector};
use crate::source::live::{Capture, InterfaceChange, KernelCounters, HINT_HEALING_INTERVAL};
use crate::source::live::{ResumeMode, ResumeOutcome, ResumePoint};
use crate::source::segment::{Datagram, Segment, Timestamp};

/// How often timeouts are judged and health numbers refreshed.
pub const TICK: Duration = Duration::from_secs(1);

/// What the loop reports besides records, once per tick.
pub trait LiveObserver {
    /// A handshake was decided.
    fn record(&mut self, record: &HandshakeEvent);
    /// Interfaces were attached or dropped (hotplug, or attach failures).
    fn interfaces_changed(&mut self, changes: &[InterfaceChange]);
    /// Periodic: the forwarding linker's counters (when linking).
    fn forwarding(&mut self, _stats: &ForwardingStats) {}
    /// SIGHUP: reopen output files (after log rotation).
    fn reopen(&mut self) {}
    /// Periodic health: kernel counters (if readable), flow table counters, flows open.
    fn tick(&mut self, _kernel: Option<&KernelCounters>, _flows: &FlowStats, _tracked: usize) {}
    /// Periodic health of the diagnosis stage (with [`tick`](Self::tick)).
    fn diagnosis_tick(&mut self, _stats: DiagnosisStats) {}
    /// Periodic: the QUIC table's counters (with [`tick`](Self::tick)).
    fn quic_tick(&mut self, _stats: &QuicStats) {}
    /// Periodic: the cgroup resolver's counters.
    fn attribution(&mut self, _stats: &ResolverStats) {}
}

/// The signals the live loop answers: SIGINT and SIGTERM stop it, SIGHUP reopens
/// output files. Installed before anything is attached, so that a signal that
/// arrives during start-up is answered by a clean detach instead of killing the
/// process with its programs still attached.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    /// Installs the handlers (needs a tokio runtime).
    pub fn install() -> anyhow::Result<Self> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }
}

/// Runs until SIGINT or SIGTERM, then detaches everything it attached. SIGHUP
/// reopens output files.
pub async fn run_until_signal(
    mut capture: Capture,
    mut pipeline: Pipeline,
    signals: StopSignals,
    observer: &mut dyn LiveObserver,
) -> anyhow::Result<()> {
    let StopSignals {
        mut interrupt,
        mut terminate,
        mut hangup,
    } = signals;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healing = tokio::time::interval(HINT_HEALING_INTERVAL);
    healing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut segments: Vec<Segment> = Vec::new();
    let mut datagrams: Vec<Datagram> = Vec::new();
    let mut attributor = Attributor::from_mount_table();
    pipeline.collect_resume_requests();
    let mut resumes = Resumes::default();
    let result = loop {
        tokio::select! {
            read = capture.next_segments(&mut segments) => {
                if let Err(err) = read {
                    break Err(anyhow::Error::new(err).context("reading kernel events"));
                }
                // QUIC: the kernel forgets a connection by itself (both sides at
                // 1-RTT, or its budget spent), so nothing is released.
                capture.drain_datagrams(&mut datagrams);
                let mut deliver = |d: Decided| deliver(d, &mut capture, &mut attributor, observer);
                pipeline.push_batch(&mut segments, &mut deliver);
                for datagram in datagrams.drain(..) {
                    pipeline.push_datagram(datagram, &mut deliver);
                }
                resumes.send(&mut pipeline, &mut capture);
                release_dropped_preambles(&mut pipeline, &mut capture);
                let changes = capture.take_interface_changes();
                if !changes.is_empty() {
                    observer.interfaces_changed(&changes);
                }
            }
            _ = ticker.tick() => {
                pipeline.advance_clock(
                    wall_clock(),
                    &mut |d| deliver(d, &mut capture, &mut attributor, observer),
                );
                release_dropped_preambles(&mut pipeline, &mut capture);
                let kernel = capture
                    .counters()
                    .map_err(|err| tracing::warn!("reading kernel counters: {err}"))
                    .ok();
                observer.tick(kernel.as_ref(), pipeline.stats(), pipeline.tracked());
                if let Some(stats) = pipeline.forwarding_stats() {
                    observer.forwarding(stats);
                }
                observer.diagnosis_tick(pipeline.diagnosis_stats());
                observer.quic_tick(pipeline.quic_stats());
                observer.attribution(attributor.stats());
            }
            _ = healing.tick() => match capture.heal_hints() {
                Ok(h) if h.slots_too_high > 0 => tracing::debug!(
                    "hint table: {} slots counted evicted flows, {} corrected",
                    h.slots_too_high,
                    h.slots_healed
                ),
                Ok(_) => {}
                Err(err) => tracing::warn!("healing the kernel's hint table: {err}"),
            },
            _ = hangup.recv() => observer.reopen(),
            _ = interrupt.recv() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
        }
    };
    tracing::info!("stopping: detaching from every interface");
    let detached = capture.detach_all().context("detaching");
    observer.interfaces_changed(&capture.take_interface_changes());
    result.and(detached)
}

/// Names the local service of a decided handshake, hands it to the observer and
/// tells the kernel to stop copying its connection.
fn deliver(
    decided: Decided,
    capture: &mut Capture,
    attributor: &mut Attributor,
    observer: &mut dyn LiveObserver,
) {
    let Decided {
        key,
        client_seq,
        cgroup_id,
        mut event,
        ..
    } = decided;
    if let Some(client_seq) = client_seq {
        if let Err(err) = capture.release_flow(&key, client_seq) {
            // The kernel then copies until the byte budget runs out: wasteful, not wrong.
            tracing::debug!("releasing {key:?}: {err}");
        }
    }
    let attribution = attributor.attribute(cgroup_id);
    event.cgroup = attribution.cgroup;
    event.service = attribution.service;
    observer.record(&event);
}

/// Resume points on their way to the kernel, and what became of them.
#[derive(Default)]
struct Resumes {
    pending: Vec<ResumeRequest>,
    /// Control calls made, and how many came in time, late, or took no effect.
    calls: u64,
    in_time: u64,
    late: u64,
    not_applied: u64,
}

impl Resumes {
    /// Tells the kernel where directions next need bytes (one control call per
    /// need): the bytes before are skipped, what is copied from there stays as the
    /// kernel's record following decides.
    fn send(&mut self, pipeline: &mut Pipeline, capture: &mut Capture) {
        pipeline.take_resume_requests(&mut self.pending);
        if self.pending.is_empty() {
            return;
        }
        for request in self.pending.drain(..) {
            let point = ResumePoint {
                seq: request.seq,
                mode: ResumeMode::SkipTo,
            };
            self.calls += 1;
            match capture.resume_flow(&request.key, request.client_seq, request.sender, point) {
                Ok(ResumeOutcome::InTime) => self.in_time += 1,
                Ok(ResumeOutcome::Late) => self.late += 1,
                Ok(ResumeOutcome::NotApplied) => self.not_applied += 1,
                // The kernel then copies what it would have: wasteful, not wrong.
                Err(err) => tracing::debug!("resume point for {:?}: {err}", request.key),
            }
        }
        tracing::trace!(
            "resume points: {} calls, {} in time, {} late, {} not applied",
            self.calls,
            self.in_time,
            self.late,
            self.not_applied
        );
    }
}

/// Tells the kernel to stop copying connections whose preamble led to no
/// handshake (a plaintext session on a STARTTLS port, say).
fn release_dropped_preambles(pipeline: &mut Pipeline, capture: &mut Capture) {
    for (key, client_seq) in pipeline.take_dropped_preambles() {
        if let Err(err) = capture.release_flow(&key, client_seq) {
            tracing::debug!("releasing {key:?}: {err}");
        }
    }
}

/// Now, as the flow table's clock counts it.
fn wall_clock() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The capture flags as a config layer (`None` where not given).
pub(super) fn capture_flags(args: &CaptureArgs) -> Config {
    Config {
        interfaces: (!args.interfaces.is_empty()).then(|| args.interfaces.clone()),
        byte_budget: args.byte_budget,
        handshake_timeout_secs: args.handshake_timeout,
        max_flows: args.max_flows,
        starttls_ports: (!args.starttls_ports.is_empty()).then(|| args.starttls_ports.clone()),
        ..Config::default()
    }
}

pub(super) fn flow_options(settings: &Settings) -> FlowTableOptions {
    FlowTableOptions {
        handshake_timeout: settings.handshake_timeout,
        max_flows: settings.max_flows,
        starttls_ports: settings.starttls_ports.clone(),
        ..FlowTableOptions::default()
    }
}

/// Loads the kernel program and attaches it where the settings' patterns say,
/// taking each interface's lock as `locking` says.
pub(super) fn start_capture(
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
        kernel_diagnostics: crate::source::live::kernel_log_wanted(),
        starttls_ports: settings
            .starttls_ports
            .iter()
            .map(|(port, _)| *port)
            .collect(),
        ..CaptureOptions::default()
    })?;
    // Following: interfaces that appear or come up later and match are attached too.
    if let Some(kernel_log) = capture.take_kernel_log() {
        tokio::spawn(kernel_log.run());
    }
    let attached = capture.follow_interfaces(selector)?;
    Ok((capture, attached))
}
