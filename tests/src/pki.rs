//! Test certificates made with the openssl command line: a CA, a server
//! certificate it signed, and an unrelated CA a client can be told to trust
//! so that it rejects the server.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;

use crate::process::run_checked as run;

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// A CA that did not sign it.
    pub other_ca: PathBuf,
    /// Server certificate (RSA 2048, SAN `DNS:<server_name>`).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Pki {
    /// Generates everything into `dir` for `server_name`.
    pub fn generate(dir: &Path, server_name: &str) -> Result<Pki> {
        let p = |name: &str| dir.join(name);
        let pki = Pki {
            ca: p("ca.pem"),
            other_ca: p("other-ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        };
        for (cert, key, cn) in [
            (&pki.ca, p("ca.key"), "tlsmon test CA"),
            (&pki.other_ca, p("other-ca.key"), "unrelated CA"),
        ] {
            run(Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .arg("-subj")
                .arg(format!("/CN={cn}"))
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(cert))?;
        }
        run(Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes"])
            .arg("-subj")
            .arg(format!("/CN={server_name}"))
            .arg("-keyout")
            .arg(&pki.key)
            .arg("-out")
            .arg(p("server.csr")))?;
        std::fs::write(
            p("server.ext"),
            format!("subjectAltName=DNS:{server_name}\n"),
        )?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(&pki.ca)
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(p("server.ext"))
            .arg("-out")
            .arg(&pki.cert))?;
        Ok(pki)
    }
}
