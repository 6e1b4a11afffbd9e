#!/bin/sh
# RUSTC_WRAPPER of the kernel crate's bitcode build (tlsmon/build.rs), called as
# `rustc-wrapper.sh RUSTC ARGS...`.
#
# On the stable-Rust route the kernel crates are compiled for the host target and
# retargeted to BPF by bpf-linker, so `target_arch` is the host's. aya-log-ebpf
# puts its AYA_LOGS ring buffer in the maps section only under
# `cfg(target_arch = "bpf")`; for that crate alone, this adds the cfg (and allows
# the lint that forbids setting a built-in cfg by flag). Every other crate is
# compiled exactly as cargo asked.
rustc=$1
shift
crate=
previous=
for arg in "$@"; do
    if [ "$previous" = --crate-name ]; then
        crate=$arg
        break
    fi
    previous=$arg
done
if [ "$crate" = aya_log_ebpf ]; then
    exec "$rustc" "$@" -A explicit_builtin_cfgs_in_flags --cfg 'target_arch="bpf"'
fi
exec "$rustc" "$@"
