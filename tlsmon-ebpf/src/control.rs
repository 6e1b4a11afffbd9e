//! The control program's body: userspace runs it with BPF_PROG_TEST_RUN on a
//! [`ControlCommand`] to change flow and hint state with the kernel's atomics
//! (a map update from userspace would overwrite the value and could resurrect
//! or clobber a flow that a CPU changed meanwhile).

use aya_ebpf::programs::TcContext;
use tlsmon_common::{
    hint_slot, seq_before, ControlCommand, Counter, DirectionState, CONTROL_HEAL_HINT,
    CONTROL_OFFSET, CONTROL_RELEASE_FLOW, CONTROL_RESUME, DIR_COPY_ALL, DIR_FOLLOWING, DIR_RESUME,
    DIR_SEEN, RESUME_COPY_ALL, RESUME_RECORDS, RESUME_SKIP_TO,
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
        CONTROL_RESUME => resume(&command),
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

/// Sets where userspace needs one direction's bytes (`CONTROL_RESUME` in
/// tlsmon-common): 1 in time, 2 late but applied, 0 not applied, -1 malformed.
#[inline(always)]
fn resume(command: &ControlCommand) -> i32 {
    let mode = command.resume_mode;
    if mode != RESUME_SKIP_TO && mode != RESUME_COPY_ALL && mode != RESUME_RECORDS {
        return -1;
    }
    let key = command.key;
    let Some(state) = FLOWS.get_ptr_mut(&key) else {
        return 0;
    };
    // SAFETY: a live value of the flow map. A packet on another CPU may walk
    // the same direction meanwhile; the worst outcome is one packet treated by
    // the old or the new rules, never an unsafe access.
    let state = unsafe { &mut *state };
    if state.client_seq != command.client_seq {
        return 0;
    }
    let dir = if command.sender_is_lo != 0 {
        &mut state.lo_to_hi
    } else {
        &mut state.hi_to_lo
    };
    apply_resume(dir, command.resume_seq, mode)
}

/// Applies a resume point to a direction; see [`resume`] for the result.
#[inline(always)]
fn apply_resume(dir: &mut DirectionState, seq: u32, mode: u32) -> i32 {
    // In time when no byte at or after `seq` has passed: the furthest byte seen
    // (or walked) ends at or before it.
    let in_time = dir.flags & DIR_SEEN == 0 || !seq_before(seq, dir.cursor);
    if mode == RESUME_RECORDS {
        if in_time {
            // Walk from the named header: the kernel's own walk, if any, is
            // replaced by what userspace read from the bytes.
            dir.cursor = seq;
            dir.record_left = 0;
            dir.record_copy = 0;
            dir.header_have = 0;
            dir.header_bytes = 0;
            dir.flags |= DIR_FOLLOWING | DIR_SEEN;
        } else if dir.flags & DIR_FOLLOWING == 0 {
            // Bytes past `seq` went by unwalked: where records are in them is
            // unknown here. They were copied whole; userspace names a later start.
            return 0;
        }
        dir.flags &= !DIR_COPY_ALL;
    } else if mode == RESUME_COPY_ALL {
        dir.flags |= DIR_COPY_ALL;
    }
    dir.resume_seq = seq;
    dir.flags |= DIR_RESUME;
    if in_time {
        1
    } else {
        2
    }
}
