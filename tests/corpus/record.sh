#!/usr/bin/env bash
# Records tlsmon's test corpus: real TLS stacks (OpenSSL, GnuTLS, rustls) talking to
# each other across a veth pair between two network namespaces made for the purpose.
#
#   sudo tests/corpus/record.sh              record every scenario
#   sudo tests/corpus/record.sh NAME...      record only these (see `record.sh --list`)
#
# Needs root, iproute2, ethtool, tcpdump (dumpcap for the pcapng scenario), openssl, gnutls-bin,
# curl, python3, tshark (for the expectation cross-check), and the rustls peer:
# `cargo build -p tlsmon-tests --bin rustls-peer` (or RUSTLS_PEER=path).
#
# Per scenario: fresh namespaces tlsmon-corpus-{c,s}-PID joined by veth-c/veth-s
# (client 198.18.0.1 and 2001:db8:18::1, server 198.18.0.2 and 2001:db8:18::2; the
# RFC 2544 benchmarking and RFC 3849 documentation ranges, which exist only inside the
# namespaces), tcpdump on the server's veth, server and client with bounded timeouts,
# then <scenario>.pcap and logs/<scenario>.log. Namespaces, processes and temporary
# files are removed by a trap, also on failure. Finally tools/expect.py cross-checks
# each capture against tshark and writes expected/<scenario>.json (see README.md).
set -euo pipefail

CORPUS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$CORPUS/../.." && pwd)
PEER=${RUSTLS_PEER:-$ROOT/target/debug/rustls-peer}
NS_C=tlsmon-corpus-c-$$
NS_S=tlsmon-corpus-s-$$
CADDR=198.18.0.1
SADDR=198.18.0.2
CADDR6=2001:db8:18::1
SADDR6=2001:db8:18::2
PORT=443
WORK=$(mktemp -d /tmp/tlsmon-corpus.XXXXXX)
PKI=$WORK/pki
BG_PIDS=()
CAPTURE_PID=
LOG=/dev/null

cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}" $CAPTURE_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BG_PIDS[@]}" $CAPTURE_PID; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$NS_C" 2>/dev/null || true
    ip netns del "$NS_S" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "record.sh: $*" >&2; exit 1; }
log() { echo "## $*" >>"$LOG"; }

# Run a command in the client or server namespace, bounded by a timeout in seconds.
in_c() { local t=$1; shift; timeout --kill-after=2 "$t" ip netns exec "$NS_C" "$@"; }
in_s() { local t=$1; shift; timeout --kill-after=2 "$t" ip netns exec "$NS_S" "$@"; }

# Start a server in the background (bounded), logging its output.
serve() {
    local t=$1; shift
    log "server: $*"
    (cd "$WORK/www" && exec timeout --kill-after=2 "$t" ip netns exec "$NS_S" "$@") >>"$LOG" 2>&1 &
    BG_PIDS+=($!)
}

# Run a client to completion (bounded); its exit status is logged, not fatal, because
# failure scenarios fail on purpose.
client() {
    local t=$1 input=$2; shift 2
    log "client: $*"
    local rc=0
    (cd "$WORK" && timeout --kill-after=2 "$t" ip netns exec "$NS_C" "$@") <"$input" >>"$LOG" 2>&1 || rc=$?
    log "client exit status $rc"
}

# Wait for the background servers (each has its own timeout).
wait_servers() {
    local pid rc
    for pid in "${BG_PIDS[@]}"; do
        rc=0
        wait "$pid" || rc=$?
        log "server exit status $rc"
    done
    BG_PIDS=()
}

# Poll until something listens on PORT in the server namespace (deadline 5 s).
wait_listen() {
    local i
    for ((i = 0; i < 100; i++)); do
        if ip netns exec "$NS_S" ss -Hltn "sport = :$PORT" | grep -q LISTEN; then
            return 0
        fi
        sleep 0.05
    done
    die "nothing listens on port $PORT after 5 s"
}

