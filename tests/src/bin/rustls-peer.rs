//! A rustls (aws-lc-rs provider) TLS client or server for recording test captures.
//!
//! The corpus recorder (tests/corpus/record.sh) runs it on both ends of a veth pair.
//! Every knob that shapes the handshake is a flag, so a capture's expected facts
//! follow from the command line: versions, cipher suites, key exchange groups
//! (including the X25519MLKEM768 hybrid, which OpenSSL 3.0 lacks), ALPN, client
//! certificates, and resumption (a client's later connections reuse the session).
//!
//! After the handshake the client sends `ping\n`, the server answers `pong\n` and
//! closes with close_notify. Each side prints one line per connection saying what was
//! negotiated, in IANA names, so the recorder can log it beside the capture.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use rustls::crypto::{aws_lc_rs, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, CommonState, RootCertStore, ServerConfig, ServerConnection,
    StreamOwned, SupportedCipherSuite, SupportedProtocolVersion,
};

/// Command line of the peer.
#[derive(Parser)]
#[command(about = "rustls TLS peer for recording tlsmon test captures")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Accept connections and answer `ping` with `pong`.
    Server(ServerArgs),
    /// Connect, send `ping`, read the answer.
    Client(ClientArgs),
}

/// Handshake parameters shared by both roles.
#[derive(Args)]
struct TlsArgs {
    /// TLS versions to enable, comma separated: 1.2, 1.3.
    #[arg(long, value_delimiter = ',', default_values_t = ["1.2".to_string(), "1.3".to_string()])]
    versions: Vec<String>,
    /// Cipher suites to enable, in order, IANA or rustls names (default: the provider's).
    #[arg(long, value_delimiter = ',')]
    ciphers: Vec<String>,
    /// Key exchange groups to enable, in order: x25519, secp256r1, secp384r1,
    /// X25519MLKEM768, secp256r1MLKEM768, MLKEM768 (default: the provider's).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Application protocols to offer (client) or accept (server), in order.
    #[arg(long, value_delimiter = ',')]
    alpn: Vec<String>,
    /// Seconds a read or write may block before the connection is given up.
    #[arg(long, default_value_t = 10)]
    io_timeout: u64,
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key of the leaf.
    #[arg(long)]
    key: PathBuf,
    /// Require a client certificate issued by this PEM CA.
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Number of connections to serve before exiting.
    #[arg(long, default_value_t = 1)]
    accept: u32,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
struct ClientArgs {
    /// Address to connect to.
    #[arg(long)]
    connect: SocketAddr,
    /// Server name to send (SNI) and verify the certificate against.
    #[arg(long)]
    sni: String,
    /// PEM CA that must have issued the server's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// PEM client certificate chain to present when asked.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Connections to make in sequence with one configuration; the second and later
    /// ones resume the session of the one before.
    #[arg(long, default_value_t = 1)]
    connections: u32,
    #[command(flatten)]
    tls: TlsArgs,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.role {
        Role::Server(args) => run_server(&args),
        Role::Client(args) => run_client(&args),
    };
    if let Err(err) = result {
        eprintln!("rustls-peer: {err:#}");
        std::process::exit(1);
    }
}

fn run_server(args: &ServerArgs) -> Result<()> {
    let provider = Arc::new(provider(&args.tls)?);
    let versions = versions(&args.tls.versions)?;
    let certs = load_certs(&args.cert)?;
    let key = load_key(&args.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .context("protocol versions")?;
    let builder = match &args.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider)
                    .build()
                    .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("server certificate")?;
    config.alpn_protocols = args
        .tls
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    let config = Arc::new(config);

    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("listen on {}", args.listen))?;
    let mut failures = 0u32;
    for n in 1..=args.accept {
        let (sock, peer) = listener.accept().context("accept")?;
        match serve_one(&config, sock, args.tls.io_timeout) {
            Ok(summary) => println!("rustls-peer server: conn={n} peer={peer} {summary}"),
            Err(err) => {
                failures += 1;
                println!("rustls-peer server: conn={n} peer={peer} error: {err:#}");
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} connections failed", args.accept);
    }
    Ok(())
}

fn serve_one(config: &Arc<ServerConfig>, sock: TcpStream, timeout: u64) -> Result<String> {
    set_timeouts(&sock, timeout)?;
    let conn = ServerConnection::new(config.clone()).context("server connection")?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).context("handshake")?;
    }
    let summary = describe(&tls.conn);
    let mut line = String::new();
    BufReader::new(&mut tls)
        .read_line(&mut line)
        .context("read request")?;
    if line != "ping\n" {
        bail!("unexpected request {line:?}");
    }
    tls.write_all(b"pong\n").context("write answer")?;
    tls.conn.send_close_notify();
    tls.flush().context("flush")?;
    Ok(summary)
}

