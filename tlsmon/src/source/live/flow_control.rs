//! Tells the kernel program that userspace is done with a flow, and keeps the
//! fast-path hint table honest. Both go through the never-attached control
//! program (BPF_PROG_TEST_RUN), so that flow and hint state change with the
//! kernel's own atomics: a map update from userspace would overwrite a value that
//! a CPU may be changing, or clobber a new connection on a reused 4-tuple.

use std::net::{IpAddr, SocketAddr};

use aya::{
    maps::{Array, HashMap, MapData},
    programs::{TestRun, TestRunOptions},
    Ebpf,
};
use tlsmon_common::{
    hint_slot, ControlCommand, FlowKey, FlowState, CONTROL_HEAL_HINT, CONTROL_PROGRAM,
    CONTROL_RELEASE_FLOW, CONTROL_RESUME, FAMILY_IPV4, FAMILY_IPV6, FLOWS_MAP, HINTS_MAP,
    HINT_COUNT_MASK, HINT_SLOTS, RESUME_COPY_ALL, RESUME_RECORDS, RESUME_SKIP_TO,
};

use super::{attach, devices::DeviceTable, error_chain, loader::map_error, CaptureError};
use crate::source::segment::ConnectionKey;

/// The kernel's flow and hint maps, as userspace sees them.
pub(crate) struct FlowControl {
    flows: HashMap<MapData, FlowKey, FlowState>,
    hints: Array<MapData, u64>,
}

/// What one pass of [`FlowControl::heal_hints`] found and fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintHealing {
    /// Slots whose count was higher than the flows living there.
    pub slots_too_high: u64,
    /// Of those, slots the kernel lowered (the others changed meanwhile).
    pub slots_healed: u64,
}

/// What the kernel copies of a direction from a resume point on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeMode {
    /// Only skip the bytes before the point; copying from it stays as it was.
    SkipTo,
    /// Skip the bytes before the point, copy every byte from it.
    CopyAll,
    /// The point is the first byte of a TLS record header: skip the bytes
    /// before it, follow records from it (headers, small records, the body
    /// allowance).
    Records,
}

/// Where userspace needs a direction's bytes: a TCP sequence number and a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// Sequence number of the next byte needed.
    pub seq: u32,
    /// What to copy from there.
    pub mode: ResumeMode,
}

/// What the kernel did with a [`ResumePoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// Applied before any byte at or after the point passed the kernel.
    InTime,
    /// Applied to the bytes still to come; bytes from the point up to the
    /// kernel's position were copied (or skipped) as before.
    Late,
    /// Not applied: the kernel no longer tracks that connection, or records
    /// were asked for from a point the kernel has passed without following
    /// records (those bytes were copied whole: name a later record start).
    NotApplied,
}

fn endpoint(addr: &SocketAddr) -> (u8, [u8; 16]) {
    let mut bytes = [0u8; 16];
    match addr.ip() {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (FAMILY_IPV4, bytes)
        }
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets()),
    }
}

/// The kernel's key for `connection` on interface `ifindex`; `None` when the two
/// endpoints are of different address families (no such TCP connection exists).
pub(crate) fn flow_key(connection: &ConnectionKey, ifindex: u32) -> Option<FlowKey> {
    let (family_a, a) = endpoint(&connection.lo);
    let (family_b, b) = endpoint(&connection.hi);
    if family_a != family_b {
        return None;
    }
    let (key, _) = FlowKey::new(
        ifindex,
        family_a,
        &a,
        connection.lo.port(),
        &b,
        connection.hi.port(),
    );
    Some(key)
}

fn slot_of(key: &FlowKey) -> u32 {
    hint_slot(
        key.ifindex,
        &key.addr_lo,
        key.port_lo,
        &key.addr_hi,
        key.port_hi,
    )
}

/// Runs the control program on `command`; its return value.
fn run_control(ebpf: &mut Ebpf, command: &ControlCommand) -> Result<i32, CaptureError> {
    let frame = command.to_frame();
    let program = attach::program_mut(ebpf, CONTROL_PROGRAM)?;
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::default()
        })
        .map_err(|e| {
            CaptureError::Load(format!("running {CONTROL_PROGRAM}: {}", error_chain(&e)))
        })?;
    Ok(result.return_value as i32)
}

impl FlowControl {
    pub(crate) fn new(
        flows: HashMap<MapData, FlowKey, FlowState>,
        hints: Array<MapData, u64>,
    ) -> Self {
        FlowControl { flows, hints }
    }

