//! Command-line interface: every command and flag, with its help and default.

use crate::pipeline::preamble::{starttls::parse_port_spec, StarttlsProtocol};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config;
use crate::sinks::comparison::GroupBy;

/// eBPF TLS handshake monitor: which handshakes fail, on which interface, and why.
#[derive(Debug, Parser)]
#[command(name = "tlsmon", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// tlsmon's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse pcap/pcapng capture files with the same pipeline, offline (no root needed).
    Analyze(AnalyzeArgs),
    /// Run the daemon: capture on interfaces, serve /metrics and /healthz (needs root).
    Run(RunArgs),
    /// Print one line per handshake as it completes, like tcpdump for handshakes (needs root).
    Watch(WatchArgs),
    /// Compare handshakes per interface side by side and highlight what differs.
    Compare(CompareArgs),
}

/// Capture options shared by `run` and `watch`.
#[derive(Debug, Args, Clone, Default)]
pub struct CaptureArgs {
    /// Interface to watch; repeatable; shell-style globs ("eth*"). Default: every
    /// interface that is up, except loopback.
    #[arg(short, long = "interface", value_name = "NAME")]
    pub interfaces: Vec<String>,
    /// `--byte-budget`; `None` leaves the configuration's value.
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = parse_byte_budget,
        help = with_default(
            "Bytes copied per connection direction in the kernel at most (a safety bound: the kernel follows TLS records and skips large record bodies)",
            config::DEFAULT_BYTE_BUDGET,
        )
    )]
    pub byte_budget: Option<u32>,
    /// `--handshake-timeout` in seconds; `None` leaves the configuration's value.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_handshake_timeout,
        help = with_default(
            "Seconds without progress after which a handshake fails with `timeout`",
            config::DEFAULT_HANDSHAKE_TIMEOUT_SECS,
        )
    )]
    pub handshake_timeout: Option<f64>,
    /// `--max-flows`; `None` leaves the configuration's value.
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_max_flows,
        help = with_default(
            "Most handshakes tracked at once; beyond, the least recently active is dropped \
             and counted",
            config::DEFAULT_MAX_FLOWS,
        )
    )]
    pub max_flows: Option<usize>,
    /// Extra STARTTLS server port as `PROTOCOL:PORT` (smtp, imap, pop3, ftp, xmpp,
    /// postgres, ldap, mysql); the well-known ports are always followed; repeatable.
    #[arg(long = "starttls-port", value_name = "PROTOCOL:PORT", value_parser = parse_port_spec)]
    pub starttls_ports: Vec<(u16, StarttlsProtocol)>,
}

/// `tlsmon run`.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Interfaces and capture bounds.
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// `--listen`; `None` leaves the configuration's value.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        help = with_default("Address for /metrics and /healthz", config::DEFAULT_LISTEN)
    )]
    pub listen: Option<SocketAddr>,
    /// TOML configuration file; command-line flags override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Append every handshake as a JSON line to this file.
    #[arg(long, value_name = "FILE")]
    pub events_file: Option<PathBuf>,
    /// Add an SNI-labelled metric (capped at --top-k values plus "other").
    #[arg(long)]
    pub label_sni: bool,
    /// Add a JA3-labelled metric (capped at --top-k values plus "other").
    #[arg(long)]
    pub label_ja3: bool,
    /// Add a JA4-labelled metric (capped at --top-k values plus "other").
    #[arg(long)]
    pub label_ja4: bool,
    /// Add a client-address-labelled metric (capped at --top-k values plus "other").
    #[arg(long)]
    pub label_client_ip: bool,
    /// `--top-k`; `None` leaves the configuration's value.
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_top_k,
        help = with_default(
            "Distinct values kept per open-ended label before folding into \"other\"",
            crate::sinks::metrics::DEFAULT_TOP_K,
        )
    )]
    pub top_k: Option<usize>,
    /// `--log-level`; `None` leaves the configuration's value.
    #[arg(
        long,
        value_name = "FILTER",
        help = with_default(
            "Log filter (tracing EnvFilter syntax, e.g. \"info\" or \"tlsmon=debug\")",
            config::DEFAULT_LOG_LEVEL,
        )
    )]
    pub log_level: Option<String>,
    /// Attach to interfaces another tlsmon daemon already watches instead of
    /// refusing to start (each daemon then counts every handshake there).
    #[arg(long)]
    pub allow_shared_interface: bool,
    /// Log lines as text or as one JSON object per line [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<crate::config::LogFormat>,
    /// Serve the endpoint with TLS and/or basic authentication as this file says
    /// (the Prometheus exporter-toolkit web config format, as node_exporter's).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// `--recent-events`; `None` leaves the configuration's value.
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_recent_events,
        help = with_default(
            "Recent handshake events kept in memory and served at /api/v1/events",
            config::DEFAULT_RECENT_EVENTS,
        )
    )]
    pub recent_events: Option<usize>,
}

