//! The control program's body: userspace runs it with BPF_PROG_TEST_RUN on a
//! [`ControlCommand`] to change flow and hint state with the kernel's atomics
//! (a map update from userspace would overwrite the value and could resurrect
//! or clobber a flow that a CPU changed meanwhile).

use aya_ebpf::programs::TcContext;
use tlsmon_common::{
    hint_slot, ControlCommand, Counter, CONTROL_HEAL_HINT, CONTROL_OFFSET, CONTROL_RELEASE_FLOW,
};

use crate::{
    flow::forget,
    hint,
    maps::{count, FLOWS},
    packet::bytes_at,
};

const COMMAND_LEN: usize = core::mem::size_of::<ControlCommand>();

/// Runs the command in the frame: 1 when it took effect, 0 when it did not
/// (gone, another connection, slot changed), -1 for a malformed command.
#[inline(always)]
pub fn run(ctx: &TcContext) -> i32 {
    let Some(bytes) = bytes_at::<COMMAND_LEN>(ctx, CONTROL_OFFSET) else {
        return -1;
    };
    // SAFETY: COMMAND_LEN readable bytes; ControlCommand is plain integers, so
    // any bit pattern is a valid value; the packet data need not be aligned.
    let command = unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const ControlCommand) };
    match command.op {
        CONTROL_RELEASE_FLOW => release(&command) as i32,
        CONTROL_HEAL_HINT => hint::heal(command.slot, command.seen, command.count) as i32,
        _ => -1,
    }
}

/// Forgets the flow of `command.key` if it is still the connection whose first
/// client payload was at `command.client_seq`.
#[inline(always)]
fn release(command: &ControlCommand) -> bool {
    let key = command.key;
    let Some(state) = FLOWS.get_ptr_mut(&key) else {
        return false;
    };
    // SAFETY: a live value of the flow map.
    let state = unsafe { &mut *state };
    if state.client_seq != command.client_seq {
        return false;
    }
    let slot = hint_slot(
        key.ifindex,
        &key.addr_lo,
        key.port_lo,
        &key.addr_hi,
        key.port_hi,
    );
    forget(&key, slot, state);
    count(Counter::FlowsReleased, 1);
    true
}
