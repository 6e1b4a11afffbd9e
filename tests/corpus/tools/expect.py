#!/usr/bin/env python3
"""Writes expected/<scenario>.json: what tlsmon must report for each corpus capture.

    python3 tools/expect.py [SCENARIO...]     (default: every scenario below)

The facts come from two sources that do not involve tlsmon:

1. Construction. SCENARIOS below states, for each capture, what the recording
   (record.sh) set up: the versions, cipher suites and groups each side was limited
   to, which side was made to fail and how. From those follow the outcome, failure
   reason, alert and its sender, version, cipher, group, SNI, HelloRetryRequest and
   resumption, written here by hand with the reason beside them.
2. Observation by other tools. The stacks' own words in logs/<scenario>.log must
   agree (MARKERS: "CONNECTION ESTABLISHED", "session cache hits", alert numbers),
   and tshark must see on the wire every declared fact it can see (version, cipher,
   group, SNI, plaintext alerts and their sender, RST and FIN, HelloRetryRequest,
   PSK or abbreviated-handshake resumption). Facts nobody can declare by hand come
   from tshark alone: JA3 and JA3S, ports, the offered lists, ClientHello size and
   segment count, the server certificate's dates.

Any disagreement stops the script with an error, and nothing is written for that
scenario. Standard library only; needs tshark.
"""
import json
import os
import re
import subprocess
import sys
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.dirname(HERE)

HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
SERVER_SUBJECT = "CN=server.test,O=tlsmon test"
CA_ISSUER = "CN=tlsmon corpus CA,O=tlsmon test"

# Code points whose IANA names Wireshark 4.0 does not know, or knows by a name from
# before their IANA assignment (0x0200..0x0202 were OQS draft code points in its
# table): IANA "TLS Supported Groups" registry.
IANA_GROUP_OVERRIDES = {
    0x0200: "MLKEM512",
    0x0201: "MLKEM768",
    0x0202: "MLKEM1024",
    0x11EB: "SecP256r1MLKEM768",
    0x11EC: "X25519MLKEM768",
    0x11ED: "SecP384r1MLKEM1024",
}
VERSION_NAMES = {0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1",
                 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
# RFC 8446 / RFC 5246 alert names, as tlsmon prints them.
ALERT_NAMES = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
               40: "handshake_failure", 42: "bad_certificate", 46: "certificate_unknown",
               47: "illegal_parameter", 48: "unknown_ca", 50: "decode_error",
               51: "decrypt_error", 70: "protocol_version", 80: "internal_error",
               109: "missing_extension", 112: "unrecognized_name",
               116: "certificate_required", 120: "no_application_protocol"}


def established(version, cipher, group, **extra):
    """A handshake both sides finished."""
    facts = dict(outcome="established", failure_reason=None, alert=None,
                 alert_sender=None, closed_by=None, version=version, cipher=cipher,
                 group=group, sni="server.test", hello_retry=False, resumed=False)
    facts.update(extra)
    return facts


def failed(reason, version=None, cipher=None, group=None, alert=None,
           alert_sender=None, closed_by=None, **extra):
    """A handshake that failed for `reason`."""
    facts = dict(outcome="failed", failure_reason=reason, alert=alert,
                 alert_sender=alert_sender, closed_by=closed_by, version=version,
                 cipher=cipher, group=group, sni="server.test", hello_retry=False,
                 resumed=False)
    facts.update(extra)
    return facts


ECDSA_AES128_GCM = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
ECDSA_AES256_GCM = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
ECDSA_CHACHA = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
OSSL_OK = ("CONNECTION ESTABLISHED", 1)
RUSTLS_OK = ("rustls-peer client: conn=", 1)

