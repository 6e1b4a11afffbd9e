//! A TCP server that reads a ClientHello and answers with a RST, the way a
//! crashing backend or a rejecting middlebox does.
//!
//! Written here rather than with socat: socat shuts down its write side before
//! closing, which sends a FIN first, so it never produces a clean reset.

use std::{
    io::{ErrorKind, Read},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// Longest the server runs, whatever happens to the test.
pub const LIFETIME: Duration = Duration::from_secs(600);

/// The running server; stops on drop.
pub struct ResetServer {
    stop: Arc<AtomicBool>,
    resets: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl ResetServer {
    /// Listens on `addr` inside `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<ResetServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let resets = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, resets) = (stop.clone(), resets.clone());
            let ns_name = ns.name().to_owned();
            std::thread::spawn(move || {
                let bound = enter_netns(&ns_name).and_then(|()| {
                    let l = TcpListener::bind(addr)?;
                    l.set_nonblocking(true)?;
                    Ok(l)
                });
                match bound {
                    Ok(listener) => {
                        let _ = ready_tx.send(Ok(()));
                        serve(&listener, &stop, &resets);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("reset server did not start")?
            .with_context(|| format!("reset server cannot listen on {addr}"))?;
        Ok(ResetServer {
            stop,
            resets,
            thread: Some(thread),
        })
    }

    /// Connections reset so far.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::SeqCst)
    }
}

impl Drop for ResetServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, resets: &AtomicU64) {
    let end = Instant::now() + LIFETIME;
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        match listener.accept() {
            Ok((stream, _)) => {
                if reset_after_client_hello(stream).is_ok() {
                    resets.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Moves the calling thread into namespace `name` (an error, not a panic, so
/// the starter gets it through the ready channel).
fn enter_netns(name: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns on a valid namespace fd; only the calling thread moves.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one whole TLS record (the ClientHello), then closes with SO_LINGER 0,
/// which makes the kernel send RST instead of FIN.
fn reset_after_client_hello(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut header = [0u8; 5];
    stream.read_exact(&mut header)?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    drop(stream);
    Ok(())
}
