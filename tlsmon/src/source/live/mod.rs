//! Live capture: loads the kernel classifier, attaches it to interfaces (and
//! follows interfaces that appear and vanish), and turns its RingBuf events into
//! [`Segment`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tlsmon::source::live::CaptureError> {
//! use tlsmon::source::live::{Capture, CaptureOptions, InterfaceChange, InterfaceSelector};
//! let mut capture = Capture::load(CaptureOptions::default())?;
//! // `--interface` patterns; an empty list means every up, non-loopback interface.
//! capture.follow_interfaces(InterfaceSelector::new(&["eth*"])?)?;
//! let mut segments = Vec::new();
//! loop {
//!     segments.clear();
//!     capture.next_segments(&mut segments).await?; // select! this with a signal
//!     for change in capture.take_interface_changes() {
//!         match change {
//!             InterfaceChange::Attached(dev) => { /* tlsmon_interface_attached{dev} 1 */ }
//!             InterfaceChange::Detached(dev) => { /* ... 0 */ }
//!             InterfaceChange::AttachFailed { .. } => { /* log it */ }
//!         }
//!     }
//!     // ... reassemble, parse, and once a handshake is decided:
//!     // capture.release_flow(&key, client_seq)?;
//! #   break;
//! }
//! capture.detach_all()?; // on SIGINT/SIGTERM; dropping `capture` also detaches
//! # Ok(()) }
//! ```
//!
//! Submodules: `loader` (object, maps, load errors), `attach` (TCX/clsact),
//! `events` (RingBuf reading), `decode` (records to segments), `follow` and
//! `hotplug` (interfaces that come and go), `interfaces` (listing and
//! `--interface` globs), `interface_lock` (one daemon per interface),
//! `flow_control` (releasing flows, healing hints), `test_run` (synthetic frames
//! for tests and benchmarks), `privileges`, `clock`, `devices` (ifindex to name),
//! `rtnl` (netlink requests).

mod attach;
mod clock;
mod decode;
mod devices;
mod error;
mod events;
mod flow_control;
mod follow;
mod hotplug;
mod interface_lock;
mod interfaces;
mod kernel_log;
mod loader;
mod privileges;
mod rtnl;
mod test_run;

use std::collections::BTreeMap;

use aya::{
    maps::{MapData, PerCpuArray},
    Ebpf,
};
use tlsmon_common::{Counter, COUNTERS_MAP, DEFAULT_BYTE_BUDGET, EGRESS_PROGRAM, INGRESS_PROGRAM};

pub use attach::{AttachMode, AttachedVia};
pub use decode::DecodeError;
pub use error::CaptureError;
pub use flow_control::{HintHealing, ResumeMode, ResumeOutcome, ResumePoint};
pub use follow::InterfaceChange;
pub use interface_lock::{InterfaceLocking, LockError, LOCK_DIR};
pub use interfaces::{list_interfaces, Interface, InterfaceSelector};
pub use kernel_log::{wanted as kernel_log_wanted, KernelLog, TARGET as KERNEL_LOG_TARGET};
pub use test_run::ClassifierTestRun;

use crate::source::segment::{ConnectionKey, Segment};

/// How often the daemon corrects hint counts left too high by LRU evictions.
pub const HINT_HEALING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Load-time settings of the capture.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Payload bytes copied per flow and direction before the kernel stops
    /// (default 128 KiB: a safety bound; what is copied follows TLS records).
    pub byte_budget: u32,
    /// TCX, clsact, or whichever the kernel supports (default).
    pub attach_mode: AttachMode,
    /// Load the programs with their reports of rare events on (default off; see
    /// [`KernelLog`] and [`Capture::take_kernel_log`]).
    pub kernel_diagnostics: bool,
    /// Whether attaching takes the interface's lock against a second daemon
    /// (default: only look at it).
    pub interface_lock: InterfaceLocking,
    /// Server ports whose sessions upgrade to TLS in-band (STARTTLS): the kernel
    /// follows their connections from the client's first payload (default: the
    /// well-known ports, `pipeline::preamble::DEFAULT_STARTTLS_PORTS`).
    pub starttls_ports: Vec<u16>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            byte_budget: DEFAULT_BYTE_BUDGET,
            attach_mode: AttachMode::Auto,
            kernel_diagnostics: false,
            interface_lock: InterfaceLocking::Observe,
            starttls_ports: crate::pipeline::preamble::DEFAULT_STARTTLS_PORTS
                .iter()
                .map(|(port, _)| *port)
                .collect(),
        }
    }
}

