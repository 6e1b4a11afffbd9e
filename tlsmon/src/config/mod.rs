//! The daemon's TOML configuration file (`tlsmon run --config FILE`).
//!
//! Every field is optional so the command line can be layered on top: the CLI
//! builds a [`Config`] from its flags and calls `file.merge(flags)` (flags win),
//! then [`Config::resolve`] fills the defaults. Unknown keys are errors, and
//! every error names the file, line and column.

use std::{
    fmt, fs,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::pipeline::preamble::{
    starttls::parse_port_spec, StarttlsProtocol, DEFAULT_STARTTLS_PORTS,
};
use serde::{de::Error as _, Deserialize, Deserializer};

use crate::pipeline::flow_table::DEFAULT_HANDSHAKE_TIMEOUT;
pub use crate::pipeline::flow_table::DEFAULT_MAX_FLOWS;
use crate::sinks::metrics::{LabelOptions, DEFAULT_TOP_K};

/// Default listen address of `/metrics` and `/healthz`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9808);
/// Default per-direction byte budget of a tracked flow (kernel copy limit).
pub const DEFAULT_BYTE_BUDGET: u32 = tlsmon_common::DEFAULT_BYTE_BUDGET;
/// Default seconds without progress before a handshake counts as a timeout (the flow
/// table's default, in the unit of the file and the flags).
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: f64 = DEFAULT_HANDSHAKE_TIMEOUT.as_secs_f64();
/// Default log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Smallest byte budget accepted: a ClientHello must fit, and modern ones with
/// post-quantum key shares are ~1.8 KB.
pub const MIN_BYTE_BUDGET: u32 = 2048;
/// Largest byte budget accepted (the kernel copies at most this per direction).
pub const MAX_BYTE_BUDGET: u32 = 1 << 20;
/// Largest `top_k` accepted: each value is a time series per device and outcome.
pub const MAX_TOP_K: usize = 10_000;
/// Longest handshake timeout accepted.
pub const MAX_HANDSHAKE_TIMEOUT_SECS: f64 = 3600.0;
/// Shortest handshake timeout accepted: less would fail healthy handshakes over
/// long-distance links.
pub const MIN_HANDSHAKE_TIMEOUT_SECS: f64 = 0.1;
/// Most handshakes that may be followed at once.
pub const MAX_MAX_FLOWS: usize = 10_000_000;
/// Largest ring of recent events (`/api/v1/events`) accepted.
pub const MAX_RECENT_EVENTS: usize = 1_000_000;
pub use crate::sinks::recent_events::DEFAULT_CAPACITY as DEFAULT_RECENT_EVENTS;

/// Errors loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. (The OS error is in the message and not a
    /// `source()`, so `{:#}` does not repeat it.)
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file is not valid TOML or has a bad value or unknown key.
    #[error("{path}:{location}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where in the file ("line 3, column 1", or "?" when unknown).
        location: Location,
        /// What is wrong.
        message: String,
    },
}

/// A 1-based line and column in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1; 0 when unknown.
    pub line: usize,
    /// Column in characters, from 1; 0 when unknown.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str("?")
        } else {
            write!(f, "{}:{}", self.line, self.column)
        }
    }
}