# name -> file, why (how the facts follow from the recording), log markers
# ((regex, exact count) pairs), and the handshakes in ClientHello order.
SCENARIOS = {
    "tls12-ok": dict(
        why="OpenSSL both sides, TLS 1.2 only; the server allows only "
            "ECDHE-ECDSA-AES128-GCM-SHA256 and group X25519 (ServerKeyExchange).",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.2", ECDSA_AES128_GCM, "x25519")]),
    "tls13-ok": dict(
        why="OpenSSL both sides, TLS 1.3 only; the server allows only "
            "TLS_CHACHA20_POLY1305_SHA256 and X25519.",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", "x25519")]),
    "tls12-sll2": dict(
        why="As tls12-ok, captured with `tcpdump -i any` (Linux cooked SLL2 frames).",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.2", ECDSA_AES128_GCM, "x25519")]),
    "tls13-ipv6": dict(
        why="OpenSSL over IPv6, TLS 1.3; server allows only TLS_AES_128_GCM_SHA256 and "
            "P-256, the client's first group and key share is P-256.",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_128_GCM_SHA256", "secp256r1")]),
    "gnutls-tls12-ok": dict(
        why="GnuTLS both sides, TLS 1.2; the server's priority allows only AES-256-GCM "
            "and SECP256R1, with an ECDSA certificate. gnutls-serv asks for a client "
            "certificate (optional); the client sends an empty one.",
        markers=[("Handshake was completed", 1)],
        handshakes=[established("TLSv1.2", ECDSA_AES256_GCM, "secp256r1")]),
    "gnutls-tls13-ok": dict(
        file="gnutls-tls13-ok.pcapng",
        why="GnuTLS both sides, TLS 1.3; the server allows only AES-128-GCM and X25519, "
            "which is among the client's key shares (no HelloRetryRequest). pcapng.",
        markers=[("Handshake was completed", 1)],
        handshakes=[established("TLSv1.3", "TLS_AES_128_GCM_SHA256", "x25519")]),
    "rustls-tls13-ok": dict(
        why="rustls both sides, TLS 1.3; server allows only TLS_AES_128_GCM_SHA256 and "
            "secp384r1, the client's first group. ALPN h2 is chosen but travels in "
            "EncryptedExtensions, so it is not visible on the wire.",
        markers=[RUSTLS_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_128_GCM_SHA256", "secp384r1")]),
    "rustls-tls12-ok": dict(
        why="rustls both sides, TLS 1.2; server allows only "
            "ECDHE-ECDSA-CHACHA20-POLY1305 and x25519, and ALPN h2 of the client's h2 "
            "and http/1.1 (visible in a TLS 1.2 ServerHello).",
        markers=[RUSTLS_OK],
        handshakes=[established("TLSv1.2", ECDSA_CHACHA, "x25519", alpn="h2")]),
    "pq-hybrid": dict(
        why="rustls (aws-lc-rs) both sides, TLS 1.3; the server allows only the "
            "X25519MLKEM768 hybrid group, the client's first group and key share. The "
            "ClientHello (1.2 KB key share) takes two TCP segments.",
        markers=[RUSTLS_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "X25519MLKEM768")]),
    "cipher-mismatch-tls12": dict(
        why="TLS 1.2; the server allows only ECDHE-ECDSA-AES256-GCM-SHA384, the client "
            "offers only ECDHE-ECDSA-CHACHA20-POLY1305: OpenSSL's server answers the "
            "ClientHello with a fatal handshake_failure alert.",
        markers=[("no shared cipher", 1), ("SSL alert number 40", 1)],
        handshakes=[failed("alert", alert="handshake_failure", alert_sender="server")]),
    "cipher-mismatch-tls13": dict(
        why="TLS 1.3; server only TLS_AES_256_GCM_SHA384, client only "
            "TLS_CHACHA20_POLY1305_SHA256: handshake_failure from the server.",
        markers=[("no shared cipher", 1), ("SSL alert number 40", 1)],
        handshakes=[failed("alert", alert="handshake_failure", alert_sender="server")]),
    "version-mismatch": dict(
        why="The server allows only TLS 1.3, the client only TLS 1.2: protocol_version "
            "from the server.",
        markers=[("SSL alert number 70", 1)],
        handshakes=[failed("alert", alert="protocol_version", alert_sender="server")]),
    "unknown-sni": dict(
        why="s_server -servername server.test -servername_fatal; the client asks for "
            "unknown.test: unrecognized_name from the server.",
        markers=[("SSL alert number 112", 1)],
        handshakes=[failed("alert", alert="unrecognized_name", alert_sender="server",
                           sni="unknown.test")]),
    "bad-cert-tls12": dict(
        why="TLS 1.2; the client trusts only another CA and aborts on the server's "
            "Certificate with a plaintext unknown_ca alert (before any "
            "ChangeCipherSpec). The ServerHello was seen: version and cipher are known.",
        markers=[("certificate verify failed", 1), ("SSL alert number 48", 1)],
        handshakes=[failed("alert", version="TLSv1.2", cipher=ECDSA_AES256_GCM,
                           group="x25519", alert="unknown_ca", alert_sender="client")]),
    "bad-cert-tls13": dict(
        why="TLS 1.3, rustls client trusting another CA, OpenSSL server. rustls encrypts "
            "with handshake keys from the ServerHello on, so its unknown_ca alert is a "
            "19-byte application_data record, then it closes: an encrypted alert. The "
            "alert's name is not visible on the wire.",
        markers=[("UnknownIssuer", 1), ("SSL alert number 48", 1)],
        handshakes=[failed("encrypted_alert", version="TLSv1.3",
                           cipher="TLS_AES_256_GCM_SHA384", group="x25519",
                           alert_sender="client")]),
    "bad-cert-tls13-openssl": dict(
        why="TLS 1.3 with OpenSSL's client trusting another CA: OpenSSL's client installs "
            "its handshake write keys only with its second flight, so this unknown_ca "
            "alert goes out in plaintext even in TLS 1.3.",
        markers=[("certificate verify failed", 1), ("SSL alert number 48", 1)],
        handshakes=[failed("alert", version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384",
                           group="x25519", alert="unknown_ca", alert_sender="client")]),
    "client-cert-missing-tls12": dict(
        why="TLS 1.2; s_server -Verify 1 requires a client certificate, the client "
            "sends an empty Certificate: OpenSSL's server sends a plaintext "
            "handshake_failure (it has not sent its ChangeCipherSpec yet).",
        markers=[("peer did not return a certificate", 1), ("SSL alert number 40", 1)],
        handshakes=[failed("alert", version="TLSv1.2", cipher=ECDSA_AES256_GCM,
                           group="x25519", alert="handshake_failure",
                           alert_sender="server")]),
    "client-cert-missing-tls13": dict(
        why="TLS 1.3; the server requires a client certificate, the client has none. The "
            "client's own handshake ends (it prints CONNECTION ESTABLISHED and sends its "
            "request); the server then sends certificate_required encrypted (a 19-byte "
            "application_data record) and closes: an encrypted alert from the server.",
        markers=[OSSL_OK, ("peer did not return a certificate", 1),
                 ("SSL alert number 116", 1)],
        handshakes=[failed("encrypted_alert", version="TLSv1.3",
                           cipher="TLS_AES_256_GCM_SHA384", group="x25519",
                           alert_sender="server")]),
    "client-cert-ok": dict(
        why="rustls both sides, TLS 1.3; the server requires a client certificate from "
            "the corpus CA and the client has one.",
        markers=[RUSTLS_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519")]),
    "hello-retry": dict(
        why="TLS 1.3; the client's groups are P-256 then X25519 with a key share for "
            "P-256 only; the server takes only X25519, so it answers with a "
            "HelloRetryRequest and the client's second ClientHello carries X25519.",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519",
                                hello_retry=True)]),
    "resumption-tls12": dict(
        why="TLS 1.2, two connections: the first saves its session (-sess_out), the "
            "second offers it (-sess_in) and the server resumes it (session ticket): "
            "abbreviated handshake without Certificate or ServerKeyExchange, so no group.",
        markers=[("CONNECTION ESTABLISHED", 2), (r"\b1 session cache hits", 1)],
        handshakes=[established("TLSv1.2", ECDSA_AES256_GCM, "x25519"),
                    established("TLSv1.2", ECDSA_AES256_GCM, None, resumed=True)]),
    "resumption-tls13": dict(
        why="TLS 1.3, two connections; the second offers the first's ticket and the "
            "server accepts the PSK (pre_shared_key in its ServerHello), with an x25519 "
            "key share (psk_dhe_ke).",
        markers=[("CONNECTION ESTABLISHED", 2), (r"\b1 session cache hits", 1)],
        handshakes=[established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519"),
                    established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519",
                                resumed=True)]),
    "rustls-resumption-tls12": dict(
        why="rustls both sides, TLS 1.2, two connections with one client configuration; "
            "the server has no ticketer, so the second resumes by session ID.",
        markers=[("rustls-peer client: conn=1 .*kind=Full", 1),
                 ("rustls-peer client: conn=2 .*kind=Resumed", 1)],
        handshakes=[established("TLSv1.2", ECDSA_AES256_GCM, "x25519"),
                    established("TLSv1.2", ECDSA_AES256_GCM, None, resumed=True)]),
    "rustls-resumption-tls13": dict(
        why="rustls both sides, TLS 1.3, two connections; the second resumes with a PSK "
            "from the first's ticket (psk_dhe_ke, x25519).",
        markers=[("rustls-peer client: conn=1 .*kind=Full", 1),
                 ("rustls-peer client: conn=2 .*kind=Resumed", 1)],
        handshakes=[established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519"),
                    established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519",
                                resumed=True)]),
    "server-reset": dict(
        why="A listener reads the ClientHello and closes with SO_LINGER 0: the server "
            "resets before any answer.",
        markers=[(r"listener: \d+ bytes", 1)],
        handshakes=[failed("reset", closed_by="server")]),
    "server-silent": dict(
        why="A listener reads the ClientHello and never answers; the client is killed "
            "after 12 s (then its FIN), past tlsmon's default 10 s timeout.",
        markers=[(r"listener: \d+ bytes", 1), ("client exit status 124", 1)],
        handshakes=[failed("timeout")]),
    "plain-http": dict(
        why="curl speaks plain HTTP to the TLS port; OpenSSL rejects it ('http request') "
            "and closes without an alert.",
        markers=[("http request", 1)],
        handshakes=[failed("not_tls", sni=None)]),
    "ch-split": dict(
        why="MTU 600 on both veth ends (MSS 548): a 1.26 KB ClientHello (48 long ALPN "
            "names) in one TLS record crosses in 3 TCP segments. TLS 1.3, server "
            "defaults (TLS_AES_256_GCM_SHA384, x25519); ALPN http/1.1 chosen but "
            "encrypted.",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519",
                                client_hello_segments=3)]),
    "ch-multirecord": dict(
        why="The same large ClientHello sent with -max_send_frag 512: three TLS records "
            "of at most 512 bytes, all in one TCP segment.",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519",
                                client_hello_segments=1)]),
    "large-chain-tls12": dict(
        why="As tls12-ok, with three ~27 KB padding certificates after the leaf "
            "(-cert_chain): a Certificate message over 64 KiB in several 16 KiB "
            "records. The leaf is the usual server.test certificate. Wireshark does "
            "not reassemble a handshake message this long, so the full handshake and "
            "the leaf come from OpenSSL's log (its verified peer certificate, and the "
            "expiry record.sh read from the certificate file).",
        markers=[OSSL_OK, ("Peer certificate: O = tlsmon test, CN = server.test", 1),
                 ("Verification: OK", 1)],
        long_certificate=True,
        handshakes=[established("TLSv1.2", ECDSA_AES128_GCM, "x25519")]),
    "large-chain-tls13": dict(
        why="As large-chain-tls12 in TLS 1.3 (TLS_AES_128_GCM_SHA256, X25519): the "
            "chain travels encrypted, in application-data records.",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_128_GCM_SHA256", "x25519")]),
    "reordered-duplicated": dict(
        source="ch-split",
        why="ch-split.pcap rewritten by tools/rewrite.py: the ClientHello's first two "
            "segments swapped, the server's first data segment and the client's "
            "first segment after the ClientHello each sent twice (exact "
            "retransmissions). The handshake facts are those of ch-split.",
        markers=[OSSL_OK],
        handshakes=[established("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519",
                                client_hello_segments=3)]),
}

