//! Finding the tlsmon binary the end-to-end tests run.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The tlsmon binary: `$TLSMON_BIN` when set, otherwise `tlsmon` in the cargo
/// profile directory this test binary was built into (`target/<profile>/`,
/// the parent of the `deps/` folder test binaries live in).
pub fn tlsmon_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TLSMON_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("TLSMON_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the test binary")?;
    let profile_dir = exe
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(|deps| deps.parent())
        .with_context(|| {
            format!(
                "test binary {} is not in a cargo deps/ folder; set TLSMON_BIN",
                exe.display()
            )
        })?;
    let candidate = profile_dir.join("tlsmon");
    if !candidate.is_file() {
        bail!(
            "{} does not exist: build it first (`cargo build -p tlsmon`, with the same profile as the tests) or set TLSMON_BIN",
            candidate.display()
        );
    }
    Ok(candidate)
}
