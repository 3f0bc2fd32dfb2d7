//! Tests for the pprof layer: the real corpus, a table of bad inputs, gzip
//! bombs, a fuzz-style mutation loop, and an ignored release-mode timing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use super::*;
use crate::proto::pprof::{Function, Label, Line, Location, Mapping, Sample, ValueType};

// ---------------------------------------------------------------- corpus --

/// The shared corpus, else the crate's own copy, else `None` (with a note).
pub(crate) fn corpus_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [
        root.join("../shared/testdata/pprof"),
        root.join("testdata/pprof"),
    ] {
        if dir.is_dir() {
            return Some(dir);
        }
    }
    eprintln!("note: no pprof corpus found (../shared/testdata/pprof, testdata/pprof); skipping");
    None
}

/// Every profile file under `dir` (not SOURCES.md), as (relative name, path),
/// sorted.
pub(crate) fn corpus_files(dir: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_none_or(|e| e != "md") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths);
    let mut v: Vec<(String, PathBuf)> = paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, p)
        })
        .collect();
    v.sort();
    v
}

/// One row of SOURCES.md's "Decoded summary" table.
#[derive(Debug)]
struct Expected {
    gz: bool,
    decoded_bytes: usize,
    samples: usize,
    locations: usize,
    functions: usize,
    mappings: usize,
}

fn expected_counts(dir: &Path) -> Vec<(String, Expected)> {
    let Ok(md) = std::fs::read_to_string(dir.join("SOURCES.md")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in md.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `file` | gz | bytes | types | period | n | loc | fn | map | lab | time | dur |
        if cols.len() != 14 || !cols[1].starts_with('`') || !matches!(cols[2], "y" | "n") {
            continue;
        }
        let num = |s: &str| s.trim().parse::<usize>().unwrap();
        let (_, decoded) = cols[3].split_once('/').unwrap();
        out.push((
            cols[1].trim_matches('`').to_string(),
            Expected {
                gz: cols[2] == "y",
                decoded_bytes: num(decoded),
                samples: num(cols[6]),
                locations: num(cols[7]),
                functions: num(cols[8]),
                mappings: num(cols[9]),
            },
        ));
    }
    out
}

