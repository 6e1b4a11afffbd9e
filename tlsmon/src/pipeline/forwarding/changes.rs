//! What a forwarder changed in a ClientHello, in plain words.

use std::collections::HashSet;

use crate::pipeline::tls::{names, ClientHello};

/// Most changes listed for one handshake; the rest are summed up in a last entry.
pub const MAX_CHANGES: usize = 32;

/// The parts of a ClientHello a forwarder may change that the event names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Offered {
    versions: Vec<u16>,
    ciphers: Vec<u16>,
    groups: Vec<u16>,
    extensions: Vec<u16>,
    sni: Option<String>,
}

impl Offered {
    /// What `hello` offered; the versions as the event reports them (supported_versions,
    /// or the legacy version without that extension). GREASE is already removed.
    pub(super) fn of(hello: &ClientHello) -> Offered {
        let versions = if hello.supported_versions.is_empty() {
            vec![hello.legacy_version]
        } else {
            hello.supported_versions.clone()
        };
        Offered {
            versions,
            ciphers: hello.cipher_suites.clone(),
            groups: hello.supported_groups.clone(),
            extensions: hello.extensions.clone(),
            sni: hello.sni.clone(),
        }
    }

    /// Bytes this costs to keep, for the linker's memory bound.
    pub(super) fn cost(&self) -> usize {
        let entries =
            self.versions.len() + self.ciphers.len() + self.groups.len() + self.extensions.len();
        std::mem::size_of::<Offered>() + 2 * entries + self.sni.as_ref().map_or(0, String::len)
    }
}

/// What differs from `arrived` to `left`: each offered version, cipher suite, group
/// and extension removed or added (by registry name), the lists reordered, and the
/// SNI removed, added or changed. Empty when the forwarder changed none of these.
pub(super) fn between(arrived: &Offered, left: &Offered) -> Vec<String> {
    let mut changes = Vec::new();
    let (a, l) = (arrived, left);
    let c = &mut changes;
    list_changes(
        "offered version",
        "offered versions",
        &a.versions,
        &l.versions,
        names::version_name,
        c,
    );
    list_changes(
        "cipher suite",
        "cipher suites",
        &a.ciphers,
        &l.ciphers,
        names::cipher_name,
        c,
    );
    list_changes(
        "group",
        "groups",
        &a.groups,
        &l.groups,
        names::group_name,
        c,
    );
    list_changes(
        "extension",
        "extensions",
        &a.extensions,
        &l.extensions,
        names::extension_name,
        c,
    );
    match (&arrived.sni, &left.sni) {
        (Some(a), None) => changes.push(format!("SNI {a} removed")),
        (None, Some(b)) => changes.push(format!("SNI {b} added")),
        (Some(a), Some(b)) if a != b => changes.push(format!("SNI changed from {a} to {b}")),
        _ => {}
    }
    if changes.len() > MAX_CHANGES {
        let more = changes.len() - (MAX_CHANGES - 1);
        changes.truncate(MAX_CHANGES - 1);
        changes.push(format!("and {more} more changes"));
    }
    changes
}

/// Removed and added values of one list (each named once, in list order), or that
/// it was reordered when it holds the same values.
fn list_changes(
    one: &str,
    many: &str,
    before: &[u16],
    after: &[u16],
    name: fn(u16) -> String,
    changes: &mut Vec<String>,
) {
    if before == after {
        return;
    }
    let before_set: HashSet<u16> = before.iter().copied().collect();
    let after_set: HashSet<u16> = after.iter().copied().collect();
    let mut named = HashSet::new();
    let mut changed = false;
    for &value in before {
        if !after_set.contains(&value) && named.insert(value) {
            changes.push(format!("{one} {} removed", name(value)));
            changed = true;
        }
    }
    for &value in after {
        if !before_set.contains(&value) && named.insert(value) {
            changes.push(format!("{one} {} added", name(value)));
            changed = true;
        }
    }
    if !changed {
        changes.push(format!("{many} reordered"));
    }
}
