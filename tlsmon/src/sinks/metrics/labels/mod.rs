//! Bounded label values.
//!
//! Labels whose values are names from an IANA registry (versions, cipher suites,
//! groups, alerts) take them through a [`RegistryLabel`]: every registered name is
//! its own value, with no cap, since the registry itself is finite; anything else
//! (an unassigned code point, GREASE where a real choice was due) is [`UNKNOWN`].
//! No traffic can therefore take a registered name's series away.
//!
//! Open-ended labels (device, SNI, fingerprints, client address) go through a
//! [`LabelCap`], which admits the first K distinct values it sees and folds every
//! later newcomer into [`OTHER`]. First-seen rather than "most frequent": a counter
//! series must never vanish once exported (rates would break), so admitted values
//! are kept for the life of the process and the cap only decides about values not
//! yet seen.
//!
//! Every value a cap admits is cut to [`MAX_LABEL_VALUE_BYTES`] and has its control
//! characters escaped ([`crate::sinks::escape`]) first.

use std::{
    borrow::Cow,
    collections::HashSet,
    sync::{Mutex, PoisonError},
};

use crate::{pipeline::tls::names, sinks::escape::escape_controls};

/// Label value that stands for every value beyond a cap.
pub const OTHER: &str = "other";

/// Label value that stands for every code point a registry does not name.
pub const UNKNOWN: &str = "unknown";

/// Longest label value kept, in bytes of the value as it came; longer values are
/// cut at a character boundary before escaping (which can make the exported value
/// up to four times as long). SNI is at most 255 bytes by RFC 6066, fingerprints
/// are far shorter: this only bites on garbage.
pub const MAX_LABEL_VALUE_BYTES: usize = 255;

/// A label whose values are names from one IANA registry, as
/// [`crate::pipeline::tls::names`] spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryLabel {
    /// Protocol versions ("TLSv1.3").
    Version,
    /// Cipher suites ("TLS_AES_128_GCM_SHA256").
    Cipher,
    /// Supported groups ("x25519").
    Group,
    /// Alert descriptions ("handshake_failure").
    Alert,
}

impl RegistryLabel {
    /// The label value of `name`: itself when the registry has it, the empty string
    /// (the "never chosen" value) as it is, anything else [`UNKNOWN`].
    pub fn value(self, name: &str) -> &str {
        let registered = match self {
            RegistryLabel::Version => names::is_version_name(name),
            RegistryLabel::Cipher => names::is_cipher_name(name),
            RegistryLabel::Group => names::is_group_name(name),
            RegistryLabel::Alert => names::is_alert_name(name),
        };
        if registered || name.is_empty() {
            name
        } else {
            UNKNOWN
        }
    }
}

/// `value` as a label may carry it: cut to [`MAX_LABEL_VALUE_BYTES`], then control
/// characters escaped.
pub fn sanitized(value: &str) -> Cow<'_, str> {
    escape_controls(truncate_at_char_boundary(value, MAX_LABEL_VALUE_BYTES))
}

/// Admits up to `limit` distinct values of one label; later newcomers become
/// [`OTHER`].
#[derive(Debug)]
pub struct LabelCap {
    limit: usize,
    admitted: Mutex<HashSet<String>>,
}

/// What [`LabelCap::admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The value is (now) one of the admitted values.
    Kept(String),
    /// The cap was full: use [`OTHER`].
    Folded,
}

impl Admission {
    /// The label value to export.
    pub fn value(&self) -> &str {
        match self {
            Admission::Kept(v) => v,
            Admission::Folded => OTHER,
        }
    }
}

impl LabelCap {
    /// A cap admitting at most `limit` distinct values.
    pub fn new(limit: usize) -> Self {
        LabelCap {
            limit,
            admitted: Mutex::new(HashSet::new()),
        }
    }

    /// The maximum number of distinct values.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Decides which label value `value` is exported as ([`sanitized`] first). The
    /// empty string (the "never chosen" value) and [`OTHER`] itself are always kept
    /// and do not use a slot.
    pub fn admit(&self, value: &str) -> Admission {
        let value = sanitized(value);
        let value = value.as_ref();
        if value.is_empty() || value == OTHER {
            return Admission::Kept(value.to_owned());
        }
        // A poisoned lock only means another thread panicked while inserting into
        // a HashSet; the set itself is still a valid set, so keep using it.
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        if admitted.contains(value) {
            return Admission::Kept(value.to_owned());
        }
        if admitted.len() < self.limit {
            admitted.insert(value.to_owned());
            return Admission::Kept(value.to_owned());
        }
        Admission::Folded
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
