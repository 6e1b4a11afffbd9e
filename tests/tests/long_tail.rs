//! Passive accuracy on the long tail (issue 14), each case held against tshark:
//!
//! - TCP Fast Open: rustls over `MSG_FASTOPEN` / `TCP_FASTOPEN` (tests/src/bin/
//!   tfo-peer.rs) between two namespaces with `net.ipv4.tcp_fastopen=3`; the second
//!   connection carries its ClientHello in the SYN. `tlsmon run` (live) and
//!   `tlsmon analyze` of tcpdump's capture must agree with each other and with
//!   tshark on version, cipher and outcome.
//! - A second SYN-ACK with another ISN, which the client acknowledges: made by
//!   rewriting such a recorded capture (tests/src/syn_ack_rewrite.rs).
//! - The kernel's side of both, on synthetic frames (BPF_PROG_TEST_RUN): a SYN
//!   carrying a ClientHello starts tracking only once a SYN-ACK accepts it.
//! - Certificate names in T61String, BMPString, UTF8String, PrintableString and
//!   IA5String, from certificates OpenSSL makes with `string_mask`.
//! - A TLS 1.3 draft-18 ServerHello (no session id, no compression), as bytes.
//!
//! Needs root (namespaces, BPF), openssl, tcpdump and tshark; without root the
//! tests that need it are skipped, unless `CI` is set: then they fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tlsmon::pipeline::flow_table::{FlowTable, FlowTableOptions};
use tlsmon::source::live::{Capture, CaptureOptions};
use tlsmon::source::segment::{PacketDirection, Segment};
use tlsmon_tests::{
    binary::tlsmon_binary,
    certificate_names::leaf_names,
    differential::{analyze, observe, Record, Scratch},
    frames::{self, Shape, ACK, PSH, RST, SYN},
    netns::{Netns, VethLink},
    pki::Pki,
    process::{poll, run_bounded, run_checked, Background},
    root_or_skip,
    syn_ack_rewrite::second_syn_ack,
    tshark,
    two_path_scenario::wait_listening,
};

/// One namespace test at a time (they also take the global lock outside).
static SERIAL: Mutex<()> = Mutex::new(());

const TLS_PORT: u16 = 4433;
const TFO_NAME: &str = "tfo.test";

/// The serialisation guard, or `None` when the test must be skipped (not root,
/// outside CI).
fn setup(name: &str) -> Result<Option<MutexGuard<'static, ()>>> {
    if !root_or_skip(&format!("long_tail {name}"))? {
        return Ok(None);
    }
    Ok(Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner())))
}

/// What tshark and tlsmon say of one handshake: (client port, version, cipher).
type Chosen = (u16, Option<String>, Option<String>);

/// tshark's version and cipher per connection of `pcap`, by client port.
fn tshark_choices(pcap: &Path) -> Result<Vec<Chosen>> {
    let names = tshark::Names::load()?;
    let mut seen: Vec<Chosen> = tshark::connections(pcap, &names)?
        .into_iter()
        .map(|c| (c.client_port, c.version, c.cipher))
        .collect();
    seen.sort();
    Ok(seen)
}

/// tlsmon's version and cipher per record, by client port.
fn tlsmon_choices(records: &[Record]) -> Vec<Chosen> {
    let mut seen: Vec<Chosen> = records
        .iter()
        .map(|r| {
            (
                r.connection.client_port,
                r.text("version").map(str::to_owned),
                r.text("cipher").map(str::to_owned),
            )
        })
        .collect();
    seen.sort();
    seen
}

/// Every record established, with a version and a cipher.
fn ensure_established(what: &str, records: &[Record]) -> Result<()> {
    for r in records {
        ensure!(
            r.text("outcome") == Some("established") && r.text("version").is_some(),
            "{what}: not an established handshake: {}",
            r.line()
        );
    }
    Ok(())
}

/// Enables TCP Fast Open for clients and servers (3) in `ns`.
fn enable_fast_open(ns: &Netns) -> Result<()> {
    run_checked(
        ns.command("sysctl")
            .args(["-qw", "net.ipv4.tcp_fastopen=3"]),
    )?;
    Ok(())
}

