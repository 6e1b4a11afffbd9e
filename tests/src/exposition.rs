//! A parser for the Prometheus text exposition format 0.0.4, to check what the
//! daemon serves on `/metrics`.
//!
//! Hand-written on purpose: the `prometheus-parse` crate splits label pairs on
//! `,` and `=` without honouring quoting or escapes, so it would misread label
//! values containing those characters, and an end-to-end test must not trust
//! a parser that can mangle the thing under test. This one follows the format
//! description (escapes `\\`, `\"`, `\n`; `+Inf`/`-Inf`/`NaN`; optional
//! timestamp) and reports the line of anything it does not understand.

use std::collections::{BTreeMap, HashMap};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as written (with `_bucket`/`_sum`/`_count` for histograms).
    pub name: String,
    /// Label names and (unescaped) values.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` of each family.
    pub types: HashMap<String, String>,
    /// `# HELP` of each family (unescaped).
    pub help: HashMap<String, String>,
}

/// A line that does not follow the format.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The line.
    pub text: String,
}

impl Scrape {
    /// Parses a whole exposition.
    pub fn parse(text: &str) -> Result<Scrape, ParseError> {
        let mut scrape = Scrape::default();
        for (i, line) in text.lines().enumerate() {
            let err = |message: &str| ParseError {
                line: i + 1,
                message: message.to_owned(),
                text: line.to_owned(),
            };
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let rest = rest.trim_start();
                if let Some(rest) = rest.strip_prefix("HELP ") {
                    let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                    scrape
                        .help
                        .insert(name.to_owned(), unescape(help, false).map_err(|m| err(&m))?);
                } else if let Some(rest) = rest.strip_prefix("TYPE ") {
                    let (name, kind) = rest
                        .split_once(' ')
                        .ok_or_else(|| err("TYPE without a type"))?;
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(err("unknown TYPE"));
                    }
                    scrape.types.insert(name.to_owned(), kind.to_owned());
                }
                // Other comments are allowed and ignored.
                continue;
            }
            scrape
                .samples
                .push(parse_sample(line).map_err(|m| err(&m))?);
        }
        Ok(scrape)
    }

    /// Samples named `name` whose labels include every pair in `filter`.
    pub fn select<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Sum of the samples [`Scrape::select`] picks (0 when none).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.select(name, filter).map(|s| s.value).sum()
    }

    /// The value of the one sample with exactly these labels, if present.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("sample without a value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("sample without a value")?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing text after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `name="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let name = s[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value not quoted")?;
        // Find the closing quote, skipping escaped characters.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unterminated label value")?;
        let value = unescape(&s[..end], true)?;
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

fn unescape(s: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            // Outside label values an unknown escape stays as written.
            Some(other) if !quotes => {
                out.push('\\');
                out.push(other);
            }
            other => {
                return Err(format!(
                    "bad escape \\{}",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        }
    }
    Ok(out)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP tlsmon_x_total A help line with a \\ backslash and \n newline.
# TYPE tlsmon_x_total counter
tlsmon_x_total{device="eth0",alert="a,b=c",q="say \"hi\"\\n"} 3
tlsmon_x_total{device="eth1",alert="",q=""} 0
# TYPE tlsmon_h histogram
tlsmon_h_bucket{le="0.5"} 1
tlsmon_h_bucket{le="+Inf"} 2 1700000000000
tlsmon_h_sum 1.5e-3
tlsmon_h_count 2
tlsmon_plain 7
"#;

    #[test]
    fn parses_labels_escapes_and_special_values() {
        let s = Scrape::parse(TEXT).unwrap();
        assert_eq!(s.samples.len(), 7);
        assert_eq!(s.types["tlsmon_x_total"], "counter");
        assert_eq!(s.types["tlsmon_h"], "histogram");
        assert_eq!(
            s.help["tlsmon_x_total"],
            "A help line with a \\ backslash and \n newline."
        );
        let first = &s.samples[0];
        assert_eq!(first.labels["alert"], "a,b=c");
        assert_eq!(first.labels["q"], "say \"hi\"\\n");
        assert_eq!(
            s.value(
                "tlsmon_x_total",
                &[
                    ("device", "eth0"),
                    ("alert", "a,b=c"),
                    ("q", "say \"hi\"\\n")
                ]
            ),
            Some(3.0)
        );
        // Exact label sets only: a subset does not match `value`.
        assert_eq!(s.value("tlsmon_x_total", &[("device", "eth0")]), None);
        assert_eq!(s.sum("tlsmon_x_total", &[]), 3.0);
        assert_eq!(s.sum("tlsmon_x_total", &[("device", "eth1")]), 0.0);
        assert_eq!(s.value("tlsmon_h_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(s.value("tlsmon_h_sum", &[]), Some(0.0015));
        assert_eq!(s.value("tlsmon_plain", &[]), Some(7.0));
    }

    #[test]
    fn reports_the_bad_line() {
        let err = Scrape::parse("ok 1\nbad{x=\"unterminated} 1\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.message, "unterminated label value");
        let err = Scrape::parse("x{a=\"1\",a=\"2\"} 1\n").unwrap_err();
        assert_eq!(err.message, "label a repeated");
        let err = Scrape::parse("x 1 2 3\n").unwrap_err();
        assert_eq!(err.message, "trailing text after the timestamp");
        let err = Scrape::parse("9x 1\n").unwrap_err();
        assert_eq!(err.message, "bad metric name");
    }
}
