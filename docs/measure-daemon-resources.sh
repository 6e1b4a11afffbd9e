#!/usr/bin/env bash
# Measures what `tlsmon run` costs in memory and CPU, idle and under a stream of
# full TLS handshakes, the way a container's limits count it: the daemon runs in
# a memory cgroup of its own, so the kernel program's maps (charged to the cgroup
# that creates them) are counted with the process. The figures behind the
# DaemonSet's requests and limits (deploy/kubernetes/daemonset.yaml) come from
# here; BENCHMARKS.md, "Daemon resources", has them.
#
#   docs/measure-daemon-resources.sh [TLSMON_BINARY] [LOAD_SECONDS]
#
# As root (BPF, namespaces, cgroups). Needs openssl, iproute2, curl. Works with a
# cgroup v2 hierarchy at /sys/fs/cgroup or a v1 memory+cpuacct one. Traffic stays
# between two network namespaces this script makes (and removes).
set -euo pipefail

TLSMON=${1:-target/release/tlsmon}
LOAD_SECS=${2:-30}
TAG=tmres$$
CLIENT_NS=${TAG}c
SERVER_NS=${TAG}s
WORK=$(mktemp -d)
SERVER_IP=10.79.0.1
PORT=4443

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$TLSMON" ] || { echo "no tlsmon binary at $TLSMON (cargo build --release -p tlsmon)" >&2; exit 1; }

# The cgroup: v2 if mounted, else v1 memory and cpuacct.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    CG=/sys/fs/cgroup/$TAG
    mkdir "$CG"
    CG_PROCS=("$CG/cgroup.procs")
    mem_now() { cat "$CG/memory.current"; }
    mem_peak() { cat "$CG/memory.peak"; }
    cpu_usec() { awk '/^usage_usec/ {print $2}' "$CG/cpu.stat"; }
    CG_DIRS=("$CG")
else
    MEM=/sys/fs/cgroup/memory/$TAG
    CPU=/sys/fs/cgroup/cpuacct/$TAG
    mkdir "$MEM" "$CPU"
    CG_PROCS=("$MEM/cgroup.procs" "$CPU/cgroup.procs")
    mem_now() { cat "$MEM/memory.usage_in_bytes"; }
    mem_peak() { cat "$MEM/memory.max_usage_in_bytes"; }
    cpu_usec() { echo $(($(cat "$CPU/cpuacct.usage") / 1000)); }
    CG_DIRS=("$MEM" "$CPU")
fi

cleanup() {
    set +e
    [ -n "${TLSMON_PID:-}" ] && kill "$TLSMON_PID" 2>/dev/null && wait "$TLSMON_PID" 2>/dev/null
    [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    ip netns del "$CLIENT_NS" 2>/dev/null
    ip netns del "$SERVER_NS" 2>/dev/null
    for d in "${CG_DIRS[@]}"; do rmdir "$d" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$CLIENT_NS"
ip netns add "$SERVER_NS"
ip link add veth-c netns "$CLIENT_NS" type veth peer name veth-s netns "$SERVER_NS"
ip -n "$CLIENT_NS" addr add 10.79.0.2/24 dev veth-c
ip -n "$SERVER_NS" addr add "$SERVER_IP/24" dev veth-s
for ns in "$CLIENT_NS" "$SERVER_NS"; do
    ip -n "$ns" link set lo up
done
ip -n "$CLIENT_NS" link set veth-c up
ip -n "$SERVER_NS" link set veth-s up

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=measure.test -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
ip netns exec "$SERVER_NS" openssl s_server -quiet -accept "$PORT" \
    -cert "$WORK/cert.pem" -key "$WORK/key.pem" >/dev/null 2>&1 &
SERVER_PID=$!

# Start tlsmon inside the cgroup: the shell joins it (before `ip netns exec`,
# which mounts another /sys), then becomes tlsmon, so its maps are charged there
# from the first one.
sh -c '
    ns=$1 tlsmon=$2; shift 2
    for procs in "$@"; do echo $$ > "$procs"; done
    exec ip netns exec "$ns" "$tlsmon" run --interface veth-s --listen 127.0.0.1:9808 --log-level warn
' sh "$SERVER_NS" "$TLSMON" "${CG_PROCS[@]}" 2>"$WORK/tlsmon.log" &
TLSMON_PID=$!

metric() {
    ip netns exec "$SERVER_NS" curl -sf http://127.0.0.1:9808/metrics |
        awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {print s + 0}'
}
for _ in $(seq 100); do
    [ "$(metric tlsmon_interface_attached)" = 1 ] && break
    sleep 0.1
done
[ "$(metric tlsmon_interface_attached)" = 1 ] || { cat "$WORK/tlsmon.log"; exit 1; }

sleep 5
idle_mem=$(mem_now)
cpu0=$(cpu_usec)
sleep 10
cpu1=$(cpu_usec)
idle_cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", (b - a) / 1e6 / 10 * 1000}')

hs0=$(metric tlsmon_handshakes_total)
cpu0=$(cpu_usec)
start=$(date +%s.%N)
# Two clients making new full handshakes back to back.
CLIENTS=()
for _ in 1 2; do
    ip netns exec "$CLIENT_NS" openssl s_time -connect "$SERVER_IP:$PORT" -new \
        -time "$LOAD_SECS" >/dev/null 2>&1 &
    CLIENTS+=($!)
done
wait "${CLIENTS[@]}" || true
# Let the daemon catch up with the last handshakes.
for _ in $(seq 100); do
    [ "$(metric tlsmon_flows_tracked)" = 0 ] && break
    sleep 0.1
done
end=$(date +%s.%N)
cpu1=$(cpu_usec)
hs1=$(metric tlsmon_handshakes_total)
load_mem=$(mem_now)
peak_mem=$(mem_peak)

handshakes=$((hs1 - hs0))
awk -v h="$handshakes" -v s="$start" -v e="$end" -v c0="$cpu0" -v c1="$cpu1" \
    -v im="$idle_mem" -v lm="$load_mem" -v pm="$peak_mem" -v ic="$idle_cpu" '
BEGIN {
    secs = e - s; cpu = (c1 - c0) / 1e6
    printf "idle: memory %.1f MiB, CPU %s millicores\n", im / 1048576, ic
    printf "load: %d handshakes in %.1f s (%.0f/s); tlsmon CPU %.2f s = %.0f millicores, %.1f us per handshake\n", h, secs, h / secs, cpu, cpu / secs * 1000, (h > 0 ? cpu / h * 1e6 : 0)
    printf "memory after load %.1f MiB, peak %.1f MiB\n", lm / 1048576, pm / 1048576
}'
echo "ring buffer drops: $(metric tlsmon_capture_ringbuf_dropped_total), evictions: $(metric tlsmon_reassembly_evictions_total)"