FIELDS = [
    "frame.number", "frame.time_epoch", "tcp.stream", "ip.src", "ipv6.src", "ip.dst",
    "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.flags.syn", "tcp.flags.ack",
    "tcp.flags.fin", "tcp.flags.reset", "tcp.len", "tcp.segment.count",
    "tls.record.content_type", "tls.record.opaque_type", "tls.record.length", "tls.handshake.type",
    "tls.handshake.length", "tls.handshake.version", "tls.handshake.random",
    "tls.handshake.extensions.supported_version", "tls.handshake.ciphersuite",
    "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str",
    "tls.handshake.extensions_supported_group", "tls.handshake.extensions_key_share_group",
    "tls.handshake.extensions.psk.identity.selected", "tls.handshake.server_named_curve",
    "tls.alert_message.desc", "tls.handshake.ja3", "tls.handshake.ja3s",
    "x509af.utcTime",
]


class Mismatch(Exception):
    """A declared fact that the capture or the log contradicts."""


def tshark_names():
    """Cipher suite and group names from Wireshark's own tables (tshark -G values)."""
    out = subprocess.run(["tshark", "-G", "values"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    ciphers, groups = {}, {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or parts[0] != "V":
            continue
        if parts[1] == "tls.handshake.ciphersuite":
            ciphers[int(parts[2], 0)] = parts[3]
        elif parts[1] == "tls.handshake.extensions_supported_group":
            groups[int(parts[2], 0)] = parts[3]
    groups.update(IANA_GROUP_OVERRIDES)
    return ciphers, groups


def read_frames(path):
    # Out-of-order reassembly is off by default in Wireshark 4.0; reordered-duplicated
    # needs it.
    cmd = ["tshark", "-r", path, "-o", "tcp.reassemble_out_of_order:TRUE",
           "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=|"]
    for field in FIELDS:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=120).stdout
    frames = []
    for line in out.splitlines():
        values = line.split("\t")
        frame = {}
        for field, value in zip(FIELDS, values):
            frame[field] = value.split("|") if value else []
        frames.append(frame)
    return frames


def one(frame, field, default=None):
    values = frame[field]
    return values[0] if values else default


def num(value):
    return int(value, 0)


def analyse_stream(frames, names):
    """What tshark sees of one TCP connection, in the terms of tlsmon's record."""
    ciphers, groups = names
    first = frames[0]
    src = lambda f: one(f, "ip.src") or one(f, "ipv6.src")
    syn = next((f for f in frames if one(f, "tcp.flags.syn") in ("1", "True")
                and one(f, "tcp.flags.ack") in ("0", "False")), first)
    client_ip, client_port = src(syn), num(one(syn, "tcp.srcport"))
    side = lambda f: "client" if (src(f), num(one(f, "tcp.srcport"))) == \
        (client_ip, client_port) else "server"
    seen = dict(client_ip=client_ip, client_port=client_port,
                server_ip=one(syn, "ip.dst") or one(syn, "ipv6.dst"),
                server_port=num(one(syn, "tcp.dstport")))
    hellos, server_hellos, alerts, resets, fins = [], [], [], [], []
    server_certificate = server_ccs = False
    server_payload_frames = []
    first_client_payload = None
    for f in frames:
        who = side(f)
        if num(one(f, "tcp.len", "0")) > 0:
            if who == "client" and first_client_payload is None:
                first_client_payload = f
            if who == "server":
                server_payload_frames.append(f)
        if one(f, "tcp.flags.reset") in ("1", "True"):
            resets.append((who, f))
        if one(f, "tcp.flags.fin") in ("1", "True"):
            fins.append((who, f))
        types = [num(t) for t in f["tls.handshake.type"]]
        if 1 in types and who == "client":
            hellos.append(f)
        if 2 in types and who == "server":
            server_hellos.append(f)
        if 11 in types and who == "server":
            server_certificate = True
        if who == "server" and "20" in f["tls.record.content_type"]:
            server_ccs = True
        for desc in f["tls.alert_message.desc"]:
            alerts.append((who, ALERT_NAMES.get(num(desc), f"0x{num(desc):02x}")))
    closes = sorted(resets + fins, key=lambda wf: num(one(wf[1], "frame.number")))
    seen["first_close"] = closes[0][0] if closes else None
    seen.update(resets=[w for w, _ in resets], fins=[w for w, _ in fins],
                alerts=alerts, not_tls=not hellos and first_client_payload is not None,
                server_payload=bool(server_payload_frames))
    if first_client_payload is not None and hellos:
        seen["ch_time"] = float(one(hellos[0], "frame.time_epoch"))
    seen["last_time"] = float(one(frames[-1], "frame.time_epoch"))
    if hellos:
        ch = hellos[0]
        seen["sni"] = one(ch, "tls.handshake.extensions_server_name")
        seen["ja3"] = one(ch, "tls.handshake.ja3")
        seen["client_hello_bytes"] = num(one(ch, "tls.handshake.length")) + 4
        seen["client_hello_segments"] = num(one(ch, "tcp.segment.count", "1"))
        sv = [num(v) for v in ch["tls.handshake.extensions.supported_version"]]
        legacy = num(one(ch, "tls.handshake.version"))
        seen["offered_versions"] = [VERSION_NAMES.get(v, f"0x{v:04x}")
                                    for v in (sv or [legacy])]
        seen["offered_ciphers"] = [ciphers.get(num(c), f"0x{num(c):04x}")
                                   for c in ch["tls.handshake.ciphersuite"]]
        seen["offered_groups"] = [groups.get(num(g), f"0x{num(g):04x}")
                                  for g in ch["tls.handshake.extensions_supported_group"]]
        seen["offered_alpn"] = ch["tls.handshake.extensions_alpn_str"]
    seen["resumed"] = False
    seen["hello_retry"] = any(one(sh, "tls.handshake.random", "").replace(":", "")
                              == HRR_RANDOM for sh in server_hellos)
    final = [sh for sh in server_hellos
             if one(sh, "tls.handshake.random", "").replace(":", "") != HRR_RANDOM]
    if final:
        sh = final[-1]
        sv = sh["tls.handshake.extensions.supported_version"]
        # In a frame holding the ServerHello, the first handshake version field is
        # the ServerHello's.
        version = num(sv[0]) if sv else num(one(sh, "tls.handshake.version"))
        seen["version"] = VERSION_NAMES.get(version, f"0x{version:04x}")
        seen["cipher"] = ciphers[num(one(sh, "tls.handshake.ciphersuite"))]
        seen["ja3s"] = one(sh, "tls.handshake.ja3s")
        # The chosen ALPN is in a TLS 1.2 ServerHello, encrypted in TLS 1.3.
        seen["alpn"] = one(sh, "tls.handshake.extensions_alpn_str") \
            if version != 0x0304 else None
        if version == 0x0304:
            key_share = one(sh, "tls.handshake.extensions_key_share_group")
            seen["group"] = groups[num(key_share)] if key_share else None
            seen["resumed"] = bool(sh["tls.handshake.extensions.psk.identity.selected"])
        else:
            curve = next((one(f, "tls.handshake.server_named_curve") for f in frames
                          if f["tls.handshake.server_named_curve"]), None)
            seen["group"] = groups[num(curve)] if curve else None
            # TLS 1.2 abbreviated handshake: ServerHello then ChangeCipherSpec, no
            # Certificate.
            seen["resumed"] = server_ccs and not server_certificate
        dates = next((f["x509af.utcTime"] for f in frames if f["x509af.utcTime"]), None)
        if dates and version != 0x0304:
            not_after = datetime.strptime(dates[1], "%Y-%m-%d %H:%M:%S (UTC)")
            seen["server_cert"] = dict(subject=SERVER_SUBJECT, issuer=CA_ISSUER,
                                       not_after=not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))
    # Encrypted alert shape: the last payload record from a side before its FIN is a
    # short application_data record (2-byte alert + type + 16-byte AEAD tag = 19).
    seen["short_encrypted_last"] = set()
    for who in ("client", "server"):
        payload = [f for f in frames if side(f) == who and num(one(f, "tcp.len", "0")) > 0]
        if payload:
            last = payload[-1]
            lengths = [num(x) for x in last["tls.record.length"]]
            # tshark names TLS 1.3's encrypted records by their opaque_type (23).
            if lengths and lengths[-1] <= 32 and last["tls.record.opaque_type"] \
                    and "21" not in last["tls.record.content_type"]:
                seen["short_encrypted_last"].add(who)
    return seen


def check(name, declared, seen):
    """Raises Mismatch when tshark's view contradicts a declared fact."""
    def fail(msg):
        raise Mismatch(f"{name}: {msg}")

    for key in ("version", "cipher", "group", "sni", "alpn", "hello_retry", "resumed",
                "client_hello_segments"):
        if key in declared and declared[key] != seen.get(key):
            fail(f"{key}: declared {declared[key]!r}, tshark sees {seen.get(key)!r}")
    plaintext = [(w, a) for w, a in seen["alerts"] if a != "close_notify"]
    reason = declared["failure_reason"]
    if reason == "alert":
        if not plaintext or plaintext[0] != (declared["alert_sender"], declared["alert"]):
            fail(f"declared alert {declared['alert']} from {declared['alert_sender']}, "
                 f"tshark sees {plaintext}")
    elif plaintext:
        fail(f"tshark sees plaintext alerts {plaintext}")
    if reason == "reset":
        if declared["closed_by"] not in seen["resets"] or seen.get("version"):
            fail(f"declared reset by {declared['closed_by']} before a ServerHello, "
                 f"tshark sees resets {seen['resets']}, version {seen.get('version')}")
    elif seen["resets"]:
        fail(f"tshark sees resets from {seen['resets']}")
    if reason == "timeout":
        if seen["server_payload"] or seen["last_time"] - seen["ch_time"] < 10.0:
            fail("declared timeout, but the server answered or the capture is under 10 s")
    if reason == "not_tls" and not seen["not_tls"]:
        fail("declared not_tls, but tshark sees a ClientHello")
    if reason == "encrypted_alert":
        if seen.get("version") != "TLSv1.3" or \
                declared["alert_sender"] not in seen["short_encrypted_last"]:
            fail("declared an encrypted alert, but the sender's last record is not a "
                 "short TLS 1.3 application_data record")
    if declared["outcome"] == "established" and not seen.get("version"):
        fail("declared established, but tshark sees no ServerHello")


def logged_server_cert(name):
    """The server certificate as record.sh logged its expiry (`openssl x509 -enddate`)."""
    path = os.path.join(CORPUS, "logs", f"{name}.log")
    with open(path, encoding="utf-8", errors="replace") as f:
        found = re.search(r"server certificate notAfter=(.+ GMT)", f.read())
    if not found:
        raise Mismatch(f"{name}: the log holds no server certificate expiry")
    not_after = datetime.strptime(found.group(1), "%b %d %H:%M:%S %Y GMT")
    return dict(subject=SERVER_SUBJECT, issuer=CA_ISSUER,
                not_after=not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))


