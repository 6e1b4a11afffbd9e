//! tlsmon's kernel program: a tc classifier that copies the handshake bytes of TLS
//! connections to a RingBuf and lets every packet through untouched.
//!
//! Two entry points (ingress, egress) share one body; parsing lives in `packet`,
//! ClientHello recognition in `tls`, connections being set up in `opening`, flow
//! tracking in `flow` (with the fast-path `hint` table), what a tracked flow's
//! payload turns into in `records` (TLS record walk), event output in `emit`,
//! reports of rare events through aya-log in `diag` (off unless the daemon asks).
//! A third program, never attached, lets userspace release flows and heal hint
//! counts atomically (`control`).
#![no_std]

mod control;
mod diag;
mod emit;
mod flow;
mod hint;
mod maps;
mod opening;
mod packet;
mod preamble;
mod records;
mod tls;

use aya_ebpf::{macros::classifier, programs::TcContext};
use tlsmon_common::{DIRECTION_EGRESS, DIRECTION_INGRESS};

/// TC_ACT_UNSPEC, which TCX calls TCX_NEXT: the next program in the chain runs.
/// (TC_ACT_OK would end the chain and hide packets from programs after tlsmon.)
const TC_ACT_UNSPEC: i32 = -1;

#[classifier]
pub fn tlsmon_ingress(ctx: TcContext) -> i32 {
    flow::classify(&ctx, DIRECTION_INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn tlsmon_egress(ctx: TcContext) -> i32 {
    flow::classify(&ctx, DIRECTION_EGRESS);
    TC_ACT_UNSPEC
}

/// Never attached: run by userspace through BPF_PROG_TEST_RUN with a
/// `ControlCommand` (release a decided flow, heal a hint count).
#[classifier]
pub fn tlsmon_control(ctx: TcContext) -> i32 {
    control::run(&ctx)
}

/// Only in the BPF build (tlsmon/build.rs sets `--cfg tlsmon_bpf`): a plain
/// `cargo build --workspace` unifies tlsmon-common's `user` feature, which pulls
/// in std and its own panic handler.
#[cfg(tlsmon_bpf)]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