/// `tlsmon watch`.
#[derive(Debug, Args, Clone, Default)]
pub struct WatchArgs {
    /// Interfaces and capture bounds.
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Print JSON lines (the documented event schema) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show only failed handshakes.
    #[arg(long)]
    pub failures_only: bool,
    /// Colour failures: auto (when the output is a terminal), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// When to colour text output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When standard output is a terminal.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Output formats of `analyze`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum AnalyzeFormat {
    /// One line per handshake, then a summary.
    #[default]
    Text,
    /// One JSON object per line per handshake (the documented event schema).
    Json,
    /// The Prometheus metrics the daemon would export for these handshakes.
    Metrics,
}

/// `tlsmon analyze`.
#[derive(Debug, Args, Clone)]
pub struct AnalyzeArgs {
    /// pcap or pcapng files; each file's name stands in for the interface.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AnalyzeFormat::Text)]
    pub format: AnalyzeFormat,
    /// Seconds without progress (in capture time) after which a handshake fails with `timeout`.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = config::DEFAULT_HANDSHAKE_TIMEOUT_SECS
    )]
    pub handshake_timeout: f64,
    /// Extra server port where non-TLS first bytes count as a `not_tls` failure
    /// (443, 8443 and other well-known TLS ports are always included); repeatable.
    #[arg(long = "tls-port", value_name = "PORT")]
    pub tls_ports: Vec<u16>,
    /// Extra STARTTLS server port as `PROTOCOL:PORT` (smtp, imap, pop3, ftp, xmpp,
    /// postgres, ldap, mysql); the well-known ports are always followed; repeatable.
    #[arg(long = "starttls-port", value_name = "PROTOCOL:PORT", value_parser = parse_port_spec)]
    pub starttls_ports: Vec<(u16, StarttlsProtocol)>,
    /// Show only failed handshakes (the summary still counts all).
    #[arg(long)]
    pub failures_only: bool,
    /// Colour failures in text output: auto, always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// `tlsmon compare`.
#[derive(Debug, Args, Clone)]
pub struct CompareArgs {
    /// Capture files (pcap/pcapng; one interface per file) or JSON-lines event files
    /// written by `tlsmon run --events-file` (grouped by their `device` field, or
    /// `service` with `--by service`).
    #[arg(required_unless_present = "from", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also compare the devices of a running daemon, from its recent events
    /// (`http://HOST:PORT`, optionally `http://USER:PASSWORD@HOST:PORT`).
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// Seconds without progress after which a handshake in a capture fails with `timeout`.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = config::DEFAULT_HANDSHAKE_TIMEOUT_SECS
    )]
    pub handshake_timeout: f64,
    /// Colour differences: auto, always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Columns of the report: one per device, or one per local service (the
    /// `service` field of event files; captures have none).
    #[arg(long = "by", value_enum, default_value_t = GroupBy::Device)]
    pub group_by: GroupBy,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CompareFormat::Text)]
    pub format: CompareFormat,
}

/// Output formats of `compare`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    /// Conclusions in a few sentences, then the table.
    #[default]
    Text,
    /// One JSON document: conclusions, differences, diagnoses per device, the table.
    Json,
}

/// Help text of a flag whose default comes from the configuration (an `Option` flag,
/// so that an absent flag does not override the file): clap's own "[default: ...]"
/// suffix, written from the same constant the configuration uses.
fn with_default(help: &str, default: impl std::fmt::Display) -> String {
    format!("{help} [default: {default}]")
}

// The flags accept exactly what the config file accepts (same bounds, same words).

fn parse_in_range<T>(text: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match text.parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!(
            "must be a number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

fn parse_byte_budget(text: &str) -> Result<u32, String> {
    parse_in_range(text, config::MIN_BYTE_BUDGET..=config::MAX_BYTE_BUDGET)
}

fn parse_handshake_timeout(text: &str) -> Result<f64, String> {
    parse_in_range(
        text,
        config::MIN_HANDSHAKE_TIMEOUT_SECS..=config::MAX_HANDSHAKE_TIMEOUT_SECS,
    )
}

fn parse_max_flows(text: &str) -> Result<usize, String> {
    parse_in_range(text, 1..=config::MAX_MAX_FLOWS)
}

fn parse_recent_events(text: &str) -> Result<usize, String> {
    parse_in_range(text, 1..=config::MAX_RECENT_EVENTS)
}

fn parse_top_k(text: &str) -> Result<usize, String> {
    parse_in_range(text, 1..=config::MAX_TOP_K)
}

#[cfg(test)]
mod tests;