/// The TFO peer serving `connections` on the server side of `link`.
fn tfo_server(link: &VethLink, pki: &Pki, dir: &Path, connections: u32) -> Result<Background> {
    let mut cmd = link.server.command(env!("CARGO_BIN_EXE_tfo-peer"));
    cmd.args(["server", "--listen"])
        .arg(format!("{}:{TLS_PORT}", link.server_ip))
        .arg("--cert")
        .arg(&pki.cert)
        .arg("--key")
        .arg(&pki.key)
        .args(["--accept", &connections.to_string()]);
    let mut server = Background::spawn("tfo-server", cmd, dir)?;
    wait_listening(&link.server, TLS_PORT, &mut server)?;
    Ok(server)
}

/// `connections` TLS connections over TCP Fast Open from the client side; the
/// first gets the cookie, the later ones send their ClientHello in the SYN.
fn tfo_clients(link: &VethLink, pki: &Pki, connections: u32) -> Result<String> {
    let mut cmd = link.client.command(env!("CARGO_BIN_EXE_tfo-peer"));
    cmd.args(["client", "--connect"])
        .arg(format!("{}:{TLS_PORT}", link.server_ip))
        .args(["--sni", TFO_NAME, "--ca"])
        .arg(&pki.ca)
        .args(["--connections", &connections.to_string()]);
    let (status, output) = run_bounded(cmd, Duration::from_secs(60))?;
    ensure!(status.success(), "tfo-peer client: {status}: {output}");
    ensure!(
        output
            .lines()
            .filter(|l| l.starts_with("connection "))
            .count()
            == connections as usize,
        "tfo-peer client made fewer connections than asked: {output}"
    );
    Ok(output)
}

/// tcpdump writing each packet as it comes (`--immediate-mode -U`), for tests
/// that stop it right after their traffic.
struct Recording {
    process: Background,
    pcap: PathBuf,
}

impl Recording {
    /// Starts tcpdump on `interface` of `ns`; returns once it captures.
    fn start(ns: &Netns, interface: &str, dir: &Path) -> Result<Recording> {
        let pcap = dir.join(format!("{interface}.pcap"));
        let mut cmd = ns.command("tcpdump");
        cmd.args(["-i", interface, "-s", "0", "-U", "--immediate-mode", "-w"])
            .arg(&pcap)
            .arg("tcp");
        let mut process = Background::spawn(&format!("tcpdump-{interface}"), cmd, dir)?;
        poll(
            &format!("tcpdump capturing on {interface}"),
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                process.check_running()?;
                Ok(process.log().contains("listening on").then_some(()))
            },
        )?;
        Ok(Recording { process, pcap })
    }

    /// Waits until the capture holds the end (FIN or RST) of `connections`
    /// connections, then stops tcpdump and returns the capture.
    fn finish(mut self, connections: usize) -> Result<PathBuf> {
        let pcap = self.pcap.clone();
        poll(
            &format!("{connections} connections ended in {}", pcap.display()),
            Duration::from_secs(20),
            Duration::from_millis(50),
            || Ok((ended_connections(&pcap)? >= connections).then_some(())),
        )?;
        self.process.stop()?;
        Ok(self.pcap)
    }
}

/// Connections (4-tuples) of an Ethernet capture that carried a FIN or RST. A
/// packet tcpdump is still writing ends the count early.
fn ended_connections(pcap: &Path) -> Result<usize> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let mut reader = pcap_file::pcap::PcapReader::new(std::fs::File::open(pcap)?)?;
    let mut ended = std::collections::BTreeSet::new();
    while let Some(Ok(packet)) = reader.next_packet() {
        let Ok(sliced) = SlicedPacket::from_ethernet(&packet.data) else {
            continue;
        };
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) =
            (&sliced.net, &sliced.transport)
        else {
            continue;
        };
        if tcp.fin() || tcp.rst() {
            let mut ends = [
                (ip.header().source_addr(), tcp.source_port()),
                (ip.header().destination_addr(), tcp.destination_port()),
            ];
            ends.sort();
            ended.insert(ends);
        }
    }
    Ok(ended.len())
}