/// The kernel program's counters, summed over CPUs since the program was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Packets the classifier ran on.
    pub packets_seen: u64,
    /// Flows whose tracking started at a ClientHello.
    pub flows_started: u64,
    /// Events written to the RingBuf.
    pub events_sent: u64,
    /// Events lost because the RingBuf was full.
    pub events_dropped: u64,
    /// Payload bytes of tracked flows not copied (budget, chunk limit, full RingBuf).
    pub bytes_cut: u64,
    /// SYN-ACKs recorded as connections being set up.
    pub openings_seen: u64,
    /// ClientHello-like payloads that continued no connection seen being set up
    /// (spoofed, or set up before tlsmon started or via another interface).
    pub client_hellos_unverified: u64,
    /// Packets received for another host (promiscuous mode), never tracked.
    pub other_host_ignored: u64,
    /// Tracked flows ended because a new connection reused their 4-tuple.
    pub flows_replaced: u64,
    /// Tracked flows released by userspace once their handshake was decided.
    pub flows_released: u64,
    /// First payloads of untracked connections that began a preamble (PROXY
    /// header, HTTP CONNECT, SOCKS): candidates for a ClientHello behind it.
    pub preamble_candidates: u64,
    /// Payload bytes of tracked flows not copied on purpose: record bodies the
    /// kernel's record following skipped, bytes before a resume point.
    pub bytes_skipped: u64,
    /// Directions of tracked flows whose TLS records the kernel stopped
    /// following (a preamble, a gap, too many records in a packet).
    pub record_following_stopped: u64,
}

/// Identity and run statistics of one loaded classifier program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// Program name (`tlsmon_ingress` or `tlsmon_egress`).
    pub name: &'static str,
    /// Kernel program id (as `bpftool prog show id N` takes it).
    pub id: u32,
    /// Runs counted while `kernel.bpf_stats_enabled` was 1.
    pub run_count: u64,
    /// Time spent in those runs.
    pub run_time: std::time::Duration,
    /// Instructions the verifier processed, if the kernel reports it.
    pub verified_instructions: Option<u32>,
}

/// Error text with its sources, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A loaded classifier and the interfaces it is attached to. Dropping it detaches
/// everything (call [`Capture::detach_all`] to see errors).
pub struct Capture {
    ebpf: Ebpf,
    events: events::EventSource,
    counters: PerCpuArray<MapData, u64>,
    flow_control: flow_control::FlowControl,
    devices: devices::DeviceTable,
    options: CaptureOptions,
    attachments: BTreeMap<String, attach::Attachment>,
    undecodable: u64,
    /// Set by [`Capture::follow_interfaces`].
    following: Option<follow::Following>,
    changes: follow::Changes,
    /// With `kernel_diagnostics`, until taken.
    kernel_log: Option<KernelLog>,
}

impl Capture {
    /// Loads the embedded kernel object: checks privileges, lifts the memlock
    /// limit, creates the maps, writes the configuration and verifies both
    /// programs. Nothing is attached yet.
    pub fn load(options: CaptureOptions) -> Result<Capture, CaptureError> {
        let loaded = loader::load(
            options.byte_budget,
            options.kernel_diagnostics,
            &options.starttls_ports,
        )?;
        let devices = devices::DeviceTable::default();
        Ok(Capture {
            ebpf: loaded.ebpf,
            events: events::EventSource::Plain(loaded.ring),
            counters: loaded.counters,
            flow_control: flow_control::FlowControl::new(loaded.flows, loaded.hints),
            devices,
            options,
            attachments: BTreeMap::new(),
            undecodable: 0,
            following: None,
            changes: follow::Changes::default(),
            kernel_log: loaded.kernel_log,
        })
    }

    /// The reader of the kernel's diagnostics, when loaded with
    /// `kernel_diagnostics` (once: later calls return `None`). Spawn its
    /// [`KernelLog::run`] on the runtime; records not read stay in aya-log's own
    /// ring buffer, and the kernel drops new ones when it is full.
    pub fn take_kernel_log(&mut self) -> Option<KernelLog> {
        self.kernel_log.take()
    }

    /// Attaches the classifier to ingress and egress of `interface`. Returns
    /// `Ok(false)` if it was already attached there (never attaches twice).
    pub fn attach(&mut self, interface: &str) -> Result<bool, CaptureError> {
        if self.attachments.contains_key(interface) {
            return Ok(false);
        }
        let found = list_interfaces()?
            .into_iter()
            .find(|i| i.name == interface)
            .ok_or_else(|| CaptureError::InterfaceNotFound(interface.to_owned()))?;
        self.attach_interface(&found)?;
        Ok(true)
    }