make_pki() {
    mkdir -p "$PKI" "$WORK/www"
    printf 'hello from the tlsmon corpus\n' >"$WORK/www/hello.txt"
    printf 'GET /hello.txt HTTP/1.0\r\n\r\n' >"$WORK/request"
    printf 'ping\n' >"$WORK/ping"
    : >"$WORK/empty"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    (
        cd "$PKI"
        openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 3650 \
            -subj "/O=tlsmon test/CN=tlsmon corpus CA" -addext basicConstraints=critical,CA:TRUE
        openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.pem -days 3650 \
            -subj "/O=tlsmon test/CN=untrusted CA" -addext basicConstraints=critical,CA:TRUE
        openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/O=tlsmon test/CN=server.test"
        printf 'subjectAltName=DNS:server.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 3650 -extfile server.ext -out server.pem
        openssl req "${ec[@]}" -keyout client.key -out client.csr -subj "/O=tlsmon test/CN=client.test"
        printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 3650 -extfile client.ext -out client.pem
        # Extra chain certificates for the large-chain scenarios: three self-signed
        # padding certificates of about 27 KB each (1000 subjectAltNames), sent after
        # the leaf, so the Certificate message is over 64 KiB (and under the 100 KB OpenSSL
        # clients accept by default). The client verifies
        # the leaf against the corpus CA and ignores them.
        local i n
        for i in 1 2 3; do
            {
                printf '[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\n'
                printf 'basicConstraints=critical,CA:TRUE\nsubjectAltName=@alt\n[alt]\n'
                for n in $(seq 1000); do printf 'DNS.%d=padding-%d-%d.chain.test\n' "$n" "$i" "$n"; done
            } >"padding$i.cnf"
            openssl req -x509 "${ec[@]}" -keyout "padding$i.key" -out "padding$i.pem" -days 3650 \
                -subj "/O=tlsmon test/CN=padding $i" -config "padding$i.cnf"
        done
        cat padding1.pem padding2.pem padding3.pem >large-chain.pem
    ) >/dev/null 2>&1 || die "making test certificates failed"
}

# Fresh namespaces and veth pair; optional MTU for both ends.
netns_up() {
    local mtu=${1:-1500}
    ip netns add "$NS_C"
    ip netns add "$NS_S"
    ip link add veth-c netns "$NS_C" type veth peer name veth-s netns "$NS_S"
    ip -n "$NS_C" link set lo up
    ip -n "$NS_S" link set lo up
    ip -n "$NS_C" addr add "$CADDR/24" dev veth-c
    ip -n "$NS_S" addr add "$SADDR/24" dev veth-s
    ip -n "$NS_C" addr add "$CADDR6/64" dev veth-c nodad
    ip -n "$NS_S" addr add "$SADDR6/64" dev veth-s nodad
    # No offloads: the capture then shows segments, with checksums, as on a wire.
    in_c 5 ethtool -K veth-c tso off gso off gro off tx off >/dev/null
    in_s 5 ethtool -K veth-s tso off gso off gro off tx off >/dev/null
    # Set after the addresses: below 1280 bytes the kernel turns IPv6 off on the link
    # (and drops its IPv6 addresses), which is fine for the IPv4-only small-MTU cases.
    ip -n "$NS_C" link set veth-c mtu "$mtu" up
    ip -n "$NS_S" link set veth-s mtu "$mtu" up
}

netns_down() {
    ip netns del "$NS_C" 2>/dev/null || true
    ip netns del "$NS_S" 2>/dev/null || true
}