/// Settings from a file or flags; `None` means "not given here".
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of `/metrics` and `/healthz` (default 0.0.0.0:9808).
    pub listen: Option<SocketAddr>,
    /// Interface name globs to attach to (default: every up, non-loopback one).
    #[serde(default, deserialize_with = "globs")]
    pub interfaces: Option<Vec<String>>,
    /// Per-direction bytes the kernel copies of each tracked connection.
    #[serde(default, deserialize_with = "byte_budget")]
    pub byte_budget: Option<u32>,
    /// Append one JSON line per handshake to this file.
    pub events_file: Option<PathBuf>,
    /// Seconds without progress before a handshake is reported as a timeout.
    #[serde(default, deserialize_with = "handshake_timeout")]
    pub handshake_timeout_secs: Option<f64>,
    /// Handshakes followed at once; beyond, the least recently active is dropped.
    #[serde(default, deserialize_with = "max_flows")]
    pub max_flows: Option<usize>,
    /// Open-ended metric labels.
    pub labels: Option<LabelsConfig>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives.
    #[serde(default, deserialize_with = "log_level")]
    pub log_level: Option<String>,
    /// Attach to interfaces another tlsmon daemon already watches (default false).
    pub allow_shared_interface: Option<bool>,
    /// Log lines as text (default) or JSON objects.
    pub log_format: Option<LogFormat>,
    /// TLS and basic authentication for the endpoint (exporter-toolkit web
    /// config, see `crate::sinks::http::web_config`).
    pub web_config_file: Option<PathBuf>,
    /// Recent events kept for `/api/v1/events` (default 10,000).
    #[serde(default, deserialize_with = "recent_events")]
    pub recent_events: Option<usize>,
    /// STARTTLS ports beyond the well-known ones, as `PROTOCOL:PORT`.
    #[serde(default, deserialize_with = "starttls_ports")]
    pub starttls_ports: Option<Vec<(u16, StarttlsProtocol)>>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The `[labels]` table: open-ended labels, all off by default but `service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Export handshakes by requested server name.
    pub sni: Option<bool>,
    /// Export handshakes by JA3 fingerprint.
    pub ja3: Option<bool>,
    /// Export handshakes by JA4 fingerprint.
    pub ja4: Option<bool>,
    /// Export handshakes by client address.
    pub client_ip: Option<bool>,
    /// Export handshakes by local service (default true).
    pub service: Option<bool>,
    /// Distinct values kept per open-ended label before folding into "other".
    #[serde(default, deserialize_with = "top_k")]
    pub top_k: Option<usize>,
}

/// A configuration with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Address of `/metrics` and `/healthz`.
    pub listen: SocketAddr,
    /// Interface globs; empty means every up, non-loopback interface.
    pub interfaces: Vec<String>,
    /// Per-direction byte budget.
    pub byte_budget: u32,
    /// JSON events file, if any.
    pub events_file: Option<PathBuf>,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// Handshakes followed at once.
    pub max_flows: usize,
    /// Open-ended label options.
    pub labels: LabelOptions,
    /// Log filter.
    pub log_level: String,
    /// Attach next to another daemon instead of refusing.
    pub allow_shared_interface: bool,
    /// Log line format.
    pub log_format: LogFormat,
    /// Web config file of the endpoint, if any.
    pub web_config_file: Option<PathBuf>,
    /// Recent events kept for `/api/v1/events`.
    pub recent_events: usize,
    /// STARTTLS server ports followed: the well-known ones and those configured.
    pub starttls_ports: Vec<(u16, StarttlsProtocol)>,
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Parses TOML `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            location: e
                .span()
                .map_or(Location { line: 0, column: 0 }, |s| location(text, s)),
            message: e.message().trim_end().to_owned(),
        })
    }

    /// `self` with every field that `overrides` sets replaced (flags win over
    /// the file: `file.merge(flags)`).
    pub fn merge(self, overrides: Config) -> Config {
        Config {
            listen: overrides.listen.or(self.listen),
            interfaces: overrides.interfaces.or(self.interfaces),
            byte_budget: overrides.byte_budget.or(self.byte_budget),
            events_file: overrides.events_file.or(self.events_file),
            handshake_timeout_secs: overrides
                .handshake_timeout_secs
                .or(self.handshake_timeout_secs),
            max_flows: overrides.max_flows.or(self.max_flows),
            labels: match (self.labels, overrides.labels) {
                (Some(base), Some(over)) => Some(base.merge(over)),
                (base, over) => over.or(base),
            },
            log_level: overrides.log_level.or(self.log_level),
            allow_shared_interface: overrides
                .allow_shared_interface
                .or(self.allow_shared_interface),
            log_format: overrides.log_format.or(self.log_format),
            web_config_file: overrides.web_config_file.or(self.web_config_file),
            recent_events: overrides.recent_events.or(self.recent_events),
            starttls_ports: overrides.starttls_ports.or(self.starttls_ports),
        }
    }

    /// The settings with defaults for everything not given.
    pub fn resolve(self) -> Settings {
        let labels = self.labels.unwrap_or_default();
        Settings {
            listen: self.listen.unwrap_or(DEFAULT_LISTEN),
            interfaces: self.interfaces.unwrap_or_default(),
            byte_budget: self.byte_budget.unwrap_or(DEFAULT_BYTE_BUDGET),
            events_file: self.events_file,
            // Validated finite and positive when it came from a file; a value
            // from flags that is not falls back to the default rather than panic.
            handshake_timeout: Duration::try_from_secs_f64(
                self.handshake_timeout_secs
                    .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            )
            .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
            max_flows: self.max_flows.unwrap_or(DEFAULT_MAX_FLOWS),
            labels: LabelOptions {
                sni: labels.sni.unwrap_or(false),
                ja3: labels.ja3.unwrap_or(false),
                ja4: labels.ja4.unwrap_or(false),
                client_ip: labels.client_ip.unwrap_or(false),
                service: labels.service.unwrap_or(true),
                top_k: labels.top_k.unwrap_or(DEFAULT_TOP_K),
            },
            log_level: self
                .log_level
                .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
            allow_shared_interface: self.allow_shared_interface.unwrap_or(false),
            log_format: self.log_format.unwrap_or_default(),
            web_config_file: self.web_config_file,
            recent_events: self.recent_events.unwrap_or(DEFAULT_RECENT_EVENTS),
            starttls_ports: with_default_starttls_ports(self.starttls_ports.unwrap_or_default()),
        }
    }
}

