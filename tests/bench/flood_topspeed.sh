#!/bin/bash
# Replays two floods at tcpreplay's top speed into a veth pair between two network
# namespaces, with `tlsmon run` on the receiving end, and prints the daemon's kernel
# counters and peak memory (BENCHMARKS.md, "Under attack: the kernel at top speed").
#   bare.pcap      spoofed ClientHellos without any connection (flood-pcap --bare)
#   halfopen.pcap  connections that open (SYN, SYN-ACK, ACK) and send an unanswered
#                  ClientHello (flood-pcap)
# Usage, as root from the repository:
#   cargo build --release -p tlsmon
#   cargo run -p tlsmon-tests --bin flood-pcap -- /tmp/bare.pcap --connections 300000 --bare
#   cargo run -p tlsmon-tests --bin flood-pcap -- /tmp/halfopen.pcap --connections 100000 --first 300000
#   tests/bench/flood_topspeed.sh /tmp/bare.pcap /tmp/halfopen.pcap
set -u
BIN=${TLSMON_BIN:-target/release/tlsmon}
DPID=
cleanup() {
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
    ip netns del tlsmon-flood-a 2>/dev/null
    ip netns del tlsmon-flood-b 2>/dev/null
}
trap cleanup EXIT
ip netns add tlsmon-flood-a
ip netns add tlsmon-flood-b
ip link add fl-a netns tlsmon-flood-a type veth peer name fl-b netns tlsmon-flood-b
for ns in tlsmon-flood-a:fl-a tlsmon-flood-b:fl-b; do
    ip -n "${ns%%:*}" link set "${ns##*:}" up
    ip -n "${ns%%:*}" link set lo up
done
# Replayed frames must be addressed to the receiving NIC, as real traffic is.
MAC=$(ip -n tlsmon-flood-b -o link show fl-b | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
ip netns exec tlsmon-flood-b "$BIN" run --interface fl-b --listen 127.0.0.1:19808 2>/dev/null &
DPID=$!
for _ in $(seq 1 50); do
    ip netns exec tlsmon-flood-b curl -sf 127.0.0.1:19808/healthz >/dev/null && break
    sleep 0.2
done
metric() { ip netns exec tlsmon-flood-b curl -s 127.0.0.1:19808/metrics | awk -v m="$1" '$1 == m {print $2}'; }
for capture in "$@"; do
    rewritten=$(mktemp --suffix=.pcap)
    tcprewrite --enet-dmac="$MAC" -i "$capture" -o "$rewritten"
    echo "== $capture"
    ip netns exec tlsmon-flood-a tcpreplay --topspeed -i fl-a "$rewritten" 2>&1 | grep -E "Actual|Rated|Failed"
    rm -f "$rewritten"
    # The daemon exports kernel counters once a second.
    sleep 3
    for m in tlsmon_capture_packets_seen_total tlsmon_capture_ringbuf_dropped_total \
        tlsmon_capture_events_total tlsmon_flows_started_total \
        tlsmon_capture_client_hellos_unverified_total tlsmon_capture_openings_total; do
        echo "$m $(metric $m)"
    done
done
grep -E "VmHWM|VmRSS" "/proc/$DPID/status"
