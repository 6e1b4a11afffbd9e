//! Why a handshake failed: every failed record gets a [`Diagnosis`] (a bounded
//! code, one plain sentence, and the evidence it rests on), from the record, what
//! the tracker saw ([`HandshakeClues`]) and what the server's successful handshakes
//! showed it accepts ([`profiles::ServerProfiles`]).
//!
//! Live (`run`, `watch`), a failure is diagnosed at once against what was known at
//! the time, and its evidence says so. Over a capture file (`analyze`, `compare`)
//! failures wait until the whole file was read, so a server's later successes count
//! too; at most [`MAX_DEFERRED`] wait at once, holding at most
//! [`MAX_DEFERRED_BYTES`] (ClientHellos may offer thousands of suites), past that
//! the oldest is diagnosed early (counted, and its evidence says so).

pub mod profiles;
mod rules;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use crate::event::{Diagnosis, HandshakeEvent, Outcome};
use crate::pipeline::flow_table::Decided;

pub use rules::{diagnose, LARGE_CLIENT_HELLO};

/// Failed records a capture-file analysis holds back at most, waiting for the end.
pub const MAX_DEFERRED: usize = 10_000;

/// Bytes (estimated: see [`held_bytes`]) the waiting records may hold in all.
pub const MAX_DEFERRED_BYTES: usize = 16 << 20;

/// What the tracker saw of a handshake beyond its record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeClues {
    /// The server sent any byte after the ClientHello.
    pub server_replied: bool,
    /// The server asked for a client certificate (TLS 1.2 and older show it).
    pub certificate_requested: bool,
}

/// What a diagnosis could draw on, for the evidence's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knowledge {
    /// Live: what was seen before this handshake.
    Earlier,
    /// A capture file, read to its end.
    WholeCapture,
    /// A capture file, diagnosed before its end (too many failures waiting).
    PartOfCapture,
}

/// Counters of the diagnosis stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiagnosisStats {
    /// Server profiles pushed out to stay within [`profiles::MAX_SERVERS`].
    pub profiles_evicted: u64,
    /// Capture-file failures diagnosed before the end of their file because more
    /// than [`MAX_DEFERRED`] were waiting.
    pub diagnosed_early: u64,
}

/// The diagnosis stage of a pipeline: learns server profiles, diagnoses failures.
#[derive(Debug)]
pub struct Diagnoser {
    profiles: profiles::ServerProfiles,
    /// `Some` over capture files: failures waiting for the end of the input.
    deferred: Option<VecDeque<Decided>>,
    /// Estimated bytes held by `deferred`.
    deferred_bytes: usize,
    diagnosed_early: u64,
}

impl Diagnoser {
    /// Live: each failure diagnosed at once, against what was known then.
    pub fn live() -> Self {
        Diagnoser {
            profiles: profiles::ServerProfiles::default(),
            deferred: None,
            deferred_bytes: 0,
            diagnosed_early: 0,
        }
    }

    /// Over a whole capture: failures are diagnosed when the input ends.
    pub fn whole_capture() -> Self {
        Diagnoser {
            deferred: Some(VecDeque::new()),
            ..Self::live()
        }
    }

    /// The stage's counters.
    pub fn stats(&self) -> DiagnosisStats {
        DiagnosisStats {
            profiles_evicted: self.profiles.evicted(),
            diagnosed_early: self.diagnosed_early,
        }
    }

    /// Takes one decided handshake; hands it on to `sink` now, or later from
    /// [`finish`](Self::finish) when it is a failure over a capture file.
    pub fn take(&mut self, mut decided: Decided, sink: &mut dyn FnMut(Decided)) {
        let established = decided.event.outcome == Outcome::Established;
        self.profiles.learn(
            &decided.event,
            established,
            decided.clues.certificate_requested,
        );
        if decided.event.outcome != Outcome::Failed {
            sink(decided);
            return;
        }
        let Some(deferred) = &mut self.deferred else {
            decided.event.diagnosis = self.diagnosis(&decided, Knowledge::Earlier);
            sink(decided);
            return;
        };
        self.deferred_bytes += held_bytes(&decided.event);
        deferred.push_back(decided);
        while deferred.len() > MAX_DEFERRED || self.deferred_bytes > MAX_DEFERRED_BYTES {
            let Some(mut oldest) = deferred.pop_front() else {
                break;
            };
            self.deferred_bytes = self
                .deferred_bytes
                .saturating_sub(held_bytes(&oldest.event));
            self.diagnosed_early += 1;
            let view = self.profiles.view(&oldest.event);
            oldest.event.diagnosis =
                diagnose(&oldest.event, oldest.clues, &view, Knowledge::PartOfCapture);
            sink(oldest);
        }
    }

    /// The input ended: diagnoses and hands on every failure still waiting.
    pub fn finish(&mut self, sink: &mut dyn FnMut(Decided)) {
        let Some(deferred) = self.deferred.take() else {
            return;
        };
        for mut decided in deferred {
            decided.event.diagnosis = self.diagnosis(&decided, Knowledge::WholeCapture);
            sink(decided);
        }
        self.deferred = Some(VecDeque::new());
        self.deferred_bytes = 0;
    }

    fn diagnosis(&self, decided: &Decided, knowledge: Knowledge) -> Option<Diagnosis> {
        let view = self.profiles.view(&decided.event);
        diagnose(&decided.event, decided.clues, &view, knowledge)
    }
}

/// Roughly what a held record costs: its strings, and a fixed part for the rest.
pub fn held_bytes(event: &HandshakeEvent) -> usize {
    const FIXED: usize = 512;
    let lists = [
        &event.offered_versions,
        &event.offered_ciphers,
        &event.offered_groups,
        &event.offered_alpn,
    ];
    let strings: usize = lists
        .iter()
        .flat_map(|list| list.iter())
        .map(|s| s.len() + std::mem::size_of::<String>())
        .sum();
    let optional = [
        &event.sni,
        &event.detail,
        &event.ja3,
        &event.ja4,
        &event.alert,
    ]
    .iter()
    .filter_map(|s| s.as_ref())
    .map(String::len)
    .sum::<usize>();
    FIXED + event.device.len() + strings + optional
}
