//! Background processes of a test, stopped on drop, with their output kept in
//! files so a failing test can show what they said.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// How long a stopped process gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A background process ended while it should still run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Exited(pub String);

/// A running background process; SIGTERM (then SIGKILL) on drop.
#[derive(Debug)]
pub struct Background {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Background {
    /// Starts `cmd` with stdout and stderr going to `log_dir/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Background> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Background {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    /// What the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with [`Exited`] if the process already ended (it should be serving);
    /// [`poll`] gives up at once on that error instead of retrying.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = &mut self.child {
            if let Some(status) = child.try_wait()? {
                return Err(Exited(format!(
                    "{} exited early ({status}); its output:\n{}",
                    self.name,
                    self.log()
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to [`STOP_GRACE`] (then SIGKILL); returns how
    /// it ended.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.name);
        };
        if child.try_wait()?.is_none() {
            // SAFETY: plain kill(2) on our own child's pid, which has not been
            // reaped yet (try_wait said it is running), so the pid is still ours.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let status = child.wait()?;
                bail!(
                    "{} ignored SIGTERM for {STOP_GRACE:?}; killed ({status})",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// Runs a command to completion; a non-zero exit is an error showing its stderr.
pub fn run_checked(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Runs `cmd` to completion, killing it after `limit`; returns its exit status
/// and combined output.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Result<(ExitStatus, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    Ok((status, text))
}

/// Polls `check` every `every` until it returns `Ok(Some(v))` or `limit` passes;
/// the last error or "still not ready" reason is in the failure. An [`Exited`]
/// error ends the wait at once: nothing will change any more.
pub fn poll<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        let last = match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::from("not yet"),
            Err(e) if e.is::<Exited>() => return Err(e.context(format!("waiting for {what}"))),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{what}: not reached within {limit:?} (last: {last})");
        }
        thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_gives_up_at_once_when_a_process_exited() {
        let dir = std::env::temp_dir();
        let mut p = Background::spawn("true-for-poll-test", Command::new("true"), &dir).unwrap();
        let start = Instant::now();
        let err = poll(
            "never",
            Duration::from_secs(20),
            Duration::from_millis(10),
            || {
                p.check_running()?;
                Ok(None::<()>)
            },
        )
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10), "{err:#}");
        assert!(
            format!("{err:#}").contains("true-for-poll-test exited early"),
            "{err:#}"
        );
    }

    #[test]
    fn poll_retries_other_errors_until_the_deadline() {
        let mut n = 0;
        let err = poll::<()>(
            "x",
            Duration::from_millis(100),
            Duration::from_millis(10),
            || {
                n += 1;
                bail!("attempt {n}")
            },
        )
        .unwrap_err();
        assert!(n > 2);
        assert!(err
            .to_string()
            .starts_with("x: not reached within 100ms (last: attempt"));
    }
}
