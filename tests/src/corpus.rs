//! The capture corpus under `tests/corpus/`: where it is, what each file is expected
//! to contain, and tlsmon's records of it as JSON values.
//!
//! Expectations are written by `tests/corpus/tools/expect.py` from how each capture
//! was recorded, confirmed by the stacks' logs and by tshark (see the corpus README);
//! the tests here hold tlsmon to them.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use tlsmon::commands::capture_files::{analyze_file, AnalyzeOptions};

/// The corpus directory (`tests/corpus`).
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// One capture and the handshakes it is expected to hold.
#[derive(Debug)]
pub struct Expectation {
    /// Scenario name (`tls13-ok`).
    pub scenario: String,
    /// The capture file.
    pub capture: PathBuf,
    /// One object per handshake, in ClientHello order, with tlsmon's field names.
    pub handshakes: Vec<Map<String, Value>>,
}

/// Every `expected/*.json`, sorted by scenario name.
pub fn expectations() -> Result<Vec<Expectation>> {
    let dir = corpus_dir().join("expected");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    paths.iter().map(|p| load_expectation(p)).collect()
}

fn load_expectation(path: &Path) -> Result<Expectation> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let field = |name: &str| {
        doc.get(name)
            .and_then(Value::as_str)
            .with_context(|| format!("{}: no string `{name}`", path.display()))
    };
    let scenario = field("scenario")?.to_string();
    let capture = corpus_dir().join(field("file")?);
    let Some(list) = doc.get("handshakes").and_then(Value::as_array) else {
        bail!("{}: no `handshakes` list", path.display());
    };
    let mut handshakes = Vec::with_capacity(list.len());
    for item in list {
        match item.as_object() {
            Some(obj) => handshakes.push(obj.clone()),
            None => bail!("{}: a handshake is not an object", path.display()),
        }
    }
    Ok(Expectation {
        scenario,
        capture,
        handshakes,
    })
}

/// Every capture file in the corpus (pcap and pcapng), sorted.
pub fn capture_files() -> Result<Vec<PathBuf>> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
    files.sort();
    Ok(files)
}

/// tlsmon's records of one capture (default options), as the JSON objects it prints.
pub fn tlsmon_records(capture: &Path) -> Result<Vec<Map<String, Value>>> {
    let (records, _summary) = analyze_file(capture, &AnalyzeOptions::default())
        .with_context(|| format!("tlsmon analyze {}", capture.display()))?;
    records
        .iter()
        .map(|r| match serde_json::to_value(r)? {
            Value::Object(obj) => Ok(obj),
            other => bail!("a record serialised to {other}, not an object"),
        })
        .collect()
}

/// The record of the connection from `client_ip`:`client_port`, if there is one.
pub fn record_of<'a>(
    records: &'a [Map<String, Value>],
    client_ip: &Value,
    client_port: &Value,
) -> Option<&'a Map<String, Value>> {
    records.iter().find(|r| {
        r.get("client_ip") == Some(client_ip) && r.get("client_port") == Some(client_port)
    })
}
