use super::*;

#[test]
fn urls_name_a_host_and_port_over_http() {
    assert_eq!(
        target("http://127.0.0.1:9808").unwrap(),
        Target {
            authority: "127.0.0.1:9808".into(),
            path_and_query: EVENTS_PATH.into(),
            basic_auth: None,
        }
    );
    let with_auth = target("http://ops:secret@[::1]:9808/api/v1/events?failed=true").unwrap();
    assert_eq!(with_auth.authority, "[::1]:9808");
    assert_eq!(with_auth.path_and_query, "/api/v1/events?failed=true");
    assert_eq!(with_auth.basic_auth.as_deref(), Some("b3BzOnNlY3JldA=="));
    let err = |u: &str| target(u).unwrap_err().to_string();
    assert!(err("https://h:1").contains("https is not supported"));
    assert!(err("h:1").contains("expected http://HOST:PORT"));
    assert!(err("http://h").contains("no port"));
    assert!(err("http://h:1/metrics").contains("expected no path or /api/v1/events"));
}
