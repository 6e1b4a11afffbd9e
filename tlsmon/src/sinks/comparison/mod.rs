//! `tlsmon compare`: handshakes per device side by side, differences highlighted.
//!
//! The question it answers: "clients through the proxy fail but direct ones work:
//! what differs between the two paths?" For each aspect (outcome, failure reason,
//! alert, version, cipher, group, offered versions, JA3, JA4) it shows each value's
//! share of handshakes per device, and marks rows where the devices disagree: a value
//! present on one device only, or shares more than [`SHARE_DIFFERENCE`] apart.
//!
//! Before the table it concludes ([`conclusions`]): a few sentences that name the
//! differences that matter (failure rates, diagnoses) and their likely cause, or
//! say that there is none. [`Comparison::render_json`] gives the same for scripts.
//! Columns are devices, or with [`GroupBy::Service`] the local services of an event
//! file ("nginx fails, the Java app does not": which TLS setting differs?);
//! handshakes without a local service form the column `(none)`.
//!
//! Devices and values come from captures and event files, that is from the wire:
//! the text report escapes their control characters ([`crate::sinks::escape`]).

pub mod conclusions;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::{event::HandshakeEvent, sinks::escape::escape_controls};
use conclusions::{conclude, Conclusions, DeviceTally};

/// Share difference (absolute, 0..1) above which a row is highlighted.
pub const SHARE_DIFFERENCE: f64 = 0.10;

/// Rows shown per aspect; the rest are summed into "(other)".
const MAX_ROWS_PER_ASPECT: usize = 12;

/// Reads the values of one aspect from a record.
type AspectReader = fn(&HandshakeEvent) -> Vec<String>;

/// The aspects compared, in display order, and how to read each from a record.
const ASPECTS: &[(&str, AspectReader)] = &[
    ("outcome", |r| vec![r.outcome.as_str().to_string()]),
    ("failure reason", |r| {
        r.failure_reason
            .iter()
            .map(|f| f.as_str().to_string())
            .collect()
    }),
    ("alert (sender)", |r| {
        r.alert
            .iter()
            .map(|a| match r.alert_sender {
                Some(s) => format!("{a} ({})", s.as_str()),
                None => a.clone(),
            })
            .collect()
    }),
    ("version", |r| r.version.iter().cloned().collect()),
    ("cipher", |r| r.cipher.iter().cloned().collect()),
    ("group", |r| r.group.iter().cloned().collect()),
    ("offered versions", |r| r.offered_versions.clone()),
    ("ja3", |r| r.ja3.iter().cloned().collect()),
    ("ja4", |r| r.ja4.iter().cloned().collect()),
];

/// Counts of one aspect: value -> column -> handshakes.
type AspectCounts = BTreeMap<String, BTreeMap<String, u64>>;

/// What the report's columns are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// One column per interface (or capture file).
    #[default]
    Device,
    /// One column per local service (`service` of the events).
    Service,
}

/// Column of the handshakes that have no local service.
pub const NO_SERVICE: &str = "(none)";

impl GroupBy {
    /// The column `record` belongs to.
    fn column(self, record: &HandshakeEvent) -> String {
        match self {
            GroupBy::Device => record.device.clone(),
            GroupBy::Service => record
                .service
                .clone()
                .unwrap_or_else(|| NO_SERVICE.to_string()),
        }
    }

    fn plural(self) -> &'static str {
        match self {
            GroupBy::Device => "devices",
            GroupBy::Service => "services",
        }
    }
}

/// Per-column tallies, built one record at a time.
#[derive(Debug, Default)]
pub struct Comparison {
    group_by: GroupBy,
    totals: BTreeMap<String, u64>,
    aspects: Vec<AspectCounts>,
    tallies: BTreeMap<String, DeviceTally>,
}

/// One row of the table, for `--format json`.
#[derive(Serialize)]
struct JsonRow<'a> {
    value: &'a str,
    counts: &'a BTreeMap<String, u64>,
    differs: bool,
}

/// One aspect of the table, for `--format json`.
#[derive(Serialize)]
struct JsonAspect<'a> {
    aspect: &'a str,
    rows: Vec<JsonRow<'a>>,
}

/// The whole report, for `--format json`.
#[derive(Serialize)]
struct JsonReport<'a> {
    conclusions: Conclusions,
    devices: &'a BTreeMap<String, DeviceTally>,
    aspects: Vec<JsonAspect<'a>>,
}

impl Comparison {
    /// An empty comparison of devices.
    pub fn new() -> Self {
        Self::grouped_by(GroupBy::Device)
    }

    /// An empty comparison whose columns are `group_by`.
    pub fn grouped_by(group_by: GroupBy) -> Self {
        Comparison {
            group_by,
            totals: BTreeMap::new(),
            aspects: vec![AspectCounts::new(); ASPECTS.len()],
            tallies: BTreeMap::new(),
        }
    }

