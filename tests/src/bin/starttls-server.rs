//! A scripted STARTTLS server for the preamble tests: it plays the plaintext
//! part of SMTP, IMAP, POP3, FTP, XMPP, PostgreSQL, LDAP or MySQL the way
//! `openssl s_client -starttls PROTO` expects it, then completes a TLS
//! handshake with rustls and closes with close_notify. With `--refuse` it turns
//! the upgrade down instead (SMTP 454, IMAP NO, POP3 -ERR, FTP 534, XMPP
//! <failure/>, PostgreSQL N, LDAP resultCode 52) and closes.
//!
//! It serves `--accept` connections one after the other, then exits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// Command line of the server.
#[derive(Parser)]
#[command(about = "scripted STARTTLS server for tlsmon's preamble tests")]
struct Cli {
    /// Protocol to speak.
    #[arg(long, value_enum)]
    protocol: Protocol,
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Server certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Connections to serve before exiting.
    #[arg(long, default_value_t = 1)]
    accept: u32,
    /// Refuse the upgrade.
    #[arg(long)]
    refuse: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Smtp,
    Imap,
    Pop3,
    Ftp,
    Xmpp,
    Postgres,
    Ldap,
    Mysql,
}

/// Longest a plaintext line or element may be.
const MAX_LINE: usize = 4096;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = Arc::new(tls_config(&cli.cert, &cli.key)?);
    let listener = TcpListener::bind(cli.listen).context("binding")?;
    for _ in 0..cli.accept {
        let (sock, peer) = listener.accept().context("accepting")?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        match serve(cli.protocol, cli.refuse, &config, sock) {
            Ok(what) => println!("starttls-server: {peer}: {what}"),
            Err(e) => println!("starttls-server: {peer}: error: {e:#}"),
        }
    }
    Ok(())
}

fn tls_config(cert: &Path, key: &Path) -> Result<ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .context("reading the certificate")?
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the certificate")?;
    let key = PrivateKeyDer::from_pem_file(key).context("reading the key")?;
    ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server certificate")
}

/// Reads up to and including `end` (byte by byte, so nothing of the TLS bytes
/// that follow is taken).
fn read_until(sock: &mut TcpStream, end: &[u8]) -> Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        if got.len() >= MAX_LINE {
            bail!("no {end:?} within {MAX_LINE} bytes");
        }
        if sock.read(&mut byte)? == 0 {
            bail!("the client closed after {got:?}");
        }
        got.push(byte[0]);
    }
    Ok(got)
}

fn read_exact(sock: &mut TcpStream, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    sock.read_exact(&mut buf)?;
    Ok(buf)
}

/// Plays the plaintext part; `Ok(false)` when the upgrade was refused.
fn plaintext(protocol: Protocol, refuse: bool, sock: &mut TcpStream) -> Result<bool> {
    match protocol {
        Protocol::Smtp => {
            sock.write_all(b"220 server.test ESMTP\r\n")?;
            read_until(sock, b"\n")?; // EHLO
            sock.write_all(b"250-server.test\r\n250 STARTTLS\r\n")?;
            read_until(sock, b"\n")?; // STARTTLS
            sock.write_all(if refuse {
                b"454 4.7.0 TLS not available due to temporary reason\r\n"
            } else {
                b"220 2.0.0 Ready to start TLS\r\n"
            })?;
        }
        Protocol::Imap => {
            sock.write_all(b"* OK IMAP4rev1 server.test ready\r\n")?;
            let capability = read_until(sock, b"\n")?;
            let tag = tag_of(&capability);
            sock.write_all(
                format!("* CAPABILITY IMAP4rev1 STARTTLS\r\n{tag} OK CAPABILITY completed\r\n")
                    .as_bytes(),
            )?;
            let starttls = read_until(sock, b"\n")?;
            let tag = tag_of(&starttls);
            let answer = if refuse {
                "NO STARTTLS refused"
            } else {
                "OK Begin TLS negotiation now"
            };
            sock.write_all(format!("{tag} {answer}\r\n").as_bytes())?;
        }
        Protocol::Pop3 => {
            sock.write_all(b"+OK POP3 server.test ready\r\n")?;
            read_until(sock, b"\n")?; // STLS
            sock.write_all(if refuse {
                b"-ERR STLS not available\r\n"
            } else {
                b"+OK Begin TLS negotiation\r\n"
            })?;
        }
        Protocol::Ftp => {
            sock.write_all(b"220 server.test FTP ready\r\n")?;
            read_until(sock, b"\n")?; // AUTH TLS
            sock.write_all(if refuse {
                b"534 Request denied for policy reasons\r\n"
            } else {
                b"234 AUTH TLS successful\r\n"
            })?;
        }
        Protocol::Xmpp => {
            read_until(sock, b">")?; // the client's stream header
            sock.write_all(
                b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' id='t1' from='server.test' \
                  version='1.0'><stream:features><starttls \
                  xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
                  </stream:features>",
            )?;
            read_until(sock, b"/>")?; // <starttls .../>
            sock.write_all(if refuse {
                b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"
            } else {
                b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
            })?;
        }
        Protocol::Postgres => {
            let request = read_exact(sock, 8)?;
            if request != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                bail!("not an SSLRequest: {request:?}");
            }
            sock.write_all(if refuse { b"N" } else { b"S" })?;
        }
        Protocol::Ldap => {
            let head = read_exact(sock, 2)?;
            read_exact(sock, head[1] as usize)?; // the ExtendedRequest
            let result = if refuse { 52 } else { 0 };
            sock.write_all(&[
                0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, result, 0x04, 0x00, 0x04,
                0x00,
            ])?;
        }
        Protocol::Mysql => {
            let mut payload = vec![10];
            payload.extend_from_slice(b"8.0.0-test\0");
            payload.extend_from_slice(&[1, 0, 0, 0]); // connection id
            payload.extend_from_slice(b"12345678"); // auth data, part 1
            payload.push(0); // filler
            payload.extend_from_slice(&[0x00, 0x08]); // capabilities: CLIENT_SSL
            payload.push(0x21); // character set
            payload.extend_from_slice(&[2, 0]); // status
            payload.extend_from_slice(&[0, 0]); // capabilities, upper half
            payload.push(0);
            payload.extend_from_slice(&[0; 10]);
            let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
            packet.push(0);
            packet.extend_from_slice(&payload);
            sock.write_all(&packet)?;
            let request = read_exact(sock, 36)?;
            if request[..4] != [32, 0, 0, 1] {
                bail!("not an SSL request: {request:?}");
            }
        }
    }
    Ok(!refuse)
}

fn tag_of(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .split(' ')
        .next()
        .unwrap_or(".")
        .to_string()
}

fn serve(
    protocol: Protocol,
    refuse: bool,
    config: &Arc<ServerConfig>,
    mut sock: TcpStream,
) -> Result<&'static str> {
    if !plaintext(protocol, refuse, &mut sock)? {
        return Ok("refused the upgrade");
    }
    let conn = ServerConnection::new(config.clone()).context("server connection")?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).context("handshake")?;
    }
    tls.conn.send_close_notify();
    tls.flush().context("flush")?;
    Ok("handshake completed")
}
