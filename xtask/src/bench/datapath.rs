//! The datapath part: what the kernel classifier costs, from
//! `tests/src/bin/classifier-bench.rs` (throughput pairs with bpf_stats off,
//! then ns per run next to a no-op classifier with bpf_stats on), turned into
//! markdown tables.

use std::{collections::BTreeMap, path::PathBuf, process::Command};

use anyhow::{bail, Result};
use clap::Args;

use super::{output_of, Bench};
use crate::run::as_root;

/// Options of the datapath part.
#[derive(Args, Debug)]
pub struct DatapathArgs {
    /// Throughput pairs (iperf3 without and with tlsmon, alternating order).
    #[arg(long, default_value_t = 7)]
    pub pairs: usize,
    /// Seconds of each iperf3 run of a pair.
    #[arg(long, default_value_t = 10)]
    pub pair_seconds: u64,
    /// Seconds of each bulk run with bpf_stats on.
    #[arg(long, default_value_t = 10)]
    pub stats_seconds: u64,
    /// A classifier-bench binary built elsewhere (e.g. of an older commit, to
    /// compare); built from this workspace when absent.
    #[arg(long)]
    pub classifier_bench: Option<PathBuf>,
}

/// `RESULT key=value` lines of the bench's output.
fn results(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn number(results: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    results.get(key).and_then(|v| v.parse().ok())
}

/// `value` with one decimal, or "n/a".
fn ns(results: &BTreeMap<String, String>, key: &str) -> String {
    number(results, key).map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

/// tlsmon's ns per run over the no-op's, or "n/a".
fn ratio(results: &BTreeMap<String, String>, tlsmon: &str, noop: &str) -> String {
    match (number(results, tlsmon), number(results, noop)) {
        (Some(t), Some(n)) if n > 0.0 => format!("{:.2}x", t / n),
        _ => "n/a".to_owned(),
    }
}

/// Runs the classifier bench and formats its figures.
pub fn run(bench: &Bench, args: &DatapathArgs) -> Result<String> {
    let binary = match &args.classifier_bench {
        Some(path) => path.clone(),
        None => {
            output_of(bench.cargo().args([
                "build",
                "--package",
                "tlsmon-tests",
                "--bin",
                "classifier-bench",
            ]))?;
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| bench.root.join("target"), PathBuf::from);
            target.join("debug").join("classifier-bench")
        }
    };
    if !binary.exists() {
        bail!("{} does not exist", binary.display());
    }
    let mut command = Command::new(&binary);
    command.args([
        args.stats_seconds.to_string(),
        "--pairs".to_owned(),
        args.pairs.to_string(),
        "--pair-seconds".to_owned(),
        args.pair_seconds.to_string(),
    ]);
    let output = output_of(&mut as_root(command)?)?;
    eprint!("{output}");
    let r = results(&output);
    Ok(format_section(&r, args))
}

fn format_section(r: &BTreeMap<String, String>, args: &DatapathArgs) -> String {
    let get = |k: &str| r.get(k).cloned().unwrap_or_else(|| "n/a".to_owned());
    let mut md = String::new();
    md.push_str(&format!(
        "\n#### Datapath\n\n\
         `cargo xtask bench --part datapath --pairs {pairs} --pair-seconds {ps} --stats-seconds {ss}` \
         (runs `classifier-bench {ss} --pairs {pairs} --pair-seconds {ps}` as root)\n\n\
         Throughput, iperf3 client -> server through the veth, {pairs} pairs of {ps} s runs \
         without and with tlsmon (order alternating), `bpf_stats` off:\n\n\
         | without tlsmon (median) | with tlsmon (median) | loss per pair | median loss |\n\
         | ---: | ---: | --- | ---: |\n\
         | {without} Gbit/s | {with} Gbit/s | {losses} % | **{loss} %** |\n",
        pairs = args.pairs,
        ps = args.pair_seconds,
        ss = args.stats_seconds,
        without = get("throughput_without_median_gbps"),
        with = get("throughput_with_median_gbps"),
        losses = get("throughput_losses_pct").replace(' ', " / "),
        loss = get("throughput_loss_median_pct"),
    ));
    md.push_str(
        "\nns per run (`bpf_stats` on, one no-op classifier per hook attached with TCX \
         after tlsmon):\n\n\
         | traffic | tlsmon_ingress | no-op ingress | ratio | tlsmon_egress | no-op egress | ratio |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (key, what) in [
        ("bulk_ingress", "iperf3 bulk, data on ingress"),
        ("bulk_egress", "iperf3 -R bulk, data on egress"),
        ("tls_bulk", "TLS bulk after release (OpenSSL)"),
    ] {
        md.push_str(&format!(
            "| {what} | {} | {} | {} | {} | {} | {} |\n",
            ns(r, &format!("{key}_tlsmon_ingress_ns")),
            ns(r, &format!("{key}_noop_in_ns")),
            ratio(
                r,
                &format!("{key}_tlsmon_ingress_ns"),
                &format!("{key}_noop_in_ns")
            ),
            ns(r, &format!("{key}_tlsmon_egress_ns")),
            ns(r, &format!("{key}_noop_eg_ns")),
            ratio(
                r,
                &format!("{key}_tlsmon_egress_ns"),
                &format!("{key}_noop_eg_ns")
            ),
        ));
    }
    md.push_str("\n| code path (BPF_PROG_TEST_RUN x 5000) | ns per run |\n| --- | ---: |\n");
    for (key, what) in [
        ("noop", "no-op classifier (reference)"),
        ("pure_ack", "pure ACK"),
        ("untracked", "1448-byte segment, untracked flow, not TLS"),
        (
            "untracked_tls",
            "1448-byte TLS application data, untracked flow",
        ),
        ("released", "1448-byte segment of a released flow"),
        ("client_hello", "517-byte ClientHello copied (tracked)"),
    ] {
        md.push_str(&format!(
            "| {what} | {} |\n",
            get(&format!("path_{key}_ns"))
        ));
    }
    md.push_str(&format!(
        "\nVerified instructions: tlsmon_ingress {}, tlsmon_egress {}.\n",
        get("verified_tlsmon_ingress"),
        get("verified_tlsmon_egress"),
    ));
    md
}
