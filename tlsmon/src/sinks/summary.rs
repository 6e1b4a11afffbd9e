//! The per-device text summary of `analyze --format text`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use crate::event::{FailureReason, HandshakeEvent, Outcome};

/// Counts of one device.
#[derive(Default)]
struct DeviceSummary {
    outcomes: BTreeMap<&'static str, u64>,
    failures: BTreeMap<String, u64>,
    versions: BTreeMap<String, u64>,
    ciphers: BTreeMap<String, u64>,
    groups: BTreeMap<String, u64>,
    offered_versions: BTreeMap<String, u64>,
    offered_groups: BTreeMap<String, u64>,
}

/// A readable report, built one record at a time (memory follows the distinct
/// values seen, not the number of handshakes): for each device, handshakes by
/// outcome, failures by reason (with alert and who sent it, or who reset/closed),
/// negotiated versions, cipher suites and groups, and what the ClientHellos offered.
#[derive(Default)]
pub struct TextSummary {
    devices: BTreeMap<String, DeviceSummary>,
}

impl TextSummary {
    /// Counts one handshake.
    pub fn add(&mut self, r: &HandshakeEvent) {
        let d = self.devices.entry(r.device.clone()).or_default();
        *d.outcomes.entry(r.outcome.as_str()).or_default() += 1;
        if r.outcome == Outcome::Failed {
            *d.failures.entry(failure_key(r)).or_default() += 1;
        }
        *d.versions.entry(or_none(&r.version)).or_default() += 1;
        *d.ciphers.entry(or_none(&r.cipher)).or_default() += 1;
        *d.groups.entry(or_none(&r.group)).or_default() += 1;
        // Once per ClientHello per value, as in the metrics.
        for v in r.offered_versions.iter().collect::<BTreeSet<_>>() {
            *d.offered_versions.entry(v.clone()).or_default() += 1;
        }
        for g in r.offered_groups.iter().collect::<BTreeSet<_>>() {
            *d.offered_groups.entry(g.clone()).or_default() += 1;
        }
    }

    /// The report as text.
    pub fn render(&self) -> String {
        render(&self.devices)
    }
}

fn render(devices: &BTreeMap<String, DeviceSummary>) -> String {
    if devices.is_empty() {
        return String::from("no TLS handshakes found\n");
    }
    let mut out = String::new();
    for (name, d) in devices {
        let total: u64 = d.outcomes.values().sum();
        let count = |o: Outcome| d.outcomes.get(o.as_str()).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "device {}: {total} handshakes, {} established, {} failed, {} incomplete",
            super::lines::printable(name),
            count(Outcome::Established),
            count(Outcome::Failed),
            count(Outcome::Incomplete),
        );
        section(&mut out, "failures", &d.failures);
        section(&mut out, "negotiated versions", &d.versions);
        section(&mut out, "negotiated cipher suites", &d.ciphers);
        section(&mut out, "negotiated groups", &d.groups);
        section(
            &mut out,
            "ClientHellos offering version",
            &d.offered_versions,
        );
        section(&mut out, "ClientHellos offering group", &d.offered_groups);
    }
    out
}

/// "alert handshake_failure from server", "reset by client", "timeout", ...
fn failure_key(r: &HandshakeEvent) -> String {
    match r.failure_reason {
        Some(FailureReason::Alert) => {
            let mut k = format!("alert {}", r.alert.as_deref().unwrap_or("(unnamed)"));
            if let Some(sender) = r.alert_sender {
                let _ = write!(k, " from {}", sender.as_str());
            }
            k
        }
        Some(reason @ (FailureReason::Reset | FailureReason::Closed)) => match r.closed_by {
            Some(side) => format!("{} by {}", reason.as_str(), side.as_str()),
            None => reason.as_str().to_owned(),
        },
        Some(reason) => reason.as_str().to_owned(),
        None => String::from("unknown"),
    }
}

fn or_none(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| String::from("(none)"))
}

/// Appends a titled list, largest count first, names breaking ties.
fn section(out: &mut String, title: &str, counts: &BTreeMap<String, u64>) {
    if counts.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    let mut rows: Vec<(&String, &u64)> = counts.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    // Names come off the wire: escape control characters as the live view does,
    // and align on what is printed.
    let rows: Vec<(String, u64)> = rows
        .into_iter()
        .map(|(name, n)| (super::lines::printable(name), *n))
        .collect();
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (name, n) in rows {
        let _ = writeln!(out, "    {name:<width$}  {n}");
    }
}
