//! The offline commands behind the CLI: `analyze` and `compare`.

pub mod analyze;
pub mod compare;
pub mod daemon;
mod events_sink;
mod live;

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
