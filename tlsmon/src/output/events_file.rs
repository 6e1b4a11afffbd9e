//! Append-only JSON lines events file (`--events-file`).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use super::json_line;
use crate::record::HandshakeRecord;

/// Errors writing events.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The events file could not be opened (or reopened).
    #[error("cannot open events file {path}: {source}")]
    Open {
        /// The file asked for.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A line could not be written.
    #[error("cannot write to events file {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// A file that receives one JSON line per handshake, appended and flushed
/// line by line so a crash loses at most the line being written and readers
/// (`tail -f`, log shippers) see whole lines.
#[derive(Debug)]
pub struct EventsFile {
    path: PathBuf,
    file: File,
}

impl EventsFile {
    /// Opens `path` for appending, creating it (mode 0640) if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OutputError> {
        let path = path.as_ref().to_path_buf();
        let file = open_append(&path)?;
        Ok(EventsFile { path, file })
    }

    /// The path written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the record as one JSON line and flushes it.
    pub fn write(&mut self, record: &HandshakeRecord) -> Result<(), OutputError> {
        let mut line = json_line(record);
        line.push('\n');
        // One write call per line: with O_APPEND the kernel places it whole at
        // the end, even if a rotation tool truncated the file meanwhile.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| OutputError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Reopens the path (after log rotation moved the file away).
    pub fn reopen(&mut self) -> Result<(), OutputError> {
        self.file = open_append(&self.path)?;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, OutputError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| OutputError::Open {
            path: path.to_path_buf(),
            source,
        })
}
