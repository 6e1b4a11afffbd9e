#!/usr/bin/env bash
# Records the handshake fixtures used by tlsmon/src/pipeline/tls/tests_captured.rs.
#
# Each scenario runs a real TLS server and client (OpenSSL 3.0 s_server/s_client,
# GnuTLS 3.7 gnutls-cli) on loopback (s_server in -rev echo mode, which runs without a
# terminal on stdin), captures the connection with tcpdump, and
# extracts the TCP payload of each direction with tshark into NAME.client.bin and
# NAME.server.bin (the bytes the parser is fed), and tshark's own decoding of the
# hellos and alerts into tshark_fields.txt (what the tests cross-check against).
# Needs root for tcpdump on lo.
#
#   tlsmon/src/pipeline/tls/testdata/record.sh        # re-records every fixture
#
# Re-recording changes randoms, keys, certificates and dates: update the expected
# values in tests_captured.rs afterwards (ports, names and structure stay the same).
set -euo pipefail

OUT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Ports unlikely to clash with anything else on the machine.
BASE_PORT=47310

# Server certificate (RSA, CN=tlsmon.test) and an unrelated CA for the
# unknown-CA scenario.
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/O=tlsmon test/CN=tlsmon.test" \
    -keyout "$WORK/server.key" -out "$WORK/server.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Some Other CA" \
    -keyout "$WORK/other.key" -out "$WORK/other.pem" 2>/dev/null

wait_listening() { # port
    for _ in $(seq 1 100); do
        ss -ltn "sport = :$1" | grep -q LISTEN && return 0
        sleep 0.05
    done
    echo "server on port $1 never listened" >&2
    return 1
}

# Splits a tshark "follow,tcp,raw" dump into the two directions' bytes.
extract() { # pcap name
    tshark -r "$1" -q -z "follow,tcp,raw,${STREAM:-0}" | python3 -c '
import sys, binascii
name = sys.argv[1]
client, server = bytearray(), bytearray()
lines = sys.stdin.read().split("\n")
body = lines[lines.index(next(l for l in lines if l.startswith("Node 1:"))) + 1:]
for line in body:
    if line.startswith("="):
        break
    if line.startswith("\t"):
        server += binascii.unhexlify(line.strip())
    elif line.strip():
        client += binascii.unhexlify(line.strip())
open(name + ".client.bin", "wb").write(client)
open(name + ".server.bin", "wb").write(server)
print(f"{name}: client {len(client)} bytes, server {len(server)} bytes")
' "$OUT/$2"
}

# Appends what tshark decodes in the capture (an independent reading of the same
# bytes) to tshark_fields.txt: one line per ClientHello, ServerHello and alert.
tshark_fields() { # pcap name
    local q=(tshark -r "$1" -o tls.desegment_ssl_records:TRUE -T fields -E separator='|')
    local s="tcp.stream == ${STREAM:-0} && "
    "${q[@]}" -Y "$s tls.handshake.type == 1" -e tls.handshake.ja3_full -e tls.handshake.ja3 \
        -e tls.handshake.extensions_server_name 2>/dev/null |
        sed "s/^/$2|client_hello|/" >>"$OUT/tshark_fields.txt"
    "${q[@]}" -Y "$s tls.handshake.type == 2" -e tls.handshake.ja3s_full -e tls.handshake.ja3s \
        -e tls.handshake.ciphersuite -e tls.handshake.extensions.supported_version 2>/dev/null |
        sed "s/^/$2|server_hello|/" >>"$OUT/tshark_fields.txt"
    "${q[@]}" -Y "$s tls.alert_message.desc" -e tls.alert_message.level -e tls.alert_message.desc \
        2>/dev/null | sed "s/^/$2|alert|/" >>"$OUT/tshark_fields.txt"
}
: >"$OUT/tshark_fields.txt"

