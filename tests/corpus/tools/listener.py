#!/usr/bin/env python3
"""A TCP listener that misbehaves on purpose, for recording failure captures.

  listener.py reset  ADDR PORT   read the client's first bytes, then abort the
                                 connection (SO_LINGER 0 -> the kernel sends RST)
  listener.py silent ADDR PORT   read the client's first bytes, then say nothing
                                 until the client goes away (or --hold seconds)

Serves one connection and exits. Standard library only.
"""
import argparse
import socket
import struct
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["reset", "silent"])
    parser.add_argument("addr")
    parser.add_argument("port", type=int)
    parser.add_argument("--hold", type=float, default=30.0,
                        help="silent mode: seconds to wait for the client to leave")
    args = parser.parse_args()

    family = socket.AF_INET6 if ":" in args.addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((args.addr, args.port))
        lsock.listen(1)
        lsock.settimeout(30)
        conn, peer = lsock.accept()
        conn.settimeout(10)
        first = conn.recv(65536)
        print(f"listener: {len(first)} bytes from {peer[0]}:{peer[1]}", flush=True)
        if args.mode == "reset":
            # Linger on with a zero timeout: close() discards and sends RST.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return 0
        # Silent: drain whatever else arrives, answer nothing, until EOF or --hold.
        conn.settimeout(args.hold)
        try:
            while conn.recv(65536):
                pass
        except socket.timeout:
            pass
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