#[test]
fn corpus_decodes_and_validates_with_default_limits() {
    let Some(dir) = corpus_dir() else { return };
    let files = corpus_files(&dir);
    let expected = expected_counts(&dir);
    let limits = DecodeLimits::default();
    let mut lines_without_function = 0usize;
    let mut checked = 0usize;
    for (name, path) in &files {
        let bytes = std::fs::read(path).unwrap();
        let p = decode(&bytes, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        lines_without_function += p
            .location
            .iter()
            .flat_map(|l| &l.line)
            .filter(|l| l.function_id == 0)
            .count();
        if let Some((_, e)) = expected.iter().find(|(n, _)| n == name) {
            assert_eq!(gzip::is_gzip(&bytes), e.gz, "{name}: gzip");
            let raw_len = if e.gz {
                gzip::gunzip_bounded(&bytes, usize::MAX - 1).unwrap().len()
            } else {
                bytes.len()
            };
            assert_eq!(raw_len, e.decoded_bytes, "{name}: decoded bytes");
            assert_eq!(p.sample.len(), e.samples, "{name}: samples");
            assert_eq!(p.location.len(), e.locations, "{name}: locations");
            assert_eq!(p.function.len(), e.functions, "{name}: functions");
            assert_eq!(p.mapping.len(), e.mappings, "{name}: mappings");
            checked += 1;
        }
    }
    eprintln!(
        "decoded {} corpus files from {}, {checked} checked against SOURCES.md",
        files.len(),
        dir.display()
    );
    if !expected.is_empty() {
        assert_eq!(checked, expected.len(), "every SOURCES.md row has its file");
    }
    // The module docs say the corpus has no line without a function; if that
    // changes, revisit the decision there.
    assert_eq!(lines_without_function, 0);
}

#[test]
fn corpus_spot_checks() {
    let Some(dir) = corpus_dir() else { return };
    let limits = DecodeLimits::default();
    let load = |rel: &str| -> Option<(Vec<u8>, Profile)> {
        let bytes = std::fs::read(dir.join(rel)).ok()?;
        let p = decode(&bytes, &limits).unwrap();
        Some((bytes, p))
    };
    if let Some((bytes, p)) = load("pprof/large.cpu") {
        assert!(gzip::is_gzip(&bytes));
        assert_eq!((p.sample.len(), p.location.len()), (20430, 23355));
        assert_eq!((p.function.len(), p.mapping.len()), (23038, 4));
    }
    if let Some((bytes, p)) = load("pyroscope/dotnet-pprof-211.pb.gz") {
        assert!(!gzip::is_gzip(&bytes), "raw protobuf despite its name");
        assert_eq!(p.sample_type.len(), 6);
        assert_eq!(p.sample.len(), 2076);
    }
    if let Some((bytes, p)) = load("pyroscope/heap") {
        assert!(gzip::is_gzip(&bytes), "gzipped despite having no extension");
        assert_eq!(p.sample.len(), 11951);
    }
    if let Some((_, p)) = load("parca/normalizer.profile.pb.gz") {
        assert!(p.period_type.is_none());
    }
}

/// The pre-scan's heap estimate against the capacities prost actually
/// produced (top level reserved exactly by `decode`, nested vectors grown by
/// push), on every corpus file.
#[test]
fn heap_estimate_matches_decoded_capacities() {
    use std::mem::size_of;
    let Some(dir) = corpus_dir() else { return };
    let mut worst_ratio = 0f64;
    for (name, path) in corpus_files(&dir) {
        let bytes = std::fs::read(&path).unwrap();
        let raw = if gzip::is_gzip(&bytes) {
            gzip::gunzip_bounded(&bytes, usize::MAX - 1).unwrap()
        } else {
            bytes
        };
        let counts = prescan::scan(&raw, &DecodeLimits::default()).unwrap();
        let p = decode(&raw, &DecodeLimits::default()).unwrap();
        let mut actual = p.sample_type.capacity() * size_of::<ValueType>()
            + p.sample.capacity() * size_of::<Sample>()
            + p.mapping.capacity() * size_of::<Mapping>()
            + p.location.capacity() * size_of::<Location>()
            + p.function.capacity() * size_of::<Function>()
            + p.string_table.capacity() * size_of::<String>()
            + p.comment.capacity() * size_of::<i64>();
        actual += p.string_table.iter().map(String::capacity).sum::<usize>();
        for s in &p.sample {
            actual += s.location_id.capacity() * 8
                + s.value.capacity() * 8
                + s.label.capacity() * size_of::<Label>();
        }
        for l in &p.location {
            actual += l.line.capacity() * size_of::<Line>();
        }
        assert_eq!(counts.heap_bytes, actual, "{name}");
        assert_eq!(counts.samples, p.sample.len(), "{name}");
        assert_eq!(counts.strings, p.string_table.len(), "{name}");
        let ratio = actual as f64 / raw.len() as f64;
        if ratio > 6.0 {
            eprintln!(
                "{name}: decoded heap {actual} bytes = {ratio:.2}x its {} protobuf bytes",
                raw.len()
            );
        }
        worst_ratio = worst_ratio.max(ratio);
    }
    eprintln!("largest decoded-heap / protobuf-size ratio in the corpus: {worst_ratio:.2}");
}

#[test]
fn encode_round_trips() {
    let p = base_profile();
    let raw = encode(&p);
    assert!(!gzip::is_gzip(&raw));
    assert_eq!(decode(&raw, &DecodeLimits::default()).unwrap(), p);
    let gz = encode_gzip(&p);
    assert!(gzip::is_gzip(&gz));
    assert_eq!(decode(&gz, &DecodeLimits::default()).unwrap(), p);

    let Some(dir) = corpus_dir() else { return };
    let Ok(bytes) = std::fs::read(dir.join("parca/alloc_objects.pb.gz")) else {
        return;
    };
    let p = decode(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(
        decode(&encode_gzip(&p), &DecodeLimits::default()).unwrap(),
        p
    );
}

#[test]
fn string_table_builder() {
    let mut st = StringTable::new();
    assert_eq!(st.len(), 1);
    assert!(!st.is_empty());
    assert_eq!(st.intern(""), 0);
    assert_eq!(st.intern("a"), 1);
    assert_eq!(st.intern("b"), 2);
    assert_eq!(st.intern("a"), 1);
    assert_eq!(st.len(), 3);
    assert_eq!(st.into_vec(), vec!["", "a", "b"]);
    assert_eq!(StringTable::default().into_vec(), vec![""]);
}

// ----------------------------------------------------------- bad inputs --

/// A small profile that uses every string-indexed field.
fn base_profile() -> Profile {
    let mut st = StringTable::new();
    let samples = st.intern("samples");
    let count = st.intern("count");
    let cpu = st.intern("cpu");
    let ns = st.intern("nanoseconds");
    let bin = st.intern("/bin/app");
    let build = st.intern("abc123");
    let main = st.intern("main.main");
    let work = st.intern("main.work");
    let file = st.intern("main.go");
    let thread = st.intern("thread");
    let t1 = st.intern("t1");
    let bytes = st.intern("bytes");
    let drop = st.intern("runtime\\..*");
    let comment = st.intern("a comment");
    Profile {
        sample_type: vec![
            ValueType {
                r#type: samples,
                unit: count,
            },
            ValueType {
                r#type: cpu,
                unit: ns,
            },
        ],
        sample: vec![Sample {
            location_id: vec![2, 1],
            value: vec![1, 10_000_000],
            label: vec![
                Label {
                    key: thread,
                    str: t1,
                    ..Default::default()
                },
                Label {
                    key: bytes,
                    num: 64,
                    num_unit: bytes,
                    ..Default::default()
                },
            ],
        }],
        mapping: vec![Mapping {
            id: 1,
            memory_start: 0x1000,
            memory_limit: 0x9000,
            filename: bin,
            build_id: build,
            has_functions: true,
            ..Default::default()
        }],
        location: vec![
            Location {
                id: 1,
                mapping_id: 1,
                address: 0x1100,
                line: vec![Line {
                    function_id: 1,
                    line: 10,
                    column: 0,
                }],
                is_folded: false,
            },
            Location {
                id: 2,
                mapping_id: 1,
                address: 0x1200,
                line: vec![Line {
                    function_id: 2,
                    line: 20,
                    column: 3,
                }],
                is_folded: false,
            },
        ],
        function: vec![
            Function {
                id: 1,
                name: main,
                system_name: main,
                filename: file,
                start_line: 5,
            },
            Function {
                id: 2,
                name: work,
                system_name: work,
                filename: file,
                start_line: 15,
            },
        ],
        string_table: st.into_vec(),
        drop_frames: drop,
        keep_frames: 0,
        time_nanos: 1_700_000_000_000_000_000,
        duration_nanos: 10_000_000_000,
        period_type: Some(ValueType {
            r#type: cpu,
            unit: ns,
        }),
        period: 10_000_000,
        comment: vec![comment],
        default_sample_type: cpu,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Empty,
    TooLarge,
    Gzip,
    Protobuf,
    Invalid,
}

fn kind(e: &PprofError) -> Kind {
    match e {
        PprofError::Empty => Kind::Empty,
        PprofError::TooLarge { .. } => Kind::TooLarge,
        PprofError::Gzip(_) => Kind::Gzip,
        PprofError::Protobuf(_) => Kind::Protobuf,
        PprofError::Invalid(_) => Kind::Invalid,
    }
}

#[track_caller]
fn assert_err(r: Result<Profile, PprofError>, want: Kind, substr: &str, case: &str) {
    match r {
        Ok(_) => panic!("{case}: accepted, expected {want:?} containing {substr:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(kind(&e), want, "{case}: {msg}");
            assert!(msg.contains(substr), "{case}: {msg:?} lacks {substr:?}");
            assert_eq!(e.is_too_large(), want == Kind::TooLarge, "{case}");
        }
    }
}

fn gz(raw: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

#[test]
fn base_profile_is_valid() {
    let p = base_profile();
    validate(&p, &DecodeLimits::default()).unwrap();
    assert_eq!(decode(&encode(&p), &DecodeLimits::default()).unwrap(), p);
}

#[test]
fn semantic_errors() {
    type Mutate = fn(&mut Profile);
    let oor = "string index 999 out of range (table has 15 strings)";
    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "sample type",
            |p| p.sample_type[1].r#type = 999,
            "sample_type 1: type: ",
        ),
        (
            "sample unit",
            |p| p.sample_type[0].unit = 999,
            "sample_type 0: unit: ",
        ),
        (
            "period type",
            |p| p.period_type.as_mut().unwrap().r#type = 999,
            "period_type: type: ",
        ),
        (
            "period unit",
            |p| p.period_type.as_mut().unwrap().unit = 999,
            "period_type: unit: ",
        ),
        ("drop_frames", |p| p.drop_frames = 999, "drop_frames: "),
        ("keep_frames", |p| p.keep_frames = 999, "keep_frames: "),
        ("comment", |p| p.comment.push(999), "comment 1: "),
        (
            "default_sample_type",
            |p| p.default_sample_type = 999,
            "default_sample_type: ",
        ),
        (
            "mapping filename",
            |p| p.mapping[0].filename = 999,
            "mapping 0 (id 1): filename: ",
        ),
        (
            "mapping build_id",
            |p| p.mapping[0].build_id = 999,
            "mapping 0 (id 1): build_id: ",
        ),
        (
            "function name",
            |p| p.function[1].name = 999,
            "function 1 (id 2): name: ",
        ),
        (
            "function system_name",
            |p| p.function[0].system_name = 999,
            "function 0 (id 1): system_name: ",
        ),
        (
            "function filename",
            |p| p.function[0].filename = 999,
            "function 0 (id 1): filename: ",
        ),
        (
            "label key",
            |p| p.sample[0].label[0].key = 999,
            "sample 0: label 0: key: ",
        ),
        (
            "label str",
            |p| p.sample[0].label[0].str = 999,
            "sample 0: label 0: str: ",
        ),
        (
            "label num_unit",
            |p| p.sample[0].label[1].num_unit = 999,
            "sample 0: label 1: num_unit: ",
        ),
    ];
    for (case, mutate, at) in cases {
        let mut p = base_profile();
        mutate(&mut p);
        let want = format!("{at}{oor}");
        assert_err(
            decode(&encode(&p), &DecodeLimits::default()),
            Kind::Invalid,
            &want,
            case,
        );
        assert_err(
            validate(&p, &DecodeLimits::default()).map(|_| p),
            Kind::Invalid,
            &want,
            case,
        );
    }

    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "negative string index",
            |p| p.function[0].name = -1,
            "function 0 (id 1): name: string index -1 out of range",
        ),
        (
            "missing location",
            |p| p.sample[0].location_id.push(99),
            "sample 0: location id 99 does not exist",
        ),
        (
            "location id 0 in sample",
            |p| p.sample[0].location_id[0] = 0,
            "sample 0: location id 0 does not exist",
        ),
        (
            "missing function",
            |p| p.location[1].line[0].function_id = 7,
            "location 1 (id 2): line 0: function id 7 does not exist",
        ),
        (
            "missing mapping",
            |p| p.location[0].mapping_id = 5,
            "location 0 (id 1): mapping id 5 does not exist",
        ),
        (
            "duplicate function id",
            |p| p.function[1].id = 1,
            "function 1: duplicate id 1 (also function 0)",
        ),
        (
            "duplicate location id",
            |p| {
                p.location[0].id = 2;
                p.location[1].id = 2;
            },
            "location 1: duplicate id 2 (also location 0)",
        ),
        (
            "duplicate mapping id",
            |p| {
                let m = p.mapping[0];
                p.mapping.push(m);
            },
            "mapping 1: duplicate id 1 (also mapping 0)",
        ),
        (
            "zero mapping id",
            |p| p.mapping[0].id = 0,
            "mapping 0: id 0 (ids must be non-zero)",
        ),
        (
            "zero function id",
            |p| p.function[1].id = 0,
            "function 1: id 0",
        ),
        (
            "zero location id",
            |p| p.location[0].id = 0,
            "location 0: id 0",
        ),
        (
            "too few values",
            |p| p.sample[0].value.pop().map(drop).unwrap(),
            "sample 0: 1 values, but the profile has 2 sample types",
        ),
        (
            "too many values",
            |p| p.sample[0].value.push(3),
            "sample 0: 3 values, but the profile has 2 sample types",
        ),
        (
            "string_table[0] not empty",
            |p| p.string_table[0] = "x".into(),
            "string_table[0] must be the empty string, found \"x\"",
        ),
    ];
    for (case, mutate, want) in cases {
        let mut p = base_profile();
        mutate(&mut p);
        assert_err(
            decode(&encode(&p), &DecodeLimits::default()),
            Kind::Invalid,
            want,
            case,
        );
        assert_err(
            validate(&p, &DecodeLimits::default()).map(|_| p),
            Kind::Invalid,
            want,
            case,
        );
    }
}

