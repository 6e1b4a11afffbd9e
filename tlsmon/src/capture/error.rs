//! Everything that can go wrong while capturing, each as one readable line.

use std::io;

use thiserror::Error;

/// A capture failure; `Display` is a single line meant for the operator.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The process lacks the privileges to load or attach eBPF programs.
    #[error("permission denied {action}: run tlsmon as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (missing: {missing})")]
    PermissionDenied {
        /// What was being attempted ("loading the eBPF program", ...).
        action: String,
        /// Capabilities found missing, or "unknown" when the kernel said EPERM.
        missing: String,
    },
    /// A named interface does not exist.
    #[error("interface {0:?} not found (see `ip link`)")]
    InterfaceNotFound(String),
    /// An `--interface` pattern is not a valid glob.
    #[error("invalid interface pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The running kernel lacks something tlsmon needs.
    #[error("kernel not supported: {0}")]
    KernelUnsupported(String),
    /// The verifier rejected the program; the log says why.
    #[error("the kernel verifier rejected eBPF program {program}: {reason}; verifier log: {log}")]
    VerifierRejected {
        /// Program name.
        program: String,
        /// The errno the load failed with.
        reason: String,
        /// The verifier log, flattened to one line (" | " between lines).
        log: String,
    },
    /// Loading the object failed for another reason.
    #[error("loading the eBPF object failed: {0}")]
    Load(String),
    /// Attaching to or detaching from an interface failed.
    #[error("{action} interface {interface}: {reason}")]
    Attach {
        /// "attaching to" or "detaching from".
        action: &'static str,
        /// Interface name.
        interface: String,
        /// What the kernel said.
        reason: String,
    },
    /// Reading or writing a kernel map failed.
    #[error("eBPF map {map}: {reason}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        reason: String,
    },
    /// A netlink request failed.
    #[error("netlink: {0}")]
    Netlink(String),
    /// The interface's lock: another daemon watches it, or it cannot be taken.
    #[error(transparent)]
    InterfaceLock(#[from] super::interface_lock::LockError),
    /// Any other system call failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl CaptureError {
    /// An [`CaptureError::Io`] with context.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        CaptureError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Flattens a multi-line message (a verifier log) into one line, keeping its end,
/// where the verifier says what it rejected, when it is very long.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let count = joined.chars().count();
    if count <= max_chars {
        return joined;
    }
    let tail: String = joined.chars().skip(count - max_chars).collect();
    format!("...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_and_keeps_the_end() {
        assert_eq!(one_line("a\n\n b \nc\n", 100), "a | b | c");
        assert_eq!(one_line("first\nsecond\nlast words", 10), "...last words");
    }

    #[test]
    fn messages_are_single_lines() {
        let e = CaptureError::VerifierRejected {
            program: "tlsmon_ingress".into(),
            reason: "EACCES".into(),
            log: one_line("0: r1 = r2\ninvalid access", 200),
        };
        let text = e.to_string();
        assert!(!text.contains('\n'));
        assert!(text.contains("invalid access"), "{text}");
    }
}
