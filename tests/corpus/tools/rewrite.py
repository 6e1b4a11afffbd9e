#!/usr/bin/env python3
"""Derives corpus captures from recorded ones by rewriting their packets.

  rewrite.py reorder-duplicate IN.pcap OUT.pcap

reorder-duplicate: for the first TCP connection of IN, whose ClientHello must span
at least two segments, swap the ClientHello's first two segments in capture order
(the second arrives first), and send twice, right after the original, the server's
first data segment and the client's first data segment after the ClientHello
(exact retransmissions). Timestamps stay in capture order: each slot keeps its
original time and a duplicate is stamped 1 microsecond after its original. The
handshake is unchanged, so its expected facts are those of the input.
Standard library only (see pcaplib.py).
"""
import struct
import sys

import pcaplib


def tls_record_end(first_payload):
    """Bytes of the first TLS record (header included), from its header."""
    if len(first_payload) < 5 or first_payload[0] != 22:
        raise SystemExit("rewrite.py: the first client payload is not a TLS handshake record")
    return 5 + struct.unpack("!H", first_payload[3:5])[0]


def reorder_duplicate(packets):
    parsed = [p.tcp() for p in packets]
    syn = next(i for i, t in enumerate(parsed)
               if t and t[5] & pcaplib.TCP_SYN and not t[5] & pcaplib.TCP_ACK)
    client = (parsed[syn][0], parsed[syn][2])
    data = [i for i, t in enumerate(parsed) if t and t[6]]
    client_data = [i for i in data if (parsed[i][0], parsed[i][2]) == client]
    server_data = [i for i in data if (parsed[i][0], parsed[i][2]) != client]
    # The ClientHello's segments: client data until its first record is complete.
    need = tls_record_end(parsed[client_data[0]][6])
    hello, have = [], 0
    for i in client_data:
        hello.append(i)
        have += len(parsed[i][6])
        if have >= need:
            break
    if len(hello) < 2:
        raise SystemExit("rewrite.py: the ClientHello is in one segment; nothing to reorder")
    after_hello = next(i for i in client_data if i > hello[-1])
    duplicate = {server_data[0], after_hello}

    order = list(range(len(packets)))
    order[hello[0]], order[hello[1]] = hello[1], hello[0]
    out = []
    for slot, i in enumerate(order):
        p = packets[i].copy()
        p.ts_us = packets[slot].ts_us
        out.append(p)
        if i in duplicate:
            again = p.copy()
            again.ts_us += 1
            out.append(again)
    return out


def main(argv):
    if len(argv) != 4 or argv[1] != "reorder-duplicate":
        print(__doc__, file=sys.stderr)
        return 2
    packets = list(pcaplib.read(argv[2]))
    with pcaplib.Writer(argv[3]) as w:
        for p in reorder_duplicate(packets):
            w.write(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
