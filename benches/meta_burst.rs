//! Memory and time of a burst of new entities: what the meta store (its
//! caches, its writer thread and sled) costs when every stack is new, as
//! after a deploy of many targets with a new binary.
//!
//! Data: every profile under `testdata/pprof` that decodes, `--rounds`
//! times (default 1); each round renames every function and file
//! (`#round` appended to each non-empty string) and moves every location's
//! address, so that every mapping, function, location and stack of every
//! round is new. One series per file. A fresh temporary store.
//!
//! Printed: the entities created; the time of the requests (ingest) and
//! until the meta store's writer thread has put every entity into sled
//! (`sync`); the process RSS before the store, after the requests, after
//! the sync and after a first query of everything (a merge per file and
//! profile type, which reads every entity); its time; sled's bytes on disk; the meta store's cache bytes and the head's chunk bytes, for
//! comparison. RSS is read from `/proc/self/status` (Linux).
//!
//! Run with: `cargo bench --bench meta_burst` (add `-- --rounds N`).

use profstore::engine::{Storage, TimeRange};
use profstore::ingest::IngestRequest;
use profstore::model::labels::Labels;
use profstore::model::selector::parse_selector;
use profstore::pprof::{decode, DecodeLimits};
use profstore::tsdb::Tsdb;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Resident set size in MB (0 where `/proc` is absent).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1e3)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn main() {
    // `cargo bench` passes `--bench`; the one option is `--rounds N`.
    let args: Vec<String> = std::env::args().collect();
    let rounds: u64 = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pprof");
    let limits = DecodeLimits::default();
    let profiles: Vec<_> = files(&dir)
        .iter()
        .filter_map(|f| decode(&std::fs::read(f).ok()?, &limits).ok())
        .collect();

    let before = rss_mb();
    let store = Tsdb::temporary().unwrap();
    let mut samples = 0;
    let start = Instant::now();
    for round in 0..rounds {
        for (i, base) in profiles.iter().enumerate() {
            let mut p = base.clone();
            for l in &mut p.location {
                l.address = l.address.wrapping_add(round << 28);
            }
            for s in p.string_table.iter_mut().filter(|s| !s.is_empty()) {
                s.push_str(&format!("#{round}"));
            }
            p.time_nanos = 0;
            let file = format!("f{i}");
            let r = IngestRequest {
                name: None,
                labels: Labels::from_pairs([("file", file.as_str())]),
                delta: None,
                profile: p,
                received_at_ms: 1_000 + round as i64,
            };
            // A profile the limits refuse is left out.
            if let Ok(s) = store.ingest(r) {
                samples += s.samples;
            }
        }
    }
    let ingest = start.elapsed();
    let after_ingest = rss_mb();
    store.meta().sync_writes().unwrap();
    let synced = start.elapsed();
    let after_sync = rss_mb();
    // A first query of everything: a merge per file and profile type,
    // which resolves every stack, location, function and mapping.
    let types = store.profile_types(&[], TimeRange::ALL).unwrap();
    let query = Instant::now();
    let mut merged = 0;
    for i in 0..profiles.len() {
        for t in &types {
            let sel = format!("{{__name__={:?}, file=\"f{i}\"}}", t.to_string());
            let p = store.merge(&parse_selector(&sel).unwrap(), TimeRange::ALL);
            merged += p.map_or(0, |p| p.samples.len());
        }
    }
    let query = query.elapsed();
    let after_query = rss_mb();
    let c = store.meta().counts();
    let entities = c.mappings + c.functions + c.locations + c.stacks;
    println!(
        "{} profiles x {rounds} rounds: {samples} samples, {entities} new entities \
         ({} mappings, {} functions, {} locations, {} stacks)",
        profiles.len(),
        c.mappings,
        c.functions,
        c.locations,
        c.stacks
    );
    println!(
        "time: ingest {:.2} s, until synced {:.2} s ({:.1} us per entity)",
        ingest.as_secs_f64(),
        synced.as_secs_f64(),
        synced.as_secs_f64() * 1e6 / entities.max(1) as f64
    );
    println!(
        "RSS: before {before:.0} MB, after ingest +{:.0} MB, after sync +{:.0} MB \
         ({:.0} B per entity, {:.0} B per sample)",
        after_ingest - before,
        after_sync - before,
        (after_sync - before) * 1e6 / entities.max(1) as f64,
        (after_sync - before) * 1e6 / samples.max(1) as f64
    );
    println!(
        "first query (a merge per file and type): {:.2} s, {merged} samples; RSS after it +{:.0} MB",
        query.as_secs_f64(),
        after_query - before
    );
    println!(
        "meta store on disk {:.0} MB ({:.0} B per entity); for comparison: meta store \
         caches {:.0} MB, head chunks {:.0} MB",
        store.meta().disk_bytes() as f64 / 1e6,
        store.meta().disk_bytes() as f64 / entities.max(1) as f64,
        store.meta().cache_bytes() as f64 / 1e6,
        store.head().chunk_bytes() as f64 / 1e6
    );
}
