//! Diagnoses of real stacks' failures (issue 12): every failing capture of the
//! corpus (OpenSSL, GnuTLS and rustls, recorded as tests/corpus/README.md says)
//! gets the diagnosis its recording implies, naming what it rests on; every
//! established handshake has none. And over a capture file the diagnosis uses the
//! whole file: a failure followed later in the file by a success with the same
//! server names the suite that server chose.
//!
//! No root needed: captures only.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use pcap_file::pcap::{PcapReader, PcapWriter};
use tlsmon::commands::capture_files::{analyze_file, AnalyzeOptions};
use tlsmon::event::{DiagnosisCode, HandshakeEvent, Outcome};
use tlsmon_tests::corpus::corpus_dir;

/// Each failing scenario, the code it must get, and text its diagnosis must hold.
const FAILURES: &[(&str, DiagnosisCode, &str)] = &[
    (
        "bad-cert-tls12",
        DiagnosisCode::ClientRejectedCertificate,
        "subject CN=server.test",
    ),
    (
        "bad-cert-tls13-openssl",
        DiagnosisCode::ClientRejectedCertificate,
        "unknown_ca",
    ),
    (
        "bad-cert-tls13",
        DiagnosisCode::ClientRejectedCertificate,
        "inferred",
    ),
    (
        "cipher-mismatch-tls12",
        DiagnosisCode::NoSharedCipher,
        "inference from the alert",
    ),
    (
        "cipher-mismatch-tls13",
        DiagnosisCode::NoSharedCipher,
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        "client-cert-missing-tls12",
        DiagnosisCode::ClientCertificateRequired,
        "CertificateRequest",
    ),
    (
        "client-cert-missing-tls13",
        DiagnosisCode::Unknown,
        "client certificate",
    ),
    ("plain-http", DiagnosisCode::NotTls, "not a TLS ClientHello"),
    (
        "server-reset",
        DiagnosisCode::ResetAfterClientHello,
        "without sending a byte",
    ),
    (
        "server-silent",
        DiagnosisCode::ServerTimeout,
        "no reply from the server",
    ),
    ("unknown-sni", DiagnosisCode::UnknownSni, "unknown.test"),
    (
        "version-mismatch",
        DiagnosisCode::NoSharedVersion,
        "at most TLSv1.2",
    ),
];

fn records(path: &Path) -> Vec<HandshakeEvent> {
    analyze_file(path, &AnalyzeOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .0
}

/// The diagnosis as one string: code, sentence and evidence.
fn words(event: &HandshakeEvent) -> String {
    serde_json::to_string(&event.diagnosis).unwrap()
}

#[test]
fn every_failing_capture_gets_the_diagnosis_its_recording_implies() {
    for (scenario, code, text) in FAILURES {
        let path = corpus_dir().join(format!("{scenario}.pcap"));
        let failed: Vec<HandshakeEvent> = records(&path)
            .into_iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .collect();
        assert_eq!(failed.len(), 1, "{scenario}");
        let diagnosis = failed[0]
            .diagnosis
            .as_ref()
            .unwrap_or_else(|| panic!("{scenario}: no diagnosis"));
        assert_eq!(diagnosis.code, *code, "{scenario}: {}", words(&failed[0]));
        assert!(
            words(&failed[0]).contains(text),
            "{scenario}: the diagnosis must say {text:?}: {}",
            words(&failed[0])
        );
        assert!(diagnosis.summary.ends_with('.'), "{scenario}");
    }
}

#[test]
fn established_handshakes_have_no_diagnosis() {
    let mut established = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("pcap" | "pcapng")
        ) {
            continue;
        }
        for record in records(&path) {
            if record.outcome != Outcome::Failed {
                assert_eq!(record.diagnosis, None, "{}", path.display());
                established += u32::from(record.outcome == Outcome::Established);
            }
        }
    }
    assert!(
        established >= 20,
        "only {established} established handshakes"
    );
}

/// Writes `first` then `second` (shifted to start 1 s after `first` ends) into `out`.
fn concatenate(first: &Path, second: &Path, out: &Path) -> Result<()> {
    let read = |path: &Path| -> Result<_> {
        let mut reader = PcapReader::new(File::open(path)?)?;
        let header = reader.header();
        let mut packets = Vec::new();
        while let Some(packet) = reader.next_packet() {
            packets.push(packet?.into_owned());
        }
        Ok((header, packets))
    };
    let (header, mut packets) = read(first)?;
    let (_, later) = read(second)?;
    let end = packets.last().context("empty capture")?.timestamp;
    let start = later.first().context("empty capture")?.timestamp;
    for mut packet in later {
        packet.timestamp = end + Duration::from_secs(1) + (packet.timestamp - start);
        packets.push(packet);
    }
    let mut writer = PcapWriter::with_header(BufWriter::new(File::create(out)?), header)?;
    for packet in &packets {
        writer.write_packet(packet)?;
    }
    Ok(())
}

#[test]
fn a_capture_file_is_diagnosed_with_what_the_whole_file_shows() -> Result<()> {
    // The same server (198.18.0.2:443, server.test): first a client without the
    // server's suite fails, later in the file another client succeeds.
    let dir = std::env::temp_dir().join(format!("tlsmon-diag-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let joined = dir.join("mismatch-then-ok.pcap");
    concatenate(
        &corpus_dir().join("cipher-mismatch-tls12.pcap"),
        &corpus_dir().join("tls12-ok.pcap"),
        &joined,
    )?;
    let all = records(&joined);
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(all.len(), 2);
    // Failures are written last, once the file was read.
    assert_eq!(all[0].outcome, Outcome::Established);
    let failed = &all[1];
    let diagnosis = failed.diagnosis.as_ref().context("no diagnosis")?;
    assert_eq!(diagnosis.code, DiagnosisCode::NoSharedCipher);
    let chosen = all[0].cipher.as_deref().context("no cipher")?;
    assert!(diagnosis.summary.contains(chosen), "{}", words(failed));
    assert!(
        words(failed).contains("in 1 successful handshake in this capture"),
        "{}",
        words(failed)
    );
    Ok(())
}
