//! `tlsmon watch`: one line per handshake as it completes, like tcpdump for
//! handshakes.

use std::io::{self, Write};

use crate::cli::WatchArgs;
use crate::event::{HandshakeEvent, Outcome};
use crate::sinks::lines::{self};
use crate::source::live::{InterfaceChange, InterfaceLocking};

use super::live_loop::{self, capture_flags, flow_options, start_capture, LiveObserver};
use super::logging;
use crate::pipeline::drive::Pipeline;

/// Prints handshakes as they complete until SIGINT/SIGTERM.
pub async fn watch(args: &WatchArgs) -> anyhow::Result<()> {
    logging::init("warn", crate::config::LogFormat::Text)?;
    let settings = capture_flags(&args.capture).resolve();
    // watch holds no interface lock: it runs next to the daemon, and only looks
    // whether one is attached (so that its clsact filters are not removed as stale).
    let signals = live_loop::StopSignals::install()?;
    let (mut capture, attached) = start_capture(&settings, InterfaceLocking::Observe)?;
    // The initial attachments are announced here, later ones as they happen.
    let _ = capture.take_interface_changes();
    eprintln!("watching {} (Ctrl-C to stop)", attached.join(", "));
    let table = Pipeline::new(flow_options(&settings))
        .with_forwarding()
        .with_workers(
            args.capture
                .workers
                .unwrap_or(crate::pipeline::shards::LIVE_DEFAULT_WORKERS),
        );
    let color = crate::commands::use_color(args.color);
    let mut observer = WatchObserver {
        json: args.json,
        failures_only: args.failures_only,
        color,
    };
    live_loop::run_until_signal(capture, table, signals, &mut observer).await
}

/// `watch`'s handling of records: one line each on standard output.
struct WatchObserver {
    json: bool,
    failures_only: bool,
    color: bool,
}

impl LiveObserver for WatchObserver {
    fn interfaces_changed(&mut self, changes: &[InterfaceChange]) {
        for change in changes {
            match change {
                InterfaceChange::Attached(device) => eprintln!("watching {device}"),
                InterfaceChange::Detached(device) => eprintln!("stopped watching {device}"),
                InterfaceChange::AttachFailed { interface, error } => {
                    eprintln!("cannot watch {interface}: {error}")
                }
            }
        }
    }

    fn record(&mut self, record: &HandshakeEvent) {
        if self.failures_only && record.outcome != Outcome::Failed {
            return;
        }
        let line = if self.json {
            lines::json_line(record)
        } else {
            lines::text_line(record, self.color)
        };
        let mut stdout = io::stdout().lock();
        // A closed pipe ends nothing here: the loop stops on signals only.
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}
