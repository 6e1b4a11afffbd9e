//! Tells the kernel program that userspace is done with a flow.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap, MapData, MapError};
use tlsmon_common::{FlowKey, FlowState, FAMILY_IPV4, FAMILY_IPV6, FLOWS_MAP};

use super::{devices::DeviceTable, CaptureError};
use crate::segment::ConnectionKey;

/// BPF_EXIST: update only an entry that is still there (never resurrect a flow the
/// kernel deleted on FIN/RST).
const BPF_EXIST: u64 = 2;

/// A cloneable, `Send` handle that marks flows done in the kernel's flow map, so
/// the classifier stops copying their bytes (bulk data then costs no events).
#[derive(Clone)]
pub struct FlowControl {
    flows: Arc<Mutex<HashMap<MapData, FlowKey, FlowState>>>,
    devices: DeviceTable,
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

impl FlowControl {
    pub(crate) fn new(flows: HashMap<MapData, FlowKey, FlowState>, devices: DeviceTable) -> Self {
        FlowControl {
            flows: Arc::new(Mutex::new(flows)),
            devices,
        }
    }

    /// Marks `connection` done: the kernel copies none of its bytes any more.
    /// Returns `Ok(false)` when the kernel is not tracking it (never was, or it
    /// already ended with FIN/RST or was evicted).
    pub fn mark_done(&self, connection: &ConnectionKey) -> Result<bool, CaptureError> {
        let Some(ifindex) = self.devices.index(connection.device.name()) else {
            return Ok(false);
        };
        let Some(key) = flow_key(connection, ifindex) else {
            return Ok(false);
        };
        let map_error = |e: MapError| CaptureError::Map {
            map: FLOWS_MAP,
            reason: super::error_chain(&e),
        };
        // The map is only used under this lock; a poisoned lock still guards a
        // valid map handle.
        let mut flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = match flows.get(&key, 0) {
            Ok(state) => state,
            Err(MapError::KeyNotFound) => return Ok(false),
            Err(e) => return Err(map_error(e)),
        };
        if state.done != 0 {
            return Ok(true);
        }
        state.done = 1;
        match flows.insert(key, state, BPF_EXIST) {
            Ok(()) => Ok(true),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(map_error(e)),
        }
    }

    /// Flows the kernel currently tracks (done or not): a bounded walk of the map.
    pub fn tracked_flows(&self) -> usize {
        let flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        flows.keys().filter(Result::is_ok).count()
    }
}
