//! The Kubernetes manifests of deploy/kubernetes/ (issue 11): every object is
//! valid against the Kubernetes schema (kubernetes-validate, strict, for the
//! oldest and newest Kubernetes it knows), the validator does reject a broken
//! object, the DaemonSet is confined as the README says, and the pieces fit
//! together: the config map is a config file tlsmon accepts, the Service and
//! ServiceMonitor select the pods and their port, the probes and the scrape hit
//! the port tlsmon listens on, and the PrometheusRule carries exactly the rules of
//! deploy/prometheus/tlsmon-rules.yml.
//!
//! kubernetes-validate comes from PyPI: `cargo xtask test-deps` installs it into
//! target/test-tools/venv. Without it the schema tests are skipped, unless `CI`
//! is set: then they fail.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// Oldest and newest Kubernetes versions the validator has schemas for.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];
/// Kinds of the Prometheus Operator: no schema in the validator, checked here.
const OPERATOR_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];
const CONFIG_FILE: &str = "/etc/tlsmon/tlsmon.toml";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn k8s_dir() -> PathBuf {
    repo_root().join("deploy").join("kubernetes")
}

/// The `bin/` of the project's test virtual environment (xtask's test-deps).
fn venv_bin() -> PathBuf {
    repo_root().join("target/test-tools/venv/bin")
}

/// A command from the test environment, else from PATH.
fn tool(name: &str) -> PathBuf {
    let local = venv_bin().join(name);
    if local.is_file() {
        local
    } else {
        PathBuf::from(name)
    }
}

/// kubernetes-validate, if it can run; `Err` when it cannot but must (in CI).
fn validator() -> Result<Option<PathBuf>> {
    let path = tool("kubernetes-validate");
    if Command::new(&path).arg("--version").output().is_ok() {
        return Ok(Some(path));
    }
    if std::env::var_os("CI").is_some() {
        bail!("kubernetes-validate is missing (`cargo xtask test-deps` installs it)");
    }
    eprintln!("SKIPPED: kubernetes-validate is not installed (`cargo xtask test-deps`)");
    Ok(None)
}

/// The manifests (every YAML file but the kustomization), sorted.
fn manifests() -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| {
        p.extension().is_some_and(|e| e == "yaml")
            && p.file_name().is_some_and(|n| n != "kustomization.yaml")
    });
    files.sort();
    Ok(files)
}

