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
    hint_slot, ControlCommand, FlowKey, FlowState, Opening, CONTROL_HEAL_HINT, CONTROL_PROGRAM,
    CONTROL_RELEASE_FLOW, FAMILY_IPV4, FAMILY_IPV6, FLOWS_MAP, HINTS_MAP, HINT_COUNT_MASK,
    HINT_SLOTS, OPENINGS_MAP,
};

use super::{attach, devices::DeviceTable, error_chain, loader::map_error, CaptureError};
use crate::source::segment::ConnectionKey;

/// The kernel's flow, hint and openings maps, as userspace sees them.
pub(crate) struct FlowControl {
    flows: HashMap<MapData, FlowKey, FlowState>,
    hints: Array<MapData, u64>,
    openings: HashMap<MapData, FlowKey, Opening>,
}

/// What one pass of [`FlowControl::heal_hints`] found and fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintHealing {
    /// Slots whose count was higher than the flows and openings living there.
    pub slots_too_high: u64,
    /// Of those, slots the kernel lowered (the others changed meanwhile).
    pub slots_healed: u64,
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
        openings: HashMap<MapData, FlowKey, Opening>,
    ) -> Self {
        FlowControl {
            flows,
            hints,
            openings,
        }
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
            _pad: 0,
            seen: 0,
        };
        Ok(run_control(ebpf, &command)? == 1)
    }

    /// Flows the kernel currently tracks: a bounded walk of the map.
    pub(crate) fn tracked(&self) -> usize {
        self.flows.keys().filter(Result::is_ok).count()
    }

    /// Lowers every hint count that is higher than the flows and openings living
    /// in its slot (the maps' LRU evicts without giving counts back). Reads the
    /// hint words first and counts flows and openings after, so a count can only
    /// be found too high by mistake, never too low; the kernel applies a
    /// correction only if the word is unchanged since it was read (every new
    /// flow or opening moves the word's epoch).
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
        for entry in self.openings.iter() {
            let (key, opening) = entry.map_err(|e| map_error(OPENINGS_MAP, &e))?;
            if opening.hint_held != 0 {
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
                _pad: 0,
                seen: word,
            };
            if run_control(ebpf, &command)? == 1 {
                healing.slots_healed += 1;
            }
        }
        Ok(healing)
    }
}