    fn attach_interface(&mut self, interface: &Interface) -> Result<(), CaptureError> {
        let attachment = attach::attach(&mut self.ebpf, interface, &self.options)?;
        self.devices.insert(interface.index, &interface.name);
        tracing::info!(interface = %interface.name, via = ?attachment.via, "attached");
        self.attachments.insert(interface.name.clone(), attachment);
        self.changes
            .push(InterfaceChange::Attached(interface.name.clone()));
        Ok(())
    }

    /// Attaches to every interface `selector` selects now; returns their names
    /// (also those already attached). A named interface that does not exist is an
    /// error. To also follow interfaces that appear later, use
    /// [`Capture::follow_interfaces`].
    pub fn attach_selected(
        &mut self,
        selector: &InterfaceSelector,
    ) -> Result<Vec<String>, CaptureError> {
        let selected = selector.select(&list_interfaces()?)?;
        let mut names = Vec::with_capacity(selected.len());
        for interface in selected {
            if !self.attachments.contains_key(&interface.name) {
                self.attach_interface(&interface)?;
            }
            names.push(interface.name);
        }
        Ok(names)
    }

    /// Detaches from `interface`. Returns `Ok(false)` if it was not attached.
    pub fn detach(&mut self, interface: &str) -> Result<bool, CaptureError> {
        let Some(attachment) = self.attachments.remove(interface) else {
            return Ok(false);
        };
        self.changes
            .push(InterfaceChange::Detached(interface.to_owned()));
        attach::detach(&mut self.ebpf, attachment)?;
        tracing::info!(interface, "detached");
        Ok(true)
    }