# Capture TCP port PORT on the server side. $1: output file; $2: interface
# (veth-s, or "any" for Linux cooked SLL2); $3: tool (tcpdump or dumpcap).
capture_start() {
    local out=$1 iface=${2:-veth-s} tool=${3:-tcpdump}
    local err=$WORK/capture.err
    : >"$err"
    if [[ $tool == dumpcap ]]; then
        timeout --kill-after=2 120 ip netns exec "$NS_S" \
            dumpcap -q -i "$iface" -f "tcp port $PORT" -w "$out" 2>"$err" &
    else
        timeout --kill-after=2 120 ip netns exec "$NS_S" \
            tcpdump -Z root -U --immediate-mode -n -i "$iface" -w "$out" "tcp port $PORT" 2>"$err" &
    fi
    CAPTURE_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        if grep -qiE "listening on|capturing on" "$err"; then
            return 0
        fi
        kill -0 "$CAPTURE_PID" 2>/dev/null || die "capture failed: $(cat "$err")"
        sleep 0.05
    done
    die "capture did not start within 5 s: $(cat "$err")"
}

capture_stop() {
    # Let the last packets (FIN/ACK) reach the capture before stopping it.
    sleep 0.3
    kill -INT "$CAPTURE_PID" 2>/dev/null || true
    wait "$CAPTURE_PID" 2>/dev/null || true
    CAPTURE_PID=
    grep -E "packets (captured|received)" "$WORK/capture.err" >>"$LOG" || true
}

# ----------------------------------------------------------------------------------
# Scenarios. Each runs its server(s) and client(s); the frame around it (namespaces,
# capture) is set up by record_one. The facts each one must produce are written in
# tools/expect.py beside the reasoning that makes them true.

OSSL_SERVER=(openssl s_server -accept "$PORT" -cert "$PKI/server.pem" -key "$PKI/server.key" -WWW -naccept 1)
OSSL_CLIENT=(openssl s_client -connect "$SADDR:$PORT" -servername server.test -CAfile "$PKI/ca.pem" -verify_return_error -brief -ign_eof)
GNUTLS_SERVER=(gnutls-serv --port "$PORT" --x509certfile "$PKI/server.pem" --x509keyfile "$PKI/server.key" --echo)
GNUTLS_CLIENT=(gnutls-cli --port "$PORT" --sni-hostname server.test --verify-hostname server.test --x509cafile "$PKI/ca.pem" "$SADDR")
RUSTLS_SERVER=("$PEER" server --listen "$SADDR:$PORT" --cert "$PKI/server.pem" --key "$PKI/server.key")
RUSTLS_CLIENT=("$PEER" client --connect "$SADDR:$PORT" --sni server.test --ca "$PKI/ca.pem")
LISTENER=(python3 "$CORPUS/tools/listener.py")

scenario_tls12-ok() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -groups X25519
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_2
    wait_servers
}

scenario_tls13-ok() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256 -groups X25519
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3
    wait_servers
}

# Same as tls12-ok, captured with `tcpdump -i any`: Linux cooked (SLL2) link layer.
scenario_tls12-sll2() { scenario_tls12-ok; }

scenario_tls13-ipv6() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256 -groups P-256
    wait_listen
    client 15 "$WORK/request" openssl s_client -connect "[$SADDR6]:$PORT" -servername server.test \
        -CAfile "$PKI/ca.pem" -verify_return_error -brief -ign_eof -tls1_3 -groups P-256:X25519
    wait_servers
}

# gnutls-serv has no "serve N connections" option: the client runs to completion,
# then the server is stopped by its timeout's signal.
gnutls_pair() {
    local server_prio=$1 client_prio=$2
    serve 10 "${GNUTLS_SERVER[@]}" --priority "$server_prio"
    wait_listen
    client 10 "$WORK/ping" "${GNUTLS_CLIENT[@]}" --priority "$client_prio"
    kill "${BG_PIDS[@]}" 2>/dev/null || true
    wait_servers
}

scenario_gnutls-tls12-ok() {
    gnutls_pair "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:-GROUP-ALL:+GROUP-SECP256R1" \
        "NORMAL:-VERS-ALL:+VERS-TLS1.2"
}

# Recorded with dumpcap: the only pcapng file of the corpus.
scenario_gnutls-tls13-ok() {
    gnutls_pair "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:-GROUP-ALL:+GROUP-X25519" \
        "NORMAL:-VERS-ALL:+VERS-TLS1.3"
}

