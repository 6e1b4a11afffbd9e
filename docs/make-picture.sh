#!/usr/bin/env bash
# Draws docs/failure-ratio-per-device.png, the README's picture: the failure ratio
# per network interface in the two-path scenario (tests/tests/dashboard.rs), as
# Prometheus's own graph page shows it, screenshotted by headless Chromium.
#
#   docs/make-picture.sh [ROUNDS] [PAUSE_SECONDS]
#
# As root, from anywhere in the repository. Runs the dashboard test with its
# connection mix repeated ROUNDS times (default 10), PAUSE_SECONDS apart
# (default 20), keeps the Prometheus data it scraped, serves that data with a
# second Prometheus on 127.0.0.1:9091, and photographs the graph. Needs the test
# suite's packages (`cargo xtask test-deps`) and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-10}
PAUSE=${2:-20}
OUT=docs/failure-ratio-per-device.png
LISTEN=127.0.0.1:9091
WORK=$(mktemp -d)
KEEP=$WORK/prometheus-data

[ "$(id -u)" = 0 ] || { echo "run as root (the scenario makes namespaces and loads BPF)" >&2; exit 1; }
command -v chromium >/dev/null || { echo "needs Debian's chromium: apt-get install chromium" >&2; exit 1; }

cleanup() {
    set +e
    [ -n "${PROM_PID:-}" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --package tlsmon --bin tlsmon
TLSMON_DASHBOARD_ROUNDS=$ROUNDS TLSMON_DASHBOARD_PAUSE_SECS=$PAUSE TLSMON_DASHBOARD_KEEP=$KEEP \
    flock /tmp/tlsmon-nettest.lock \
    cargo test --package tlsmon-tests --test dashboard -- --test-threads=1
read -r START END <"$KEEP/range"

# The kept data, served read-only in spirit: no scrape jobs, nothing new written.
printf 'global:\n  scrape_interval: 1m\n' >"$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$KEEP" \
    --web.listen-address="$LISTEN" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
for _ in $(seq 100); do
    curl -sf "http://$LISTEN/-/ready" >/dev/null && break
    sleep 0.2
done
curl -sf "http://$LISTEN/-/ready" >/dev/null || { cat "$WORK/prometheus.log"; exit 1; }

# The same ratio as the dashboard's panel; an interface without failures has no
# failed series, hence the `or ... * 0`, so that it shows as 0 and not as nothing.
EXPR='(sum by (device) (rate(tlsmon_handshakes_total{outcome="failed"}[1m]))
  or sum by (device) (rate(tlsmon_handshakes_total[1m])) * 0)
/ sum by (device) (rate(tlsmon_handshakes_total[1m]))'
# From a minute before the first handshake to the next whole minute after the
# last (the graph page takes its end time in minutes, UTC).
END_MIN=$(((END + 59) / 60 * 60))
RANGE=$((END_MIN - START + 60))
END_INPUT=$(date -u -d "@$END_MIN" '+%Y-%m-%d %H:%M')
urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
URL="http://$LISTEN/graph?g0.expr=$(urlencode "$EXPR")&g0.tab=0&g0.range_input=${RANGE}s&g0.end_input=$(urlencode "$END_INPUT")"

chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1280,1000 --virtual-time-budget=15000 \
    --screenshot="$PWD/$OUT" "$URL" 2>"$WORK/chromium.log" ||
    { cat "$WORK/chromium.log"; exit 1; }
echo "wrote $OUT (traffic from $(date -u -d "@$START" +%T) to $(date -u -d "@$END" +%T) UTC)"
