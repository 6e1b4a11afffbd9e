#!/usr/bin/env python3
"""Second, independent JA4 implementation (FoxIO's JA4 spec, TLS over TCP only).

tshark 4.0 on this machine predates JA4, so record.sh runs this over every
NAME.client.bin and writes ja4_reference.txt ("NAME|JA4" per ClientHello), which
tests_captured.rs compares with the Rust implementation. It reassembles handshake
records itself and shares no code with tlsmon.
"""
import hashlib
import sys


def grease(v):
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def u16s(b):
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b) - 1, 2)]


def client_hellos(stream):
    """Yields ClientHello bodies from the handshake records of one direction."""
    hs, i = b"", 0
    while i + 5 <= len(stream):
        ctype, length = stream[i], int.from_bytes(stream[i + 3:i + 5], "big")
        if ctype == 22:
            hs += stream[i + 5:i + 5 + length]
        i += 5 + length
        while len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
            n = int.from_bytes(hs[1:4], "big")
            if hs[0] == 1:
                yield hs[4:4 + n]
            hs = hs[4 + n:]


def ja4(body):
    p = 2 + 32
    legacy = int.from_bytes(body[0:2], "big")
    p += 1 + body[p]
    n = int.from_bytes(body[p:p + 2], "big")
    ciphers = [c for c in u16s(body[p + 2:p + 2 + n]) if not grease(c)]
    p += 2 + n
    p += 1 + body[p]
    end = p + 2 + int.from_bytes(body[p:p + 2], "big")
    p += 2
    exts, versions, sigalgs, alpn = [], [], [], None
    while p + 4 <= end:
        t, n = int.from_bytes(body[p:p + 2], "big"), int.from_bytes(body[p + 2:p + 4], "big")
        data = body[p + 4:p + 4 + n]
        p += 4 + n
        if grease(t):
            continue
        exts.append(t)
        if t == 43:
            versions = [v for v in u16s(data[1:]) if not grease(v)]
        elif t == 13:
            sigalgs = [s for s in u16s(data[2:]) if not grease(s)]
        elif t == 16 and len(data) > 3:
            alpn = data[3:3 + data[2]]
    version = max(versions) if versions else legacy
    code = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}.get(version, "00")
    if not alpn:
        a = "00"
    elif chr(alpn[0]).isalnum() and chr(alpn[-1]).isalnum() and alpn[0] < 128 and alpn[-1] < 128:
        a = chr(alpn[0]) + chr(alpn[-1])
    else:
        h = alpn.hex()
        a = h[0] + h[-1]
    part_a = "t%s%s%02d%02d%s" % (code, "d" if 0 in exts else "i", min(len(ciphers), 99),
                                  min(len(exts), 99), a)
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()[:12]
    part_b = sha(",".join("%04x" % c for c in sorted(ciphers))) if ciphers else "0" * 12
    rest = sorted(e for e in exts if e not in (0, 16))
    text = ",".join("%04x" % e for e in rest)
    if sigalgs:
        text += "_" + ",".join("%04x" % s for s in sigalgs)
    part_c = sha(text) if rest else "0" * 12
    return "%s_%s_%s" % (part_a, part_b, part_c)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        name = path.rsplit("/", 1)[-1].removesuffix(".client.bin")
        for body in client_hellos(open(path, "rb").read()):
            print("%s|%s" % (name, ja4(body)))
