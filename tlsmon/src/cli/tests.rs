use super::*;
use clap::CommandFactory;

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn parses_repeatable_interfaces_and_formats() {
    let cli = Cli::try_parse_from(["tlsmon", "analyze", "a.pcap", "--format", "json"]).unwrap();
    let Command::Analyze(analyze) = cli.command else {
        panic!("expected analyze")
    };
    assert_eq!(analyze.format, AnalyzeFormat::Json);
    let cli = Cli::try_parse_from([
        "tlsmon",
        "run",
        "-i",
        "eth*",
        "--interface",
        "ens3",
        "--listen",
        "127.0.0.1:9999",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("expected run")
    };
    assert_eq!(run.capture.interfaces, vec!["eth*", "ens3"]);
    assert_eq!(run.listen, Some("127.0.0.1:9999".parse().unwrap()));
}

#[test]
fn out_of_range_flags_are_refused() {
    assert!(Cli::try_parse_from(["tlsmon", "run", "--byte-budget", "100"]).is_err());
    assert!(Cli::try_parse_from(["tlsmon", "watch", "--handshake-timeout", "0"]).is_err());
    assert!(Cli::try_parse_from(["tlsmon", "run", "--top-k", "0"]).is_err());
}

#[test]
fn compare_groups_by_device_unless_told_service() {
    let cli = Cli::try_parse_from(["tlsmon", "compare", "events.jsonl"]).unwrap();
    let Command::Compare(compare) = cli.command else {
        panic!("expected compare")
    };
    assert_eq!(compare.group_by, GroupBy::Device);
    let cli = Cli::try_parse_from(["tlsmon", "compare", "--by", "service", "e.jsonl"]).unwrap();
    let Command::Compare(compare) = cli.command else {
        panic!("expected compare")
    };
    assert_eq!(compare.group_by, GroupBy::Service);
    assert!(Cli::try_parse_from(["tlsmon", "compare", "--by", "pod", "e.jsonl"]).is_err());
}
