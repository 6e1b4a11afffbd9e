//! `tlsmon analyze` on captures made hostile on purpose: 10,000 unanswered
//! ClientHellos offering code points no registry names (and GREASE) must not change
//! how a genuine OpenSSL handshake after them is labelled, and control characters
//! from the wire (an SNI with ESC and NUL, a capture file name with ESC) reach the
//! metrics and the terminal escaped.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;
use tlsmon_tests::{
    binary::tlsmon_binary,
    corpus,
    exposition::Scrape,
    hostile::{self, HostileHello, SplitMix64},
};

/// Unanswered hostile connections put in front of the genuine handshake.
const HOSTILE_CONNECTIONS: usize = 10_000;

/// A directory of this test's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tlsmon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tlsmon ARGS`, which must succeed; returns its output.
fn tlsmon(args: &[&str], file: &Path) -> Output {
    let output = Command::new(tlsmon_binary().unwrap())
        .args(args)
        .arg(file)
        .output()
        .expect("run tlsmon");
    assert!(
        output.status.success(),
        "tlsmon {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Client `i` of the hostile connections: 200 addresses in 198.18.1.0/24 with up to
/// 328 ports each, so no two share a 4-tuple (and none the genuine client's
/// 198.18.0.1).
fn hostile_client(i: usize) -> SocketAddr {
    assert!(i < 200 * 328);
    SocketAddr::from(([198, 18, 1, 1 + (i % 200) as u8], 20_000 + (i / 200) as u16))
}

/// The offered values of the genuine handshake, from the corpus expectations.
fn genuine_offers(field: &str) -> Vec<String> {
    let expectation = corpus::expectations()
        .unwrap()
        .into_iter()
        .find(|e| e.scenario == "tls13-ok")
        .expect("tls13-ok is in the corpus");
    let [handshake] = expectation.handshakes.as_slice() else {
        panic!("tls13-ok holds one handshake")
    };
    handshake[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is a list"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Every sample of `name` as label value of `label` -> value; each label value must
/// appear once (the capture has one device and one direction).
fn by_label(scrape: &Scrape, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for sample in scrape.select(name, &[]) {
        let previous = out.insert(sample.labels[label].clone(), sample.value);
        assert_eq!(previous, None, "two {name} samples for {label}: {sample:?}");
    }
    out
}

/// `values` each counted once, plus `unknown` counted once per hostile ClientHello.
fn genuine_once_and_unknown(values: &[String]) -> BTreeMap<String, f64> {
    let mut want: BTreeMap<String, f64> = values.iter().map(|v| (v.clone(), 1.0)).collect();
    want.insert("unknown".into(), HOSTILE_CONNECTIONS as f64);
    want
}

#[test]
fn hostile_offers_cannot_change_how_analyze_labels_a_genuine_handshake() {
    let dir = TempDir::new("hostile-analyze");
    let mut rng = SplitMix64::new(0x7e57_1abe);
    let server: SocketAddr = "198.18.0.2:443".parse().unwrap();
    let mut frames = Vec::with_capacity(HOSTILE_CONNECTIONS * 4);
    let mut distinct_ciphers = std::collections::BTreeSet::new();
    for i in 0..HOSTILE_CONNECTIONS {
        let hello = HostileHello::random(&mut rng);
        distinct_ciphers.extend(hello.ciphers.iter().copied());
        frames.extend(
            hostile::unanswered_connection(hostile_client(i), server, &hello.record()).unwrap(),
        );
    }
    // Far beyond any cap a first-come scheme could offer.
    assert!(
        distinct_ciphers.len() > 50_000,
        "{}",
        distinct_ciphers.len()
    );
    let capture = dir.0.join("hostile-then-tls13-ok.pcap");
    // The genuine handshake starts 15 s after the last hostile ClientHello, past the
    // 10 s handshake timeout: every hostile handshake has then failed and been
    // counted before it, as on a live host under attack (had they stayed open,
    // they would only be counted at the end of the capture, after it).
    hostile::write_capture_before(
        &capture,
        &frames,
        Duration::from_secs(15),
        &corpus::corpus_dir().join("tls13-ok.pcap"),
    )
    .unwrap();

    let output = tlsmon(&["analyze", "--format", "metrics"], &capture);
    let text = String::from_utf8(output.stdout).unwrap();
    let scrape = Scrape::parse(&text).unwrap();

    // Every sample is of this one capture, and the genuine handshake keeps its
    // real version, cipher and group.
    for sample in &scrape.samples {
        if let Some(device) = sample.labels.get("device") {
            assert_eq!(device, "hostile-then-tls13-ok.pcap", "{sample:?}");
        }
    }
    let handshakes: Vec<(String, String, String, f64)> = scrape
        .select("tlsmon_handshakes_total", &[("direction", "unknown")])
        .map(|s| {
            (
                s.labels["version"].clone(),
                s.labels["cipher"].clone(),
                s.labels["outcome"].clone(),
                s.value,
            )
        })
        .collect();
    assert_eq!(
        handshakes,
        [
            (
                String::new(),
                String::new(),
                "failed".to_owned(),
                HOSTILE_CONNECTIONS as f64
            ),
            (
                "TLSv1.3".to_owned(),
                "TLS_CHACHA20_POLY1305_SHA256".to_owned(),
                "established".to_owned(),
                1.0
            ),
        ]
    );
    assert_eq!(
        scrape.sum("tlsmon_handshakes_total", &[]),
        (HOSTILE_CONNECTIONS + 1) as f64
    );
    assert_eq!(
        scrape.sum(
            "tlsmon_handshake_failures_total",
            &[("reason", "timeout"), ("stage", "before_server_hello")]
        ),
        HOSTILE_CONNECTIONS as f64
    );
    assert_eq!(
        by_label(&scrape, "tlsmon_handshake_groups_total", "group"),
        BTreeMap::from([("x25519".to_owned(), 1.0)])
    );

    // What was offered: the genuine client's registered names once each, every
    // hostile ClientHello once as `unknown`, GREASE and hex never.
    assert_eq!(
        by_label(
            &scrape,
            "tlsmon_client_hello_offered_versions_total",
            "version"
        ),
        genuine_once_and_unknown(&genuine_offers("offered_versions"))
    );
    assert_eq!(
        by_label(
            &scrape,
            "tlsmon_client_hello_offered_ciphers_total",
            "cipher"
        ),
        genuine_once_and_unknown(&genuine_offers("offered_ciphers"))
    );
    assert_eq!(
        by_label(&scrape, "tlsmon_client_hello_offered_groups_total", "group"),
        genuine_once_and_unknown(&genuine_offers("offered_groups"))
    );
    assert_eq!(
        by_label(&scrape, "tlsmon_label_values_folded_total", "label"),
        BTreeMap::from([("device".to_owned(), 0.0)])
    );
}

#[test]
fn control_characters_from_the_wire_are_escaped_in_metrics_and_text() {
    let dir = TempDir::new("hostile-escape");
    let hello = HostileHello {
        ciphers: vec![0x1301],
        versions: vec![0x0304],
        groups: vec![29],
        sni: Some(b"evil\x1b[2J\x00.test".to_vec()),
    };
    let frames = hostile::unanswered_connection(
        "198.18.1.1:40000".parse().unwrap(),
        "198.18.0.2:443".parse().unwrap(),
        &hello.record(),
    )
    .unwrap();
    // The capture's file name is the device label: another string tlsmon did not
    // choose.
    let capture = dir.0.join("cap\x1b]0;x\x07.pcap");
    hostile::write_capture(&capture, &frames, Duration::from_secs(1_700_000_000)).unwrap();

    let no_controls = |what: &str, bytes: &[u8]| {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: {text:?}"
        );
        text
    };

    // The JSON event keeps the real SNI (serde_json escapes it its own way).
    let json = tlsmon(&["analyze", "--format", "json"], &capture);
    let event: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(event["sni"], "evil\x1b[2J\0.test");
    assert_eq!(event["device"], "cap\x1b]0;x\x07.pcap");

    let text = tlsmon(&["analyze", "--format", "text"], &capture);
    let text = no_controls("analyze --format text", &text.stdout);
    let line = text.lines().next().unwrap();
    assert!(
        line.contains(r" cap\x1b]0;x\x07.pcap unknown 198.18.1.1:40000 -> 198.18.0.2:443 sni=evil\x1b[2J\x00.test - - - incomplete"),
        "{line}"
    );
    assert!(
        text.contains("\ndevice cap\\x1b]0;x\\x07.pcap: 1 handshakes, 0 established, 0 failed, 1 incomplete\n"),
        "{text}"
    );

    let metrics = tlsmon(&["analyze", "--format", "metrics"], &capture);
    let metrics = no_controls("analyze --format metrics", &metrics.stdout);
    let scrape = Scrape::parse(&metrics).unwrap();
    assert_eq!(
        scrape.value(
            "tlsmon_handshakes_total",
            &[
                ("device", r"cap\x1b]0;x\x07.pcap"),
                ("direction", "unknown"),
                ("transport", "tcp"),
                ("version", ""),
                ("cipher", ""),
                ("outcome", "incomplete"),
            ]
        ),
        Some(1.0),
        "{metrics}"
    );

    let compare = Command::new(tlsmon_binary().unwrap())
        .args(["compare", "--color", "never"])
        .arg(&capture)
        .output()
        .unwrap();
    assert!(compare.status.success());
    let compare = no_controls("compare", &compare.stdout);
    // The conclusions (escaped too), then a blank line, then the table's header.
    let (conclusions, table) = compare.split_once("\n\n").unwrap();
    assert!(
        conclusions.starts_with(r"Only one device, cap\x1b]0;x\x07.pcap:"),
        "{compare}"
    );
    assert_eq!(
        table.lines().next().unwrap().trim(),
        r"cap\x1b]0;x\x07.pcap",
        "{compare}"
    );
}