#[test]
fn accepted_edge_cases() {
    let l = DecodeLimits::default();
    // Sparse, unordered ids (a map instead of the dense fast path).
    let mut p = base_profile();
    p.location[0].id = 1000;
    p.location[1].id = 7;
    p.sample[0].location_id = vec![7, 1000];
    p.function[0].id = u64::MAX;
    p.location[0].line[0].function_id = u64::MAX;
    assert_eq!(decode(&encode(&p), &l).unwrap(), p);
    // Line without a function, location without a mapping, sample without
    // locations.
    let mut p = base_profile();
    p.location[0].line[0].function_id = 0;
    p.location[1].mapping_id = 0;
    p.sample.push(Sample {
        value: vec![0, 0],
        ..Default::default()
    });
    assert_eq!(decode(&encode(&p), &l).unwrap(), p);
    // An empty string table reads as [""]: index 0 is fine, 1 is not.
    let p = Profile {
        sample_type: vec![ValueType::default()],
        sample: vec![Sample {
            value: vec![5],
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(decode(&encode(&p), &l).unwrap(), p);
    let mut bad = p.clone();
    bad.sample_type[0].unit = 1;
    assert_err(
        decode(&encode(&bad), &l),
        Kind::Invalid,
        "sample_type 0: unit: string index 1 out of range (table has 1 strings)",
        "empty table",
    );
    // Unknown fields (varint, fixed64, fixed32, bytes, a group) are skipped.
    let mut raw = encode(&base_profile());
    raw.extend_from_slice(&[0xa8, 0x06, 0x01]); // field 101 varint
    raw.extend_from_slice(&[0xa9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]); // fixed64
    raw.extend_from_slice(&[0xad, 0x06, 1, 2, 3, 4]); // fixed32
    raw.extend_from_slice(&[0xaa, 0x06, 0x02, 0xff, 0xff]); // bytes
    raw.extend_from_slice(&[0xab, 0x06, 0x08, 0x01, 0xac, 0x06]); // group { 1: 1 }
    assert_eq!(decode(&raw, &l).unwrap(), base_profile());
}

#[test]
fn limit_errors() {
    let base = DecodeLimits::default();
    type Tighten = fn(&mut DecodeLimits);
    let p = base_profile();
    let cases: Vec<(&str, Tighten, &str)> = vec![
        ("samples", |l| l.max_samples = 0, "sample count"),
        ("locations", |l| l.max_locations = 1, "location count"),
        ("functions", |l| l.max_functions = 1, "function count"),
        ("mappings", |l| l.max_mappings = 0, "mapping count"),
        ("strings", |l| l.max_strings = 10, "string table size"),
        (
            "string length",
            |l| l.max_string_bytes = 10,
            "length 11 bytes exceeds the limit of 10",
        ),
        (
            "stack depth",
            |l| l.max_stack_depth = 1,
            "sample 0: stack depth 2 exceeds the limit of 1",
        ),
        (
            "labels",
            |l| l.max_labels_per_sample = 1,
            "sample 0: label count 2 exceeds the limit of 1",
        ),
        (
            "sample types",
            |l| l.max_sample_types = 1,
            "exceeds the limit of 1",
        ),
        (
            "lines",
            |l| l.max_lines_per_location = 0,
            "line count 1 exceeds the limit of 0",
        ),
    ];
    for (case, tighten, want) in cases {
        let mut l = base.clone();
        tighten(&mut l);
        assert_err(decode(&encode(&p), &l), Kind::TooLarge, want, case);
        assert_err(
            validate(&p, &l).map(|_| p.clone()),
            Kind::TooLarge,
            want,
            case,
        );
    }
    let l = DecodeLimits {
        max_heap_bytes: 100,
        ..base.clone()
    };
    assert_err(
        decode(&encode(&p), &l),
        Kind::TooLarge,
        "estimated decoded size",
        "heap",
    );
    let raw = encode(&p);
    let l = DecodeLimits {
        max_decompressed_bytes: raw.len() - 1,
        ..base.clone()
    };
    assert_err(decode(&raw, &l), Kind::TooLarge, "body of", "raw body");
    assert_err(
        decode(&gz(&raw), &l),
        Kind::TooLarge,
        "decompressed body",
        "gunzipped body",
    );
    let l = DecodeLimits {
        max_decompressed_bytes: raw.len(),
        ..base.clone()
    };
    assert_eq!(decode(&gz(&raw), &l).unwrap(), p, "exactly at the limit");
    let l = DecodeLimits {
        max_compressed_bytes: 10,
        ..base
    };
    assert_err(
        decode(&gz(&raw), &l),
        Kind::TooLarge,
        "gzipped body of",
        "gzipped body",
    );
}

#[test]
fn malformed_bytes() {
    let l = DecodeLimits::default();
    let raw = encode(&base_profile());
    let gzipped = gz(&raw);

    assert_err(decode(&[], &l), Kind::Empty, "empty profile body", "empty");
    assert_err(
        decode(&gz(&[]), &l),
        Kind::Empty,
        "empty profile body",
        "gzip of nothing",
    );

    let cases: Vec<(&str, Vec<u8>, Kind, &str)> = vec![
        (
            "truncated gzip",
            gzipped[..gzipped.len() / 2].to_vec(),
            Kind::Gzip,
            "truncated",
        ),
        ("gzip header only", gzipped[..5].to_vec(), Kind::Gzip, ""),
        (
            "gzip bad crc",
            {
                let mut g = gzipped.clone();
                let n = g.len();
                g[n - 8] ^= 0xff;
                g
            },
            Kind::Gzip,
            "",
        ),
        (
            "gzip trailing garbage",
            {
                let mut g = gzipped.clone();
                g.extend_from_slice(b"garbage!");
                g
            },
            Kind::Gzip,
            "",
        ),
        ("magic only", vec![0x1f, 0x8b], Kind::Gzip, ""),
        ("lone 0x1f", vec![0x1f], Kind::Protobuf, ""),
        (
            "truncated protobuf",
            raw[..raw.len() - 3].to_vec(),
            Kind::Protobuf,
            "",
        ),
        (
            "length past end",
            vec![0x12, 0xff, 0xff, 0xff, 0xff, 0x0f],
            Kind::Protobuf,
            "runs past the end",
        ),
        (
            "varint overflow",
            vec![
                0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            Kind::Protobuf,
            "overflows 64 bits",
        ),
        (
            "truncated varint",
            vec![0x48, 0xff],
            Kind::Protobuf,
            "truncated varint",
        ),
        (
            "field 0",
            vec![0x00, 0x01],
            Kind::Protobuf,
            "field number 0",
        ),
        (
            "wire type 7",
            vec![0x0f],
            Kind::Protobuf,
            "invalid wire type",
        ),
        (
            "sample as varint",
            vec![0x10, 0x01],
            Kind::Protobuf,
            "wire type 0",
        ),
        (
            "stray end group",
            vec![0xac, 0x06],
            Kind::Protobuf,
            "end-group",
        ),
        (
            "unclosed group",
            vec![0xab, 0x06, 0x08, 0x01],
            Kind::Protobuf,
            "",
        ),
        (
            "bad nested sample",
            vec![0x12, 0x02, 0x0a, 0x05],
            Kind::Protobuf,
            "",
        ),
        (
            "invalid utf-8 string",
            vec![0x32, 0x00, 0x32, 0x02, 0xc3, 0x28],
            Kind::Protobuf,
            "",
        ),
        (
            "text",
            b"this is not a profile".to_vec(),
            Kind::Protobuf,
            "",
        ),
    ];
    for (case, bytes, want, substr) in cases {
        assert_err(decode(&bytes, &l), want, substr, case);
    }
}

/// 1 GiB of zeros as 1024 gzip members of 1 MiB each (~1 MB compressed),
/// and a 96 MiB single-member stream: both must fail fast with TooLarge,
/// and the output buffer never grows past the limit.
#[test]
fn gzip_bombs() {
    let limits = DecodeLimits::default();
    let mib_zeros = vec![0u8; MIB];
    let mut member = GzEncoder::new(Vec::new(), Compression::best());
    member.write_all(&mib_zeros).unwrap();
    let member = member.finish().unwrap();
    let multi: Vec<u8> = member
        .iter()
        .copied()
        .cycle()
        .take(member.len() * 1024)
        .collect();
    assert!(multi.len() < limits.max_compressed_bytes);

    let mut single = GzEncoder::new(Vec::new(), Compression::fast());
    for _ in 0..96 {
        single.write_all(&mib_zeros).unwrap();
    }
    let single = single.finish().unwrap();

    for (name, bomb) in [
        ("multi-member 1 GiB", &multi),
        ("single-member 96 MiB", &single),
    ] {
        let t = Instant::now();
        assert_err(
            decode(bomb, &limits),
            Kind::TooLarge,
            "decompressed body",
            name,
        );
        let mut out = Vec::new();
        let r = gzip::gunzip_into(bomb, limits.max_decompressed_bytes, &mut out);
        assert!(matches!(r, Err(PprofError::TooLarge { .. })));
        assert!(
            out.capacity() <= limits.max_decompressed_bytes + 1,
            "{name}: buffer grew to {}",
            out.capacity()
        );
        eprintln!(
            "{name}: {} compressed bytes, rejected in {:?}",
            bomb.len(),
            t.elapsed() / 2
        );
    }

    // A small limit: the buffer is bounded by it, not by the stream.
    let mut out = Vec::new();
    let r = gzip::gunzip_into(&multi, 1000, &mut out);
    assert!(matches!(r, Err(PprofError::TooLarge { limit: 1000, .. })));
    assert!(out.capacity() <= 1001, "{}", out.capacity());
    // A lying ISIZE trailer does not make it allocate the claimed size.
    let mut liar = gz(b"abc");
    let n = liar.len();
    liar[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut out = Vec::new();
    assert!(gzip::gunzip_into(&liar, 1 << 30, &mut out).is_err());
    assert!(out.capacity() < 1 << 20, "{}", out.capacity());
}

#[test]
fn gunzip_exact_sizes() {
    for n in [0usize, 1, 4095, 4096, 4097, 100_000] {
        let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let g = gz(&data);
        assert_eq!(gzip::gunzip_bounded(&g, n).unwrap(), data, "n={n}");
        let out = gzip::gunzip_bounded(&g, n).unwrap();
        assert!(
            out.capacity() <= n + 1,
            "n={n}: capacity {}",
            out.capacity()
        );
        if n > 0 {
            assert!(gzip::gunzip_bounded(&g, n - 1).is_err(), "n={n}");
        }
    }
    // Two members concatenate, as with Go's gzip.Reader.
    let mut two = gz(b"hello ");
    two.extend_from_slice(&gz(b"world"));
    assert_eq!(gzip::gunzip_bounded(&two, 100).unwrap(), b"hello world");
}

// ------------------------------------------------------------ fuzz-style --

/// xorshift64*: a fixed-seed generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[rng.below(seeds.len())].clone();
    match rng.below(7) {
        0 => d.truncate(rng.below(d.len() + 1)),
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(d.len());
                if let Some(b) = d.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(d.len());
                if let Some(b) = d.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
        }
        3 => {
            let i = rng.below(d.len() + 1);
            let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
            d.splice(i..i, junk);
        }
        4 => {
            let other = &seeds[rng.below(seeds.len())];
            let cut = rng.below(d.len() + 1);
            d.truncate(cut);
            d.extend_from_slice(&other[rng.below(other.len() + 1)..]);
        }
        5 => {
            // Interesting varints in random places.
            let i = rng.below(d.len());
            let v: &[u8] = match rng.below(4) {
                0 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                1 => &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                2 => &[0x00],
                _ => &[0x7f],
            };
            let end = (i + v.len()).min(d.len());
            d.splice(i..end, v.iter().copied());
        }
        _ => {
            d = (0..rng.below(256)).map(|_| rng.next() as u8).collect();
        }
    }
    d
}

#[test]
fn fuzz_style_mutations_never_panic() {
    let mut seeds: Vec<Vec<u8>> = vec![encode(&base_profile()), encode_gzip(&base_profile())];
    if let Some(dir) = corpus_dir() {
        for (_, path) in corpus_files(&dir) {
            let bytes = std::fs::read(&path).unwrap();
            let raw = if gzip::is_gzip(&bytes) {
                gzip::gunzip_bounded(&bytes, usize::MAX - 1).unwrap()
            } else {
                bytes.clone()
            };
            // Small files only, so a few thousand iterations stay fast in
            // debug builds.
            if raw.len() <= 4 * 1024 {
                seeds.push(raw);
                if bytes.len() <= 4 * 1024 && gzip::is_gzip(&bytes) {
                    seeds.push(bytes);
                }
            }
        }
    }
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let start = Instant::now();
    let (mut ok, mut iters) = (0usize, 0usize);
    while iters < 4000 && start.elapsed() < Duration::from_secs(8) {
        let d = mutate(&mut rng, &seeds);
        ok += usize::from(fuzz_decode(&d));
        iters += 1;
    }
    eprintln!(
        "{iters} mutated inputs from {} seeds in {:?}: {ok} accepted, the rest rejected, none panicked",
        seeds.len(),
        start.elapsed()
    );
    assert!(iters >= 200, "too slow: only {iters} iterations");
}

// ---------------------------------------------------------------- timing --

/// Best wall time of `f` over `n` runs (the minimum filters out
/// preemption on a shared machine).
fn best_of(n: usize, f: &mut dyn FnMut()) -> Duration {
    f();
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Release-mode timing of decode against its floor (gunzip + prost alone),
/// best of 50 runs each:
/// `cargo test --release --lib pprof::tests::timing -- --ignored --nocapture`
#[test]
#[ignore]
fn timing() {
    let Some(dir) = corpus_dir() else { return };
    let limits = DecodeLimits::default();
    for rel in [
        "pprof/large.cpu",
        "parca/alloc_objects.pb.gz",
        "pyroscope/profile.pprof",
    ] {
        let Ok(bytes) = std::fs::read(dir.join(rel)) else {
            continue;
        };
        let raw = gzip::gunzip_bounded(&bytes, usize::MAX - 1).unwrap();
        let p = decode(&bytes, &limits).unwrap();
        let floor = best_of(50, &mut || {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut raw)
                .unwrap();
            std::hint::black_box(Profile::decode(raw.as_slice()).unwrap());
        });
        let full = best_of(50, &mut || {
            std::hint::black_box(decode(&bytes, &limits).unwrap());
        });
        let gunzip = best_of(50, &mut || {
            std::hint::black_box(
                gzip::gunzip_bounded(&bytes, limits.max_decompressed_bytes).unwrap(),
            );
        });
        let prost_only = best_of(50, &mut || {
            std::hint::black_box(Profile::decode(raw.as_slice()).unwrap());
        });
        let raw_decode = best_of(50, &mut || {
            std::hint::black_box(decode_raw(&raw, &limits).unwrap());
        });
        let scan = best_of(50, &mut || {
            std::hint::black_box(prescan::scan(&raw, &limits).unwrap());
        });
        let val = best_of(50, &mut || validate(&p, &limits).unwrap());
        let pct = |a: Duration, b: Duration| (a.as_secs_f64() / b.as_secs_f64() - 1.0) * 100.0;
        eprintln!(
            "{rel}: {} -> {} bytes\n  gunzip + prost (floor) {floor:?} | decode {full:?} ({:+.1}%)\n  \
             gunzip {gunzip:?} | prost {prost_only:?} | pre-scan + prost + validate {raw_decode:?} \
             ({:+.1}% over prost) | pre-scan {scan:?} | validate {val:?}",
            bytes.len(),
            raw.len(),
            pct(full, floor),
            pct(raw_decode, prost_only),
        );
    }
}

#[test]
fn count_varints_matches_naive() {
    let mut rng = Rng(7);
    for len in 0..100 {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let naive = bytes.iter().filter(|b| **b < 0x80).count();
        assert_eq!(prescan::count_varints(&bytes), naive, "len {len}");
    }
    assert_eq!(prescan::count_varints(&[0u8; 64]), 64);
    assert_eq!(prescan::count_varints(&[0xffu8; 64]), 0);
}
