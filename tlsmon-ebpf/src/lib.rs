//! tlsmon's kernel program (placeholder until the capture issue lands).
#![no_std]

use aya_ebpf::{macros::classifier, programs::TcContext};

/// TC_ACT_UNSPEC (TCX_NEXT): let the next program in the chain run.
const TC_ACT_UNSPEC: i32 = -1;

#[classifier]
pub fn tlsmon_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