fn run_client(args: &ClientArgs) -> Result<()> {
    let provider = Arc::new(provider(&args.tls)?);
    let versions = versions(&args.tls.versions)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .context("protocol versions")?
        .with_root_certificates(load_roots(&args.ca)?);
    let mut config = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .context("client certificate")?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = args
        .tls
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    let config = Arc::new(config);
    let name = ServerName::try_from(args.sni.clone()).context("server name")?;

    for n in 1..=args.connections {
        let sock = TcpStream::connect(args.connect)
            .with_context(|| format!("connect to {}", args.connect))?;
        set_timeouts(&sock, args.tls.io_timeout)?;
        let conn = ClientConnection::new(config.clone(), name.clone()).context("client")?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .with_context(|| format!("connection {n}: handshake"))?;
        }
        tls.write_all(b"ping\n").context("write request")?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).context("read answer")?;
        if answer != b"pong\n" {
            bail!("connection {n}: unexpected answer {answer:?}");
        }
        println!("rustls-peer client: conn={n} {}", describe(&tls.conn));
    }
    Ok(())
}

fn set_timeouts(sock: &TcpStream, secs: u64) -> Result<()> {
    let limit = Some(Duration::from_secs(secs.max(1)));
    sock.set_read_timeout(limit).context("read timeout")?;
    sock.set_write_timeout(limit).context("write timeout")?;
    Ok(())
}

/// One line of what was negotiated, in the names tlsmon's JSON uses.
fn describe(conn: &CommonState) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        other => format!("{other:?}"),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| iana_suite_name(s.suite()))
        .unwrap_or_default();
    let group = conn
        .negotiated_key_exchange_group()
        .map(|g| iana_group_name(g.name()))
        .unwrap_or_default();
    let alpn = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let kind = conn
        .handshake_kind()
        .map(|k| format!("{k:?}"))
        .unwrap_or_default();
    format!("version={version} cipher={cipher} group={group} alpn={alpn} kind={kind}")
}

/// rustls names TLS 1.3 suites `TLS13_*`; IANA names them `TLS_*`.
fn iana_suite_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// rustls spells X25519 in capitals; the IANA registry (and tlsmon) in lower case.
fn iana_group_name(group: rustls::NamedGroup) -> String {
    match group {
        rustls::NamedGroup::X25519 => "x25519".to_string(),
        other => format!("{other:?}"),
    }
}

/// The aws-lc-rs provider limited to the requested suites and groups, in that order.
fn provider(args: &TlsArgs) -> Result<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    if !args.ciphers.is_empty() {
        provider.cipher_suites = args
            .ciphers
            .iter()
            .map(|want| find_suite(want))
            .collect::<Result<_>>()?;
    }
    if !args.groups.is_empty() {
        provider.kx_groups = args
            .groups
            .iter()
            .map(|want| find_group(want))
            .collect::<Result<_>>()?;
    }
    Ok(provider)
}

fn find_suite(want: &str) -> Result<SupportedCipherSuite> {
    aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .copied()
        .find(|s| {
            let suite = s.suite();
            want == format!("{suite:?}") || want == iana_suite_name(suite)
        })
        .with_context(|| format!("unknown cipher suite {want}"))
}

fn find_group(want: &str) -> Result<&'static dyn SupportedKxGroup> {
    aws_lc_rs::ALL_KX_GROUPS
        .iter()
        .copied()
        .find(|g| want.eq_ignore_ascii_case(&format!("{:?}", g.name())))
        .with_context(|| format!("unknown group {want}"))
}

fn versions(names: &[String]) -> Result<Vec<&'static SupportedProtocolVersion>> {
    names
        .iter()
        .map(|v| match v.as_str() {
            "1.2" => Ok(&rustls::version::TLS12),
            "1.3" => Ok(&rustls::version::TLS13),
            other => bail!("unknown TLS version {other} (use 1.2 or 1.3)"),
        })
        .collect()
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("read key {}", path.display()))
}

fn load_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("CA in {}", path.display()))?;
    }
    Ok(roots)
}