scenario_rustls-tls13-ok() {
    serve 20 "${RUSTLS_SERVER[@]}" --versions 1.3 --ciphers TLS_AES_128_GCM_SHA256 --groups secp384r1 --alpn h2
    wait_listen
    client 15 "$WORK/empty" "${RUSTLS_CLIENT[@]}" --versions 1.3 --groups secp384r1,x25519 --alpn h2,http/1.1
    wait_servers
}

scenario_rustls-tls12-ok() {
    serve 20 "${RUSTLS_SERVER[@]}" --versions 1.2 --ciphers TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 \
        --groups x25519 --alpn h2
    wait_listen
    client 15 "$WORK/empty" "${RUSTLS_CLIENT[@]}" --versions 1.2 --alpn h2,http/1.1
    wait_servers
}

scenario_pq-hybrid() {
    serve 20 "${RUSTLS_SERVER[@]}" --versions 1.3 --groups X25519MLKEM768
    wait_listen
    client 15 "$WORK/empty" "${RUSTLS_CLIENT[@]}" --versions 1.3 --groups X25519MLKEM768,x25519
    wait_servers
}

scenario_cipher-mismatch-tls12() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305
    wait_servers
}

scenario_cipher-mismatch-tls13() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256
    wait_servers
}

scenario_version-mismatch() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_2
    wait_servers
}

scenario_unknown-sni() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_2 -servername server.test -servername_fatal \
        -cert2 "$PKI/server.pem" -key2 "$PKI/server.key"
    wait_listen
    client 15 "$WORK/request" openssl s_client -connect "$SADDR:$PORT" -servername unknown.test \
        -CAfile "$PKI/ca.pem" -verify_return_error -brief -ign_eof -tls1_2
    wait_servers
}

scenario_bad-cert-tls12() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_2
    wait_listen
    client 15 "$WORK/request" openssl s_client -connect "$SADDR:$PORT" -servername server.test \
        -CAfile "$PKI/other-ca.pem" -verify_return_error -brief -ign_eof -tls1_2
    wait_servers
}

# rustls switches to handshake keys as soon as it reads the ServerHello, so its
# unknown_ca alert travels encrypted: on the wire, a short application_data record.
scenario_bad-cert-tls13() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3
    wait_listen
    client 15 "$WORK/empty" "$PEER" client --connect "$SADDR:$PORT" --sni server.test \
        --ca "$PKI/other-ca.pem" --versions 1.3
    wait_servers
}

# OpenSSL's client installs its handshake write keys only when it sends its own
# second flight: an alert about the server's certificate goes out in plaintext even
# in TLS 1.3.
scenario_bad-cert-tls13-openssl() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3
    wait_listen
    client 15 "$WORK/request" openssl s_client -connect "$SADDR:$PORT" -servername server.test \
        -CAfile "$PKI/other-ca.pem" -verify_return_error -brief -ign_eof -tls1_3
    wait_servers
}

scenario_client-cert-missing-tls12() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_2 -Verify 1 -CAfile "$PKI/ca.pem"
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_2
    wait_servers
}

scenario_client-cert-missing-tls13() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3 -Verify 1 -CAfile "$PKI/ca.pem"
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3
    wait_servers
}

scenario_client-cert-ok() {
    serve 20 "${RUSTLS_SERVER[@]}" --versions 1.3 --client-ca "$PKI/ca.pem"
    wait_listen
    client 15 "$WORK/empty" "${RUSTLS_CLIENT[@]}" --versions 1.3 \
        --client-cert "$PKI/client.pem" --client-key "$PKI/client.key"
    wait_servers
}

scenario_hello-retry() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3 -groups X25519
    wait_listen
    # The client's first key share is P-256; the server only takes X25519.
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3 -groups P-256:X25519
    wait_servers
}

resumption_pair() {
    local version=$1
    local server=("${OSSL_SERVER[@]}")
    server[-1]=2 # -naccept 2
    serve 30 "${server[@]}" "$version"
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" "$version" -sess_out "$WORK/session.pem"
    [[ -s $WORK/session.pem ]] || die "first connection saved no session"
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" "$version" -sess_in "$WORK/session.pem"
    wait_servers
}