    /// Counts one handshake.
    pub fn add(&mut self, record: &HandshakeEvent) {
        let column = self.group_by.column(record);
        self.tallies.entry(column.clone()).or_default().add(record);
        for ((_, read), counts) in ASPECTS.iter().zip(self.aspects.iter_mut()) {
            for value in read(record) {
                *counts
                    .entry(value)
                    .or_default()
                    .entry(column.clone())
                    .or_default() += 1;
            }
        }
        *self.totals.entry(column).or_default() += 1;
    }

    /// Columns seen (devices or services), in name order.
    pub fn devices(&self) -> Vec<&str> {
        self.totals.keys().map(String::as_str).collect()
    }

    /// Whether a value's shares differ across devices enough to highlight it.
    fn differs(&self, per_device: &BTreeMap<String, u64>) -> bool {
        let shares: Vec<f64> = self
            .totals
            .iter()
            .map(|(device, &total)| {
                let n = per_device.get(device).copied().unwrap_or(0);
                n as f64 / total.max(1) as f64
            })
            .collect();
        let present = shares.iter().filter(|&&s| s > 0.0).count();
        let (min, max) = shares
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        shares.len() > 1 && (present < shares.len() || max - min > SHARE_DIFFERENCE)
    }

    /// What the comparison concludes.
    pub fn conclusions(&self) -> Conclusions {
        conclude(&self.tallies)
    }

    /// The report as one JSON document: conclusions, per-device diagnoses, and
    /// every aspect's rows with their counts per device.
    pub fn render_json(&self) -> String {
        let aspects = ASPECTS
            .iter()
            .zip(&self.aspects)
            .map(|((name, _), counts)| JsonAspect {
                aspect: name,
                rows: counts
                    .iter()
                    .map(|(value, per_device)| JsonRow {
                        value,
                        counts: per_device,
                        differs: self.differs(per_device),
                    })
                    .collect(),
            })
            .collect();
        let report = JsonReport {
            conclusions: self.conclusions(),
            devices: &self.tallies,
            aspects,
        };
        // Strings, numbers, bools and maps with string keys: cannot fail.
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| {
            serde_json::json!({ "error": format!("cannot serialise the comparison: {e}") })
                .to_string()
        })
    }

    /// The report as text: the conclusions, then the table; `color` marks
    /// differing rows with ANSI colour, otherwise they carry a leading `*`.
    pub fn render_text(&self, color: bool) -> String {
        let devices = self.devices();
        let width = 34;
        let mut out = String::new();
        for sentence in self.conclusions().sentences {
            out.push_str(&escape_controls(&sentence));
            out.push('\n');
        }
        out.push('\n');
        let _ = write!(out, "{:<width$}", "");
        for device in &devices {
            let _ = write!(out, " {:>18}", escape_controls(device));
        }
        out.push('\n');
        let _ = write!(out, "{:<width$}", "handshakes");
        for device in &devices {
            let _ = write!(out, " {:>18}", self.totals[*device]);
        }
        out.push('\n');
        for ((name, _), counts) in ASPECTS.iter().zip(&self.aspects) {
            if counts.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{name}");
            let mut rows: Vec<(&String, &BTreeMap<String, u64>)> = counts.iter().collect();
            rows.sort_by_key(|(value, per)| {
                (
                    std::cmp::Reverse(per.values().sum::<u64>()),
                    (*value).clone(),
                )
            });
            let (shown, rest) = rows.split_at(rows.len().min(MAX_ROWS_PER_ASPECT));
            for (value, per_device) in shown {
                let differs = self.differs(per_device);
                let mark = if differs && !color { "* " } else { "  " };
                let shown = truncate(&escape_controls(value), width - 2);
                let mut line = format!("{mark}{shown:<w$}", w = width - 2);
                for device in &devices {
                    let n = per_device.get(*device).copied().unwrap_or(0);
                    let share = 100.0 * n as f64 / self.totals[*device].max(1) as f64;
                    let _ = write!(line, " {:>9} ({share:>5.1}%)", n);
                }
                if differs && color {
                    line = format!("\x1b[1;33m{line}\x1b[0m");
                }
                out.push_str(&line);
                out.push('\n');
            }
            if !rest.is_empty() {
                let _ = writeln!(out, "  ({} more values not shown)", rest.len());
            }
        }
        if !color {
            let _ = writeln!(
                out,
                "\n* = differs between {} (present on only some, or shares more than 10 points apart)",
                self.group_by.plural()
            );
        }
        out
    }
}

fn truncate(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        value.to_string()
    } else {
        let kept: String = value.chars().take(max.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests;
