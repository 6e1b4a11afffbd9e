//! Which network interfaces exist, and which of them the user asked for.

use globset::{Glob, GlobMatcher};
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags, LinkMessage},
    RouteNetlinkMessage,
};

use super::{rtnl::Rtnl, CaptureError};

/// A network interface of this network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Kernel interface index.
    pub index: u32,
    /// Name, as `ip link` shows it.
    pub name: String,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// The loopback device.
    pub loopback: bool,
}

impl Interface {
    /// The interface a netlink link message describes; `None` without a name.
    pub(crate) fn from_link_message(message: &LinkMessage) -> Option<Interface> {
        let name = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })?;
        Some(Interface {
            index: message.header.index,
            name,
            up: message.header.flags.contains(LinkFlags::Up),
            loopback: message.header.flags.contains(LinkFlags::Loopback),
        })
    }
}

/// Every interface of the calling thread's network namespace, by index.
pub fn list_interfaces() -> Result<Vec<Interface>, CaptureError> {
    let mut rtnl = Rtnl::open()?;
    let replies = rtnl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    let mut interfaces: Vec<Interface> = replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Interface::from_link_message(link),
            _ => None,
        })
        .collect();
    interfaces.sort_by_key(|i| i.index);
    Ok(interfaces)
}

/// The interfaces to capture on: `--interface` patterns (shell-style globs such as
/// `eth*` or `veth[0-9]`), or by default every interface that is up except loopback.
#[derive(Clone, Debug, Default)]
pub struct InterfaceSelector {
    patterns: Vec<(String, GlobMatcher)>,
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

impl InterfaceSelector {
    /// Selects interfaces matching any of `patterns`; an empty list means the default
    /// (every interface that is up, except loopback).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, CaptureError> {
        let patterns = patterns
            .iter()
            .map(|p| {
                let p = p.as_ref();
                Glob::new(p)
                    .map(|g| (p.to_owned(), g.compile_matcher()))
                    .map_err(|e| CaptureError::InvalidPattern {
                        pattern: p.to_owned(),
                        reason: e.kind().to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(InterfaceSelector { patterns })
    }

    /// True when no pattern was given (the default selection applies).
    pub fn is_default(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `interface` is selected. Named interfaces are selected whatever their
    /// state; the default selection takes only interfaces that are up.
    pub fn matches(&self, interface: &Interface) -> bool {
        if self.patterns.is_empty() {
            return interface.up && !interface.loopback;
        }
        self.patterns
            .iter()
            .any(|(_, glob)| glob.is_match(&interface.name))
    }

    /// The selected interfaces among `interfaces`. A plain name (no glob characters)
    /// that matches nothing is an error: the user named an interface that does not
    /// exist. A glob that matches nothing is not (interfaces may appear later).
    pub fn select(&self, interfaces: &[Interface]) -> Result<Vec<Interface>, CaptureError> {
        for (pattern, glob) in &self.patterns {
            if !is_glob(pattern) && !interfaces.iter().any(|i| glob.is_match(&i.name)) {
                return Err(CaptureError::InterfaceNotFound(pattern.clone()));
            }
        }
        Ok(interfaces
            .iter()
            .filter(|i| self.matches(i))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests;
