"""Just enough classic-pcap and Ethernet/IPv4/IPv6/TCP handling to rewrite captures.

Written by hand because the corpus tools must run with the standard library alone
(scapy is not installed here, and rewriting needs only fixed header offsets). It
reads and writes little-endian microsecond pcap with Ethernet frames, the format
tcpdump writes on a veth; anything else is refused with a clear error.
"""
import struct

PCAP_MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


class PcapError(Exception):
    """The file is not a capture these tools can rewrite."""


class Packet:
    """One captured frame: timestamp in microseconds and the Ethernet frame bytes."""

    __slots__ = ("ts_us", "data")

    def __init__(self, ts_us, data):
        self.ts_us = ts_us
        self.data = bytearray(data)

    def copy(self):
        return Packet(self.ts_us, self.data)

    def _ip(self):
        """(IP header offset, version, TCP header offset), or None if not TCP."""
        if len(self.data) < 14:
            return None
        ethertype = struct.unpack_from("!H", self.data, 12)[0]
        if ethertype == ETH_IPV4 and len(self.data) >= 34:
            ihl = (self.data[14] & 0x0F) * 4
            if self.data[23] != 6:
                return None
            return 14, 4, 14 + ihl
        if ethertype == ETH_IPV6 and len(self.data) >= 54 and self.data[20] == 6:
            return 14, 6, 54
        return None

    def tcp(self):
        """(src, dst, sport, dport, seq, flags, payload) or None if not TCP."""
        ip = self._ip()
        if ip is None:
            return None
        off, version, tcp = ip
        if version == 4:
            src, dst = bytes(self.data[off + 12:off + 16]), bytes(self.data[off + 16:off + 20])
            end = off + struct.unpack_from("!H", self.data, off + 2)[0]
        else:
            src, dst = bytes(self.data[off + 8:off + 24]), bytes(self.data[off + 24:off + 40])
            end = off + 40 + struct.unpack_from("!H", self.data, off + 4)[0]
        sport, dport, seq = struct.unpack_from("!HHI", self.data, tcp)
        flags = self.data[tcp + 13]
        data_off = (self.data[tcp + 12] >> 4) * 4
        return src, dst, sport, dport, seq, flags, bytes(self.data[tcp + data_off:end])

    def rewrite_endpoints(self, src, dst, sport, dport):
        """Replaces addresses (same family, as bytes) and ports; fixes checksums."""
        off, version, tcp = self._ip()
        if version == 4:
            self.data[off + 12:off + 16] = src
            self.data[off + 16:off + 20] = dst
            struct.pack_into("!H", self.data, off + 10, 0)
            struct.pack_into("!H", self.data, off + 10,
                             checksum(self.data[off:tcp]))
        else:
            self.data[off + 8:off + 24] = src
            self.data[off + 24:off + 40] = dst
        struct.pack_into("!HH", self.data, tcp, sport, dport)
        self.fix_tcp_checksum()

    def fix_tcp_checksum(self):
        off, version, tcp = self._ip()
        if version == 4:
            end = off + struct.unpack_from("!H", self.data, off + 2)[0]
            pseudo = bytes(self.data[off + 12:off + 20]) + struct.pack("!BBH", 0, 6, end - tcp)
        else:
            end = off + 40 + struct.unpack_from("!H", self.data, off + 4)[0]
            pseudo = bytes(self.data[off + 8:off + 40]) + struct.pack("!IxxxB", end - tcp, 6)
        struct.pack_into("!H", self.data, tcp + 16, 0)
        struct.pack_into("!H", self.data, tcp + 16,
                         checksum(pseudo + bytes(self.data[tcp:end])))


def checksum(data):
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def read(path):
    """Yields the packets of a classic little-endian microsecond Ethernet pcap."""
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24:
            raise PcapError(f"{path}: shorter than a pcap header")
        magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", header)
        if magic != PCAP_MAGIC_US:
            raise PcapError(f"{path}: not a little-endian microsecond pcap (magic {magic:#x})")
        if linktype != LINKTYPE_ETHERNET:
            raise PcapError(f"{path}: link type {linktype}, only Ethernet (1) is handled")
        while True:
            rec = f.read(16)
            if not rec:
                return
            if len(rec) < 16:
                raise PcapError(f"{path}: truncated record header at offset {f.tell() - len(rec)}")
            sec, usec, incl, _orig = struct.unpack("<IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                raise PcapError(f"{path}: truncated packet at offset {f.tell() - len(data)}")
            yield Packet(sec * 1_000_000 + usec, data)


class Writer:
    """Writes packets to a classic microsecond Ethernet pcap."""

    def __init__(self, path):
        self.file = open(path, "wb")
        self.file.write(struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, 262144,
                                    LINKTYPE_ETHERNET))

    def write(self, packet):
        n = len(packet.data)
        sec, usec = divmod(packet.ts_us, 1_000_000)
        self.file.write(struct.pack("<IIII", sec, usec, n, n))
        self.file.write(packet.data)

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
