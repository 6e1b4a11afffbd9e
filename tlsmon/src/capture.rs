//! Live capture: loads the kernel classifier, attaches it to interfaces, and turns
//! its RingBuf events into [`Segment`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tlsmon::capture::CaptureError> {
//! use tlsmon::capture::{Capture, CaptureOptions};
//! let mut capture = Capture::load(CaptureOptions::default())?;
//! capture.attach("eth0")?;
//! let flows = capture.flow_control(); // give this to whoever decides a flow is done
//! let mut segments = Vec::new();
//! loop {
//!     segments.clear();
//!     capture.next_segments(&mut segments).await?;
//!     // ... reassemble, parse, call flows.mark_done(&key) once a handshake is decided
//! #   break;
//! }
//! capture.detach_all()?; // on SIGINT/SIGTERM; dropping `capture` also detaches
//! # Ok(()) }
//! ```
//!
//! Submodules: `attach` (TCX/clsact), `decode` (records to segments), `interfaces`
//! (listing and `--interface` globs), `flow_control`, `privileges`, `clock`,
//! `devices` (ifindex to name), `rtnl` (netlink requests).

mod attach;
mod clock;
mod decode;
mod devices;
mod error;
mod flow_control;
mod interfaces;
mod privileges;
mod rtnl;

use std::collections::BTreeMap;

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{ProgramError, TestRun, TestRunOptions},
    Ebpf, EbpfError, EbpfLoader,
};
use tlsmon_common::{
    Config, Counter, CONFIG_MAP, COUNTERS_MAP, DEFAULT_BYTE_BUDGET, EGRESS_PROGRAM, EVENTS_MAP,
    FLOWS_MAP, INGRESS_PROGRAM,
};
use tokio::io::{unix::AsyncFd, Interest};

pub use attach::{AttachMode, AttachedVia};
pub use decode::DecodeError;
pub use error::CaptureError;
pub use flow_control::FlowControl;
pub use interfaces::{list_interfaces, Interface, InterfaceSelector};

use crate::segment::{PacketDirection, Segment};

/// The kernel object built by build.rs, embedded so the binary is self-contained.
static KERNEL_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tlsmon.bpf.o"));

/// Records drained per wake-up at most, so one busy RingBuf cannot starve the
/// caller's other work; the rest is read on the next call.
const MAX_RECORDS_PER_READ: usize = 4096;

/// Load-time settings of the capture.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Payload bytes copied per flow and direction before the kernel stops
    /// (default 16 KiB: a ClientHello, ServerHello and certificate chain).
    pub byte_budget: u32,
    /// TCX, clsact, or whichever the kernel supports (default).
    pub attach_mode: AttachMode,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            byte_budget: DEFAULT_BYTE_BUDGET,
            attach_mode: AttachMode::Auto,
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

/// The RingBuf, registered with tokio on first use (registration needs a
/// runtime, loading does not).
enum EventSource {
    Plain(RingBuf<MapData>),
    Registered(AsyncFd<RingBuf<MapData>>),
    /// Only while switching from one state to the other.
    Switching,
}

impl EventSource {
    fn ring(&mut self) -> Option<&mut RingBuf<MapData>> {
        match self {
            EventSource::Plain(ring) => Some(ring),
            EventSource::Registered(fd) => Some(fd.get_mut()),
            EventSource::Switching => None,
        }
    }
}

/// A loaded classifier and the interfaces it is attached to. Dropping it detaches
/// everything (call [`Capture::detach_all`] to see errors).
pub struct Capture {
    ebpf: Ebpf,
    events: EventSource,
    counters: PerCpuArray<MapData, u64>,
    flow_control: FlowControl,
    devices: devices::DeviceTable,
    options: CaptureOptions,
    attachments: BTreeMap<String, attach::Attachment>,
    undecodable: u64,
}

fn map_error(map: &'static str, e: &dyn std::error::Error) -> CaptureError {
    CaptureError::Map {
        map,
        reason: error_chain(e),
    }
}