    /// Detaches from every interface; the first error is returned after trying all.
    pub fn detach_all(&mut self) -> Result<(), CaptureError> {
        let mut first_error = None;
        let names: Vec<String> = self.attachments.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.detach(&name) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Names of the interfaces currently attached, sorted.
    pub fn attached(&self) -> Vec<String> {
        self.attachments.keys().cloned().collect()
    }

    /// How `interface` is attached, if it is.
    pub fn attached_via(&self, interface: &str) -> Option<AttachedVia> {
        self.attachments.get(interface).map(|a| a.via)
    }

    /// Attach and detach events since the last call, oldest first: from
    /// [`Capture::attach`], [`Capture::detach`], [`Capture::follow_interfaces`] and
    /// interfaces that appeared or vanished. At most 4096 are kept.
    pub fn take_interface_changes(&mut self) -> Vec<InterfaceChange> {
        self.changes.take()
    }

    /// Appends the segments already in the RingBuf to `out` without waiting;
    /// returns how many were appended. Needs no runtime.
    pub fn drain_segments(&mut self, out: &mut Vec<Segment>) -> usize {
        let Capture {
            events,
            devices,
            undecodable,
            ..
        } = self;
        let Some(ring) = events.ring() else {
            return 0;
        };
        let mut decoder = events::Decoder {
            devices,
            undecodable,
        };
        events::drain(ring, &mut decoder, out)
    }

    /// Waits for kernel events and appends their segments to `out`; returns how
    /// many. When following interfaces it also handles interfaces that appear or
    /// vanish, and returns `Ok(0)` when that changed what is attached (see
    /// [`Capture::take_interface_changes`]). Must run inside a tokio runtime.
    /// Cancel-safe: dropping the future (in `select!`) loses no event.
    pub async fn next_segments(&mut self, out: &mut Vec<Segment>) -> Result<usize, CaptureError> {
        loop {
            let changes_before = self.changes.generation();
            let links = {
                let Capture {
                    events,
                    devices,
                    undecodable,
                    following,
                    ..
                } = self;
                let fd = events.registered()?;
                let mut decoder = events::Decoder {
                    devices,
                    undecodable,
                };
                match following {
                    Some(following) => tokio::select! {
                        read = events::read(fd, &mut decoder, out) => return read,
                        links = following.monitor.next_events() => links?,
                    },
                    None => return events::read(fd, &mut decoder, out).await,
                }
            };
            for event in links {
                self.apply_link_event(event);
            }
            if self.changes.generation() != changes_before {
                return Ok(0);
            }
        }
    }

    /// Tells the kernel that userspace has decided `connection`, the one whose
    /// first client payload byte had sequence number `client_seq`: it stops
    /// copying the connection's bytes and gives its fast-path hint back.
    /// `Ok(false)` when the kernel no longer tracks that connection (ended with
    /// FIN/RST, evicted, or its 4-tuple already carries a new connection, which
    /// is left alone).
    pub fn release_flow(
        &mut self,
        connection: &ConnectionKey,
        client_seq: u32,
    ) -> Result<bool, CaptureError> {
        self.flow_control
            .release(&mut self.ebpf, &self.devices, connection, client_seq)
    }

    /// Tells the kernel where userspace needs the bytes of one direction of
    /// `connection` (the one whose first client payload byte had sequence number
    /// `client_seq`): the direction sent by `sender`, from sequence number
    /// `resume.seq` on, in `resume.mode` (see [`tlsmon_common::CONTROL_RESUME`]).
    pub fn resume_flow(
        &mut self,
        connection: &ConnectionKey,
        client_seq: u32,
        sender: std::net::SocketAddr,
        resume: ResumePoint,
    ) -> Result<ResumeOutcome, CaptureError> {
        self.flow_control.resume(
            &mut self.ebpf,
            &self.devices,
            connection,
            client_seq,
            sender,
            resume,
        )
    }

    /// Flows the kernel currently tracks (a walk of its flow map).
    pub fn tracked_flows(&self) -> usize {
        self.flow_control.tracked()
    }

    /// Corrects fast-path hint counts that the kernel's flow-map LRU left too high
    /// (evicted flows never give theirs back), so that no traffic pattern can
    /// switch the fast path off for good. Cost: a read of every hint slot and a
    /// walk of the flow map; the daemon runs it every [`HINT_HEALING_INTERVAL`].
    pub fn heal_hints(&mut self) -> Result<HintHealing, CaptureError> {
        self.flow_control.heal_hints(&mut self.ebpf)
    }

    /// The kernel counters summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, CaptureError> {
        let mut sums = [0u64; Counter::ALL.len()];
        for (slot, counter) in sums.iter_mut().zip(Counter::ALL) {
            let per_cpu = self
                .counters
                .get(&(counter as u32), 0)
                .map_err(|e| loader::map_error(COUNTERS_MAP, &e))?;
            *slot = per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v));
        }
        Ok(KernelCounters {
            packets_seen: sums[Counter::PacketsSeen as usize],
            flows_started: sums[Counter::FlowsStarted as usize],
            events_sent: sums[Counter::EventsSent as usize],
            events_dropped: sums[Counter::EventsDropped as usize],
            bytes_cut: sums[Counter::BytesCut as usize],
            openings_seen: sums[Counter::OpeningsSeen as usize],
            client_hellos_unverified: sums[Counter::ClientHellosUnverified as usize],
            other_host_ignored: sums[Counter::OtherHostIgnored as usize],
            flows_replaced: sums[Counter::FlowsReplaced as usize],
            flows_released: sums[Counter::FlowsReleased as usize],
            preamble_candidates: sums[Counter::PreambleCandidates as usize],
            bytes_skipped: sums[Counter::BytesSkipped as usize],
            record_following_stopped: sums[Counter::RecordFollowingStopped as usize],
        })
    }

    /// Ids and run statistics of both programs (run counts and times advance only
    /// while `sysctl kernel.bpf_stats_enabled=1`).
    pub fn program_stats(&self) -> Result<Vec<ProgramStats>, CaptureError> {
        [INGRESS_PROGRAM, EGRESS_PROGRAM]
            .into_iter()
            .map(|name| {
                let program: &aya::programs::SchedClassifier = self
                    .ebpf
                    .program(name)
                    .ok_or_else(|| CaptureError::Load(format!("program {name} missing")))?
                    .try_into()
                    .map_err(|e: aya::programs::ProgramError| {
                        CaptureError::Load(error_chain(&e))
                    })?;
                let info = program
                    .info()
                    .map_err(|e| CaptureError::Load(format!("{name}: {}", error_chain(&e))))?;
                Ok(ProgramStats {
                    name,
                    id: info.id(),
                    run_count: info.run_count(),
                    run_time: info.run_time(),
                    verified_instructions: info.verified_instruction_count(),
                })
            })
            .collect()
    }

    /// RingBuf records that could not be decoded (expected to stay zero).
    pub fn undecodable_events(&self) -> u64 {
        self.undecodable
    }

    /// The classifiers, to run on synthetic frames (tests and benchmarks; see
    /// [`ClassifierTestRun`]). Events they produce arrive like any other.
    pub fn test_run(&mut self) -> ClassifierTestRun<'_> {
        ClassifierTestRun::new(&mut self.ebpf)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Err(e) = self.detach_all() {
            tracing::warn!("detaching on shutdown: {e}");
        }
    }
}
