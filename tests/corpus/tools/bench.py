#!/usr/bin/env python3
"""Offline-analysis benchmark: a large capture made of corpus flows, read by tlsmon
and by tshark, with wall time and peak memory of each (BENCHMARKS.md).

  bench.py generate OUT.pcap [--handshakes N] [--gap-us US]
  bench.py run BIG.pcap --tlsmon PATH [--runs R] [--tshark-runs R] [--skip-tshark]

generate: every TCP connection of the corpus's Ethernet pcap files is a template
(successes, each kind of failure, resumption, HRR, PQ, reset, silence, plain HTTP,
split and reordered ClientHellos). Handshake i replays template i mod T with its own
client address and port, one of 250 server addresses, and a start time i*gap after
the first; packets of overlapping connections are merged in time order through a
heap, so memory holds only the connections in progress (the 12 s silent ones
dominate), never the file. Checksums stay valid: each template packet's checksum
sum is computed once without its addresses and ports, which are added per copy.

run: times `tlsmon analyze BIG --format json` and `tshark -r BIG -Y tls.handshake
-T fields -e ...` (the same facts: addresses, ports, message types, versions, cipher
suites, SNI, alerts, JA3, JA3S) with /usr/bin/time -v, output to /dev/null, and
prints wall seconds, handshakes and packets per second and peak RSS: the median of
R runs (tshark, much slower, once by default). Standard library only.
"""
import argparse
import glob
import heapq
import ipaddress
import os
import re
import statistics
import struct
import subprocess
import sys

import pcaplib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.dirname(HERE)

TSHARK_FIELDS = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
                 "tls.handshake.type", "tls.handshake.extensions.supported_version",
                 "tls.handshake.ciphersuite", "tls.handshake.extensions_server_name",
                 "tls.alert_message.desc", "tls.handshake.ja3", "tls.handshake.ja3s"]


def fold(total):
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def word_sum(data):
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


class TemplatePacket:
    """A packet of a template connection, with its checksum sums minus the fields that
    each copy rewrites (addresses, ports)."""

    __slots__ = ("offset_us", "data", "from_client", "v4", "ip_off", "tcp_off",
                 "ip_partial", "tcp_partial")

    def __init__(self, offset_us, packet, from_client):
        self.offset_us = offset_us
        self.from_client = from_client
        data = bytearray(packet.data)
        ip_off, version, tcp_off = packet._ip()
        self.v4 = version == 4
        self.ip_off, self.tcp_off = ip_off, tcp_off
        if self.v4:
            end = ip_off + struct.unpack_from("!H", data, ip_off + 2)[0]
            header = bytearray(data[ip_off:tcp_off])
            header[10:12] = b"\0\0"
            header[12:20] = bytes(8)
            self.ip_partial = word_sum(header)
            tcp_len = end - tcp_off
        else:
            end = ip_off + 40 + struct.unpack_from("!H", data, ip_off + 4)[0]
            self.ip_partial = 0
            tcp_len = end - tcp_off
        del data[end:]  # Ethernet padding of short frames carries no checksum.
        segment = bytearray(data[tcp_off:end])
        segment[0:4] = b"\0\0\0\0"  # ports
        segment[16:18] = b"\0\0"  # checksum
        self.tcp_partial = word_sum(segment) + 6 + (tcp_len >> 16) + (tcp_len & 0xFFFF)
        self.data = bytes(data)

    def copy_for(self, client_ip, server_ip, client_port, server_port):
        """This packet as part of a copy between the given endpoints."""
        data = bytearray(self.data)
        if self.from_client:
            src, dst, sport, dport = client_ip, server_ip, client_port, server_port
        else:
            src, dst, sport, dport = server_ip, client_ip, server_port, client_port
        ip, tcp = self.ip_off, self.tcp_off
        if self.v4:
            data[ip + 12:ip + 16] = src
            data[ip + 16:ip + 20] = dst
            addr_sum = word_sum(src) + word_sum(dst)
            struct.pack_into("!H", data, ip + 10, ~fold(self.ip_partial + addr_sum) & 0xFFFF)
        else:
            data[ip + 8:ip + 24] = src
            data[ip + 24:ip + 40] = dst
            addr_sum = word_sum(src) + word_sum(dst)
        struct.pack_into("!HH", data, tcp, sport, dport)
        total = self.tcp_partial + addr_sum + sport + dport
        struct.pack_into("!H", data, tcp + 16, ~fold(total) & 0xFFFF)
        return data


