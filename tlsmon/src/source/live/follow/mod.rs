//! Following interfaces: attach to selected ones as they appear or come up, drop
//! them cleanly when they vanish, and report every change to the caller (the
//! daemon turns them into `tlsmon_interface_attached{device}`).

use std::collections::VecDeque;

use super::{
    attach,
    hotplug::{LinkEvent, LinkMonitor},
    interfaces::{list_interfaces, Interface, InterfaceSelector},
    Capture, CaptureError,
};

/// A change in the set of attached interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceChange {
    /// The classifier is now attached to this interface.
    Attached(String),
    /// The classifier is no longer attached (detached, or the interface vanished).
    Detached(String),
    /// A selected interface appeared or came up, but attaching failed.
    AttachFailed {
        /// Interface name.
        interface: String,
        /// Why, on one line.
        error: String,
    },
}

/// Most changes kept between two `take_interface_changes` calls; older ones go.
const MAX_PENDING_CHANGES: usize = 4096;

/// Pending changes, bounded, with a count of every change ever pushed so callers
/// can tell whether something happened during a call.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pending: VecDeque<InterfaceChange>,
    generation: u64,
}

impl Changes {
    pub(crate) fn push(&mut self, change: InterfaceChange) {
        if self.pending.len() == MAX_PENDING_CHANGES {
            self.pending.pop_front();
        }
        self.pending.push_back(change);
        self.generation += 1;
    }

    pub(crate) fn take(&mut self) -> Vec<InterfaceChange> {
        self.pending.drain(..).collect()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// What [`Capture::follow_interfaces`] set up.
pub(crate) struct Following {
    pub(crate) selector: InterfaceSelector,
    pub(crate) monitor: LinkMonitor,
}

impl Capture {
    /// Attaches to the interfaces `selector` selects now, then keeps following:
    /// interfaces that appear or come up and match are attached, vanished ones are
    /// dropped (while [`Capture::next_segments`] runs). Returns the names attached
    /// now. A named interface that does not exist is an error.
    pub fn follow_interfaces(
        &mut self,
        selector: InterfaceSelector,
    ) -> Result<Vec<String>, CaptureError> {
        // Subscribe before listing: a change in between is then seen twice at
        // worst, never missed.
        let monitor = LinkMonitor::open()?;
        let names = self.attach_selected(&selector)?;
        self.following = Some(Following { selector, monitor });
        Ok(names)
    }

    /// Brings the attachments in line with one link notification.
    pub(crate) fn apply_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Present(interface) => self.interface_present(interface),
            LinkEvent::Gone(index) => self.interface_gone(index),
            LinkEvent::Resync => match list_interfaces() {
                Ok(interfaces) => {
                    let gone: Vec<u32> = self
                        .attachments
                        .values()
                        .map(|a| a.interface.index)
                        .filter(|index| !interfaces.iter().any(|i| i.index == *index))
                        .collect();
                    for index in gone {
                        self.interface_gone(index);
                    }
                    for interface in interfaces {
                        self.interface_present(interface);
                    }
                }
                Err(e) => tracing::warn!("relisting interfaces after lost notifications: {e}"),
            },
        }
    }

    fn interface_present(&mut self, interface: Interface) {
        self.devices.insert(interface.index, &interface.name);
        // Renamed: same index, attached under its old name.
        let renamed_from = self
            .attachments
            .iter()
            .find(|(name, a)| a.interface.index == interface.index && **name != interface.name)
            .map(|(name, _)| name.clone());
        if let Some(old) = renamed_from {
            if let Some(mut attachment) = self.attachments.remove(&old) {
                attachment.interface = interface.clone();
                self.attachments.insert(interface.name.clone(), attachment);
                self.changes.push(InterfaceChange::Detached(old));
                self.changes
                    .push(InterfaceChange::Attached(interface.name.clone()));
            }
        }
        // Same name, new index: the old interface went and a new one came.
        let stale = self
            .attachments
            .get(&interface.name)
            .is_some_and(|a| a.interface.index != interface.index);
        if stale {
            let _ = self.detach(&interface.name);
        }
        let Some(following) = &self.following else {
            return;
        };
        let wanted = following.selector.matches(&interface);
        let attached = self.attachments.contains_key(&interface.name);
        if wanted && !attached {
            if let Err(e) = self.attach_interface(&interface) {
                tracing::warn!(interface = %interface.name, "cannot attach: {e}");
                self.changes.push(InterfaceChange::AttachFailed {
                    interface: interface.name,
                    error: e.to_string(),
                });
            }
        } else if !wanted && attached && !following.selector.is_default() {
            // Renamed out of an explicit selection. (The default selection keeps an
            // interface that merely went down: it is still there.)
            if let Err(e) = self.detach(&interface.name) {
                tracing::warn!(interface = %interface.name, "detaching: {e}");
            }
        }
    }

    fn interface_gone(&mut self, index: u32) {
        let gone: Vec<String> = self
            .attachments
            .iter()
            .filter(|(_, a)| a.interface.index == index)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(attachment) = self.attachments.remove(&name) {
                self.changes.push(InterfaceChange::Detached(name.clone()));
                // The kernel removed the hooks with the interface; this releases
                // our side (link fds) and tolerates "no such device".
                if let Err(e) = attach::detach(&mut self.ebpf, attachment) {
                    tracing::debug!(interface = %name, "after the interface vanished: {e}");
                }
                tracing::info!(interface = %name, "interface vanished; detached");
            }
        }
    }
}

#[cfg(test)]
mod tests;
