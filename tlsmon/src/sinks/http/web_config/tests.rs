use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
    WebConfig::parse(text, Path::new("/etc/tlsmon/web.yml"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

/// A cheap bcrypt hash (cost 4) of `password`.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

#[test]
fn an_empty_file_means_plain_http_without_authentication() {
    for text in ["", "\n", "# nothing\n", "---\n"] {
        let config = parse(text).unwrap();
        assert_eq!(config, WebConfig::default(), "{text:?}");
        assert!(config.basic_auth().is_none());
        assert!(config.tls_server_config().unwrap().is_none());
    }
}

#[test]
fn tls_paths_are_relative_to_the_file_and_defaults_apply() {
    let config =
        parse("tls_server_config:\n  cert_file: server.pem\n  key_file: /abs/server.key\n")
            .unwrap();
    assert_eq!(
        config.tls,
        Some(TlsSettings {
            cert_file: "/etc/tlsmon/server.pem".into(),
            key_file: "/abs/server.key".into(),
            client_auth: ClientAuth::None,
            client_ca_file: None,
            versions: vec![Version::Tls12, Version::Tls13],
        })
    );
}

#[test]
fn client_certificates_and_versions() {
    let config = parse(
        "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n",
    )
    .unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuth::Require);
    assert_eq!(tls.client_ca_file, Some("/etc/tlsmon/ca.pem".into()));
    assert_eq!(tls.versions, [Version::Tls13]);
}

#[test]
fn unsupported_or_unknown_settings_are_refused_by_name() {
    let base = "tls_server_config:\n  cert_file: c\n  key_file: k\n";
    let cases = [
        (
            format!("{base}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            "cipher_suites",
        ),
        (
            "http_server_config:\n  http2: false\n".to_owned(),
            "http_server_config",
        ),
        ("basic_auth_user:\n  a: b\n".to_owned(), "basic_auth_user"),
        (
            format!("{base}  min_version: TLS10\n"),
            "TLS10 is not supported",
        ),
        (
            format!("{base}  max_version: TLS14\n"),
            "\"TLS14\" is not one of",
        ),
        (
            format!("{base}  min_version: TLS13\n  max_version: TLS12\n"),
            "min_version is above",
        ),
        (
            format!("{base}  client_auth_type: RequireAnyClientCert\n"),
            "nobody verifies",
        ),
        (
            format!("{base}  client_auth_type: Maybe\n"),
            "\"Maybe\" is not one of",
        ),
        (
            format!("{base}  client_ca_file: ca.pem\n"),
            "client_ca_file is set",
        ),
        (
            format!("{base}  client_auth_type: VerifyClientCertIfGiven\n"),
            "needs client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: c\n".to_owned(),
            "both cert_file and key_file",
        ),
    ];
    for (text, want) in cases {
        let e = error(&text);
        assert!(e.contains(want), "{text:?}: {e}");
        assert!(e.starts_with("/etc/tlsmon/web.yml: "), "{e}");
    }
}

#[test]
fn a_syntax_error_says_where() {
    let e = error("tls_server_config:\n  cert_file: [unclosed\n");
    assert!(e.contains("line"), "{e}");
    let e = error("basic_auth_users: 5\n");
    assert!(e.starts_with("/etc/tlsmon/web.yml: "), "{e}");
}

#[test]
fn passwords_must_be_bcrypt_hashes_and_users_usable() {
    let e = error("basic_auth_users:\n  prometheus: plaintext\n");
    assert!(
        e.contains("not a bcrypt hash") && e.contains("prometheus"),
        "{e}"
    );
    let h = hash("x");
    let e = error(&format!("basic_auth_users:\n  \"a:b\": '{h}'\n"));
    assert!(e.contains("not a usable user name"), "{e}");
    let ok = parse(&format!("basic_auth_users:\n  prometheus: '{h}'\n")).unwrap();
    assert_eq!(ok.basic_auth_users["prometheus"], h);
}

#[test]
fn the_file_is_read_with_a_bound() {
    let dir = std::env::temp_dir().join(format!("tlsmon-webcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.yml");
    std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
    assert!(matches!(
        WebConfig::load(&big),
        Err(WebConfigError::TooLarge { .. })
    ));
    let missing = WebConfig::load(&dir.join("missing.yml")).unwrap_err();
    assert!(missing.to_string().contains("missing.yml"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreadable_certificates_are_reported_with_their_file() {
    let config = parse(
        "tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: /nonexistent/k.pem\n",
    )
    .unwrap();
    let e = config.tls_server_config().unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/c.pem: cert_file: "), "{e}");
}

fn basic(user_password: &str) -> Vec<u8> {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
    .into_bytes()
}

#[test]
fn authorization_headers_are_read_strictly() {
    assert_eq!(Credentials::from_header(None), Credentials::Missing);
    for bad in [
        &b"Bearer abc"[..],
        b"Basic",
        b"Basic !!!notbase64",
        b"Basic bm9jb2xvbg==", // "nocolon"
        &[0xff, 0xfe],
    ] {
        assert_eq!(
            Credentials::from_header(Some(bad)),
            Credentials::Malformed,
            "{bad:?}"
        );
    }
    assert_eq!(
        Credentials::from_header(Some(&vec![b'a'; MAX_HEADER_BYTES + 1])),
        Credentials::Malformed
    );
    assert_eq!(
        Credentials::from_header(Some(&basic("prom:pa:ss"))),
        Credentials::Given {
            user: "prom".into(),
            password: "pa:ss".into()
        }
    );
    // The scheme is case-insensitive.
    let lower = String::from_utf8(basic("u:p"))
        .unwrap()
        .replace("Basic", "basic");
    assert!(matches!(
        Credentials::from_header(Some(lower.as_bytes())),
        Credentials::Given { .. }
    ));
}

#[tokio::test]
async fn only_the_right_user_and_password_are_allowed() {
    let users = [("prometheus".to_owned(), hash("s3cret"))].into();
    let auth = BasicAuth::new(&users);
    assert!(!auth.allows(None).await);
    assert!(!auth.allows(Some(&basic("prometheus:wrong"))).await);
    assert!(!auth.allows(Some(&basic("nobody:s3cret"))).await);
    assert!(!auth.allows(Some(&basic("prometheus:"))).await);
    assert!(auth.allows(Some(&basic("prometheus:s3cret"))).await);
    // Again, now from the cache: still right, and still only that password.
    assert!(auth.allows(Some(&basic("prometheus:s3cret"))).await);
    assert!(!auth.allows(Some(&basic("prometheus:s3cret "))).await);
}

#[tokio::test]
async fn htpasswd_style_2y_hashes_are_accepted() {
    // htpasswd -B writes $2y$; the algorithm is the same as $2b$.
    let h = hash("s3cret").replacen("$2b$", "$2y$", 1);
    assert!(h.starts_with("$2y$"), "{h}");
    let config = parse(&format!("basic_auth_users:\n  prometheus: '{h}'\n")).unwrap();
    let auth = config.basic_auth().unwrap();
    assert!(auth.allows(Some(&basic("prometheus:s3cret"))).await);
    assert!(!auth.allows(Some(&basic("prometheus:wrong"))).await);
}
