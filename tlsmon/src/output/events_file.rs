//! Append-only JSON lines events file (`--events-file`).
//!
//! Every record is one line, written whole or not at all: when a write fails
//! part-way (a full disk, a quota), the part that made it is cut off again, so
//! readers never see half a record and the next record is not glued to a torn
//! line. Should cutting fail too, the next record starts on a new line instead.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use super::json_line;
use crate::record::HandshakeRecord;

/// Errors writing events. Each message carries its OS error once (they have no
/// `source()`, so `{:#}` does not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The events file could not be opened (or reopened).
    #[error("cannot open events file {path}: {error}")]
    Open {
        /// The file asked for.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// A record could not be written; it is not in the file.
    #[error("cannot write to events file {path}: {error}; the record is lost{partial}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
        /// What became of the part of the line that was written.
        partial: Partial,
    },
}

/// What became of the bytes of a record whose write failed part-way.
#[derive(Debug)]
pub enum Partial {
    /// Nothing of it was written.
    None,
    /// The written part was cut off again.
    Removed,
    /// It could not be cut off (the error says why); the next record starts on
    /// a new line.
    Left(io::Error),
}

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partial::None => Ok(()),
            Partial::Removed => f.write_str(" (its partial line was removed)"),
            Partial::Left(e) => write!(
                f,
                " (its partial line could not be removed: {e}; the next record starts on a new line)"
            ),
        }
    }
}

/// A file that receives one JSON line per handshake, appended with one write
/// per line so that readers (`tail -f`, log shippers) see whole lines.
#[derive(Debug)]
pub struct EventsFile {
    path: PathBuf,
    file: File,
    /// The file may end in a partial line (a failed cut, or a crash before we
    /// opened it): the next record begins with a newline.
    torn: bool,
}

impl EventsFile {
    /// Opens `path` for appending, creating it (mode 0640) if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OutputError> {
        let path = path.as_ref().to_path_buf();
        let (file, torn) = open_append(&path)?;
        Ok(EventsFile { path, file, torn })
    }

    /// The path written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the record as one JSON line, or, when that fails, leaves the file
    /// as it was (see [`Partial`] for when that is not possible).
    pub fn write(&mut self, record: &HandshakeRecord) -> Result<(), OutputError> {
        let json = json_line(record);
        let mut line = Vec::with_capacity(json.len() + 2);
        if self.torn {
            line.push(b'\n');
        }
        line.extend_from_slice(json.as_bytes());
        line.push(b'\n');
        let (written, error) = match write_counted(&mut self.file, &line) {
            Ok(()) => {
                self.torn = false;
                return Ok(());
            }
            Err(failed) => failed,
        };
        let partial = if written == 0 {
            Partial::None
        } else {
            match cut_back(&self.file, written) {
                Ok(()) => Partial::Removed,
                Err(e) => {
                    self.torn = true;
                    Partial::Left(e)
                }
            }
        };
        Err(OutputError::Write {
            path: self.path.clone(),
            error,
            partial,
        })
    }

    /// Reopens the path (after log rotation moved the file away).
    pub fn reopen(&mut self) -> Result<(), OutputError> {
        (self.file, self.torn) = open_append(&self.path)?;
        Ok(())
    }
}

/// Writes all of `bytes` with as many write calls as it takes (one, unless the
/// disk fills up); on failure returns how many bytes did get written.
fn write_counted(file: &mut File, bytes: &[u8]) -> Result<(), (u64, io::Error)> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return Err((done as u64, io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done as u64, e)),
        }
    }
    Ok(())
}

/// Cuts the last `written` bytes off the file: the part of a line whose write
/// failed. In append mode our bytes are the file's last ones, unless another
/// process appended meanwhile (then the file is not ours alone anyway); if the
/// file was truncated meanwhile (copytruncate) there is less to cut.
fn cut_back(file: &File, written: u64) -> io::Result<()> {
    let len = file.metadata()?.len();
    file.set_len(len.saturating_sub(written))
}

/// Opens `path` to append; also says whether it ends in a partial line.
fn open_append(path: &Path) -> Result<(File, bool), OutputError> {
    use std::os::unix::fs::OpenOptionsExt;
    let open_error = |error| OutputError::Open {
        path: path.to_path_buf(),
        error,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o640)
        .open(path)
        .map_err(open_error)?;
    let len = file.metadata().map_err(open_error)?.len();
    let mut last = [0u8; 1];
    let torn = len > 0
        && file
            .read_exact_at(&mut last, len - 1)
            .map_or(true, |()| last[0] != b'\n');
    Ok((file, torn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::alert_failure;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tlsmon-ef-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("events.jsonl")
    }

    #[test]
    fn a_torn_last_line_is_not_continued() {
        let path = temp_path("torn");
        std::fs::write(&path, "{\"whole\":1}\n{\"cut\":").unwrap();
        let mut events = EventsFile::open(&path).unwrap();
        events.write(&alert_failure()).unwrap();
        events.write(&alert_failure()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let json = json_line(&alert_failure());
        assert_eq!(lines, ["{\"whole\":1}", "{\"cut\":", &json, &json]);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_failed_write_says_the_record_is_lost() {
        // /dev/full takes no byte: ENOSPC at once, nothing to cut.
        let mut events = EventsFile {
            path: "/dev/full".into(),
            file: OpenOptions::new().append(true).open("/dev/full").unwrap(),
            torn: false,
        };
        let err = events.write(&alert_failure()).unwrap_err();
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            "cannot write to events file /dev/full: No space left on device (os error 28); the record is lost"
        );
    }

    #[test]
    fn partial_lines_are_described() {
        assert_eq!(
            Partial::Removed.to_string(),
            " (its partial line was removed)"
        );
        assert_eq!(
            Partial::Left(io::Error::from_raw_os_error(libc::EIO)).to_string(),
            " (its partial line could not be removed: Input/output error (os error 5); \
             the next record starts on a new line)"
        );
    }
}
