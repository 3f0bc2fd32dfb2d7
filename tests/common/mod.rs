//! Helpers shared by the integration tests: corpus discovery and a slow,
//! obvious per-stack total of a pprof profile to compare results against.

#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod seaweed;

use profstore::pprof::{decode, DecodeLimits};
use profstore::proto::pprof::Profile;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files under `dir`, sorted, relative paths with the files.
pub fn files_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "SOURCES.md") {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, p));
            }
        }
    }
    out.sort();
    out
}

/// The project's own profiles.
pub fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pprof")
}

/// The shared corpus, when it is beside the checkout.
pub fn shared_corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/pprof");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "note: {} is absent; tests over the full corpus use testdata/ only",
            p.display()
        );
        None
    }
}

/// Every corpus file: testdata/ and, when present, the shared corpus (the
/// shared copy of a file wins; names are prefixed by their origin).
pub fn corpus() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = Vec::new();
    match shared_corpus() {
        Some(shared) => v.extend(files_under(&shared)),
        None => v.extend(files_under(&testdata_dir())),
    }
    v
}

pub fn load(path: &Path) -> Profile {
    let bytes = std::fs::read(path).unwrap();
    decode(&bytes, &DecodeLimits::default()).unwrap()
}

/// Identity of a sample for comparisons, as a 128-bit hash of: frames
/// (function name, file and line per line; mapping file and address for
/// frames without lines), string labels (sorted; empty values and repeated
/// keys dropped, as ingest does), numeric labels (sorted). [`describe`] gives
/// the readable form of the same keys for failure messages.
pub type Key = u128;

fn frames_of(p: &Profile) -> BTreeMap<u64, Vec<String>> {
    let s = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
    let funcs: BTreeMap<u64, _> = p.function.iter().map(|f| (f.id, f)).collect();
    let maps: BTreeMap<u64, _> = p.mapping.iter().map(|m| (m.id, m)).collect();
    p.location
        .iter()
        .map(|l| {
            let lines: Vec<String> = l
                .line
                .iter()
                .filter_map(|ln| {
                    funcs
                        .get(&ln.function_id)
                        .map(|f| format!("{}|{}|{}", s(f.name), s(f.filename), ln.line))
                })
                .collect();
            let frames = if lines.is_empty() {
                let file = maps
                    .get(&l.mapping_id)
                    .map(|m| s(m.filename))
                    .unwrap_or_default();
                vec![format!("{file}@{:#x}", l.address)]
            } else {
                lines
            };
            (l.id, frames)
        })
        .collect()
}

fn sample_labels(p: &Profile, sample: &profstore::proto::pprof::Sample) -> String {
    let s = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
    let mut str_labels: Vec<(String, String)> = Vec::new();
    let mut num_labels = Vec::new();
    for l in &sample.label {
        if l.str != 0 {
            if !str_labels.iter().any(|(k, _)| *k == s(l.key)) {
                str_labels.push((s(l.key), s(l.str)));
            }
        } else if l.num != 0 || l.num_unit != 0 {
            num_labels.push((s(l.key), l.num, s(l.num_unit)));
        }
    }
    str_labels.retain(|(_, v)| !v.is_empty());
    str_labels.sort();
    num_labels.sort();
    format!("{str_labels:?} {num_labels:?}")
}

fn hash_bytes(h: &mut xxhash_rust::xxh3::Xxh3, b: &[u8]) {
    h.update(&(b.len() as u64).to_le_bytes());
    h.update(b);
}

/// Per sample type index: key → total (zero totals dropped).
pub fn totals(p: &Profile) -> Vec<BTreeMap<Key, i64>> {
    let frames = frames_of(p);
    let loc_hash: BTreeMap<u64, u128> = frames
        .iter()
        .map(|(id, f)| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for x in f {
                hash_bytes(&mut h, x.as_bytes());
            }
            (*id, h.digest128())
        })
        .collect();
    let mut out = vec![BTreeMap::new(); p.sample_type.len()];
    for sample in &p.sample {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for id in &sample.location_id {
            h.update(&loc_hash[id].to_le_bytes());
        }
        hash_bytes(&mut h, sample_labels(p, sample).as_bytes());
        let key = h.digest128();
        for (t, v) in sample.value.iter().enumerate() {
            *out[t].entry(key).or_insert(0i64) += v;
        }
    }
    for m in &mut out {
        m.retain(|_, v| *v != 0);
    }
    out
}

/// Readable forms of the keys of `p` (for failure messages).
pub fn describe(p: &Profile) -> BTreeMap<Key, String> {
    let frames = frames_of(p);
    let keys = totals_keys(p);
    p.sample
        .iter()
        .zip(keys)
        .map(|(sample, k)| {
            let f: Vec<&String> = sample
                .location_id
                .iter()
                .flat_map(|id| &frames[id])
                .collect();
            (k, format!("{f:?} {}", sample_labels(p, sample)))
        })
        .collect()
}

fn totals_keys(p: &Profile) -> Vec<Key> {
    // One single-sample profile per sample, through `totals`, so keys agree.
    p.sample
        .iter()
        .map(|s| {
            let one = Profile {
                sample: vec![profstore::proto::pprof::Sample {
                    value: vec![1],
                    ..s.clone()
                }],
                sample_type: vec![Default::default()],
                ..p.clone()
            };
            *totals(&one)[0].keys().next().unwrap()
        })
        .collect()
}

/// A stream of real profiles: 2 instances (`host-0`, `host-1`) × (`cpu`:
/// `parca/fib.pb.gz`, `heap`: `dd-trace-go/heap.pprof`), one every 10 s
/// for `steps` steps from `from` ms (instance `i` 7·i ms later); profile
/// `k` of a series keeps two samples in three, a different third each
/// time, so stacks come and go.
pub fn real_stream(from: i64, steps: i64) -> Vec<profstore::ingest::IngestRequest> {
    let load = |name: &str| {
        let bytes = std::fs::read(testdata_dir().join(name)).unwrap();
        decode(&bytes, &DecodeLimits::default()).unwrap()
    };
    let files = [
        ("cpu", load("parca/fib.pb.gz")),
        ("heap", load("dd-trace-go/heap.pprof")),
    ];
    let mut out = Vec::new();
    for step in 0..steps {
        for inst in 0..2 {
            for (job, base) in &files {
                let t = from + step * 10_000 + inst * 7;
                let mut p = base.clone();
                p.time_nanos = t * 1_000_000;
                let k = (step + inst) as usize;
                let mut i = 0;
                p.sample.retain(|_| {
                    i += 1;
                    (i + k) % 3 != 0
                });
                out.push(profstore::ingest::IngestRequest {
                    name: None,
                    labels: profstore::model::Labels::from_pairs([
                        ("job", job.to_string()),
                        ("instance", format!("host-{inst}")),
                    ]),
                    delta: None,
                    profile: p,
                    received_at_ms: t,
                });
            }
        }
    }
    out
}

/// A peer querier that is always down (connection refused); it also
/// stands for a querier's own entry in its peer list, which is read in
/// process and never called.
#[derive(Debug)]
pub struct DownPeer(pub &'static str);

impl profstore::querier::peers::Peer for DownPeer {
    fn name(&self) -> &str {
        self.0
    }
    fn partial(&self, _request: &[u8]) -> Result<Vec<u8>, profstore::model::StorageError> {
        Err(profstore::model::StorageError::new(
            "peer",
            "connection refused",
        ))
    }
}
