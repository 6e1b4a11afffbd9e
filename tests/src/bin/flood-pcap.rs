//! Writes a flood capture (see `tlsmon_tests::flood`): N connections that each open
//! (SYN, SYN-ACK, ACK) and send a ClientHello that is never answered, or with
//! `--bare` only the ClientHellos. Used for BENCHMARKS.md, "Under attack: memory":
//!
//! `cargo run -p tlsmon-tests --bin flood-pcap -- /tmp/flood.pcap --connections 100000`

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tlsmon_tests::flood::{write_flood, FloodShape};

/// Write a capture of unanswered TLS handshakes on distinct 4-tuples.
#[derive(Parser)]
struct Args {
    /// Output pcap file.
    out: PathBuf,
    /// Connections to write.
    #[arg(long, default_value_t = 100_000)]
    connections: u32,
    /// Index of the first connection (floods with different ones share no 4-tuple).
    #[arg(long, default_value_t = 0)]
    first: u32,
    /// Only the ClientHellos, without SYN, SYN-ACK and ACK.
    #[arg(long)]
    bare: bool,
    /// Microseconds of capture time between two connections' starts.
    #[arg(long, default_value_t = 10)]
    spacing_us: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let packets = write_flood(
        &args.out,
        FloodShape {
            connections: args.connections,
            first: args.first,
            tcp_opening: !args.bare,
            spacing: Duration::from_micros(args.spacing_us),
        },
    )?;
    println!(
        "{}: {} connections, {packets} packets",
        args.out.display(),
        args.connections
    );
    Ok(())
}
