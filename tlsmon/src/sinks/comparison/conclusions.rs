//! The sentences `compare` opens with: which differences between the devices
//! matter (failure rates, and the diagnoses behind them) and their likely cause,
//! from the diagnoses' own sentences. Bounded: per device and code, at most
//! [`MAX_SUMMARIES`] distinct sentences are counted to pick the most common one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::event::{DiagnosisCode, HandshakeEvent, Outcome};

use super::SHARE_DIFFERENCE;

/// Distinct diagnosis sentences counted per device and code.
pub const MAX_SUMMARIES: usize = 8;

/// One diagnosis code on one device.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CodeTally {
    /// Failures with this code.
    pub count: u64,
    /// The most common sentence among them (empty when none was recorded).
    pub example: String,
    #[serde(skip)]
    summaries: BTreeMap<String, u64>,
}

/// One device's failures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeviceTally {
    /// Handshakes seen.
    pub handshakes: u64,
    /// Of which failed.
    pub failed: u64,
    /// Failures by diagnosis code.
    pub diagnoses: BTreeMap<DiagnosisCode, CodeTally>,
}

impl DeviceTally {
    /// Counts one handshake.
    pub fn add(&mut self, record: &HandshakeEvent) {
        self.handshakes += 1;
        if record.outcome != Outcome::Failed {
            return;
        }
        self.failed += 1;
        let (code, summary) = match &record.diagnosis {
            Some(d) => (d.code, Some(d.summary.as_str())),
            // Event files written before diagnoses existed.
            None => (DiagnosisCode::Unknown, None),
        };
        let tally = self.diagnoses.entry(code).or_default();
        tally.count += 1;
        if let Some(summary) = summary {
            if let Some(n) = tally.summaries.get_mut(summary) {
                *n += 1;
            } else if tally.summaries.len() < MAX_SUMMARIES {
                tally.summaries.insert(summary.to_string(), 1);
            }
            tally.example = tally
                .summaries
                .iter()
                .max_by_key(|(text, n)| (**n, std::cmp::Reverse(*text)))
                .map(|(text, _)| text.clone())
                .unwrap_or_default();
        }
    }

    fn share(&self, n: u64) -> f64 {
        n as f64 / self.handshakes.max(1) as f64
    }

    fn count(&self, count: u64) -> Count {
        Count {
            count,
            handshakes: self.handshakes,
        }
    }

    fn code_count(&self, code: DiagnosisCode) -> u64 {
        self.diagnoses.get(&code).map_or(0, |t| t.count)
    }
}

/// A count out of a device's handshakes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Count {
    /// How many.
    pub count: u64,
    /// Out of this many handshakes.
    pub handshakes: u64,
}

/// One difference that matters.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    /// The device where it is (more) present.
    pub device: String,
    /// `failed` for the failure rate, else the diagnosis code.
    pub what: String,
    /// Count on `device`.
    pub count: u64,
    /// Handshakes on `device`.
    pub handshakes: u64,
    /// The same count on each other device.
    pub elsewhere: BTreeMap<String, Count>,
    /// The likely cause, in the diagnosis's words (empty for the failure rate).
    pub cause: String,
}

/// What `compare` concludes.
#[derive(Clone, Debug, Serialize)]
pub struct Conclusions {
    /// No difference matters.
    pub same: bool,
    /// The opening sentences.
    pub sentences: Vec<String>,
    /// The differences behind them.
    pub differences: Vec<Difference>,
}

/// Whether two shares are far enough apart, or one is zero and the other not.
fn apart(a: f64, b: f64) -> bool {
    (a > 0.0) != (b > 0.0) || (a - b).abs() > SHARE_DIFFERENCE
}

