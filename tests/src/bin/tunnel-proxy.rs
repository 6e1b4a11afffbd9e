//! A forward proxy for the preamble tests: HTTP `CONNECT`, SOCKS4/4a and SOCKS5
//! (no authentication, or any username and password) on one port, told apart by
//! the first byte. After the proxy's answer it relays bytes both ways until
//! either side closes. `--refuse` answers every request with a refusal (HTTP
//! 403, SOCKS4 0x5b, SOCKS5 reply 2) instead, for the refused-tunnel case.
//!
//! It serves at most `--max-connections` connections, each on its own thread,
//! then exits; the test stops it earlier through its process guard.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

/// Command line of the proxy.
#[derive(Parser)]
#[command(about = "CONNECT and SOCKS proxy for tlsmon's preamble tests")]
struct Cli {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Connections served before exiting.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Refuse every tunnel.
    #[arg(long)]
    refuse: bool,
}

/// Longest a request line, header or SOCKS field may be.
const MAX_LINE: usize = 4096;
/// Idle time after which a relay gives up.
const IDLE: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen).context("binding")?;
    for stream in listener.incoming().take(cli.max_connections) {
        let stream = stream.context("accepting")?;
        let refuse = cli.refuse;
        thread::spawn(move || {
            if let Err(e) = serve(stream, refuse) {
                eprintln!("tunnel-proxy: {e:#}");
            }
        });
    }
    Ok(())
}

fn serve(client: TcpStream, refuse: bool) -> Result<()> {
    client.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    let first = reader
        .fill_buf()?
        .first()
        .copied()
        .context("empty connection")?;
    let target = match first {
        b'C' => http_connect(&mut reader, &mut writer, refuse)?,
        4 => socks4(&mut reader, &mut writer, refuse)?,
        5 => socks5(&mut reader, &mut writer, refuse)?,
        other => bail!("unknown first byte {other:#x}"),
    };
    let Some(target) = target else {
        return Ok(());
    };
    let upstream = TcpStream::connect_timeout(&target, IDLE)?;
    upstream.set_read_timeout(Some(IDLE))?;
    // Bytes the reader already buffered past the request belong to the tunnel.
    let mut up_writer = upstream.try_clone()?;
    up_writer.write_all(reader.buffer())?;
    let mut up_reader = upstream;
    let mut down_writer = writer.try_clone()?;
    let relay = thread::spawn(move || {
        let _ = io::copy(&mut up_reader, &mut down_writer);
        let _ = down_writer.shutdown(std::net::Shutdown::Write);
    });
    let mut client_reader = reader.into_inner();
    let _ = io::copy(&mut client_reader, &mut up_writer);
    let _ = up_writer.shutdown(std::net::Shutdown::Write);
    let _ = relay.join();
    Ok(())
}

fn http_connect(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    refuse: bool,
) -> Result<Option<SocketAddr>> {
    let mut request_line = String::new();
    reader
        .by_ref()
        .take(MAX_LINE as u64)
        .read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        reader.by_ref().take(MAX_LINE as u64).read_line(&mut line)?;
        if line.is_empty() {
            bail!("connection ended in the request headers");
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut words = request_line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        bail!("not a CONNECT request: {request_line:?}");
    };
    if refuse {
        writer.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(None);
    }
    let addr = resolve(target)?;
    writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    Ok(Some(addr))
}

fn socks4(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    refuse: bool,
) -> Result<Option<SocketAddr>> {
    let mut head = [0u8; 8];
    reader.read_exact(&mut head)?;
    let _user_id = read_until_nul(reader)?;
    let port = u16::from_be_bytes([head[2], head[3]]);
    let ip = Ipv4Addr::new(head[4], head[5], head[6], head[7]);
    let target = if head[4..7] == [0, 0, 0] && head[7] != 0 {
        let host = String::from_utf8(read_until_nul(reader)?)?;
        resolve(&format!("{host}:{port}"))?
    } else {
        SocketAddr::from((ip, port))
    };
    let status = if refuse { 0x5b } else { 0x5a };
    writer.write_all(&[0, status, 0, 0, 0, 0, 0, 0])?;
    Ok((!refuse).then_some(target))
}

fn socks5(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    refuse: bool,
) -> Result<Option<SocketAddr>> {
    let mut greeting = [0u8; 2];
    reader.read_exact(&mut greeting)?;
    let mut methods = vec![0u8; greeting[1] as usize];
    reader.read_exact(&mut methods)?;
    if methods.contains(&0) {
        writer.write_all(&[5, 0])?;
    } else if methods.contains(&2) {
        writer.write_all(&[5, 2])?;
        let mut version_and_len = [0u8; 2];
        reader.read_exact(&mut version_and_len)?;
        let mut user = vec![0u8; version_and_len[1] as usize];
        reader.read_exact(&mut user)?;
        let mut pass_len = [0u8; 1];
        reader.read_exact(&mut pass_len)?;
        let mut pass = vec![0u8; pass_len[0] as usize];
        reader.read_exact(&mut pass)?;
        writer.write_all(&[1, 0])?;
    } else {
        writer.write_all(&[5, 0xff])?;
        return Ok(None);
    }
    let mut request = [0u8; 4];
    reader.read_exact(&mut request)?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            reader.read_exact(&mut ip)?;
            Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            reader.read_exact(&mut len)?;
            let mut name = vec![0u8; len[0] as usize];
            reader.read_exact(&mut name)?;
            String::from_utf8(name)?
        }
        4 => {
            let mut ip = [0u8; 16];
            reader.read_exact(&mut ip)?;
            format!("[{}]", Ipv6Addr::from(ip))
        }
        other => bail!("SOCKS5 address type {other}"),
    };
    let mut port = [0u8; 2];
    reader.read_exact(&mut port)?;
    let target = resolve(&format!("{host}:{}", u16::from_be_bytes(port)))?;
    let reply = if refuse { 2 } else { 0 };
    writer.write_all(&[5, reply, 0, 1, 0, 0, 0, 0, 0, 0])?;
    Ok((!refuse).then_some(target))
}

fn read_until_nul(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
    let mut field = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(0, &mut field)?;
    if field.pop() != Some(0) {
        bail!("field without its NUL");
    }
    Ok(field)
}

fn resolve(target: &str) -> Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .next()
        .with_context(|| format!("{target} resolves to nothing"))
}