/// The YAML documents of `path` as JSON, read by PyYAML (which kubernetes-validate
/// brings along), so no YAML parser is needed in Rust for these tests.
fn yaml_docs(path: &Path) -> Result<Vec<Value>> {
    let python = if venv_bin().join("python3").is_file() {
        venv_bin().join("python3")
    } else {
        PathBuf::from("python3")
    };
    let out = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    ensure!(
        out.status.success(),
        "reading {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Whether PyYAML is there to read the manifests; `Err` when not but must be.
fn yaml_available() -> Result<bool> {
    match yaml_docs(&k8s_dir().join("namespace.yaml")) {
        Ok(_) => Ok(true),
        Err(e) if std::env::var_os("CI").is_some() => Err(e.context("PyYAML is needed")),
        Err(e) => {
            eprintln!("SKIPPED: cannot read YAML with PyYAML ({e:#}); `cargo xtask test-deps`");
            Ok(false)
        }
    }
}

/// The one object of `kind` among the manifests.
fn object(kind: &str) -> Result<Value> {
    let mut found = Vec::new();
    for path in manifests()? {
        for doc in yaml_docs(&path)? {
            if doc["kind"] == kind {
                found.push(doc);
            }
        }
    }
    ensure!(found.len() == 1, "{} objects of kind {kind}", found.len());
    Ok(found.remove(0))
}

fn validate(validator: &Path, version: &str, files: &[PathBuf]) -> Result<(bool, String)> {
    let out = Command::new(validator)
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .context("running kubernetes-validate")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn every_manifest_is_valid_against_the_kubernetes_schema() -> Result<()> {
    let Some(validator) = validator()? else {
        return Ok(());
    };
    let files = manifests()?;
    ensure!(files.len() >= 7, "manifests: {files:?}");
    for version in KUBERNETES_VERSIONS {
        let (ok, out) = validate(&validator, version, &files)?;
        assert!(ok, "kubernetes-validate {version}:\n{out}");
        // Every built-in object passed; only the operator's kinds lack a schema.
        let passed = out.lines().filter(|l| l.contains(" passed for ")).count();
        let unknown: BTreeSet<&str> = out
            .lines()
            .filter_map(|l| l.split("Couldn't find schema for kind ").nth(1))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(unknown, OPERATOR_KINDS.into(), "{out}");
        assert_eq!(passed, files.len() - OPERATOR_KINDS.len(), "{out}");
    }
    Ok(())
}

/// The validator is not a rubber stamp: a wrong type and an unknown field fail.
#[test]
fn the_validator_rejects_a_broken_daemonset() -> Result<()> {
    let Some(validator) = validator()? else {
        return Ok(());
    };
    let text = std::fs::read_to_string(k8s_dir().join("daemonset.yaml"))?;
    let dir = std::env::temp_dir().join(format!("tlsmon-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let broken = [
        ("hostNetwork: true", "hostNetwork: \"yes\""),
        (
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
        ),
    ];
    let mut results = Vec::new();
    for (i, (from, to)) in broken.iter().enumerate() {
        assert_eq!(text.matches(from).count(), 1, "{from}");
        let path = dir.join(format!("broken-{i}.yaml"));
        std::fs::write(&path, text.replace(from, to))?;
        results.push((to, validate(&validator, KUBERNETES_VERSIONS[1], &[path])));
    }
    let _ = std::fs::remove_dir_all(&dir);
    for (to, result) in results {
        let (ok, out) = result?;
        assert!(!ok, "accepted a DaemonSet with {to}:\n{out}");
    }
    Ok(())
}

#[test]
fn kustomization_lists_every_manifest() -> Result<()> {
    if !yaml_available()? {
        return Ok(());
    }
    let k = yaml_docs(&k8s_dir().join("kustomization.yaml"))?;
    let listed: BTreeSet<String> = k[0]["resources"]
        .as_array()
        .context("no resources")?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let present: BTreeSet<String> = manifests()?
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert_eq!(listed, present);
    // The image kustomize rewrites is the one the DaemonSet names.
    let image = object("DaemonSet")?["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .context("no image")?
        .to_owned();
    let name = k[0]["images"][0]["name"].as_str().context("no images")?;
    assert_eq!(image.split(':').next(), Some(name));
    Ok(())
}

#[test]
fn the_daemonset_is_confined() -> Result<()> {
    if !yaml_available()? {
        return Ok(());
    }
    let ds = object("DaemonSet")?;
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true, "tlsmon must see the node's NICs");
    assert_eq!(pod["hostPID"], Value::Null);
    assert_eq!(pod["hostIPC"], Value::Null);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["serviceAccountName"], "tlsmon");
    let containers = pod["containers"].as_array().context("no containers")?;
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let added: BTreeSet<&str> = sc["capabilities"]["add"]
        .as_array()
        .context("no added capabilities")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        added,
        ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"].into(),
        "the capabilities of packaging/tlsmon.service, no more"
    );
    // Requests and limits are set, requests within limits.
    let res = &c["resources"];
    for kind in ["requests", "limits"] {
        assert!(res[kind]["memory"].is_string(), "{kind}.memory");
    }
    let mib = |v: &Value| -> Result<u64> {
        let s = v.as_str().context("not a quantity")?;
        let n = s.strip_suffix("Mi").context("memory not in Mi")?;
        Ok(n.parse()?)
    };
    ensure!(mib(&res["requests"]["memory"])? <= mib(&res["limits"]["memory"])?);
    assert!(res["requests"]["cpu"].is_string(), "requests.cpu");
    // Probes on /healthz, on the port tlsmon listens on.
    let port = &c["ports"][0];
    assert_eq!(port["name"], "metrics");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    // From the host only the interface lock directory, the one writable mount.
    let mut writable = Vec::new();
    for m in c["volumeMounts"].as_array().context("no mounts")? {
        if m["readOnly"] != true {
            writable.push(m["mountPath"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(writable, [tlsmon::source::live::LOCK_DIR]);
    let host_paths: Vec<&Value> = pod["volumes"]
        .as_array()
        .context("no volumes")?
        .iter()
        .filter_map(|v| v.get("hostPath"))
        .collect();
    assert_eq!(
        host_paths,
        [&serde_json::json!({"path": tlsmon::source::live::LOCK_DIR, "type": "DirectoryOrCreate"})]
    );
    Ok(())
}

#[test]
fn the_config_map_is_a_config_tlsmon_accepts_on_the_probed_port() -> Result<()> {
    if !yaml_available()? {
        return Ok(());
    }
    let cm = object("ConfigMap")?;
    let ds = object("DaemonSet")?;
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    // The file the daemon is told to read is the config map's key, mounted.
    let args: Vec<&str> = c["args"]
        .as_array()
        .context("no args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args, ["run", "--config", CONFIG_FILE]);
    let (dir, key) = CONFIG_FILE.rsplit_once('/').context("path")?;
    let mount = c["volumeMounts"]
        .as_array()
        .context("no mounts")?
        .iter()
        .find(|m| m["mountPath"] == dir)
        .context("config directory not mounted")?;
    let volume = pod["volumes"]
        .as_array()
        .context("no volumes")?
        .iter()
        .find(|v| v["name"] == mount["name"])
        .context("no volume for the mount")?;
    assert_eq!(volume["configMap"]["name"], cm["metadata"]["name"]);
    let text = cm["data"][key].as_str().context("no config file key")?;
    let config = tlsmon::config::Config::parse(text, Path::new(key))?;
    let listen = config.listen.context("the config sets listen")?;
    assert!(
        listen.ip().is_unspecified(),
        "kubelet probes the node's address"
    );
    assert_eq!(
        Some(u64::from(listen.port())),
        c["ports"][0]["containerPort"].as_u64(),
        "containerPort is where tlsmon listens"
    );
    assert!(
        config.interfaces.is_some_and(|i| !i.is_empty()),
        "the node's NICs are named, so pod veths are not watched"
    );
    Ok(())
}

#[test]
fn the_service_monitor_scrapes_the_daemonset_pods() -> Result<()> {
    if !yaml_available()? {
        return Ok(());
    }
    let ds = object("DaemonSet")?;
    let svc = object("Service")?;
    let sm = object("ServiceMonitor")?;
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    assert_eq!(svc["spec"]["clusterIP"], "None", "headless");
    for (k, v) in svc["spec"]["selector"].as_object().context("selector")? {
        assert_eq!(&pod_labels[k], v, "Service selects the pods by {k}");
    }
    let svc_port = &svc["spec"]["ports"][0];
    assert_eq!(svc_port["targetPort"], "metrics");
    assert_eq!(
        svc_port["port"],
        ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    );
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .context("ServiceMonitor selector")?
    {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects by {k}"
        );
    }
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        serde_json::json!([svc["metadata"]["namespace"]])
    );
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], svc_port["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    // The operator names the job after the Service: the rules' `up{job="tlsmon"}`.
    assert_eq!(svc["metadata"]["name"], "tlsmon");
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/tlsmon-rules.yml"))?;
    assert!(rules.contains(r#"up{job="tlsmon"}"#));
    Ok(())
}

#[test]
fn the_prometheus_rule_carries_the_rules_file() -> Result<()> {
    if !yaml_available()? {
        return Ok(());
    }
    let rule = object("PrometheusRule")?;
    let file = yaml_docs(&repo_root().join("deploy/prometheus/tlsmon-rules.yml"))?;
    assert_eq!(rule["spec"]["groups"], file[0]["groups"]);
    Ok(())
}
