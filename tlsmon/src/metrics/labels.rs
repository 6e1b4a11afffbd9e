//! Bounded label values: every label that could take open-ended values goes
//! through a [`LabelCap`], which admits the first K distinct values it sees and
//! folds every later newcomer into [`OTHER`].
//!
//! First-seen rather than "most frequent": a counter series must never vanish
//! once exported (rates would break), so admitted values are kept for the life
//! of the process and the cap only decides about values not yet seen.

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
};

/// Label value that stands for every value beyond a cap.
pub const OTHER: &str = "other";

/// Longest label value kept; longer values are cut at a character boundary.
/// SNI is at most 255 bytes by RFC 6066, fingerprints are far shorter: this only
/// bites on garbage.
pub const MAX_LABEL_VALUE_BYTES: usize = 255;

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

    /// Decides which label value `value` is exported as. The empty string (the
    /// "never chosen" value) and [`OTHER`] itself are always kept and do not use
    /// a slot.
    pub fn admit(&self, value: &str) -> Admission {
        let value = truncate_at_char_boundary(value, MAX_LABEL_VALUE_BYTES);
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
mod tests {
    use super::*;

    #[test]
    fn admits_first_k_then_folds() {
        let cap = LabelCap::new(2);
        assert_eq!(cap.admit("a"), Admission::Kept("a".into()));
        assert_eq!(cap.admit("b"), Admission::Kept("b".into()));
        assert_eq!(cap.admit("c"), Admission::Folded);
        assert_eq!(cap.admit("c").value(), OTHER);
        // Already admitted values stay admitted.
        assert_eq!(cap.admit("a"), Admission::Kept("a".into()));
        // Empty and "other" never take a slot.
        assert_eq!(cap.admit(""), Admission::Kept(String::new()));
        assert_eq!(cap.admit(OTHER), Admission::Kept(OTHER.into()));
    }

    #[test]
    fn zero_limit_folds_everything_but_empty() {
        let cap = LabelCap::new(0);
        assert_eq!(cap.admit("x"), Admission::Folded);
        assert_eq!(cap.admit(""), Admission::Kept(String::new()));
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let cap = LabelCap::new(1);
        let Admission::Kept(v) = cap.admit(&long) else {
            panic!("first value must be kept")
        };
        assert_eq!(v.len(), 254);
        assert!(long.starts_with(&v));
    }
}
