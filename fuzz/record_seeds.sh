#!/usr/bin/env bash
# Records the real-traffic seeds of the fuzz corpus on loopback: an OpenSSL TLS 1.3
# and a TLS 1.2 handshake captured by tcpdump (pcap, pcapng, and a 96-byte snap
# length copy) for `capture_file`, and the ClientHello / ServerHello flights as raw
# TCP payload for `record_parser`. Needs root (tcpdump), openssl, tshark/editcap.
# Usage: fuzz/record_seeds.sh   (rewrites fuzz/corpus/*/real-*, then runs make_seeds.py)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
port=${SEED_PORT:-44330}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Poll until "$@" succeeds, for at most 10 s.
wait_for() {
    for _ in $(seq 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for: $*" >&2
    return 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=seed.test -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

tcpdump -i lo -U -s 0 -w "$work/tls.pcap" "tcp port $port" 2>"$work/tcpdump.log" &
pids+=($!)
wait_for grep -q "listening on" "$work/tcpdump.log"

openssl s_server -accept "127.0.0.1:$port" -cert "$work/cert.pem" -key "$work/key.pem" \
    -www -quiet >/dev/null 2>&1 &
pids+=($!)
wait_for bash -c "ss -ltn | grep -q '127.0.0.1:$port '"

for version in -tls1_3 -tls1_2; do
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername seed.test \
        "$version" </dev/null >/dev/null 2>&1
done

# Let tcpdump write the last packets (-U flushes per packet), then stop it.
wait_for bash -c "[ \$(tcpdump -r '$work/tls.pcap' 2>/dev/null | grep -c 'Flags \[F') -ge 4 ]"
kill -INT "${pids[0]}"
wait "${pids[0]}" || true

out="$here/corpus/capture_file"
mkdir -p "$out"
cp "$work/tls.pcap" "$out/real-openssl-tls13-tls12.pcap"
editcap -F pcapng "$work/tls.pcap" "$out/real-openssl-tls13-tls12.pcapng"
editcap -s 96 "$work/tls.pcap" "$out/real-openssl-snap96.pcap"

out="$here/corpus/record_parser"
mkdir -p "$out"
payload() { # $1 = handshake type, $2 = nth match (1-based)
    tshark -r "$work/tls.pcap" -Y "tls.handshake.type == $1" -T fields -e tcp.payload \
        | sed -n "${2}p" | xxd -r -p
}
payload 1 1 >"$out/real-clienthello-tls13.bin"
payload 1 2 >"$out/real-clienthello-tls12.bin"
payload 2 1 >"$out/real-serverhello-tls13.bin"
payload 2 2 >"$out/real-serverhello-tls12.bin"
python3 "$here/make_seeds.py"
ls -l "$here/corpus/capture_file" "$out"
