//! `tlsmon compare` concludes (issue 12): on captures of the two-path scenario
//! (direct over NIC A, through haproxy over NIC B, real OpenSSL and GnuTLS
//! stacks), its opening sentences name the failure rates and every planted
//! difference with its diagnosis and cause, exactly as many as were made; its
//! `--format json` says the same for scripts; and on two identical captures it
//! says there is no difference.
//!
//! Needs root (namespaces), openssl, gnutls-cli, haproxy, tcpdump and iproute2.
//! Without root it is skipped, unless `CI` is set: then it fails.

use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{ensure, Context, Result};
use tlsmon_tests::{
    binary::tlsmon_binary,
    in_scratch_dir,
    pki::Pki,
    topology::{TwoPaths, NIC_A, NIC_B},
    two_path_scenario::{
        cases, device_of, make_connections, PathCaptures, Route, Servers, SERVER_NAME, TLS12_SUITE,
    },
};

fn compare(tlsmon: &Path, args: &[&str], files: &[&Path]) -> Result<String> {
    let out = Command::new(tlsmon)
        .arg("compare")
        .args(args)
        .args(files)
        .output()
        .context("running tlsmon compare")?;
    ensure!(
        out.status.success(),
        "tlsmon compare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn compare_names_the_planted_differences_and_none_between_identical_paths() -> Result<()> {
    in_scratch_dir("compare_concludes", |dir| scenario(&tlsmon_binary()?, dir))
}

fn scenario(tlsmon: &Path, dir: &Path) -> Result<()> {
    let pki = Pki::generate(dir, SERVER_NAME)?;
    let net = TwoPaths::build()?;
    let _servers = Servers::start(&net, &pki, dir)?;
    let captures = PathCaptures::start(&net, dir)?;
    let cases = cases(&pki);
    make_connections(&net, &cases)?;

    // What was planted, per NIC: handshakes, failures, and failures per diagnosis.
    let mut made: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut planted: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for c in &cases {
        let device = device_of(c.route);
        let entry = made.entry(device).or_default();
        entry.0 += c.times;
        if let Some(f) = c.failure {
            entry.1 += c.times;
            *planted.entry((device, f.diagnosis)).or_default() += c.times;
        }
    }
    assert!(
        cases
            .iter()
            .all(|c| c.route == Route::Proxied || c.failure.is_none()),
        "the scenario plants failures on the proxied path only"
    );
    let name_a = format!("{NIC_A}.pcap");
    let name_b = format!("{NIC_B}.pcap");
    let (total_a, failed_a) = made[NIC_A];
    let (total_b, failed_b) = made[NIC_B];
    let (path_a, path_b) = captures.finish([total_a, total_b])?;

    let text = compare(tlsmon, &["--color", "never"], &[&path_a, &path_b])?;
    let (opening, table) = text
        .split_once("\n\n")
        .context("no blank line after the conclusions")?;
    let sentences: Vec<&str> = opening.lines().collect();
    let mut want = vec![format!(
        "{name_b}: {failed_b} of {total_b} handshakes failed ({name_a}: {failed_a} of {total_a})."
    )];
    for ((_, code), count) in &planted {
        let start = format!("{name_b}: {count} × {code} ({name_a}: 0 of {total_a}): ");
        let sentence = sentences
            .iter()
            .find(|s| s.starts_with(&start))
            .with_context(|| format!("no sentence starting {start:?} in:\n{opening}"))?;
        // The cause: the diagnosis's own sentence (checked below for one code).
        ensure!(sentence.ends_with('.'), "{sentence}");
        want.push((*sentence).to_owned());
    }
    // The failure rate first, then one sentence per planted diagnosis (the most
    // frequent first; their order among equal counts is not part of the check).
    assert_eq!(sentences[0], want[0]);
    let mut got_rest = sentences[1..].to_vec();
    got_rest.sort_unstable();
    let mut want_rest = want[1..].to_vec();
    want_rest.sort_unstable();
    assert_eq!(got_rest, want_rest, "the opening sentences, exactly");
    assert!(table.contains("handshakes"), "the table follows:\n{table}");

    // The same for scripts: the differences, the devices' diagnoses with their
    // most common sentence.
    let json: serde_json::Value = serde_json::from_str(&compare(
        tlsmon,
        &["--format", "json"],
        &[&path_a, &path_b],
    )?)?;
    assert_eq!(json["conclusions"]["same"], false);
    let differences: Vec<(String, String, u64)> = json["conclusions"]["differences"]
        .as_array()
        .context("differences")?
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap_or("").to_owned(),
                d["what"].as_str().unwrap_or("").to_owned(),
                d["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut want_differences = vec![(name_b.clone(), "failed".to_owned(), u64::from(failed_b))];
    for ((_, code), count) in &planted {
        want_differences.push((name_b.clone(), (*code).to_owned(), u64::from(*count)));
    }
    assert_eq!(differences[0], want_differences[0]);
    let mut differences = differences;
    differences.sort();
    want_differences.sort();
    assert_eq!(differences, want_differences);
    assert_eq!(json["devices"][&name_a]["failed"], 0);
    for ((_, code), count) in &planted {
        assert_eq!(json["devices"][&name_b]["diagnoses"][code]["count"], *count);
    }
    // The cause named for no_shared_cipher is the suite the server chose.
    let cause = json["devices"][&name_b]["diagnoses"]["no_shared_cipher"]["example"]
        .as_str()
        .unwrap_or("");
    ensure!(cause.contains(TLS12_SUITE), "{cause}");

    // Two identical paths: nothing to report.
    let copy = dir.join(format!("{NIC_B}-again.pcap"));
    std::fs::copy(&path_b, &copy)?;
    let text = compare(tlsmon, &["--color", "never"], &[&path_b, &copy])?;
    let first = text.lines().next().unwrap_or("");
    assert_eq!(
        first,
        // Devices in name order: "srv-b-again.pcap" sorts before "srv-b.pcap".
        format!(
            "No difference that matters between {NIC_B}-again.pcap and {name_b}: \
             {NIC_B}-again.pcap: {failed_b} of {total_b} failed; {name_b}: {failed_b} of {total_b} failed, \
             with the same diagnoses in the same shares."
        ),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&compare(tlsmon, &["--format", "json"], &[&path_b, &copy])?)?;
    assert_eq!(json["conclusions"]["same"], true);
    assert_eq!(json["conclusions"]["differences"], serde_json::json!([]));
    Ok(())
}
