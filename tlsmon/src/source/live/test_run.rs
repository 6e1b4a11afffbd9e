//! The classifiers run on synthetic Ethernet frames with BPF_PROG_TEST_RUN, as
//! they would on a real packet of the loopback device: for the tests of the
//! kernel program and the per-code-path benchmark, kept apart from what the
//! daemon uses.

use std::time::Duration;

use aya::{
    programs::{TestRun, TestRunOptions},
    Ebpf,
};
use tlsmon_common::{EGRESS_PROGRAM, INGRESS_PROGRAM};

use super::{attach, error_chain, CaptureError};
use crate::source::segment::PacketDirection;

/// The loaded (not necessarily attached) classifiers of a
/// [`Capture`](super::Capture), borrowed to run frames through them.
pub struct ClassifierTestRun<'a> {
    ebpf: &'a mut Ebpf,
}

impl<'a> ClassifierTestRun<'a> {
    pub(super) fn new(ebpf: &'a mut Ebpf) -> Self {
        ClassifierTestRun { ebpf }
    }

    /// Runs the classifier of hook `direction` once on `frame`; its verdict.
    pub fn run_on_frame(
        &mut self,
        frame: &[u8],
        direction: PacketDirection,
    ) -> Result<i32, CaptureError> {
        self.run(frame, direction, 1).map(|(verdict, _)| verdict)
    }

    /// Runs the classifier `repeat` times on `frame` and returns the kernel's
    /// average time per run: the cost of one code path, without the per-run
    /// overhead of `bpf_stats`.
    pub fn time_on_frame(
        &mut self,
        frame: &[u8],
        direction: PacketDirection,
        repeat: u32,
    ) -> Result<Duration, CaptureError> {
        self.run(frame, direction, repeat.max(1))
            .map(|(_, per_run)| per_run)
    }

    fn run(
        &mut self,
        frame: &[u8],
        direction: PacketDirection,
        repeat: u32,
    ) -> Result<(i32, Duration), CaptureError> {
        let name = match direction {
            PacketDirection::Egress => EGRESS_PROGRAM,
            PacketDirection::Ingress | PacketDirection::Unknown => INGRESS_PROGRAM,
        };
        let program = attach::program_mut(self.ebpf, name)?;
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|e| CaptureError::Load(format!("test run of {name}: {}", error_chain(&e))))?;
        Ok((result.return_value as i32, result.duration))
    }
}