/// Connections of `pcap` whose client's SYN carried payload.
fn syns_with_data(pcap: &Path) -> Result<usize> {
    let out = run_checked(
        Command::new("tshark")
            .arg("-r")
            .arg(pcap)
            .args([
                "-Y",
                "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.len > 0",
            ])
            .args(["-T", "fields", "-e", "tcp.stream"]),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

#[test]
fn tcp_fast_open_handshakes_agree_with_tshark_live_and_offline() -> Result<()> {
    let Some(_serial) = setup("tfo")? else {
        return Ok(());
    };
    let tlsmon = tlsmon_binary()?;
    let mut scratch = Scratch::new("long-tail-tfo")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, TFO_NAME)?;
    let link = VethLink::new(214);
    enable_fast_open(&link.server)?;
    enable_fast_open(&link.client)?;
    // A cookie first, then three connections with the ClientHello in the SYN.
    let connections = 4;
    let _server = tfo_server(&link, &pki, &dir, connections)?;
    let (seen, _) = observe(&tlsmon, &link.server, &[&link.server_if], &dir, || {
        tfo_clients(&link, &pki, connections)
    })?;
    let pcap = dir.join(format!("{}.pcap", link.server_if));
    let in_syn = syns_with_data(&pcap)?;
    ensure!(
        in_syn == connections as usize - 1,
        "expected {} ClientHellos in a SYN, the capture shows {in_syn}",
        connections - 1
    );
    // Live equals offline, field by field, and both hold every handshake.
    seen.check("tcp fast open", &[(&link.server_if, connections as usize)])?;
    let view = seen.device(&link.server_if)?;
    ensure_established("live", &view.live)?;
    ensure_established("offline", &view.offline)?;
    let expected = tshark_choices(&pcap)?;
    ensure!(
        expected.len() == connections as usize,
        "tshark: {expected:?}"
    );
    ensure!(
        tlsmon_choices(&view.offline) == expected,
        "analyze {:?} != tshark {expected:?}",
        tlsmon_choices(&view.offline)
    );
    ensure!(
        tlsmon_choices(&view.live) == expected,
        "live {:?} != tshark {expected:?}",
        tlsmon_choices(&view.live)
    );
    scratch.passed();
    Ok(())
}

#[test]
fn a_second_syn_ack_with_another_isn_is_followed_as_tshark_follows_it() -> Result<()> {
    let Some(_serial) = setup("second SYN-ACK")? else {
        return Ok(());
    };
    let tlsmon = tlsmon_binary()?;
    let mut scratch = Scratch::new("long-tail-syn-ack")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, TFO_NAME)?;
    let link = VethLink::new(215);
    enable_fast_open(&link.server)?;
    enable_fast_open(&link.client)?;
    // One connection set up the ordinary way, one with its ClientHello in the SYN.
    let _server = tfo_server(&link, &pki, &dir, 2)?;
    let tcpdump = Recording::start(&link.server, &link.server_if, &dir)?;
    tfo_clients(&link, &pki, 2)?;
    let recorded = tcpdump.finish(2)?;
    let rewritten = dir.join("second-syn-ack.pcap");
    let doubled = second_syn_ack(&recorded, &rewritten, 0x4000_0000)?;
    ensure!(doubled == 2, "{doubled} SYN-ACKs doubled, 2 expected");
    let offline = analyze(&tlsmon, &rewritten, &dir)?;
    ensure!(offline.len() == 2, "analyze: {offline:?}");
    ensure_established("the rewritten capture", &offline)?;
    let expected = tshark_choices(&rewritten)?;
    ensure!(
        tlsmon_choices(&offline) == expected,
        "analyze {:?} != tshark {expected:?}",
        tlsmon_choices(&offline)
    );
    // The original capture reads the same.
    ensure!(tlsmon_choices(&analyze(&tlsmon, &recorded, &dir)?) == expected);
    scratch.passed();
    Ok(())
}

/// Runs one frame through the classifier on `hook`.
fn run(c: &mut Capture, frame: &[u8], hook: PacketDirection) -> Result<()> {
    let verdict = c.test_run().run_on_frame(frame, hook)?;
    ensure!(verdict == -1, "the classifier returned {verdict}");
    Ok(())
}

fn drain(c: &mut Capture) -> Vec<Segment> {
    let mut out = Vec::new();
    c.drain_segments(&mut out);
    out
}

