//! `--web.config.file`: TLS and basic authentication for the metrics endpoint,
//! in the file format of the Prometheus exporter-toolkit, as node_exporter reads
//! it:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.pem          # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: clients-ca.pem                 # with a verifying type
//!   min_version: TLS12                             # optional: TLS12, TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                         # bcrypt hash
//! ```
//!
//! tlsmon reads the subset it can honour with rustls; any other key (cipher
//! suites, curve preferences, HTTP headers, HTTP/2) is refused with its name, so
//! that no setting is silently ignored. An empty file means plain HTTP without
//! authentication. `/healthz` needs no password (probes must reach it; it tells
//! nothing but "ok" or what is wrong with capture), but is served over TLS too.

mod auth;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    crypto::aws_lc_rs,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use serde::Deserialize;

pub use auth::{BasicAuth, Credentials, CACHED_LOGINS, CONCURRENT_CHECKS, MAX_HEADER_BYTES};

/// Largest web config file read (it holds a few paths and password hashes).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What can be wrong with a web config file.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file (or a file it names) could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes; not a web config file")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not YAML of the expected shape (the message has the line and column).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with its location.
        message: String,
    },
    /// A value that is well-formed but not usable.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A certificate or key file rustls cannot use.
    #[error("{path}: {what}: {message}")]
    Tls {
        /// The certificate or key file.
        path: PathBuf,
        /// Which file it is (`cert_file`, `key_file`, `client_ca_file`).
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The file as written (paths not yet resolved).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// Whether and how clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate asked for (`NoClientCert`, the default).
    None,
    /// A certificate is optional, but verified against the client CA if sent
    /// (`VerifyClientCertIfGiven`).
    VerifyIfGiven,
    /// A certificate from the client CA is required (`RequireAndVerifyClientCert`).
    Require,
}

/// The TLS settings, with paths resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Server certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Client certificates.
    pub client_auth: ClientAuth,
    /// CA that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Protocol versions allowed, oldest first (a subset of TLS 1.2 and 1.3).
    pub versions: Vec<Version>,
}

/// A TLS protocol version rustls offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// A validated web config: what the endpoint must do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebConfig {
    /// Serve HTTPS with these settings (plain HTTP when `None`).
    pub tls: Option<TlsSettings>,
    /// User names and bcrypt hashes (no authentication when empty).
    pub basic_auth_users: BTreeMap<String, String>,
}

