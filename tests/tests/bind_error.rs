//! `tlsmon run` on a listen address that is taken stops at once with one line
//! that states the cause once (it used to repeat the OS error at the end).

use std::{net::TcpListener, process::Command, time::Duration};

use tlsmon_tests::{binary::tlsmon_binary, process::run_bounded};

#[test]
fn a_taken_listen_address_is_one_line_with_its_cause_once() {
    // Hold a port on loopback (not 9808, which other tests use).
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut cmd = Command::new(tlsmon_binary().unwrap());
    // The address is bound before anything else is touched, so no interface,
    // privilege or kernel matters here.
    cmd.args(["run", "--listen", &addr.to_string()]);
    let (status, output) = run_bounded(cmd, Duration::from_secs(20)).unwrap();
    assert!(!status.success());
    assert_eq!(
        output,
        format!(
            "tlsmon: cannot listen on {addr}: Address already in use (os error 98) (another \
             process already listens there; stop it or choose another --listen address)\n"
        )
    );
}
