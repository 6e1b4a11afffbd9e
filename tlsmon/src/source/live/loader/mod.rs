//! Loading the embedded kernel object: maps, configuration, both programs, and
//! the translation of load failures into errors an operator can act on.

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::ProgramError,
    Ebpf, EbpfError, EbpfLoader,
};
use tlsmon_common::preamble::{starttls_port_bit, STARTTLS_PORTS_MAP, STARTTLS_PORT_WORDS};
use tlsmon_common::{
    FlowKey, FlowState, KernelConfig, Opening, CONFIG_MAP, CONTROL_PROGRAM, COUNTERS_MAP,
    EGRESS_PROGRAM, EVENTS_MAP, FLOWS_MAP, HINTS_MAP, INGRESS_PROGRAM, OPENINGS_MAP,
};

use super::{attach, error, error_chain, kernel_log, privileges, CaptureError};

/// The kernel object built by build.rs, embedded so the binary is self-contained.
static KERNEL_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tlsmon.bpf.o"));

/// What a successful load hands to the capture.
pub(crate) struct Loaded {
    pub(crate) ebpf: Ebpf,
    pub(crate) ring: RingBuf<MapData>,
    pub(crate) counters: PerCpuArray<MapData, u64>,
    pub(crate) flows: HashMap<MapData, FlowKey, FlowState>,
    pub(crate) hints: Array<MapData, u64>,
    pub(crate) openings: HashMap<MapData, FlowKey, Opening>,
    pub(crate) kernel_log: Option<kernel_log::KernelLog>,
}

pub(crate) fn map_error(map: &'static str, e: &dyn std::error::Error) -> CaptureError {
    CaptureError::Map {
        map,
        reason: error_chain(e),
    }
}

/// Checks privileges, lifts memlock, creates the maps, writes the configuration
/// and verifies the programs (both classifiers and the control program). With
/// `diagnostics`, the programs report rare events through aya-log; without, the
/// verifier removes those reports (aya-log's level is a frozen `.rodata` global).
pub(crate) fn load(
    byte_budget: u32,
    diagnostics: bool,
    starttls_ports: &[u16],
) -> Result<Loaded, CaptureError> {
    privileges::check()?;
    let memlock_unlimited = privileges::raise_memlock();
    let level = kernel_log::level(diagnostics);
    let mut ebpf = EbpfLoader::new()
        .override_global(kernel_log::LEVEL_GLOBAL, &level, true)
        .load(KERNEL_OBJECT)
        .map_err(|e| load_error(e, memlock_unlimited))?;

    let mut config: Array<_, KernelConfig> = ebpf
        .map_mut(CONFIG_MAP)
        .ok_or_else(|| CaptureError::Load(format!("map {CONFIG_MAP} missing")))?
        .try_into()
        .map_err(|e: MapError| map_error(CONFIG_MAP, &e))?;
    let config_value = KernelConfig {
        byte_budget,
        _pad: 0,
    };
    config
        .set(0, config_value, 0)
        .map_err(|e| map_error(CONFIG_MAP, &e))?;

    set_starttls_ports(&mut ebpf, starttls_ports)?;

    for name in [INGRESS_PROGRAM, EGRESS_PROGRAM, CONTROL_PROGRAM] {
        attach::program_mut(&mut ebpf, name)?
            .load()
            .map_err(|e| program_load_error(name, e))?;
    }

    let mut take = |name: &'static str| {
        ebpf.take_map(name)
            .ok_or_else(|| CaptureError::Load(format!("map {name} missing")))
    };
    let ring = RingBuf::try_from(take(EVENTS_MAP)?).map_err(|e| map_error(EVENTS_MAP, &e))?;
    let counters =
        PerCpuArray::try_from(take(COUNTERS_MAP)?).map_err(|e| map_error(COUNTERS_MAP, &e))?;
    let flows = HashMap::try_from(take(FLOWS_MAP)?).map_err(|e| map_error(FLOWS_MAP, &e))?;
    let hints = Array::try_from(take(HINTS_MAP)?).map_err(|e| map_error(HINTS_MAP, &e))?;
    let openings =
        HashMap::try_from(take(OPENINGS_MAP)?).map_err(|e| map_error(OPENINGS_MAP, &e))?;
    let kernel_log = if diagnostics {
        Some(kernel_log::KernelLog::new(&mut ebpf).map_err(|e| map_error("AYA_LOGS", &e))?)
    } else {
        None
    };
    Ok(Loaded {
        kernel_log,
        ebpf,
        ring,
        counters,
        flows,
        hints,
        openings,
    })
}

/// Marks the STARTTLS server ports in the kernel's bitmap.
fn set_starttls_ports(ebpf: &mut Ebpf, ports: &[u16]) -> Result<(), CaptureError> {
    let mut words = [0u32; STARTTLS_PORT_WORDS as usize];
    for &port in ports {
        let (word, bit) = starttls_port_bit(port);
        words[word as usize] |= bit;
    }
    let mut map: Array<_, u32> = ebpf
        .map_mut(STARTTLS_PORTS_MAP)
        .ok_or_else(|| CaptureError::Load(format!("map {STARTTLS_PORTS_MAP} missing")))?
        .try_into()
        .map_err(|e: MapError| map_error(STARTTLS_PORTS_MAP, &e))?;
    for (index, word) in words.iter().enumerate().filter(|(_, w)| **w != 0) {
        map.set(index as u32, *word, 0)
            .map_err(|e| map_error(STARTTLS_PORTS_MAP, &e))?;
    }
    Ok(())
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

/// A program the kernel refused: EPERM is about privileges, anything else comes
/// with the verifier's log.
pub(crate) fn program_load_error(program: &str, e: ProgramError) -> CaptureError {
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

#[cfg(test)]
mod tests;