/// Explains a failed object load in the user's terms.
fn load_error(e: EbpfError, memlock_unlimited: bool) -> CaptureError {
    let is_eperm = |io: &std::io::Error| io.raw_os_error() == Some(libc::EPERM);
    match e {
        EbpfError::MapError(MapError::CreateError { name, io_error }) => {
            if is_eperm(&io_error) {
                CaptureError::PermissionDenied {
                    action: format!("creating eBPF map {name}"),
                    missing: if memlock_unlimited {
                        "unknown (the kernel said EPERM)".into()
                    } else {
                        "CAP_SYS_RESOURCE to lift RLIMIT_MEMLOCK (kernels before 5.11 need it)"
                            .into()
                    },
                }
            } else if name == EVENTS_MAP {
                CaptureError::KernelUnsupported(format!(
                    "cannot create the BPF RingBuf {name} (needs Linux 5.8 or newer): {io_error}"
                ))
            } else {
                CaptureError::Load(format!("creating map {name}: {io_error}"))
            }
        }
        EbpfError::BtfError(e) => CaptureError::KernelUnsupported(format!(
            "BTF problem (the kernel needs CONFIG_DEBUG_INFO_BTF and /sys/kernel/btf/vmlinux): {}",
            error_chain(&e)
        )),
        other => CaptureError::Load(error_chain(&other)),
    }
}

fn program_load_error(program: &str, e: ProgramError) -> CaptureError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            if io_error.raw_os_error() == Some(libc::EPERM) {
                CaptureError::PermissionDenied {
                    action: format!("loading eBPF program {program}"),
                    missing: "unknown (the kernel said EPERM)".into(),
                }
            } else {
                CaptureError::VerifierRejected {
                    program: program.to_owned(),
                    reason: io_error.to_string(),
                    log: error::one_line(&verifier_log.to_string(), 4000),
                }
            }
        }
        other => CaptureError::Load(format!("program {program}: {}", error_chain(&other))),
    }
}

