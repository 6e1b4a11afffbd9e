//! A quinn (rustls on aws-lc-rs) QUIC client or server for tlsmon's QUIC tests.
//!
//! Every knob that shapes the handshake is a flag, so a capture's expected facts
//! follow from the command line:
//! - a plain handshake: TLS_AES_128_GCM_SHA256 with x25519 and an ALPN both accept;
//! - ALPN refused: the client offers only a protocol the server does not accept
//!   (the server closes with CRYPTO_ERROR no_application_protocol);
//! - a client certificate required (`--client-ca`) but not sent;
//! - Retry (`--retry`): the server validates the client's address first;
//! - a ClientHello over two Initial packets: the client offers the
//!   X25519MLKEM768 hybrid (`--groups X25519MLKEM768`, a 1216-byte key share) or
//!   pads its transport parameters (`--pad`).
//!
//! After the handshake the client opens a stream, sends `ping`, the server answers
//! `pong`, and the client closes the connection with application code 0. Each side
//! prints one line per connection saying what was negotiated (or why it failed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, TransportConfig};
use rustls::crypto::{aws_lc_rs, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, SupportedCipherSuite};

/// Command line of the peer.
#[derive(Parser)]
#[command(about = "quinn QUIC peer for tlsmon's QUIC tests")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Accept connections and answer `ping` with `pong`.
    Server(ServerArgs),
    /// Connect, send `ping`, read the answer, close.
    Client(ClientArgs),
}

/// Handshake parameters shared by both roles.
#[derive(Args)]
struct TlsArgs {
    /// TLS 1.3 cipher suites to enable, in order, IANA or rustls names (default:
    /// TLS_AES_128_GCM_SHA256, the suite of QUIC's Initial packets).
    #[arg(long, value_delimiter = ',', default_values_t = ["TLS_AES_128_GCM_SHA256".to_string()])]
    ciphers: Vec<String>,
    /// Key exchange groups to enable, in order: x25519, secp256r1, X25519MLKEM768, ...
    #[arg(long, value_delimiter = ',', default_values_t = ["x25519".to_string()])]
    groups: Vec<String>,
    /// Application protocols to offer (client) or accept (server), in order.
    #[arg(long, value_delimiter = ',', default_values_t = ["h3".to_string()])]
    alpn: Vec<String>,
    /// Seconds the whole exchange may take before it is given up.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
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
    /// Answer a client's first Initial with a Retry (address validation).
    #[arg(long)]
    retry: bool,
    /// Number of connection attempts to serve before exiting (a Retry is not one).
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
    /// Bytes of extra ALPN names offered after the real ones (rustls sends no
    /// padding extension), so the ClientHello spans more than one Initial packet.
    #[arg(long, default_value_t = 0)]
    pad: usize,
    #[command(flatten)]
    tls: TlsArgs,
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("quic-peer: runtime: {err}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.role {
            Role::Server(args) => run_server(&args).await,
            Role::Client(args) => run_client(&args).await,
        }
    });
    if let Err(err) = result {
        eprintln!("quic-peer: {err:#}");
        std::process::exit(1);
    }
}

fn transport(timeout: u64) -> Result<Arc<TransportConfig>> {
    let mut transport = TransportConfig::default();
    let idle = Duration::from_secs(timeout.max(1))
        .try_into()
        .context("idle timeout")?;
    transport.max_idle_timeout(Some(idle));
    Ok(Arc::new(transport))
}

