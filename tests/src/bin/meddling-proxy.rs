//! A TCP proxy that rewrites the ClientHello on its way through, as a middlebox that
//! strips what it does not like: it drops TLS versions from supported_versions and
//! cipher suites from the offer, fixes every length, and relays everything else
//! untouched in both directions. The forwarding test runs it between two NICs to
//! check that tlsmon names exactly what was removed.
//!
//! The ClientHello is rewritten by hand: rewriting needs the byte positions of its
//! lengths and lists, which a parser's view (tls-parser) does not give. Only a
//! ClientHello in one TLS record is handled; anything else ends the connection with
//! a message on stderr.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;

/// Command line of the proxy.
#[derive(Parser)]
#[command(about = "TCP proxy that strips versions and cipher suites from ClientHellos")]
struct Cli {
    /// Address to accept clients on.
    #[arg(long)]
    listen: SocketAddr,
    /// Server to connect each client to.
    #[arg(long)]
    connect: SocketAddr,
    /// Version code point to remove from supported_versions (e.g. 0x0304), repeatable.
    #[arg(long, value_parser = parse_u16)]
    drop_version: Vec<u16>,
    /// Cipher suite code point to remove (e.g. 0x1302), repeatable.
    #[arg(long, value_parser = parse_u16)]
    drop_cipher: Vec<u16>,
}

fn parse_u16(text: &str) -> Result<u16, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    u16::from_str_radix(digits, 16).map_err(|e| format!("{text}: {e}"))
}

/// How long a connection may stay silent before the proxy gives it up.
const IDLE: Duration = Duration::from_secs(30);
/// The supported_versions extension.
const SUPPORTED_VERSIONS: u16 = 43;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen).with_context(|| format!("bind {}", cli.listen))?;
    eprintln!("meddling-proxy: {} -> {}", cli.listen, cli.connect);
    let rules = Rules {
        versions: cli.drop_version,
        ciphers: cli.drop_cipher,
    };
    for client in listener.incoming() {
        let client = client.context("accept")?;
        let rules = rules.clone();
        let server = cli.connect;
        thread::spawn(move || {
            if let Err(e) = proxy(client, server, &rules) {
                eprintln!("meddling-proxy: connection: {e:#}");
            }
        });
    }
    Ok(())
}

/// What to remove.
#[derive(Clone)]
struct Rules {
    versions: Vec<u16>,
    ciphers: Vec<u16>,
}

/// One client: its first record rewritten, then both directions relayed.
fn proxy(mut client: TcpStream, server: SocketAddr, rules: &Rules) -> Result<()> {
    client.set_read_timeout(Some(IDLE))?;
    let mut header = [0u8; 5];
    client
        .read_exact(&mut header)
        .context("reading the first record header")?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut body = vec![0u8; len];
    client
        .read_exact(&mut body)
        .context("reading the first record")?;
    ensure!(
        header[0] == 22,
        "the first record is not a handshake record"
    );
    let hello = rewrite_client_hello(&body, rules)?;
    let mut record = Vec::with_capacity(5 + hello.len());
    record.extend_from_slice(&header[..3]);
    record.extend_from_slice(&u16::try_from(hello.len())?.to_be_bytes());
    record.extend_from_slice(&hello);

    let mut upstream =
        TcpStream::connect_timeout(&server, IDLE).with_context(|| format!("connect {server}"))?;
    upstream.set_read_timeout(Some(IDLE))?;
    upstream.write_all(&record)?;
    let (client_in, upstream_out) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || relay(client_in, upstream_out));
    relay(upstream, client);
    let _ = up.join();
    Ok(())
}

/// Copies until EOF or an error, then passes the end on.
fn relay(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// A cursor over a byte slice that fails instead of panicking past the end.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(self.0.len() >= n, "ClientHello is truncated");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<usize> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    /// A vector with a one-byte length.
    fn u8_prefixed(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    /// A vector with a two-byte length.
    fn u16_prefixed(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// The handshake message `body` (one ClientHello) with the rules applied and every
/// length fixed.
fn rewrite_client_hello(body: &[u8], rules: &Rules) -> Result<Vec<u8>> {
    let mut r = Bytes(body);
    if r.u8()? != 1 {
        bail!("the first handshake message is not a ClientHello");
    }
    let len = {
        let b = r.take(3)?;
        usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2])
    };
    ensure!(
        r.0.len() == len,
        "the ClientHello does not fill its record exactly"
    );
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(r.take(2 + 32)?); // legacy_version, random
    let session_id = r.u8_prefixed()?;
    out.push(u8::try_from(session_id.len())?);
    out.extend_from_slice(session_id);
    let suites: Vec<&[u8]> = r.u16_prefixed()?.chunks_exact(2).collect();
    let kept: Vec<&[u8]> = suites
        .into_iter()
        .filter(|s| !rules.ciphers.contains(&u16::from_be_bytes([s[0], s[1]])))
        .collect();
    out.extend_from_slice(&u16::try_from(kept.len() * 2)?.to_be_bytes());
    kept.iter().for_each(|s| out.extend_from_slice(s));
    let compression = r.u8_prefixed()?;
    out.push(u8::try_from(compression.len())?);
    out.extend_from_slice(compression);
    if !r.0.is_empty() {
        let mut extensions = Bytes(r.u16_prefixed()?);
        let mut rewritten = Vec::new();
        while !extensions.0.is_empty() {
            let ext_type = extensions.u16()? as u16;
            let data = extensions.u16_prefixed()?;
            let data = if ext_type == SUPPORTED_VERSIONS {
                let mut v = Bytes(data);
                let list = v.u8_prefixed()?;
                let kept: Vec<u8> = list
                    .chunks_exact(2)
                    .filter(|c| !rules.versions.contains(&u16::from_be_bytes([c[0], c[1]])))
                    .flatten()
                    .copied()
                    .collect();
                let mut d = vec![u8::try_from(kept.len())?];
                d.extend_from_slice(&kept);
                d
            } else {
                data.to_vec()
            };
            rewritten.extend_from_slice(&ext_type.to_be_bytes());
            rewritten.extend_from_slice(&u16::try_from(data.len())?.to_be_bytes());
            rewritten.extend_from_slice(&data);
        }
        out.extend_from_slice(&u16::try_from(rewritten.len())?.to_be_bytes());
        out.extend_from_slice(&rewritten);
    }
    let mut message = vec![1u8];
    message.extend_from_slice(&u32::try_from(out.len())?.to_be_bytes()[1..]);
    message.extend_from_slice(&out);
    Ok(message)
}