scenario_resumption-tls12() { resumption_pair -tls1_2; }
scenario_resumption-tls13() { resumption_pair -tls1_3; }

scenario_rustls-resumption-tls13() {
    serve 20 "${RUSTLS_SERVER[@]}" --versions 1.3 --accept 2
    wait_listen
    client 15 "$WORK/empty" "${RUSTLS_CLIENT[@]}" --versions 1.3 --connections 2
    wait_servers
}

scenario_rustls-resumption-tls12() {
    serve 20 "${RUSTLS_SERVER[@]}" --versions 1.2 --accept 2
    wait_listen
    client 15 "$WORK/empty" "${RUSTLS_CLIENT[@]}" --versions 1.2 --connections 2
    wait_servers
}

scenario_server-reset() {
    serve 20 "${LISTENER[@]}" reset "$SADDR" "$PORT"
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3
    wait_servers
}

# The client gives up after 12 s, past tlsmon's default 10 s handshake timeout.
scenario_server-silent() {
    serve 40 "${LISTENER[@]}" silent "$SADDR" "$PORT" --hold 20
    wait_listen
    client 12 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3
    wait_servers
}

scenario_plain-http() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_2
    wait_listen
    client 15 "$WORK/empty" curl -sS --max-time 5 "http://$SADDR:$PORT/hello.txt"
    wait_servers
}

# 48 ALPN names of 20 bytes make a ClientHello of about 1.3 KB: with MTU 600 it
# crosses the wire in 3 TCP segments.
big_alpn() {
    local i names=()
    for ((i = 1; i <= 48; i++)); do names+=("$(printf 'tlsmon-corpus-alpn%02d' "$i")"); done
    names+=(http/1.1)
    local IFS=,
    echo "${names[*]}"
}

scenario_ch-split() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3 -alpn http/1.1
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3 -alpn "$(big_alpn)"
    wait_servers
}

# A server certificate chain over 64 KiB (the leaf, then three ~27 KB padding
# certificates): the Certificate message spans several 16 KiB records.
scenario_large-chain-tls12() {
    # tshark does not reassemble a handshake message this long: the leaf's expiry
    # is written down here for tools/expect.py.
    log "server certificate $(openssl x509 -in "$PKI/server.pem" -noout -enddate)"
    serve 20 "${OSSL_SERVER[@]}" -cert_chain "$PKI/large-chain.pem" -tls1_2 \
        -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -groups X25519
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_2
    wait_servers
}

scenario_large-chain-tls13() {
    serve 20 "${OSSL_SERVER[@]}" -cert_chain "$PKI/large-chain.pem" -tls1_3 \
        -ciphersuites TLS_AES_128_GCM_SHA256 -groups X25519
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3
    wait_servers
}

# The same large ClientHello cut into TLS records of at most 512 bytes.
scenario_ch-multirecord() {
    serve 20 "${OSSL_SERVER[@]}" -tls1_3 -alpn http/1.1
    wait_listen
    client 15 "$WORK/request" "${OSSL_CLIENT[@]}" -tls1_3 -alpn "$(big_alpn)" -max_send_frag 512
    wait_servers
}