#[test]
fn the_kernel_tracks_a_client_hello_in_a_syn_once_a_syn_ack_accepts_it() -> Result<()> {
    let Some(_serial) = setup("kernel")? else {
        return Ok(());
    };
    let mut c = Capture::load(CaptureOptions::default())?;
    let server: SocketAddr = "10.1.0.2:443".parse()?;
    let ch = frames::client_hello(300);
    let syn_data = |client: SocketAddr, isn: u32| frames::tcp(client, server, isn, SYN, &ch);

    // A SYN with a ClientHello that nothing accepts: its bytes are handed over
    // (the SYN is the only packet that carries them), but nothing is tracked.
    let spoofed: SocketAddr = "10.1.0.1:40000".parse()?;
    run(&mut c, &syn_data(spoofed, 999), PacketDirection::Ingress)?;
    let segs = drain(&mut c);
    ensure!(segs.len() == 1, "{segs:?}");
    ensure!(segs[0].flags.syn() && !segs[0].flags.ack());
    ensure!((segs[0].seq, &segs[0].payload) == (999, &ch));
    // A SYN-ACK that refuses the data (acknowledges the SYN alone) starts nothing
    // either, and no SYN-ACK event is made of it.
    let refusing = frames::syn_ack(server, spoofed, 0, 1000, Shape::default());
    run(&mut c, &refusing, PacketDirection::Egress)?;
    ensure!(drain(&mut c).is_empty());
    ensure!(c.counters()?.flows_started == 0 && c.tracked_flows() == 0);

    // A SYN-ACK that accepts it starts tracking and is reported; a second
    // SYN-ACK with another ISN is reported too and replaces nothing.
    let client: SocketAddr = "10.1.0.1:40001".parse()?;
    let data_end = 5000 + ch.len() as u32;
    run(&mut c, &syn_data(client, 4999), PacketDirection::Ingress)?;
    let first = frames::syn_ack(server, client, 7000, data_end, Shape::default());
    run(&mut c, &first, PacketDirection::Egress)?;
    let second = frames::syn_ack(server, client, 90_000, data_end, Shape::default());
    run(&mut c, &second, PacketDirection::Egress)?;
    let acks = Shape {
        ack_number: Some(data_end),
        ..Shape::default()
    };
    let reply = frames::server_hello(120);
    run(
        &mut c,
        &frames::tcp_shaped(server, client, 90_001, ACK | PSH, &reply, acks),
        PacketDirection::Egress,
    )?;
    let segs = drain(&mut c);
    let summary: Vec<(bool, bool, u32, u32, usize)> = segs
        .iter()
        .map(|s| (s.flags.syn(), s.flags.ack(), s.seq, s.ack, s.payload.len()))
        .collect();
    ensure!(
        summary
            == [
                (true, false, 4999, 0, ch.len()),
                (true, true, 7000, data_end, 0),
                (true, true, 90_000, data_end, 0),
                (false, true, 90_001, data_end, reply.len()),
            ],
        "{summary:?}"
    );
    let k = c.counters()?;
    ensure!(
        (k.flows_started, k.flows_replaced, c.tracked_flows()) == (1, 0, 1),
        "{k:?}"
    );

    // The flow table makes one handshake of the accepted one and none of the
    // spoofed SYN: the server's bytes follow the second SYN-ACK.
    let mut table = FlowTable::new(FlowTableOptions::default());
    let mut decided = Vec::new();
    let spoofed_syn = frames::tcp(spoofed, server, 999, SYN, &ch);
    run(&mut c, &spoofed_syn, PacketDirection::Ingress)?;
    for segment in drain(&mut c).into_iter().chain(segs) {
        table.push(segment, &mut decided);
    }
    table.finish(&mut decided);
    ensure!(decided.len() == 1, "{decided:?}");
    let event = &decided[0].event;
    ensure!(event.client_port == 40001, "{event:?}");
    ensure!(
        event.client_hello_bytes == Some(ch.len() as u32 - 5),
        "{event:?}"
    );
    ensure!(decided[0].client_seq == Some(5000));

    // Without Fast Open: two SYN-ACKs, and the ClientHello acknowledges the
    // second; the kernel follows it.
    let plain: SocketAddr = "10.1.0.1:40002".parse()?;
    for server_isn in [100, 800_000] {
        let syn_ack = frames::syn_ack(server, plain, server_isn, 3000, Shape::default());
        run(&mut c, &syn_ack, PacketDirection::Egress)?;
    }
    let hello = frames::tcp_shaped(plain, server, 3000, ACK | PSH, &ch, acks_server(800_001));
    run(&mut c, &hello, PacketDirection::Ingress)?;
    let segs = drain(&mut c);
    ensure!(
        segs.len() == 2 && segs[1].payload == ch && segs[0].flags.syn(),
        "{segs:?}"
    );
    ensure!(c.counters()?.flows_started == 2 && c.tracked_flows() == 2);

    // Once the connection is over, a late duplicate of its SYN-ACK starts nothing.
    let reset = frames::tcp_shaped(
        client,
        server,
        data_end,
        ACK | RST,
        &[],
        acks_server(90_001),
    );
    run(&mut c, &reset, PacketDirection::Ingress)?;
    ensure!(c.tracked_flows() == 1, "only the plain connection is left");
    drain(&mut c);
    run(&mut c, &first, PacketDirection::Egress)?;
    ensure!(drain(&mut c).is_empty());
    ensure!(c.counters()?.flows_started == 2 && c.tracked_flows() == 1);
    Ok(())
}

