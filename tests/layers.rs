//! The layer rule, checked on the source: each top-level module of `src/`
//! imports only the modules below it (see ARCHITECTURE.md).
//!
//! ```text
//! main.rs, config        name the concrete backends
//! server, cli            the edges
//! scrape, pyroscope, render, workload
//! compactor, querier     the bucket's readers and rewriter (over tsdb blocks)
//! tsdb | columnar        the backends, side by side, never importing each other
//! engine                 the Storage trait, partial results, the suite
//! ingest                 the write normalization
//! model                  labels, profile types, matchers, entities, time, results
//! pprof, proto           the wire format
//! ```
//!
//! Every `crate::<module>` path in code (comments and doc comments left
//! out) is checked against the table below; a new top-level module must be
//! added to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the top-level modules it may import (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("proto", &[]),
    ("bucket", &[]),
    ("pprof", &["proto"]),
    ("model", &["proto", "pprof"]),
    ("ingest", &["proto", "pprof", "model"]),
    ("engine", &["proto", "pprof", "model", "ingest"]),
    (
        "tsdb",
        &["proto", "pprof", "model", "ingest", "engine", "bucket"],
    ),
    ("columnar", &["proto", "pprof", "model", "ingest", "engine"]),
    (
        "querier",
        &[
            "proto", "pprof", "model", "ingest", "engine", "tsdb", "bucket",
        ],
    ),
    (
        "compactor",
        &[
            "proto", "pprof", "model", "ingest", "engine", "tsdb", "bucket", "querier",
        ],
    ),
    ("render", &["proto", "pprof", "model"]),
    ("pyroscope", &["proto", "pprof", "model", "ingest"]),
    ("workload", &["proto", "pprof", "model", "ingest"]),
    ("scrape", &["proto", "pprof", "model", "ingest", "engine"]),
    (
        "server",
        &[
            "proto",
            "pprof",
            "model",
            "ingest",
            "engine",
            "render",
            "pyroscope",
            "scrape",
        ],
    ),
    (
        "cli",
        &["proto", "pprof", "model", "ingest", "engine", "render"],
    ),
    (
        "config",
        &[
            "proto", "pprof", "model", "ingest", "engine", "scrape", "tsdb", "server", "bucket",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules `crate::…` paths in `src` name, comments left out.
fn imports(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in src.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `use crate::{a, b}`: each name in the braces.
            if name.is_empty() && after.starts_with('{') {
                let inner = &after[1..after.find('}').unwrap_or(after.len())];
                for part in inner.split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() {
                        out.insert(n);
                    }
                }
            } else if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, a)| (*m, a.iter().copied().collect()))
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(ok) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "src/{} is in module {module}, which the layer table does not list",
                rel.display()
            ));
            continue;
        };
        seen.insert(module.clone());
        let text = std::fs::read_to_string(f).unwrap();
        for m in imports(&text) {
            if m != module && !ok.contains(m.as_str()) {
                violations.push(format!(
                    "src/{} ({module}) imports crate::{m}",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layer rule:\n{}",
        violations.join("\n")
    );
    // The table lists no module that does not exist (a rename is noticed).
    for m in allowed.keys() {
        assert!(seen.contains(*m), "the layer table lists {m}, not in src/");
    }
}

#[test]
fn the_checker_sees_an_import_against_the_rule() {
    let bad =
        "use crate::tsdb::Tsdb; // crate::server in a comment\nfn f() { crate::columnar::x(); }";
    let got = imports(bad);
    assert!(got.contains("tsdb") && got.contains("columnar"));
    assert!(!got.contains("server"), "comments are left out");
    assert_eq!(
        imports("use crate::{engine::Storage, model};"),
        ["engine", "model"].iter().map(|s| s.to_string()).collect()
    );
}