/// Concludes over the devices' tallies (at least one).
pub fn conclude(devices: &BTreeMap<String, DeviceTally>) -> Conclusions {
    let mut differences = Vec::new();
    // The failure rate: reported for the device(s) failing most when rates differ.
    for (device, tally) in devices {
        let others: Vec<(&String, &DeviceTally)> =
            devices.iter().filter(|(d, _)| *d != device).collect();
        let worse = others.iter().any(|(_, o)| {
            apart(tally.share(tally.failed), o.share(o.failed))
                && tally.share(tally.failed) > o.share(o.failed)
        });
        if worse {
            differences.push(Difference {
                device: device.clone(),
                what: "failed".to_string(),
                count: tally.failed,
                handshakes: tally.handshakes,
                elsewhere: others
                    .iter()
                    .map(|(d, o)| ((*d).clone(), o.count(o.failed)))
                    .collect(),
                cause: String::new(),
            });
        }
    }
    // Each diagnosis where it is more frequent than elsewhere.
    for code in DiagnosisCode::ALL {
        for (device, tally) in devices {
            let n = tally.code_count(code);
            if n == 0 {
                continue;
            }
            let others: Vec<(&String, &DeviceTally)> =
                devices.iter().filter(|(d, _)| *d != device).collect();
            let more = others.iter().any(|(_, o)| {
                let (mine, theirs) = (tally.share(n), o.share(o.code_count(code)));
                apart(mine, theirs) && mine > theirs
            });
            if more {
                differences.push(Difference {
                    device: device.clone(),
                    what: code.as_str().to_string(),
                    count: n,
                    handshakes: tally.handshakes,
                    elsewhere: others
                        .iter()
                        .map(|(d, o)| ((*d).clone(), o.count(o.code_count(code))))
                        .collect(),
                    cause: tally.diagnoses[&code].example.clone(),
                });
            }
        }
    }
    // The failure rates first, then the diagnoses, the most frequent first.
    differences.sort_by_key(|d| (d.what != "failed", std::cmp::Reverse(d.count)));
    let same = differences.is_empty() || devices.len() < 2;
    let sentences = if devices.len() < 2 {
        single_device(devices)
    } else if same {
        vec![no_difference(devices)]
    } else {
        sentences_of(&differences)
    };
    Conclusions {
        same,
        sentences,
        differences,
    }
}

fn single_device(devices: &BTreeMap<String, DeviceTally>) -> Vec<String> {
    let mut out = Vec::new();
    for (device, tally) in devices {
        out.push(format!(
            "Only one device, {device}: {} of {} handshakes failed; nothing to compare it with.",
            tally.failed, tally.handshakes
        ));
        for (code, t) in &tally.diagnoses {
            out.push(cause_sentence(
                device,
                code.as_str(),
                t.count,
                "",
                &t.example,
            ));
        }
    }
    out
}

fn no_difference(devices: &BTreeMap<String, DeviceTally>) -> String {
    let parts: Vec<String> = devices
        .iter()
        .map(|(device, t)| format!("{device}: {} of {} failed", t.failed, t.handshakes))
        .collect();
    let names: Vec<&str> = devices.keys().map(String::as_str).collect();
    let failures = devices.values().any(|t| t.failed > 0);
    format!(
        "No difference that matters between {}: {}{}.",
        names.join(" and "),
        parts.join("; "),
        if failures {
            ", with the same diagnoses in the same shares"
        } else {
            ""
        }
    )
}

fn cause_sentence(device: &str, what: &str, count: u64, elsewhere: &str, cause: &str) -> String {
    let mut s = format!("{device}: {count} × {what}");
    if !elsewhere.is_empty() {
        s.push_str(&format!(" ({elsewhere})"));
    }
    if cause.is_empty() {
        s.push('.');
    } else {
        s.push_str(": ");
        s.push_str(cause);
    }
    s
}

fn elsewhere(difference: &Difference) -> String {
    difference
        .elsewhere
        .iter()
        .map(|(d, c)| format!("{d}: {} of {}", c.count, c.handshakes))
        .collect::<Vec<_>>()
        .join("; ")
}

fn sentences_of(differences: &[Difference]) -> Vec<String> {
    differences
        .iter()
        .map(|d| {
            if d.what == "failed" {
                format!(
                    "{}: {} of {} handshakes failed ({}).",
                    d.device,
                    d.count,
                    d.handshakes,
                    elsewhere(d)
                )
            } else {
                cause_sentence(&d.device, &d.what, d.count, &elsewhere(d), &d.cause)
            }
        })
        .collect()
}
