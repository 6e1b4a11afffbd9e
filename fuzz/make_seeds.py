#!/usr/bin/env python3
"""Writes the synthetic seeds of the fuzz corpus.

- capture_file: the first 8 packets of the recorded loopback capture re-framed as
  Linux cooked v2 (SLL2), as raw IP in a big-endian nanosecond pcap, and with an
  802.1Q tag (run record_seeds.sh first; it calls this script).
- reassembler: short op sequences in the target's input format (see
  fuzz_targets/reassembler.rs): in order, reordered and duplicated, conflicting
  overlap, wrap-around, cut bytes then skip, limits, mid-stream start.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def capture_seeds():
    d = os.path.join(HERE, "corpus", "capture_file")
    data = open(os.path.join(d, "real-openssl-tls13-tls12.pcap"), "rb").read()
    assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4, "expected a little-endian usec pcap"
    off, recs = 24, []
    while off < len(data):
        ts, us, incl, _orig = struct.unpack("<IIII", data[off:off + 16])
        off += 16
        recs.append((ts, us, data[off:off + incl]))
        off += incl
    recs = recs[:8]

    def write(name, endian, magic, link, frames):
        out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, link)
        for ts, frac, frame in frames:
            out += struct.pack(endian + "IIII", ts, frac, len(frame), len(frame)) + frame
        open(os.path.join(d, name), "wb").write(out)

    def sll2(frame):
        return struct.pack(">HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, b"\x02\0\0\0\0\x01\0\0") + frame[14:]

    def vlan(frame):
        return frame[:12] + b"\x81\x00\x00\x64" + frame[12:]

    write("synthetic-sll2-first8.pcap", "<", 0xA1B2C3D4, 276, [(t, u, sll2(f)) for t, u, f in recs])
    write("synthetic-rawip-bigendian-ns-first8.pcap", ">", 0xA1B23C4D, 101,
          [(t, u * 1000, f[14:]) for t, u, f in recs])
    write("synthetic-vlan-first8.pcap", "<", 0xA1B2C3D4, 1, [(t, u, vlan(f)) for t, u, f in recs])


def reassembler_seeds():
    d = os.path.join(HERE, "corpus", "reassembler")
    os.makedirs(d, exist_ok=True)

    def hdr(buffered, stream, base):
        return struct.pack("<HHI", buffered, stream, base)

    def push(delta, length, extra, syn=False):
        return bytes([0x40 if syn else 0]) + struct.pack("<HBB", delta, length, extra)

    drain, skip = bytes([2]), bytes([3])
    seeds = {
        "in-order": hdr(4000, 60000, 1000) + push(0x4000, 0, 1, True) + push(0x4001, 100, 2)
        + push(0x4001 + 100, 100, 3) + drain,
        "reordered-duplicated": hdr(4000, 60000, 5) + push(0x4000, 50, 1) + push(0x4000 + 100, 50, 3)
        + push(0x4000 + 50, 50, 2) + push(0x4000 + 50, 50, 2) + drain,
        "overlap-conflict": hdr(4000, 60000, 7) + push(0x4000, 0, 0, True) + push(0x4010, 20, 9)
        + push(0x4001, 60, 4) + drain,
        "wrap-around": hdr(4000, 60000, 0xFFFFFFF0) + push(0x4000, 0, 0, True) + push(0x4001, 40, 1)
        + push(0x4001 + 40, 40, 2) + drain,
        "cut-then-skip": hdr(4000, 60000, 99) + push(0x4000, 30, 0x85) + drain
        + push(0x4000 + 35, 10, 1) + skip + drain,
        "limits": hdr(64, 300, 3) + push(0x4000, 0, 0, True) + push(0x4100, 200, 1)
        + push(0x4200, 200, 1) + push(0x4001, 250, 2) + drain + skip + drain,
        "mid-stream-rebase": hdr(4000, 60000, 12345) + push(0x4100, 20, 1) + push(0x40F0, 16, 2)
        + drain + push(0x4000, 5, 3) + drain,
    }
    for name, data in seeds.items():
        open(os.path.join(d, name), "wb").write(data)


if __name__ == "__main__":
    capture_seeds()
    reassembler_seeds()
