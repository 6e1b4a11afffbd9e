//! The Prometheus rules in deploy/prometheus/ (issue 11): `promtool check rules`
//! accepts them, their unit tests (`promtool test rules`, input series and
//! expected alerts) pass, every alert has a test that expects it to fire, and the
//! tests catch a changed threshold.
//!
//! Needs promtool (Debian package `prometheus`, which `cargo xtask test-deps`
//! installs). Without it the tests are skipped, unless `CI` is set: then they fail.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("prometheus")
}

const RULES: &str = "tlsmon-rules.yml";
const RULE_TESTS: &str = "tlsmon-rules.test.yml";

/// Whether promtool can run; `Err` when it cannot but must (in CI).
fn promtool_available() -> Result<bool> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Ok(true);
    }
    if std::env::var_os("CI").is_some() {
        bail!("promtool is missing (Debian package `prometheus`; `cargo xtask test-deps`)");
    }
    eprintln!("SKIPPED: promtool is not installed (Debian package `prometheus`)");
    Ok(false)
}

/// Runs promtool with `args` in `dir`; returns whether it succeeded and what it said.
fn promtool(dir: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running promtool {args:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// The names after `key:` on lines of `text` (`- alert: X`, `alertname: X`).
fn names_after(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.strip_prefix(key)?
                .strip_prefix(':')
                .map(|v| v.trim().to_owned())
        })
        .collect()
}

#[test]
fn promtool_accepts_the_rules() -> Result<()> {
    if !promtool_available()? {
        return Ok(());
    }
    let (ok, out) = promtool(&rules_dir(), &["check", "rules", RULES])?;
    assert!(ok, "promtool check rules failed:\n{out}");
    // 5 recording rules and 7 alerts; a rule lost in an edit shows up here.
    assert!(out.contains("SUCCESS: 12 rules found"), "{out}");
    Ok(())
}

#[test]
fn the_rules_unit_tests_pass() -> Result<()> {
    if !promtool_available()? {
        return Ok(());
    }
    let (ok, out) = promtool(&rules_dir(), &["test", "rules", RULE_TESTS])?;
    assert!(ok, "promtool test rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    Ok(())
}

#[test]
fn every_alert_is_expected_to_fire_in_some_unit_test() -> Result<()> {
    let rules = std::fs::read_to_string(rules_dir().join(RULES))?;
    let tests = std::fs::read_to_string(rules_dir().join(RULE_TESTS))?;
    let alerts = names_after(&rules, "alert");
    assert_eq!(
        alerts,
        [
            "TlsmonAbsent",
            "TlsmonCaptureDroppingEvents",
            "TlsmonDeviceFailureRatioOutlier",
            "TlsmonDown",
            "TlsmonFlowsEvicted",
            "TlsmonHandshakeFailureRatioHigh",
            "TlsmonInterfaceDetached",
        ]
        .map(String::from)
        .into(),
    );
    // An `alertname:` followed (before the next one) by an `exp_labels:` is a
    // test that expects that alert to fire.
    let mut firing = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in tests.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_owned());
        } else if line.starts_with("- exp_labels:") {
            if let Some(name) = &current {
                firing.insert(name.clone());
            }
        }
    }
    assert_eq!(
        firing, alerts,
        "alerts with a test that expects them to fire"
    );
    Ok(())
}

/// The unit tests are not vacuous: with the failure-ratio threshold raised from
/// 20 % to 60 %, they fail.
#[test]
fn the_unit_tests_catch_a_changed_threshold() -> Result<()> {
    if !promtool_available()? {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("tlsmon-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rules = std::fs::read_to_string(rules_dir().join(RULES))?;
    let threshold = "instance_device:tlsmon_handshake_failure_ratio:rate5m > 0.2";
    assert_eq!(rules.matches(threshold).count(), 1, "threshold not found");
    std::fs::write(
        dir.join(RULES),
        rules.replace(threshold, &threshold.replace("0.2", "0.6")),
    )?;
    std::fs::copy(rules_dir().join(RULE_TESTS), dir.join(RULE_TESTS))?;
    let result = promtool(&dir, &["test", "rules", RULE_TESTS]);
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, out) = result?;
    assert!(!ok, "the unit tests passed with a 60 % threshold:\n{out}");
    assert!(out.contains("TlsmonHandshakeFailureRatioHigh"), "{out}");
    Ok(())
}
