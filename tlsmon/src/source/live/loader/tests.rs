use super::*;

#[test]
fn a_verifier_rejection_carries_the_log_on_one_line() {
    let e = program_load_error(
        "tlsmon_ingress",
        ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj_log("0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\n"),
        },
    );
    let text = e.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.starts_with("the kernel verifier rejected eBPF program tlsmon_ingress: "));
    assert!(
        text.ends_with("0: (b7) r0 = 0 | R1 invalid mem access 'scalar'"),
        "{text}"
    );
}

#[test]
fn eperm_on_load_is_a_privilege_error() {
    let e = program_load_error(
        "tlsmon_egress",
        ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
            verifier_log: aya_obj_log(""),
        },
    );
    assert!(matches!(e, CaptureError::PermissionDenied { .. }), "{e}");
}

/// aya does not re-export the log type; aya-obj (its own dependency) does.
fn aya_obj_log(text: &str) -> aya_obj::VerifierLog {
    aya_obj::VerifierLog::new(text.to_owned())
}