def check_markers(name, markers):
    path = os.path.join(CORPUS, "logs", f"{name}.log")
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for pattern, count in markers:
        found = len(re.findall(pattern, text))
        if found != count:
            raise Mismatch(f"{name}: log has {found} × {pattern!r}, expected {count}")


def expectations(name, spec, names):
    path = os.path.join(CORPUS, spec.get("file", f"{name}.pcap"))
    frames = read_frames(path)
    streams = {}
    for f in frames:
        if f["tcp.stream"]:
            streams.setdefault(num(f["tcp.stream"][0]), []).append(f)
    if len(streams) != len(spec["handshakes"]):
        raise Mismatch(f"{name}: {len(spec['handshakes'])} handshakes declared, "
                       f"tshark sees {len(streams)} TCP connections")
    check_markers(spec.get("source", name), spec["markers"])
    records = []
    for declared, stream in zip(spec["handshakes"], (streams[k] for k in sorted(streams))):
        seen = analyse_stream(stream, names)
        if spec.get("long_certificate"):
            # tshark saw no Certificate message (too long for it to reassemble), so
            # it took the handshake for an abbreviated one; the log says otherwise
            # (markers above), and gives the leaf's expiry.
            seen["resumed"] = False
            seen["server_cert"] = logged_server_cert(spec.get("source", name))
        check(name, declared, seen)
        record = dict(client_ip=seen["client_ip"], client_port=seen["client_port"],
                      server_ip=seen["server_ip"], server_port=seen["server_port"])
        record.update(declared)
        if declared["failure_reason"] == "encrypted_alert":
            # After an encrypted alert both sides close within microseconds, in either
            # order: who closed first is a fact of this capture, not of its recipe.
            record["closed_by"] = seen["first_close"]
        for key in ("alpn", "ja3", "ja3s", "client_hello_bytes", "client_hello_segments"):
            record.setdefault(key, seen.get(key))
        # Lists are never null in tlsmon's schema: empty when there was no ClientHello.
        for key in ("offered_versions", "offered_ciphers", "offered_groups", "offered_alpn"):
            record.setdefault(key, seen.get(key, []))
        record["server_cert"] = seen.get("server_cert")
        records.append(record)
    return dict(scenario=name, file=os.path.basename(path), why=spec["why"],
                handshakes=records)


def main(argv):
    wanted = argv or list(SCENARIOS)
    unknown = [n for n in wanted if n not in SCENARIOS]
    if unknown:
        print(f"expect.py: unknown scenarios {unknown}", file=sys.stderr)
        return 2
    names = tshark_names()
    os.makedirs(os.path.join(CORPUS, "expected"), exist_ok=True)
    failures = 0
    for name in wanted:
        try:
            result = expectations(name, SCENARIOS[name], names)
        except (Mismatch, subprocess.CalledProcessError, OSError, KeyError) as err:
            print(f"expect.py: {err}", file=sys.stderr)
            failures += 1
            continue
        out = os.path.join(CORPUS, "expected", f"{name}.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"expected/{name}.json: {len(result['handshakes'])} handshake(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
