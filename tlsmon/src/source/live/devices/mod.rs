//! Interface index <-> name, for events (which carry an ifindex) and for flow
//! control (which is asked by device name).

use std::{
    collections::HashMap,
    ffi::CStr,
    sync::{Arc, RwLock},
};

use crate::source::segment::Device;

#[derive(Debug, Default)]
struct Table {
    by_index: HashMap<u32, Device>,
    by_name: HashMap<String, u32>,
}

/// Shared, cheap-to-clone table of the interfaces events came from.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeviceTable {
    inner: Arc<RwLock<Table>>,
}

/// Name of interface `index` in the calling thread's namespace, if it exists.
fn index_to_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer has IF_NAMESIZE bytes, as if_indextoname requires.
    let ret = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if ret.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

impl DeviceTable {
    /// Records that interface `index` is called `name`.
    pub(crate) fn insert(&self, index: u32, name: &str) {
        // A poisoned lock only means another thread panicked mid-insert; the
        // table is still a valid map, so keep using it.
        let mut t = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = t.by_index.insert(index, Device::new(name)) {
            if old.name() != name {
                t.by_name.remove(old.name());
            }
        }
        t.by_name.insert(name.to_owned(), index);
    }

    /// The device of interface `index`: known name, else asked of the kernel, else
    /// `ifN` for an interface that is already gone.
    pub(crate) fn device(&self, index: u32) -> Device {
        if let Some(d) = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_index
            .get(&index)
        {
            return d.clone();
        }
        let name = index_to_name(index).unwrap_or_else(|| format!("if{index}"));
        self.insert(index, &name);
        Device::new(&name)
    }

    /// The index of the device named `name`, if events or attachments named it.
    pub(crate) fn index(&self, name: &str) -> Option<u32> {
        let known = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)
            .copied();
        known
    }
}

#[cfg(test)]
mod tests;
