use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/tlsmon/tlsmon.toml"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn full_file_parses() {
    let config = parse(
        r#"
listen = "127.0.0.1:9900"
interfaces = ["eth*", "ens[0-9]"]
byte_budget = 32768
events_file = "/var/log/tlsmon/events.jsonl"
handshake_timeout_secs = 5
max_flows = 1000
log_level = "tlsmon=debug,info"
allow_shared_interface = true
log_format = "json"
web_config_file = "/etc/tlsmon/web.yml"

[labels]
sni = true
top_k = 20
"#,
    )
    .unwrap();
    assert_eq!(
        config,
        Config {
            listen: Some("127.0.0.1:9900".parse().unwrap()),
            interfaces: Some(vec!["eth*".into(), "ens[0-9]".into()]),
            byte_budget: Some(32768),
            events_file: Some("/var/log/tlsmon/events.jsonl".into()),
            handshake_timeout_secs: Some(5.0),
            max_flows: Some(1000),
            labels: Some(LabelsConfig {
                sni: Some(true),
                top_k: Some(20),
                ..LabelsConfig::default()
            }),
            log_level: Some("tlsmon=debug,info".into()),
            allow_shared_interface: Some(true),
            log_format: Some(LogFormat::Json),
            web_config_file: Some("/etc/tlsmon/web.yml".into()),
            recent_events: None,
            starttls_ports: None,
        }
    );
}

#[test]
fn empty_file_resolves_to_defaults() {
    let settings = parse("").unwrap().resolve();
    assert_eq!(
        settings,
        Settings {
            listen: "0.0.0.0:9808".parse().unwrap(),
            interfaces: vec![],
            byte_budget: 128 * 1024,
            events_file: None,
            handshake_timeout: Duration::from_secs(10),
            max_flows: 65_536,
            labels: LabelOptions::default(),
            log_level: "info".into(),
            allow_shared_interface: false,
            log_format: LogFormat::Text,
            web_config_file: None,
            recent_events: 10_000,
            starttls_ports: crate::pipeline::preamble::DEFAULT_STARTTLS_PORTS.to_vec(),
        }
    );
}

#[test]
fn the_shipped_example_config_is_valid() {
    let text = include_str!("../../../packaging/tlsmon.toml");
    let settings = parse(text).unwrap().resolve();
    assert_eq!(settings.listen, DEFAULT_LISTEN);
    assert_eq!(settings.labels, LabelOptions::default());
}

#[test]
fn the_service_breakdown_is_on_unless_switched_off() {
    assert!(parse("").unwrap().resolve().labels.service);
    assert!(
        parse("[labels]\nsni = true\n")
            .unwrap()
            .resolve()
            .labels
            .service
    );
    let off = parse("[labels]\nservice = false\n").unwrap().resolve();
    assert!(!off.labels.service);
    assert!(error("[labels]\nservice = 1\n").contains("2:11"));
}

#[test]
fn flags_win_over_the_file_field_by_field() {
    let file = parse(
        r#"
listen = "127.0.0.1:9900"
byte_budget = 32768
[labels]
sni = true
top_k = 20
"#,
    )
    .unwrap();
    let flags = Config {
        listen: Some("[::1]:9100".parse().unwrap()),
        labels: Some(LabelsConfig {
            top_k: Some(5),
            ..LabelsConfig::default()
        }),
        ..Config::default()
    };
    let settings = file.merge(flags).resolve();
    assert_eq!(settings.listen, "[::1]:9100".parse().unwrap());
    assert_eq!(settings.byte_budget, 32768);
    assert!(settings.labels.sni);
    assert_eq!(settings.labels.top_k, 5);
}