impl WebConfig {
    /// Reads and validates `path` (not yet the certificate files: see
    /// [`WebConfig::tls_server_config`]).
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let read_error = |source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_error)?.len();
        if len > MAX_FILE_BYTES {
            return Err(WebConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        WebConfig::parse(&text, path)
    }

    /// Validates `text`, the contents of the file at `path` (relative paths in it
    /// are taken from `path`'s directory, as the exporter-toolkit does).
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let invalid = |message: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_saphyr::from_str::<Option<RawWebConfig>>(text)
                .map_err(|e| WebConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
                .unwrap_or_default()
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = raw
            .tls_server_config
            .map(|t| tls_settings(t, base))
            .transpose()
            .map_err(invalid)?;
        let basic_auth_users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &basic_auth_users {
            if user.is_empty() || user.contains(':') {
                return Err(invalid(format!(
                    "basic_auth_users: {user:?} is not a usable user name (empty, or contains ':')"
                )));
            }
            if let Err(e) = hash.parse::<bcrypt::HashParts>() {
                return Err(invalid(format!(
                    "basic_auth_users: the password of {user:?} is not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )));
            }
        }
        Ok(WebConfig {
            tls,
            basic_auth_users,
        })
    }

    /// The rustls server configuration of [`WebConfig::tls`]: reads and checks
    /// the certificate, key and client CA files. `None` without TLS.
    pub fn tls_server_config(&self) -> Result<Option<Arc<ServerConfig>>, WebConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let provider = Arc::new(aws_lc_rs::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = tls
            .versions
            .iter()
            .map(|v| match v {
                Version::Tls12 => &rustls::version::TLS12,
                Version::Tls13 => &rustls::version::TLS13,
            })
            .collect();
        let tls_error = |path: &Path, what: &'static str, message: String| WebConfigError::Tls {
            path: path.to_path_buf(),
            what,
            message,
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| tls_error(&tls.cert_file, "cert_file", e.to_string()))?;
        let builder = match (&tls.client_ca_file, tls.client_auth) {
            (Some(ca), ClientAuth::VerifyIfGiven | ClientAuth::Require) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca, "client_ca_file")? {
                    roots
                        .add(cert)
                        .map_err(|e| tls_error(ca, "client_ca_file", e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if tls.client_auth == ClientAuth::VerifyIfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| tls_error(ca, "client_ca_file", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let certs = read_certs(&tls.cert_file, "cert_file")?;
        let key = PrivateKeyDer::from_pem_file(&tls.key_file)
            .map_err(|e| tls_error(&tls.key_file, "key_file", e.to_string()))?;
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| tls_error(&tls.key_file, "key_file", e.to_string()))?;
        // The endpoint speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }

    /// The basic authentication check, if users are configured.
    pub fn basic_auth(&self) -> Option<BasicAuth> {
        (!self.basic_auth_users.is_empty()).then(|| BasicAuth::new(&self.basic_auth_users))
    }
}

/// The certificates of a PEM file; at least one.
fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| WebConfigError::Tls {
            path: path.to_path_buf(),
            what,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(WebConfigError::Tls {
            path: path.to_path_buf(),
            what,
            message: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn tls_settings(raw: RawTls, base: &Path) -> Result<TlsSettings, String> {
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let (Some(cert_file), Some(key_file)) = (raw.cert_file, raw.key_file) else {
        return Err("tls_server_config needs both cert_file and key_file".into());
    };
    let client_auth = match raw.client_auth_type.as_deref() {
        None | Some("") | Some("NoClientCert") => ClientAuth::None,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::Require,
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(format!(
                "tls_server_config.client_auth_type {other} (a client certificate nobody verifies) is not supported: use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ))
        }
        Some(other) => {
            return Err(format!(
                "tls_server_config.client_auth_type {other:?} is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ))
        }
    };
    match (client_auth, &raw.client_ca_file) {
        (ClientAuth::None, Some(_)) => {
            return Err(
                "tls_server_config: client_ca_file is set but client_auth_type does not verify client certificates".into(),
            )
        }
        (ClientAuth::VerifyIfGiven | ClientAuth::Require, None) => {
            return Err("tls_server_config: this client_auth_type needs client_ca_file".into())
        }
        _ => {}
    }
    let version = |v: &Option<String>, field: &str| -> Result<Option<Version>, String> {
        match v.as_deref() {
            None | Some("") => Ok(None),
            Some("TLS12") => Ok(Some(Version::Tls12)),
            Some("TLS13") => Ok(Some(Version::Tls13)),
            Some(other @ ("TLS10" | "TLS11")) => Err(format!(
                "tls_server_config.{field} {other} is not supported (tlsmon serves TLS 1.2 and 1.3 only)"
            )),
            Some(other) => Err(format!(
                "tls_server_config.{field} {other:?} is not one of TLS12, TLS13"
            )),
        }
    };
    let min = version(&raw.min_version, "min_version")?.unwrap_or(Version::Tls12);
    let max = version(&raw.max_version, "max_version")?.unwrap_or(Version::Tls13);
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let versions = [Version::Tls12, Version::Tls13]
        .into_iter()
        .filter(|v| (min..=max).contains(v))
        .collect();
    Ok(TlsSettings {
        cert_file: resolve(cert_file),
        key_file: resolve(key_file),
        client_auth,
        client_ca_file: raw.client_ca_file.map(resolve),
        versions,
    })
}
