//! The two-path network of the proxy scenario, in three namespaces:
//!
//! ```text
//!  client ns                       proxy ns                      server ns (tlsmon here)
//!  cli-a 10.77.1.2 ─────────────────────────────────────────────  srv-a 10.77.1.1   NIC A: direct
//!  cli-p 10.77.2.2 ──── prx-c 10.77.2.1  [TCP proxy]  prx-s 10.77.3.2 ── srv-b 10.77.3.1   NIC B: via proxy
//! ```
//!
//! Clients reach the server directly at 10.77.1.1, or through the proxy at
//! 10.77.2.1, which connects to the server at 10.77.3.1. The interface names
//! live inside the namespaces, so fixed names cannot clash with the host's.

use std::{net::Ipv4Addr, process::Command};

use anyhow::Result;

use crate::{netns::Netns, process::run_checked};

/// Server-side interface of the direct path.
pub const NIC_A: &str = "srv-a";
/// Server-side interface of the proxied path.
pub const NIC_B: &str = "srv-b";
/// Server address on NIC A (what direct clients connect to).
pub const SERVER_A: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
/// Server address on NIC B (what the proxy connects to).
pub const SERVER_B: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 1);
/// Proxy address facing the clients (what proxied clients connect to).
pub const PROXY_FRONT: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
/// Proxy address facing the server.
pub const PROXY_BACK: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 2);

/// The three namespaces; dropping this deletes them and their veths.
pub struct TwoPaths {
    /// Where the TLS clients run.
    pub client: Netns,
    /// Where the TCP proxy runs.
    pub proxy: Netns,
    /// The server host: TLS servers and tlsmon.
    pub server: Netns,
}

impl TwoPaths {
    /// Builds the network (namespace names are unique to this process).
    pub fn build() -> Result<TwoPaths> {
        let net = TwoPaths {
            client: Netns::new("tm2c"),
            proxy: Netns::new("tm2p"),
            server: Netns::new("tm2s"),
        };
        veth(
            (&net.server, NIC_A, "10.77.1.1/24"),
            (&net.client, "cli-a", "10.77.1.2/24"),
        )?;
        veth(
            (&net.client, "cli-p", "10.77.2.2/24"),
            (&net.proxy, "prx-c", "10.77.2.1/24"),
        )?;
        veth(
            (&net.proxy, "prx-s", "10.77.3.2/24"),
            (&net.server, NIC_B, "10.77.3.1/24"),
        )?;
        Ok(net)
    }
}

/// Creates a veth pair between two namespaces, each end with its address and
/// up. Nothing is created in the test's own namespace.
pub fn veth(a: (&Netns, &str, &str), b: (&Netns, &str, &str)) -> Result<()> {
    run_checked(Command::new("ip").args([
        "link",
        "add",
        a.1,
        "netns",
        a.0.name(),
        "type",
        "veth",
        "peer",
        "name",
        b.1,
        "netns",
        b.0.name(),
    ]))?;
    for (ns, dev, cidr) in [a, b] {
        run_checked(Command::new("ip").args(["-n", ns.name(), "addr", "add", cidr, "dev", dev]))?;
        run_checked(Command::new("ip").args(["-n", ns.name(), "link", "set", dev, "up"]))?;
    }
    Ok(())
}