    /// Releases `connection`, the one whose first client payload byte had
    /// sequence number `client_seq`: the kernel copies none of its bytes any
    /// more. `Ok(false)` when the kernel is not tracking that connection (never
    /// was, already ended with FIN/RST, was evicted, or a new connection took
    /// the 4-tuple).
    pub(crate) fn release(
        &self,
        ebpf: &mut Ebpf,
        devices: &DeviceTable,
        connection: &ConnectionKey,
        client_seq: u32,
    ) -> Result<bool, CaptureError> {
        let Some(ifindex) = devices.index(connection.device.name()) else {
            return Ok(false);
        };
        let Some(key) = flow_key(connection, ifindex) else {
            return Ok(false);
        };
        let command = ControlCommand {
            op: CONTROL_RELEASE_FLOW,
            slot: 0,
            key,
            client_seq,
            count: 0,
            resume_seq: 0,
            seen: 0,
            resume_mode: 0,
            sender_is_lo: 0,
        };
        Ok(run_control(ebpf, &command)? == 1)
    }

    /// Runs [`CONTROL_RESUME`] for the direction of `connection` sent by
    /// `sender` (see [`ResumePoint`]).
    pub(crate) fn resume(
        &self,
        ebpf: &mut Ebpf,
        devices: &DeviceTable,
        connection: &ConnectionKey,
        client_seq: u32,
        sender: SocketAddr,
        resume: ResumePoint,
    ) -> Result<ResumeOutcome, CaptureError> {
        let Some(ifindex) = devices.index(connection.device.name()) else {
            return Ok(ResumeOutcome::NotApplied);
        };
        let Some(key) = flow_key(connection, ifindex) else {
            return Ok(ResumeOutcome::NotApplied);
        };
        let receiver = if sender == connection.lo {
            connection.hi
        } else {
            connection.lo
        };
        let (family, from) = endpoint(&sender);
        let (_, to) = endpoint(&receiver);
        let (_, sender_is_lo) =
            FlowKey::new(ifindex, family, &from, sender.port(), &to, receiver.port());
        let command = ControlCommand {
            op: CONTROL_RESUME,
            slot: 0,
            key,
            client_seq,
            count: 0,
            resume_seq: resume.seq,
            seen: 0,
            resume_mode: match resume.mode {
                ResumeMode::SkipTo => RESUME_SKIP_TO,
                ResumeMode::CopyAll => RESUME_COPY_ALL,
                ResumeMode::Records => RESUME_RECORDS,
            },
            sender_is_lo: sender_is_lo as u32,
        };
        match run_control(ebpf, &command)? {
            1 => Ok(ResumeOutcome::InTime),
            2 => Ok(ResumeOutcome::Late),
            0 => Ok(ResumeOutcome::NotApplied),
            other => Err(CaptureError::Load(format!(
                "{CONTROL_PROGRAM} refused a resume command (returned {other})"
            ))),
        }
    }

    /// Flows the kernel currently tracks: a bounded walk of the map.
    pub(crate) fn tracked(&self) -> usize {
        self.flows.keys().filter(Result::is_ok).count()
    }

    /// Lowers every hint count that is higher than the flows living in its slot
    /// (the flow map's LRU evicts without giving counts back). Reads the hint
    /// words first and counts flows after, so a count can only be found too high
    /// by mistake, never too low; the kernel applies a correction only if the
    /// word is unchanged since it was read.
    pub(crate) fn heal_hints(&self, ebpf: &mut Ebpf) -> Result<HintHealing, CaptureError> {
        let mut seen = Vec::new();
        for slot in 0..HINT_SLOTS {
            let word = self
                .hints
                .get(&slot, 0)
                .map_err(|e| map_error(HINTS_MAP, &e))?;
            if word & HINT_COUNT_MASK != 0 {
                seen.push((slot, word));
            }
        }
        if seen.is_empty() {
            return Ok(HintHealing::default());
        }
        let mut living: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for entry in self.flows.iter() {
            let (key, state) = entry.map_err(|e| map_error(FLOWS_MAP, &e))?;
            if state.hint_held != 0 {
                *living.entry(slot_of(&key)).or_default() += 1;
            }
        }
        let mut healing = HintHealing::default();
        for (slot, word) in seen {
            let count = living.get(&slot).copied().unwrap_or(0);
            if u64::from(count) >= word & HINT_COUNT_MASK {
                continue;
            }
            healing.slots_too_high += 1;
            let command = ControlCommand {
                op: CONTROL_HEAL_HINT,
                slot,
                key: FlowKey::new(0, 0, &[0; 16], 0, &[0; 16], 0).0,
                client_seq: 0,
                count,
                resume_seq: 0,
                seen: word,
                resume_mode: 0,
                sender_is_lo: 0,
            };
            if run_control(ebpf, &command)? == 1 {
                healing.slots_healed += 1;
            }
        }
        Ok(healing)
    }
}
