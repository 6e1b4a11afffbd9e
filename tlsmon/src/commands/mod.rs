//! The commands behind the CLI, glue only: `run` and `watch` (live, sharing
//! [`live_loop`]), `analyze` and `compare` (offline, sharing [`capture_files`]).

pub mod analyze;
pub mod capture_files;
pub mod compare;
mod events_sink;
mod live_loop;
mod logging;
pub mod run;
pub mod watch;

use std::io::IsTerminal;

use crate::cli::ColorChoice;

/// Whether text on standard output should carry ANSI colour.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}