async fn run_server(args: &ServerArgs) -> Result<()> {
    let provider = Arc::new(provider(&args.tls)?);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
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
    let mut tls = builder
        .with_single_cert(load_certs(&args.cert)?, load_key(&args.key)?)
        .context("server certificate")?;
    tls.alpn_protocols = args
        .tls
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).context("QUIC server crypto")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(args.tls.timeout)?);
    let endpoint = Endpoint::server(config, args.listen)
        .with_context(|| format!("listen on {}", args.listen))?;
    println!("quic-peer server: listening on {}", args.listen);

    let mut failures = 0u32;
    let mut served = 0u32;
    while served < args.accept {
        let Some(incoming) = endpoint.accept().await else {
            bail!("endpoint closed");
        };
        let peer = incoming.remote_address();
        if args.retry && !incoming.remote_address_validated() {
            incoming.retry().context("send Retry")?;
            println!("quic-peer server: peer={peer} retry sent");
            continue;
        }
        served += 1;
        let limit = Duration::from_secs(args.tls.timeout.max(1));
        match tokio::time::timeout(limit, serve_one(incoming)).await {
            Ok(Ok(summary)) => println!("quic-peer server: conn={served} peer={peer} {summary}"),
            Ok(Err(err)) => {
                failures += 1;
                println!("quic-peer server: conn={served} peer={peer} error: {err:#}");
            }
            Err(_) => {
                failures += 1;
                println!("quic-peer server: conn={served} peer={peer} error: timed out");
            }
        }
    }
    endpoint.wait_idle().await;
    if failures > 0 {
        bail!("{failures} of {} connections failed", args.accept);
    }
    Ok(())
}

async fn serve_one(incoming: quinn::Incoming) -> Result<String> {
    let conn = incoming.await.context("handshake")?;
    let summary = describe(&conn);
    let (mut send, mut recv) = conn.accept_bi().await.context("accept stream")?;
    let request = recv.read_to_end(64).await.context("read request")?;
    if request != b"ping\n" {
        bail!("unexpected request {request:?}");
    }
    send.write_all(b"pong\n").await.context("write answer")?;
    send.finish().context("finish stream")?;
    // The client closes once it has read the answer.
    let reason = conn.closed().await;
    Ok(format!("{summary} closed={reason}"))
}

async fn run_client(args: &ClientArgs) -> Result<()> {
    let provider = Arc::new(provider(&args.tls)?);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("protocol versions")?
        .with_root_certificates(load_roots(&args.ca)?)
        .with_no_client_auth();
    tls.alpn_protocols = args
        .tls
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    // ALPN names are at most 255 bytes; a few of them pad the ClientHello.
    let mut left = args.pad;
    let mut n = 0u8;
    while left > 0 {
        let len = left.min(255);
        let mut name = vec![b'x'; len];
        name[0] = b'a' + n % 26;
        tls.alpn_protocols.push(name);
        left -= len;
        n = n.wrapping_add(1);
    }
    let crypto = QuicClientConfig::try_from(tls).context("QUIC client crypto")?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(args.tls.timeout)?);
    let bind: SocketAddr = if args.connect.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let endpoint = Endpoint::client(bind).context("client endpoint")?;
    let limit = Duration::from_secs(args.tls.timeout.max(1));
    let exchange = async {
        let conn = endpoint
            .connect_with(config, args.connect, &args.sni)
            .context("connect")?
            .await
            .context("handshake")?;
        let summary = describe(&conn);
        let (mut send, mut recv) = conn.open_bi().await.context("open stream")?;
        send.write_all(b"ping\n").await.context("write request")?;
        send.finish().context("finish stream")?;
        let answer = recv.read_to_end(64).await.context("read answer")?;
        if answer != b"pong\n" {
            bail!("unexpected answer {answer:?}");
        }
        conn.close(0u32.into(), b"done");
        Ok::<_, anyhow::Error>(summary)
    };
    let result = tokio::time::timeout(limit, exchange).await;
    endpoint.wait_idle().await;
    match result {
        Ok(Ok(summary)) => {
            println!("quic-peer client: conn=1 {summary}");
            Ok(())
        }
        Ok(Err(err)) => Err(err),
        Err(_) => bail!("timed out after {}s", limit.as_secs()),
    }
}

/// One line of what was negotiated.
fn describe(conn: &quinn::Connection) -> String {
    let alpn = conn
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .unwrap_or_default();
    format!("alpn={alpn} remote={}", conn.remote_address())
}

/// rustls names TLS 1.3 suites `TLS13_*`; IANA names them `TLS_*`.
fn iana_suite_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// The aws-lc-rs provider limited to the requested suites and groups, in that order.
fn provider(args: &TlsArgs) -> Result<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites = args
        .ciphers
        .iter()
        .map(|want| find_suite(want))
        .collect::<Result<_>>()?;
    provider.kx_groups = args
        .groups
        .iter()
        .map(|want| find_group(want))
        .collect::<Result<_>>()?;
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