impl Capture {
    /// Loads the embedded kernel object: checks privileges, lifts the memlock
    /// limit, creates the maps, writes the configuration and verifies both
    /// programs. Nothing is attached yet.
    pub fn load(options: CaptureOptions) -> Result<Capture, CaptureError> {
        privileges::check()?;
        let memlock_unlimited = privileges::raise_memlock();
        let mut ebpf = EbpfLoader::new()
            .load(KERNEL_OBJECT)
            .map_err(|e| load_error(e, memlock_unlimited))?;

        let mut config: Array<_, Config> = ebpf
            .map_mut(CONFIG_MAP)
            .ok_or_else(|| CaptureError::Load(format!("map {CONFIG_MAP} missing")))?
            .try_into()
            .map_err(|e: MapError| map_error(CONFIG_MAP, &e))?;
        let budget = Config {
            byte_budget: options.byte_budget,
            _pad: 0,
        };
        config
            .set(0, budget, 0)
            .map_err(|e| map_error(CONFIG_MAP, &e))?;

        for name in [INGRESS_PROGRAM, EGRESS_PROGRAM] {
            attach::program_mut(&mut ebpf, name)?
                .load()
                .map_err(|e| program_load_error(name, e))?;
        }

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| CaptureError::Load(format!("map {name} missing")))
        };
        let ring = RingBuf::try_from(take(&mut ebpf, EVENTS_MAP)?)
            .map_err(|e| map_error(EVENTS_MAP, &e))?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, COUNTERS_MAP)?)
            .map_err(|e| map_error(COUNTERS_MAP, &e))?;
        let flows =
            HashMap::try_from(take(&mut ebpf, FLOWS_MAP)?).map_err(|e| map_error(FLOWS_MAP, &e))?;
        let devices = devices::DeviceTable::default();
        Ok(Capture {
            ebpf,
            events: EventSource::Plain(ring),
            counters,
            flow_control: FlowControl::new(flows, devices.clone()),
            devices,
            options,
            attachments: BTreeMap::new(),
            undecodable: 0,
        })
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
        let attachment = attach::attach(&mut self.ebpf, interface, self.options.attach_mode)?;
        self.devices.insert(interface.index, &interface.name);
        tracing::info!(
            interface = %interface.name,
            via = ?attachment.via,
            "attached"
        );
        self.attachments.insert(interface.name.clone(), attachment);
        Ok(())
    }

    /// Attaches to every interface `selector` selects; returns their names.
    /// A named interface that does not exist is an error; nothing is attached then.
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

    /// Appends the segments already in the RingBuf to `out` without waiting;
    /// returns how many were appended.
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
        drain(ring, devices, undecodable, out)
    }

    /// Waits until the kernel has sent events, then appends their segments to
    /// `out` and returns how many. Must run inside a tokio runtime. Cancel-safe:
    /// dropping the future loses no event.
    pub async fn next_segments(&mut self, out: &mut Vec<Segment>) -> Result<usize, CaptureError> {
        if let EventSource::Plain(_) = self.events {
            // Registering without a runtime would panic: say so instead.
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(CaptureError::io(
                    "next_segments",
                    std::io::Error::other("must be called inside a tokio runtime"),
                ));
            }
            let EventSource::Plain(ring) =
                std::mem::replace(&mut self.events, EventSource::Switching)
            else {
                return Err(CaptureError::Load(
                    "event source in an invalid state".into(),
                ));
            };
            // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
            // for as long as it lives, which is as long as the AsyncFd.
            match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
                Ok(fd) => self.events = EventSource::Registered(fd),
                Err(e) => {
                    let (ring, error) = e.into_parts();
                    self.events = EventSource::Plain(ring);
                    return Err(CaptureError::io(
                        "registering the RingBuf with tokio",
                        error,
                    ));
                }
            }
        }
        let Capture {
            events,
            devices,
            undecodable,
            ..
        } = self;
        let EventSource::Registered(fd) = events else {
            return Err(CaptureError::Load(
                "event source in an invalid state".into(),
            ));
        };
        loop {
            let mut guard = fd
                .readable_mut()
                .await
                .map_err(|e| CaptureError::io("waiting for RingBuf events", e))?;
            let appended = drain(guard.get_inner_mut(), devices, undecodable, out);
            // Only a RingBuf read to empty may lose its readiness; a capped read
            // leaves it set so the next call does not wait.
            if appended < MAX_RECORDS_PER_READ {
                guard.clear_ready();
            }
            if appended > 0 {
                return Ok(appended);
            }
        }
    }

    /// A handle to mark flows done; clone it freely, send it to other tasks.
    pub fn flow_control(&self) -> FlowControl {
        self.flow_control.clone()
    }

    /// The kernel counters summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, CaptureError> {
        let mut sums = [0u64; Counter::ALL.len()];
        for (slot, counter) in sums.iter_mut().zip(Counter::ALL) {
            let per_cpu = self
                .counters
                .get(&(counter as u32), 0)
                .map_err(|e| map_error(COUNTERS_MAP, &e))?;
            *slot = per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v));
        }
        Ok(KernelCounters {
            packets_seen: sums[Counter::PacketsSeen as usize],
            flows_started: sums[Counter::FlowsStarted as usize],
            events_sent: sums[Counter::EventsSent as usize],
            events_dropped: sums[Counter::EventsDropped as usize],
            bytes_cut: sums[Counter::BytesCut as usize],
        })
    }

    /// RingBuf records that could not be decoded (expected to stay zero).
    pub fn undecodable_events(&self) -> u64 {
        self.undecodable
    }

    /// Runs the classifier once on an Ethernet `frame` with BPF_PROG_TEST_RUN, as
    /// the program of the given hook (`Ingress` or `Egress`) would on a real
    /// packet of the loopback device, and returns its verdict. For tests and
    /// self-checks: events it produces arrive like any other.
    pub fn run_on_frame(
        &mut self,
        frame: &[u8],
        direction: PacketDirection,
    ) -> Result<i32, CaptureError> {
        let name = match direction {
            PacketDirection::Egress => EGRESS_PROGRAM,
            PacketDirection::Ingress | PacketDirection::Unknown => INGRESS_PROGRAM,
        };
        let program = attach::program_mut(&mut self.ebpf, name)?;
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::default()
            })
            .map_err(|e| CaptureError::Load(format!("test run of {name}: {}", error_chain(&e))))?;
        Ok(result.return_value as i32)
    }
}

/// Reads up to MAX_RECORDS_PER_READ records from `ring` into `out`.
fn drain(
    ring: &mut RingBuf<MapData>,
    devices: &devices::DeviceTable,
    undecodable: &mut u64,
    out: &mut Vec<Segment>,
) -> usize {
    let clock = clock::WallClock::now();
    let mut appended = 0;
    while appended < MAX_RECORDS_PER_READ {
        let Some(record) = ring.next() else {
            break;
        };
        let device = match decode::header(&record) {
            Ok(h) => devices.device(h.ifindex),
            Err(_) => crate::segment::Device::new("unknown"),
        };
        match decode::segment(&record, clock, device) {
            Ok(segment) => {
                out.push(segment);
                appended += 1;
            }
            Err(e) => {
                *undecodable += 1;
                tracing::warn!("undecodable kernel event: {e}");
            }
        }
    }
    appended
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Err(e) = self.detach_all() {
            tracing::warn!("detaching on shutdown: {e}");
        }
    }
}
