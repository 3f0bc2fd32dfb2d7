//! `profstore push`: uploads pprof files to `POST /api/v1/write`.

use super::client::{json, Client};
use super::{time, PushArgs};
use std::io::Read;

/// Parses `--label NAME=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: want NAME=VALUE")),
    }
}

/// A label set in selector syntax, `{job="api","otel.scope.name"="x"}`:
/// values are PromQL strings (`\`, `"` and newlines escaped), and names that
/// are not Prometheus identifiers take the quoted form.
pub fn label_set<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let quote = |s: &str| {
        let mut q = String::with_capacity(s.len() + 2);
        q.push('"');
        for c in s.chars() {
            match c {
                '\\' => q.push_str("\\\\"),
                '"' => q.push_str("\\\""),
                '\n' => q.push_str("\\n"),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    let ident = |s: &str| {
        let mut cs = s.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| {
            let name = if ident(k) { k.to_string() } else { quote(k) };
            format!("{name}={}", quote(v))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Pushes every file; reports each, and fails if any failed.
pub fn run(args: &PushArgs) -> Result<(), String> {
    let client = Client::new(&args.conn.url)?;
    let labels = label_set(args.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut params = vec![("labels", labels.as_str())];
    if let Some(name) = &args.name {
        params.push(("name", name.as_str()));
    }
    let mut failed = 0;
    for file in &args.files {
        match push_one(&client, file, &params) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("profstore: {file}: {e}");
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} of {} files failed", args.files.len())),
    }
}

fn push_one(client: &Client, file: &str, params: &[(&str, &str)]) -> Result<String, String> {
    let body = if file == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| format!("reading stdin: {e}"))?;
        b
    } else {
        std::fs::read(file).map_err(|e| e.to_string())?
    };
    let v = json(&client.post("/api/v1/write", params, &body)?)?;
    let ts = v["timestamp_ms"]
        .as_i64()
        .map_or_else(|| "?".to_string(), time::rfc3339);
    Ok(format!(
        "{file}: {} series, {} samples, timestamp {ts}",
        v["series"], v["samples"]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_selector, MatchOp};

    #[test]
    fn label_sets_quote_and_round_trip() {
        let labels = [
            ("job", "api"),
            ("q", r#"say "hi" \ bye"#),
            ("otel.scope.name", "x"),
            ("_ok9", "multi\nline"),
            ("9lives", ""),
            ("ünï", "ü"),
        ];
        let s = label_set(labels);
        assert!(s.starts_with(r#"{job="api",q="say \"hi\" \\ bye","otel.scope.name"="x",_ok9="multi\nline","9lives"="""#), "{s}");
        let parsed = parse_selector(&s).unwrap();
        let got: Vec<(&str, &str)> = parsed
            .iter()
            .map(|m| {
                assert_eq!(m.op, MatchOp::Equal);
                (m.name.as_str(), m.value.as_str())
            })
            .collect();
        assert_eq!(got, labels);
        assert_eq!(label_set([]), "{}");
    }

    #[test]
    fn label_args() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_label("a="), Ok(("a".into(), String::new())));
        assert!(parse_label("=b").is_err());
        assert!(parse_label("ab").is_err());
    }
}