impl LabelsConfig {
    /// `self` with every field that `overrides` sets replaced.
    pub fn merge(self, overrides: LabelsConfig) -> LabelsConfig {
        LabelsConfig {
            sni: overrides.sni.or(self.sni),
            ja3: overrides.ja3.or(self.ja3),
            ja4: overrides.ja4.or(self.ja4),
            client_ip: overrides.client_ip.or(self.client_ip),
            service: overrides.service.or(self.service),
            top_k: overrides.top_k.or(self.top_k),
        }
    }
}

/// Line and column (1-based, in characters) of the start of `span` in `text`.
fn location(text: &str, span: Range<usize>) -> Location {
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Checks that `value` is within `range` (for the deserialisers below).
fn in_range<T, E>(value: T, range: std::ops::RangeInclusive<T>, what: &str) -> Result<T, E>
where
    T: PartialOrd + fmt::Display,
    E: serde::de::Error,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(E::custom(format!(
            "{what} must be between {} and {}, not {value}",
            range.start(),
            range.end()
        )))
    }
}

// Validation happens while deserialising so that toml reports the position of
// the offending value.

/// The well-known STARTTLS ports followed by `extra` (an extra entry for a
/// well-known port replaces its protocol).
pub fn with_default_starttls_ports(
    extra: Vec<(u16, StarttlsProtocol)>,
) -> Vec<(u16, StarttlsProtocol)> {
    let mut ports: Vec<(u16, StarttlsProtocol)> = DEFAULT_STARTTLS_PORTS
        .iter()
        .filter(|(port, _)| !extra.iter().any(|(p, _)| p == port))
        .copied()
        .collect();
    ports.extend(extra);
    ports
}

fn starttls_ports<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<(u16, StarttlsProtocol)>>, D::Error> {
    let specs = Vec::<String>::deserialize(d)?;
    specs
        .iter()
        .map(|spec| parse_port_spec(spec).map_err(serde::de::Error::custom))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn byte_budget<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = u32::deserialize(d)?;
    in_range(v, MIN_BYTE_BUDGET..=MAX_BYTE_BUDGET, "byte_budget").map(Some)
}

fn handshake_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = f64::deserialize(d)?;
    in_range(
        v,
        MIN_HANDSHAKE_TIMEOUT_SECS..=MAX_HANDSHAKE_TIMEOUT_SECS,
        "handshake_timeout_secs",
    )
    .map(Some)
}

fn max_flows<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let v = usize::deserialize(d)?;
    in_range(v, 1..=MAX_MAX_FLOWS, "max_flows").map(Some)
}

fn recent_events<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let v = usize::deserialize(d)?;
    in_range(v, 1..=MAX_RECENT_EVENTS, "recent_events").map(Some)
}

fn top_k<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let v = usize::deserialize(d)?;
    in_range(v, 1..=MAX_TOP_K, "top_k").map(Some)
}

fn globs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let globs = Vec::<String>::deserialize(d)?;
    for g in &globs {
        if g.is_empty() {
            return Err(D::Error::custom("an interface glob cannot be empty"));
        }
        globset::Glob::new(g)
            .map_err(|e| D::Error::custom(format!("bad interface glob {g:?}: {e}")))?;
    }
    Ok(Some(globs))
}

fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = String::deserialize(d)?;
    tracing_subscriber::EnvFilter::try_new(&v)
        .map_err(|e| D::Error::custom(format!("bad log_level {v:?}: {e}")))?;
    Ok(Some(v))
}

#[cfg(test)]
mod tests;