#[test]
fn unknown_keys_are_rejected_with_file_and_line() {
    assert_eq!(
        error("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n"),
        "/etc/tlsmon/tlsmon.toml:2:1: unknown field `listen_addr`, expected one of `listen`, `interfaces`, `byte_budget`, `events_file`, `handshake_timeout_secs`, `max_flows`, `labels`, `log_level`, `allow_shared_interface`, `log_format`, `web_config_file`, `recent_events`, `starttls_ports`"
    );
    assert_eq!(
        error("[labels]\nsni = true\nja5 = true\n"),
        "/etc/tlsmon/tlsmon.toml:3:1: unknown field `ja5`, expected one of `sni`, `ja3`, `ja4`, `client_ip`, `service`, `top_k`"
    );
}

#[test]
fn bad_values_are_rejected_where_they_are() {
    assert!(
        error("\nlisten = \"nowhere:80\"\n").starts_with("/etc/tlsmon/tlsmon.toml:2:10: "),
        "{}",
        error("\nlisten = \"nowhere:80\"\n")
    );
    assert_eq!(
        error("byte_budget = 10\n"),
        "/etc/tlsmon/tlsmon.toml:1:15: byte_budget must be between 2048 and 1048576, not 10"
    );
    assert_eq!(
        error("handshake_timeout_secs = 0\n"),
        "/etc/tlsmon/tlsmon.toml:1:26: handshake_timeout_secs must be between 0.1 and 3600, not 0"
    );
    assert_eq!(
        error("handshake_timeout_secs = nan\n"),
        "/etc/tlsmon/tlsmon.toml:1:26: handshake_timeout_secs must be between 0.1 and 3600, not NaN"
    );
    assert_eq!(
        parse("handshake_timeout_secs = 2.5\n")
            .unwrap()
            .resolve()
            .handshake_timeout,
        Duration::from_millis(2500)
    );
    assert_eq!(
        error("max_flows = 0\n"),
        "/etc/tlsmon/tlsmon.toml:1:13: max_flows must be between 1 and 10000000, not 0"
    );
    assert_eq!(
        error("[labels]\ntop_k = 0\n"),
        "/etc/tlsmon/tlsmon.toml:2:9: top_k must be between 1 and 10000, not 0"
    );
    assert!(error("interfaces = [\"eth[\"]\n")
        .starts_with("/etc/tlsmon/tlsmon.toml:1:14: bad interface glob \"eth[\""));
    assert!(error("log_level = \"loud=[\"\n")
        .starts_with("/etc/tlsmon/tlsmon.toml:1:13: bad log_level \"loud=[\""));
    assert!(
        error("byte_budget = \"big\"\n").starts_with("/etc/tlsmon/tlsmon.toml:1:15: invalid type")
    );
    assert!(error("listen = \n").starts_with("/etc/tlsmon/tlsmon.toml:1:"));
}

#[test]
fn unreadable_file_names_the_path() {
    let err = Config::load("/nonexistent/tlsmon.toml").unwrap_err();
    let said =
        "cannot read config file /nonexistent/tlsmon.toml: No such file or directory (os error 2)";
    assert_eq!(err.to_string(), said);
    // As the binary prints it, with its causes: the OS error once.
    assert_eq!(format!("{:#}", anyhow::Error::from(err)), said);
}

#[test]
fn extra_starttls_ports_join_the_well_known_ones() {
    use crate::pipeline::preamble::StarttlsProtocol;
    let settings = parse("starttls_ports = [\"smtp:2525\", \"postgres:5433\"]\n")
        .unwrap()
        .resolve();
    let ports = &settings.starttls_ports;
    assert!(ports.contains(&(25, StarttlsProtocol::Smtp)));
    assert!(ports.contains(&(2525, StarttlsProtocol::Smtp)));
    assert!(ports.contains(&(5433, StarttlsProtocol::Postgres)));
    let bad = parse("starttls_ports = [\"gopher:70\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("unknown STARTTLS protocol \"gopher\""),
        "{bad}"
    );
    let bad = parse("starttls_ports = [\"smtp:0\"]\n")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("not a port number"), "{bad}");
}