/// A frame shape acknowledging `ack`.
fn acks_server(ack: u32) -> Shape {
    Shape {
        ack_number: Some(ack),
        ..Shape::default()
    }
}

/// A leaf certificate and its key, signed by a CA made for it.
struct Chain {
    cert: PathBuf,
    key: PathBuf,
}

/// An OpenSSL `req` config with `string_mask` and the RDNs in `dn` (one a line).
fn req_config(dir: &Path, name: &str, string_mask: &str, dn: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.cnf"));
    std::fs::write(
        &path,
        format!(
            "[req]\ndistinguished_name = dn\nprompt = no\nstring_mask = {string_mask}\n\
             utf8 = yes\n[dn]\n{dn}\n"
        ),
    )?;
    Ok(path)
}

/// A CA and a leaf it signs, each named by `(string_mask, RDN lines)`: OpenSSL picks
/// each value's string type from the mask and the characters.
fn chain(dir: &Path, name: &str, ca: (&str, &str), leaf: (&str, &str)) -> Result<Chain> {
    let p = |file: &str| dir.join(format!("{name}-{file}"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_config = req_config(dir, &format!("{name}-ca"), ca.0, ca.1)?;
    run_checked(
        Command::new("openssl")
            .args(["req", "-x509", "-days", "2"])
            .args(ec)
            .arg("-config")
            .arg(&ca_config)
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")),
    )?;
    let leaf_config = req_config(dir, &format!("{name}-leaf"), leaf.0, leaf.1)?;
    run_checked(
        Command::new("openssl")
            .arg("req")
            .args(ec)
            .arg("-config")
            .arg(&leaf_config)
            .arg("-keyout")
            .arg(p("leaf.key"))
            .arg("-out")
            .arg(p("leaf.csr")),
    )?;
    run_checked(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("leaf.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("leaf.pem")),
    )?;
    Ok(Chain {
        cert: p("leaf.pem"),
        key: p("leaf.key"),
    })
}

/// The ASN.1 string types in a certificate, as `openssl asn1parse` names them.
fn string_types(cert: &Path) -> Result<Vec<String>> {
    let out = run_checked(Command::new("openssl").args(["asn1parse", "-in"]).arg(cert))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text
        .lines()
        .filter_map(|l| l.split("prim: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|t| t.ends_with("STRING") && *t != "BITSTRING" && *t != "OCTETSTRING")
        .map(str::to_owned)
        .collect())
}

/// The leaf's subject or issuer as OpenSSL writes it in RFC 2253 form, with
/// characters beyond ASCII as UTF-8 rather than escaped.
fn openssl_name(cert: &Path, which: &str) -> Result<String> {
    let out = run_checked(
        Command::new("openssl")
            .args([
                "x509",
                "-noout",
                which,
                "-nameopt",
                "RFC2253,-esc_msb",
                "-in",
            ])
            .arg(cert),
    )?;
    let text = String::from_utf8(out.stdout)?;
    let (_, name) = text
        .trim()
        .split_once('=')
        .context("openssl printed no name")?;
    Ok(name.to_owned())
}

#[test]
fn certificate_names_in_every_string_type_agree_with_tshark() -> Result<()> {
    let Some(_serial) = setup("certificate names")? else {
        return Ok(());
    };
    let tlsmon = tlsmon_binary()?;
    let mut scratch = Scratch::new("long-tail-names")?;
    let dir = scratch.path().to_path_buf();
    // T61String (MASK:0x4 allows nothing else for these characters: '&' and '@'
    // are not PrintableString) issuing BMPString; PrintableString and an IA5String
    // e-mail address issuing UTF8String; and a T61String beyond ASCII.
    let chains = [
        chain(
            &dir,
            "t61",
            ("MASK:0x4", "O = Smith & Sons\nCN = ca@smith & sons"),
            ("MASK:0x800", "O = BMP Örg, Inc.\nCN = bmp.test"),
        )?,
        chain(
            &dir,
            "printable",
            (
                "default",
                "O = Plain Org\nCN = Plain CA\nemailAddress = ca@plain.test",
            ),
            ("utf8only", "O = Zürich AG\nCN = utf8.test"),
        )?,
        chain(
            &dir,
            "latin1",
            ("MASK:0x4", "CN = Müller Root CA"),
            ("default", "CN = latin1.test"),
        )?,
    ];
    let types: Vec<Vec<String>> = chains
        .iter()
        .map(|c| string_types(&c.cert))
        .collect::<Result<_>>()?;
    for wanted in [
        "T61STRING",
        "BMPSTRING",
        "UTF8STRING",
        "PRINTABLESTRING",
        "IA5STRING",
    ] {
        ensure!(
            types.iter().flatten().any(|t| t == wanted),
            "no {wanted} in the certificates: {types:?}"
        );
    }

    let link = VethLink::new(216);
    let tcpdump = Recording::start(&link.server, &link.server_if, &dir)?;
    for (i, c) in chains.iter().enumerate() {
        let mut cmd = link.server.command("openssl");
        cmd.args(["s_server", "-quiet", "-naccept", "1", "-tls1_2", "-accept"])
            .arg(TLS_PORT.to_string())
            .arg("-cert")
            .arg(&c.cert)
            .arg("-key")
            .arg(&c.key);
        let mut server = Background::spawn(&format!("s_server-{i}"), cmd, &dir)?;
        wait_listening(&link.server, TLS_PORT, &mut server)?;
        // Verification fails (the CA is not trusted); the certificate went by.
        let mut client = link.client.command("openssl");
        client
            .args(["s_client", "-tls1_2", "-connect"])
            .arg(format!("{}:{TLS_PORT}", link.server_ip));
        run_bounded(client, Duration::from_secs(10))?;
        server.stop()?;
    }
    let pcap = tcpdump.finish(chains.len())?;

    let records = analyze(&tlsmon, &pcap, &dir)?;
    ensure!(records.len() == chains.len(), "analyze: {records:?}");
    let mut from_tlsmon = BTreeMap::new();
    for r in &records {
        let cert = &r.fields["server_cert"];
        let name = |field: &str| cert[field].as_str().map(str::to_owned);
        from_tlsmon.insert(r.connection.client_port, (name("subject"), name("issuer")));
    }
    let from_tshark = leaf_names(&pcap)?;
    ensure!(from_tshark.len() == chains.len(), "tshark: {from_tshark:?}");
    for (i, leaf) in from_tshark.iter().enumerate() {
        let (subject, issuer) = from_tlsmon
            .get(&leaf.client_port)
            .with_context(|| format!("no tlsmon record for port {}", leaf.client_port))?;
        ensure!(
            subject.as_deref() == Some(leaf.subject.as_str()),
            "subject: tlsmon {subject:?}, tshark {:?}",
            leaf.subject
        );
        // Wireshark reads T61String with the T.61 table, where 0xfc is 'þ';
        // OpenSSL, and tlsmon, read it as Latin-1, where it is 'ü'. Beyond
        // ASCII the issuer is held against OpenSSL instead.
        let reference = if leaf.issuer.is_ascii() {
            leaf.issuer.clone()
        } else {
            openssl_name(&chains[i].cert, "-issuer")?
        };
        ensure!(
            issuer.as_deref() == Some(reference.as_str()),
            "issuer: tlsmon {issuer:?}, reference {reference:?} (tshark {:?})",
            leaf.issuer
        );
    }
    let latin1 = from_tlsmon
        .values()
        .any(|(_, issuer)| issuer.as_deref() == Some("CN=Müller Root CA"));
    ensure!(latin1, "no Latin-1 T61String issuer: {from_tlsmon:?}");
    scratch.passed();
    Ok(())
}

/// A TLS 1.3 draft-18 ServerHello record: version 0x7f12, random, cipher suite
/// TLS_AES_128_GCM_SHA256, and a key_share extension under its draft number (40).
fn draft18_server_hello() -> Vec<u8> {
    let mut body = vec![0x7f, 0x12];
    body.extend_from_slice(&[0x5a; 32]);
    body.extend_from_slice(&[0x13, 0x01]);
    let mut share = vec![0, 29, 0, 32];
    share.extend_from_slice(&[0x44; 32]);
    let mut ext = vec![0, 40];
    ext.extend_from_slice(&(share.len() as u16).to_be_bytes());
    ext.extend_from_slice(&share);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![2, 0];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn a_tls13_draft18_server_hello_agrees_with_tshark() -> Result<()> {
    if !tshark::available() {
        bail!("tshark is needed (cargo xtask test installs it)");
    }
    let tlsmon = tlsmon_binary()?;
    let mut scratch = Scratch::new("long-tail-draft")?;
    let dir = scratch.path().to_path_buf();
    let client: SocketAddr = "10.1.0.1:40000".parse()?;
    let server: SocketAddr = "10.1.0.2:443".parse()?;
    let hello = frames::client_hello(300);
    let reply = draft18_server_hello();
    let to_server = Shape {
        ack_number: Some(1),
        ..Shape::default()
    };
    let to_client = Shape {
        ack_number: Some(1001 + hello.len() as u32),
        ..Shape::default()
    };
    let packets = [
        frames::tcp(client, server, 1000, SYN, &[]),
        frames::syn_ack(server, client, 0, 1001, Shape::default()),
        frames::tcp_shaped(client, server, 1001, ACK, &[], to_server),
        frames::tcp_shaped(client, server, 1001, ACK | PSH, &hello, to_server),
        frames::tcp_shaped(server, client, 1, ACK | PSH, &reply, to_client),
    ];
    let pcap = dir.join("draft18.pcap");
    write_pcap(&pcap, &packets)?;
    let records = analyze(&tlsmon, &pcap, &dir)?;
    ensure!(records.len() == 1, "analyze: {records:?}");
    ensure!(
        records[0].text("failure_reason") != Some("protocol_error"),
        "{}",
        records[0].line()
    );
    let expected = tshark_choices(&pcap)?;
    ensure!(
        expected
            == [(
                40000,
                Some("0x7f12".into()),
                Some("TLS_AES_128_GCM_SHA256".into())
            )],
        "tshark: {expected:?}"
    );
    // tshark prints a draft version as its code; tlsmon names it by the draft's
    // number, the code's low byte (0x7f12: draft 18), as it was on the wire.
    let expected: Vec<Chosen> = expected
        .into_iter()
        .map(|(port, version, cipher)| {
            let version = version.map(|v| match v.strip_prefix("0x7f") {
                Some(draft) => u8::from_str_radix(draft, 16)
                    .map(|n| format!("TLSv1.3-draft{n}"))
                    .unwrap_or(v),
                None => v,
            });
            (port, version, cipher)
        })
        .collect();
    ensure!(
        tlsmon_choices(&records) == expected,
        "analyze {:?} != tshark {expected:?}",
        tlsmon_choices(&records)
    );
    scratch.passed();
    Ok(())
}

/// Writes Ethernet frames to a pcap file, a millisecond apart.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> Result<()> {
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..Default::default()
    };
    let mut writer =
        pcap_file::pcap::PcapWriter::with_header(std::fs::File::create(path)?, header)?;
    for (i, frame) in frames.iter().enumerate() {
        let at = Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64);
        writer.write_packet(&pcap_file::pcap::PcapPacket::new(
            at,
            frame.len() as u32,
            frame,
        ))?;
    }
    Ok(())
}