def load_templates():
    """Every TCP connection of the corpus's Ethernet pcap files, as packet lists."""
    templates = []
    for path in sorted(glob.glob(os.path.join(CORPUS, "*.pcap"))):
        try:
            packets = list(pcaplib.read(path))
        except pcaplib.PcapError as err:
            print(f"bench.py: skipping {err}", file=sys.stderr)
            continue
        connections = {}
        for p in packets:
            t = p.tcp()
            if t is None:
                continue
            src, dst, sport, dport = t[:4]
            key = tuple(sorted([(src, sport), (dst, dport)]))
            connections.setdefault(key, []).append((p, t))
        for conn in connections.values():
            syn = next(((p, t) for p, t in conn
                        if t[5] & pcaplib.TCP_SYN and not t[5] & pcaplib.TCP_ACK), conn[0])
            client = (syn[1][0], syn[1][2])
            server_port = syn[1][3]
            start = conn[0][0].ts_us
            templates.append((os.path.basename(path), server_port, [
                TemplatePacket(p.ts_us - start, p, (t[0], t[2]) == client)
                for p, t in conn]))
    return templates


def endpoints(i, v4):
    """Distinct client address and port for handshake i; one of 250 servers."""
    port = 10000 + (i // 60000)
    if v4:
        client = ipaddress.IPv4Address("198.18.0.0") + 1 + (i % 60000)
        server = ipaddress.IPv4Address("198.19.0.0") + 1 + (i % 250)
    else:
        client = ipaddress.IPv6Address("2001:db8:1::") + 1 + (i % 60000)
        server = ipaddress.IPv6Address("2001:db8:2::") + 1 + (i % 250)
    return client.packed, server.packed, port


# Templates live capture does not follow, by the README's rules ("Live and
# offline agree"): a connection whose first payload is not a ClientHello (plain
# HTTP on a TLS port is a `not_tls` record offline, and nothing live), and a
# ClientHello whose first segment arrives after a later one (the kernel starts
# following a connection at a payload that begins a ClientHello). The replay
# benchmark leaves them out, so the daemon's count can equal analyze's.
LIVE_INVISIBLE = ("plain-http.pcap", "reordered-duplicated.pcap")


def generate(out, handshakes, gap_us, live_visible=False):
    templates = load_templates()
    if live_visible:
        templates = [t for t in templates if t[0] not in LIVE_INVISIBLE]
    if not templates:
        raise SystemExit("bench.py: no templates found in the corpus")
    base_us = 1_700_000_000 * 1_000_000
    heap = []  # (ts_us, handshake index, packet index)
    live = {}  # handshake index -> (template packets, client, server, port, server port)
    next_hs = 0
    written = 0
    peak_live = 0
    with pcaplib.Writer(out) as writer:
        while True:
            # Start every handshake due before the earliest pending packet.
            while next_hs < handshakes and (not heap or base_us + next_hs * gap_us <= heap[0][0]):
                _, server_port, packets = templates[next_hs % len(templates)]
                client, server, port = endpoints(next_hs, packets[0].v4)
                live[next_hs] = (packets, client, server, port, server_port)
                start = base_us + next_hs * gap_us
                heapq.heappush(heap, (start + packets[0].offset_us, next_hs, 0))
                next_hs += 1
            if not heap:
                break
            peak_live = max(peak_live, len(live))
            ts, hs, idx = heapq.heappop(heap)
            packets, client, server, port, server_port = live[hs]
            data = packets[idx].copy_for(client, server, port, server_port)
            writer.write(pcaplib.Packet(ts, data))
            written += 1
            if idx + 1 < len(packets):
                start = ts - packets[idx].offset_us
                heapq.heappush(heap, (start + packets[idx + 1].offset_us, hs, idx + 1))
            else:
                del live[hs]
    size = os.path.getsize(out)
    print(f"{out}: {handshakes} handshakes from {len(templates)} template connections, "
          f"{written} packets, {size / 1e6:.1f} MB, at most {peak_live} connections open")


def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (wall s, CPU s, peak RSS KiB)."""
    with open(os.devnull, "wb") as null:
        proc = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=null,
                              stderr=subprocess.PIPE, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"bench.py: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    user = re.search(r"User time \(seconds\): ([\d.]+)", proc.stderr)
    system = re.search(r"System time \(seconds\): ([\d.]+)", proc.stderr)
    hours, minutes, seconds = wall.groups()
    return (int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds),
            float(user.group(1)) + float(system.group(1)), int(rss.group(1)))


def count_handshakes(tlsmon, capture):
    out = subprocess.run([tlsmon, "analyze", capture, "--format", "json"],
                         capture_output=True, check=True, timeout=3600).stdout
    return out.count(b"\n")


def run(capture, tlsmon, runs, tshark_runs, skip_tshark):
    handshakes = count_handshakes(tlsmon, capture)
    packets = sum(1 for _ in pcaplib.read(capture))
    print(f"{capture}: {packets} packets, {os.path.getsize(capture) / 1e6:.1f} MB, "
          f"tlsmon reports {handshakes} handshakes")
    tools = [("tlsmon", [tlsmon, "analyze", capture, "--format", "json"], runs)]
    if not skip_tshark:
        tshark = ["tshark", "-r", capture, "-Y", "tls.handshake", "-T", "fields"]
        for field in TSHARK_FIELDS:
            tshark += ["-e", field]
        tools.append(("tshark", tshark, tshark_runs))
    results = {}
    for name, cmd, count in tools:
        samples = [timed(cmd) for _ in range(count)]
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        rss = max(s[2] for s in samples)
        results[name] = (wall, cpu)
        print(f"{name}: {' '.join(cmd)}")
        print(f"  wall {wall:.2f} s (runs: {', '.join(f'{s[0]:.2f}' for s in samples)}), "
              f"CPU {cpu:.2f} s (runs: {', '.join(f'{s[1]:.2f}' for s in samples)})")
        print(f"  per CPU second: {handshakes / cpu:,.0f} handshakes, {packets / cpu:,.0f} "
              f"packets, {os.path.getsize(capture) / 1e6 / cpu:.1f} MB; "
              f"peak RSS {rss / 1024:.1f} MiB")
    if "tshark" in results:
        print(f"tlsmon/tshark speed: {results['tshark'][0] / results['tlsmon'][0]:.1f}x "
              f"by wall time, {results['tshark'][1] / results['tlsmon'][1]:.1f}x by CPU time")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a large capture of corpus flows")
    gen.add_argument("out")
    gen.add_argument("--handshakes", type=int, default=100_000)
    gen.add_argument("--gap-us", type=int, default=1000,
                     help="microseconds between the starts of consecutive handshakes")
    gen.add_argument("--live-visible", action="store_true",
                     help="only templates live capture follows (see LIVE_INVISIBLE)")
    bench = sub.add_parser("run", help="time tlsmon and tshark on a capture")
    bench.add_argument("capture")
    bench.add_argument("--tlsmon", required=True, help="path of the tlsmon binary")
    bench.add_argument("--runs", type=int, default=3)
    bench.add_argument("--tshark-runs", type=int, default=1)
    bench.add_argument("--skip-tshark", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "generate":
        generate(args.out, args.handshakes, args.gap_us, args.live_visible)
    else:
        run(args.capture, args.tlsmon, args.runs, args.tshark_runs, args.skip_tshark)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