# scenario NAME "SERVER ARGS" "CLIENT COMMAND (use PORT)"
PORT=$BASE_PORT
attempt() { # name server_args client_cmd: one recording; fails if a direction is empty
    local name=$1 server_args=$2 client_cmd=$3
    PORT=$((PORT + 1))
    tcpdump -i lo -U -s 0 -w "$WORK/$name.pcap" "tcp port $PORT" 2>"$WORK/$name.tcpdump.log" &
    local dump=$!
    PIDS+=("$dump")
    for _ in $(seq 1 100); do # tcpdump says "listening on lo" once it captures
        grep -q "listening on" "$WORK/$name.tcpdump.log" && break
        sleep 0.05
    done
    # shellcheck disable=SC2086
    openssl s_server -accept "$PORT" -naccept "${NACCEPT:-1}" -cert "$WORK/server.pem" -key "$WORK/server.key" \
        -rev $server_args </dev/null >"$WORK/$name.server.log" 2>&1 &
    local server=$!
    PIDS+=("$server")
    wait_listening "$PORT"
    (echo "hello" | timeout 10 bash -c "${client_cmd//PORT/$PORT}") >"$WORK/$name.client.log" 2>&1 || true
    timeout 5 tail --pid="$server" -f /dev/null || kill "$server" 2>/dev/null || true
    sleep 0.5 # let the last FIN/ACKs reach the capture
    kill -INT "$dump"
    wait "$dump" 2>/dev/null || true
    extract "$WORK/$name.pcap" "$name"
    [ -s "$OUT/$name.client.bin" ] && [ -s "$OUT/$name.server.bin" ]
}

# scenario NAME "SERVER ARGS" "CLIENT COMMAND (PORT is replaced)"
# With NACCEPT=2 the client command makes two connections; STREAM=1 keeps the second.
scenario() {
    for try in 1 2 3; do
        if attempt "$@"; then
            tshark_fields "$WORK/$1.pcap" "$1"
            return 0
        fi
        echo "$1: attempt $try captured an empty direction, retrying" >&2
    done
    echo "$1: giving up" >&2
    return 1
}

CLIENT="openssl s_client -connect 127.0.0.1:PORT -servername tlsmon.test"

# TLS 1.3, X25519, ALPN h2.
scenario openssl_tls13 "-tls1_3 -alpn h2" "$CLIENT -tls1_3 -alpn h2,http/1.1"

# TLS 1.2 ECDHE-RSA: plaintext Certificate (split over 512-byte records) and
# ServerKeyExchange, CCS then encrypted Finished.
scenario openssl_tls12 "-tls1_2 -max_send_frag 512" \
    "$CLIENT -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256 -groups P-256:X25519"

# A TLS 1.3-capable client talking to a TLS 1.2-only server: after its CCS, its
# encrypted Finished must not be mistaken for a second (TLS 1.3) ClientHello.
scenario openssl_tls12_from_tls13_client "-tls1_2" "$CLIENT"

# HelloRetryRequest: the client's key share is P-256, the server only takes X25519.
scenario openssl_hrr "-tls1_3 -groups X25519" "$CLIENT -tls1_3 -groups P-256:X25519"

# Cipher mismatch: the server answers the ClientHello with handshake_failure.
scenario openssl_cipher_mismatch "-tls1_2 -cipher AES256-SHA" \
    "$CLIENT -tls1_2 -cipher AES128-SHA"

# Version mismatch: TLS 1.3-only server, TLS 1.2-only client: protocol_version.
scenario openssl_version_mismatch "-tls1_3" "$CLIENT -tls1_2"

# TLS 1.2 client rejecting the server's certificate: plaintext unknown_ca alert.
scenario openssl_tls12_unknown_ca "-tls1_2" \
    "$CLIENT -tls1_2 -verify_return_error -CAfile $WORK/other.pem"

# A ClientHello split over several 512-byte records (long ALPN list).
ALPN=$(printf 'proto-%02d,' $(seq 1 60))h2
scenario openssl_fragmented_hello "-tls1_3" "$CLIENT -tls1_3 -max_send_frag 512 -alpn $ALPN"

# GnuTLS client, TLS 1.3 (its own extension order, GREASE-free).
scenario gnutls_tls13 "-tls1_3" \
    "gnutls-cli --insecure --port PORT --sni-hostname tlsmon.test --alpn h2 127.0.0.1"

# Session resumption: the second connection resumes the first one's session.
SESS=$WORK/session.pem
NACCEPT=2 STREAM=1 scenario openssl_tls13_resumed "-tls1_3" \
    "(echo hi; sleep 1) | $CLIENT -tls1_3 -sess_out $SESS; $CLIENT -tls1_3 -sess_in $SESS"
NACCEPT=2 STREAM=1 scenario openssl_tls12_resumed "-tls1_2" \
    "(echo hi; sleep 1) | $CLIENT -tls1_2 -sess_out $SESS; $CLIENT -tls1_2 -sess_in $SESS"

# JA4 from a second, independent implementation (tshark 4.0 has no JA4).
python3 "$OUT/ja4_reference.py" "$OUT"/*.client.bin >"$OUT/ja4_reference.txt"
