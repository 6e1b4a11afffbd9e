//! A TLS client and server (rustls, aws-lc-rs provider) over TCP Fast Open, for the
//! long-tail tests: OpenSSL 3.0's s_client and s_server cannot do TFO.
//!
//! The server sets `TCP_FASTOPEN` on its listening socket. The client writes its
//! ClientHello with `sendto(MSG_FASTOPEN)`, which connects and, once the kernel
//! holds a Fast Open cookie for the server (from an earlier connection), puts the
//! ClientHello in the SYN; without a cookie the SYN asks for one and the bytes
//! follow the handshake. Both need `net.ipv4.tcp_fastopen` to enable their side.
//!
//! After the handshake the client sends `ping\n`, the server answers `pong\n`, and
//! both close with close_notify. The client prints one line per connection: the
//! negotiated version and cipher suite in IANA names.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Connections a listening socket may have in the Fast Open queue.
const FASTOPEN_QUEUE: libc::c_int = 16;

/// Seconds a read or write may block before the connection is given up.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Command line of the peer.
#[derive(Parser)]
#[command(about = "TLS over TCP Fast Open, for tlsmon's tests")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Accept connections on a Fast Open listener and answer `ping` with `pong`.
    Server {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// PEM certificate chain, leaf first.
        #[arg(long)]
        cert: PathBuf,
        /// PEM private key of the leaf.
        #[arg(long)]
        key: PathBuf,
        /// Connections to serve before exiting.
        #[arg(long, default_value_t = 1)]
        accept: u32,
    },
    /// Connect with the ClientHello in `sendto(MSG_FASTOPEN)`, send `ping`.
    Client {
        /// Address to connect to.
        #[arg(long)]
        connect: SocketAddr,
        /// Server name to send and verify the certificate against.
        #[arg(long)]
        sni: String,
        /// PEM CA that issued the server's certificate.
        #[arg(long)]
        ca: PathBuf,
        /// Connections to make one after the other (each a full handshake).
        #[arg(long, default_value_t = 1)]
        connections: u32,
    },
}

fn main() {
    let result = match Cli::parse().role {
        Role::Server {
            listen,
            cert,
            key,
            accept,
        } => serve(listen, &cert, &key, accept),
        Role::Client {
            connect,
            sni,
            ca,
            connections,
        } => (0..connections).try_for_each(|n| connect_once(n, connect, &sni, &ca)),
    };
    if let Err(err) = result {
        eprintln!("tfo-peer: {err:#}");
        std::process::exit(1);
    }
}

fn serve(listen: SocketAddr, cert: &PathBuf, key: &PathBuf, accept: u32) -> Result<()> {
    let chain = CertificateDer::pem_file_iter(cert)
        .context("reading the certificate")?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).context("reading the key")?;
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let config = Arc::new(config);
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    set_int_option(&socket, libc::TCP_FASTOPEN, FASTOPEN_QUEUE).context("TCP_FASTOPEN")?;
    socket.bind(&SockAddr::from(listen))?;
    socket.listen(16)?;
    let listener: TcpListener = socket.into();
    for _ in 0..accept {
        let (stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let conn = ServerConnection::new(config.clone())?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        let mut line = String::new();
        BufReader::new(&mut tls).read_line(&mut line)?;
        ensure!(line == "ping\n", "client sent {line:?}");
        tls.write_all(b"pong\n")?;
        tls.conn.send_close_notify();
        tls.flush()?;
    }
    Ok(())
}

fn connect_once(n: u32, server: SocketAddr, sni: &str, ca: &PathBuf) -> Result<()> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
        roots.add(cert?)?;
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake, so each shows its ClientHello and certificate.
    config.resumption = rustls::client::Resumption::disabled();
    let name = ServerName::try_from(sni.to_string())?;
    let mut conn = ClientConnection::new(Arc::new(config), name)?;
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello)?;
    }
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // Connects and sends in one call: the bytes ride in the SYN when a cookie is held.
    let sent = socket
        .send_to_with_flags(&hello, &SockAddr::from(server), libc::MSG_FASTOPEN)
        .context("sendto(MSG_FASTOPEN)")?;
    if sent != hello.len() {
        bail!("sendto(MSG_FASTOPEN) took {sent} of {} bytes", hello.len());
    }
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    tls.write_all(b"ping\n")?;
    let mut line = String::new();
    BufReader::new(&mut tls).read_line(&mut line)?;
    ensure!(line == "pong\n", "server answered {line:?}");
    let version = tls
        .conn
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    let suite = tls
        .conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("?");
    println!("connection {n}: {version} {suite}");
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(())
}

/// `setsockopt(IPPROTO_TCP, option, value)`.
fn set_int_option(socket: &Socket, option: libc::c_int, value: libc::c_int) -> Result<()> {
    // SAFETY: a valid descriptor, and a c_int option value of its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