# name | scenario function | MTU | capture interface | capture tool | file extension
SCENARIOS=(
    "tls12-ok|1500|veth-s|tcpdump|pcap"
    "tls13-ok|1500|veth-s|tcpdump|pcap"
    "tls12-sll2|1500|any|tcpdump|pcap"
    "tls13-ipv6|1500|veth-s|tcpdump|pcap"
    "gnutls-tls12-ok|1500|veth-s|tcpdump|pcap"
    "gnutls-tls13-ok|1500|veth-s|dumpcap|pcapng"
    "rustls-tls13-ok|1500|veth-s|tcpdump|pcap"
    "rustls-tls12-ok|1500|veth-s|tcpdump|pcap"
    "pq-hybrid|1500|veth-s|tcpdump|pcap"
    "cipher-mismatch-tls12|1500|veth-s|tcpdump|pcap"
    "cipher-mismatch-tls13|1500|veth-s|tcpdump|pcap"
    "version-mismatch|1500|veth-s|tcpdump|pcap"
    "unknown-sni|1500|veth-s|tcpdump|pcap"
    "bad-cert-tls12|1500|veth-s|tcpdump|pcap"
    "bad-cert-tls13|1500|veth-s|tcpdump|pcap"
    "bad-cert-tls13-openssl|1500|veth-s|tcpdump|pcap"
    "client-cert-missing-tls12|1500|veth-s|tcpdump|pcap"
    "client-cert-missing-tls13|1500|veth-s|tcpdump|pcap"
    "client-cert-ok|1500|veth-s|tcpdump|pcap"
    "hello-retry|1500|veth-s|tcpdump|pcap"
    "resumption-tls12|1500|veth-s|tcpdump|pcap"
    "resumption-tls13|1500|veth-s|tcpdump|pcap"
    "rustls-resumption-tls12|1500|veth-s|tcpdump|pcap"
    "rustls-resumption-tls13|1500|veth-s|tcpdump|pcap"
    "server-reset|1500|veth-s|tcpdump|pcap"
    "server-silent|1500|veth-s|tcpdump|pcap"
    "plain-http|1500|veth-s|tcpdump|pcap"
    "ch-split|600|veth-s|tcpdump|pcap"
    "ch-multirecord|1500|veth-s|tcpdump|pcap"
    "large-chain-tls12|1500|veth-s|tcpdump|pcap"
    "large-chain-tls13|1500|veth-s|tcpdump|pcap"
)

record_one() {
    local name=$1 mtu=$2 iface=$3 tool=$4 ext=$5
    local out=$CORPUS/$name.$ext
    LOG=$CORPUS/logs/$name.log
    : >"$LOG"
    log "scenario $name: mtu $mtu, capture on $iface with $tool"
    netns_up "$mtu"
    local tmp=$WORK/capture.$ext
    rm -f "$tmp"
    capture_start "$tmp" "$iface" "$tool"
    "scenario_$name"
    capture_stop
    netns_down
    mv "$tmp" "$out"
    chmod 0644 "$out"
    # Keys and paths differ per run: keep the logs readable and stable.
    sed -i -e "s|$WORK|WORK|g" -e "s|$ROOT/||g" "$LOG"
    echo "recorded $name.$ext ($(stat -c %s "$out") bytes)"
}

main() {
    if [[ ${1:-} == --list ]]; then
        printf '%s\n' "${SCENARIOS[@]%%|*}" reordered-duplicated
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "needs root (network namespaces, capture)"
    [[ -x $PEER ]] || die "rustls peer not found at $PEER: cargo build -p tlsmon-tests --bin rustls-peer"
    local want=("$@") entry name recorded=()
    mkdir -p "$CORPUS/logs" "$CORPUS/expected"
    make_pki
    for entry in "${SCENARIOS[@]}"; do
        name=${entry%%|*}
        if ((${#want[@]})) && [[ " ${want[*]} " != *" $name "* ]]; then
            continue
        fi
        IFS='|' read -r name mtu iface tool ext <<<"$entry"
        record_one "$name" "$mtu" "$iface" "$tool" "$ext"
        recorded+=("$name")
    done
    # Derived capture: ch-split with its segments reordered and duplicated.
    if ((${#want[@]} == 0)) || [[ " ${want[*]} " == *" reordered-duplicated "* ]]; then
        python3 "$CORPUS/tools/rewrite.py" reorder-duplicate \
            "$CORPUS/ch-split.pcap" "$CORPUS/reordered-duplicated.pcap"
        recorded+=(reordered-duplicated)
    fi
    python3 "$CORPUS/tools/expect.py" "${recorded[@]}"
}

main "$@"
